"""REM: the Huber loss of one random convex combination of heads, the same α in Q and target
(hand-computed on constant networks, loss and gradient), the per-minibatch draw of α, acting
on the mean over heads, the config errors."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers import data_batch, discrete_state, hand_batch, with_constant_q

from offrl import algos, core
from offrl.algos import ensemble_dqn, rem

OBS_DIM, NUM_ACTIONS, K, HIDDEN = 3, 2, 2, (8, 8)
OUT = f"Dense_{len(HIDDEN)}"  # the output layer of the MLP

q_loss = jax.jit(rem.q_loss, static_argnums=3)
q_grad = jax.jit(jax.grad(lambda p, *a: rem.q_loss(p, *a)[0]), static_argnums=3)
update = jax.jit(rem.update, static_argnums=0)


def config(**overrides) -> rem.Config:
    return rem.Config(**{"hidden": HIDDEN, "num_heads": K, "batch_size": 16} | overrides)


@pytest.fixture(scope="module")
def state():
    return discrete_state(rem, config(), OBS_DIM, NUM_ACTIONS)


# Action 0 with reward 1 (not terminal); action 1 with reward 0 ending in a terminal.
BATCH = hand_batch((0, 1), OBS_DIM)


# Q_k(s, a) = out_bias[a·K + k]: the output biases below.
# Online heads Q(s, 0) = [0, 1], Q(s, 1) = [2, 0]; target heads Q'(s', 0) = [3, 0],
# Q'(s', 1) = [1, 2]; the mixture α = [0.25, 0.75].
ONLINE, TARGET, ALPHA = [0.0, 1.0, 2.0, 0.0], [3.0, 0.0, 1.0, 2.0], np.array([0.25, 0.75])


def test_mixture_loss_by_hand(state):
    s = with_constant_q(state, ONLINE, TARGET)
    # target mixture: Q'_α(s', 0) = 0.25 · 3 + 0.75 · 0 = 0.75, Q'_α(s', 1) = 0.25 + 1.5 = 1.75
    # sample 1: y = 1 + 0.99 · 1.75 = 2.7325; Q_α(s, 0) = 0.75 -> residual -1.9825 -> 1.4825
    # sample 2 (terminal): y = 0; Q_α(s, 1) = 0.25 · 2 = 0.5 -> residual 0.5 -> 0.125
    loss, m = q_loss(s.q.params, s, BATCH, config(), ALPHA)
    assert float(loss) == pytest.approx((1.4825 + 0.125) / 2)
    assert float(m["target_mean"]) == pytest.approx(2.7325 / 2)
    assert float(m["q_mean"]) == pytest.approx((0 + 1 + 2 + 0) / 4)  # mean over heads
    # dL/db[a·K + k] = (1/B) clip(residual, -1, 1) α_k on the taken action's heads:
    # sample 1 -> action 0: -1 · [0.25, 0.75] / 2;  sample 2 -> action 1: 0.5 · [0.25, 0.75] / 2
    grads = q_grad(s.q.params, s, BATCH, config(), ALPHA)
    expected = [-0.125, -0.375, 0.0625, 0.1875]
    np.testing.assert_allclose(grads["params"]["MLP_0"][OUT]["bias"], expected, rtol=1e-6)


def test_other_mixture_other_target(state):
    # α = [1, 0]: head 0 alone; y = 1 + 0.99 · max(3, 1) = 3.97; Q_α(s, 0) = 0 -> Huber 3.47;
    # sample 2: Q_α(s, 1) = 2 -> Huber 1.5
    s = with_constant_q(state, ONLINE, TARGET)
    loss, _ = q_loss(s.q.params, s, BATCH, config(), np.array([1.0, 0.0]))
    assert float(loss) == pytest.approx((3.47 + 1.5) / 2)


def test_random_convex_weights_lie_on_the_simplex():
    keys = jax.random.split(jax.random.key(0), 2000)
    alphas = jax.vmap(lambda k: rem.random_convex_weights(k, 4))(keys)
    assert alphas.shape == (2000, 4) and bool(jnp.all(alphas >= 0))
    np.testing.assert_allclose(alphas.sum(axis=1), 1.0, rtol=1e-6)
    # exchangeable coordinates: each has mean 1/4 (std of the mean over 2000 draws < 0.004)
    np.testing.assert_allclose(alphas.mean(axis=0), 0.25, atol=0.015)
    assert float(jnp.std(alphas[:, 0])) > 0.05  # a real mixture, not the uniform average


def test_update_draws_alpha_from_its_key(state):
    batch = data_batch(state, OBS_DIM, NUM_ACTIONS)
    a, _ = update(config(), state, batch, jax.random.key(1))
    again, _ = update(config(), state, batch, jax.random.key(1))
    other, _ = update(config(), state, batch, jax.random.key(2))
    out = lambda s: np.asarray(s.q.params["params"]["MLP_0"][OUT]["bias"])  # noqa: E731
    np.testing.assert_array_equal(out(a), out(again))
    assert not np.array_equal(out(a), out(other))
    assert int(a.step) == 1


def test_shares_ensemble_dqn_network_and_acting():
    assert rem.init is ensemble_dqn.init and rem.act is ensemble_dqn.act
    assert rem.State is ensemble_dqn.State
    assert algos.get("rem") is rem and algos.action_kind(rem) == "discrete"


@pytest.mark.parametrize(
    "field, value, message",
    [
        ("num_heads", 0, "num_heads must be >= 1, got 0"),
        ("huber_delta", 0.0, "huber_delta must be > 0, got 0.0"),
        ("target_update_period", -3, "target_update_period must be >= 1, got -3"),
    ],
)
def test_bad_config_is_refused(state, field, value, message):
    with pytest.raises(ValueError, match=message):
        rem.init(config(**{field: value}), core.Spec(3, 1, state.tf, 2), jax.random.key(0))
