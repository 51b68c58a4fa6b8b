"""CQL: the penalty by hand, the BC log-likelihood, the α and α' steps, one jitted update."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax.training.train_state import TrainState
from helpers import random_dataset

from offrl import core
from offrl.algos import cql, sac
from offrl.data.transforms import make_transforms
from offrl.nets.policies import tanh_gaussian_sample

OBS_DIM, ACT_DIM, HIDDEN, BATCH = 3, 2, (16, 16), 8


def config(**overrides) -> cql.Config:
    return cql.Config(hidden=HIDDEN, batch_size=BATCH, num_sampled_actions=3, **overrides)


@pytest.fixture(scope="module")
def base():
    """One initial state and batch; the configs below change no shapes, so all share them."""
    dataset = random_dataset(obs_dim=OBS_DIM, act_dim=ACT_DIM)
    tf = make_transforms(dataset, config().normalize_obs, config().reward_scaling)
    spec = core.spec_from_dataset(dataset, tf)
    state = cql.init(config(), spec, jax.random.PRNGKey(0))
    batch = core.sample(core.to_device(dataset, tf), jax.random.PRNGKey(1), BATCH)
    return state, batch


def penalty(q_rand, q_pi, logp_pi, q_next_pi, logp_next_pi, q_data, temperature=1.0, **kw):
    a = lambda x: jnp.array([[x]], jnp.float32)  # noqa: E731  (B=1, N=1)
    args = a(q_rand), a(q_pi), a(logp_pi), a(q_next_pi), a(logp_next_pi), jnp.array([q_data])
    return float(cql.cql_penalty(*args, act_dim=1, temperature=temperature, **kw))


def test_cql_penalty_hand_computed():
    # |A| = 1: log 0.5^1 = -ln 2. Terms of the logsumexp:
    #   uniform  Q - log 0.5 = 0 + ln 2 -> exp = 2
    #   π(·|s')  Q - log π   = 0 - 0    -> exp = 1
    #   π(·|s)   Q - log π   = 1 - 1    -> exp = 1
    # logsumexp = ln(2 + 1 + 1) = ln 4; minus Q(s, a_data) = 1: ln 4 - 1 ≈ 0.386294
    assert penalty(0.0, 1.0, 1.0, 0.0, 0.0, 1.0) == pytest.approx(math.log(4) - 1, abs=1e-6)
    # T = 2: T ln Σ exp(x / 2) = 2 ln(e^{ln2 / 2} + 1 + 1) = 2 ln(√2 + 2); minus 1
    expected = 2 * math.log(math.sqrt(2) + 2) - 1
    assert penalty(0.0, 1.0, 1.0, 0.0, 0.0, 1.0, 2.0) == pytest.approx(expected, abs=1e-6)
    # Without importance sampling (CQL(ρ), min_q_version 2): raw Q of [rand, data, next, pi]
    # = [0, 1, 0, 1]: ln(1 + e + 1 + e) - 1 = ln(2 + 2e) - 1
    expected = math.log(2 + 2 * math.e) - 1
    got = penalty(0.0, 1.0, 1.0, 0.0, 0.0, 1.0, importance_sampling=False)
    assert got == pytest.approx(expected, abs=1e-6)


def test_cql_penalty_shapes_match_numpy():
    rng = np.random.default_rng(0)
    e, b, n, act_dim = 2, 5, 4, 3
    q_rand, q_pi, lp, q_next, lp_next = (rng.normal(size=(e, b, n)) for _ in range(5))
    q_data = rng.normal(size=(e, b))
    got = cql.cql_penalty(q_rand, q_pi, lp, q_next, lp_next, q_data, act_dim, 0.5)
    x = np.concatenate([q_rand - act_dim * np.log(0.5), q_next - lp_next, q_pi - lp], -1)
    lse = 0.5 * np.log(np.exp(x / 0.5).sum(-1))
    assert got.shape == (e,)
    np.testing.assert_allclose(got, (lse - q_data).mean(-1), rtol=1e-5)


def test_tanh_gaussian_log_prob_matches_sampler():
    key = jax.random.PRNGKey(0)
    mean, log_std = jnp.array([[0.3, -0.2]]), jnp.array([[-0.5, 0.1]])
    a, logp = tanh_gaussian_sample(key, mean, log_std)
    np.testing.assert_allclose(cql.tanh_gaussian_log_prob(a, mean, log_std), logp, rtol=1e-4)
    # Data actions on the bound stay finite.
    assert jnp.isfinite(cql.tanh_gaussian_log_prob(jnp.ones((1, 2)), mean, log_std)).all()


def test_entropy_alpha_moves_against_the_entropy_gap(base):
    (state, batch), cfg = base, config()
    key = jax.random.PRNGKey(2)
    # A fresh policy (std ≈ 1) has entropy far above H̄ = -|A| = -2: α decreases.
    log_alpha, m = core.gradient_step(state.log_alpha, sac.alpha_loss, state, batch, cfg, key)
    assert float(m["entropy"]) > -ACT_DIM
    assert float(log_alpha.params["value"]) < 0.0
    # With a target above the entropy, α increases.
    high = config(target_entropy=100.0)
    log_alpha, _ = core.gradient_step(state.log_alpha, sac.alpha_loss, state, batch, high, key)
    assert float(log_alpha.params["value"]) > 0.0


def test_lagrange_multiplier_direction(base):
    (state, _), cfg = base, config(with_lagrange=True, target_action_gap=10.0)
    above, _ = core.gradient_step(state.log_alpha_prime, cql.alpha_prime_loss, 12.0, cfg)
    below, _ = core.gradient_step(state.log_alpha_prime, cql.alpha_prime_loss, 8.0, cfg)
    assert float(above.params["value"]) > 0.0 > float(below.params["value"])


def test_bc_warmup_uses_data_log_likelihood(base):
    (state, batch), cfg = base, config(bc_warmup_steps=5)
    key, params = jax.random.PRNGKey(3), state.actor.params
    bc, _ = cql.actor_loss(params, state, batch, cfg, key, 0.0)  # α = 0: -E log π(a_data|s)
    mean, log_std = state.actor.apply_fn(params, batch.obs)
    nll = -jnp.mean(cql.tanh_gaussian_log_prob(batch.act, mean, log_std))
    assert float(bc) == pytest.approx(float(nll), rel=1e-5)
    sac, _ = cql.actor_loss(params, state.replace(step=jnp.int32(5)), batch, cfg, key, 0.0)
    assert float(sac) != pytest.approx(float(nll), rel=1e-3)


def test_one_update_is_finite_and_moves_the_multipliers(base):
    # Lagrange on, gap τ = -100: the penalty is far above it, so α' grows.
    (state, batch), cfg = base, config(with_lagrange=True, target_action_gap=-100.0)
    new, metrics = jax.jit(cql.update, static_argnums=0)(cfg, state, batch, jax.random.PRNGKey(4))
    for name in ("q_mean", "critic_loss", "cql_penalty", "actor_loss", "alpha", "alpha_prime"):
        assert np.isfinite(float(metrics[name])), name
    assert core.all_finite(new)
    assert int(new.step) == 1
    assert float(new.log_alpha.params["value"]) < 0.0  # entropy above -|A|
    assert float(new.log_alpha_prime.params["value"]) > 0.0
    # The targets moved by Polyak towards the updated critic.
    leaf = lambda p: jax.tree_util.tree_leaves(p)[0]  # noqa: E731
    assert not np.allclose(leaf(new.target_critic), leaf(state.target_critic))


@pytest.mark.parametrize(("lagrange", "push_up_rows"), [(False, None), (True, None), (False, 3)])
def test_critic_step_in_blocks_equals_one_block(base, lagrange, push_up_rows):
    # critic_blocks splits the states of the critic step (speed only): the same update and
    # metrics as one block, up to float rounding; COMBO's push-up on the first rows too.
    state, batch = base
    step = jax.jit(cql.update, static_argnums=(0, 4))
    key = jax.random.PRNGKey(5)
    runs = [
        step(config(critic_blocks=b, with_lagrange=lagrange), state, batch, key, push_up_rows)
        for b in (1, 4)
    ]
    (one, m_one), (four, m_four) = runs
    for a, b in zip(jax.tree_util.tree_leaves(one), jax.tree_util.tree_leaves(four)):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-4, atol=1e-6)
    for name in ("critic_loss", "cql_penalty", "q_mean", "target_mean"):
        assert float(m_four[name]) == pytest.approx(float(m_one[name]), rel=1e-5), name
    # 4 blocks of a batch of 8 states: the gcd with the batch size is what is used
    odd = step(config(critic_blocks=3, with_lagrange=lagrange), state, batch, key, push_up_rows)[1]
    assert float(odd["critic_loss"]) == pytest.approx(float(m_one["critic_loss"]), rel=1e-5)


def test_blocked_gradient_step_is_the_mean_loss_gradient():
    # A loss that is a mean over rows: its gradient, whether taken whole or in blocks.
    x = jax.random.normal(jax.random.PRNGKey(0), (12, 3))
    model = TrainState.create(apply_fn=None, params={"w": jnp.arange(3.0)}, tx=optax.sgd(1.0))

    def loss(params, rows):
        value = jnp.mean((rows @ params["w"]) ** 2)
        return value, {"loss": value}

    whole, m_whole = core.gradient_step(model, loss, x)
    blocked, m_blocked = core.blocked_gradient_step(model, loss, x, 3)
    np.testing.assert_allclose(blocked.params["w"], whole.params["w"], rtol=1e-6)
    assert float(m_blocked["loss"]) == pytest.approx(float(m_whole["loss"]), rel=1e-6)
