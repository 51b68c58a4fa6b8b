"""DQN / Double DQN: the Huber TD loss and its gradient on constant networks, the two targets,
the periodic hard target copy, acting, and the ddqn registration."""

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
from offrl.algos import ddqn, dqn

OBS_DIM, NUM_ACTIONS, HIDDEN = 3, 2, (8, 8)
OUT = f"Dense_{len(HIDDEN)}"  # the output layer of the MLP

q_loss = jax.jit(dqn.q_loss, static_argnums=3)
q_grad = jax.jit(jax.grad(lambda p, *a: dqn.q_loss(p, *a)[0]), static_argnums=3)
update = jax.jit(dqn.update, static_argnums=0)
act = jax.jit(dqn.act, static_argnums=(0, 4))


def config(**overrides) -> dqn.Config:
    return dqn.Config(hidden=HIDDEN, batch_size=16, **overrides)


@pytest.fixture(scope="module")
def state():
    return discrete_state(dqn, config(), OBS_DIM, NUM_ACTIONS)


# Two transitions: action 0 with reward 1 (not terminal), action 1 with reward 0 ending in a
# terminal.
BATCH = hand_batch((0, 1), OBS_DIM)
# Online Q(s, ·) = [0.25, 0.5] (argmax 1); target Q'(s', ·) = [5, 2] (argmax 0).
ONLINE, TARGET = [0.25, 0.5], [5.0, 2.0]


def test_dqn_loss_huber_by_hand(state):
    s = with_constant_q(state, ONLINE, TARGET)
    # y = r + γ (1 - d) max Q'(s') = [1 + 0.99 · 5, 0] = [5.95, 0]
    # Q(s, a) = [Q(s, 0), Q(s, 1)] = [0.25, 0.5]; residuals [-5.7, 0.5]
    # Huber (κ = 1): |-5.7| > 1 -> 5.7 - 0.5 = 5.2;  |0.5| <= 1 -> 0.5 · 0.25 = 0.125
    loss, m = q_loss(s.q.params, s, BATCH, config())
    assert float(loss) == pytest.approx((5.2 + 0.125) / 2)
    assert float(m["target_mean"]) == pytest.approx(5.95 / 2)
    assert float(m["q_mean"]) == pytest.approx(0.375)
    # dL/db = mean over the batch of clip(residual, -1, 1) on the taken action's output:
    # sample 1 -> b_0: -1 / 2;  sample 2 -> b_1: 0.5 / 2
    grads = q_grad(s.q.params, s, BATCH, config())
    np.testing.assert_allclose(grads["params"]["MLP_0"][OUT]["bias"], [-0.5, 0.25], rtol=1e-6)


def test_double_dqn_target_uses_the_online_argmax(state):
    s = with_constant_q(state, ONLINE, TARGET)
    # a' = argmax Q(s', ·) = 1, valued by the target: Q'(s', 1) = 2
    # y = [1 + 0.99 · 2, 0] = [2.98, 0]; residuals [-2.73, 0.5] -> Huber [2.23, 0.125]
    loss, m = q_loss(s.q.params, s, BATCH, config(double=True))
    assert float(loss) == pytest.approx((2.23 + 0.125) / 2)
    assert float(m["target_mean"]) == pytest.approx(2.98 / 2)


def test_huber_delta_changes_the_quadratic_zone(state):
    s = with_constant_q(state, ONLINE, TARGET)
    # κ = 10: both residuals are inside, so L = mean(x² / 2) = (5.7² + 0.5²) / 4
    loss, _ = q_loss(s.q.params, s, BATCH, config(huber_delta=10.0))
    assert float(loss) == pytest.approx((5.7**2 + 0.5**2) / 4)


def test_target_is_copied_every_period(state):
    cfg = config(target_update_period=3)
    batch = data_batch(state, OBS_DIM, NUM_ACTIONS)
    s = state
    for step in (1, 2):
        s, _ = update(cfg, s, batch, jax.random.key(step))
        assert int(s.step) == step
        assert not same_tree(s.q.params, state.q.params)  # the online net moves every step
        assert same_tree(s.target_q, state.target_q)  # the target waits
    s, _ = update(cfg, s, batch, jax.random.key(3))
    assert same_tree(s.target_q, s.q.params)  # step 3: copied
    copied = s.target_q
    s, _ = update(cfg, s, batch, jax.random.key(4))
    assert same_tree(s.target_q, copied) and not same_tree(s.q.params, copied)


def test_act_greedy_and_epsilon_greedy(state):
    s = state.replace(q=state.q.replace(params=constant_output(state.q.params, [0.0, 1.0])))
    obs = jnp.asarray(np.random.default_rng(0).normal(size=(4000, OBS_DIM)), jnp.float32)
    greedy = act(config(), s, obs, jax.random.key(0), True)
    assert greedy.dtype == jnp.int32 and bool(jnp.all(greedy == 1))
    # ε = 0.5 of 2 actions: P(action 1) = 0.5 + 0.5 / 2 = 0.75 (std over 4000 draws < 0.007)
    explored = act(config(eval_epsilon=0.5), s, obs, jax.random.key(0), False)
    assert abs(float(jnp.mean(explored == 1)) - 0.75) < 0.03
    # the default ε = 0.001: about 2 of 4000 actions are random, half of them 0
    assert int(jnp.sum(act(config(), s, obs, jax.random.key(1), False) == 0)) < 15


def test_ddqn_is_dqn_with_the_double_target():
    assert algos.get("ddqn") is ddqn and algos.action_kind(ddqn) == "discrete"
    assert ddqn.Config().double and not dqn.Config().double
    assert ddqn.update is dqn.update and ddqn.act is dqn.act
    # every other default is DQN's
    assert ddqn.Config(double=False).__dict__ == dqn.Config().__dict__


@pytest.mark.parametrize(
    "overrides, message",
    [
        ({"target_update_period": 0}, "target_update_period must be >= 1, got 0"),
        ({"huber_delta": -1.0}, "huber_delta must be > 0, got -1.0"),
    ],
)
def test_bad_config_is_refused(state, overrides, message):
    with pytest.raises(ValueError, match=message):
        dqn.init(config(**overrides), core.Spec(3, 1, state.tf, 2), jax.random.key(0))
