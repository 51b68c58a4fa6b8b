"""Networks and transforms: Gaussian log-densities, the tanh change of variables, the Q-ensemble,
action and observation transforms, reward scaling."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers import random_dataset
from scipy import stats

from offrl.data.dataset import Dataset
from offrl.data.transforms import Transforms, column_mean_std, constant_columns, make_transforms
from offrl.nets import QEnsemble
from offrl.nets.policies import gaussian_log_prob, tanh_gaussian_log_prob, tanh_gaussian_sample

# --------------------------------------------------------------------------- densities


def test_gaussian_log_prob_matches_scipy():
    rng = np.random.default_rng(0)
    x, mean = rng.normal(size=(2, 4, 3))
    log_std = rng.uniform(-2, 1, size=(4, 3))
    got = gaussian_log_prob(jnp.asarray(x), jnp.asarray(mean), jnp.asarray(log_std))
    expected = stats.norm.logpdf(x, loc=mean, scale=np.exp(log_std)).sum(-1)
    assert got.shape == (4,)
    np.testing.assert_allclose(got, expected, rtol=1e-5)
    # closed form at x = mean, σ = 1: -0.5 log 2π per dimension
    zero = gaussian_log_prob(jnp.zeros((1, 3)), jnp.zeros((1, 3)), jnp.zeros((1, 3)))
    assert float(zero[0]) == pytest.approx(-1.5 * np.log(2 * np.pi), rel=1e-6)


def test_tanh_gaussian_sample_log_prob_by_change_of_variables():
    rng = np.random.default_rng(1)
    mean = rng.uniform(-0.5, 0.5, size=(256, 2)).astype(np.float32)
    log_std = rng.uniform(-1.0, -0.3, size=(256, 2)).astype(np.float32)
    a, logp = tanh_gaussian_sample(jax.random.PRNGKey(0), jnp.asarray(mean), jnp.asarray(log_std))
    a, logp = np.asarray(a, np.float64), np.asarray(logp, np.float64)
    assert a.shape == (256, 2) and logp.shape == (256,)
    assert np.all(np.abs(a) < 1.0)
    # p_a(a) = p_u(u) / |d tanh / du| at u = arctanh(a), the derivative taken numerically
    keep = np.all(np.abs(a) < 0.995, axis=-1)  # where float32 a pins u down well
    assert keep.mean() > 0.9
    u, h = np.arctanh(a[keep]), 1e-5
    dtanh = (np.tanh(u + h) - np.tanh(u - h)) / (2 * h)
    log_pu = stats.norm.logpdf(u, loc=mean[keep], scale=np.exp(log_std[keep]))
    expected = (log_pu - np.log(dtanh)).sum(-1)
    np.testing.assert_allclose(logp[keep], expected, rtol=1e-4, atol=1e-4)
    # the log-density of given actions agrees with the sampler's
    again = tanh_gaussian_log_prob(jnp.asarray(a, jnp.float32), mean, log_std)
    np.testing.assert_allclose(np.asarray(again)[keep], logp[keep], rtol=1e-3, atol=1e-3)


def test_tanh_gaussian_sample_stable_where_tanh_saturates():
    # u ≈ 15: tanh(u) is 1.0 in float32, so log(1 - tanh(u)²) computed naively is -inf.
    mean, log_std = jnp.full((4, 2), 15.0), jnp.full((4, 2), -3.0)
    a, logp = tanh_gaussian_sample(jax.random.PRNGKey(0), mean, log_std)
    assert bool(jnp.all(a == 1.0))
    assert bool(jnp.all(jnp.isfinite(logp)))


# --------------------------------------------------------------------------- Q-ensemble


def test_q_ensemble_shape_and_members_differ():
    obs, act = jnp.ones((5, 3)), jnp.ones((5, 2))
    net = QEnsemble(hidden=(8, 8), num=3)
    params = jax.jit(net.init)(jax.random.PRNGKey(0), obs, act)  # compiled: faster than op by op
    kernel = params["params"]["VmapQNet_0"]["MLP_0"]["Dense_0"]["kernel"]
    assert kernel.shape == (3, 5, 8)  # a leading ensemble axis on every parameter
    q = np.asarray(jax.jit(net.apply)(params, obs, act))
    assert q.shape == (3, 5)
    for i in range(3):
        for j in range(i):
            assert not np.allclose(q[i], q[j]), (i, j)  # independently initialized members


# --------------------------------------------------------------------------- transforms

LOW, HIGH = np.array([-2.0, 0.0], np.float32), np.array([2.0, 10.0], np.float32)


def bounded_dataset() -> Dataset:
    ds = random_dataset(n=100, obs_dim=3, act_dim=2)
    actions = LOW + (ds.actions + 1.0) / 2.0 * (HIGH - LOW)
    return ds.replace(actions=actions.astype(np.float32), action_low=LOW, action_high=HIGH)


def test_actions_map_bounds_to_unit_and_back():
    ds = bounded_dataset()
    tf = make_transforms(ds, normalize_obs=False)
    np.testing.assert_allclose(tf.action_to_unit(jnp.asarray(LOW)), [-1.0, -1.0])
    np.testing.assert_allclose(tf.action_to_unit(jnp.asarray(HIGH)), [1.0, 1.0])
    np.testing.assert_allclose(tf.action_to_unit(jnp.array([0.0, 5.0])), [0.0, 0.0], atol=1e-7)
    np.testing.assert_allclose(tf.action_to_env(jnp.array([-1.0, 1.0])), [-2.0, 10.0])
    unit = tf.action_to_unit(jnp.asarray(ds.actions))
    assert bool(jnp.all(jnp.abs(unit) <= 1.0 + 1e-6))
    np.testing.assert_allclose(tf.action_to_env(unit), ds.actions, rtol=1e-5, atol=1e-5)


def test_actions_without_bounds_use_the_data_range():
    ds = bounded_dataset().replace(action_low=None, action_high=None)
    tf = make_transforms(ds, normalize_obs=False)
    np.testing.assert_allclose(tf.act_low, ds.actions.min(0))
    np.testing.assert_allclose(tf.act_high, ds.actions.max(0))


def test_observation_normalization():
    ds = bounded_dataset()
    obs = ds.observations.astype(np.float64)
    tf = make_transforms(ds, normalize_obs=True)
    # (s - mean) / (std + 1e-3), the statistics of the whole dataset
    np.testing.assert_allclose(tf.obs_mean, obs.mean(0), rtol=1e-5)
    np.testing.assert_allclose(tf.obs_std, obs.std(0) + 1e-3, rtol=1e-5)
    z = np.asarray(tf.obs(jnp.asarray(ds.observations)))
    np.testing.assert_allclose(z.mean(0), 0.0, atol=1e-5)
    np.testing.assert_allclose(z.std(0), obs.std(0) / (obs.std(0) + 1e-3), rtol=1e-4)
    plain = make_transforms(ds, normalize_obs=False)
    np.testing.assert_allclose(plain.obs(jnp.asarray(ds.observations)), ds.observations)


def test_a_constant_column_is_only_centred():
    # Columns: a cell never lit in the data, a rare cell (lit once in 1000 rows), a constant
    # 5 and a continuous column. Divided by 0 + 1e-3, the never-lit cell would enter at 1000
    # when lit; as a constant column it enters at 1. The rare cell keeps 1 / (std + 1e-3):
    # (1 - 0.001) / (0.0316 + 0.001) = 30.6 when lit, as in the data.
    rng = np.random.default_rng(0)
    obs = np.zeros((1000, 4), np.float32)
    obs[0, 1] = 1.0
    obs[:, 2] = 5.0
    obs[:, 3] = rng.normal(5.0, 2.0, 1000)
    ds = Dataset(obs, np.zeros((1000, 1), np.float32), np.zeros(1000, np.float32), obs,
                 np.zeros(1000, bool), np.zeros(1000, bool))  # fmt: skip
    tf = make_transforms(ds, normalize_obs=True)
    x = obs.astype(np.float64)
    np.testing.assert_allclose(tf.obs_mean, x.mean(0), rtol=1e-5)
    expected_std = [1.0, x[:, 1].std() + 1e-3, 1.0, x[:, 3].std() + 1e-3]
    np.testing.assert_allclose(tf.obs_std, expected_std, rtol=1e-5)
    z = np.asarray(tf.obs(jnp.array([[1.0, 1.0, 6.0, 5.0]])))[0]
    np.testing.assert_allclose(z[:3], [1.0, (1 - 0.001) / (np.sqrt(0.000999) + 1e-3), 1.0],
                               rtol=1e-4)  # fmt: skip
    # in the data a constant column is 0, as (x - mean) / (0 + 1e-3) made it
    np.testing.assert_array_equal(np.asarray(tf.obs(jnp.asarray(obs)))[:, [0, 2]], 0.0)
    # blocks: a block boundary between equal rows and a different one still sees it
    col = np.array([[2.0], [2.0], [2.0], [2.5]], np.float32)
    np.testing.assert_array_equal(constant_columns(col, rows=3), [False])
    np.testing.assert_array_equal(constant_columns(col[:3], rows=2), [True])


def test_column_statistics_in_blocks_match_the_whole_array():
    # 10 rows in blocks of 4 (4 + 4 + 2): the same mean and std as numpy on the float64 copy
    x = np.array([[1, 10], [2, 20], [3, 30], [4, 40], [5, 50]] * 2, np.float32)
    mean, std = column_mean_std(x, rows=4)
    np.testing.assert_allclose(mean, [3.0, 30.0], rtol=1e-12)
    np.testing.assert_allclose(std, [np.sqrt(2.0), np.sqrt(200.0)], rtol=1e-12)


def tiny_dataset(rewards) -> Dataset:
    """Three episodes: indices 0-1 (cut by a timeout), 2-4 (a terminal), 5 (the data's end)."""
    n = len(rewards)
    terminals, timeouts = np.zeros(n, bool), np.zeros(n, bool)
    timeouts[1], terminals[4] = True, True
    return Dataset(
        observations=np.zeros((n, 1), np.float32),
        actions=np.zeros((n, 1), np.float32),
        rewards=np.asarray(rewards, np.float32),
        next_observations=np.zeros((n, 1), np.float32),
        terminals=terminals,
        timeouts=timeouts,
        action_low=-np.ones(1, np.float32),
        action_high=np.ones(1, np.float32),
    )


def test_reward_scaling_return_range():
    ds = tiny_dataset([1.0, 2.0, 0.0, 0.0, -1.0, 5.0])
    np.testing.assert_allclose(ds.episode_returns(), [3.0, -1.0, 5.0])
    tf = make_transforms(ds, normalize_obs=False, reward_scaling="return_range")
    # 1000 / (max return - min return) = 1000 / (5 - (-1)) = 166.67
    assert float(tf.reward_scale) == pytest.approx(1000.0 / 6.0)
    np.testing.assert_allclose(tf.reward(jnp.array([1.0, -3.0])), [1000 / 6, -500.0], rtol=1e-6)
    # all returns equal: no spread to divide by, the scale stays 1
    same = make_transforms(tiny_dataset([1, 1, 0, 1, 1, 2]), False, "return_range")
    assert float(same.reward_scale) == 1.0
    assert float(make_transforms(ds, False, "none").reward_scale) == 1.0


def test_unknown_reward_scaling_raises():
    with pytest.raises(ValueError, match="reward_scaling"):
        make_transforms(tiny_dataset([0.0] * 6), normalize_obs=False, reward_scaling="iql")


def test_constant_action_dimension_maps_without_nan():
    tf = Transforms(
        jnp.zeros(1),
        jnp.ones(1),
        jnp.array([0.0, 2.0]),
        jnp.array([1.0, 2.0]),
        jnp.float32(1),
        jnp.float32(0),
    )
    unit = tf.action_to_unit(jnp.array([[0.5, 2.0]]))
    np.testing.assert_allclose(unit, [[0.0, -1.0]])
    np.testing.assert_allclose(tf.action_to_env(unit), [[0.5, 2.0]])


def test_ensemble_member_matches_the_ensemble_output():
    from offrl.nets import QNet, ensemble_member

    module = QEnsemble((8, 8), num=3)
    obs, act = jnp.ones((4, 3)), jnp.zeros((4, 2))
    params = module.init(jax.random.key(0), obs, act)
    full = module.apply(params, obs, act)
    for i in range(3):
        np.testing.assert_allclose(
            QNet((8, 8)).apply(ensemble_member(params, i), obs, act), full[i], rtol=1e-6
        )
