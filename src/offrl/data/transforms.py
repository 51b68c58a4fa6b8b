"""Transforms between the dataset/environment and what the networks see.

Observations are standardized with the dataset's mean and std (when the algorithm asks), a
column constant in the data only centred; actions are mapped from the environment's bounds
to [-1, 1], and rewards may be scaled.
The transforms are part of every algorithm's saved state, so a loaded checkpoint acts
exactly as it did in training. Discrete actions are not transformed: they stay action
indices (core.to_device), discrete algorithms return indices from `act`, and act_low/act_high
hold only the index range [0, n - 1].
"""

from __future__ import annotations

import flax.struct
import jax.numpy as jnp
import numpy as np

from offrl.data.dataset import Dataset


@flax.struct.dataclass
class Transforms:
    obs_mean: jnp.ndarray  # (obs_dim,)
    obs_std: jnp.ndarray  # (obs_dim,)
    act_low: jnp.ndarray  # (act_dim,) environment bounds
    act_high: jnp.ndarray  # (act_dim,)
    reward_scale: jnp.ndarray  # ()
    reward_shift: jnp.ndarray  # ()

    def obs(self, obs: jnp.ndarray) -> jnp.ndarray:
        return (obs - self.obs_mean) / self.obs_std

    def _act_span(self) -> jnp.ndarray:
        # A dimension with low == high (a constant action) maps to -1 instead of NaN.
        return jnp.where(self.act_high > self.act_low, self.act_high - self.act_low, 1.0)

    def action_to_unit(self, act: jnp.ndarray) -> jnp.ndarray:
        """Environment action -> [-1, 1]."""
        return 2.0 * (act - self.act_low) / self._act_span() - 1.0

    def action_to_env(self, unit: jnp.ndarray) -> jnp.ndarray:
        """[-1, 1] -> environment action (low itself for a constant dimension)."""
        span = jnp.where(self.act_high > self.act_low, self.act_high - self.act_low, 0.0)
        return self.act_low + (unit + 1.0) * 0.5 * span

    def reward(self, rew: jnp.ndarray) -> jnp.ndarray:
        return rew * self.reward_scale + self.reward_shift


def unit_log_jacobian(low, high) -> float:
    """Σ_j log((high_j - low_j) / 2) over dimensions with high > low: log p_unit(u) =
    log p_env(a) + this, for a = action_to_env(u). Host-side (numpy)."""
    half = (np.asarray(high, np.float64) - np.asarray(low, np.float64)) / 2.0
    return float(np.sum(np.log(half[half > 0])))


BLOCK_ELEMENTS = 1 << 21  # a float64 temporary of a block: 16 MiB


def block_rows(width: int, rows: int | None = None) -> int:
    """Rows per block of a pass over an array of `width` elements a row: `rows`, or as many
    as BLOCK_ELEMENTS hold, so that a pass's temporaries stay small whatever the width (a
    65,536-row block of 600 float64 columns, and the deviations and squares of it, held
    0.9 GiB)."""
    return rows or max(1, BLOCK_ELEMENTS // max(1, width))


def column_mean_std(x: np.ndarray, rows: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Per-column mean and (population) standard deviation in float64, accumulated over
    blocks of rows (`block_rows`): a float64 copy of a large dataset's observations (1M x 600
    floats: 4.8 GB, plus as much again for the deviations) is never made."""
    n, rows = len(x), block_rows(int(np.prod(x.shape[1:])), rows)
    total = np.zeros(x.shape[1:], np.float64)
    for start in range(0, n, rows):
        total += x[start : start + rows].sum(axis=0, dtype=np.float64)
    mean = total / n
    squares = np.zeros_like(mean)
    for start in range(0, n, rows):
        deviation = x[start : start + rows].astype(np.float64) - mean
        squares += np.square(deviation).sum(axis=0)
    return mean, np.sqrt(squares / n)


def constant_columns(x: np.ndarray, rows: int | None = None) -> np.ndarray:
    """(obs_dim,) bool: the columns whose every value equals the first row's, in blocks."""
    constant, rows = np.ones(x.shape[1:], bool), block_rows(int(np.prod(x.shape[1:])), rows)
    for start in range(0, len(x), rows):
        constant &= (x[start : start + rows] == x[0]).all(axis=0)
    return constant


def make_transforms(
    dataset: Dataset, normalize_obs: bool, reward_scaling: str = "none", eps: float = 1e-3
) -> Transforms:
    """Build the transforms from dataset statistics.

    normalize_obs: (x - mean) / (std + eps) per column, except a column constant in the
    data, which is only centred (its std is 1): in the data it is 0 either way, but a value
    the data never held (a MinAtar cell the data never lit, lit at evaluation) would enter
    at 1/eps = 1000 times its change. A column the data varies keeps 1 / (std + eps),
    however rare its changes (a cell lit with frequency p enters at about 1/sqrt(p)):
    flooring a binary column's std at 0.1 cost BC 8 points on Space Invaders, and raw grids
    (the references' input) were worse still (issue 21; docs/datasets.md, "Binary
    observations").

    reward_scaling: "none"; or "return_range", IQL's locomotion recipe
    r * 1000 / (max episode return - min episode return).
    """
    if normalize_obs:
        mean, std = column_mean_std(dataset.observations)
        std = np.where(constant_columns(dataset.observations), 1.0, std + eps)
    else:
        mean, std = np.zeros(dataset.obs_dim), np.ones(dataset.obs_dim)
    scale = 1.0
    if reward_scaling == "return_range":
        returns = dataset.episode_returns()
        spread = float(returns.max() - returns.min())
        scale = 1000.0 / spread if spread > 0 else 1.0
    elif reward_scaling != "none":
        raise ValueError(f"reward_scaling must be 'none' or 'return_range', got {reward_scaling!r}")
    low, high = dataset.bounds()
    f32 = lambda x: jnp.asarray(x, jnp.float32)  # noqa: E731
    return Transforms(f32(mean), f32(std), f32(low), f32(high), f32(scale), f32(0.0))
