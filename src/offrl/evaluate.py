"""Evaluation: a jitted, batched policy in lockstep gymnasium environments."""

from __future__ import annotations

import functools
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from offrl.envs.registry import normalized_score
from offrl.envs.rollout import BatchPolicy, rollout


@functools.lru_cache(maxsize=32)
def compiled_act(algo, cfg, deterministic: bool):
    """`algo.act` jitted once per (algorithm, config): every evaluation of a run reuses it."""
    return jax.jit(lambda state, obs, key: algo.act(cfg, state, obs, key, deterministic))


def jax_policy(algo, cfg, state: Any, deterministic: bool = True, seed: int = 0) -> BatchPolicy:
    """Wrap `algo.act` as a numpy batch policy."""
    act = compiled_act(algo, cfg, deterministic)
    key = jax.random.key(seed)

    def policy(obs: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        nonlocal key
        key, sub = jax.random.split(key)
        return np.asarray(act(state, jnp.asarray(obs, jnp.float32), sub))

    return policy


def evaluate(
    policy: BatchPolicy,
    env_id: str,
    episodes: int,
    seed: int,
    ref_min: float | None,
    ref_max: float | None,
) -> dict[str, float]:
    """Mean/std return over `episodes` and the normalized score when references are known."""
    returns = rollout(env_id, policy, episodes, seed=seed).returns
    result = {"return_mean": float(returns.mean()), "return_std": float(returns.std())}
    if ref_min is not None and ref_max is not None:
        result["normalized_score"] = normalized_score(float(returns.mean()), ref_min, ref_max)
    return result
