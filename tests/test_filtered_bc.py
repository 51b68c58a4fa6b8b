"""Filtered BC (%BC), continuous and discrete: the episode filter by hand, the transforms
fitted to the kept rows, the selection record of a run, and a fraction that keeps nothing."""

from __future__ import annotations

import json

import numpy as np
import pytest
from helpers import random_dataset, random_discrete_dataset

import offrl
from offrl.algos import filtered_bc, filtered_bc_discrete
from offrl.data import io
from offrl.errors import ConfigError

SMALL = {"hidden": (8, 8), "batch_size": 16}


def four_episodes(rewards_per_episode=(1.0, 5.0, 3.0, 5.0), length=3):
    """4 episodes of `length` steps; episode e pays rewards_per_episode[e] / length per step."""
    ds = random_dataset(n=4 * length, obs_dim=3, act_dim=1, episode_len=length)
    rewards = np.repeat(np.asarray(rewards_per_episode, np.float32) / length, length)
    return ds.replace(rewards=rewards)


def test_best_episodes_keeps_the_top_fraction_by_return_ties_to_the_earlier():
    ds = four_episodes()  # returns 1, 5, 3, 5
    rows, info = filtered_bc.best_episodes(ds, fraction=0.5, discount=1.0)
    np.testing.assert_array_equal(rows, [3, 4, 5, 9, 10, 11])  # episodes 1 and 3
    assert info["episodes"] == 2 and info["of_episodes"] == 4
    assert info["return_threshold"] == pytest.approx(5.0)
    rows, _ = filtered_bc.best_episodes(ds, fraction=0.25, discount=1.0)
    np.testing.assert_array_equal(rows, [3, 4, 5])  # the tie goes to the earlier episode
    rows, info = filtered_bc.best_episodes(ds, fraction=0.1, discount=1.0)  # ⌊0.4⌋ = 0 -> 1
    assert info["episodes"] == 1


def test_the_ranking_uses_discounted_returns():
    # Episode 0 pays 3 at its first step, episode 1 pays 4 at its last: with γ = 0.5 the
    # discounted returns are 3 and 4 · 0.25 = 1, so episode 0 wins; undiscounted, episode 1.
    ds = random_dataset(n=6, obs_dim=3, act_dim=1, episode_len=3)
    ds = ds.replace(rewards=np.array([3, 0, 0, 0, 0, 4], np.float32))
    assert filtered_bc.best_episodes(ds, 0.5, 0.5)[0].tolist() == [0, 1, 2]
    assert filtered_bc.best_episodes(ds, 0.5, 1.0)[0].tolist() == [3, 4, 5]


@pytest.mark.parametrize("fraction", [0.0, 1.5])
def test_a_fraction_outside_zero_one_is_refused(fraction):
    with pytest.raises(ValueError, match="fraction"):
        filtered_bc.best_episodes(four_episodes(), fraction, 1.0)


@pytest.mark.parametrize(
    "name,make",
    [
        ("filtered_bc", lambda: random_dataset(n=300, obs_dim=3, act_dim=1)),
        ("filtered_bc_discrete", lambda: random_discrete_dataset(n=300)),
    ],
)
def test_a_run_trains_on_the_kept_episodes_and_logs_the_selection(tmp_path, name, make):
    ds = make()
    path = str(io.write_npz(ds, tmp_path / "log.npz"))  # names Pendulum-v1 / CartPole-v1
    out = tmp_path / "run"
    offrl.train(
        name, path, steps=20, out=out, overrides=SMALL | {"fraction": 0.5}, eval_every=20,
        chunk_size=10, eval_episodes=1, progress=False,
    )  # fmt: skip
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    selection = next(r for r in records if r.get("kind") == "selection")
    assert selection["episodes"] == 3 and selection["rows"] == 150  # half of 6 episodes of 50
    policy = offrl.load_policy(out)
    module = filtered_bc if name == "filtered_bc" else filtered_bc_discrete
    assert policy.algo is module
    assert selection["kept_return_mean"] >= selection["return_mean"]


def test_the_transforms_are_fitted_to_the_kept_rows(tmp_path):
    ds = four_episodes(length=50)
    ds = ds.replace(observations=ds.observations + np.repeat(np.arange(4.0), 50)[:, None])
    path = str(io.write_npz(ds, tmp_path / "log.npz"))
    out = tmp_path / "run"
    offrl.train(
        "filtered_bc", path, steps=10, out=out, overrides=SMALL | {"fraction": 0.25},
        eval_every=10, chunk_size=10, eval_episodes=1, progress=False,
    )  # fmt: skip
    state = offrl.load_policy(out).state
    kept = ds.observations[50:100]  # episode 1, return 5
    np.testing.assert_allclose(state.tf.obs_mean, kept.mean(axis=0), rtol=1e-5)


def test_a_selection_that_keeps_nothing_is_one_line(tmp_path):
    path = str(io.write_npz(four_episodes(), tmp_path / "log.npz"))
    with pytest.raises(ConfigError, match="fraction must be in"):
        offrl.train(
            "filtered_bc", path, steps=10, out=tmp_path / "r", overrides={"fraction": 0.0},
            eval_every=10, eval_episodes=1, progress=False,
        )  # fmt: skip
