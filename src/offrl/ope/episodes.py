"""Episodes as the estimators see them, held-out splits, and batched application of a function
over a whole dataset."""

from __future__ import annotations

from collections.abc import Callable

import flax.struct
import jax
import jax.numpy as jnp
import numpy as np

from offrl.data.dataset import COLUMNS, Dataset
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


def select_episodes(dataset: Dataset, episodes: np.ndarray, in_place: bool = False) -> Dataset:
    """A dataset of the given episodes (sorted). An episode that ended with the data (neither
    terminal nor timeout on its last transition) is marked a timeout, so it stays one episode.

    in_place: move the selected rows to the front of the dataset's own arrays and return
    views of them, instead of copies (`compact_rows`); the dataset's arrays are overwritten.
    For a caller that owns the dataset and will not read it again."""
    rows = episode_rows(dataset, episodes)
    lengths = (dataset.episode_lengths())[np.asarray(episodes, np.int64)]  # before any move
    cols = compact_columns(dataset, rows) if in_place else dataset.rows(rows)
    last = np.cumsum(lengths) - 1
    cols["timeouts"] = cols["timeouts"].copy()
    cols["timeouts"][last[~cols["terminals"][last]]] = True
    return dataset.replace(**cols)


def compact_columns(dataset: Dataset, rows: np.ndarray) -> dict[str, np.ndarray]:
    """`dataset.rows(rows)` without copies where it can: each column's `rows` (sorted) moved
    to its front in place, and a view of them returned. A column that is read-only, or that
    shares memory with another (a view of one buffer), is copied instead."""
    arrays = {name: getattr(dataset, name) for name in COLUMNS}
    if dataset.behavior_log_probs is not None:
        arrays["behavior_log_probs"] = dataset.behavior_log_probs
    out = {}
    for name, arr in arrays.items():
        others = [a for n, a in arrays.items() if n != name]
        if arr.flags.writeable and not any(np.may_share_memory(arr, a) for a in others):
            out[name] = compact_rows(arr, rows)
        else:
            out[name] = arr[rows]
    return out


def compact_rows(arr: np.ndarray, rows: np.ndarray, block: int = 4096) -> np.ndarray:
    """arr[rows] for sorted, distinct `rows`, written over arr's first len(rows) rows; returns
    that view. Rows only move towards the front, in blocks of at most `block` rows, so no
    temporary is larger than a block."""
    n = rows.size
    if n == 0:
        return arr[:0]
    # Runs of consecutive rows: [first_row, length) each, moved in order.
    breaks = np.flatnonzero(np.diff(rows) != 1) + 1
    starts = rows[np.concatenate([[0], breaks])]
    lengths = np.diff(np.concatenate([[0], breaks, [n]]))
    dst = 0
    for src, length in zip(starts.tolist(), lengths.tolist()):
        if src != dst:
            for off in range(0, length, block):
                m = min(block, length - off)
                arr[dst + off : dst + off + m] = arr[src + off : src + off + m]
        dst += length
    return arr[:n]


def split_episodes(
    dataset: Dataset, holdout_fraction: float, seed: int = 0, in_place: bool = False
) -> tuple[Dataset, Dataset]:
    """(train, held-out): a random `holdout_fraction` of the episodes held out (at least one,
    and at least one left to train on), for OPE on episodes the policy never trained on.

    in_place: the train part is made in the dataset's own arrays (`select_episodes`), after
    the held-out part is copied out: the split then costs the held-out rows, not the
    training rows. For a caller that owns the dataset and will not read it again."""
    n = dataset.num_episodes
    if not 0 < holdout_fraction < 1:
        raise DataError(f"holdout_fraction must be in (0, 1), got {holdout_fraction}")
    if n < 2:
        raise DataError(f"{dataset.name or 'dataset'}: {n} episode(s); a split needs at least 2")
    order = np.random.default_rng(seed).permutation(n)
    k = min(max(1, round(holdout_fraction * n)), n - 1)
    train, heldout = np.sort(order[k:]), np.sort(order[:k])
    held = select_episodes(dataset, heldout)
    return select_episodes(dataset, train, in_place=in_place), held


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
