"""Episodes as the estimators see them, held-out splits, and batched application of a function
over a whole dataset."""

from __future__ import annotations

from collections.abc import Callable

import flax.struct
import jax
import jax.numpy as jnp
import numpy as np

from offrl.data.dataset import Dataset
from offrl.errors import DataError


@flax.struct.dataclass
class Trajectories:
    """Per-transition episode bookkeeping, on device. Episode i holds transitions
    starts[i]..ends[i]; `step` is t within the episode (0 at its first transition)."""

    rew: jnp.ndarray  # (N,) raw rewards (OPE values are in the dataset's reward units)
    terminal: jnp.ndarray  # (N,) 1.0 at true terminals (no bootstrap); timeouts are 0
    episode: jnp.ndarray  # (N,) int32 episode index
    step: jnp.ndarray  # (N,) int32 t
    first: jnp.ndarray  # (N,) bool, t == 0
    starts: jnp.ndarray  # (E,) int32
    ends: jnp.ndarray  # (E,) int32, inclusive
    num_episodes: int = flax.struct.field(pytree_node=False)
    horizon: int = flax.struct.field(pytree_node=False)  # the longest episode's length

    @classmethod
    def from_dataset(cls, dataset: Dataset) -> Trajectories:
        starts, ends = dataset.episode_starts, dataset.episode_ends
        lengths = ends - starts + 1
        episode = np.repeat(np.arange(len(starts)), lengths)
        step = np.arange(len(dataset)) - starts[episode]
        return cls(
            rew=jnp.asarray(dataset.rewards, jnp.float32),
            terminal=jnp.asarray(dataset.terminals, jnp.float32),
            episode=jnp.asarray(episode, jnp.int32),
            step=jnp.asarray(step, jnp.int32),
            first=jnp.asarray(step == 0),
            starts=jnp.asarray(starts, jnp.int32),
            ends=jnp.asarray(ends, jnp.int32),
            num_episodes=int(len(starts)),
            horizon=int(lengths.max()),
        )

    def episode_sum(self, x: jnp.ndarray) -> jnp.ndarray:
        """Σ over each episode's transitions: (N,) -> (E,)."""
        return jax.ops.segment_sum(x, self.episode, self.num_episodes, indices_are_sorted=True)

    def discounts(self, discount: float) -> jnp.ndarray:
        """γ^t per transition."""
        return jnp.asarray(discount, jnp.float32) ** self.step.astype(jnp.float32)


def episode_rows(dataset: Dataset, episodes: np.ndarray) -> np.ndarray:
    """Transition indices of the given episodes, in the given order."""
    starts, ends = dataset.episode_starts, dataset.episode_ends
    parts = [np.arange(starts[i], ends[i] + 1) for i in np.asarray(episodes, np.int64)]
    return np.concatenate(parts) if parts else np.zeros(0, np.int64)


def select_episodes(dataset: Dataset, episodes: np.ndarray) -> Dataset:
    """A dataset of the given episodes. An episode that ended with the data (neither terminal
    nor timeout on its last transition) is marked a timeout, so it stays one episode."""
    rows = episode_rows(dataset, episodes)
    cols = dataset.rows(rows)
    lengths = (dataset.episode_lengths())[np.asarray(episodes, np.int64)]
    last = np.cumsum(lengths) - 1
    cols["timeouts"] = cols["timeouts"].copy()
    cols["timeouts"][last[~cols["terminals"][last]]] = True
    return dataset.replace(**cols)


def split_episodes(
    dataset: Dataset, holdout_fraction: float, seed: int = 0
) -> tuple[Dataset, Dataset]:
    """(train, held-out): a random `holdout_fraction` of the episodes held out (at least one,
    and at least one left to train on), for OPE on episodes the policy never trained on."""
    n = dataset.num_episodes
    if not 0 < holdout_fraction < 1:
        raise DataError(f"holdout_fraction must be in (0, 1), got {holdout_fraction}")
    if n < 2:
        raise DataError(f"{dataset.name or 'dataset'}: {n} episode(s); a split needs at least 2")
    order = np.random.default_rng(seed).permutation(n)
    k = min(max(1, round(holdout_fraction * n)), n - 1)
    train, heldout = np.sort(order[k:]), np.sort(order[:k])
    return select_episodes(dataset, train), select_episodes(dataset, heldout)


def apply_batched(fn: Callable, *xs: jnp.ndarray, batch: int = 8192):
    """fn over the rows of xs in blocks of `batch` rows (lax.map, one compiled block), so a
    whole dataset goes through a network without one giant activation. The last block is
    padded with copies of the last row and the padding dropped."""
    n = xs[0].shape[0]
    if n <= batch:
        return fn(*xs)
    pad = (-n) % batch

    def blocks(x):
        x = jnp.concatenate([x, jnp.repeat(x[-1:], pad, axis=0)])
        return x.reshape(-1, batch, *x.shape[1:])

    out = jax.lax.map(lambda b: fn(*b), tuple(blocks(x) for x in xs))
    return jax.tree_util.tree_map(lambda y: y.reshape(-1, *y.shape[2:])[:n], out)
