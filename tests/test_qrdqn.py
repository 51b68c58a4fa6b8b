"""QR-DQN: the quantile Huber loss and its gradient on constant networks (hand-computed), the
target's action from the mean over quantiles, acting on the mean, the config errors."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers import (
    constant_output,
    data_batch,
    discrete_state,
    hand_batch,
    same_tree,
    with_constant_q,
)

from offrl import algos, core
from offrl.algos import qrdqn

OBS_DIM, NUM_ACTIONS, N, HIDDEN = 3, 2, 2, (8, 8)
OUT = f"Dense_{len(HIDDEN)}"  # the output layer of the MLP

loss_fn = jax.jit(qrdqn.quantile_loss, static_argnums=3)
loss_grad = jax.jit(jax.grad(lambda p, *a: qrdqn.quantile_loss(p, *a)[0]), static_argnums=3)
act = jax.jit(qrdqn.act, static_argnums=(0, 4))


def config(**overrides) -> qrdqn.Config:
    return qrdqn.Config(**{"hidden": HIDDEN, "num_quantiles": N, "batch_size": 16} | overrides)


@pytest.fixture(scope="module")
def state():
    return discrete_state(qrdqn, config(), OBS_DIM, NUM_ACTIONS)


# Action 0 with reward 1 (not terminal); action 1 with reward 0 ending in a terminal.
BATCH = hand_batch((0, 1), OBS_DIM)


# θ(s, a, i) = out_bias[a·N + i]: the output biases below.
# Online θ(s, 0) = [0, 1], θ(s, 1) = [0.5, 0.5].
# Target θ'(s', 0) = [1, 3] (mean 2), θ'(s', 1) = [0, 5] (mean 2.5): a* = 1 by the mean,
# although action 0 has the larger lower quantile.
ONLINE, TARGET = [0.0, 1.0, 0.5, 0.5], [1.0, 3.0, 0.0, 5.0]


def test_quantile_midpoints():
    np.testing.assert_allclose(qrdqn.quantile_midpoints(2), [0.25, 0.75])
    np.testing.assert_allclose(qrdqn.quantile_midpoints(4), [0.125, 0.375, 0.625, 0.875])


def test_quantile_huber_loss_by_hand(state):
    s = with_constant_q(state, ONLINE, TARGET)
    # τ̂ = [0.25, 0.75]. Sample 1: y = 1 + 0.99 · θ'(s', 1) = [1, 5.95]; θ = θ(s, 0) = [0, 1]
    #   i = 1 (θ 0, τ 0.25): u = [1, 5.95] >= 0 -> 0.25 · mean(huber) = 0.25 · (0.5 + 5.45) / 2
    #   i = 2 (θ 1, τ 0.75): u = [0, 4.95] >= 0 -> 0.75 · (0 + 4.45) / 2
    sample1 = 0.25 * (0.5 + 5.45) / 2 + 0.75 * (0 + 4.45) / 2  # 2.4125
    # Sample 2 (terminal): y = [0, 0]; θ(s, 1) = [0.5, 0.5]: u = -0.5 < 0, weights 1 - τ̂
    sample2 = 0.75 * 0.125 + 0.25 * 0.125  # 0.125
    loss, m = loss_fn(s.q.params, s, BATCH, config())
    assert float(loss) == pytest.approx((sample1 + sample2) / 2)
    assert float(m["quantile_loss"]) == pytest.approx((sample1 + sample2) / 2)
    assert float(m["q_mean"]) == pytest.approx((0 + 1 + 0.5 + 0.5) / 4)
    assert float(m["target_mean"]) == pytest.approx((1 + 5.95 + 0 + 0) / 4)


def test_quantile_loss_gradient_by_hand(state):
    s = with_constant_q(state, ONLINE, TARGET)
    # dL/dθ_i = -(1/B)(1/M) Σ_j |τ̂_i - 1{u_ij < 0}| clip(u_ij, -κ, κ)
    # sample 1, action 0: i=1: -0.25 (1 + 1) / 2 / 2;  i=2: -0.75 (0 + 1) / 2 / 2
    # sample 2, action 1: i=1: -0.75 (-0.5 - 0.5) / 2 / 2;  i=2: -0.25 (-1) / 2 / 2
    grads = loss_grad(s.q.params, s, BATCH, config())
    expected = [-0.125, -0.1875, 0.1875, 0.0625]
    np.testing.assert_allclose(grads["params"]["MLP_0"][OUT]["bias"], expected, rtol=1e-6)


def test_quantile_huber_loss_kappa_and_shapes():
    # κ = 2, τ̂ = 0.5, u = 3 > κ: huber = 2 (3 - 1) = 4, / κ = 2, · 0.5 -> 1
    loss = qrdqn.quantile_huber_loss(jnp.array([[0.0]]), jnp.array([[3.0]]), 2.0)
    np.testing.assert_allclose(loss, [1.0])
    # inside the quadratic zone: u = -1 -> (1 - 0.5) · 0.5 · 1 / 2 = 0.125
    loss = qrdqn.quantile_huber_loss(jnp.array([[1.0]]), jnp.array([[0.0]]), 2.0)
    np.testing.assert_allclose(loss, [0.125])
    # leading axes are kept; M targets may differ from N quantiles: (2, 3, N=4) x (2, 3, M=5)
    out = qrdqn.quantile_huber_loss(jnp.zeros((2, 3, 4)), jnp.ones((2, 3, 5)), 1.0)
    # every u = 1: Σ_i τ̂_i · 0.5 = 0.5 · (0.125 + 0.375 + 0.625 + 0.875) = 1
    np.testing.assert_allclose(out, np.ones((2, 3)), rtol=1e-6)


def test_quantile_huber_loss_gradients_in_both_inputs():
    # quantile 0, target 3, κ = 2, τ̂ = 0.5: dρ/du = 0.5 · clip(3, -2, 2) / 2 = 0.5;
    # u = target - quantile, so d/dquantile = -0.5 and d/dtarget = +0.5
    dq, dt = jax.grad(lambda q, t: qrdqn.quantile_huber_loss(q, t, 2.0).sum(), argnums=(0, 1))(
        jnp.array([[0.0]]), jnp.array([[3.0]])
    )
    np.testing.assert_allclose(dq, [[-0.5]])
    np.testing.assert_allclose(dt, [[0.5]])
    # N = 2 quantiles [0, 0] (τ̂ 0.25, 0.75), M = 1 target -0.5: u = -0.5 < 0, weights 0.75,
    # 0.25; dρ/du = [0.75, 0.25] · -0.5 -> d/dquantile = [0.375, 0.125], d/dtarget = -0.5
    dq, dt = jax.grad(lambda q, t: qrdqn.quantile_huber_loss(q, t, 1.0).sum(), argnums=(0, 1))(
        jnp.zeros((1, 2)), jnp.array([[-0.5]])
    )
    np.testing.assert_allclose(dq, [[0.375, 0.125]])
    np.testing.assert_allclose(dt, [[-0.5]])


def test_quantile_regression_finds_quantiles():
    """Minimizing the loss (κ small) on targets {0, 1, 2, 3} moves the N = 4 estimates to the
    targets' τ̂ = 1/8, 3/8, 5/8, 7/8 quantiles: 0, 1, 2, 3."""
    targets = jnp.array([[0.0, 1.0, 2.0, 3.0]])
    grad = jax.jit(jax.grad(lambda q: qrdqn.quantile_huber_loss(q, targets, 0.01).sum()))
    q = jnp.full((1, 4), 1.5)
    for _ in range(3000):
        q = q - 0.01 * grad(q)
    np.testing.assert_allclose(q[0], [0.0, 1.0, 2.0, 3.0], atol=0.05)


def test_act_on_the_mean_over_quantiles(state):
    # action 0: [-4, 10] (mean 3, lower quantile -4); action 1: [1, 1] (mean 1)
    s = state.replace(
        q=state.q.replace(params=constant_output(state.q.params, [-4.0, 10.0, 1.0, 1.0]))
    )
    obs = jnp.asarray(np.random.default_rng(0).normal(size=(5, OBS_DIM)), jnp.float32)
    a = act(config(), s, obs, jax.random.key(0), True)
    assert a.dtype == jnp.int32 and a.tolist() == [0] * 5


def test_target_copied_every_period(state):
    cfg = config(target_update_period=2)
    batch = data_batch(state, OBS_DIM, NUM_ACTIONS)
    s1, _ = qrdqn.update(cfg, state, batch, jax.random.key(1))
    assert same_tree(s1.target_q, state.target_q) and not same_tree(s1.q.params, state.q.params)
    s2, _ = qrdqn.update(cfg, s1, batch, jax.random.key(2))
    assert int(s2.step) == 2 and same_tree(s2.target_q, s2.q.params)


def test_registered_discrete():
    assert algos.get("qrdqn") is qrdqn and algos.action_kind(qrdqn) == "discrete"


@pytest.mark.parametrize(
    "field, value, message",
    [
        ("num_quantiles", 0, "num_quantiles must be >= 1, got 0"),
        ("huber_delta", 0.0, "huber_delta must be > 0, got 0.0"),
        ("target_update_period", 0, "target_update_period must be >= 1, got 0"),
    ],
)
def test_bad_config_is_refused(state, field, value, message):
    with pytest.raises(ValueError, match=message):
        qrdqn.init(config(**{field: value}), core.Spec(3, 1, state.tf, 2), jax.random.key(0))
