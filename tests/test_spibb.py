"""SPIBB: the bootstrapped set from the pseudo-count, the SPIBB policy (copy π̂_b on it, the
rest of the mass to the best other action), the target's expectation under that policy with
either chooser, the limits N∧ = 0 (Double DQN) and all-bootstrapped (π̂_b), acting, and every
config error, on constant networks computed by hand."""

from __future__ import annotations

import math
import re

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
from offrl.algos import spibb

OBS_DIM, NUM_ACTIONS, HIDDEN = 3, 3, (8, 8)
OUT = f"Dense_{len(HIDDEN)}"  # the output layer of the MLP

q_loss = jax.jit(spibb.q_loss, static_argnums=3)
update = jax.jit(spibb.update, static_argnums=0)
act = jax.jit(spibb.act, static_argnums=(0, 4))


def config(**overrides) -> spibb.Config:
    return spibb.Config(hidden=HIDDEN, batch_size=16, **overrides)


@pytest.fixture(scope="module")
def state():
    return discrete_state(spibb, config(), OBS_DIM, NUM_ACTIONS)


# π̂_b = [0.05, 0.25, 0.7]: pseudo-counts N̂ π̂_b = 100 · π̂_b = [5, 25, 70]; N∧ = 10 -> B = {0}
BEHAVIOUR = [0.05, 0.25, 0.7]
ONLINE = [5.0, 3.0, 1.0]  # Q(s, ·): argmax 0 (bootstrapped), best outside B: 1
TARGET = [20.0, 2.0, 4.0]  # Q'(s', ·): best outside B: 2
# Action 1 with reward 1 (not terminal); action 2 with reward 0 ending in a terminal.
BATCH = hand_batch((1, 2), OBS_DIM)


def with_networks(state):
    logits = [math.log(p) for p in BEHAVIOUR]
    s = with_constant_q(state, ONLINE, TARGET)
    return s.replace(
        behaviour=s.behaviour.replace(params=constant_output(s.behaviour.params, logits))
    )


def test_spibb_policy_by_hand():
    probs = jnp.array([BEHAVIOUR])
    q = jnp.array([ONLINE])
    boot = spibb.bootstrapped(probs, config())
    np.testing.assert_array_equal(boot, [[True, False, False]])
    # keep 0.05 on action 0; the other mass 0.25 + 0.7 = 0.95 goes to argmax_{1, 2} Q = 1
    policy = spibb.spibb_policy(q, probs, boot)
    np.testing.assert_allclose(policy, [[0.05, 0.95, 0.0]], atol=1e-6)
    # nothing bootstrapped: greedy;  everything bootstrapped: π̂_b itself
    none = spibb.spibb_policy(q, probs, jnp.zeros_like(boot))
    np.testing.assert_allclose(none, [[1.0, 0.0, 0.0]], atol=1e-6)
    every = spibb.spibb_policy(q, probs, jnp.ones_like(boot))
    np.testing.assert_allclose(every, [BEHAVIOUR], atol=1e-6)


def test_bootstrapping_reads_the_pseudo_count():
    probs = jnp.array([BEHAVIOUR])
    # N̂ = 1000: counts [50, 250, 700], none below 10;  N∧ = 30: [5, 25] below it
    np.testing.assert_array_equal(
        spibb.bootstrapped(probs, config(pseudo_count=1000.0)), [[0, 0, 0]]
    )
    np.testing.assert_array_equal(spibb.bootstrapped(probs, config(n_wedge=30.0)), [[1, 1, 0]])


def test_q_loss_double_chooser_by_hand(state):
    s = with_networks(state)
    # online Q picks a* = 1 outside B: π = [0.05, 0.95, 0]
    # V(s') = 0.05 · 20 + 0.95 · 2 = 2.9;  y = [1 + 0.99 · 2.9, 0] = [3.871, 0]
    # Q(s, a) = [3, 1]: residuals [-0.871, 1] -> Huber [0.871² / 2, 1 / 2]
    loss, m = q_loss(s.q.params, s, BATCH, config())
    assert float(loss) == pytest.approx((0.871**2 / 2 + 0.5) / 2, rel=1e-5)
    assert float(m["target_mean"]) == pytest.approx(3.871 / 2, rel=1e-5)
    assert float(m["q_mean"]) == pytest.approx(2.0)
    assert float(m["bootstrapped_fraction"]) == pytest.approx(1 / 3)


def test_q_loss_target_chooser_by_hand(state):
    s = with_networks(state)
    # Q' picks a* = 2 outside B (4 > 2): π = [0.05, 0, 0.95]
    # V(s') = 0.05 · 20 + 0.95 · 4 = 4.8;  y = [1 + 0.99 · 4.8, 0] = [5.752, 0]
    # residuals [-2.752, 1] -> Huber [2.252, 0.5]
    loss, _ = q_loss(s.q.params, s, BATCH, config(double=False))
    assert float(loss) == pytest.approx((2.252 + 0.5) / 2, rel=1e-5)


def test_zero_n_wedge_is_double_dqn(state):
    s = with_networks(state)
    # B empty: a* = argmax Q(s', ·) = 0, V(s') = Q'(s', 0) = 20; y = [20.8, 0]
    # residuals [-17.8, 1] -> Huber [17.3, 0.5]
    loss, m = q_loss(s.q.params, s, BATCH, config(n_wedge=0.0))
    assert float(loss) == pytest.approx((17.3 + 0.5) / 2, rel=1e-5)
    assert float(m["bootstrapped_fraction"]) == 0.0


def test_all_bootstrapped_evaluates_the_behaviour_policy(state):
    s = with_networks(state)
    # N∧ = 80 > every count: V(s') = 0.05 · 20 + 0.25 · 2 + 0.7 · 4 = 4.3; y = [5.257, 0]
    # residuals [-2.257, 1] -> Huber [1.757, 0.5]
    loss, m = q_loss(s.q.params, s, BATCH, config(n_wedge=80.0))
    assert float(loss) == pytest.approx((1.757 + 0.5) / 2, rel=1e-5)
    assert float(m["bootstrapped_fraction"]) == 1.0


def test_update_trains_both_models_and_copies_the_target(state):
    cfg = config(target_update_period=2)
    batch = data_batch(state, OBS_DIM, NUM_ACTIONS)
    s1, metrics = update(cfg, state, batch, jax.random.key(0))
    assert {"q_loss", "q_mean", "bootstrapped_fraction", "imitation_loss"} <= set(metrics)
    assert not same_tree(s1.behaviour.params, state.behaviour.params)
    assert same_tree(s1.target_q, state.target_q)  # update 1: the target waits
    s2, _ = update(cfg, s1, batch, jax.random.key(1))
    assert int(s2.step) == 2 and same_tree(s2.target_q, s2.q.params)  # update 2: copied


def test_act_mode_and_sample(state):
    s = with_networks(state)
    obs = jnp.asarray(np.random.default_rng(0).normal(size=(4000, OBS_DIM)), jnp.float32)
    chosen = act(config(), s, obs, jax.random.key(0), True)
    assert chosen.dtype == jnp.int32 and bool(jnp.all(chosen == 1))  # mode of [0.05, 0.95, 0]
    sampled = act(config(), s, obs, jax.random.key(1), False)
    # P = [0.05, 0.95, 0]: action 0 about 200 of 4000 (std ≈ 14), action 2 never
    assert abs(float(jnp.mean(sampled == 0)) - 0.05) < 0.015
    assert not bool(jnp.any(sampled == 2))


def test_registered_as_discrete():
    assert algos.get("spibb") is spibb and algos.action_kind(spibb) == "discrete"


@pytest.mark.parametrize(
    "overrides, message",
    [
        ({"n_wedge": -1.0}, "n_wedge must be >= 0, got -1.0"),
        ({"pseudo_count": 0.0}, "pseudo_count must be > 0, got 0.0"),
        ({"logit_l2": -0.5}, "logit_l2 must be >= 0, got -0.5"),
        ({"target_update_period": 0}, "target_update_period must be >= 1, got 0"),
        ({"target_tau": 2.0}, "target_tau must be in (0, 1], got 2.0"),
        ({"huber_delta": 0.0}, "huber_delta must be > 0, got 0.0"),
    ],
)
def test_bad_config_is_refused(state, overrides, message):
    spec = core.Spec(OBS_DIM, 1, state.tf, NUM_ACTIONS)
    with pytest.raises(ValueError, match=f"^{re.escape(message)}$"):
        spibb.init(config(**overrides), spec, jax.random.key(0))
