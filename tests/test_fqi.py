"""FQI: the regression targets (Q_0 ≡ 0, then the frozen iterate) and losses by hand on constant
networks; the iteration boundary (freeze the iterate, re-initialize the fitted network) inside
a scan; acting on the frozen iterate; the config errors, also through the CLI."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers import (
    data_batch,
    discrete_state,
    hand_batch,
    random_discrete_dataset,
    same_tree,
    with_constant_q,
)

from offrl import algos, cli, core
from offrl.algos import fqi
from offrl.data import io
from offrl.nets.discrete import DiscreteQNet

OBS_DIM, NUM_ACTIONS, HIDDEN = 3, 2, (8, 8)
OUT = f"Dense_{len(HIDDEN)}"  # the output layer of the MLP

q_loss = jax.jit(fqi.q_loss, static_argnums=3)
update = jax.jit(fqi.update, static_argnums=0)
act = jax.jit(fqi.act, static_argnums=(0, 4))


def config(**overrides) -> fqi.Config:
    return fqi.Config(**{"hidden": HIDDEN, "batch_size": 16, "iteration_steps": 2} | overrides)


@pytest.fixture(scope="module")
def state():
    return discrete_state(fqi, config(), OBS_DIM, NUM_ACTIONS)


@pytest.fixture(scope="module")
def batch(state):
    return data_batch(state, OBS_DIM, NUM_ACTIONS)


# Action 0 with reward 1 (not terminal); action 1 with reward 0 ending in a terminal.
BATCH = hand_batch((0, 1), OBS_DIM)


def with_networks(state, step: int):
    """Online Q(s, ·) = [0.25, 0.5]; frozen iterate Q_k(s', ·) = [5, 2]; the step counter."""
    s = with_constant_q(state, [0.25, 0.5], [5.0, 2.0])
    return s.replace(step=jnp.asarray(step, jnp.int32))


def test_first_iteration_regresses_on_rewards(state):
    # Q_0 ≡ 0, so y = r = [1, 0] whatever the target network holds
    # residuals Q(s, a) - y = [0.25 - 1, 0.5 - 0] = [-0.75, 0.5]; L = mean(x² / 2)
    s = with_networks(state, step=1)  # inside iteration 0 (iteration_steps = 2)
    loss, m = q_loss(s.q.params, s, BATCH, config())
    assert float(loss) == pytest.approx((0.75**2 + 0.5**2) / 4)
    assert float(m["target_mean"]) == pytest.approx(0.5)
    assert float(m["q_mean"]) == pytest.approx(0.375)


def test_later_iterations_bootstrap_from_the_frozen_iterate(state):
    # y = r + γ (1 - d) max Q_k(s') = [1 + 0.99 · 5, 0] = [5.95, 0]; residuals [-5.7, 0.5]
    s = with_networks(state, step=2)  # iteration 1
    loss, m = q_loss(s.q.params, s, BATCH, config())
    assert float(loss) == pytest.approx((5.7**2 + 0.5**2) / 4)
    assert float(m["target_mean"]) == pytest.approx(5.95 / 2)
    # Huber (κ = 1): 5.7 - 0.5 = 5.2 and 0.5² / 2 = 0.125
    loss, _ = q_loss(s.q.params, s, BATCH, config(loss="huber"))
    assert float(loss) == pytest.approx((5.2 + 0.125) / 2)


def _close(a, b) -> bool:  # jit and op-by-op arithmetic differ in the last bits
    close = lambda x, y: np.allclose(x, y, rtol=1e-5, atol=1e-7)  # noqa: E731
    return all(jax.tree_util.tree_leaves(jax.tree_util.tree_map(close, a, b)))


def test_boundary_freezes_the_iterate_and_restarts_the_fit(state, batch):
    cfg = config()
    s1, _ = update(cfg, state, batch, jax.random.key(1))
    assert same_tree(s1.target_q, state.target_q) and not same_tree(s1.q.params, state.q.params)
    fitted, _ = core.gradient_step(s1.q, fqi.q_loss, s1, batch, cfg)  # step 2's fit, by hand
    s2, _ = update(cfg, s1, batch, jax.random.key(2))
    assert int(s2.step) == 2
    assert _close(s2.target_q, fitted.params)  # Q_1 frozen: the network fitted in iteration 0
    # the fitted network restarts from a fresh initialization drawn with the step's key ...
    fresh = DiscreteQNet(HIDDEN, NUM_ACTIONS).init(jax.random.key(2), jnp.zeros((1, OBS_DIM)))
    assert _close(s2.q.params, fresh)
    # ... with fresh Adam moments and count
    mu = s2.q.opt_state[0].mu
    assert all(not np.any(x) for x in jax.tree_util.tree_leaves(mu)) and int(s2.q.step) == 0
    # the next step trains on and away from the fresh weights; the iterate stays frozen
    s3, _ = update(cfg, s2, batch, jax.random.key(3))
    assert same_tree(s3.target_q, s2.target_q) and not same_tree(s3.q.params, s2.q.params)


def test_without_reinit_the_fit_continues(state, batch):
    cfg = config(reinit=False)
    s = state
    for step in (1, 2):
        s, _ = update(cfg, s, batch, jax.random.key(step))
    assert same_tree(s.target_q, s.q.params)  # a hard copy, as DQN's
    assert int(s.q.step) == 2  # Adam keeps counting


def test_update_runs_inside_a_scan(state, batch):
    """Seven updates, iteration boundaries at 2, 4, 6, fused by lax.scan equal seven calls."""
    cfg = config()
    keys = jax.random.split(jax.random.key(7), 7)
    scanned, _ = jax.jit(
        lambda s: jax.lax.scan(lambda c, k: fqi.update(cfg, c, batch, k), s, keys)
    )(state)
    looped = state
    for k in keys:
        looped, _ = update(cfg, looped, batch, k)
    assert int(scanned.step) == 7
    for a, b in zip(jax.tree_util.tree_leaves(scanned), jax.tree_util.tree_leaves(looped)):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


def test_act_on_the_frozen_iterate(state):
    s = with_constant_q(state, [1.0, 0.0], [0.0, 1.0])
    obs = jnp.asarray(np.random.default_rng(0).normal(size=(5, OBS_DIM)), jnp.float32)
    a = act(config(), s, obs, jax.random.key(0), True)
    assert a.dtype == jnp.int32 and a.tolist() == [1] * 5


def test_registered_discrete():
    assert algos.get("fqi") is fqi and algos.action_kind(fqi) == "discrete"


@pytest.mark.parametrize(
    "field, value, message",
    [
        ("iteration_steps", 0, "iteration_steps must be >= 1, got 0"),
        ("loss", "l1", "loss must be one of \\('squared', 'huber'\\), got 'l1'"),
    ],
)
def test_bad_config_is_refused(state, field, value, message):
    with pytest.raises(ValueError, match=message):
        fqi.init(config(**{field: value}), core.Spec(3, 1, state.tf, 2), jax.random.key(0))


def test_cli_bad_loss_is_one_line_exit_2(tmp_path, capsys):
    path = io.write_npz(random_discrete_dataset(), tmp_path / "cartpole.npz")
    argv = ["train", "fqi", "--dataset", str(path), "--steps", "5", "--out", str(tmp_path / "r")]
    code = cli.main(argv + ["--set", "loss=l1"])
    err = capsys.readouterr().err
    assert code == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "fqi config: loss must be one of" in lines[0], err
