"""Discrete BCQ: the threshold mask, the constrained Double-DQN target and Huber loss, the
imitation loss with its logit penalty (values and gradient), the periodic soft or hard target,
constrained acting, and every config error, on constant networks computed by hand."""

from __future__ import annotations

import math
import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers import constant_output, data_batch, discrete_state, hand_batch, with_constant_q

from offrl import algos, core
from offrl.algos import bcq_discrete

OBS_DIM, NUM_ACTIONS, HIDDEN = 3, 3, (8, 8)
OUT = f"Dense_{len(HIDDEN)}"  # the output layer of the MLP

q_loss = jax.jit(bcq_discrete.q_loss, static_argnums=3)
imitation_loss = jax.jit(bcq_discrete.imitation_loss, static_argnums=(1, 3))
imitation_grad = jax.jit(
    jax.grad(lambda p, f, b, lam: bcq_discrete.imitation_loss(p, f, b, lam)[0]),
    static_argnums=(1, 3),
)
update = jax.jit(bcq_discrete.update, static_argnums=0)
act = jax.jit(bcq_discrete.act, static_argnums=(0, 4))


def config(**overrides) -> bcq_discrete.Config:
    return bcq_discrete.Config(hidden=HIDDEN, batch_size=16, **overrides)


@pytest.fixture(scope="module")
def state():
    return discrete_state(bcq_discrete, config(), OBS_DIM, NUM_ACTIONS)


# G(·|s) = [0.6, 0.1, 0.3]: ratios to the max [1, 1/6, 1/2]; τ = 0.3 forbids action 1.
BEHAVIOUR = [0.6, 0.1, 0.3]
LOGITS = [math.log(p) for p in BEHAVIOUR]
ONLINE = [1.0, 2.0, 0.5]  # Q(s, ·): unconstrained argmax 1, constrained argmax 0
TARGET = [4.0, 10.0, 3.0]  # Q'(s', ·)
# Action 0 with reward 1 (not terminal); action 2 with reward 0 ending in a terminal.
BATCH = hand_batch((0, 2), OBS_DIM)


def with_networks(state):
    s = with_constant_q(state, ONLINE, TARGET)
    return s.replace(
        imitation=s.imitation.replace(params=constant_output(s.imitation.params, LOGITS))
    )


def test_threshold_keeps_actions_by_relative_probability():
    logits = jnp.log(jnp.array([[0.6, 0.1, 0.3], [0.05, 0.05, 0.9]]))
    # ratios [1, 1/6, 1/2] and [1/18, 1/18, 1]
    allowed = bcq_discrete.allowed_actions(logits, 0.3)
    np.testing.assert_array_equal(allowed, [[True, False, True], [False, False, True]])
    # τ = 0.1: 1/6 passes, 1/18 does not; τ = 0: every action (Q-learning's max)
    allowed = bcq_discrete.allowed_actions(logits, 0.1)
    np.testing.assert_array_equal(allowed, [[True, True, True], [False, False, True]])
    assert bool(bcq_discrete.allowed_actions(logits, 0.0).all())


def test_q_loss_constrained_target_by_hand(state):
    s = with_networks(state)
    # allowed(s') = {0, 2}; a' = argmax of Q(s', ·) over them = 0 (Q = 1 > 0.5), not 1
    # y = [1 + 0.99 · Q'(s', 0), 0] = [1 + 0.99 · 4, 0] = [4.96, 0]
    # Q(s, a) = [1.0, 0.5]: residuals [-3.96, 0.5] -> Huber [3.96 - 0.5, 0.5² / 2] = [3.46, 0.125]
    loss, m = q_loss(s.q.params, s, BATCH, config())
    assert float(loss) == pytest.approx((3.46 + 0.125) / 2, rel=1e-6)
    assert float(m["target_mean"]) == pytest.approx(4.96 / 2, rel=1e-6)
    assert float(m["q_mean"]) == pytest.approx(0.75)
    assert float(m["allowed_fraction"]) == pytest.approx(4 / 6)  # 2 of 3 actions at 2 states


def test_zero_threshold_is_double_dqn(state):
    s = with_networks(state)
    # every action allowed: a' = 1, Q'(s', 1) = 10; y = [1 + 9.9, 0] = [10.9, 0]
    # residuals [-9.9, 0.5] -> Huber [9.4, 0.125]
    loss, m = q_loss(s.q.params, s, BATCH, config(threshold=0.0))
    assert float(loss) == pytest.approx((9.4 + 0.125) / 2, rel=1e-6)
    assert float(m["allowed_fraction"]) == 1.0


def test_imitation_loss_and_gradient_by_hand(state):
    params = constant_output(state.imitation.params, LOGITS)
    apply_fn = state.imitation.apply_fn
    loss, m = imitation_loss(params, apply_fn, BATCH, 0.01)
    cross_entropy = -(math.log(0.6) + math.log(0.3)) / 2  # data actions 0 and 2
    l2 = sum(g * g for g in LOGITS) / 3  # the same logits at both states
    assert float(m["imitation_loss"]) == pytest.approx(cross_entropy, rel=1e-6)
    assert float(loss) == pytest.approx(cross_entropy + 0.01 * l2, rel=1e-6)
    assert float(m["imitation_accuracy"]) == 0.5  # argmax 0: right for the first only
    # d/db_k: mean over the batch of (G_k - 1{a = k}) + λ · 2 g_k / n
    #       = [0.6 - 0.5, 0.1 - 0, 0.3 - 0.5] + 0.01 · 2 / 3 · g
    grads = imitation_grad(params, apply_fn, BATCH, 0.01)
    expected = np.array([0.1, 0.1, -0.2]) + 0.02 / 3 * np.array(LOGITS)
    np.testing.assert_allclose(grads["params"]["MLP_0"][OUT]["bias"], expected, rtol=1e-5)


def test_update_uses_the_imitation_model_before_its_step(state):
    s = with_networks(state)
    batch = BATCH
    before, _ = q_loss(s.q.params, s, batch, config())
    new, metrics = update(config(), s, batch, jax.random.key(0))
    assert float(metrics["q_loss"]) == pytest.approx(float(before), rel=1e-6)
    assert int(new.step) == 1
    moved = new.imitation.params["params"]["MLP_0"][OUT]["bias"]
    assert not np.allclose(moved, LOGITS)  # G_ω took its own step


def test_target_moves_every_period(state):
    batch = data_batch(state, OBS_DIM, NUM_ACTIONS)
    # the reference's non-Atari rule: after every update, Q' <- 0.005 Q + 0.995 Q'
    polyak = config(target_update_period=1, target_tau=0.005)
    s1, _ = update(polyak, state, batch, jax.random.key(1))
    _check_leaves(s1.target_q, 0.005, s1.q.params, state.target_q)
    # period 3, τ_Q = 0.5: unchanged after updates 1 and 2, halfway to Q after update 3
    cfg = config(target_update_period=3, target_tau=0.5)
    s = state
    for _ in range(2):
        s, _ = update(cfg, s, batch, jax.random.key(2))
        _check_leaves(s.target_q, 0.0, s.q.params, state.target_q)
    s, _ = update(cfg, s, batch, jax.random.key(3))
    _check_leaves(s.target_q, 0.5, s.q.params, state.target_q)
    # the default: a hard copy every 1000 updates
    assert (config().target_update_period, config().target_tau) == (1000, 1.0)


def _check_leaves(target, tau, online, old):
    for t, q, o in zip(*(jax.tree_util.tree_leaves(x) for x in (target, online, old))):
        np.testing.assert_allclose(t, tau * np.asarray(q) + (1 - tau) * np.asarray(o), atol=1e-7)


def test_act_only_among_allowed_actions(state):
    s = with_networks(state)
    obs = jnp.asarray(np.random.default_rng(0).normal(size=(3000, OBS_DIM)), jnp.float32)
    chosen = act(config(), s, obs, jax.random.key(0), True)
    assert chosen.dtype == jnp.int32 and bool(jnp.all(chosen == 0))  # not action 1 (Q = 2)
    # ε = 0.5 over 3 actions: P(0) = 0.5 + 0.5 / 3 = 2/3, P(1) = P(2) = 1/6 (std < 0.009)
    explored = act(config(eval_epsilon=0.5), s, obs, jax.random.key(0), False)
    assert abs(float(jnp.mean(explored == 0)) - 2 / 3) < 0.04
    assert abs(float(jnp.mean(explored == 1)) - 1 / 6) < 0.04


def test_registered_as_discrete():
    assert algos.get("bcq_discrete") is bcq_discrete
    assert algos.action_kind(bcq_discrete) == "discrete"


@pytest.mark.parametrize(
    "overrides, message",
    [
        ({"threshold": 1.0}, "threshold must be in [0, 1), got 1.0"),
        ({"threshold": -0.1}, "threshold must be in [0, 1), got -0.1"),
        ({"logit_l2": -1.0}, "logit_l2 must be >= 0, got -1.0"),
        ({"target_update_period": 0}, "target_update_period must be >= 1, got 0"),
        ({"target_tau": 0.0}, "target_tau must be in (0, 1], got 0.0"),
        ({"target_tau": 1.5}, "target_tau must be in (0, 1], got 1.5"),
        ({"huber_delta": 0.0}, "huber_delta must be > 0, got 0.0"),
    ],
)
def test_bad_config_is_refused(state, overrides, message):
    spec = core.Spec(OBS_DIM, 1, state.tf, NUM_ACTIONS)
    with pytest.raises(ValueError, match=f"^{re.escape(message)}$"):
        bcq_discrete.init(config(**overrides), spec, jax.random.key(0))
