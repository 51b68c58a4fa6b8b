"""Ensemble-DQN: each head's Huber TD loss against its own target head (hand-computed on
constant networks, loss and gradient), acting on the mean over heads, the config errors."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers import (
    constant_output,
    discrete_state,
    hand_batch,
    with_constant_q,
)

from offrl import algos, core
from offrl.algos import ensemble_dqn

OBS_DIM, NUM_ACTIONS, K, HIDDEN = 3, 2, 2, (8, 8)
OUT = f"Dense_{len(HIDDEN)}"  # the output layer of the MLP

q_loss = jax.jit(ensemble_dqn.q_loss, static_argnums=3)
q_grad = jax.jit(jax.grad(lambda p, *a: ensemble_dqn.q_loss(p, *a)[0]), static_argnums=3)
act = jax.jit(ensemble_dqn.act, static_argnums=(0, 4))


def config(**overrides) -> ensemble_dqn.Config:
    return ensemble_dqn.Config(**{"hidden": HIDDEN, "num_heads": K, "batch_size": 16} | overrides)


@pytest.fixture(scope="module")
def state():
    return discrete_state(ensemble_dqn, config(), OBS_DIM, NUM_ACTIONS)


# Action 0 with reward 1 (not terminal); action 1 with reward 0 ending in a terminal.
BATCH = hand_batch((0, 1), OBS_DIM)


# Q_k(s, a) = out_bias[a·K + k]: the output biases below.
# Online heads Q(s, 0) = [0, 1], Q(s, 1) = [2, 0].
# Target heads Q'(s', 0) = [3, 0], Q'(s', 1) = [1, 2]: head 0's max is 3 (action 0), head 1's
# is 2 (action 1); the mean over heads would give 1.5 for both actions.
ONLINE, TARGET = [0.0, 1.0, 2.0, 0.0], [3.0, 0.0, 1.0, 2.0]


def test_each_head_bootstraps_from_its_own_target_head(state):
    s = with_constant_q(state, ONLINE, TARGET)
    # sample 1: y = [1 + 0.99 · 3, 1 + 0.99 · 2] = [3.97, 2.98]; Q(s, 0) = [0, 1]
    #   residuals [-3.97, -1.98] -> Huber [3.47, 1.48]
    # sample 2 (terminal): y = [0, 0]; Q(s, 1) = [2, 0] -> residuals [2, 0] -> Huber [1.5, 0]
    loss, m = q_loss(s.q.params, s, BATCH, config())
    assert float(loss) == pytest.approx((3.47 + 1.48 + 1.5 + 0.0) / 4)
    assert float(m["target_mean"]) == pytest.approx((3.97 + 2.98) / 4)
    assert float(m["q_mean"]) == pytest.approx((0 + 1 + 2 + 0) / 4)
    # dL/db[a·K + k] = (1/(B·K)) clip(residual, -1, 1) on the taken action's heads:
    # sample 1 -> action 0: [-1, -1] / 4;  sample 2 -> action 1: [1, 0] / 4
    grads = q_grad(s.q.params, s, BATCH, config())
    np.testing.assert_allclose(grads["params"]["MLP_0"][OUT]["bias"], [-0.25, -0.25, 0.25, 0.0])


def test_act_on_the_mean_over_heads(state):
    # action 0: heads [3, -2] (mean 0.5, the largest single head); action 1: [1, 1] (mean 1)
    s = state.replace(
        q=state.q.replace(params=constant_output(state.q.params, [3.0, -2.0, 1.0, 1.0]))
    )
    obs = jnp.asarray(np.random.default_rng(0).normal(size=(5, OBS_DIM)), jnp.float32)
    a = act(config(), s, obs, jax.random.key(0), True)
    assert a.dtype == jnp.int32 and a.tolist() == [1] * 5


def test_one_head_is_dqn(state):
    """K = 1: the loss is DQN's Huber loss, y = r + γ (1 - d) max Q'(s')."""
    spec = core.Spec(OBS_DIM, 1, state.tf, NUM_ACTIONS)
    s1 = ensemble_dqn.init(config(num_heads=1), spec, jax.random.key(0))
    s1 = with_constant_q(s1, [0.25, 0.5], [5.0, 2.0])
    # y = [5.95, 0]; residuals [-5.7, 0.5] -> Huber [5.2, 0.125] (tests/test_dqn.py's numbers)
    loss, _ = q_loss(s1.q.params, s1, BATCH, config(num_heads=1))
    assert float(loss) == pytest.approx((5.2 + 0.125) / 2)


def test_registered_discrete():
    assert algos.get("ensemble_dqn") is ensemble_dqn
    assert algos.action_kind(ensemble_dqn) == "discrete"


@pytest.mark.parametrize(
    "field, value, message",
    [
        ("num_heads", 0, "num_heads must be >= 1, got 0"),
        ("huber_delta", -1.0, "huber_delta must be > 0, got -1.0"),
        ("target_update_period", 0, "target_update_period must be >= 1, got 0"),
    ],
)
def test_bad_config_is_refused(state, field, value, message):
    with pytest.raises(ValueError, match=message):
        ensemble_dqn.init(config(**{field: value}), core.Spec(3, 1, state.tf, 2), jax.random.key(0))
