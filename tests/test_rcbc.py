"""Return-conditioned BC: the outcomes by hand, the conditioning statistics and target of
pretrain, the decrement of the return-to-go while acting, and a history kept by
load_policy and by rollouts."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers import random_dataset

import offrl
from offrl import core
from offrl.algos import rcbc
from offrl.data import io
from offrl.data.transforms import make_transforms
from offrl.envs.rollout import rollout
from offrl.evaluate import HistoryPolicy, jax_policy

SMALL = {"hidden": (8, 8), "batch_size": 16}


def two_episodes():
    """Episodes of 3 and 2 steps paying 1, 2, 3 and 4, 0."""
    ds = random_dataset(n=5, obs_dim=3, act_dim=1, episode_len=3)
    timeouts = np.array([0, 0, 1, 0, 1], bool)
    return ds.replace(rewards=np.array([1, 2, 3, 4, 0], np.float32), timeouts=timeouts)


def test_outcomes_are_returns_to_go_and_their_averages():
    ds = two_episodes()
    np.testing.assert_allclose(rcbc.outcomes(ds, "rtg"), [6, 5, 3, 4, 0])
    np.testing.assert_allclose(rcbc.outcomes(ds, "average"), [2, 2.5, 3, 2, 0])


def state_for(cfg, ds):
    tf = make_transforms(ds, cfg.normalize_obs, cfg.reward_scaling)
    state = rcbc.init(cfg, core.spec_from_dataset(ds, tf), jax.random.key(0))
    return rcbc.pretrain(cfg, state, ds, jax.random.key(1))


@pytest.mark.parametrize("conditioning,best", [("rtg", 6.0), ("average", 2.0)])
def test_pretrain_sets_the_statistics_and_the_best_first_step_as_target(conditioning, best):
    cfg = rcbc.Config(conditioning=conditioning, **SMALL)
    state, info = state_for(cfg, two_episodes())
    omega = rcbc.outcomes(two_episodes(), conditioning)
    assert info["best_omega"] == pytest.approx(best) and float(state.target) == pytest.approx(best)
    assert float(state.omega_mean) == pytest.approx(omega.mean())
    assert float(state.omega_std) == pytest.approx(omega.std(), rel=1e-4)
    given = rcbc.Config(conditioning=conditioning, target=10.0, **SMALL)
    assert float(state_for(given, two_episodes())[0].target) == 10.0


def test_acting_decrements_the_return_to_go_by_each_reward_and_keeps_the_average():
    ds = two_episodes()
    obs = jnp.zeros((2, 3))
    for conditioning, after in (("rtg", [4.0, 6.0]), ("average", [2.0, 2.0])):
        cfg = rcbc.Config(conditioning=conditioning, **SMALL)
        state, _ = state_for(cfg, ds)
        carry = rcbc.act_carry(cfg, state, 2)
        np.testing.assert_allclose(carry, [state.target] * 2)
        reward = jnp.array([2.0, 0.0]) if conditioning == "rtg" else jnp.array([5.0, 1.0])
        act, carry = rcbc.act_step(cfg, state, carry, obs, reward, jax.random.key(0))
        np.testing.assert_allclose(carry, after)
        assert act.shape == (2, 1)


def test_the_policy_depends_on_the_conditioning():
    cfg = rcbc.Config(conditioning="rtg", **SMALL)
    state, _ = state_for(cfg, two_episodes())
    obs = jnp.ones((1, 3))
    low = rcbc.act_step(cfg, state, jnp.array([-50.0]), obs, jnp.zeros(1), jax.random.key(0))[0]
    high = rcbc.act_step(cfg, state, jnp.array([50.0]), obs, jnp.zeros(1), jax.random.key(0))[0]
    assert not np.allclose(low, high)


def test_a_trained_policy_keeps_its_history_in_load_policy_and_rollouts(tmp_path):
    ds = random_dataset(n=400, obs_dim=3, act_dim=1, episode_len=200)  # names Pendulum-v1
    path = str(io.write_npz(ds, tmp_path / "log.npz"))
    out = tmp_path / "run"
    summary = offrl.train(
        "rcbc", path, steps=20, out=out, overrides=SMALL | {"conditioning": "rtg"},
        eval_every=20, chunk_size=10, eval_episodes=2, progress=False,
    )  # fmt: skip
    assert np.isfinite(summary["final_return"])
    policy = offrl.load_policy(out)
    assert policy.stateful
    start = float(policy._history.algo.act_carry(policy.cfg, policy.state, 1)[0])
    policy.reset()
    policy(np.zeros(3, np.float32))
    policy.observe(-3.0)
    policy(np.zeros(3, np.float32))
    assert float(policy._history.carry[0]) == pytest.approx(start + 3.0)  # ω - r, r = -3
    wrapped = jax_policy(policy.algo, policy.cfg, policy.state)
    assert isinstance(wrapped, HistoryPolicy)
    result = rollout("Pendulum-v1", wrapped, episodes=2, num_envs=2)
    assert result.lengths.tolist() == [200, 200]
