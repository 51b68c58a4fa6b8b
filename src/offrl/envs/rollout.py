"""Run a batch of gymnasium environments in lockstep with one batched policy.

Used by evaluation and by the behaviour agents' measurements (offrl.recipes.collect
gathers dataset transitions). Episode e is reset with seed `seed + e`, so results are
reproducible.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass

import gymnasium as gym
import numpy as np

from offrl.errors import OffrlError

# policy(obs_batch (n, obs_dim), rng) -> actions (n, act_dim), environment units; for a
# Discrete action space, (n,) integer actions
BatchPolicy = Callable[[np.ndarray, np.random.Generator], np.ndarray]
# A policy of the history (the Decision Transformer) is a BatchPolicy with two more methods:
# `reset(n)` before n episodes start and `observe(rewards)` after every step, (n,) rewards
# the last actions earned. `rollout` calls them when the policy has them.
# a behaviour policy that also says log π(a|s) of the actions it took, in environment units
# (NaN where it has no density): what the recipes log for importance sampling
LoggingPolicy = Callable[[np.ndarray, np.random.Generator], tuple[np.ndarray, np.ndarray]]


@dataclass
class Rollouts:
    returns: np.ndarray  # (episodes,)
    lengths: np.ndarray  # (episodes,)
    discounted: np.ndarray  # (episodes,) Σ_t γ^t r_t with rollout's `discount` (1: = returns)


def make_env(env_id: str) -> gym.Env:
    try:
        return gym.make(env_id)
    except Exception as exc:  # gymnasium raises several types for unknown or broken ids
        raise OffrlError(f"environment {env_id!r}: cannot be made ({exc})") from None


@functools.cache
def env_spaces(env_id: str) -> tuple[gym.Space, gym.Space]:
    """(observation space, action space) of an environment id, made once."""
    env = make_env(env_id)
    env.close()
    return env.observation_space, env.action_space


def env_actions(actions, space: gym.Space, n: int) -> np.ndarray:
    """A policy's output as the environment takes it: float32 rows for a Box; for a Discrete
    space one int64 per environment (gymnasium's Discrete refuses floats), checked against
    the space so that a bad action fails naming its value."""
    if isinstance(space, gym.spaces.Discrete):
        out = np.asarray(actions).reshape(-1)
        if out.shape != (n,) or out.dtype.kind not in "iu":
            raise OffrlError(
                f"a policy for {space} must return {n} integer actions, got "
                f"dtype {out.dtype} shape {np.shape(actions)}"
            )
        low, high = int(space.start), int(space.start + space.n - 1)
        if np.any((out < low) | (out > high)):
            bad = out[(out < low) | (out > high)][0]
            raise OffrlError(f"a policy for {space} returned action {bad}, outside [{low}, {high}]")
        return out.astype(np.int64)
    return np.asarray(actions, np.float32)


def rollout(
    env_id: str,
    policy: BatchPolicy,
    episodes: int,
    seed: int = 0,
    num_envs: int = 10,
    discount: float = 1.0,
) -> Rollouts:
    """Run `episodes` full episodes, `num_envs` at a time, and collect their returns (and
    their returns discounted by `discount`, the true values that OPE estimates)."""
    rng = np.random.default_rng(seed)
    envs = [make_env(env_id) for _ in range(min(num_envs, episodes))]
    groups = []
    for start in range(0, episodes, len(envs)):
        batch = envs[: min(len(envs), episodes - start)]
        seeds = [seed + start + i for i in range(len(batch))]
        groups.append(_run_group(batch, policy, seeds, rng, discount))
    for env in envs:
        env.close()
    returns, lengths, discounted = (np.concatenate(col) for col in zip(*groups))
    return Rollouts(returns, lengths, discounted)


def _run_group(envs, policy, seeds, rng, discount: float):
    obs = np.stack([env.reset(seed=s)[0] for env, s in zip(envs, seeds)]).astype(np.float32)
    alive = np.ones(len(envs), bool)
    returns, discounted = np.zeros(len(envs)), np.zeros(len(envs))
    lengths = np.zeros(len(envs), np.int64)
    if hasattr(policy, "reset"):
        policy.reset(len(envs))
    while alive.any():
        actions = env_actions(policy(obs, rng), envs[0].action_space, len(envs))
        earned = np.zeros(len(envs), np.float32)
        for i in np.flatnonzero(alive):
            next_obs, rew, term, trunc, _ = envs[i].step(actions[i])
            earned[i] = rew
            returns[i] += rew
            discounted[i] += discount ** lengths[i] * rew
            lengths[i] += 1
            obs[i] = next_obs
            alive[i] = not (term or trunc)
        if hasattr(policy, "observe"):
            policy.observe(earned)
    return returns, lengths, discounted
