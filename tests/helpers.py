"""Synthetic data for tests."""

from __future__ import annotations

import numpy as np

from offrl.data.dataset import Dataset


def random_dataset(
    n: int = 200, obs_dim: int = 3, act_dim: int = 2, episode_len: int = 50, seed: int = 0
) -> Dataset:
    """Chained random transitions, episodes cut by timeouts, actions in [-1, 1]."""
    rng = np.random.default_rng(seed)
    obs = rng.normal(size=(n + 1, obs_dim)).astype(np.float32)
    timeouts = np.zeros(n, bool)
    timeouts[episode_len - 1 :: episode_len] = True
    return Dataset(
        observations=obs[:-1],
        actions=rng.uniform(-1, 1, size=(n, act_dim)).astype(np.float32),
        rewards=rng.normal(size=n).astype(np.float32),
        next_observations=obs[1:],
        terminals=np.zeros(n, bool),
        timeouts=timeouts,
        action_low=-np.ones(act_dim, np.float32),
        action_high=np.ones(act_dim, np.float32),
        env_id="Pendulum-v1" if (obs_dim, act_dim) == (3, 1) else None,
    )


def random_discrete_dataset(
    n: int = 200, obs_dim: int = 4, num_actions: int = 2, episode_len: int = 50, seed: int = 0
) -> Dataset:
    """Chained random transitions with uniform action indices 0..num_actions-1, (n, 1) int64;
    episodes cut by timeouts. obs_dim 4 with 2 actions names CartPole-v1."""
    rng = np.random.default_rng(seed)
    obs = rng.normal(size=(n + 1, obs_dim)).astype(np.float32)
    timeouts = np.zeros(n, bool)
    timeouts[episode_len - 1 :: episode_len] = True
    return Dataset(
        observations=obs[:-1],
        actions=rng.integers(0, num_actions, size=(n, 1)),
        rewards=rng.normal(size=n).astype(np.float32),
        next_observations=obs[1:],
        terminals=np.zeros(n, bool),
        timeouts=timeouts,
        env_id="CartPole-v1" if (obs_dim, num_actions) == (4, 2) else None,
        num_actions=num_actions,
    )
