"""SAC, TD3 and DDPG: their distinctive losses against hand-computed values."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers import random_dataset

from offrl import core
from offrl.algos import ddpg, sac, td3
from offrl.data.transforms import make_transforms
from offrl.nets.policies import tanh_gaussian_sample

OBS_DIM, ACT_DIM, B = 3, 2, 8


def _state(algo, cfg, seed: int = 0):
    ds = random_dataset(n=64, obs_dim=OBS_DIM, act_dim=ACT_DIM)
    tf = make_transforms(ds, cfg.normalize_obs, cfg.reward_scaling)
    state = algo.init(cfg, core.spec_from_dataset(ds, tf), jax.random.key(seed))
    batch = core.sample(core.to_device(ds, tf), jax.random.key(1), B)
    return state, batch.replace(done=jnp.array([0, 1] * (B // 2), jnp.float32))


def _constant_output(params: dict, values) -> dict:
    """Params whose last Dense layer ignores its input: output = values (per member)."""
    params = jax.tree_util.tree_map(jnp.asarray, params)
    inner = params["params"]
    member_key = next(iter(inner))
    layers = inner[member_key].get("MLP_0", inner[member_key])
    last = sorted(layers, key=lambda k: int(k.split("_")[-1]))[-1]
    kernel, bias = layers[last]["kernel"], layers[last]["bias"]
    layers[last] = {
        "kernel": jnp.zeros_like(kernel),
        "bias": jnp.broadcast_to(
            jnp.asarray(values, bias.dtype).reshape(bias.shape[:1] + (-1,))
            if bias.ndim > 1
            else jnp.asarray(values, bias.dtype),
            bias.shape,
        ),
    }
    return params


def test_sac_target_subtracts_the_entropy_of_the_next_action():
    cfg = sac.Config(hidden=(8, 8))
    state, batch = _state(sac, cfg)
    # Critics: Q1 = 2, Q2 = 5 everywhere (online); targets 3 and 1 -> min' = 1.
    critic = _constant_output(state.critic.params, [[2.0], [5.0]])
    target_critic = _constant_output(state.target_critic, [[3.0], [1.0]])
    # Actor: mean 0 and log std log(0.5) for every state.
    actor = _constant_output(state.actor.params, [0.0, 0.0, np.log(0.5), np.log(0.5)])
    state = state.replace(
        critic=state.critic.replace(params=critic),
        target_critic=target_critic,
        actor=state.actor.replace(params=actor),
    )
    key, alpha = jax.random.key(7), 0.2
    loss, m = sac.critic_loss(critic, state, batch, cfg, key, alpha)
    # By hand: a' = tanh(u), u ~ N(0, 0.5²) drawn with the loss's key; log π(a'|s') of it.
    _, logp = tanh_gaussian_sample(
        key, jnp.zeros((B, ACT_DIM)), jnp.full((B, ACT_DIM), np.log(0.5))
    )
    y = batch.rew + 0.99 * (1 - batch.done) * (1.0 - alpha * logp)
    expected = np.mean((2.0 - y) ** 2) + np.mean((5.0 - y) ** 2)
    np.testing.assert_allclose(float(loss), float(expected), rtol=1e-5)
    np.testing.assert_allclose(float(m["target_mean"]), float(y.mean()), rtol=1e-5)


def test_ddpg_critic_loss_uses_one_critic_and_no_smoothing():
    cfg = ddpg.Config(hidden=(8, 8))
    state, batch = _state(ddpg, cfg)
    assert state.critic.apply_fn(state.critic.params, batch.obs, batch.act).shape == (1, B)
    critic = _constant_output(state.critic.params, [[1.5]])
    target_critic = _constant_output(state.target_critic, [[4.0]])
    state = state.replace(critic=state.critic.replace(params=critic), target_critic=target_critic)
    loss, _ = td3.critic_loss(critic, state, batch, cfg, jax.random.key(0))
    y = batch.rew + 0.99 * (1 - batch.done) * 4.0
    np.testing.assert_allclose(float(loss), float(np.mean((1.5 - y) ** 2)), rtol=1e-5)


def test_td3_actor_steps_every_second_update_only():
    cfg = td3.Config(hidden=(8, 8))
    state, batch = _state(td3, cfg)
    first, m1 = td3.update(cfg, state, batch, jax.random.key(0))  # step 1: critic only
    assert np.isnan(float(m1["actor_loss"]))
    same = jax.tree_util.tree_map(np.array_equal, first.actor.params, state.actor.params)
    assert all(jax.tree_util.tree_leaves(same))
    second, m2 = td3.update(cfg, first, batch, jax.random.key(1))  # step 2: actor and targets
    assert np.isfinite(float(m2["actor_loss"]))
    moved = jax.tree_util.tree_map(np.array_equal, second.actor.params, first.actor.params)
    assert not all(jax.tree_util.tree_leaves(moved))


@pytest.mark.parametrize("noise", [0.0, 0.3])
def test_td3_exploration_noise_has_the_configured_std(noise):
    cfg = td3.Config(hidden=(8, 8), expl_noise=noise)
    state, _ = _state(td3, cfg)
    obs = jnp.zeros((20_000, OBS_DIM))
    clean = td3.act(cfg, state, obs, jax.random.key(0), deterministic=True)
    noisy = td3.act(cfg, state, obs, jax.random.key(0), deterministic=False)
    # Near a = 0 the clip to [-1, 1] hardly acts, so the spread is the noise's std.
    assert abs(float(jnp.std(noisy - clean)) - noise) < 0.01
