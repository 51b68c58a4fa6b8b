"""BCQ: the soft clipped target by hand, the perturbation bounds, the VAE ELBO by hand, the
critic and actor losses on hand-made networks, the argmax when acting, the update order,
and the config's error paths."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers import random_dataset

from offrl import core
from offrl.algos import bcq, make_algo_config
from offrl.data.transforms import make_transforms
from offrl.errors import ConfigError
from offrl.nets.vae import elbo_terms, vae_loss

OBS_DIM, ACT_DIM, HIDDEN = 3, 2, (8, 8)
OUT = f"Dense_{len(HIDDEN)}"  # the output layer of an MLP
TANH_HALF = math.tanh(0.5)  # the largest decoded action when the latent is clipped to ±0.5

critic_losses = jax.jit(  # one loss per key
    lambda params, state, batch, cfg, keys: jax.vmap(
        lambda k: bcq.critic_loss(params, state, batch, cfg, k)
    )(keys),
    static_argnums=3,
)
actor_loss = jax.jit(bcq.actor_loss, static_argnums=3)
actor_grad = jax.jit(
    jax.grad(lambda params, *args: bcq.actor_loss(params, *args)[0]), static_argnums=3
)
act = jax.jit(bcq.act, static_argnums=(0, 4))


def config(**overrides) -> bcq.Config:
    return bcq.Config(hidden=HIDDEN, vae_hidden=HIDDEN, batch_size=16, **overrides)


@pytest.fixture(scope="module")
def setup():
    cfg = config()
    dataset = random_dataset(obs_dim=OBS_DIM, act_dim=ACT_DIM)
    tf = make_transforms(dataset, cfg.normalize_obs, cfg.reward_scaling)
    state = bcq.init(cfg, core.spec_from_dataset(dataset, tf), jax.random.PRNGKey(0))
    return cfg, state, core.to_device(dataset, tf)


# ---- hand-made networks ---------------------------------------------------------------------


def _zeros(params):
    return jax.tree_util.tree_map(lambda x: np.zeros(x.shape, np.float32), params)


def _critic_mlp(params):
    return params["params"]["VmapQNet_0"]["MLP_0"]


def constant_critic(params, values):
    """Twin critic with Q_i(s, a) = values[i] everywhere."""
    zeros = _zeros(params)
    _critic_mlp(zeros)[OUT]["bias"][:] = np.asarray(values, np.float32).reshape(2, 1)
    return zeros


def critic_of_first_action(params, signs=(1.0, 1.0), offsets=(1.0, 1.0)):
    """Q_i(s, a) = signs[i] · a_0 + offsets[i] for actions in [-1, 1].

    Hidden unit 0 of layer 1 is relu(a_0 + 1) = a_0 + 1 ≥ 0, passed on unchanged by layer 2
    and read out with weight signs[i], bias offsets[i] - signs[i]."""
    zeros = _zeros(params)
    mlp = _critic_mlp(zeros)
    mlp["Dense_0"]["kernel"][:, OBS_DIM, 0] = 1.0  # the input a_0
    mlp["Dense_0"]["bias"][:, 0] = 1.0
    mlp["Dense_1"]["kernel"][:, 0, 0] = 1.0
    mlp[OUT]["kernel"][:, 0, 0] = signs
    mlp[OUT]["bias"][:, 0] = np.subtract(offsets, signs)
    return zeros


def constant_actor(params, logits):
    """ξ with MLP(s, a) = logits everywhere: π(s, a) = clip(a + Φ tanh(logits), -1, 1)."""
    zeros = _zeros(params)
    zeros["params"]["MLP_0"][OUT]["bias"][:] = logits
    return zeros


def vae_decoding(params, first_latent: bool):
    """A VAE whose decoder gives D(s, z) = (tanh(z_0), 0) if first_latent, else (0, 0).

    Unit 0 of layer 1 is relu(z_0 + 1) = z_0 + 1 (z_0 ≥ -0.5 after the clip), passed on by
    layer 2 and read out with weight 1 and bias -1."""
    zeros = _zeros(params)
    if first_latent:
        dec = zeros["params"]["decoder"]
        dec["Dense_0"]["kernel"][OBS_DIM, 0] = 1.0  # the decoder's input is [s, z]
        dec["Dense_0"]["bias"][0] = 1.0
        dec["Dense_1"]["kernel"][0, 0] = 1.0
        dec[OUT]["kernel"][0, 0] = 1.0
        dec[OUT]["bias"][0] = -1.0
    return zeros


def with_params(state, vae=None, actor=None, critic=None, target_actor=None, target_critic=None):
    replace = {}
    if vae is not None:
        replace["vae"] = state.vae.replace(params=vae)
    if actor is not None:
        replace["actor"] = state.actor.replace(params=actor)
    if critic is not None:
        replace["critic"] = state.critic.replace(params=critic)
    if target_actor is not None:
        replace["target_actor"] = target_actor
    if target_critic is not None:
        replace["target_critic"] = target_critic
    return state.replace(**replace)


def hand_batch(rew=(1.0, 1.0), done=(0.0, 1.0)) -> core.Batch:
    b = len(rew)
    return core.Batch(
        obs=np.zeros((b, OBS_DIM), np.float32),
        act=np.zeros((b, ACT_DIM), np.float32),
        rew=np.asarray(rew, np.float32),
        next_obs=np.zeros((b, OBS_DIM), np.float32),
        done=np.asarray(done, np.float32),
    )


# ---- the soft clipped target ------------------------------------------------------------------

# Twin target Q of n = 3 sampled actions for B = 2 next states: (2, B, n).
Q_NEXT = np.array(
    [
        [[1.0, 4.0, 2.0], [0.0, -1.0, 3.0]],  # Q'_1
        [[3.0, 0.0, 2.0], [2.0, 1.0, -5.0]],  # Q'_2
    ],
    np.float32,
)


def test_soft_clipped_max_hand_computed():
    # λ = 0.75, per sample 0.75 min + 0.25 max:
    #   state 0: (1,3) -> 0.75 + 0.75 = 1.5; (4,0) -> 0 + 1 = 1; (2,2) -> 2        max = 2
    #   state 1: (0,2) -> 0 + 0.5 = 0.5; (-1,1) -> -0.75 + 0.25 = -0.5; (3,-5) -> -3.75 + 0.75 = -3
    #                                                                              max = 0.5
    np.testing.assert_allclose(bcq.soft_clipped_max(Q_NEXT, 0.75), [2.0, 0.5], rtol=1e-6)
    # The max over samples comes after the soft clip, not before: soft-clipping the per-critic
    # maxima (4 and 3 for state 0) would give 0.75 · 3 + 0.25 · 4 = 3.25 instead of 2.
    # λ = 1 is TD3's clipped double Q: mins (1, 0, 2) -> 2 and (0, -1, -5) -> 0.
    np.testing.assert_allclose(bcq.soft_clipped_max(Q_NEXT, 1.0), [2.0, 0.0], rtol=1e-6)
    # λ = 0 takes the larger critic: maxes (3, 4, 2) -> 4 and (2, 1, 3) -> 3.
    np.testing.assert_allclose(bcq.soft_clipped_max(Q_NEXT, 0.0), [4.0, 3.0], rtol=1e-6)


def test_target_masks_terminals():
    value = bcq.soft_clipped_max(Q_NEXT, 0.75)  # [2, 0.5] from the test above
    # y = r + 0.99 (1 - d) V:  d = (0, 1): [1 + 1.98, 1];  d = (1, 0): [1, 1 + 0.495]
    y = core.td_target(hand_batch(done=(0.0, 1.0)), value, 0.99)
    np.testing.assert_allclose(y, [2.98, 1.0], rtol=1e-6)
    y = core.td_target(hand_batch(done=(1.0, 0.0)), value, 0.99)
    np.testing.assert_allclose(y, [1.0, 1.495], rtol=1e-6)


def test_critic_loss_on_constant_networks(setup):
    cfg, state, _ = setup
    # Target critics 2 and 4 for every sampled action: 0.75 · 2 + 0.25 · 4 = 2.5.
    state = with_params(state, target_critic=constant_critic(state.target_critic, [2.0, 4.0]))
    critic = constant_critic(state.critic.params, [0.0, 1.0])
    # y = 1 + 0.99 (1 - d) · 2.5 = [3.475, 1]   (the terminal does not bootstrap)
    # Q_1 = 0: (3.475² + 1²) / 2 = (12.075625 + 1) / 2 = 6.5378125
    # Q_2 = 1: ((1 - 3.475)² + 0²) / 2 = 6.125625 / 2 = 3.0628125
    keys = jax.random.split(jax.random.PRNGKey(0), 3)
    loss, m = critic_losses(critic, state, hand_batch(), cfg, keys)
    np.testing.assert_allclose(loss, np.full(3, 6.5378125 + 3.0628125), rtol=1e-5)
    np.testing.assert_allclose(m["q_mean"], np.full(3, 0.5), rtol=1e-6)
    np.testing.assert_allclose(m["target_mean"], np.full(3, (3.475 + 1) / 2), rtol=1e-6)


def targets(cfg, state, keys, vae, online_actor, target_actor) -> np.ndarray:
    """y = 0.99 V(s') for one transition with r = 0, d = 0 under target critics
    Q'_1 = Q'_2 = a_0 + 1 (so the soft clip is a_0 + 1 itself), one value per key.
    With both online critics 0 the loss is 2 y², so y = sqrt(loss / 2)."""
    state = with_params(
        state,
        vae=vae,
        actor=online_actor,
        target_actor=target_actor,
        target_critic=critic_of_first_action(state.target_critic),
    )
    critic = constant_critic(state.critic.params, [0.0, 0.0])
    loss, _ = critic_losses(critic, state, hand_batch(rew=(0.0,), done=(0.0,)), cfg, keys)
    return np.sqrt(np.asarray(loss) / 2.0)


def test_target_perturbs_with_the_target_actor(setup):
    cfg, state, _ = setup
    vae = vae_decoding(state.vae.params, first_latent=False)  # ã = (0, 0)
    up = constant_actor(state.actor.params, [20.0, 0.0])  # a_0 + Φ tanh(20) = 0.05
    down = constant_actor(state.actor.params, [-20.0, 0.0])  # a_0 - 0.05
    keys = jax.random.split(jax.random.PRNGKey(1), 2)
    # target actor up: y = 0.99 (0.05 + 1) = 1.0395 (the online actor's would be 0.9405)
    y = targets(cfg, state, keys, vae, online_actor=down, target_actor=up)
    np.testing.assert_allclose(y, [1.0395, 1.0395], rtol=1e-5)
    y = targets(cfg, state, keys, vae, online_actor=up, target_actor=down)
    np.testing.assert_allclose(y, [0.9405, 0.9405], rtol=1e-5)


def test_target_max_over_clipped_vae_samples(setup):
    _, state, _ = setup
    vae = vae_decoding(state.vae.params, first_latent=True)  # ã_0 = tanh(clip(z_0, ±0.5))
    still = constant_actor(state.actor.params, [0.0, 0.0])  # no perturbation
    keys = jax.random.split(jax.random.PRNGKey(2), 40)
    top = 0.99 * (TANH_HALF + 1.0)  # the best sample, z_0 clipped at 0.5
    # n = 10: V = max_k (ã_0k + 1) <= tanh(0.5) + 1, reached unless no z_0 of 10 exceeds 0.5
    # (probability 0.69^10 ≈ 2.4% per key), so nearly every key gives exactly `top`.
    y = targets(config(num_samples=10), state, keys, vae, still, still)
    assert np.all(y <= top + 1e-5) and np.all(y >= 0.99 * (1.0 - TANH_HALF) - 1e-5)
    assert np.mean(np.isclose(y, top, rtol=1e-5)) >= 0.85
    # n = 1: one sample, at the clip only with probability 0.31 — the max over samples matters.
    y1 = targets(config(num_samples=1), state, keys, vae, still, still)
    assert np.mean(np.isclose(y1, top, rtol=1e-5)) <= 0.6
    assert y1.mean() < y.mean() - 0.1


# ---- perturbation -----------------------------------------------------------------------------


def test_perturb_hand_values():
    a = jnp.array([0.5, 0.98, -1.0, 0.0, -0.99])
    logits = jnp.array([0.0, 100.0, -100.0, math.atanh(0.5), -math.atanh(0.5)])
    # 0.5 + 0 = 0.5;  0.98 + 0.05 = 1.03 -> 1;  -1 - 0.05 -> -1;  0 + 0.05 · 0.5 = 0.025;
    # -0.99 - 0.025 = -1.015 -> -1
    got = bcq.perturb(a, logits, 0.05)
    np.testing.assert_allclose(got, [0.5, 1.0, -1.0, 0.025, -1.0], rtol=1e-6, atol=1e-7)


def test_perturbation_network_bounds(setup):
    cfg, state, _ = setup
    rng = np.random.default_rng(0)
    obs = jnp.asarray(rng.normal(size=(256, OBS_DIM)), jnp.float32)
    a = jnp.asarray(rng.uniform(-1, 1, size=(256, ACT_DIM)), jnp.float32)
    # Large random weights saturate tanh: |ξ| reaches Φ but never exceeds it.
    params = jax.tree_util.tree_map(lambda x: 50.0 * x, state.actor.params)
    out = state.actor.apply_fn(params, obs, a)
    assert float(jnp.max(jnp.abs(out - a))) <= cfg.phi + 1e-6
    assert float(jnp.max(jnp.abs(out - a))) > 0.9 * cfg.phi
    assert bool(jnp.all((out >= -1.0) & (out <= 1.0)))
    # Φ = 0 leaves the sampled action as it is.
    module = bcq.Perturbation(HIDDEN, ACT_DIM, 0.0)
    np.testing.assert_array_equal(module.apply(params, obs, a), a)


# ---- VAE --------------------------------------------------------------------------------------


def test_vae_elbo_hand_computed():
    recon, act = jnp.array([[0.5, 0.0]]), jnp.array([[0.0, 0.0]])
    mean, log_std = jnp.array([[1.0, 0.0]]), jnp.array([[0.0, math.log(2.0)]])
    # reconstruction: (0.5² + 0²) / 2 = 0.125
    # KL_j = -½ (1 + 2 log σ_j - μ_j² - σ_j²):
    #   j = 0 (μ = 1, σ = 1): -½ (1 + 0 - 1 - 1) = 0.5
    #   j = 1 (μ = 0, σ = 2): -½ (1 + 2 ln 2 - 0 - 4) = 1.5 - ln 2 ≈ 0.806853
    kl = (0.5 + 1.5 - math.log(2.0)) / 2
    r, k = elbo_terms(recon, act, mean, log_std)
    assert float(r) == pytest.approx(0.125)
    assert float(k) == pytest.approx(kl, rel=1e-6)
    # BCQ's loss: reconstruction + ½ KL = 0.125 + 0.5 · 0.6534264 ≈ 0.4517132
    fake_apply = lambda params, obs, a, key: (recon, mean, log_std)  # noqa: E731
    loss, m = vae_loss(None, fake_apply, jnp.zeros((1, OBS_DIM)), act, jax.random.PRNGKey(0))
    assert float(loss) == pytest.approx(0.125 + 0.5 * kl, rel=1e-6)
    assert float(m["vae_kl"]) == pytest.approx(kl, rel=1e-6)


# ---- actor ------------------------------------------------------------------------------------


def test_actor_loss_reads_the_first_critic(setup):
    cfg, state, _ = setup
    # Q_1 = a_0 + 1, Q_2 = -5: a loss on min Q would read Q_2.
    critic = critic_of_first_action(state.critic.params, signs=(1.0, 0.0), offsets=(1.0, -5.0))
    state = with_params(
        state, vae=vae_decoding(state.vae.params, first_latent=False), critic=critic
    )
    actor = constant_actor(state.actor.params, [math.atanh(0.5), 0.0])
    loss, m = actor_loss(actor, state, hand_batch(), cfg, jax.random.PRNGKey(0))
    # ã = 0, π = 0 + 0.05 · 0.5 = 0.025:  L = -(0.025 + 1) = -1.025;  mean |π - ã| = 0.025 / 2
    assert float(loss) == pytest.approx(-1.025, rel=1e-6)
    assert float(m["perturbation"]) == pytest.approx(0.0125, rel=1e-5)
    # dL/db_0 = -Φ (1 - tanh² b_0) = -0.05 · 0.75 = -0.0375;  Q_1 ignores a_1, so dL/db_1 = 0
    grads = actor_grad(actor, state, hand_batch(), cfg, jax.random.PRNGKey(0))
    np.testing.assert_allclose(
        grads["params"]["MLP_0"][OUT]["bias"], [-0.0375, 0.0], rtol=1e-5, atol=1e-8
    )


# ---- acting -----------------------------------------------------------------------------------


def test_select_hand_values():
    q = jnp.array([[1.0, 3.0, 2.0], [5.0, 0.0, 4.0]])
    cands = jnp.arange(12.0).reshape(2, 3, 2)  # state 0: [0,1],[2,3],[4,5]; 1: [6,7],[8,9],...
    np.testing.assert_array_equal(core.best_candidate(q, cands), [[2.0, 3.0], [6.0, 7.0]])


def test_act_picks_the_argmax_of_the_first_critic(setup):
    cfg, state, _ = setup
    # ã_0 = tanh(clip(z_0, ±0.5)), ã_1 = 0, no perturbation; Q_1 = a_0 + 1, Q_2 = 1 - a_0.
    state = with_params(
        state,
        vae=vae_decoding(state.vae.params, first_latent=True),
        actor=constant_actor(state.actor.params, [0.0, 0.0]),
        critic=critic_of_first_action(state.critic.params, signs=(1.0, -1.0)),
    )
    obs = jnp.zeros((4, OBS_DIM))
    # Among 100 samples some z_0 > 0.5 (probability 1 - 0.69^100), clipped to 0.5: the
    # argmax of Q_1 is ã_0 = tanh(0.5) (Q_2's would be -tanh(0.5)); the bounds are [-1, 1].
    a = np.asarray(act(cfg, state, obs, jax.random.PRNGKey(3), True))
    np.testing.assert_allclose(a, np.tile([TANH_HALF, 0.0], (4, 1)), rtol=1e-5, atol=1e-7)
    # deterministic=False: one sample each, no argmax, within the clipped latent's range.
    a = np.asarray(act(cfg, state, jnp.zeros((64, OBS_DIM)), jax.random.PRNGKey(3), False))
    assert np.all(np.abs(a[:, 0]) <= TANH_HALF + 1e-6) and np.all(a[:, 1] == 0.0)
    assert np.mean(np.isclose(a[:, 0], TANH_HALF)) < 0.6  # not all at the argmax


# ---- update order -----------------------------------------------------------------------------


def _same(a, b) -> bool:
    return all(jax.tree_util.tree_leaves(jax.tree_util.tree_map(np.array_equal, a, b)))


def test_update_steps_every_network_and_moves_targets(setup):
    cfg, state0, data = setup
    batch = jax.tree_util.tree_map(lambda x: x[: cfg.batch_size], data)
    state1, metrics = jax.jit(bcq.update, static_argnums=0)(cfg, state0, batch, jax.random.key(4))
    assert int(state1.step) == 1
    for name in ("vae", "actor", "critic"):
        assert not _same(getattr(state1, name).params, getattr(state0, name).params), name
    for key in ("vae_loss", "critic_loss", "q_mean", "actor_loss"):
        assert np.isfinite(float(metrics[key])), key
    # target <- τ · online (after this step) + (1 - τ) · target, τ = 0.005, every step
    for target, old, online in (
        (state1.target_actor, state0.target_actor, state1.actor.params),
        (state1.target_critic, state0.target_critic, state1.critic.params),
    ):
        expected = jax.tree_util.tree_map(
            lambda o, n: 0.005 * np.asarray(n) + 0.995 * np.asarray(o), old, online
        )
        jax.tree_util.tree_map(
            lambda x, y: np.testing.assert_allclose(x, y, rtol=1e-5, atol=1e-7), target, expected
        )


# ---- config -----------------------------------------------------------------------------------


def test_reference_defaults():
    cfg = bcq.Config()
    assert (cfg.lmbda, cfg.phi, cfg.num_samples, cfg.batch_size) == (0.75, 0.05, 10, 100)
    assert (cfg.actor_lr, cfg.critic_lr, cfg.vae_lr) == (1e-3, 1e-3, 1e-3)
    assert (cfg.hidden, cfg.vae_hidden) == ((400, 300), (750, 750))


@pytest.mark.parametrize(
    "field, value",
    [("lmbda", 1.5), ("lmbda", -0.1), ("phi", -0.05), ("num_samples", 0), ("latent_clip", 0.0)],
)
def test_config_rejects_bad_values(field, value):
    with pytest.raises(ConfigError, match=field):
        bcq.Config(**{field: value})
    with pytest.raises(ConfigError, match=field):  # the same through the CLI's --set path
        make_algo_config("bcq", {field: str(value)})
