"""BAIL: the envelope's penalty loss, the returns of cut episodes and the ratio selection by
hand, the envelope lying above the returns, and a run's selection record."""

from __future__ import annotations

import json

import jax.numpy as jnp
import numpy as np
import pytest
from helpers import random_dataset

import offrl
from offrl.algos import bail
from offrl.data import io

SMALL = {"hidden": (8, 8), "batch_size": 16, "envelope_hidden": (16, 16), "envelope_epochs": 5}


def test_envelope_loss_weighs_the_rows_below_by_k():
    identity = lambda params, obs: obs  # noqa: E731  V(s) = s
    # V = (1, 3), G = (2, 2), K = 10: row 0 below, 10 · 1²; row 1 above, 1² -> mean 5.5
    loss, m = bail.envelope_loss(None, identity, jnp.array([1.0, 3.0]), jnp.array([2.0, 2.0]), 10.0)
    assert float(loss) == pytest.approx(5.5) and float(m["below_fraction"]) == 0.5


def test_selection_keeps_the_share_with_the_highest_return_to_envelope_ratio():
    rows, x = bail.select_by_ratio(np.array([1.0, 2.0, 3.0, 4.0]), np.full(4, 2.0), 0.5)
    assert rows.tolist() == [2, 3] and x == pytest.approx(1.5)  # G / V = 0.5, 1, 1.5, 2
    rows, x = bail.select_by_ratio(
        np.array([4.0, 1.0, 3.0, 2.0]), np.array([4.0, 1.0, 6.0, 1.0]), 0.25
    )
    assert rows.tolist() == [3] and x == pytest.approx(2.0)  # ratios 1, 1, 0.5, 2


def three_step_episodes(cut: bool):
    """An episode of 3 steps (rewards 1, 2, 4; states 0, 5, 1 on one axis) ending in a
    timeout when `cut`, else in a terminal."""
    ds = random_dataset(n=3, obs_dim=1, act_dim=1, episode_len=3)
    obs = np.array([[0.0], [5.0], [1.0]], np.float32)
    flags = np.array([0, 0, 1], bool)
    return ds.replace(
        observations=obs,
        next_observations=obs,
        rewards=np.array([1, 2, 4], np.float32),
        timeouts=flags & cut,
        terminals=flags & (not cut),
    )


def test_returns_of_an_episode_cut_by_a_timeout_are_augmented_as_the_reference():
    # γ = 0.5: G = (3, 4, 4). The last state s_2 = 1 is nearest s_0 (distance 1) among the
    # first two states, and is itself nearest among all three.
    # t = 2: m = 0 within s_0..s_1; tail = G_0 - γ² G_2 = 2 (the horizon stays 3): 4 + 0.5 · 2
    # t = 1: m = 2 among s_0..s_2; the cut lies past the end: 4 + 0.25 · G_2 = 5
    g = bail.augmented_returns(three_step_episodes(cut=True), 0.5)
    np.testing.assert_allclose(g, [3.0, 5.0, 5.0])
    terminal = bail.augmented_returns(three_step_episodes(cut=False), 0.5)
    np.testing.assert_allclose(terminal, [3.0, 4.0, 4.0])  # a terminal ends the return
    np.testing.assert_allclose(
        bail.augmented_returns(three_step_episodes(True), 0.5, False), [3, 4, 4]
    )


def positive_returns_dataset(n=400):
    ds = random_dataset(n=n, obs_dim=3, act_dim=1, episode_len=50)
    return ds.replace(rewards=np.abs(ds.rewards) + 0.1)


def test_the_envelope_lies_above_almost_every_return_and_the_selection_is_deterministic():
    ds = positive_returns_dataset()
    cfg = bail.Config(**(SMALL | {"envelope_epochs": 30}))
    rows, info = bail.select_rows(cfg, ds)
    again, _ = bail.select_rows(cfg, ds)
    np.testing.assert_array_equal(rows, again)
    assert info["below_envelope_fraction"] < 0.2  # K = 1000 pushes V above G
    assert abs(info["kept_fraction"] - 0.25) < 0.01
    assert info["kept_return_mean"] > info["return_mean"]


def test_a_run_trains_on_the_selected_pairs_and_logs_the_selection(tmp_path):
    path = str(io.write_npz(positive_returns_dataset(), tmp_path / "log.npz"))
    out = tmp_path / "run"
    offrl.train(
        "bail", path, steps=20, out=out, overrides=SMALL, eval_every=20, chunk_size=10,
        eval_episodes=1, progress=False,
    )  # fmt: skip
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    selection = next(r for r in records if r.get("kind") == "selection")
    assert selection["of"] == 400 and selection["rows"] == pytest.approx(100, abs=2)
    assert offrl.load_policy(out).algo is bail


def test_bad_settings_are_refused():
    with pytest.raises(ValueError, match="select_ratio"):
        bail.check(bail.Config(select_ratio=0.0))
    with pytest.raises(ValueError, match="penalty"):
        bail.check(bail.Config(penalty=0.5))
