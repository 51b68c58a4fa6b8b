"""The one training loop for every algorithm.

dataset -> transforms -> device arrays -> K fused updates per call (lax.scan) -> metrics,
evaluation every `eval_every` steps, an atomic checkpoint after each evaluation, and the run
directory: config.json, metrics.jsonl, summary.json, checkpoint/, curve.png.

Chunks of updates end at absolute step boundaries (multiples of `chunk_size` and of
`eval_every`), and step t's key is fold_in(seed key, t): a run resumed from its last
checkpoint makes exactly the updates the uninterrupted run makes.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
import time
from pathlib import Path
from typing import Any

import jax
import numpy as np
from tqdm.auto import tqdm

from offrl import algos, checkpoint
from offrl.atomic import atomic_write, atomic_write_json
from offrl.core import Spec, chunk_metrics, make_update_chunk, spec_from_dataset, to_device
from offrl.data import Dataset, load_dataset
from offrl.data.transforms import Transforms, make_transforms
from offrl.envs.registry import reference_scores
from offrl.errors import ConfigError, DivergenceError
from offrl.evaluate import evaluate, jax_policy

CONFIG_FILE, METRICS_FILE, SUMMARY_FILE, CURVE_FILE = (
    "config.json",
    "metrics.jsonl",
    "summary.json",
    "curve.png",
)
CHECKPOINT_DIR = "checkpoint"


@dataclasses.dataclass(frozen=True)
class RunConfig:
    """Everything that defines a run; saved as config.json."""

    algo: str
    dataset: str
    steps: int
    seed: int = 0
    env_id: str | None = None
    eval_every: int = 5_000
    eval_episodes: int = 10
    chunk_size: int = 1_000  # updates fused into one compiled call
    clip_actions: bool = False
    algo_config: dict = dataclasses.field(default_factory=dict)  # overrides, by field name
    # Filled in from the dataset when the run starts:
    obs_dim: int = 0
    act_dim: int = 0
    ref_min_score: float | None = None
    ref_max_score: float | None = None


# --------------------------------------------------------------------------- config


def parse_overrides(pairs: list[str]) -> dict[str, str]:
    out = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise ConfigError(f"--set {pair!r}: expected key=value")
        out[key.strip()] = value.strip()
    return out


def _coerce(name: str, default: Any, value: Any) -> Any:
    """Convert an override (a string from the CLI, or a Python value) to the field's type."""
    if not isinstance(value, str):
        return tuple(value) if isinstance(default, tuple) else value
    try:
        if isinstance(default, bool):
            if value.lower() not in ("true", "false", "1", "0"):
                raise ValueError
            return value.lower() in ("true", "1")
        if isinstance(default, int):
            return int(value)
        if isinstance(default, float):
            return float(value)
        if isinstance(default, tuple):
            return tuple(int(v) for v in value.strip("()[] ").split(",") if v.strip())
        return value
    except ValueError:
        kind = type(default).__name__
        raise ConfigError(f"config field {name!r}: cannot read {value!r} as {kind}") from None


def make_algo_config(algo_name: str, overrides: dict[str, Any]):
    algo = get_algo(algo_name)
    fields = {f.name: f for f in dataclasses.fields(algo.Config)}
    unknown = sorted(set(overrides) - set(fields))
    if unknown:
        raise ConfigError(
            f"unknown config field(s) {', '.join(unknown)} for {algo_name}; "
            f"valid: {', '.join(fields)}"
        )
    defaults = algo.Config()
    values = {k: _coerce(k, getattr(defaults, k), v) for k, v in overrides.items()}
    return algo.Config(**values)


def get_algo(name: str):
    try:
        return algos.get(name)
    except KeyError as exc:
        raise ConfigError(exc.args[0]) from None


def template_spec(obs_dim: int, act_dim: int) -> Spec:
    """A spec of the right sizes whose transforms a checkpoint overwrites on load."""
    z = lambda n: np.zeros(n, np.float32)  # noqa: E731
    o = lambda n: np.ones(n, np.float32)  # noqa: E731
    tf = Transforms(z(obs_dim), o(obs_dim), -o(act_dim), o(act_dim), np.float32(1), np.float32(0))
    return Spec(obs_dim, act_dim, tf)


# --------------------------------------------------------------------------- run directory


def prepare_run_dir(out: Path, resume: bool, overwrite: bool) -> bool:
    """Returns True when an existing run is to be resumed."""
    if resume and overwrite:
        raise ConfigError("--resume and --overwrite exclude each other")
    if out.exists() and not out.is_dir():
        raise ConfigError(f"{out}: exists and is not a directory")
    non_empty = out.exists() and any(out.iterdir())
    if resume:
        if not (out / CONFIG_FILE).exists():
            raise ConfigError(f"{out}: nothing to resume (no {CONFIG_FILE})")
        return True
    if non_empty:
        if not overwrite:
            raise ConfigError(
                f"{out}: run directory exists and is not empty; pass --resume to continue it "
                "or --overwrite to replace it"
            )
        shutil.rmtree(out)
    out.mkdir(parents=True, exist_ok=True)
    return False


def truncate_jsonl(path: Path, last_step: int) -> None:
    """Drop records logged after the checkpoint we resume from (they will be made again)."""
    if not path.exists():
        return
    keep = [ln for ln in path.read_text().splitlines() if json.loads(ln)["step"] <= last_step]
    atomic_write(path, "".join(ln + "\n" for ln in keep).encode())


# --------------------------------------------------------------------------- the loop


def train(
    algo: str,
    dataset: str | Path,
    steps: int,
    seed: int = 0,
    out: str | Path = "runs/latest",
    env: str | None = None,
    overrides: dict[str, Any] | None = None,
    eval_every: int = 5_000,
    eval_episodes: int = 10,
    chunk_size: int = 1_000,
    resume: bool = False,
    overwrite: bool = False,
    clip_actions: bool = False,
    progress: bool = True,
) -> dict:
    """Train `algo` on `dataset` for `steps` updates; returns the summary (also summary.json)."""
    started = time.perf_counter()
    out = Path(out)
    if (steps <= 0 and not resume) or eval_every <= 0 or chunk_size <= 0 or eval_episodes <= 0:
        # On --resume, steps = 0 means "as many as the run was started with".
        raise ConfigError("steps, eval_every, chunk_size and eval_episodes must be positive")
    resuming = prepare_run_dir(out, resume, overwrite)
    if resuming:
        run = RunConfig(**json.loads((out / CONFIG_FILE).read_text()))
        _check_resume_matches(run, algo, dataset, overrides, out)
        run = dataclasses.replace(run, steps=max(steps, run.steps) if steps else run.steps)
    else:
        run = RunConfig(
            algo=algo,
            dataset=str(dataset),
            steps=steps,
            seed=seed,
            env_id=env,
            eval_every=eval_every,
            eval_episodes=eval_episodes,
            chunk_size=chunk_size,
            clip_actions=clip_actions,
            algo_config=dict(overrides or {}),
        )
    cfg = make_algo_config(run.algo, run.algo_config)
    data = load_dataset(run.dataset, clip_actions=run.clip_actions)
    run = _complete_run_config(run, data, cfg)
    atomic_write_json(out / CONFIG_FILE, dataclasses.asdict(run))
    return _Trainer(run, cfg, data, out, progress).run(started)


def _check_resume_matches(run: RunConfig, algo: str, dataset, overrides, out: Path) -> None:
    """A resumed run keeps its saved configuration; a different one asked for is an error."""
    if algo != run.algo or str(dataset) != run.dataset:
        raise ConfigError(
            f"{out}: the run is {run.algo} on {run.dataset}; "
            f"cannot resume it as {algo} on {dataset}"
        )
    saved = make_algo_config(run.algo, run.algo_config)
    if overrides and make_algo_config(algo, dict(run.algo_config) | overrides) != saved:
        raise ConfigError(f"{out}: --set cannot change the configuration of a run being resumed")


def _complete_run_config(run: RunConfig, data: Dataset, cfg) -> RunConfig:
    env_id = run.env_id or data.env_id
    if env_id is None:
        raise ConfigError(
            f"{run.dataset}: the dataset names no environment; pass --env ENV_ID to evaluate in"
        )
    ref_min, ref_max = data.ref_min_score, data.ref_max_score
    if ref_min is None or ref_max is None:
        ref_min, ref_max = reference_scores(env_id)
    return dataclasses.replace(
        run,
        env_id=env_id,
        obs_dim=data.obs_dim,
        act_dim=data.act_dim,
        ref_min_score=ref_min,
        ref_max_score=ref_max,
        algo_config={f.name: getattr(cfg, f.name) for f in dataclasses.fields(cfg)},
    )


class _Trainer:
    def __init__(self, run: RunConfig, cfg, data: Dataset, out: Path, progress: bool):
        self.run_cfg, self.cfg, self.out, self.progress = run, cfg, out, progress
        self.algo = get_algo(run.algo)
        tf = make_transforms(data, cfg.normalize_obs, cfg.reward_scaling)
        init_key, self.train_key = jax.random.split(jax.random.key(run.seed))
        try:
            self.state = self.algo.init(cfg, spec_from_dataset(data, tf), init_key)
        except ValueError as exc:  # a Config value the algorithm rejects
            raise ConfigError(f"{run.algo} config: {exc}") from None
        self.device_data = to_device(data, tf)
        self.ckpt_dir = out / CHECKPOINT_DIR
        self.meta = {"train_seconds": 0.0, "wall_seconds": 0.0}
        self.chunks: dict[int, Any] = {}
        if checkpoint.exists(self.ckpt_dir):
            self.state, self.meta = checkpoint.load(self.ckpt_dir, self.state)
        self.wall_before = self.meta["wall_seconds"]  # time spent by earlier, resumed-from runs
        truncate_jsonl(out / METRICS_FILE, int(self.state.step))

    def _chunk_fn(self, length: int):
        """The compiled K-update function, compiled ahead of time so timing excludes it."""
        if length not in self.chunks:
            fn = make_update_chunk(self.algo, self.cfg, length)
            self.chunks[length] = fn.lower(self.state, self.device_data, self.train_key).compile()
        return self.chunks[length]

    def _next_boundary(self, step: int) -> int:
        run = self.run_cfg
        up = lambda every: (step // every + 1) * every  # noqa: E731
        return min(up(run.chunk_size), up(run.eval_every), run.steps)

    def run(self, started: float) -> dict:
        run, step = self.run_cfg, int(self.state.step)
        bar = tqdm(
            total=run.steps,
            initial=step,
            disable=not self.progress,
            unit="upd",
            dynamic_ncols=True,
            desc=f"{run.algo} on {Path(run.dataset).name}",
        )
        last_eval = None
        with open(self.out / METRICS_FILE, "a") as log:
            while step < run.steps:
                end = self._next_boundary(step)
                chunk = self._chunk_fn(end - step)
                t0 = time.perf_counter()
                new_state, metrics, finite = chunk(self.state, self.device_data, self.train_key)
                metrics = chunk_metrics(metrics)
                elapsed = time.perf_counter() - t0
                self._guard(metrics, bool(finite), end)
                ups = (end - step) / elapsed
                self.state, step = new_state, end
                self.meta["train_seconds"] += elapsed
                _log(log, {"step": step, "kind": "train", **metrics, "updates_per_second": ups})
                bar.update(end - bar.n)
                if step % run.eval_every == 0 or step == run.steps:
                    last_eval = self._evaluate(step)
                    _log(log, {"step": step, "kind": "eval", **last_eval})
                    self._save(started)
                bar.set_postfix(_postfix(metrics, last_eval, ups), refresh=False)
        bar.close()
        if last_eval is None:  # resumed a run that had already finished
            last_eval = self._evaluate(step)
        self.meta["wall_seconds"] = self.wall_before + time.perf_counter() - started
        summary = self._summary(last_eval)
        atomic_write_json(self.out / SUMMARY_FILE, summary)
        from offrl.plot import plot_curves

        plot_curves(self.out / METRICS_FILE, self.out / CURVE_FILE, title=_title(run))
        return summary

    def _guard(self, metrics: dict[str, float], params_finite: bool, step: int) -> None:
        bad = [k for k, v in metrics.items() if not np.isfinite(v)]
        if not bad and params_finite:
            return
        what = f"metric(s) {', '.join(bad)}" if bad else "parameters"
        good, saved = int(self.state.step), self.meta.get("step")
        summary = {
            "status": "diverged",
            "diverged_at_step": step,
            "last_good_step": good,
            "checkpoint_step": saved,
        }
        atomic_write_json(self.out / SUMMARY_FILE, self._base_summary() | summary)
        kept = (
            f"the last good checkpoint (step {saved}) is kept in {self.ckpt_dir}"
            if saved is not None
            else "no checkpoint had been written yet"
        )
        raise DivergenceError(
            f"training diverged between steps {good} and {step}: {what} became NaN/inf; {kept}"
        )

    def _evaluate(self, step: int) -> dict[str, float]:
        run = self.run_cfg
        policy = jax_policy(self.algo, self.cfg, self.state, seed=run.seed)
        return evaluate(
            policy,
            run.env_id,
            run.eval_episodes,
            _eval_seed(run.seed),
            run.ref_min_score,
            run.ref_max_score,
        )

    def _save(self, started: float) -> None:
        self.meta["wall_seconds"] = self.wall_before + time.perf_counter() - started
        self.meta["step"] = int(self.state.step)
        checkpoint.save(self.ckpt_dir, self.state, self.meta)

    def _base_summary(self) -> dict:
        run = self.run_cfg
        return {
            "algo": run.algo,
            "dataset": run.dataset,
            "env_id": run.env_id,
            "steps": int(self.state.step),
            "seed": run.seed,
        }

    def _summary(self, final: dict) -> dict:
        evals = [json.loads(ln) for ln in (self.out / METRICS_FILE).read_text().splitlines()]
        scores = [e.get("normalized_score") for e in evals if e["kind"] == "eval"]
        train_seconds = self.meta["train_seconds"]
        return self._base_summary() | {
            "status": "completed",
            "final_return": final["return_mean"],
            "final_return_std": final["return_std"],
            "final_normalized_score": final.get("normalized_score"),
            "best_normalized_score": max((s for s in scores if s is not None), default=None),
            "eval_episodes": self.run_cfg.eval_episodes,
            "updates_per_second": int(self.state.step) / train_seconds if train_seconds else None,
            "train_seconds": train_seconds,
            "wall_seconds": self.meta["wall_seconds"],
        }


def _eval_seed(seed: int) -> int:
    """Evaluation episodes start from the same states at every evaluation of a run."""
    return 1_000_000 + 1_000 * seed


def _log(log, record: dict) -> None:
    log.write(json.dumps(record) + "\n")
    log.flush()


def _postfix(metrics: dict, last_eval: dict | None, ups: float) -> dict:
    post = {"upd/s": f"{ups:,.0f}"}
    if last_eval is not None:
        post["score"] = f"{last_eval.get('normalized_score', last_eval['return_mean']):.1f}"
    for key in ("critic_loss", "bc_loss", "actor_loss"):
        if key in metrics:
            post[key] = f"{metrics[key]:.3g}"
            break
    return post


def _title(run: RunConfig) -> str:
    return f"{run.algo} on {Path(run.dataset).name} (seed {run.seed})"
