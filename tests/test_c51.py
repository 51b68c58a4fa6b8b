"""C51: the projection onto the atoms and the categorical loss by hand, the support's checks
and task defaults."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from offrl import algos
from offrl.algos import c51
from offrl.core import Batch, template_spec

CFG = c51.Config(num_atoms=3, v_min=-1.0, v_max=1.0, discount=0.5, hidden=(4,))  # atoms -1, 0, 1


def test_projection_by_hand():
    """Atoms (-1, 0, 1). Targets 0.5 (p 0.6) split half to 0 and 1; -3 (p 0.4) clipped to -1;
    on an atom, all of it stays there."""
    m = c51.project(jnp.array([[0.6, 0.4, 0.0]]), jnp.array([[0.5, -3.0, 1.0]]), CFG)
    np.testing.assert_allclose(m, [[0.4, 0.3, 0.3]], atol=1e-7)
    m = c51.project(jnp.array([[0.2, 0.3, 0.5]]), jnp.array([[-1.0, 0.0, 1.0]]), CFG)
    np.testing.assert_allclose(m, [[0.2, 0.3, 0.5]], atol=1e-7)


def zero_net_state():
    """Every weight zero: uniform p = 1/3 on every atom and action, Q = 0."""
    state = c51.init(CFG, template_spec(2, 0, num_actions=2), jax.random.key(0))
    zero = jax.tree_util.tree_map(jnp.zeros_like, state.q.params)
    return state.replace(q=state.q.replace(params=zero), target_q=zero)


def test_categorical_loss_by_hand():
    """p′ uniform; r = 0.5, d = 0: T̂z = 0.5 + 0.5 (-1, 0, 1) = (0, 0.5, 1) -> m = (0, 1/2, 1/2)
    (1/3 at 0, 1/6 + 1/6 at 0 and 1 from 0.5, 1/3 at 1: m = (0, 1/3 + 1/6, 1/6 + 1/3)).
    p uniform: L = -Σ m_k log(1/3) = log 3. A terminal: T̂z = r = 0.5 -> m = (0, 1/2, 1/2)."""
    state = zero_net_state()
    batch = Batch(
        obs=jnp.zeros((2, 2)), act=jnp.array([0, 1]), rew=jnp.array([0.5, 0.5]),
        next_obs=jnp.zeros((2, 2)), done=jnp.array([0.0, 1.0]),
    )  # fmt: skip
    target = c51.target_distribution(state, batch, CFG)
    np.testing.assert_allclose(target, [[0, 0.5, 0.5], [0, 0.5, 0.5]], atol=1e-6)
    loss, m = c51.categorical_loss(state.q.params, state, batch, CFG)
    assert float(loss) == pytest.approx(math.log(3), rel=1e-6)
    assert float(m["q_mean"]) == pytest.approx(0.0, abs=1e-7)


def test_support_checks_and_task_defaults():
    with pytest.raises(ValueError, match="v_min < v_max"):
        c51.init(c51.Config(v_min=1.0, v_max=1.0), template_spec(2, 0, num_actions=2),
                 jax.random.key(0))  # fmt: skip
    assert algos.task_defaults("c51", "cartpole-random", "CartPole-v1") == {
        "v_min": 0.0, "v_max": 100.0,
    }  # fmt: skip
