"""Collect a fixed number of transitions from a batched policy over lockstep environments.

Each of `num_envs` environments runs episodes back to back; episode k (numbered in the order
episodes start) is reset with a seed derived from (seed, k), so a collection is a function
of (policy, seed). Rows are written into preallocated arrays as they come and ordered by
episode at the end; the first `transitions` rows are kept and an episode cut by that limit
ends in a timeout (its value still bootstraps), as D4RL cuts its 1M-transition files.

A LoggingPolicy (one that returns (actions, log-probabilities)) adds the column
`behavior_log_probs`, the logged log π(a|s) of every row (D4RL's infos/action_log_probs).

Discrete action spaces: actions are stored (N, 1) int64 indices. `episode_epsilon(k)` makes
the policy ε-greedy with an ε fixed per episode (the discrete BCQ benchmark's noisy
snapshot): at every step of episode k, with probability ε(k) a uniformly random action
replaces the policy's (the random one may be the policy's own, DQN's convention).
"""

from __future__ import annotations

from collections.abc import Callable

import gymnasium as gym
import numpy as np

from offrl.behavior.online import episode_seed
from offrl.envs.rollout import BatchPolicy, LoggingPolicy, env_actions, make_env
from offrl.errors import OffrlError


def collect(
    env_id: str,
    policy: BatchPolicy | LoggingPolicy,
    transitions: int,
    seed: int,
    num_envs: int = 16,
    rng: np.random.Generator | None = None,
    episode_epsilon: Callable[[int], float] | None = None,
) -> dict[str, np.ndarray]:
    """Dataset columns of exactly `transitions` rows, episode by episode."""
    rng = rng or np.random.default_rng(seed)
    envs = [make_env(env_id) for _ in range(num_envs)]
    space = envs[0].action_space
    discrete = isinstance(space, gym.spaces.Discrete)
    if episode_epsilon is not None and not discrete:
        raise OffrlError(f"{env_id}: per-episode ε-greedy needs a Discrete action space")
    max_steps = envs[0].spec.max_episode_steps or 1000
    capacity = transitions + num_envs * max_steps  # every episode running at the stop finishes
    obs_dim = envs[0].observation_space.shape[0]
    act_dim, act_dtype = (1, np.int64) if discrete else (space.shape[0], np.float32)
    cols = {
        "observations": np.zeros((capacity, obs_dim), np.float32),
        "actions": np.zeros((capacity, act_dim), act_dtype),
        "rewards": np.zeros(capacity, np.float32),
        "next_observations": np.zeros((capacity, obs_dim), np.float32),
        "terminals": np.zeros(capacity, bool),
        "timeouts": np.zeros(capacity, bool),
        "behavior_log_probs": np.full(capacity, np.nan, np.float32),
    }
    logged = False
    episode_of_row = np.zeros(capacity, np.int64)
    episode_ids = list(range(num_envs))
    obs = np.stack(
        [env.reset(seed=episode_seed(seed, k))[0] for k, env in zip(episode_ids, envs)]
    ).astype(np.float32)
    started, rows, finished_rows = num_envs, 0, 0
    active = np.ones(num_envs, bool)
    length = np.zeros(num_envs, np.int64)  # rows of each environment's current episode
    while active.any():
        out = policy(obs, rng)
        if isinstance(out, tuple):
            out, log_probs = out
            logged = True
            if episode_epsilon is not None:
                raise OffrlError("an ε-greedy collection cannot log the policy's own densities")
        actions = env_actions(out, space, num_envs)
        if episode_epsilon is not None:
            epsilon = np.array([episode_epsilon(k) for k in episode_ids])
            explore = rng.random(num_envs) < epsilon
            actions = np.where(explore, rng.integers(0, space.n, num_envs), actions)
        for i in np.flatnonzero(active):
            next_obs, rew, term, trunc, _ = envs[i].step(actions[i])
            cols["observations"][rows] = obs[i]
            cols["actions"][rows] = actions[i]
            cols["rewards"][rows] = rew
            cols["next_observations"][rows] = next_obs
            cols["terminals"][rows], cols["timeouts"][rows] = term, trunc
            if logged:
                cols["behavior_log_probs"][rows] = log_probs[i]
            episode_of_row[rows] = episode_ids[i]
            rows += 1
            length[i] += 1
            obs[i] = next_obs
            if term or trunc:
                finished_rows += length[i]
                length[i] = 0
                if finished_rows >= transitions:
                    active[i] = False  # enough complete data; let the others finish theirs
                    continue
                episode_ids[i] = started
                obs[i] = envs[i].reset(seed=episode_seed(seed, started))[0]
                started += 1
    for env in envs:
        env.close()
    if not logged:
        del cols["behavior_log_probs"]
    order = np.argsort(episode_of_row[:rows], kind="stable")[:transitions]
    out = {k: v[order] for k, v in cols.items()}
    kept = episode_of_row[order]
    cut = np.append(kept[1:] != kept[:-1], True) & ~(out["terminals"] | out["timeouts"])
    out["timeouts"] |= cut  # the last kept row of a cut episode
    return out
