"""IQL: the expectile loss, the losses on constant networks, weight clipping, one update."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers import random_dataset as _random_dataset

from offrl import core
from offrl.algos import iql
from offrl.data.dataset import Dataset
from offrl.data.transforms import make_transforms
from offrl.nets.policies import gaussian_log_prob

OBS_DIM, ACT_DIM, HIDDEN = 3, 2, (8, 8)


def random_dataset(n: int = 200, episode_len: int = 50, seed: int = 0) -> Dataset:
    return _random_dataset(n, OBS_DIM, ACT_DIM, episode_len, seed)


def make_state(cfg: iql.Config, dataset: Dataset):
    tf = make_transforms(dataset, cfg.normalize_obs, cfg.reward_scaling)
    spec = core.spec_from_dataset(dataset, tf)
    return iql.init(cfg, spec, jax.random.PRNGKey(0)), core.to_device(dataset, tf)


def constant(params, out_bias):
    """The same network made constant: every weight 0, the output layer's bias `out_bias`."""
    zeros = jax.tree_util.tree_map(jnp.zeros_like, params)
    mlp = zeros["params"]["VmapQNet_0"] if "VmapQNet_0" in zeros["params"] else zeros["params"]
    last = f"Dense_{len(HIDDEN)}"
    bias = mlp["MLP_0"][last]["bias"]
    mlp["MLP_0"][last]["bias"] = jnp.asarray(out_bias, jnp.float32).reshape(bias.shape)
    return zeros


@pytest.fixture(scope="module")
def setup():
    cfg = iql.Config(hidden=HIDDEN, batch_size=4)
    state, data = make_state(cfg, random_dataset())
    return cfg, state, data


def test_expectile_loss_hand_computed():
    # u = [-1, 2], τ = 0.7: weights [1 - 0.7, 0.7] = [0.3, 0.7]
    # mean(0.3 * (-1)², 0.7 * 2²) = mean(0.3, 2.8) = 3.1 / 2 = 1.55
    assert float(iql.expectile_loss(jnp.array([-1.0, 2.0]), 0.7)) == pytest.approx(1.55)
    # τ = 0.5 is half the mean squared error: 0.5 * (1 + 4) / 2 = 1.25
    assert float(iql.expectile_loss(jnp.array([-1.0, 2.0]), 0.5)) == pytest.approx(1.25)


def test_value_loss_on_constant_networks(setup):
    cfg, state, data = setup
    batch = core.sample(data, jax.random.PRNGKey(1), 4)
    # Target critics output 1 and 3 everywhere, so min Q̂ = 1.
    state = state.replace(target_critic=constant(state.target_critic, [[1.0], [3.0]]))
    # V = 2: u = 1 - 2 = -1 < 0, weight 1 - 0.7 = 0.3, loss 0.3 * 1 = 0.3
    loss, m = iql.value_loss(constant(state.value.params, 2.0), state, batch, cfg)
    assert float(loss) == pytest.approx(0.3)
    assert float(m["v_mean"]) == pytest.approx(2.0)
    # V = -1: u = 1 - (-1) = 2 >= 0, weight 0.7, loss 0.7 * 4 = 2.8
    loss, _ = iql.value_loss(constant(state.value.params, -1.0), state, batch, cfg)
    assert float(loss) == pytest.approx(2.8)


def test_critic_loss_on_constant_networks(setup):
    cfg, state, _ = setup
    batch = core.Batch(
        obs=jnp.zeros((2, OBS_DIM)),
        act=jnp.zeros((2, ACT_DIM)),
        rew=jnp.array([1.0, 1.0]),
        next_obs=jnp.zeros((2, OBS_DIM)),
        done=jnp.array([0.0, 1.0]),
    )
    state = state.replace(value=state.value.replace(params=constant(state.value.params, 10.0)))
    # y = r + 0.99 (1 - d) V(s') = [1 + 9.9, 1] = [10.9, 1]
    # Q_1 = 0: E[(0 - y)²] = (10.9² + 1) / 2 = 59.905;  Q_2 = 1: (9.9² + 0) / 2 = 49.005
    loss, _ = iql.critic_loss(constant(state.critic.params, [[0.0], [1.0]]), state, batch, cfg)
    assert float(loss) == pytest.approx(59.905 + 49.005, rel=1e-5)


def test_awr_weight_clipped_at_max():
    adv = jnp.array([-1.0, 0.0, 1.0, 10.0, 1e4])
    w = np.asarray(iql.awr_weight(adv, beta=3.0, max_weight=100.0))
    # exp(3 * [-1, 0, 1]) = [e^-3, 1, e^3 ≈ 20.1] pass; exp(30) and exp(3e4) = inf clip to 100
    np.testing.assert_allclose(w, [math.exp(-3), 1.0, math.exp(3), 100.0, 100.0], rtol=1e-6)


def test_actor_loss_uses_clipped_weights(setup):
    cfg, state, data = setup
    batch = core.sample(data, jax.random.PRNGKey(2), 4)
    # min Q̂ = 50, V = 0: A = 50, exp(3 * 50) overflows the clip, every weight is 100.
    state = state.replace(
        target_critic=constant(state.target_critic, [[50.0], [60.0]]),
        value=state.value.replace(params=constant(state.value.params, 0.0)),
    )
    loss, m = iql.actor_loss(state.actor.params, state, batch, cfg)
    mean, log_std = state.actor.apply_fn(state.actor.params, batch.obs)
    log_prob = gaussian_log_prob(batch.act, mean, log_std)
    assert float(m["weight_mean"]) == pytest.approx(100.0)
    assert float(m["weight_clipped_frac"]) == 1.0
    assert float(loss) == pytest.approx(-100.0 * float(log_prob.mean()), rel=1e-5)


def test_jitted_update_and_scan_chunk():
    # Cosine decay on: the schedule path must compile too.
    cfg = iql.Config(hidden=HIDDEN, batch_size=16, actor_lr_decay_steps=100)
    state, data = make_state(cfg, random_dataset())
    batch = core.sample(data, jax.random.PRNGKey(3), cfg.batch_size)
    new, metrics = jax.jit(iql.update, static_argnums=0)(cfg, state, batch, jax.random.PRNGKey(4))
    assert int(new.step) == 1
    for name in ("value_loss", "critic_loss", "actor_loss", "v_mean", "q_mean", "weight_mean"):
        assert np.isfinite(float(metrics[name])), name
    # The target critic moved by Polyak from the old target towards the new critic.
    expected = core.polyak(state.target_critic, new.critic.params, cfg.tau)
    jax.tree_util.tree_map(np.testing.assert_allclose, new.target_critic, expected)

    chunk = core.make_update_chunk(iql, cfg, 10)
    new, metrics, *_ = chunk(state, data, jax.random.PRNGKey(5))
    assert int(new.step) == 10
    assert bool(core.all_finite(new)) and bool(core.all_finite(metrics))

    obs = jnp.asarray(random_dataset().observations[:5])
    a = iql.act(cfg, new, obs, jax.random.PRNGKey(6), deterministic=True)
    b = iql.act(cfg, new, obs, jax.random.PRNGKey(6), deterministic=False)
    assert a.shape == b.shape == (5, ACT_DIM)
    assert bool(jnp.all(jnp.abs(a) <= 1.0)) and bool(jnp.all(jnp.abs(b) <= 1.0))
