"""Discrete CQL: the log-sum-exp penalty, the mean (DQN) head's and the QR head's total loss,
the gradient through both terms, acting on the mean Q, and every config error, on constant
networks computed by hand."""

from __future__ import annotations

import math
import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers import data_batch, discrete_state, hand_batch, same_tree, with_constant_q

from offrl import algos, core
from offrl.algos import cql_discrete, dqn

OBS_DIM, NUM_ACTIONS, HIDDEN = 3, 3, (8, 8)
OUT = f"Dense_{len(HIDDEN)}"  # the output layer of the MLP

loss_fn = jax.jit(cql_discrete.cql_loss, static_argnums=3)
grad_fn = jax.jit(jax.grad(lambda p, *a: cql_discrete.cql_loss(p, *a)[0]), static_argnums=3)
act = jax.jit(cql_discrete.act, static_argnums=(0, 4))


def config(**overrides) -> cql_discrete.Config:
    return cql_discrete.Config(hidden=HIDDEN, batch_size=16, **overrides)


@pytest.fixture(scope="module")
def mean_state():
    return discrete_state(cql_discrete, config(), OBS_DIM, NUM_ACTIONS)


@pytest.fixture(scope="module")
def qr_state():
    return discrete_state(cql_discrete, config(head="qr", num_quantiles=2), OBS_DIM, NUM_ACTIONS)


# Q(s, ·) = [1, 2, 0.5] (online argmax 1); Q'(s', ·) = [12, 10, 3] (target argmax 0).
ONLINE, TARGET = [1.0, 2.0, 0.5], [12.0, 10.0, 3.0]
# The QR head with N = 2 quantiles, bias laid out (action, quantile); the means are the
# Q-values above: [0, 2] -> 1, [1, 3] -> 2, [0.5, 0.5] -> 0.5; target [10, 14] -> 12, ...
ONLINE_QUANTILES = [0.0, 2.0, 1.0, 3.0, 0.5, 0.5]
TARGET_QUANTILES = [10.0, 14.0, 9.0, 11.0, 3.0, 3.0]
# log Σ_a exp Q(s, a) - mean of Q(s, a_data) = log(e + e² + e^0.5) - (1 + 0.5) / 2
PENALTY = math.log(math.e + math.e**2 + math.exp(0.5)) - 0.75
# Action 0 with reward 1 (not terminal); action 2 with reward 0 ending in a terminal.
BATCH = hand_batch((0, 2), OBS_DIM)


def test_penalty_by_hand():
    q = jnp.array([[1.0, 2.0, 0.5], [0.0, 0.0, 0.0]])
    # state 1: log(e + e² + e^0.5) - Q(s, 2) = ... - 0.5; state 2: log 3 - 0
    expected = (math.log(math.e + math.e**2 + math.exp(0.5)) - 0.5 + math.log(3)) / 2
    penalty = cql_discrete.cql_penalty(q, jnp.array([2, 1]))
    assert float(penalty) == pytest.approx(expected, rel=1e-6)


def test_mean_head_loss_by_hand(mean_state):
    s = with_constant_q(mean_state, ONLINE, TARGET)
    # y = [1 + 0.99 · max Q'(s', ·), 0] = [1 + 0.99 · 12, 0] = [12.88, 0]
    # Q(s, a) = [1, 0.5]: residuals [-11.88, 0.5] -> Huber [11.38, 0.125]
    td = (11.38 + 0.125) / 2
    for alpha in (1.0, 0.5):
        loss, m = loss_fn(s.q.params, s, BATCH, config(alpha=alpha))
        assert float(m["td_loss"]) == pytest.approx(td, rel=1e-6)
        assert float(m["cql_penalty"]) == pytest.approx(PENALTY, rel=1e-6)
        assert float(loss) == pytest.approx(td + alpha * PENALTY, rel=1e-6)
        assert float(m["q_mean"]) == pytest.approx(0.75)


def test_mean_head_double_target(mean_state):
    s = with_constant_q(mean_state, ONLINE, TARGET)
    # the online net picks a' = 1: y = [1 + 0.99 · 10, 0] = [10.9, 0]; Huber [9.4, 0.125]
    _, m = loss_fn(s.q.params, s, BATCH, config(double=True))
    assert float(m["td_loss"]) == pytest.approx((9.4 + 0.125) / 2, rel=1e-6)


def test_gradient_flows_through_both_terms(mean_state):
    s = with_constant_q(mean_state, ONLINE, TARGET)
    grads = grad_fn(s.q.params, s, BATCH, config(alpha=2.0))
    # Huber: mean over the batch of clip(residual, -1, 1) on the taken action's output
    #   sample 1 -> b_0: -1 / 2;  sample 2 -> b_2: 0.5 / 2
    # penalty: softmax(Q) (the log-sum-exp's gradient) - mean one-hot of the data actions
    softmax = np.exp(ONLINE) / np.exp(ONLINE).sum()
    expected = np.array([-0.5, 0.0, 0.25]) + 2.0 * (softmax - np.array([0.5, 0.0, 0.5]))
    np.testing.assert_allclose(grads["params"]["MLP_0"][OUT]["bias"], expected, rtol=1e-5)


def test_zero_alpha_is_dqn(mean_state):
    s = with_constant_q(mean_state, ONLINE, TARGET)
    loss, _ = loss_fn(s.q.params, s, BATCH, config(alpha=0.0))
    dqn_loss, _ = dqn.q_loss(s.q.params, s, BATCH, dqn.Config(hidden=HIDDEN))
    assert float(loss) == pytest.approx(float(dqn_loss), rel=1e-6)


def test_qr_head_loss_by_hand(qr_state):
    s = with_constant_q(qr_state, ONLINE_QUANTILES, TARGET_QUANTILES)
    # a* = argmax of the target means [12, 10, 3] = 0; y = r + γ(1-d) θ'(s', 0)
    #   sample 1: [1 + 0.99·10, 1 + 0.99·14] = [10.9, 14.86];  sample 2 (terminal): [0, 0]
    # sample 1: θ(s, 0) = [0, 2] at τ̂ = [1/4, 3/4]; u = y_j - θ_i all > 1 -> Huber u - 1/2,
    #   weight τ̂_i:  1/4 · mean(10.4, 14.36) + 3/4 · mean(8.4, 12.36) = 3.095 + 7.785
    # sample 2: θ(s, 2) = [0.5, 0.5]; u = -0.5 -> Huber 0.125, weight 1 - τ̂_i = [3/4, 1/4]
    #   3/4 · 0.125 + 1/4 · 0.125 = 0.125
    td = (3.095 + 7.785 + 0.125) / 2
    loss, m = loss_fn(s.q.params, s, BATCH, config(head="qr", num_quantiles=2))
    assert float(m["td_loss"]) == pytest.approx(td, rel=1e-6)
    # the penalty reads the mean over quantiles, the same Q as the mean head's
    assert float(m["cql_penalty"]) == pytest.approx(PENALTY, rel=1e-6)
    assert float(loss) == pytest.approx(td + PENALTY, rel=1e-6)
    assert float(m["q_mean"]) == pytest.approx(0.75)


def test_act_on_the_mean_q(mean_state, qr_state):
    obs = jnp.asarray(np.random.default_rng(0).normal(size=(2000, OBS_DIM)), jnp.float32)
    s = with_constant_q(mean_state, ONLINE, TARGET)
    assert bool(jnp.all(act(config(), s, obs, jax.random.key(0), True) == 1))
    cfg = config(head="qr", num_quantiles=2)
    s = with_constant_q(qr_state, ONLINE_QUANTILES, TARGET_QUANTILES)
    chosen = act(cfg, s, obs, jax.random.key(0), True)
    assert chosen.dtype == jnp.int32 and bool(jnp.all(chosen == 1))  # means [1, 2, 0.5]
    # ε = 0.5 of 3 actions: P(1) = 0.5 + 0.5 / 3 = 2/3 (std over 2000 draws ≈ 0.011)
    noisy = config(head="qr", num_quantiles=2, eval_epsilon=0.5)
    explored = act(noisy, s, obs, jax.random.key(1), False)
    assert abs(float(jnp.mean(explored == 1)) - 2 / 3) < 0.05


def test_update_steps_and_copies_the_target(mean_state):
    cfg = config(target_update_period=2)
    batch = data_batch(mean_state, OBS_DIM, NUM_ACTIONS)
    update = jax.jit(cql_discrete.update, static_argnums=0)
    s1, metrics = update(cfg, mean_state, batch, jax.random.key(0))
    assert set(metrics) == {"loss", "td_loss", "cql_penalty", "q_mean"}
    assert same_tree(s1.target_q, mean_state.target_q)  # update 1: the target waits
    s2, _ = update(cfg, s1, batch, jax.random.key(1))
    assert int(s2.step) == 2
    assert same_tree(s2.target_q, s2.q.params)  # update 2: copied (τ_Q = 1)


def test_registered_as_discrete():
    assert algos.get("cql_discrete") is cql_discrete
    assert algos.action_kind(cql_discrete) == "discrete"


@pytest.mark.parametrize(
    "overrides, message",
    [
        ({"head": "iqn"}, "head must be one of ('mean', 'qr'), got 'iqn'"),
        ({"alpha": -1.0}, "alpha must be >= 0, got -1.0"),
        ({"head": "qr", "num_quantiles": 0}, "num_quantiles must be >= 1, got 0"),
        (
            {"head": "qr", "double": True},
            "double is for head 'mean' only (the qr head's target is QR-DQN's)",
        ),
        ({"huber_delta": 0.0}, "huber_delta must be > 0, got 0.0"),
        ({"target_update_period": 0}, "target_update_period must be >= 1, got 0"),
        ({"target_tau": 0.0}, "target_tau must be in (0, 1], got 0.0"),
    ],
)
def test_bad_config_is_refused(mean_state, overrides, message):
    spec = core.Spec(OBS_DIM, 1, mean_state.tf, NUM_ACTIONS)
    with pytest.raises(ValueError, match=f"^{re.escape(message)}$"):
        cql_discrete.init(config(**overrides), spec, jax.random.key(0))
