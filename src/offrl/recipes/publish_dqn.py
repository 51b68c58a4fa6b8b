"""Turn a finished online DQN run into committed policy files and a manifest entry.

Chosen snapshots (each snapshot's own evaluation: `eval_episodes` episodes at ε = 0.001):
    expert          the snapshot with the best evaluation return; among tied ones (CartPole
                    caps returns at 500) the one of best return measured again over
                    `episodes` episodes (the last TIED_CANDIDATES of them, ties to the later)
    noisy-snapshot  among the snapshots before the expert, the one whose evaluation return
                    is nearest `noisy_fraction` (default 1/2) of the way from the random
                    policy's return to the expert's: "partially trained"
Measured again over `episodes` (100) episodes from seed 10000 on: the uniform random policy
(the environment's random reference), the expert at ε = 0.001 (its expert reference), the
noisy snapshot at ε = 0.001 (the noise-free behaviour policy a method should beat) and at
ε = 0.2; the noisy-snapshot dataset's expected return is 0.2·R(0.001) + 0.8·R(0.2) (an
episode's ε is drawn before it starts, so the mixture's mean is the mixture of the means).
The replay is recorded by its step count, its digest (sha256 of its columns: regeneration
is checked against it) and the returns of its training episodes. The run's whole
configuration goes into the manifest: the `replay` recipe re-runs it.
Files go to offrl/recipes/policies/SLUG/dqn/.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import numpy as np

from offrl import recipes
from offrl.atomic import atomic_write_json
from offrl.behavior.online import CONFIG_FILE, SNAPSHOT_LOG, read_jsonl, snapshot_path
from offrl.behavior.online_dqn import SUMMARY_FILE, read_replay, replay_digest
from offrl.envs.rollout import env_spaces
from offrl.errors import ConfigError
from offrl.recipes import agents, discrete
from offrl.recipes.publish import copy_snapshot, measure

TIED_CANDIDATES = 5  # tied best snapshots measured again to choose the expert


def publish_dqn(
    run_dir: str | Path,
    slug: str,
    episodes: int = 100,
    noisy_fraction: float = discrete.NOISY_FRACTION,
) -> dict:
    """Copy the run's expert and noisy snapshots under agents.POLICY_DIR and record the
    environment's manifest entry (its agent, references and replay)."""
    run_dir = Path(run_dir)
    if slug not in recipes.ENVS:
        raise ConfigError(f"--env {slug!r}: choose one of {', '.join(recipes.ENVS)}")
    if not 0.0 < noisy_fraction < 1.0:
        raise ConfigError(f"noisy_fraction must be in (0, 1), got {noisy_fraction}")
    if not (run_dir / CONFIG_FILE).exists():
        raise ConfigError(f"{run_dir}: not a run directory (no {CONFIG_FILE})")
    config = json.loads((run_dir / CONFIG_FILE).read_text())
    env = recipes.ENVS[slug]
    if config["env_id"] != env.env_id:
        raise ConfigError(f"{run_dir}: trained in {config['env_id']}, not {env.env_id}")
    snapshots = read_jsonl(run_dir / SNAPSHOT_LOG)
    if not snapshots:
        raise ConfigError(f"{run_dir}: no snapshots to publish")
    replay = read_replay(run_dir)
    summary = json.loads((run_dir / SUMMARY_FILE).read_text())
    obs_space, act_space = env_spaces(env.env_id)
    agent = {
        "name": discrete.DQN,
        "algo": config["algo"],
        "algo_config": config["algo_config"],
        "seed": config["seed"],
        "steps": config["steps"],
        "obs_dim": int(obs_space.shape[0]),
        "num_actions": int(act_space.n),
        "run_config": config,
        "train_seconds": round(summary["seconds"], 1),  # wall time of the (last) session
    }
    n = agent["num_actions"]

    def measured(snap: dict, epsilon: float) -> dict:
        policy = discrete.greedy_policy(agent, snapshot_path(run_dir, snap["step"]))
        policy = discrete.epsilon_greedy_policy(policy, epsilon, n)
        return measure(env.env_id, policy, episodes)

    random_return = measure(env.env_id, discrete.uniform_discrete_policy(n), episodes)
    expert, expert_return = _expert(snapshots, lambda s: measured(s, discrete.EVAL_EPSILON))
    span = expert_return["mean"] - random_return["mean"]
    target = random_return["mean"] + noisy_fraction * span
    earlier = [s for s in snapshots if s["step"] < expert["step"]] or [expert]
    noisy = min(earlier, key=lambda s: abs(s["return_mean"] - target))
    noise_free = measured(noisy, discrete.LOW_NOISE_EPSILON)
    high_noise = measured(noisy, discrete.HIGH_NOISE_EPSILON)
    p = discrete.LOW_NOISE_P
    copy = lambda s: copy_snapshot(run_dir, s["step"], agents.POLICY_DIR, f"{slug}/dqn")  # noqa: E731
    agent["snapshots"] = {
        "expert": _snapshot(copy(expert), expert, expert_return),
        "noisy-snapshot": _snapshot(copy(noisy), noisy, noise_free)
        | {
            f"return_epsilon{discrete.HIGH_NOISE_EPSILON}": high_noise,
            "mixed_return_mean": p * noise_free["mean"] + (1 - p) * high_noise["mean"],
        },
    }
    agent["replay"] = {"steps": len(replay["rewards"]), "sha256": replay_digest(replay)}
    agent["replay"]["return"] = _episode_returns(replay)
    manifest_path = agents.POLICY_DIR / "manifest.json"
    manifest = json.loads(manifest_path.read_text()) if manifest_path.exists() else {}
    manifest[slug] = {
        "env_id": env.env_id,
        "agents": {discrete.DQN: agent},
        "random_return": random_return,
        "expert_return": expert_return,
    }
    atomic_write_json(manifest_path, manifest)
    recipes.manifest.cache_clear()
    return manifest[slug]


def _expert(snapshots: list[dict], measured: Callable[[dict], dict]) -> tuple[dict, dict]:
    """The snapshot of best evaluation return and its return measured again. Ties (CartPole's
    500 cap) go to the best measured return of the last TIED_CANDIDATES tied snapshots."""
    best = max(s["return_mean"] for s in snapshots)
    tied = [s for s in snapshots if s["return_mean"] == best][-TIED_CANDIDATES:]
    returns = [measured(s) for s in tied]
    i = max(range(len(tied)), key=lambda i: (returns[i]["mean"], tied[i]["step"]))
    return tied[i], returns[i]


def _snapshot(file: str, snap: dict, ret: dict) -> dict:
    return {"file": file, "step": snap["step"], "epsilon": discrete.EVAL_EPSILON, "return": ret}


def _episode_returns(cols: dict[str, np.ndarray]) -> dict:
    """Mean and std of the returns of the replay's episodes (the last may be cut short)."""
    ends = np.flatnonzero(cols["terminals"] | cols["timeouts"])
    starts = np.concatenate([[0], ends[:-1] + 1])
    returns = np.add.reduceat(cols["rewards"].astype(np.float64), starts)
    return {"mean": float(returns.mean()), "std": float(returns.std()), "episodes": len(returns)}
