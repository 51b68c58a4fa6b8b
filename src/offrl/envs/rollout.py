"""Run a batch of gymnasium environments in lockstep with one batched policy.

Used by evaluation (returns only) and by dataset generation (returns + transitions).
Episode e is reset with seed `seed + e`, so results are reproducible.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import gymnasium as gym
import numpy as np

from offrl.errors import OffrlError

# policy(obs_batch (n, obs_dim), rng) -> actions (n, act_dim), environment units
BatchPolicy = Callable[[np.ndarray, np.random.Generator], np.ndarray]


@dataclass
class Rollouts:
    returns: np.ndarray  # (episodes,)
    lengths: np.ndarray  # (episodes,)
    transitions: dict[str, np.ndarray] | None = None  # Dataset columns, episode by episode


def make_env(env_id: str) -> gym.Env:
    try:
        return gym.make(env_id)
    except Exception as exc:  # gymnasium raises several types for unknown or broken ids
        raise OffrlError(f"environment {env_id!r}: cannot be made ({exc})") from None


def rollout(
    env_id: str,
    policy: BatchPolicy,
    episodes: int,
    seed: int = 0,
    num_envs: int = 10,
    record: bool = False,
) -> Rollouts:
    """Run `episodes` full episodes, `num_envs` at a time, and collect their returns."""
    rng = np.random.default_rng(seed)
    envs = [make_env(env_id) for _ in range(min(num_envs, episodes))]
    returns, lengths, steps = [], [], []
    for start in range(0, episodes, len(envs)):
        batch = envs[: min(len(envs), episodes - start)]
        r, n, s = _run_group(
            batch, policy, [seed + start + i for i in range(len(batch))], rng, record
        )
        returns += r
        lengths += n
        steps += s
    for env in envs:
        env.close()
    transitions = _stack(steps) if record else None
    return Rollouts(np.array(returns), np.array(lengths), transitions)


def _run_group(envs, policy, seeds, rng, record):
    obs = np.stack([env.reset(seed=s)[0] for env, s in zip(envs, seeds)]).astype(np.float32)
    alive = np.ones(len(envs), bool)
    returns, lengths = np.zeros(len(envs)), np.zeros(len(envs), np.int64)
    per_env = [[] for _ in envs]
    while alive.any():
        actions = np.asarray(policy(obs, rng), np.float32)
        for i in np.flatnonzero(alive):
            next_obs, rew, term, trunc, _ = envs[i].step(actions[i])
            returns[i] += rew
            lengths[i] += 1
            if record:
                per_env[i].append((obs[i].copy(), actions[i], rew, next_obs, term, trunc))
            obs[i] = next_obs
            alive[i] = not (term or trunc)
    return list(returns), list(lengths), [t for env_steps in per_env for t in env_steps]


def _stack(steps) -> dict[str, np.ndarray]:
    obs, act, rew, next_obs, term, trunc = zip(*steps)
    return {
        "observations": np.array(obs, np.float32),
        "actions": np.array(act, np.float32),
        "rewards": np.array(rew, np.float32),
        "next_observations": np.array(next_obs, np.float32),
        "terminals": np.array(term, bool),
        "timeouts": np.array(trunc, bool),
    }
