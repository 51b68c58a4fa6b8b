"""The dataset on device with one copy of the observations (core.Transitions)."""

from __future__ import annotations

import warnings

import jax
import jax.numpy as jnp
import numpy as np

from offrl import core
from offrl.data.dataset import Dataset
from offrl.data.transforms import make_transforms


def episodes_dataset(broken_row: int | None = None) -> Dataset:
    """Two episodes of 4 and 3 steps; each episode's last next observation is its own row.
    `broken_row`: a row whose next observation is not the next row's observation."""
    rng = np.random.default_rng(0)
    states = rng.normal(size=(9, 2)).astype(np.float32)  # 5 + 4 states: 4 + 3 transitions
    obs = np.concatenate([states[0:4], states[5:8]])
    nxt = np.concatenate([states[1:5], states[6:9]])
    if broken_row is not None:
        nxt[broken_row] += 1.0
    n = len(obs)
    terminals, timeouts = np.zeros(n, bool), np.zeros(n, bool)
    terminals[3], timeouts[6] = True, True
    act = rng.uniform(-1, 1, (n, 1)).astype(np.float32)
    return Dataset(obs, act, np.arange(n, dtype=np.float32), nxt, terminals, timeouts)


def test_next_rows_point_at_the_next_row_within_an_episode_and_append_the_rest():
    ds = episodes_dataset()
    next_row, appended = core.next_rows(ds)
    # rows 0-2 -> 1-3; row 3 (episode end) -> appended 7; rows 4, 5 -> 5, 6; row 6 -> 8
    np.testing.assert_array_equal(next_row, [1, 2, 3, 7, 5, 6, 8])
    np.testing.assert_array_equal(appended, [3, 6])
    # a next observation that is not the next row's is appended too, in row order
    next_row, appended = core.next_rows(episodes_dataset(broken_row=1))
    np.testing.assert_array_equal(next_row, [1, 7, 3, 8, 5, 6, 9])
    np.testing.assert_array_equal(appended, [1, 3, 6])
    # blocks of 2 rows compare across block boundaries the same way
    np.testing.assert_array_equal(core.next_rows(ds, rows=2)[0], [1, 2, 3, 7, 5, 6, 8])


def test_transitions_hold_the_observations_once_and_sample_the_full_batch():
    ds = episodes_dataset(broken_row=1)
    tf = make_transforms(ds, normalize_obs=True)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # an undonated buffer would warn
        data = core.to_device_transitions(ds, tf)
    assert data.states.shape == (len(ds) + 3, 2)
    full = core.Batch(
        obs=tf.obs(jnp.asarray(ds.observations)),
        act=tf.action_to_unit(jnp.asarray(ds.actions)),
        rew=jnp.asarray(ds.rewards),
        next_obs=tf.obs(jnp.asarray(ds.next_observations)),
        done=jnp.asarray(ds.terminals, jnp.float32),
    )
    key = jax.random.key(3)
    got, want = core.sample(data, key, 64), core.sample(full, key, 64)
    for field in ("obs", "act", "rew", "next_obs", "done"):
        np.testing.assert_array_equal(getattr(got, field), getattr(want, field), err_msg=field)
    # to_device, the whole Batch, is the same rows
    np.testing.assert_array_equal(core.to_device(ds, tf).next_obs, full.next_obs)


def test_states_are_written_in_blocks_without_changing_a_value():
    ds = episodes_dataset()
    tf = make_transforms(ds, normalize_obs=True)
    sources = (ds.observations, ds.next_observations[[3, 6]])
    small = core._device_states(tf, sources, len(ds) + 2, 2, rows=3)
    whole = jnp.concatenate([tf.obs(jnp.asarray(s)) for s in sources])
    np.testing.assert_array_equal(small, whole)
