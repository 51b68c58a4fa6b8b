"""Dataset: episode bounds, returns and the info report."""

from __future__ import annotations

import numpy as np
import pytest

from offrl.data.dataset import Dataset


def tiny() -> Dataset:
    # Episodes: [0, 1] ends in a terminal, [2] is length one (timeout), [3, 4] runs off the end.
    n = 5
    return Dataset(
        observations=np.arange(n, dtype=np.float32)[:, None],
        actions=np.zeros((n, 1), np.float32),
        rewards=np.array([1, 2, 3, 4, 5], np.float32),
        next_observations=np.arange(1, n + 1, dtype=np.float32)[:, None],
        terminals=np.array([0, 1, 0, 0, 0], bool),
        timeouts=np.array([0, 0, 1, 0, 0], bool),
        ref_min_score=0.0,
        ref_max_score=10.0,
    )


def test_episode_bounds_lengths_and_returns():
    ds = tiny()
    np.testing.assert_array_equal(ds.episode_starts, [0, 2, 3])
    np.testing.assert_array_equal(ds.episode_ends, [1, 2, 4])
    np.testing.assert_array_equal(ds.episode_lengths(), [2, 1, 2])
    np.testing.assert_array_equal(ds.episode_returns(), [3, 3, 9])


def test_info_reports_statistics_and_normalized_return():
    info = tiny().info()
    assert info["transitions"] == 5 and info["episodes"] == 3
    assert info["return_mean"] == pytest.approx(5.0) and info["return_max"] == 9.0
    assert info["episode_length_min"] == 1
    assert info["normalized_return_mean"] == pytest.approx(50.0)  # 100 · (5 − 0) / (10 − 0)
    assert tiny().replace(ref_min_score=None).info()["normalized_return_mean"] is None


def test_concatenate_keeps_episodes():
    both = Dataset.concatenate([tiny(), tiny()], name="two")
    assert len(both) == 10 and both.num_episodes == 6 and both.name == "two"
