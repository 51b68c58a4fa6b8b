"""AWAC: the advantage weights and the weighted actor loss by hand, the actor loss and the TD
target on hand-made networks, the actor's L2 weight decay, acting, and config errors."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers import random_dataset

from offrl import core
from offrl.algos import awac
from offrl.data.transforms import make_transforms
from offrl.errors import ConfigError

OBS_DIM, ACT_DIM, HIDDEN = 3, 1, (8, 8)
OUT = f"Dense_{len(HIDDEN)}"  # the output layer of an MLP
LOG_2PI = math.log(2 * math.pi)

actor_loss = jax.jit(awac.actor_loss, static_argnums=3)
actor_grad = jax.jit(jax.grad(lambda p, *a: awac.actor_loss(p, *a)[0]), static_argnums=3)


def config(**overrides) -> awac.Config:
    return awac.Config(hidden=HIDDEN, batch_size=16, **overrides)


def make_state(cfg: awac.Config) -> awac.State:
    dataset = random_dataset(obs_dim=OBS_DIM, act_dim=ACT_DIM)
    tf = make_transforms(dataset, cfg.normalize_obs, cfg.reward_scaling)
    return awac.init(cfg, core.spec_from_dataset(dataset, tf), jax.random.PRNGKey(0))


@pytest.fixture(scope="module")
def state():
    return make_state(config())


def _zeros(params):
    return jax.tree_util.tree_map(lambda x: np.zeros(x.shape, np.float32), params)


def constant_actor(params, mean: float, logit: float = 0.0):
    """Every weight 0: π(·|s) = N(mean, σ²) with log σ = lo + (hi - lo) sigmoid(logit)."""
    p = _zeros(params)
    p["params"]["MLP_0"][OUT]["bias"][:] = np.arctanh(mean)
    p["params"]["log_std_logits"][:] = logit
    return p


def relu_critic(params, threshold: float, offsets):
    """Q_i(s, a) = relu(a_0 - threshold) + offsets[i]: hidden unit 0 of layer 1 is
    relu(a_0 - threshold), layer 2 passes it on, the output reads it with weight 1."""
    p = _zeros(params)
    mlp = p["params"]["VmapQNet_0"]["MLP_0"]
    mlp["Dense_0"]["kernel"][:, OBS_DIM, 0] = 1.0  # the input a_0
    mlp["Dense_0"]["bias"][:, 0] = -threshold
    mlp["Dense_1"]["kernel"][:, 0, 0] = 1.0
    mlp[OUT]["kernel"][:, 0, 0] = 1.0
    mlp[OUT]["bias"][:, 0] = offsets
    return p


def hand_batch(act, rew=None, done=None) -> core.Batch:
    n = len(act)
    return core.Batch(
        obs=np.zeros((n, OBS_DIM), np.float32),
        act=np.asarray(act, np.float32).reshape(n, ACT_DIM),
        rew=np.asarray(rew if rew is not None else np.zeros(n), np.float32),
        next_obs=np.zeros((n, OBS_DIM), np.float32),
        done=np.asarray(done if done is not None else np.zeros(n), np.float32),
    )


def test_exp_weights_hand_computed_clipped_and_constant():
    adv = jnp.array([0.0, 1.0, -1.0, 6.0])
    # exp(A / 1) = [1, e, 1/e, e^6 = 403.4], the last clipped at 100
    w = awac.advantage_weights(adv, config())
    np.testing.assert_allclose(w, [1.0, math.e, 1 / math.e, 100.0], rtol=1e-6)
    # λ = 2: exp(A / 2) = [1, e^0.5, e^-0.5, e^3 = 20.09], below the clip
    w = awac.advantage_weights(adv, config(lam=2.0))
    np.testing.assert_allclose(w, [1.0, math.e**0.5, math.e**-0.5, math.e**3], rtol=1e-6)
    # a constant to the gradient
    grad = jax.grad(lambda a: awac.advantage_weights(a, config()).sum())(adv)
    np.testing.assert_array_equal(grad, np.zeros(4))


def test_softmax_weights_hand_computed():
    adv = jnp.array([0.4, 0.0, 0.0])
    # B · softmax(A / λ) = 3 [e^0.4, 1, 1] / (e^0.4 + 2): they sum to B = 3, no clip
    e = math.exp(0.4)
    w = awac.advantage_weights(adv, config(weighting="softmax"))
    np.testing.assert_allclose(w, np.array([e, 1.0, 1.0]) * 3 / (e + 2), rtol=1e-6)
    assert float(w.sum()) == pytest.approx(3.0)
    # λ = 0.1 with one large advantage: weight B on it, none elsewhere, and still no clip
    w = awac.advantage_weights(jnp.array([10.0, 0.0, 0.0]), config(weighting="softmax", lam=0.1))
    np.testing.assert_allclose(w, [3.0, 0.0, 0.0], atol=1e-6)


def test_weighted_nll_hand_computed():
    w = jnp.array([1.0, math.e, 1 / math.e])
    log_prob = jnp.array([-1.0, -2.0, -0.5])
    # -(1·(-1) + e·(-2) + e^-1·(-0.5)) / 3
    expected = (1 + 2 * math.e + 0.5 / math.e) / 3
    assert float(awac.weighted_nll(w, log_prob)) == pytest.approx(expected, rel=1e-6)


# The actor-loss tests: data actions a = (0.9, 0, -0.5); π(·|s) = N(0, σ²) with log σ = -3
# (θ = 0 midway in [-6, 0]); twin critics Q_1 = relu(a - 0.5) + 1 and Q_2 = Q_1 + 2, so
# min_i Q_i(s, a) = (1.4, 1, 1) at the data. π's samples lie within ±10σ = ±0.5 of 0 (the
# chance of leaving is < 1e-20), where Q = 1, so V(s) = 1 and A = (0.4, 0, 0).
ACT = [0.9, 0.0, -0.5]


def _log_probs():
    # log N(a; 0, σ²) = -a² / (2σ²) - log σ - ½ log 2π, with 1/σ² = e^6
    return [-0.5 * a * a * math.exp(6) + 3.0 - 0.5 * LOG_2PI for a in ACT]


def _hand_state(state):
    critic = state.critic.replace(params=relu_critic(state.critic.params, 0.5, [1.0, 3.0]))
    return state.replace(critic=critic)


@pytest.mark.parametrize("num_value_samples", [1, 3])
def test_actor_loss_on_hand_made_networks(state, num_value_samples):
    cfg = config(num_value_samples=num_value_samples)
    state = _hand_state(state)
    actor = constant_actor(state.actor.params, 0.0)
    state = state.replace(actor=state.actor.replace(params=actor))
    lp = _log_probs()
    e = math.exp(0.4)
    loss, m = actor_loss(actor, state, hand_batch(ACT), cfg, jax.random.PRNGKey(1))
    assert float(m["adv_mean"]) == pytest.approx(0.4 / 3, abs=1e-6)
    assert float(m["weight_max"]) == pytest.approx(e, rel=1e-6)
    assert float(m["log_std"]) == pytest.approx(-3.0)
    assert float(loss) == pytest.approx(-(e * lp[0] + lp[1] + lp[2]) / 3, rel=1e-5)
    # dL/db of the mean's output bias b (μ = tanh b = 0, dμ/db = 1; the weights are
    # constants): -(1/3) Σ w_i (a_i - μ) / σ² = -(e^6 / 3)(e^0.4 · 0.9 + 1 · 0 + 1 · (-0.5))
    grads = actor_grad(actor, state, hand_batch(ACT), cfg, jax.random.PRNGKey(1))
    expected = -(math.exp(6) / 3) * (e * 0.9 - 0.5)
    np.testing.assert_allclose(grads["params"]["MLP_0"][OUT]["bias"], [expected], rtol=1e-4)


def test_actor_loss_softmax_and_clip(state):
    state = _hand_state(state)
    actor = constant_actor(state.actor.params, 0.0)
    state = state.replace(actor=state.actor.replace(params=actor))
    lp, key = _log_probs(), jax.random.PRNGKey(2)
    # softmax: w = 3 [e^0.4, 1, 1] / (e^0.4 + 2)
    e = math.exp(0.4)
    w = [3 * e / (e + 2), 3 / (e + 2), 3 / (e + 2)]
    loss, _ = actor_loss(actor, state, hand_batch(ACT), config(weighting="softmax"), key)
    assert float(loss) == pytest.approx(-sum(wi * li for wi, li in zip(w, lp)) / 3, rel=1e-5)
    # λ = 0.1: exp(0.4 / 0.1) = e^4 = 54.6, clipped at max_weight = 10
    loss, m = actor_loss(actor, state, hand_batch(ACT), config(lam=0.1, max_weight=10.0), key)
    assert float(m["weight_max"]) == pytest.approx(10.0)
    assert float(loss) == pytest.approx(-(10 * lp[0] + lp[1] + lp[2]) / 3, rel=1e-5)


def test_update_target_uses_online_actor_and_min_of_target_twins():
    cfg = config(log_std_min=-10.0, log_std_max=-10.0)  # σ = e^-10: a' = μ to 1e-4
    state = make_state(cfg)
    # target twins Q'_1 = relu(a + 1) = a + 1 and Q'_2 = a + 3 on [-1, 1]: the min is a + 1;
    # the online actor's mean 0.5, so min_i Q'_i(s', a') = 1.5
    actor = constant_actor(state.actor.params, 0.5)
    # online critics constant 0 and 1 (every weight 0, output biases 0 and 1)
    critic = _zeros(state.critic.params)
    critic["params"]["VmapQNet_0"]["MLP_0"][OUT]["bias"][:, 0] = [0.0, 1.0]
    state = state.replace(
        target_critic=relu_critic(state.target_critic, -1.0, [0.0, 2.0]),
        actor=state.actor.replace(params=actor),
        critic=state.critic.replace(params=critic),
    )
    batch = hand_batch([0.3, -0.3], rew=[1.0, 1.0], done=[0.0, 1.0])
    _, m = jax.jit(awac.update, static_argnums=0)(cfg, state, batch, jax.random.PRNGKey(3))
    # y = r + 0.99 (1 - d) · 1.5 = [2.485, 1]  (no bootstrap from the terminal)
    # Q_1 = 0: (2.485² + 1²) / 2;   Q_2 = 1: (1.485² + 0²) / 2   (before the step)
    expected = (2.485**2 + 1.0) / 2 + 1.485**2 / 2
    assert float(m["critic_loss"]) == pytest.approx(expected, rel=1e-4)
    assert float(m["target_mean"]) == pytest.approx((2.485 + 1.0) / 2, rel=1e-4)
    assert float(m["q_mean"]) == pytest.approx(0.5)


def test_actor_weight_decay_is_l2_added_to_the_gradient():
    params = {"w": jnp.array([2.0, -3.0])}
    zero = {"w": jnp.zeros(2)}
    tx = awac.adam_l2(1e-3, 1e-4)
    # The gradient seen by Adam is 0 + 1e-4 · θ; Adam's first step is -lr · sign(gradient).
    updates, _ = tx.update(zero, tx.init(params), params)
    np.testing.assert_allclose(updates["w"], [-1e-3, 1e-3], rtol=1e-4)
    # Without decay the optimizer is the shared core.adam (a zero gradient moves nothing).
    assert awac.adam_l2(1e-3, 0.0) is core.adam(1e-3)
    updates, _ = core.adam(1e-3).update(zero, core.adam(1e-3).init(params), params)
    np.testing.assert_array_equal(updates["w"], [0.0, 0.0])


def test_act_mean_and_clipped_samples_in_env_units(state):
    cfg = config()
    ds = random_dataset(obs_dim=OBS_DIM, act_dim=ACT_DIM)
    ds = ds.replace(
        actions=ds.actions * 2,
        action_low=np.array([-2.0], np.float32),
        action_high=np.array([2.0], np.float32),
    )
    state = state.replace(tf=make_transforms(ds, cfg.normalize_obs))
    obs = jnp.asarray(ds.observations[:64])
    actor = state.actor.replace(params=constant_actor(state.actor.params, 0.5))
    a = awac.act(cfg, state.replace(actor=actor), obs, jax.random.PRNGKey(0))
    np.testing.assert_allclose(a, np.ones((64, 1)), rtol=1e-5)  # unit 0.5 -> env 1.0
    # mean 0.99 and σ = 1 (θ = 1000, log σ = 0): about half the samples pass the bound 1
    actor = state.actor.replace(params=constant_actor(state.actor.params, 0.99, logit=1000.0))
    a = np.asarray(awac.act(cfg, state.replace(actor=actor), obs, jax.random.PRNGKey(0), False))
    assert np.all((a >= -2.0) & (a <= 2.0))
    assert np.sum(a == 2.0) > 10


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("weighting", "normalized", "weighting"),
        ("lam", 0.0, "lam"),
        ("num_value_samples", 0, "num_value_samples"),
        ("num_critics", 0, "num_critics"),
        ("log_std_min", 1.0, "log_std_min must be <= log_std_max"),
    ],
)
def test_config_errors(field, value, message):
    with pytest.raises(ValueError, match=message) as info:
        awac.Config(**{field: value})
    assert isinstance(info.value, ConfigError)  # the CLI prints it as one line
