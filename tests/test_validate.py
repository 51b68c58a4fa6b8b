import re

import numpy as np
import pytest

from offrl.data.dataset import Dataset
from offrl.data.validate import validate
from offrl.errors import DataError

SRC = "data.hdf5"


def make(n=20, obs_dim=3, act_dim=2, **changes) -> Dataset:
    rng = np.random.default_rng(0)
    obs = rng.normal(size=(n + 1, obs_dim))
    terminals = np.zeros(n)
    terminals[[i for i in (4, 5, 12) if i < n]] = 1  # index 5 is a length-one episode
    timeouts = np.zeros(n)
    timeouts[[i for i in (9,) if i < n]] = 1
    cols = dict(
        observations=obs[:-1],
        actions=rng.uniform(-1, 1, size=(n, act_dim)),
        rewards=rng.normal(size=n),
        next_observations=obs[1:],
        terminals=terminals,
        timeouts=timeouts,
        action_low=-np.ones(act_dim),
        action_high=np.ones(act_dim),
    )
    return Dataset(**(cols | changes))


def fails(ds: Dataset, *patterns: str, **kw) -> str:
    with pytest.raises(DataError) as info:
        validate(ds, SRC, **kw)
    msg = str(info.value)
    assert "\n" not in msg, msg
    assert msg.startswith(f"{SRC}: "), msg
    for pattern in patterns:
        assert re.search(pattern, msg), (pattern, msg)
    return msg


def test_valid_dataset_is_cast_and_keeps_length_one_episodes():
    ds = validate(make(), SRC)
    for name in ("observations", "actions", "rewards", "next_observations"):
        assert getattr(ds, name).dtype == np.float32
    assert ds.terminals.dtype == bool and ds.timeouts.dtype == bool
    assert ds.action_low.dtype == np.float32 and ds.action_high.dtype == np.float32
    assert ds.episode_ends.tolist() == [4, 5, 9, 12, 19]
    assert 1 in ds.episode_lengths()
    assert validate(make(n=1, terminals=np.ones(1)), SRC).num_episodes == 1
    # bool inputs and missing bounds are fine too
    assert validate(make(terminals=np.zeros(20, bool), action_low=None, action_high=None), SRC)


def test_nan_in_rewards_counts_and_locates():
    rewards = make().rewards.copy()
    rewards[[17, 18, 19]] = [np.nan, np.inf, -np.inf]
    fails(make(rewards=rewards), r"field 'rewards'", r"3 NaN/inf values \(first at index 17\)")


def test_inf_in_observations_names_row_and_column():
    obs = make().observations.copy()
    obs[6, 2] = np.inf
    fails(make(observations=obs), r"field 'observations'", r"1 NaN/inf", r"index 6, column 2")


def test_nan_in_next_observations_and_actions():
    nxt = make().next_observations.copy()
    nxt[3, 0] = np.nan
    fails(make(next_observations=nxt), r"field 'next_observations'", r"NaN/inf")
    acts = make().actions.copy()
    acts[2, 1] = np.nan
    fails(make(actions=acts), r"field 'actions'", r"NaN/inf")


def test_beyond_float32_range():
    rewards = make().rewards.copy()
    rewards[4] = 1e300
    fails(make(rewards=rewards), r"field 'rewards'", r"beyond the float32 range", r"index 4")


def test_length_mismatch():
    fails(make(actions=make().actions[:-1]), r"field 'actions'", r"length 19 != 20")
    fails(make(timeouts=np.zeros(21)), r"field 'timeouts'", r"length 21 != 20")


def test_wrong_dimensionality():
    fails(make(observations=np.zeros(20)), r"field 'observations'", r"expected 2-D", r"\(20,\)")
    fails(make(actions=np.zeros(20)), r"field 'actions'", r"expected 2-D \(N, act_dim\)")
    fails(make(rewards=np.zeros((20, 1))), r"field 'rewards'", r"expected 1-D", r"\(20, 1\)")
    fails(make(terminals=np.zeros((20, 1))), r"field 'terminals'", r"expected 1-D")
    fails(make(next_observations=np.zeros((20, 4))), r"field 'next_observations'", r"width 4")


def test_empty_dataset():
    fails(make(n=0), r"field 'observations'", r"empty dataset")


def test_non_numeric_and_missing_columns():
    fails(make(rewards=np.array(["a"] * 20)), r"field 'rewards'", r"not numeric")
    fails(make(timeouts=None), r"field 'timeouts'", r"missing")


def test_terminals_and_timeouts_must_be_zero_one():
    terminals = make().terminals.copy()
    terminals[[7, 8]] = 2
    fails(make(terminals=terminals), r"field 'terminals'", r"2 values other than 0/1", r"index 7")
    timeouts = make().timeouts.astype(float)
    timeouts[3] = 0.5
    fails(make(timeouts=timeouts), r"field 'timeouts'", r"other than 0/1", r"0\.5")


def test_actions_outside_bounds_name_count_and_worst():
    acts = make().actions.copy()
    acts[3, 1] = 1.5
    acts[11, 0] = -2.75
    msg = fails(make(actions=acts), r"field 'actions'", r"2 values outside the action bounds")
    assert "worst -2.75 at index 11, column 0" in msg
    assert "clip_actions" in msg


def test_clip_actions_is_opt_in_and_recorded():
    acts = make().actions.copy()
    acts[3, 1] = 1.5
    acts[11, 0] = -2.75
    ds = validate(make(actions=acts), SRC, clip_actions=True)
    assert ds.actions[3, 1] == 1.0 and ds.actions[11, 0] == -1.0
    assert ds.metadata["clipped_actions"] == 2
    assert ds.actions.min() >= -1 and ds.actions.max() <= 1
    # nothing to clip: metadata untouched
    assert "clipped_actions" not in validate(make(), SRC, clip_actions=True).metadata


def test_bad_bounds_and_ref_scores():
    fails(make(action_low=-np.ones(3)), r"field 'action_low'", r"shape \(3,\)")
    fails(make(action_high=np.array([1.0, np.inf])), r"field 'action_high'", r"NaN/inf")
    fails(make(action_low=np.array([-1.0, 2.0])), r"field 'action_low'", r"low 2 > high 1")
    fails(make(ref_min_score=float("nan")), r"field 'ref_min_score'", r"not finite")
    fails(make(ref_min_score=1.0, ref_max_score=1.0), r"field 'ref_max_score'", r"equals")


def test_source_with_newline_still_one_line():
    with pytest.raises(DataError) as info:
        validate(make(n=0), "odd\nname.npz")
    assert "\n" not in str(info.value)
