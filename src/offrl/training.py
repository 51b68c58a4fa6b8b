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
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from tqdm.auto import tqdm

from offrl import algos, checkpoint, ope
from offrl.algos import get_algo, make_algo_config
from offrl.atomic import atomic_write_json, truncate_jsonl
from offrl.core import (
    Spec,
    chunk_metrics,
    make_seed_group_chunk,
    make_update_chunk,
    spec_from_dataset,
    stack_states,
    take_algorithm_data,
    training_rows,
    unstack_state,
)
from offrl.data import Dataset
from offrl.data.transforms import make_transforms
from offrl.envs.rollout import env_spaces
from offrl.errors import ConfigError, DivergenceError, OffrlError
from offrl.evaluate import EnvEvaluator, OPEEvaluator, score
from offrl.recipes import env_reference_scores, load_dataset

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
    # The per-task reference settings (algos.task_defaults) a fresh run put into algo_config
    # under the user's overrides; kept apart here to say where they came from.
    task_defaults: dict = dataclasses.field(default_factory=dict)
    # With no environment: evaluation is off-policy on this fraction of whole episodes, held
    # out from training (the same episodes for every seed: split seed 0).
    holdout: float = 0.1
    ope_estimators: tuple[str, ...] = ("fqe",)
    ope_config: dict = dataclasses.field(default_factory=dict)  # OPEConfig overrides
    # Filled in from the dataset when the run starts:
    obs_dim: int = 0
    act_dim: int = 0
    num_actions: int = 0  # n of a discrete action space; 0: continuous
    ref_min_score: float | None = None
    ref_max_score: float | None = None


# --------------------------------------------------------------------------- config


def check_action_kind(algo_name: str, data: Dataset, source: str) -> None:
    """An algorithm trains only on data of its action kind (algos.action_kind)."""
    wanted = algos.action_kind(get_algo(algo_name))
    have = "discrete" if data.discrete else "continuous"
    if wanted != have:
        space = f"Discrete({data.num_actions})" if data.discrete else f"{data.act_dim}-D Box"
        raise ConfigError(
            f"{algo_name} trains on {wanted} actions, but dataset {source} has {have} "
            f"actions ({space}); choose a {have}-action algorithm"
        )


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


# --------------------------------------------------------------------------- the loop

# What `callback` receives after every chunk of updates.
Progress = dict[str, Any]  # {"step", "steps", "updates_per_second", "score" (last eval or None)}


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
    holdout: float = 0.1,
    ope_estimators: tuple[str, ...] | str = ("fqe",),
    ope_config: dict[str, Any] | None = None,
    callback: Callable[[Progress], None] | None = None,
    task_defaults: bool = True,
) -> dict:
    """Train `algo` on `dataset` for `steps` updates; returns the summary (also summary.json).

    Evaluation is in `env` (or the environment the dataset names): rollouts, normalized
    when reference returns are known. With no environment anywhere it is off-policy:
    `ope_estimators` (offrl.ope) on a `holdout` fraction of whole episodes kept out of
    training; the summary's `ope` holds the estimates and its returns are null.

    `callback`, if given, is called after every chunk of updates with a `Progress` dict.
    A fresh run takes the algorithm's per-task reference settings (its TASK_DEFAULTS, e.g.
    AWR's σ and step size on hopper) under `overrides`; `task_defaults=False` keeps the
    Config's defaults. config.json's `task_defaults` lists what was applied.
    """
    started = time.perf_counter()
    options = _Options(
        env,
        eval_every,
        eval_episodes,
        chunk_size,
        clip_actions,
        resume,
        overwrite,
        holdout,
        ope.check_estimators(ope_estimators),
        dict(ope_config or {}),
        task_defaults,
    )
    (run,), cfg, host, evaluator = _prepare(
        algo, dataset, steps, [seed], [Path(out)], overrides, options
    )
    trainer = _Trainer([run], cfg, host, evaluator, [Path(out)], progress, callback)
    summaries = trainer.run(started)
    if trainer.members[0].error is not None:
        raise trainer.members[0].error
    return summaries[0]


def train_seeds(
    algo: str,
    dataset: str | Path,
    steps: int,
    seeds: list[int],
    outs: list[str | Path],
    env: str | None = None,
    overrides: dict[str, Any] | None = None,
    eval_every: int = 5_000,
    eval_episodes: int = 10,
    chunk_size: int = 1_000,
    resume: bool = False,
    overwrite: bool = False,
    clip_actions: bool = False,
    progress: bool = True,
    holdout: float = 0.1,
    ope_estimators: tuple[str, ...] | str = ("fqe",),
    ope_config: dict[str, Any] | None = None,
    callback: Callable[[Progress], None] | None = None,
    task_defaults: bool = True,
) -> list[dict]:
    """`train` for several seeds in one compiled program (`vmap` over the seed axis).

    Each seed gets its own ordinary run directory in `outs`, the same as `train` would
    write, and its own initialization and keys; only the updates run together. A seed that
    diverges stops (its summary says so) while the others go on. Returns the summaries.
    """
    started = time.perf_counter()
    if len(seeds) != len(outs) or len(set(seeds)) != len(seeds) or not seeds:
        raise ConfigError("train_seeds: give one run directory per seed, seeds distinct")
    paths = [Path(o) for o in outs]
    options = _Options(
        env,
        eval_every,
        eval_episodes,
        chunk_size,
        clip_actions,
        resume,
        overwrite,
        holdout,
        ope.check_estimators(ope_estimators),
        dict(ope_config or {}),
        task_defaults,
    )
    runs, cfg, host, evaluator = _prepare(algo, dataset, steps, seeds, paths, overrides, options)
    trainer = _Trainer(runs, cfg, host, evaluator, paths, progress, callback)
    return trainer.run(started)


@dataclasses.dataclass(frozen=True)
class _Options:
    env: str | None
    eval_every: int
    eval_episodes: int
    chunk_size: int
    clip_actions: bool
    resume: bool
    overwrite: bool
    holdout: float
    ope_estimators: tuple[str, ...]
    ope_config: dict
    task_defaults: bool = True


def _prepare(algo, dataset, steps, seeds, outs, overrides, opt: _Options):
    """Check the arguments, make (or reopen) each run directory and write its config.json.
    Returns the RunConfigs, the algorithm Config, the dataset (loaded once for all) in a
    one-item list that `_Trainer` empties (so that no caller's frame keeps the host arrays
    alive once they are on the device), and the evaluator."""
    if (
        (steps <= 0 and not opt.resume)
        or opt.eval_every <= 0
        or opt.chunk_size <= 0
        or opt.eval_episodes <= 0
    ):
        # On --resume, steps = 0 means "as many as the run was started with".
        raise ConfigError("steps, eval_every, chunk_size and eval_episodes must be positive")
    runs, fresh = [], []
    for seed, out in zip(seeds, outs):
        resumed = prepare_run_dir(out, opt.resume, opt.overwrite)
        fresh.append(not resumed)
        if resumed:
            run = RunConfig(**json.loads((out / CONFIG_FILE).read_text()))
            _check_resume_matches(run, algo, dataset, overrides, out)
            run = dataclasses.replace(run, steps=max(steps, run.steps) if steps else run.steps)
        else:
            run = RunConfig(
                algo=algo,
                dataset=str(dataset),
                steps=steps,
                seed=seed,
                env_id=opt.env,
                eval_every=opt.eval_every,
                eval_episodes=opt.eval_episodes,
                chunk_size=opt.chunk_size,
                clip_actions=opt.clip_actions,
                algo_config=dict(overrides or {}),
                holdout=opt.holdout,
                ope_estimators=opt.ope_estimators,
                ope_config=opt.ope_config,
            )
        runs.append(run)
    make_algo_config(runs[0].algo, runs[0].algo_config)  # bad overrides fail before loading
    data = load_dataset(runs[0].dataset, clip_actions=runs[0].clip_actions)
    check_action_kind(runs[0].algo, data, runs[0].dataset)
    if opt.task_defaults:
        runs = [_with_task_defaults(r, data) if new else r for r, new in zip(runs, fresh)]
    cfg = make_algo_config(runs[0].algo, runs[0].algo_config)
    runs = [_complete_run_config(run, data, cfg) for run in runs]
    _check_group(runs, cfg)
    data, evaluator = _evaluation(runs[0], data, cfg)
    for run, out in zip(runs, outs):
        atomic_write_json(out / CONFIG_FILE, dataclasses.asdict(run))
    return runs, cfg, [data], evaluator


def _with_task_defaults(run: RunConfig, data: Dataset) -> RunConfig:
    """A fresh run with its algorithm's per-task reference settings under its overrides."""
    found = algos.task_defaults(run.algo, data.name or run.dataset, run.env_id or data.env_id)
    applied = {k: v for k, v in found.items() if k not in run.algo_config}
    return dataclasses.replace(run, algo_config=applied | run.algo_config, task_defaults=applied)


def _evaluation(run: RunConfig, data: Dataset, cfg):
    """(training data, evaluator): rollouts in the run's environment on all the data, or,
    with no environment, OPE on held-out episodes and training on the rest."""
    if run.env_id is not None:
        return data, EnvEvaluator(
            run.env_id, run.eval_episodes, run.ref_min_score, run.ref_max_score
        )
    if algos.stateful(get_algo(run.algo)):
        raise ConfigError(
            f"{run.dataset}: names no environment, and {run.algo} acts on its history (a "
            "context of past steps), which off-policy estimators cannot replay; give --env"
        )
    if not 0 < run.holdout < 1:
        raise ConfigError(
            f"{run.dataset}: names no environment, so evaluation is off-policy on held-out "
            f"episodes; holdout must be in (0, 1), got {run.holdout}"
        )
    # In place: the dataset was loaded for this run alone, so the training rows are moved
    # to the front of its own arrays instead of copied (issue 20: peak memory).
    train_part, heldout = ope.split_episodes(data, run.holdout, seed=0, in_place=True)
    discount = getattr(cfg, "discount", 0.99)
    config = ope.config_from_overrides(run.ope_config)
    return train_part, OPEEvaluator(heldout, tuple(run.ope_estimators), discount, config)


def _check_group(runs: list[RunConfig], cfg) -> None:
    """Seeds trained together must agree on everything but the seed."""
    first = dataclasses.replace(runs[0], seed=0)
    for run in runs[1:]:
        if dataclasses.replace(run, seed=0) != first:
            raise ConfigError(
                f"seeds {runs[0].seed} and {run.seed}: resumed run directories differ in "
                "configuration; seeds trained in one program must agree on all but the seed"
            )


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
    ref_min, ref_max = data.ref_min_score, data.ref_max_score
    if env_id is not None:
        check_env_spaces(data, env_id, run.dataset)
        if ref_min is None or ref_max is None:
            ref_min, ref_max = known_reference_scores(env_id)
    return dataclasses.replace(
        run,
        env_id=env_id,
        obs_dim=data.obs_dim,
        act_dim=data.act_dim,
        num_actions=data.num_actions,
        ref_min_score=ref_min,
        ref_max_score=ref_max,
        algo_config={f.name: getattr(cfg, f.name) for f in dataclasses.fields(cfg)},
    )


def known_reference_scores(env_id: str) -> tuple[float | None, float | None]:
    """The environment's (random, expert) returns, or (None, None): a run in an environment
    with no references reports raw returns and a null normalized score."""
    try:
        return env_reference_scores(env_id)
    except OffrlError:
        return None, None


def check_env_spaces(data: Dataset, env_id: str, source: str) -> None:
    """Before training: the dataset's observation and action spaces are the environment's
    (otherwise training succeeds and evaluation crashes inside gymnasium)."""
    obs_space, act_space = env_spaces(env_id)
    env_obs = obs_space.shape
    if env_obs is None or len(env_obs) != 1 or env_obs[0] != data.obs_dim:
        raise ConfigError(
            f"{source}: observations have dimension {data.obs_dim}, "
            f"environment {env_id} has observation shape {env_obs}"
        )
    if data.discrete:
        n = getattr(act_space, "n", None)
        if n is None or int(n) != data.num_actions:
            raise ConfigError(
                f"{source}: {data.num_actions} discrete actions, environment {env_id} "
                f"has action space {act_space}"
            )
    elif act_space.shape != (data.act_dim,):
        raise ConfigError(
            f"{source}: actions have dimension {data.act_dim}, "
            f"environment {env_id} has action shape {act_space.shape}"
        )


class _Member:
    """One seed's run: its state, keys, run directory, log, checkpoints and summary."""

    def __init__(self, run, cfg, algo, spec: Spec, evaluator, out: Path, data, selection=None):
        self.run_cfg, self.cfg, self.algo, self.out = run, cfg, algo, out
        self.evaluator = evaluator
        init_key, self.train_key = jax.random.split(jax.random.key(run.seed))
        try:
            self.state = algo.init(cfg, spec, init_key)
        except ValueError as exc:  # a Config value the algorithm rejects
            raise ConfigError(f"{run.algo} config: {exc}") from None
        self.ckpt_dir = out / CHECKPOINT_DIR
        self.meta = {"train_seconds": 0.0, "wall_seconds": 0.0}
        pretrained = None
        if checkpoint.exists(self.ckpt_dir):
            self.state, self.meta = checkpoint.load(self.ckpt_dir, self.state)
        elif hasattr(algo, "pretrain"):  # parts fitted before the loop (a dynamics model)
            started = time.perf_counter()
            key = jax.random.fold_in(init_key, 1)  # init's own key stays what it always was
            self.state, pretrained = algo.pretrain(cfg, self.state, data, key)
            pretrained["seconds"] = time.perf_counter() - started
        self.wall_before = self.meta["wall_seconds"]  # time spent by earlier, resumed-from runs
        truncate_jsonl(out / METRICS_FILE, int(self.state.step))
        self.log = open(out / METRICS_FILE, "a")  # closed in finish()
        if selection is not None and int(self.state.step) == 0:  # the rows it trains on
            _log(self.log, {"step": 0, "kind": "selection", **selection})
        if pretrained is not None:
            _log(self.log, {"step": 0, "kind": "pretrain", **pretrained})
        self.last_eval: dict | None = None
        self.last_metrics: dict[str, float] = {}
        self.error: DivergenceError | None = None

    def advance(self, new_state, metrics: dict, finite: bool, end: int, elapsed: float, started):
        """Take one chunk's result: check it, log it, evaluate and checkpoint on schedule."""
        step = int(self.state.step)
        try:
            self._guard(metrics, finite, end)
        except DivergenceError as exc:
            self.error = exc
            return
        self.state, self.last_metrics = new_state, metrics
        self.meta["train_seconds"] += elapsed
        ups = (end - step) / elapsed
        _log(self.log, {"step": end, "kind": "train", **metrics, "updates_per_second": ups})
        if end % self.run_cfg.eval_every == 0 or end == self.run_cfg.steps:
            self.last_eval = self._evaluate()
            _log(self.log, {"step": end, "kind": "eval", **self.last_eval})
            self._save(started)

    def finish(self, started: float) -> dict:
        self.log.close()
        if self.error is not None:
            return json.loads((self.out / SUMMARY_FILE).read_text())
        if self.last_eval is None:  # resumed a run that had already finished
            self.last_eval = self._evaluate()
        self.meta["wall_seconds"] = self.wall_before + time.perf_counter() - started
        summary = self._summary(self.last_eval)
        atomic_write_json(self.out / SUMMARY_FILE, summary)
        from offrl.plot import plot_curves

        plot_curves(self.out / METRICS_FILE, self.out / CURVE_FILE, title=_title(self.run_cfg))
        return summary

    def score(self) -> float | None:
        return None if self.last_eval is None else score(self.last_eval)

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

    def _evaluate(self) -> dict:
        return self.evaluator(self.algo, self.cfg, self.state, eval_seed(self.run_cfg.seed))

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
            "evaluation": "env" if self.run_cfg.env_id else "ope",
            "final_return": final.get("return_mean"),
            "final_return_std": final.get("return_std"),
            "final_normalized_score": final.get("normalized_score"),
            "ope": final.get("ope"),
            "best_normalized_score": max((s for s in scores if s is not None), default=None),
            "eval_episodes": self.run_cfg.eval_episodes,
            "updates_per_second": int(self.state.step) / train_seconds if train_seconds else None,
            "train_seconds": train_seconds,
            "wall_seconds": self.meta["wall_seconds"],
        }


class _Trainer:
    """Runs the chunks of updates for one seed, or for several stacked in one program."""

    def __init__(self, runs, cfg, host: list[Dataset], evaluator, outs, progress: bool, callback):
        """Takes the dataset out of `host`: the device copy is made from its only reference,
        so the host arrays go as soon as they are on the device (issue 20)."""
        data = host.pop()
        self.cfg, self.progress, self.callback = cfg, progress, callback
        self.run_cfg = runs[0]
        self.algo = get_algo(self.run_cfg.algo)
        try:
            data, selection = training_rows(self.algo, cfg, data)
        except ValueError as exc:  # e.g. a fraction that keeps no episode
            raise ConfigError(f"{self.run_cfg.dataset}: {exc}") from None
        tf = make_transforms(data, cfg.normalize_obs, cfg.reward_scaling)
        spec = spec_from_dataset(data, tf)
        self.members = [
            _Member(run, cfg, self.algo, spec, evaluator, out, data, selection)
            for run, out in zip(runs, outs)
        ]
        steps = {int(m.state.step) for m in self.members}
        if len(steps) > 1:
            raise ConfigError(
                f"seeds trained together were checkpointed at different steps {sorted(steps)}; "
                "resume them one by one"
            )
        host.append(data)
        del data
        self.device_data = take_algorithm_data(self.algo, cfg, host, tf)
        self.chunks: dict[tuple[int, int], Any] = {}  # (updates, live seeds) -> compiled

    @property
    def grouped(self) -> bool:
        return len(self.members) > 1

    def _inputs(self):
        live = self._live()
        if not self.grouped:
            return live[0].state, live[0].train_key
        return stack_states([m.state for m in live]), jnp.stack([m.train_key for m in live])

    def _live(self) -> list[_Member]:
        return [m for m in self.members if m.error is None]

    def _chunk_fn(self, length: int, n_live: int):
        """The compiled K-update function, compiled ahead of time so timing excludes it."""
        if (length, n_live) not in self.chunks:
            make = make_seed_group_chunk if self.grouped else make_update_chunk
            fn = make(self.algo, self.cfg, length)
            state, key = self._inputs()
            self.chunks[length, n_live] = fn.lower(state, self.device_data, key).compile()
        return self.chunks[length, n_live]

    def _next_boundary(self, step: int) -> int:
        run = self.run_cfg
        up = lambda every: (step // every + 1) * every  # noqa: E731
        return min(up(run.chunk_size), up(run.eval_every), run.steps)

    def run(self, started: float) -> list[dict]:
        run, step = self.run_cfg, int(self.members[0].state.step)
        seeds = ",".join(str(m.run_cfg.seed) for m in self.members)
        bar = tqdm(
            total=run.steps,
            initial=step,
            disable=not self.progress,
            unit="upd",
            dynamic_ncols=True,
            desc=f"{run.algo} on {Path(run.dataset).name}"
            + (f" (seeds {seeds})" if self.grouped else ""),
        )
        try:
            while step < run.steps and self._live():
                end = self._next_boundary(step)
                live = self._live()
                chunk = self._chunk_fn(end - step, len(live))
                state, key = self._inputs()
                t0 = time.perf_counter()
                out = jax.block_until_ready(chunk(state, self.device_data, key))
                elapsed = time.perf_counter() - t0
                self._advance(live, *out, end, elapsed, started)
                ups = (end - step) * len(live) / elapsed  # all seeds together
                step = end
                bar.update(end - bar.n)
                lead = live[0]
                bar.set_postfix(_postfix(lead.last_metrics, lead.last_eval, ups), refresh=False)
                if self.callback is not None:
                    info = {"updates_per_second": ups, "score": lead.score()}
                    self.callback({"step": end, "steps": run.steps} | info)
        finally:
            bar.close()
        return [m.finish(started) for m in self.members]

    def _advance(self, live, new_state, metrics, finite, end, elapsed, started) -> None:
        if not self.grouped:
            live[0].advance(new_state, chunk_metrics(metrics), bool(finite), end, elapsed, started)
            return
        for i, member in enumerate(live):
            member_metrics = chunk_metrics(unstack_state(metrics, i))
            state_i = unstack_state(new_state, i)
            member.advance(state_i, member_metrics, bool(finite[i]), end, elapsed, started)


def eval_seed(seed: int) -> int:
    """Evaluation episodes start from the same states at every evaluation of a run."""
    return 1_000_000 + 1_000 * seed


def _log(log, record: dict) -> None:
    log.write(json.dumps(record) + "\n")
    log.flush()


def _postfix(metrics: dict, last_eval: dict | None, ups: float) -> dict:
    post = {"upd/s": f"{ups:,.0f}"}
    if last_eval is not None and score(last_eval) is not None:
        post["score"] = f"{score(last_eval):.1f}"
    for key in ("critic_loss", "q_loss", "bc_loss", "actor_loss"):
        if key in metrics:
            post[key] = f"{metrics[key]:.3g}"
            break
    return post


def _title(run: RunConfig) -> str:
    return f"{run.algo} on {Path(run.dataset).name} (seed {run.seed})"
