"""The in-memory dataset: columnar numpy arrays of transitions plus episode bounds.

A transition i is (observations[i], actions[i], rewards[i], next_observations[i],
terminals[i], timeouts[i]). An episode ends at every i where terminals[i] or timeouts[i]
is set, and at the last transition. Terminals stop bootstrapping; timeouts do not
(the value of next_observations[i] is still used as the target's bootstrap state).

Discrete actions: `num_actions` n > 0 marks the data as discrete; `actions` is then (N, 1)
holding action indices 0..n-1 (int64 once validated) and there are no action bounds.
`num_actions = 0` means continuous actions, (N, act_dim) floats.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

import numpy as np
from scipy.signal import lfilter

from offrl.errors import DataError

COLUMNS = ("observations", "actions", "rewards", "next_observations", "terminals", "timeouts")


@dataclass(frozen=True)
class Dataset:
    observations: np.ndarray  # (N, obs_dim) float32
    actions: np.ndarray  # (N, act_dim) float32; discrete: (N, 1) int64 indices 0..n-1
    rewards: np.ndarray  # (N,) float32
    next_observations: np.ndarray  # (N, obs_dim) float32
    terminals: np.ndarray  # (N,) bool: the episode ended in a terminal state (no bootstrap)
    timeouts: np.ndarray  # (N,) bool: the episode was cut by a time limit (bootstrap)
    name: str = ""
    env_id: str | None = None  # gymnasium id to evaluate in, when the source names one
    # Action-space bounds of the environment; None means "use the data's min/max".
    action_low: np.ndarray | None = None
    action_high: np.ndarray | None = None
    # Reference returns for the normalized score (random, expert), when the source has them.
    ref_min_score: float | None = None
    ref_max_score: float | None = None
    metadata: dict = field(default_factory=dict)
    num_actions: int = 0  # n of a Discrete action space; 0 for continuous actions
    # (N,) float32 log μ(a_t|s_t) of the logged actions under the behaviour policy (D4RL's
    # infos/action_log_probs), for off-policy evaluation; None when the log has none (NaN
    # rows: a transition whose behaviour had no density).
    behavior_log_probs: np.ndarray | None = None

    @property
    def discrete(self) -> bool:
        return self.num_actions > 0

    def __len__(self) -> int:
        return int(self.rewards.shape[0])

    @property
    def obs_dim(self) -> int:
        return int(self.observations.shape[1])

    @property
    def act_dim(self) -> int:
        return int(self.actions.shape[1])

    @property
    def episode_ends(self) -> np.ndarray:
        """Indices (inclusive) of the last transition of each episode."""
        ends = np.flatnonzero(self.terminals | self.timeouts)
        if len(self) and (ends.size == 0 or ends[-1] != len(self) - 1):
            ends = np.append(ends, len(self) - 1)
        return ends

    @property
    def episode_starts(self) -> np.ndarray:
        return np.concatenate([[0], self.episode_ends[:-1] + 1]).astype(np.int64)

    @property
    def num_episodes(self) -> int:
        return int(self.episode_ends.size)

    def episode_lengths(self) -> np.ndarray:
        return self.episode_ends - self.episode_starts + 1

    def episode_returns(self) -> np.ndarray:
        sums = np.add.reduceat(self.rewards.astype(np.float64), self.episode_starts)
        return sums if len(self) else np.zeros(0)

    def returns_to_go(self, discount: float) -> np.ndarray:
        """Σ_{k>=0} γ^k r_{t+k} to the end of t's episode, per transition (float64).
        An episode cut by a timeout is summed to its cut, with no bootstrap beyond it."""
        out = np.zeros(len(self))
        rewards = self.rewards.astype(np.float64)
        for start, end in zip(self.episode_starts, self.episode_ends):
            # y[t] = r[t] + γ y[t+1], run backwards as a first-order IIR filter.
            backwards = rewards[start : end + 1][::-1]
            out[start : end + 1] = lfilter([1.0], [1.0, -discount], backwards)[::-1]
        return out

    def bounds(self) -> tuple[np.ndarray, np.ndarray]:
        """Action bounds: the environment's when known, else the data's range; for discrete
        data the index range [0, n - 1]."""
        if self.discrete:
            return np.zeros(1, np.float32), np.full(1, self.num_actions - 1, np.float32)
        low = self.action_low if self.action_low is not None else self.actions.min(axis=0)
        high = self.action_high if self.action_high is not None else self.actions.max(axis=0)
        return np.asarray(low, np.float32), np.asarray(high, np.float32)

    def replace(self, **changes) -> Dataset:
        return dataclasses.replace(self, **changes)

    @classmethod
    def concatenate(cls, parts: list[Dataset], **fields) -> Dataset:
        """Join datasets episode-wise; the first part supplies env and bounds by default."""
        first = parts[0]
        kinds = {p.num_actions for p in parts}
        if len(kinds) > 1:
            raise DataError(
                f"cannot concatenate datasets with different action spaces (num_actions "
                f"{', '.join(map(str, sorted(kinds)))}; 0 means continuous)"
            )
        cols = {c: np.concatenate([getattr(p, c) for p in parts]) for c in COLUMNS}
        if any(p.behavior_log_probs is not None for p in parts):  # parts without: NaN rows
            cols["behavior_log_probs"] = np.concatenate([p.log_probs_or_nan() for p in parts])
        # A part's last episode ends with the part: mark it, or it would run into the next.
        lengths = np.array([len(p) for p in parts])
        part_ends = (np.cumsum(lengths) - 1)[lengths > 0]
        open_ends = part_ends[~(cols["terminals"][part_ends] | cols["timeouts"][part_ends])]
        cols["timeouts"] = cols["timeouts"].copy()
        cols["timeouts"][open_ends] = True
        keep = dict(
            env_id=first.env_id,
            action_low=first.action_low,
            action_high=first.action_high,
            num_actions=first.num_actions,
        )
        return cls(**cols, **(keep | fields))

    def subset(self, rows: np.ndarray) -> Dataset:
        """The transitions at `rows` (sorted indices), every per-transition column kept. A
        selection of whole episodes keeps its episodes; any other selection keeps rows, not
        episodes (what transition-level learners such as BC read), and its last row is closed
        as a timeout so that nothing runs past the end."""
        rows = np.asarray(rows, np.int64)
        cols = self.rows(rows)
        if rows.size and not (cols["terminals"][-1] or cols["timeouts"][-1]):
            cols["timeouts"] = cols["timeouts"].copy()
            cols["timeouts"][-1] = True
        return self.replace(**cols)

    def log_probs_or_nan(self) -> np.ndarray:
        if self.behavior_log_probs is not None:
            return np.asarray(self.behavior_log_probs, np.float32)
        return np.full(len(self), np.nan, np.float32)

    def complete_log_probs(self) -> np.ndarray | None:
        """The logged behaviour log-probabilities when every row has one, else None (OPE then
        fits a behaviour model, and says so)."""
        lp = self.behavior_log_probs
        return None if lp is None or np.isnan(lp).any() else lp

    def rows(self, index: np.ndarray) -> dict[str, np.ndarray]:
        """The per-transition columns at `index` (behaviour log-probabilities included)."""
        cols = {c: getattr(self, c)[index] for c in COLUMNS}
        if self.behavior_log_probs is not None:
            cols["behavior_log_probs"] = self.behavior_log_probs[index]
        return cols

    def info(self) -> dict:
        """Summary statistics for `offrl data info`."""
        returns, lengths = self.episode_returns(), self.episode_lengths()
        low, high = self.bounds()
        return {
            "name": self.name,
            "env_id": self.env_id,
            "transitions": len(self),
            "episodes": self.num_episodes,
            "terminals": int(self.terminals.sum()),
            "timeouts": int(self.timeouts.sum()),
            "return_mean": float(returns.mean()),
            "return_std": float(returns.std()),
            "return_min": float(returns.min()),
            "return_max": float(returns.max()),
            "return_quartiles": np.percentile(returns, [25, 50, 75]).round(2).tolist(),
            "episode_length_mean": float(lengths.mean()),
            "episode_length_min": int(lengths.min()),
            "episode_length_max": int(lengths.max()),
            "obs_shape": list(self.observations.shape[1:]),
            "action_shape": list(self.actions.shape[1:]),
            "num_actions": self.num_actions,
            "obs_min": self.observations.min(axis=0).round(4).tolist(),
            "obs_max": self.observations.max(axis=0).round(4).tolist(),
            "action_low": low.round(4).tolist(),
            "action_high": high.round(4).tolist(),
            "ref_min_score": self.ref_min_score,
            "ref_max_score": self.ref_max_score,
            "ref_source": (self.metadata.get("references") or {}).get("source"),
            "normalized_return_mean": self.normalized_return_mean(),
            "behavior_log_probs": _log_prob_summary(self.behavior_log_probs),
        }

    def normalized_return_mean(self) -> float | None:
        """The dataset's mean episode return on the normalized scale, when references exist."""
        if self.ref_min_score is None or self.ref_max_score is None or not len(self):
            return None
        span = self.ref_max_score - self.ref_min_score
        return float(100.0 * (self.episode_returns().mean() - self.ref_min_score) / span)


def _log_prob_summary(log_probs: np.ndarray | None) -> str:
    if log_probs is None:
        return "none (OPE fits a behaviour model)"
    missing = int(np.isnan(log_probs).sum())
    return f"logged ({missing} of {log_probs.size} rows without)" if missing else "logged"
