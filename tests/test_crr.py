"""CRR: the exp and binary filters and the mean/max advantage by hand, the filtered actor loss
on hand-made networks, the TD target from the target actor, the periodic target copies, and
config errors."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers import random_dataset
from test_awac import ACT, LOG_2PI, OBS_DIM, constant_actor, hand_batch, relu_critic

from offrl import core
from offrl.algos import crr
from offrl.data.transforms import make_transforms
from offrl.errors import ConfigError

HIDDEN = (8, 8)

actor_loss = jax.jit(crr.actor_loss, static_argnums=3)


def config(**overrides) -> crr.Config:
    return crr.Config(hidden=HIDDEN, batch_size=16, **overrides)


def make_state(cfg: crr.Config) -> crr.State:
    dataset = random_dataset(obs_dim=OBS_DIM, act_dim=1)
    tf = make_transforms(dataset, cfg.normalize_obs, cfg.reward_scaling)
    return crr.init(cfg, core.spec_from_dataset(dataset, tf), jax.random.PRNGKey(0))


def test_exp_filter_hand_computed_and_clipped_at_20():
    adv = jnp.array([-1.0, 0.0, 2.0, 3.5])
    # β = 1: [e^-1, e^0 = 1, e^2 = 7.389, e^3.5 = 33.1 -> clipped to 20]
    w = crr.filter_weights(adv, config())
    np.testing.assert_allclose(w, [math.exp(-1), 1.0, math.exp(2), 20.0], rtol=1e-6)
    # β = 2: [e^-0.5, 1, e^1, e^1.75 = 5.75], all below the clip
    w = crr.filter_weights(adv, config(beta=2.0))
    np.testing.assert_allclose(w, [math.exp(-0.5), 1.0, math.e, math.exp(1.75)], rtol=1e-6)
    grad = jax.grad(lambda a: crr.filter_weights(a, config()).sum())(adv)
    np.testing.assert_array_equal(grad, np.zeros(4))  # a constant to the gradient


def test_binary_filter_is_strictly_positive_advantage():
    adv = jnp.array([-1.0, 0.0, 1e-6, 2.0, -1e-6])
    # 1[A > 0]: A = 0 is filtered out; β and the clip play no part
    for cfg in (config(filter="binary"), config(filter="binary", beta=0.01, max_weight=0.5)):
        np.testing.assert_array_equal(crr.filter_weights(adv, cfg), [0.0, 0.0, 1.0, 1.0, 0.0])


def test_mean_and_max_advantage_hand_computed():
    # m = 4 samples (rows) for B = 2 states (columns)
    q_pi = jnp.array([[1.0, 2.0], [3.0, 0.0], [2.0, 2.0], [-2.0, 4.0]])
    q = jnp.array([2.0, 5.0])
    # mean over samples: [(1 + 3 + 2 - 2) / 4, (2 + 0 + 2 + 4) / 4] = [1, 2] -> A = [1, 3]
    np.testing.assert_allclose(crr.advantage(q, q_pi, "mean"), [1.0, 3.0])
    # max over samples: [3, 4] -> A = [-1, 1]
    np.testing.assert_allclose(crr.advantage(q, q_pi, "max"), [-1.0, 1.0])
    # binary on the two: every action passes under "mean", only the second under "max"
    binary = config(filter="binary")
    np.testing.assert_array_equal(crr.filter_weights(jnp.array([1.0, 3.0]), binary), [1, 1])
    np.testing.assert_array_equal(crr.filter_weights(jnp.array([-1.0, 1.0]), binary), [0, 1])


# As in test_awac: data actions (0.9, 0, -0.5), π = N(0, e^-6), a scalar critic
# Q = relu(a - 0.5) + 1, so Q = (1.4, 1, 1) at the data and 1 at every sample of π:
# A = (0.4, 0, 0) under "mean" and "max" alike.
@pytest.mark.parametrize("advantage", ["mean", "max"])
def test_filtered_actor_loss_on_hand_made_networks(advantage):
    state = make_state(config())
    critic = state.critic.replace(params=relu_critic(state.critic.params, 0.5, [1.0]))
    actor = constant_actor(state.actor.params, 0.0)
    state = state.replace(critic=critic, actor=state.actor.replace(params=actor))
    # log N(a; 0, σ²) with log σ = -3
    lp = [-0.5 * a * a * math.exp(6) + 3.0 - 0.5 * LOG_2PI for a in ACT]
    key, batch = jax.random.PRNGKey(1), hand_batch(ACT)
    # binary: weights (1, 0, 0): only the first action is imitated
    loss, m = actor_loss(actor, state, batch, config(filter="binary", advantage=advantage), key)
    assert float(loss) == pytest.approx(-lp[0] / 3, rel=1e-5)
    assert float(m["weight_mean"]) == pytest.approx(1 / 3)
    assert float(m["adv_mean"]) == pytest.approx(0.4 / 3, abs=1e-6)
    # exp, β = 1: weights (e^0.4, 1, 1)
    loss, _ = actor_loss(actor, state, batch, config(advantage=advantage), key)
    assert float(loss) == pytest.approx(-(math.exp(0.4) * lp[0] + lp[1] + lp[2]) / 3, rel=1e-5)


def test_update_target_uses_the_target_actor():
    cfg = config(log_std_min=-10.0, log_std_max=-10.0)  # σ = e^-10: a' is the mean to 1e-4
    state = make_state(cfg)
    # Q'(s', a') = relu(a' + 1) = a' + 1; the target actor's mean 0.5, the online one's -0.5
    state = state.replace(
        target_critic=relu_critic(state.target_critic, -1.0, [0.0]),
        target_actor=constant_actor(state.target_actor, 0.5),
        actor=state.actor.replace(params=constant_actor(state.actor.params, -0.5)),
        critic=state.critic.replace(params=relu_critic(state.critic.params, 0.0, [0.0])),
    )
    batch = hand_batch([0.3, -0.3], rew=[1.0, 1.0], done=[0.0, 1.0])
    _, m = jax.jit(crr.update, static_argnums=0)(cfg, state, batch, jax.random.PRNGKey(3))
    # y = r + 0.99 (1 - d) (0.5 + 1) = [2.485, 1]  (the online actor would give 0.495 + 1)
    # Q(s, a) = relu(a) = [0.3, 0]:  loss = ((0.3 - 2.485)² + (0 - 1)²) / 2
    assert float(m["target_mean"]) == pytest.approx((2.485 + 1.0) / 2, rel=1e-4)
    assert float(m["critic_loss"]) == pytest.approx((2.185**2 + 1.0) / 2, rel=1e-4)
    assert float(m["q_mean"]) == pytest.approx(0.15)


def _same(a, b) -> bool:
    return all(jax.tree_util.tree_leaves(jax.tree_util.tree_map(np.array_equal, a, b)))


def test_targets_are_copied_every_target_update_period():
    cfg = config(target_update_period=2)
    state0 = make_state(cfg)
    ds = random_dataset(obs_dim=OBS_DIM, act_dim=1)
    batch = jax.tree_util.tree_map(lambda x: x[:16], core.to_device(ds, state0.tf))
    update = jax.jit(crr.update, static_argnums=0)
    state1, _ = update(cfg, state0, batch, jax.random.PRNGKey(1))
    assert int(state1.step) == 1
    assert not _same(state1.critic.params, state0.critic.params)
    assert not _same(state1.actor.params, state0.actor.params)
    # step 1: 1 % 2 != 0, the targets have not moved
    assert _same(state1.target_critic, state0.target_critic)
    assert _same(state1.target_actor, state0.target_actor)
    # step 2: τ = 1, both targets are now exact copies of the networks
    state2, _ = update(cfg, state1, batch, jax.random.PRNGKey(2))
    assert _same(state2.target_critic, state2.critic.params)
    assert _same(state2.target_actor, state2.actor.params)
    assert not _same(state2.target_critic, state1.target_critic)


def test_periodic_polyak_soft_rate():
    target, online = {"w": jnp.array([0.0, 4.0])}, {"w": jnp.array([2.0, 0.0])}
    # due (4 % 2 == 0): 0.25 · online + 0.75 · target = [0.5, 3]; not due (3 % 2): unchanged
    moved = crr.periodic_polyak(target, online, 0.25, jnp.int32(4), 2)
    np.testing.assert_allclose(moved["w"], [0.5, 3.0])
    kept = crr.periodic_polyak(target, online, 0.25, jnp.int32(3), 2)
    np.testing.assert_array_equal(kept["w"], [0.0, 4.0])


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("filter", "softmax"),
        ("advantage", "min"),
        ("num_action_samples", 0),
        ("beta", -1.0),
        ("target_update_period", 0),
    ],
)
def test_config_errors(field, value):
    with pytest.raises(ValueError, match=field) as info:
        crr.Config(**{field: value})
    assert isinstance(info.value, ConfigError)  # the CLI prints it as one line
    if isinstance(value, str):
        assert repr(value) in str(info.value)
