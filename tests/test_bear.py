"""BEAR: both MMD estimators by hand, the soft clipped max-over-samples target, the critic
and actor losses on constant networks (warm start included), the dual step's sign and
clamp, the raw VAE samples, acting, config errors and one jitted update."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers import random_dataset

from offrl import core
from offrl.algos import bear
from offrl.data.transforms import make_transforms
from offrl.errors import ConfigError

OBS_DIM, ACT_DIM, HIDDEN = 3, 2, (8, 8)
OUT = f"Dense_{len(HIDDEN)}"  # the output layer of an MLP
SQRT_EPS = 1e-3  # sqrt(1e-6): the MMD of identical sample sets


def config(**overrides) -> bear.Config:
    fields = {"hidden": HIDDEN, "vae_hidden": (8, 8), "batch_size": 16, **overrides}
    return bear.Config(**fields)


@pytest.fixture(scope="module")
def setup():
    cfg = config()
    dataset = random_dataset(obs_dim=OBS_DIM, act_dim=ACT_DIM)
    tf = make_transforms(dataset, cfg.normalize_obs, cfg.reward_scaling)
    state = bear.init(cfg, core.spec_from_dataset(dataset, tf), jax.random.PRNGKey(0))
    return cfg, state, core.to_device(dataset, tf)


def col(*values) -> jnp.ndarray:
    """1-D samples as an (n, 1) set."""
    return jnp.asarray(values, jnp.float32)[:, None]


# --------------------------------------------------------------------------- MMD by hand


def test_mmd_laplacian_two_against_two_in_1d():
    # σ = 0.5, so k(x, y) = exp(−|x − y| / (2 · 0.5)) = e^{−|x − y|}.   X = {0, 1}, Y = {1, 3}
    # mean k(X, X) = (1 + e⁻¹ + e⁻¹ + 1) / 4 = (1 + e⁻¹) / 2
    # mean k(Y, Y) = (1 + e⁻² + e⁻² + 1) / 4 = (1 + e⁻²) / 2
    # mean k(X, Y) = (|0−1|, |0−3|, |1−1|, |1−3|) -> (e⁻¹ + e⁻³ + 1 + e⁻²) / 4
    # MMD² = (1 + e⁻¹)/2 + (1 + e⁻²)/2 − (1 + e⁻¹ + e⁻² + e⁻³)/2 = (1 − e⁻³) / 2
    got = float(bear.mmd_laplacian(col(0, 1), col(1, 3), 0.5))
    assert got == pytest.approx(math.sqrt((1 - math.exp(-3)) / 2 + 1e-6), rel=1e-6)


def test_mmd_gaussian_two_against_two_in_1d():
    # σ = 0.5, so k(x, y) = exp(−(x − y)² / (2 · 0.5)) = e^{−(x − y)²}.   X = {0, 1}, Y = {1, 3}
    # mean k(X, X) = (1 + e⁻¹) / 2,  mean k(Y, Y) = (1 + e⁻⁴) / 2
    # mean k(X, Y) = (e⁻¹ + e⁻⁹ + 1 + e⁻⁴) / 4
    # MMD² = (1 − e⁻⁹) / 2
    got = float(bear.mmd_gaussian(col(0, 1), col(1, 3), 0.5))
    assert got == pytest.approx(math.sqrt((1 - math.exp(-9)) / 2 + 1e-6), rel=1e-6)


def test_kernels_use_l1_and_squared_l2_over_2sigma():
    # One 2-D sample each: x = (0, 0), y = (1, 2); σ = 2, so both kernels divide by 4.
    x, y = jnp.zeros((1, 2)), jnp.array([[1.0, 2.0]])
    # Laplacian: ‖x − y‖₁ = 3 -> k = e^{−3/4};  MMD² = 1 + 1 − 2 e^{−3/4}
    lap = float(bear.mmd_laplacian(x, y, 2.0))
    assert lap == pytest.approx(math.sqrt(2 - 2 * math.exp(-0.75) + 1e-6), rel=1e-6)
    # Gaussian: ‖x − y‖² = 5 -> k = e^{−5/4};  MMD² = 2 − 2 e^{−5/4}
    gau = float(bear.mmd_gaussian(x, y, 2.0))
    assert gau == pytest.approx(math.sqrt(2 - 2 * math.exp(-1.25) + 1e-6), rel=1e-6)


def test_mmd_unequal_sizes():
    # Laplacian, σ = 0.5 (k = e^{−|d|}); X = {0} (n = 1), Y = {0, 2} (m = 2)
    # k(X, X) = 1;  mean k(Y, Y) = (1 + e⁻² + e⁻² + 1) / 4 = (1 + e⁻²) / 2
    # mean k(X, Y) = (1 + e⁻²) / 2;  MMD² = 1 + (1 + e⁻²)/2 − (1 + e⁻²) = (1 − e⁻²) / 2
    got = float(bear.mmd_laplacian(col(0), col(0, 2), 0.5))
    assert got == pytest.approx(math.sqrt((1 - math.exp(-2)) / 2 + 1e-6), rel=1e-6)


@pytest.mark.parametrize("mmd", [bear.mmd_laplacian, bear.mmd_gaussian])
def test_mmd_of_identical_sets_is_sqrt_of_the_offset(mmd):
    x = jnp.array([[[0.3, -1.0], [2.0, 0.5], [-0.7, 0.1]]])  # (B=1, n=3, d=2)
    # every kernel mean is the same number, so MMD² = 0 and the result is sqrt(1e-6)
    np.testing.assert_allclose(mmd(x, x, 10.0), [SQRT_EPS], rtol=1e-3)
    # ... with a finite gradient there (the 1e-6 keeps sqrt off 0)
    grad = jax.grad(lambda y: mmd(x, y, 10.0).sum())(x)
    assert np.all(np.isfinite(grad))


def test_mmd_is_per_state_over_a_batch():
    # Two states: the first with identical sets, the second with the 1-D example above.
    x = jnp.array([[[0.0], [1.0]], [[0.0], [1.0]]])
    y = jnp.array([[[0.0], [1.0]], [[1.0], [3.0]]])
    got = bear.mmd_laplacian(x, y, 0.5)
    assert got.shape == (2,)
    expected = [SQRT_EPS, math.sqrt((1 - math.exp(-3)) / 2 + 1e-6)]
    np.testing.assert_allclose(got, expected, rtol=1e-3)


# --------------------------------------------------------------------------- target


def test_soft_clipped_target_takes_the_max_over_samples_after_the_soft_clip():
    # K = 2 critics, B = 1 state, p = 3 samples: Q'_1 = [1, 4, 2], Q'_2 = [3, 0, 2]
    next_q = jnp.array([[[1.0, 4.0, 2.0]], [[3.0, 0.0, 2.0]]])
    # per sample: 0.75 min + 0.25 max = [0.75·1 + 0.25·3, 0.75·0 + 0.25·4, 0.75·2 + 0.25·2]
    #           = [1.5, 1.0, 2.0];  max over samples = 2.0
    # (soft-clipping each critic's own max instead would give 0.75·3 + 0.25·4 = 3.25)
    np.testing.assert_allclose(bear.soft_clipped_max_target(next_q, 0.75), [2.0])
    # λ = 1 is the hard min: max(min) = max(1, 0, 2) = 2;  λ = 0 the max: max(3, 4, 2) = 4
    np.testing.assert_allclose(bear.soft_clipped_max_target(next_q, 1.0), [2.0])
    np.testing.assert_allclose(bear.soft_clipped_max_target(next_q, 0.0), [4.0])


# --------------------------------------------------------------------------- constant nets


def _mlp(params):
    p = params["params"]
    return p["VmapQNet_0"]["MLP_0"] if "VmapQNet_0" in p else p["MLP_0"]


def _zeros(params):
    return jax.tree_util.tree_map(lambda x: np.zeros(x.shape, np.float32), params)


def constant(params, out_bias):
    """Every weight 0 and the output layer's bias `out_bias`: for the critic Q_i = out_bias[i];
    for the actor (μ, log σ) = out_bias everywhere."""
    zeros = _zeros(params)
    last = _mlp(zeros)[OUT]
    last["bias"] = np.asarray(out_bias, np.float32).reshape(last["bias"].shape)
    return zeros


def critic_first_action(params):
    """Q_1(s, a) = a_0 + 1 and Q_2(s, a) = 1 − a_0 for a in [−1, 1].

    Hidden unit 0 of layer 1 is relu(±a_0 + 1) ≥ 0, passed through layer 2 and read out."""
    zeros = _zeros(params)
    mlp = _mlp(zeros)
    mlp["Dense_0"]["kernel"][0, OBS_DIM, 0] = 1.0
    mlp["Dense_0"]["kernel"][1, OBS_DIM, 0] = -1.0
    mlp["Dense_0"]["bias"][:, 0] = 1.0
    mlp["Dense_1"]["kernel"][:, 0, 0] = 1.0
    mlp[OUT]["kernel"][:, 0, 0] = 1.0
    return zeros


def hand_batch(rew=(1.0, 1.0), done=(0.0, 1.0)) -> core.Batch:
    z = np.zeros((2, OBS_DIM), np.float32)
    act = np.array([[0.5, -0.5], [0.0, 1.0]], np.float32)
    return core.Batch(z, act, np.asarray(rew, np.float32), z, np.asarray(done, np.float32))


critic_loss = jax.jit(bear.critic_loss, static_argnums=3)
actor_loss = jax.jit(bear.actor_loss, static_argnums=3)


def test_critic_loss_on_constant_networks(setup):
    cfg, state, _ = setup
    # Target critics 2 and 4 for every (s', a'): per sample 0.75·2 + 0.25·4 = 2.5, max = 2.5
    state = state.replace(target_critic=constant(state.target_critic, [2.0, 4.0]))
    critic = constant(state.critic.params, [0.0, 1.0])
    # y = r + 0.99 (1 − d) 2.5 = [1 + 2.475, 1] = [3.475, 1]
    # Q_1 = 0: (3.475² + 1²) / 2 = (12.075625 + 1) / 2 = 6.5378125
    # Q_2 = 1: (2.475² + 0²) / 2 = 6.125625 / 2 = 3.0628125
    loss, m = critic_loss(critic, state, hand_batch(), cfg, jax.random.PRNGKey(0))
    assert float(loss) == pytest.approx(6.5378125 + 3.0628125, rel=1e-5)
    assert float(m["target_mean"]) == pytest.approx((3.475 + 1.0) / 2, rel=1e-6)
    assert float(m["q_mean"]) == pytest.approx(0.5)


def test_target_is_max_over_samples_of_the_target_actor(setup):
    cfg, state, _ = setup
    # Q'_1 = a_0 + 1, Q'_2 = 1 − a_0: soft clip = 0.75 (1 − |a_0|) + 0.25 (1 + |a_0|)
    # = 1 − 0.5 |a_0|, largest at the sample with the smallest |a_0|. With π' = tanh(0 + ξ),
    # ξ ~ N(0, 1), the max over p = 200 samples finds |a_0| ≈ 0 (v ≈ 1), while a single
    # sample (p = 1) gives E[1 − 0.5 |tanh ξ|] ≈ 0.7 on average over the 64 states.
    state = state.replace(
        target_critic=critic_first_action(state.target_critic),
        target_actor=constant(state.target_actor, [0.0, 0.0, 0.0, 0.0]),  # μ = 0, log σ = 0
    )
    critic = constant(state.critic.params, [0.0, 0.0])
    z = np.zeros((64, OBS_DIM), np.float32)
    batch = core.Batch(z, np.zeros((64, ACT_DIM), np.float32), np.zeros(64), z, np.zeros(64))
    targets = {}
    for p in (1, 200):
        cfg_p = config(num_target_samples=p)
        _, m = critic_loss(critic, state, batch, cfg_p, jax.random.PRNGKey(1))
        targets[p] = float(m["target_mean"]) / 0.99
    assert targets[200] > 0.98  # on average the max found a sample with |a_0| < 0.04
    assert targets[1] < 0.8


def test_reduce_q_over_the_ensemble():
    q = jnp.array([[3.0, 0.0], [-5.0, 2.0]])  # (K = 2, B = 2)
    np.testing.assert_allclose(bear.reduce_q(q, "min"), [-5.0, 0.0])
    np.testing.assert_allclose(bear.reduce_q(q, "max"), [3.0, 2.0])
    np.testing.assert_allclose(bear.reduce_q(q, "mean"), [-1.0, 1.0])


def test_actor_loss_warm_start_then_q(setup):
    cfg, state, data = setup
    batch = jax.tree_util.tree_map(lambda x: x[:16], data)
    # Q_1 = 3, Q_2 = −5 everywhere; α = e^{log α} = e^{ln 2} = 2
    state = state.replace(
        critic=state.critic.replace(params=constant(state.critic.params, [3.0, -5.0])),
        log_alpha=state.log_alpha.replace(params={"value": jnp.log(2.0)}),
    )
    behaviour = jnp.zeros((16, cfg.num_samples_match, ACT_DIM))
    key, params = jax.random.PRNGKey(2), state.actor.params
    warm, m = actor_loss(params, state, batch, cfg, key, behaviour)
    mmd = float(m["mmd"])
    assert float(m["warmstart"]) == 1.0
    assert float(warm) == pytest.approx(2.0 * mmd, rel=1e-5)  # α · MMD only
    # From step `warmstart_steps` on: −min(3, −5) + α · MMD = 5 + 2 MMD
    after = state.replace(step=jnp.int32(cfg.warmstart_steps))
    loss, m = actor_loss(params, after, batch, cfg, key, behaviour)
    assert float(m["warmstart"]) == 0.0 and float(m["q_pi"]) == pytest.approx(-5.0)
    assert float(loss) == pytest.approx(5.0 + 2.0 * mmd, rel=1e-5)
    # The ensemble std penalty: std(3, −5) = 4, weight 0.5 adds 2
    loss, _ = actor_loss(params, after, batch, config(std_weight=0.5), key, behaviour)
    assert float(loss) == pytest.approx(5.0 + 2.0 + 2.0 * mmd, rel=1e-5)


def test_actor_gradient_in_warm_start_reduces_the_mmd(setup):
    cfg, state, data = setup
    batch = jax.tree_util.tree_map(lambda x: x[:16], data)
    behaviour = jnp.full((16, cfg.num_samples_match, ACT_DIM), 2.0)  # raw behaviour at +2
    key = jax.random.PRNGKey(3)
    grad_fn = jax.jit(jax.value_and_grad(bear.actor_loss, has_aux=True), static_argnums=3)
    (_, before), grads = grad_fn(state.actor.params, state, batch, cfg, key, behaviour)
    # a small step against the gradient of α · MMD lowers the MMD (same noise)
    stepped = jax.tree_util.tree_map(lambda p, g: p - 1e-2 * g, state.actor.params, grads)
    (_, after), _ = grad_fn(stepped, state, batch, cfg, key, behaviour)
    assert float(after["mmd"]) < float(before["mmd"])


# --------------------------------------------------------------------------- dual step


def test_dual_step_raises_alpha_above_threshold_and_lowers_it_below(setup):
    cfg, state, _ = setup  # ε = 0.05, log α = 0
    # dL/dlog α = −e^{log α} (MMD − ε) = −(0.25 − 0.05) = −0.2 < 0; Adam's first step is
    # lr · g / |g| = ∓ lr, so log α moves to +1e-3 (violated) or −1e-3 (satisfied).
    grads = jax.grad(lambda p: bear.alpha_loss(p, 0.25, cfg)[0])(state.log_alpha.params)
    assert float(grads["value"]) == pytest.approx(-0.2, rel=1e-6)
    above, _ = core.gradient_step(state.log_alpha, bear.alpha_loss, 0.25, cfg)
    below, _ = core.gradient_step(state.log_alpha, bear.alpha_loss, 0.01, cfg)
    assert float(above.params["value"]) == pytest.approx(1e-3, rel=1e-3)
    assert float(below.params["value"]) == pytest.approx(-1e-3, rel=1e-3)


def test_dual_gradient_ignores_the_mmd():
    # The MMD is a constant to the dual step: no gradient flows back into it.
    cfg = config()
    grad = jax.grad(lambda mmd: bear.alpha_loss({"value": jnp.float32(0.0)}, mmd, cfg)[0])
    assert float(grad(jnp.float32(0.3))) == 0.0


def test_log_alpha_is_clamped(setup):
    cfg, state, _ = setup
    for value, expected in ((12.0, 10.0), (-7.0, -5.0), (3.0, 3.0)):
        la = state.log_alpha.replace(params={"value": jnp.float32(value)})
        assert float(bear.clamp_log_alpha(la, cfg).params["value"]) == expected


# --------------------------------------------------------------------------- sampling, acting


def test_behaviour_samples_are_the_pre_tanh_vae_samples(setup):
    cfg, state, data = setup
    obs, key = data.obs[:4], jax.random.PRNGKey(4)
    raw = bear.behaviour_samples(state.vae, obs, key, 5)
    assert raw.shape == (4, 5, ACT_DIM)
    obs_n = jnp.broadcast_to(obs[:, None], (4, 5, OBS_DIM))
    sampled = state.vae.apply_fn(state.vae.params, obs_n, key, method=bear.VAE.sample)
    np.testing.assert_allclose(jnp.tanh(raw), sampled, rtol=1e-5, atol=1e-6)


def test_actor_samples_clip_the_noise():
    mean, log_std = jnp.zeros((50, 1)), jnp.zeros((50, 1))  # σ = 1
    u = bear.clipped_actor_samples(mean, log_std, jax.random.PRNGKey(5), 40)
    assert u.shape == (50, 40, 1)
    assert float(jnp.abs(u).max()) == pytest.approx(0.5)  # 2000 draws: some beyond ±0.5


def test_act_argmax_q1_over_samples_or_the_mean(setup):
    cfg, state, data = setup
    state = state.replace(
        critic=state.critic.replace(params=critic_first_action(state.critic.params)),
        actor=state.actor.replace(params=constant(state.actor.params, [0.5, 0.0, 2.0, 2.0])),
    )
    obs, key = np.asarray(data.obs[:64]), jax.random.PRNGKey(6)
    # μ = (0.5, 0), σ = e² ≈ 7.4: about half of 30 samples have a_0 close to +1. Q_1 = a_0 + 1
    # picks one of those (Q_2 = 1 − a_0 would pick a_0 near −1).
    a = bear.act(config(act_samples=30), state, obs, key, True)
    assert a.shape == (64, ACT_DIM)
    assert float(a[:, 0].min()) > 0.9
    # act_samples = 0: tanh(μ) = (tanh 0.5, 0); bounds [−1, 1], so no rescaling
    a = bear.act(config(act_samples=0), state, obs, key, True)
    np.testing.assert_allclose(a, np.tile([math.tanh(0.5), 0.0], (64, 1)), rtol=1e-5, atol=1e-6)
    # deterministic=False: one sample, a_0 on both sides of 0
    a = np.asarray(bear.act(cfg, state, obs, key, False))
    assert a[:, 0].min() < 0.0 < a[:, 0].max()


# --------------------------------------------------------------------------- config, update


@pytest.mark.parametrize(
    "overrides",
    [
        {"kernel": "rbf"},
        {"q_reduce": "median"},
        {"num_samples_match": 0},
        {"num_target_samples": 0},
        {"act_samples": -1},
        {"mmd_sigma": 0.0},
        {"log_alpha_min": 1.0, "log_alpha_max": 0.0},
    ],
)
def test_config_errors(overrides):
    with pytest.raises(ConfigError):
        config(**overrides)


def _leaf(params):
    return np.asarray(jax.tree_util.tree_leaves(params)[0])


def test_one_update_is_finite_and_moves_everything(setup):
    # warmstart 0 so the Q term is on; MMD of a fresh actor is far above ε -> α grows
    cfg = config(warmstart_steps=0)
    _, state, data = setup
    batch = jax.tree_util.tree_map(lambda x: x[:16], data)
    new, m = jax.jit(bear.update, static_argnums=0)(cfg, state, batch, jax.random.PRNGKey(7))
    for name in ("vae_loss", "critic_loss", "q_mean", "actor_loss", "mmd", "alpha", "q_pi"):
        assert np.isfinite(float(m[name])), name
    assert float(m["mmd"]) > cfg.mmd_threshold
    assert float(new.log_alpha.params["value"]) > float(state.log_alpha.params["value"])
    assert bool(core.all_finite(new)) and int(new.step) == 1
    for a, b in (
        (new.vae.params, state.vae.params),
        (new.critic.params, state.critic.params),
        (new.actor.params, state.actor.params),
        (new.target_actor, state.target_actor),
        (new.target_critic, state.target_critic),
    ):
        assert not np.allclose(_leaf(a), _leaf(b))
    # targets: τ · online + (1 − τ) · old
    expected = 0.005 * _leaf(new.actor.params) + 0.995 * _leaf(state.target_actor)
    np.testing.assert_allclose(_leaf(new.target_actor), expected, rtol=1e-5, atol=1e-7)
