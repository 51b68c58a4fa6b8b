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
