"""DAgger: dataset aggregation with a recipe's committed expert as the oracle.

Paper: Ross, Gordon & Bagnell 2011, "A Reduction of Imitation Learning and Structured
Prediction to No-Regret Online Learning" (AISTATS), Algorithm 3.1.

Behaviour cloning trains on the expert's state distribution d_π*, and a learner that errs
with probability ε per step drifts to states the expert never showed it: its cost can exceed
the expert's by O(εT²) over a horizon T (Ross & Bagnell 2010). DAgger trains on the states
the learner itself visits, labelled by the expert, and gets O(uεT) (Theorem 3.2):

    D ← ∅
    for i = 0 … N−1:
        π_i = β_i π* + (1 − β_i) π̂_i              (π̂_0 is not needed: β_0 = 1)
        roll out π_i for M episodes; D_i = {(s, π*(s)) : s visited by π_i}
        D ← D ∪ D_i
        π̂_{i+1} = BC trained on D, from scratch
    return π̂_N

Choices here (the paper leaves them open or names several):
- Mixing is per step: at every step of every episode, with probability β_i the expert's
  action is executed, else the learner's. The expert labels every visited state, whichever
  policy acted there.
- β_i = p^i with p = `beta_decay` (the paper's β_i = p^{i−1}, counted from i = 1) and
  0^0 = 1: iteration 0 is the expert alone (plain BC data). The default p = 0 is the
  paper's parameter-free β_i = I(i = 0), which it reports often works best: pure learner
  rollouts from iteration 1 on. p = 1 never lets the learner act (BC with more data).
- Labels are the expert's deterministic action: the SAC expert snapshot's tanh-Gaussian
  mean, in environment units. (The manifest's expert return was measured sampling; the
  summary reports the deterministic expert's own return on the measurement episodes.)
- The learner is offrl.algos.bc (deterministic MSE by default; `--set` overrides its Config)
  retrained from scratch on the whole of D every iteration with the run's seed, as in the
  paper: the result depends on D only, not on the order D grew in, and iteration 0 is
  exactly BC with that seed on the expert data. Warm starting would be cheaper, but it
  trains longest on the oldest data (the expert's distribution) that DAgger means to
  outweigh.
- The returned policy is the last one, π̂_N. The paper returns the best π̂_i on validation;
  every π̂_i stays in iterations/NN/ with its measurements in metrics.jsonl, and the summary
  names the best iteration by measured return.

Measured per iteration (metrics.jsonl, one record per iteration), for π̂_{i+1}: the labels
in D; the learner's return over `eval_episodes` episodes of its own (the seeds the training
loop evaluates with, so with no horizon it is the iteration run's final_return); on the
states of those episodes, the disagreement with the expert, in the normalized action units
BC trains in (a ↦ 2(a − low)/(high − low) − 1): `action_mse`, the mean squared difference
per action dimension, and `disagreement`, the fraction of states where some dimension
differs by more than `tolerance`.

Run directory (an ordinary one: `offrl eval DIR`, `offrl.load_policy(DIR)`):
    config.json, checkpoint/   the last iteration's BC run (copied from iterations/NN/)
    metrics.jsonl              one {"kind": "dagger"} record per iteration
    summary.json               the last BC run's summary, wall time of the whole, and "dagger"
    curve.png                  return and disagreement against labels
    dagger.json                the DAgger settings
    data/dataset_NN.npz        D after iteration NN (every earlier row first, then D_NN)
    iterations/NN/             iteration NN's BC run directory (π̂_{NN+1})
"""

from __future__ import annotations

import dataclasses
import json
import shutil
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np

from offrl.atomic import atomic_path, atomic_write_json
from offrl.data import Dataset
from offrl.envs.rollout import BatchPolicy, env_actions, env_spaces, make_env
from offrl.errors import ConfigError

DAGGER_FILE = "dagger.json"
DATA_DIR, ITERATIONS_DIR = "data", "iterations"
LEARNER = "bc"


@dataclasses.dataclass(frozen=True)
class DaggerConfig:
    """The DAgger settings (dagger.json); BC's own Config is given as overrides."""

    env_slug: str
    iterations: int = 10  # N: rounds of collect, label, aggregate, retrain
    episodes_per_iteration: int = 10  # M: episodes rolled out with π_i per round
    beta_decay: float = 0.0  # p: β_i = p^i (β_0 = 1); 0: the learner alone from round 1
    steps_per_iteration: int = 10_000  # BC updates per round, from scratch
    eval_episodes: int = 10  # the learner's measurement episodes (and the run's evaluation)
    horizon: int | None = None  # truncate every collected/measured episode at H steps
    tolerance: float = 0.1  # disagreement: |Δa| beyond this, in normalized action units
    seed: int = 0
    bc_config: dict = dataclasses.field(default_factory=dict)  # BC Config overrides


# --------------------------------------------------------------------------- schedule


def beta(i: int, decay: float) -> float:
    """β_i = p^i, the probability that π_i executes the expert's action; β_0 = 1."""
    return 1.0 if i == 0 else float(decay) ** i


# --------------------------------------------------------------------------- rollouts


@dataclasses.dataclass
class Visits:
    """The states one round visited, episode by episode, with both policies' actions."""

    observations: np.ndarray  # (N, obs_dim)
    expert_actions: np.ndarray  # (N, act_dim): π*(s), the labels
    learner_actions: np.ndarray  # (N, act_dim): π̂(s) (π*(s) where there is no learner)
    expert_acted: np.ndarray  # (N,) bool: the executed action was the expert's
    rewards: np.ndarray  # (N,)
    next_observations: np.ndarray  # (N, obs_dim)
    terminals: np.ndarray  # (N,) bool
    timeouts: np.ndarray  # (N,) bool: cut by the time limit or by the horizon
    returns: np.ndarray  # (episodes,)
    lengths: np.ndarray  # (episodes,)

    def __len__(self) -> int:
        return int(self.rewards.shape[0])


def labelled_rollouts(
    env_id: str,
    expert: BatchPolicy,
    learner: BatchPolicy | None,
    beta_i: float,
    seeds: list[int],
    rng: np.random.Generator,
    horizon: int | None = None,
    num_envs: int = 10,
) -> Visits:
    """One episode per seed of the mixture β π* + (1 − β) π̂, `num_envs` in lockstep: at
    every step each environment executes the expert's action with probability β, else the
    learner's. The expert is asked at every visited state."""
    if learner is None and beta_i < 1.0:
        raise ConfigError(f"β = {beta_i:g} < 1 lets the learner act, but there is no learner yet")
    if not seeds:
        raise ConfigError("labelled_rollouts: no episodes to run")
    envs = [make_env(env_id) for _ in range(min(num_envs, len(seeds)))]
    try:
        groups = [
            _run_group(envs[: len(group)], group, expert, learner, beta_i, rng, horizon)
            for group in (seeds[s : s + len(envs)] for s in range(0, len(seeds), len(envs)))
        ]
    finally:
        for env in envs:
            env.close()
    fields = [f.name for f in dataclasses.fields(Visits)]
    return Visits(**{k: np.concatenate([g[k] for g in groups]) for k in fields})


def _run_group(envs, seeds, expert, learner, beta_i, rng, horizon) -> dict[str, np.ndarray]:
    n, space = len(envs), envs[0].action_space
    obs = np.stack([env.reset(seed=int(s))[0] for env, s in zip(envs, seeds)]).astype(np.float32)
    rows: list[list[tuple]] = [[] for _ in range(n)]
    alive = np.ones(n, bool)
    returns, lengths = np.zeros(n), np.zeros(n, np.int64)
    while alive.any():
        a_exp = np.asarray(expert(obs, rng), np.float32).reshape(n, -1)
        a_learn = a_exp if learner is None else np.asarray(learner(obs, rng), np.float32)
        a_learn = a_learn.reshape(n, -1)
        take = rng.random(n) < beta_i
        actions = env_actions(np.where(take[:, None], a_exp, a_learn), space, n)
        for i in np.flatnonzero(alive):
            next_obs, rew, term, trunc, _ = envs[i].step(actions[i])
            lengths[i] += 1
            returns[i] += rew
            trunc = bool(trunc) or (horizon is not None and lengths[i] >= horizon)
            row = (obs[i].copy(), a_exp[i], a_learn[i], take[i], rew, next_obs, term, trunc)
            rows[i].append(row)
            obs[i] = next_obs
            alive[i] = not (term or trunc)
    flat = [r for env_rows in rows for r in env_rows]  # episode by episode
    cols = list(zip(*flat))
    return {
        "observations": np.asarray(cols[0], np.float32),
        "expert_actions": np.asarray(cols[1], np.float32),
        "learner_actions": np.asarray(cols[2], np.float32),
        "expert_acted": np.asarray(cols[3], bool),
        "rewards": np.asarray(cols[4], np.float32),
        "next_observations": np.asarray(cols[5], np.float32),
        "terminals": np.asarray(cols[6], bool),
        "timeouts": np.asarray(cols[7], bool),
        "returns": returns,
        "lengths": lengths,
    }


def collection_seeds(seed: int, iteration: int, episodes: int) -> list[int]:
    """Reset seeds of round `iteration`'s episodes: fresh starts every round, none of them
    the measurement episodes' seeds (training.eval_seed)."""
    state = np.random.SeedSequence([seed, iteration, 0xDA]).generate_state(episodes)
    return [int(s) for s in state]


# --------------------------------------------------------------------------- data


def labelled_dataset(visits: Visits, low: np.ndarray, high: np.ndarray, **fields) -> Dataset:
    """D_i: the visited states with the expert's actions as labels (clipped into the bounds
    against float rounding); `fields` are Dataset fields (env_id, references, name)."""
    return Dataset(
        observations=visits.observations,
        actions=np.clip(visits.expert_actions, low, high).astype(np.float32),
        rewards=visits.rewards,
        next_observations=visits.next_observations,
        terminals=visits.terminals,
        timeouts=visits.timeouts,
        action_low=np.asarray(low, np.float32),
        action_high=np.asarray(high, np.float32),
        **fields,
    )


def aggregate(data: Dataset | None, new: Dataset) -> Dataset:
    """D ∪ D_i: every earlier row first, in order, then the new episodes."""
    if data is None:
        return new
    keep = ("name", "ref_min_score", "ref_max_score", "metadata")
    return Dataset.concatenate([data, new], **{k: getattr(data, k) for k in keep})


def disagreement(
    expert_actions: np.ndarray,
    learner_actions: np.ndarray,
    low: np.ndarray,
    high: np.ndarray,
    tolerance: float,
) -> dict[str, float]:
    """On the same states: the mean squared action difference per dimension, and the
    fraction of states where some dimension differs by more than `tolerance`, both in the
    normalized units BC trains in ([low, high] ↦ [−1, 1])."""
    scale = 2.0 / (np.asarray(high, np.float64) - np.asarray(low, np.float64))
    diff = (np.asarray(learner_actions, np.float64) - expert_actions) * scale
    return {
        "action_mse": float(np.mean(diff**2)),
        "disagreement": float(np.mean(np.max(np.abs(diff), axis=1) > tolerance)),
    }


# --------------------------------------------------------------------------- the loop


@dataclasses.dataclass
class Iteration:
    """What round i made: β_i, its visits (D_i before labelling), D after it, and π̂_{i+1}."""

    index: int
    beta: float
    visits: Visits
    data: Dataset
    learner: BatchPolicy
    fit_info: dict


# fit(i, D) -> (π̂_{i+1} as a batch policy, whatever the caller wants to keep about the fit)
Fit = Callable[[int, Dataset], tuple[BatchPolicy, dict]]


def iterate(
    env_id: str,
    expert: BatchPolicy,
    fit: Fit,
    iterations: int,
    episodes: int,
    beta_decay: float,
    seed: int = 0,
    horizon: int | None = None,
    dataset_fields: dict | None = None,
) -> Iterator[Iteration]:
    """DAgger's rounds, one yielded per iteration: roll out π_i, label every visited state
    with π*, aggregate into D, fit π̂_{i+1} on D."""
    low, high = action_bounds(env_id)
    data: Dataset | None = None
    learner: BatchPolicy | None = None
    for i in range(iterations):
        b = beta(i, beta_decay)
        rng = np.random.default_rng([seed, i])
        seeds = collection_seeds(seed, i, episodes)
        visits = labelled_rollouts(env_id, expert, learner, b, seeds, rng, horizon)
        data = aggregate(data, labelled_dataset(visits, low, high, **(dataset_fields or {})))
        learner, info = fit(i, data)
        yield Iteration(i, b, visits, data, learner, info)


def measure(
    env_id: str,
    expert: BatchPolicy,
    learner: BatchPolicy,
    seeds: list[int],
    tolerance: float,
    horizon: int | None = None,
) -> dict[str, float]:
    """The learner alone (β = 0) on its own state distribution: its return and its
    disagreement with the expert on the states it visits."""
    low, high = action_bounds(env_id)
    rng = np.random.default_rng(0)  # unused by deterministic policies
    visits = labelled_rollouts(env_id, expert, learner, 0.0, seeds, rng, horizon)
    return {
        "return_mean": float(visits.returns.mean()),
        "return_std": float(visits.returns.std()),
        "episode_length_mean": float(visits.lengths.mean()),
        **disagreement(visits.expert_actions, visits.learner_actions, low, high, tolerance),
    }


def action_bounds(env_id: str) -> tuple[np.ndarray, np.ndarray]:
    """(low, high) of the environment's Box action space; other spaces are refused."""
    space = env_spaces(env_id)[1]
    if not isinstance(space, gym.spaces.Box):
        raise ConfigError(f"{env_id}: DAgger here clones continuous (Box) actions, not {space}")
    return space.low.astype(np.float32), space.high.astype(np.float32)


# --------------------------------------------------------------------------- the expert


def expert_policy(env_slug: str, seed: int = 0) -> tuple[str, BatchPolicy, dict]:
    """(env_id, the deterministic expert of a recipe environment, its manifest snapshot)."""
    from offrl import recipes
    from offrl.recipes.agents import manifest, snapshot_policy

    slugs = [s for s, e in recipes.ENVS.items() if _continuous_expert(manifest().get(s, {}))]
    if env_slug not in recipes.ENVS:
        raise ConfigError(
            f"{env_slug!r}: not a recipe environment; DAgger's experts are those of "
            f"{', '.join(slugs)}"
        )
    entry = manifest().get(env_slug, {})
    agents = entry.get("agents", {})
    if recipes.DQN in agents:
        space = env_spaces(recipes.ENVS[env_slug].env_id)[1]
        raise ConfigError(
            f"{env_slug}: a discrete-action environment ({space}); DAgger here clones a "
            f"continuous expert with BC; choose one of {', '.join(slugs)}"
        )
    if not _continuous_expert(entry):
        raise ConfigError(
            f"{env_slug}: no committed expert agent (recipes/policies/manifest.json); "
            f"choose one of {', '.join(slugs)}"
        )
    agent = agents[recipes.SAC]
    snap = agent["snapshots"]["expert"]
    policy = snapshot_policy(agent, snap["file"], True, seed)
    return recipes.ENVS[env_slug].env_id, policy, snap


def _continuous_expert(entry: dict) -> bool:
    from offrl import recipes

    agent = entry.get("agents", {}).get(recipes.SAC, {})
    return "expert" in agent.get("snapshots", {})


# --------------------------------------------------------------------------- the command


def check_config(cfg: DaggerConfig) -> None:
    """Bad settings fail here, in one line, before anything runs."""
    from offrl.algos import make_algo_config

    if cfg.iterations < 1:
        raise ConfigError(f"--iterations must be at least 1, got {cfg.iterations}")
    if not 0.0 <= cfg.beta_decay <= 1.0:
        raise ConfigError(f"--beta-decay must be in [0, 1], got {cfg.beta_decay:g}")
    for name in ("episodes_per_iteration", "steps_per_iteration", "eval_episodes"):
        if getattr(cfg, name) < 1:
            flag = "--" + name.replace("_", "-")
            raise ConfigError(f"{flag} must be at least 1, got {getattr(cfg, name)}")
    if cfg.horizon is not None and cfg.horizon < 1:
        raise ConfigError(f"--horizon must be at least 1, got {cfg.horizon}")
    if cfg.tolerance < 0:
        raise ConfigError(f"--tolerance must be non-negative, got {cfg.tolerance:g}")
    make_algo_config(LEARNER, cfg.bc_config)  # unknown or mistyped BC fields


def dagger(
    env_slug: str,
    iterations: int = 10,
    episodes_per_iteration: int = 10,
    beta_decay: float = 0.0,
    steps_per_iteration: int = 10_000,
    seed: int = 0,
    out: str | Path = "runs/dagger",
    overrides: dict[str, Any] | None = None,
    eval_episodes: int = 10,
    horizon: int | None = None,
    tolerance: float = 0.1,
    overwrite: bool = False,
    progress: bool = False,
    callback: Callable[[dict], None] | None = None,
) -> dict:
    """DAgger on a recipe environment with its committed expert as the oracle and BC as the
    learner; writes the run directory `out` and returns its summary (also summary.json).

    `overrides`: BC Config fields (e.g. {"hidden": (64, 64)}). `horizon`: cut every
    collected and measured episode at that many steps (the run's own evaluation, summary
    final_return and `offrl eval`, plays whole episodes). `callback` gets each iteration's
    metrics record as it is written."""
    from offrl import recipes, training

    started = time.perf_counter()
    cfg = DaggerConfig(
        env_slug,
        iterations,
        episodes_per_iteration,
        beta_decay,
        steps_per_iteration,
        eval_episodes,
        horizon,
        tolerance,
        seed,
        dict(overrides or {}),
    )
    check_config(cfg)
    env_id, expert, snap = expert_policy(env_slug, seed)
    out = Path(out)
    training.prepare_run_dir(out, resume=False, overwrite=overwrite)
    atomic_write_json(out / DAGGER_FILE, _jsonable(dataclasses.asdict(cfg)) | {"env_id": env_id})
    refs = recipes.references(env_slug)
    fields = {
        "env_id": env_id,
        "name": f"dagger-{env_slug}",
        "ref_min_score": refs["random"],
        "ref_max_score": refs["expert"],
        "metadata": {"dagger": {"expert": snap["file"], "env_slug": env_slug}},
    }
    eval_seeds = [training.eval_seed(seed) + e for e in range(eval_episodes)]
    expert_result = measure(env_id, expert, expert, eval_seeds, tolerance, horizon)
    fit = _bc_fit(cfg, env_id, out, progress)
    records = []
    rounds = iterate(
        env_id, expert, fit, iterations, episodes_per_iteration, beta_decay, seed, horizon, fields
    )
    with open(out / training.METRICS_FILE, "w") as log:
        for it in rounds:
            result = measure(env_id, expert, it.learner, eval_seeds, tolerance, horizon)
            record = _record(it, result, refs, records[-1]["labels"] if records else 0, horizon)
            records.append(record)
            log.write(json.dumps(record) + "\n")
            log.flush()
            if callback is not None:
                callback(record)
    last = out / ITERATIONS_DIR / _iteration_name(iterations - 1)
    shutil.copy2(last / training.CONFIG_FILE, out / training.CONFIG_FILE)
    shutil.copytree(last / training.CHECKPOINT_DIR, out / training.CHECKPOINT_DIR)
    _plot(records, out / training.CURVE_FILE, f"DAgger on {env_id} (seed {seed})")
    final = json.loads((last / training.SUMMARY_FILE).read_text())
    summary = _summary(cfg, env_id, snap, final, records, expert_result, started)
    atomic_write_json(out / training.SUMMARY_FILE, summary)
    return summary


def _bc_fit(cfg: DaggerConfig, env_id: str, out: Path, progress: bool) -> Fit:
    """BC from scratch on D: D written as data/dataset_NN.npz, trained by the one training
    loop into iterations/NN/, read back as a deterministic batch policy."""
    from offrl.data import io
    from offrl.evaluate import jax_policy
    from offrl.policy import load_policy
    from offrl.training import train

    def fit(i: int, data: Dataset) -> tuple[BatchPolicy, dict]:
        path = io.write_npz(data, out / DATA_DIR / f"dataset_{i:02d}.npz", overwrite=True)
        run_dir = out / ITERATIONS_DIR / _iteration_name(i)
        summary = train(
            LEARNER,
            path,
            steps=cfg.steps_per_iteration,
            seed=cfg.seed,
            out=run_dir,
            env=env_id,
            overrides=cfg.bc_config,
            eval_every=cfg.steps_per_iteration,
            eval_episodes=cfg.eval_episodes,
            chunk_size=min(1_000, cfg.steps_per_iteration),
            overwrite=True,
            progress=progress,
        )
        policy = load_policy(run_dir)
        return jax_policy(policy.algo, policy.cfg, policy.state), {
            "summary": summary,
            "bc_loss": _last_train_metric(run_dir, "bc_loss"),
        }

    (out / DATA_DIR).mkdir(parents=True, exist_ok=True)
    return fit


def _iteration_name(i: int) -> str:
    return f"{i:02d}"


def _last_train_metric(run_dir: Path, key: str) -> float | None:
    from offrl.training import METRICS_FILE

    value = None
    for line in (run_dir / METRICS_FILE).read_text().splitlines():
        rec = json.loads(line)
        if rec.get("kind") == "train" and key in rec:
            value = rec[key]
    return value


def _record(it: Iteration, result: dict, refs: dict, labels_before: int, horizon) -> dict:
    """Round i's metrics record; no normalized score for returns of episodes cut short."""
    from offrl.envs.registry import normalized_score

    visits = it.visits
    return {
        "step": it.index,
        "kind": "dagger",
        "iteration": it.index,
        "beta": it.beta,
        "labels": len(it.data),
        "new_labels": len(it.data) - labels_before,
        "expert_acted_fraction": float(visits.expert_acted.mean()),
        "collect_return_mean": float(visits.returns.mean()),
        **result,
        "normalized_score": None
        if horizon is not None
        else normalized_score(result["return_mean"], refs["random"], refs["expert"]),
        "bc_loss": it.fit_info.get("bc_loss"),
        "eval_return": it.fit_info["summary"].get("final_return"),
        "bc_train_seconds": it.fit_info["summary"].get("train_seconds"),
    }


def _summary(cfg, env_id, snap, final, records, expert_result, started) -> dict:
    best = max(records, key=lambda r: r["return_mean"])
    return final | {
        "train_seconds": sum(r["bc_train_seconds"] or 0.0 for r in records),
        "wall_seconds": time.perf_counter() - started,
        "best_normalized_score": max(
            (r["normalized_score"] for r in records if r["normalized_score"] is not None),
            default=final.get("best_normalized_score"),
        ),
        "dagger": {
            **_jsonable(dataclasses.asdict(cfg)),
            "env_id": env_id,
            "expert": snap["file"],
            "expert_return_mean": expert_result["return_mean"],
            "expert_return_std": expert_result["return_std"],
            "labels": records[-1]["labels"],
            "final_return_mean": records[-1]["return_mean"],
            "final_action_mse": records[-1]["action_mse"],
            "final_disagreement": records[-1]["disagreement"],
            "best_iteration": best["iteration"],
            "best_return_mean": best["return_mean"],
        },
    }


def _jsonable(d: dict) -> dict:
    return json.loads(json.dumps(d, default=list))


def _plot(records: list[dict], path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels = [r["labels"] for r in records]
    fig, axes = plt.subplots(1, 2, figsize=(8.4, 3.4))
    axes[0].plot(labels, [r["return_mean"] for r in records], marker="o")
    axes[0].set_title("learner return")
    axes[1].plot(labels, [r["action_mse"] for r in records], marker="o")
    axes[1].set_title("action MSE vs expert (own states)")
    if all(r["action_mse"] > 0 for r in records):
        axes[1].set_yscale("log")
    for ax in axes:
        ax.set_xlabel("expert labels")
        ax.grid(alpha=0.3)
    fig.suptitle(title)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=90, format="png")
    plt.close(fig)
