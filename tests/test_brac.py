"""BRAC: the KL sample estimate, the behaviour likelihood, the penalized target and the dual
steps against hand-computed values; the two phases of one update."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers import random_dataset

from offrl import core
from offrl.algos import brac
from offrl.data.transforms import make_transforms
from offrl.errors import ConfigError

OBS_DIM, ACT_DIM, HIDDEN, BATCH = 3, 2, (16, 16), 8


def config(**overrides) -> brac.Config:
    return brac.Config(hidden=HIDDEN, batch_size=BATCH, **overrides)


def make_state(cfg: brac.Config, act_dim: int = ACT_DIM):
    dataset = random_dataset(obs_dim=OBS_DIM, act_dim=act_dim)
    tf = make_transforms(dataset, cfg.normalize_obs, cfg.reward_scaling)
    state = brac.init(cfg, core.spec_from_dataset(dataset, tf), jax.random.PRNGKey(0))
    batch = core.sample(core.to_device(dataset, tf), jax.random.PRNGKey(1), BATCH)
    return state, batch


@pytest.fixture(scope="module")
def base():
    return make_state(config())


@pytest.fixture(scope="module")
def one_dim():
    """A state and batch with |A| = 1, for the hand-computed densities."""
    return make_state(config(), act_dim=1)


def constant_policy(params, mean: float, pre_log_std: float):
    """Policy parameters whose output is the same (μ, pre-squash log σ) for every state:
    zero weights, the wanted values as the last layer's bias (act_dim = 1)."""
    zeros = jax.tree_util.tree_map(jnp.zeros_like, params)
    zeros["params"]["MLP_0"]["Dense_2"]["bias"] = jnp.array([mean, pre_log_std])
    return zeros


# ------------------------------------------------------------------ the KL estimate


def test_sample_kl_hand_computed():
    # n = 2 samples (axis 0) for B = 2 states.
    logp_pi = jnp.array([[-1.0, -2.0], [0.0, -1.0]])
    logp_b = jnp.array([[-3.0, -2.0], [-1.0, -1.0]])
    # state 0: ((-1 + 3) + (0 + 1)) / 2 = 1.5;  state 1: ((-2 + 2) + (-1 + 1)) / 2 = 0
    np.testing.assert_allclose(brac.sample_kl(logp_pi, logp_b), [1.5, 0.0], atol=1e-6)


def test_kl_estimate_matches_gaussian_kl():
    # The tanh Jacobians cancel in log π - log π_b, so D estimates the KL of the pre-tanh
    # Gaussians: KL(N(μ1, σ²) ‖ N(μ2, σ²)) = (μ1 - μ2)² / (2σ²), summed over dimensions.
    cfg = config(n_div_samples=50_000)
    log_half = math.log(0.5)
    pi = (jnp.array([[0.2, -0.1]]), jnp.full((1, 2), log_half))
    b = (jnp.array([[0.0, 0.1]]), jnp.full((1, 2), log_half))
    expected = (0.2**2 + 0.2**2) / (2 * 0.25)  # 0.16
    got = brac.kl_divergence(jax.random.PRNGKey(0), cfg, pi, b)
    assert got.shape == (1,)
    assert float(got[0]) == pytest.approx(expected, abs=0.01)
    # A policy against itself: exactly 0 up to the clip and float error.
    same = brac.kl_divergence(jax.random.PRNGKey(1), config(), pi, pi)
    assert float(jnp.abs(same).max()) < 1e-3


# ------------------------------------------------------------------ behaviour fit


def test_behavior_log_likelihood_hand_computed(one_dim):
    (state, batch), cfg = one_dim, config(behavior_entropy=False)
    # μ = 0.1; pre-squash 0 -> log σ = -5 + 2.5 (tanh 0 + 1) = -2.5
    params = constant_policy(state.behavior.params, 0.1, 0.0)
    acts = jnp.array([[0.2], [1.0]])  # 1.0 is pulled in to 1 - 1e-3 = 0.999
    batch = batch.replace(obs=batch.obs[:2], act=acts)
    sigma = math.exp(-2.5)

    def log_density(a):  # log N(atanh a; μ, σ²) - log(1 - a²)
        u = math.atanh(a)
        z = (u - 0.1) / sigma
        return -0.5 * z * z - math.log(sigma) - 0.5 * math.log(2 * math.pi) - math.log(1 - a * a)

    expected_nll = -(log_density(0.2) + log_density(0.999)) / 2
    loss, metrics = brac.behavior_loss(params, state, batch, cfg, jax.random.PRNGKey(0), 0.0)
    assert float(loss) == pytest.approx(expected_nll, rel=1e-4)
    assert float(metrics["behavior_nll"]) == pytest.approx(expected_nll, rel=1e-4)
    # With the entropy weight α_b: loss = NLL - α_b · H (H estimated from a sample)
    loss, m = brac.behavior_loss(params, state, batch, cfg, jax.random.PRNGKey(0), 0.5)
    assert float(loss) == pytest.approx(expected_nll - 0.5 * float(m["behavior_entropy"]), rel=1e-4)


def test_act_is_tanh_of_the_mean(one_dim):
    state = one_dim[0]
    actor = state.actor.replace(params=constant_policy(state.actor.params, 0.5, 0.0))
    state = state.replace(actor=actor)
    obs = jnp.ones((3, OBS_DIM))
    got = brac.act(config(), state, obs, jax.random.PRNGKey(0), deterministic=True)
    np.testing.assert_allclose(got, np.full((3, 1), math.tanh(0.5)), rtol=1e-6)
    sampled = brac.act(config(), state, obs, jax.random.PRNGKey(0), deterministic=False)
    assert not np.allclose(sampled, got)


# ------------------------------------------------------------------ critic target


def test_penalized_target_hand_computed():
    batch = core.Batch(
        obs=jnp.zeros((2, 1)),
        act=jnp.zeros((2, 1)),
        rew=jnp.array([1.0, 2.0]),
        next_obs=jnp.zeros((2, 1)),
        done=jnp.array([0.0, 1.0]),
    )
    next_q, next_logp, kl = jnp.array([10.0, 5.0]), jnp.array([-1.0, -2.0]), jnp.array([0.5, 3.0])
    # BRAC-v: 1 + 0.99 (10 - 0.2·(-1) - 0.1·0.5) = 1 + 0.99 · 10.15 = 11.0485; terminal: 2
    cfg = config(discount=0.99)
    y = brac.penalized_target(batch, next_q, next_logp, kl, 0.1, 0.2, cfg)
    np.testing.assert_allclose(y, [11.0485, 2.0], rtol=1e-6)
    # BRAC-p: no α D in the target: 1 + 0.99 · 10.2 = 11.098
    cfg = config(discount=0.99, value_penalty=False)
    y = brac.penalized_target(batch, next_q, next_logp, kl, 0.1, 0.2, cfg)
    np.testing.assert_allclose(y, [11.098, 2.0], rtol=1e-6)


def test_critic_target_subtracts_discounted_penalty(base):
    # Same key, same samples: the BRAC-v target is lower by γ α E[(1 - d) D(s')] (d = 0 here).
    state, batch = base
    key, alpha = jax.random.PRNGKey(3), 0.7
    args = (state.critic.params, state, batch)
    _, v = brac.critic_loss(*args, config(), key, alpha, 0.0)
    _, p = brac.critic_loss(*args, config(value_penalty=False), key, alpha, 0.0)
    assert float(batch.done.max()) == 0.0
    gap = float(p["target_mean"] - v["target_mean"])
    assert gap == pytest.approx(0.99 * alpha * float(v["kl_next"]), rel=1e-4)
    assert float(v["q_mean"]) == float(p["q_mean"])  # q_mean: Q of the data actions


def test_actor_loss_warm_start_leaves_q_out(base):
    state, batch = base
    key, params = jax.random.PRNGKey(4), state.actor.params
    warm, m = brac.actor_loss(params, state, batch, config(), key, 0.3, 0.0, 0.0)
    assert float(warm) == pytest.approx(0.3 * float(m["kl"]), rel=1e-5)
    full, m = brac.actor_loss(params, state, batch, config(), key, 0.3, 0.0, 1.0)
    assert float(full) == pytest.approx(0.3 * float(m["kl"]) - float(m["q_pi"]), rel=1e-5)


# ------------------------------------------------------------------ dual steps


def test_clip_v2_gradient_passes_only_back_inside():
    def grad(x, slope):  # d/dx of slope · clip_v2(x, 0, 1)
        return float(jax.grad(lambda v: slope * brac.clip_v2(v, 0.0, 1.0))(jnp.float32(x)))

    assert float(brac.clip_v2(jnp.float32(-0.5), 0.0, 1.0)) == 0.0
    assert grad(0.5, 1.0) == 1.0 and grad(0.5, -1.0) == -1.0  # inside: plain gradient
    assert grad(-0.5, 1.0) == 0.0  # below: descent would lower it further -> blocked
    assert grad(-0.5, -1.0) == -1.0  # below: descent raises it back -> passes
    assert grad(1.5, -1.0) == 0.0 and grad(1.5, 1.0) == 1.0  # above: the mirror image


def test_dual_alpha_gradient_and_sign(base):
    state, cfg = base[0], config(target_divergence=2.0)
    raw = state.alpha.params  # α = 0.1
    # L = -α (D - D_target): ∂L/∂α = -(D - D_target) = -(5 - 2) = -3
    g = jax.grad(lambda p: brac.alpha_loss(p, 5.0, cfg)[0])(raw)
    assert float(g["value"]) == pytest.approx(-3.0)
    above, m = core.gradient_step(state.alpha, brac.alpha_loss, 5.0, cfg)  # D > target
    below, _ = core.gradient_step(state.alpha, brac.alpha_loss, 1.0, cfg)  # D < target
    assert float(m["alpha_loss"]) == pytest.approx(-0.1 * 3.0, rel=1e-6)
    # Adam's first step moves by lr = 1e-3 in the sign's direction.
    assert float(above.params["value"]) == pytest.approx(0.1 + 1e-3, abs=1e-6)
    assert float(below.params["value"]) == pytest.approx(0.1 - 1e-3, abs=1e-6)
    # At a bound the step that would leave [0, α_max] is blocked.
    at_zero = state.alpha.replace(params={"value": jnp.float32(0.0)})
    stuck, _ = core.gradient_step(at_zero, brac.alpha_loss, 1.0, cfg)
    assert float(stuck.params["value"]) == 0.0
    at_max = state.alpha.replace(params={"value": jnp.float32(cfg.alpha_max)})
    stuck, _ = core.gradient_step(at_max, brac.alpha_loss, 5.0, cfg)
    assert float(stuck.params["value"]) == cfg.alpha_max


def test_entropy_weight_sign(base):
    state = base[0]
    one = state.behavior_alpha  # α_b = 1
    # ∂/∂α [α (H - H̄)] = H - H̄: entropy above target lowers α, below raises it.
    high, _ = core.gradient_step(one, brac.temperature_loss, jnp.float32(1.0), -2.0)
    low, _ = core.gradient_step(one, brac.temperature_loss, jnp.float32(-3.0), -2.0)
    assert float(high.params["value"]) < 1.0 < float(low.params["value"])


# ------------------------------------------------------------------ one update


def test_pretrain_then_actor_critic_phases(base):
    cfg = config(behavior_pretrain_steps=1, warm_start_steps=0, train_alpha=True)
    state, batch = base
    update = jax.jit(brac.update, static_argnums=0)
    leaf = lambda p: np.asarray(jax.tree_util.tree_leaves(p)[0])  # noqa: E731

    s1, m1 = update(cfg, state, batch, jax.random.PRNGKey(5))  # step 0: π_b only
    assert int(s1.step) == 1
    assert not np.allclose(leaf(s1.behavior.params), leaf(state.behavior.params))
    np.testing.assert_array_equal(leaf(s1.actor.params), leaf(state.actor.params))
    np.testing.assert_array_equal(leaf(s1.critic.params), leaf(state.critic.params))
    assert np.isfinite(float(m1["behavior_nll"])) and np.isnan(float(m1["q_mean"]))

    s2, m2 = update(cfg, s1, batch, jax.random.PRNGKey(6))  # step 1: actor-critic, π_b frozen
    np.testing.assert_array_equal(leaf(s2.behavior.params), leaf(s1.behavior.params))
    assert not np.allclose(leaf(s2.actor.params), leaf(s1.actor.params))
    assert not np.allclose(leaf(s2.target_critic), leaf(s1.target_critic))
    for name in ("q_mean", "critic_loss", "actor_loss", "kl", "alpha", "alpha_loss"):
        assert np.isfinite(float(m2[name])), name
    assert np.isnan(float(m2["behavior_nll"]))
    assert core.all_finite(s2)


@pytest.mark.parametrize(
    "field, value",
    [
        ("alpha", -0.1),
        ("alpha", 600.0),  # above alpha_max = 500
        ("n_div_samples", 0),
        ("num_critics", 0),
        ("ensemble_q_lambda", 1.5),
        ("behavior_pretrain_steps", -1),
        ("log_std_min", 0.0),  # not below log_std_max = 0
    ],
)
def test_config_rejects_bad_values(field, value):
    with pytest.raises(ConfigError, match=f"brac: .*{field.split('_')[0]}"):
        brac.Config(**{field: value})
