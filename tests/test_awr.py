"""AWR: the weights, the actor and value losses on constant networks, both baselines' targets
and advantages, the Monte-Carlo return column, the update order and the config's errors."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers import random_dataset

from offrl import core
from offrl.algos import awr
from offrl.data.dataset import Dataset
from offrl.data.transforms import Transforms, make_transforms

OBS_DIM, ACT_DIM, HIDDEN = 3, 2, (8, 8)
OUT = f"Dense_{len(HIDDEN)}"  # the output layer
LOG_2PI = math.log(2 * math.pi)

actor_loss = jax.jit(awr.actor_loss, static_argnums=3)
actor_grad = jax.jit(jax.grad(lambda p, *a: awr.actor_loss(p, *a)[0]), static_argnums=3)
value_loss = jax.jit(awr.value_loss, static_argnums=3)
value_grad = jax.jit(jax.grad(lambda p, *a: awr.value_loss(p, *a)[0]), static_argnums=3)
update = jax.jit(awr.update, static_argnums=0)


def config(**overrides) -> awr.Config:
    return awr.Config(hidden=HIDDEN, batch_size=16, **overrides)


def make_state(cfg: awr.Config):
    ds = random_dataset(obs_dim=OBS_DIM, act_dim=ACT_DIM)
    tf = make_transforms(ds, cfg.normalize_obs, cfg.reward_scaling)
    state = awr.init(cfg, core.spec_from_dataset(ds, tf), jax.random.PRNGKey(0))
    return state, core.algorithm_data(awr, cfg, ds, tf)


def _layers(params):
    p = params["params"]
    return p["MLP_0"] if "MLP_0" in p else p  # ValueNet wraps an MLP; the policy does not


def constant(params, out_bias):
    """The same network made constant: every weight 0, the output layer's bias `out_bias`.
    The policy's mean is then out_bias; V(s) = c · out_bias with c = 1 / (1 - γ) = 100."""
    zeros = jax.tree_util.tree_map(lambda x: np.zeros(x.shape, np.float32), params)
    last = _layers(zeros)[OUT]
    last["bias"] = np.asarray(out_bias, np.float32).reshape(last["bias"].shape)
    return zeros


def hand_batch(rew=(1.0, 1.0), done=(0.0, 1.0), returns=(3.0, -1.0), act=None) -> core.Batch:
    return core.Batch(
        obs=np.zeros((2, OBS_DIM), np.float32),
        act=np.zeros((2, ACT_DIM), np.float32) if act is None else np.asarray(act, np.float32),
        rew=np.asarray(rew, np.float32),
        next_obs=np.zeros((2, OBS_DIM), np.float32),
        done=np.asarray(done, np.float32),
        extra={"return": np.asarray(returns, np.float32)},
    )


def with_values(state, v, v_target):
    """V ≡ v and V̄ ≡ v_target everywhere (in reward units)."""
    value = state.value.replace(params=constant(state.value.params, v / 100.0))
    return state.replace(value=value, target_value=constant(state.target_value, v_target / 100.0))


@pytest.fixture(scope="module")
def setup():
    cfg = config()
    state, data = make_state(cfg)
    return cfg, state, data


# ----------------------------------------------------------------------------- weights


def test_weights_exp_over_beta_clipped_without_normalization():
    cfg = config(beta=2.0, max_weight=20.0, normalize_adv=False)
    w = np.asarray(awr.awr_weights(jnp.array([-1.0, 0.0, 1.0, 10.0, 1e4]), cfg))
    # exp(A / 2): e^-0.5, 1, e^0.5 pass; e^5 ≈ 148.4 and e^5000 = inf clip to 20
    np.testing.assert_allclose(w, [math.exp(-0.5), 1.0, math.exp(0.5), 20.0, 20.0], rtol=1e-6)


def test_weights_standardize_advantages_over_the_batch():
    cfg = config(beta=1.0, normalize_adv=True)
    # A = [1, 2, 3]: mean 2, std sqrt(2/3) = 0.816497; Â = ±1.224745 and 0 (eps 1e-5 aside)
    w = np.asarray(awr.awr_weights(jnp.array([1.0, 2.0, 3.0]), cfg))
    a = 1.0 / (math.sqrt(2.0 / 3.0) + 1e-5)
    np.testing.assert_allclose(w, [math.exp(-a), 1.0, math.exp(a)], rtol=1e-6)
    # A shift and a positive scale of A change nothing once standardized
    w2 = np.asarray(awr.awr_weights(jnp.array([1.0, 2.0, 3.0]) * 50.0 - 7.0, cfg))
    np.testing.assert_allclose(w2, w, rtol=1e-4)


def test_weights_are_a_constant_to_the_gradient():
    for normalize in (False, True):
        cfg = config(normalize_adv=normalize)
        total = lambda a, cfg=cfg: jnp.sum(awr.awr_weights(a, cfg))  # noqa: E731
        grad = jax.grad(total)(jnp.array([0.5, -1.0, 2.0]))
        np.testing.assert_array_equal(grad, np.zeros(3))


# ------------------------------------------------------------------------------- actor


def test_weighted_log_likelihood_hand_computed():
    # -mean(w · log π) = -mean(1 · -1, 2 · -2, 0.5 · -0.5) = (1 + 4 + 0.25) / 3 = 1.75
    loss = awr.weighted_log_likelihood(jnp.array([-1.0, -2.0, -0.5]), jnp.array([1.0, 2.0, 0.5]))
    assert float(loss) == pytest.approx(1.75)


def test_bound_loss_hand_computed():
    # μ = (1.5, -1.2): outside by 0.5 and 0.2 -> ½ (0.25 + 0.04) = 0.145; (0.3, -1) is inside
    mean = jnp.array([[1.5, -1.2], [0.3, -1.0]])
    assert float(awr.bound_loss(mean)) == pytest.approx((0.145 + 0.0) / 2)


def test_actor_loss_and_gradient_on_constant_networks(setup):
    cfg, state, _ = setup
    cfg = config(normalize_adv=False)  # w = exp(A) exactly
    state = with_values(state, v=0.0, v_target=123.0)  # "mc": the target V is not read
    actor = constant(state.actor.params, [0.5, 0.0])  # μ = (0.5, 0), σ = 0.2
    # a_1 = (0.5, 0.2): z = (0, 1); a_2 = (0.1, 0): z = (-2, 0)
    batch = hand_batch(returns=(1.0, -1.0), act=[[0.5, 0.2], [0.1, 0.0]])
    loss, m = actor_loss(actor, state, batch, cfg)
    # A = R - V = (1, -1), w = (e, 1/e)
    # log π = Σ_j (-z_j²/2 - log σ - ½ log 2π) = -z²/2 · ... : (-0.5, -2) - 2 log 0.2 - log 2π
    const = -2.0 * math.log(0.2) - LOG_2PI
    logp = np.array([-0.5 + const, -2.0 + const])
    w = np.array([math.e, 1.0 / math.e])
    assert float(m["adv_mean"]) == pytest.approx(0.0, abs=1e-6)
    assert float(m["weight_mean"]) == pytest.approx(w.mean(), rel=1e-6)
    assert float(m["bound_loss"]) == 0.0
    assert float(loss) == pytest.approx(-np.mean(w * logp), rel=1e-5)
    # dL/dμ_j = -(1/B) Σ_b w_b (a_bj - μ_j) / σ²:
    #   b=1: (0, 0.2) / 0.04 = (0, 5), weight e;  b=2: (-0.4, 0) / 0.04 = (-10, 0), weight 1/e
    #   -(1/2) (-10/e, 5e) = (5/e, -2.5e)
    grads = actor_grad(actor, state, batch, cfg)
    np.testing.assert_allclose(
        grads["params"][OUT]["bias"], [5.0 / math.e, -2.5 * math.e], rtol=1e-5
    )


def test_actor_loss_adds_the_weighted_bound_penalty(setup):
    cfg, state, _ = setup
    cfg = config(normalize_adv=False, bound_loss_weight=10.0)
    state = with_values(state, v=0.0, v_target=0.0)
    batch = hand_batch(returns=(0.0, 0.0), act=[[1.0, -1.0], [1.0, -1.0]])
    actor = constant(state.actor.params, [1.5, -1.2])
    loss, m = actor_loss(actor, state, batch, cfg)
    # w = 1; z = ((1 - 1.5) / 0.2, (-1 + 1.2) / 0.2) = (-2.5, 1): log π = -(6.25 + 1)/2 + const
    const = -2.0 * math.log(0.2) - LOG_2PI
    nll = 3.625 - const
    assert float(m["bound_loss"]) == pytest.approx(0.145, rel=1e-5)
    assert float(loss) == pytest.approx(nll + 10.0 * 0.145, rel=1e-5)


# ------------------------------------------------------------------------ value targets


def test_mc_value_target_is_the_return_column(setup):
    cfg, state, _ = setup
    state = with_values(state, v=10.0, v_target=50.0)
    loss, m = value_loss(state.value.params, state, hand_batch(returns=(3.0, -1.0)), cfg)
    # ½ mean(((R - V) / 100)²) = ½ ((-0.07)² + (-0.11)²) / 2 = ½ (0.0049 + 0.0121) / 2
    assert float(loss) == pytest.approx(0.00425, rel=1e-5)
    assert float(m["q_mean"]) == pytest.approx(1.0)  # mean R
    assert float(m["v_mean"]) == pytest.approx(10.0, rel=1e-6)


def test_td_value_target_bootstraps_from_the_target_value(setup):
    _, state, _ = setup
    cfg = config(baseline="td")
    state = with_values(state, v=10.0, v_target=50.0)
    batch = hand_batch(rew=(1.0, 1.0), done=(0.0, 1.0))
    loss, m = value_loss(state.value.params, state, batch, cfg)
    # y = r + 0.99 (1 - d) V̄(s') = (1 + 49.5, 1) = (50.5, 1)  (a terminal does not bootstrap)
    # ½ mean(((y - 10) / 100)²) = ½ (0.405² + 0.09²) / 2 = ½ (0.164025 + 0.0081) / 2
    assert float(loss) == pytest.approx(0.04303125, rel=1e-5)
    assert float(m["q_mean"]) == pytest.approx(25.75, rel=1e-6)


def test_td_advantage_uses_the_online_value(setup):
    _, state, _ = setup
    cfg = config(baseline="td", normalize_adv=False)
    state = with_values(state, v=10.0, v_target=50.0)
    batch = hand_batch(rew=(1.0, 1.0), done=(0.0, 1.0))
    _, m = actor_loss(state.actor.params, state, batch, cfg)
    # A = r + 0.99 (1 - d) V(s') - V(s) with the online V = 10: (1 + 9.9 - 10, 1 - 10)
    #   = (0.9, -9), mean -4.05; w = (e^0.9, e^-9)
    assert float(m["adv_mean"]) == pytest.approx(-4.05, rel=1e-5)
    assert float(m["weight_mean"]) == pytest.approx((math.exp(0.9) + math.exp(-9)) / 2, rel=1e-5)


# ---------------------------------------------------------------------- return column


def _two_episodes() -> Dataset:
    obs = np.arange(5 * OBS_DIM, dtype=np.float32).reshape(5, OBS_DIM)
    return Dataset(
        observations=obs,
        actions=np.zeros((5, ACT_DIM), np.float32),
        rewards=np.array([1.0, 2.0, 3.0, 4.0, 5.0], np.float32),
        next_observations=obs + 1,
        terminals=np.array([0, 0, 1, 0, 0], bool),  # episode 1 ends in a terminal at 2
        timeouts=np.array([0, 0, 0, 0, 1], bool),  # episode 2 is cut by a time limit at 4
    )


def test_mc_return_column_two_episodes_from_transformed_rewards():
    cfg = config(discount=0.5)
    ds = _two_episodes()
    f = lambda x: jnp.asarray(x, jnp.float32)  # noqa: E731
    # rewards as the batches see them: 2 r - 1 = (1, 3, 5 | 7, 9)
    tf = Transforms(
        f(np.zeros(OBS_DIM)), f(np.ones(OBS_DIM)), -f(np.ones(ACT_DIM)), f(np.ones(ACT_DIM)),
        f(2.0), f(-1.0),
    )  # fmt: skip
    returns = awr.extra_columns(cfg, ds, tf)["return"]
    # episode 1: R_2 = 5, R_1 = 3 + 0.5 · 5 = 5.5, R_0 = 1 + 0.5 · 5.5 = 3.75
    # episode 2 (no bootstrap past the cut): R_4 = 9, R_3 = 7 + 0.5 · 9 = 11.5
    np.testing.assert_allclose(returns, [3.75, 5.5, 5.0, 11.5, 9.0], rtol=1e-12)
    # the training loop's device data carries it, row for row
    data = core.algorithm_data(awr, cfg, ds, tf)
    np.testing.assert_allclose(data.extra["return"], returns, rtol=1e-6)
    np.testing.assert_allclose(data.rew, [1.0, 3.0, 5.0, 7.0, 9.0])
    # "td" needs no column
    assert awr.extra_columns(config(baseline="td"), ds, tf) == {}


# ------------------------------------------------------------------ update, act, config


def _same(a, b) -> bool:
    return all(jax.tree_util.tree_leaves(jax.tree_util.tree_map(np.array_equal, a, b)))


@pytest.mark.parametrize("baseline", ["mc", "td"])
def test_update_value_first_then_actor_then_target(baseline):
    cfg = config(baseline=baseline)
    state, data = make_state(cfg)
    batch = core.sample(data, jax.random.PRNGKey(1), cfg.batch_size)
    new, metrics = update(cfg, state, batch, jax.random.PRNGKey(2))
    assert int(new.step) == 1
    for name in ("value_loss", "actor_loss", "q_mean", "v_mean", "weight_mean", "adv_std"):
        assert np.isfinite(float(metrics[name])), name
    # SGD with momentum, first step: θ' = θ - lr · ∇L (the momentum trace starts at 0)
    g_v = value_grad(state.value.params, state, batch, cfg)
    expected_v = jax.tree_util.tree_map(lambda p, g: p - 1e-2 * g, state.value.params, g_v)
    jax.tree_util.tree_map(
        lambda x, y: np.testing.assert_allclose(x, y, rtol=1e-5, atol=1e-7),
        new.value.params,
        expected_v,
    )
    # the actor's gradient is taken against the NEW value
    mid = state.replace(value=new.value)
    g_pi = actor_grad(state.actor.params, mid, batch, cfg)
    expected_pi = jax.tree_util.tree_map(lambda p, g: p - 5e-5 * g, state.actor.params, g_pi)
    jax.tree_util.tree_map(
        lambda x, y: np.testing.assert_allclose(x, y, rtol=1e-5, atol=1e-8),
        new.actor.params,
        expected_pi,
    )
    if baseline == "td":  # V̄ <- 0.005 V + 0.995 V̄
        expected = core.polyak(state.target_value, new.value.params, 0.005)
        jax.tree_util.tree_map(np.testing.assert_allclose, new.target_value, expected)
    else:
        assert _same(new.target_value, state.target_value)


def test_adam_option_steps():
    cfg = config(optimizer="adam", actor_lr=3e-4, value_lr=3e-4)
    state, data = make_state(cfg)
    batch = core.sample(data, jax.random.PRNGKey(3), cfg.batch_size)
    new, metrics = update(cfg, state, batch, jax.random.PRNGKey(4))
    assert int(new.step) == 1 and bool(core.all_finite(new))
    assert not _same(new.actor.params, state.actor.params)
    # Adam's first step moves every parameter with a nonzero gradient by about lr
    delta = np.abs(np.asarray(new.actor.params["params"][OUT]["bias"]) - 0.0)
    np.testing.assert_allclose(delta, np.full(ACT_DIM, 3e-4), rtol=1e-3)


def test_act_deterministic_clips_the_mean_stochastic_adds_fixed_std(setup):
    cfg, state, _ = setup
    actor = state.actor.replace(params=constant(state.actor.params, [1.5, 0.5]))
    state = state.replace(actor=actor)
    ds = random_dataset(obs_dim=OBS_DIM, act_dim=ACT_DIM)
    low, high = np.array([-2.0, 0.0], np.float32), np.array([2.0, 10.0], np.float32)
    state = state.replace(tf=make_transforms(ds.replace(action_low=low, action_high=high), True))
    obs = jnp.zeros((4000, OBS_DIM))
    a = np.asarray(awr.act(cfg, state, obs[:3], jax.random.PRNGKey(0), deterministic=True))
    # unit (clip(1.5) = 1, 0.5) -> (-2 + 2 · 2, 0 + 1.5 · 5) = (2, 7.5)
    np.testing.assert_allclose(a, np.tile([2.0, 7.5], (3, 1)), rtol=1e-6)
    b = np.asarray(awr.act(cfg, state, obs, jax.random.PRNGKey(1), deterministic=False))
    assert np.all((b >= low) & (b <= high))
    # dimension 1: unit 0.5 + 0.2 ε (clipped at 1 only 0.6% of the time), env = 5 (u + 1)
    assert np.std(b[:, 1]) == pytest.approx(5 * 0.2, rel=0.05)
    assert np.mean(b[:, 0] == 2.0) > 0.99  # dimension 0 sits past the bound: almost all clipped


@pytest.mark.parametrize(
    "field, value, message",
    [
        ("baseline", "gae", "baseline must be 'mc' or 'td'"),
        ("optimizer", "rmsprop", "optimizer must be 'sgd' or 'adam'"),
        ("beta", 0.0, "beta must be > 0"),
        ("action_std", -1.0, "action_std must be > 0"),
        ("discount", 1.0, "discount must be in"),
    ],
)
def test_bad_config_raises_value_error(field, value, message):
    cfg = config(**{field: value})
    ds = random_dataset(obs_dim=OBS_DIM, act_dim=ACT_DIM)
    tf = make_transforms(ds, True)
    with pytest.raises(ValueError, match=message):
        awr.init(cfg, core.spec_from_dataset(ds, tf), jax.random.PRNGKey(0))
    with pytest.raises(ValueError, match=message):
        awr.extra_columns(cfg, ds, tf)


def test_mc_without_the_return_column_says_how_to_build_the_data(setup):
    cfg, state, data = setup
    batch = core.sample(data, jax.random.PRNGKey(0), 4).replace(extra={})
    with pytest.raises(KeyError, match="core.algorithm_data"):
        awr.value_loss(state.value.params, state, batch, cfg)


# ------------------------------------------------------------------------------ MARWIL


def test_marwil_is_a_preset_of_awr_with_its_own_defaults():
    from offrl import algos

    assert algos.get("marwil") is awr
    cfg = algos.make_algo_config("marwil", {})
    assert cfg.running_adv_norm and not cfg.normalize_adv and cfg.optimizer == "adam"
    assert cfg.bound_loss_weight == 0.0 and cfg.baseline == "mc"
    assert algos.make_algo_config("marwil", {"beta": "0.5"}).beta == 0.5  # overrides win
    with pytest.raises(ValueError, match="pick one"):
        awr.check_config(config(normalize_adv=True, running_adv_norm=True))


def test_marwil_weights_divide_by_the_running_root_mean_square():
    cfg = config(beta=1.0, normalize_adv=False, running_adv_norm=True)
    # c² = 100: Â = A / 10, so A = (0, 10, -20) -> exp(0, 1, -2)
    w = np.asarray(awr.awr_weights(jnp.array([0.0, 10.0, -20.0]), cfg, jnp.asarray(100.0)))
    np.testing.assert_allclose(w, [1.0, math.e, math.exp(-2.0)], rtol=1e-6)


def test_marwil_running_norm_moves_towards_the_batch_mean_square():
    cfg = config(normalize_adv=False, running_adv_norm=True, adv_norm_rate=0.5, adv_norm_init=4.0)
    state, data = make_state(cfg)
    assert float(state.adv_sq_norm) == 4.0
    batch = core.sample(data, jax.random.PRNGKey(0), cfg.batch_size)
    new, metrics = awr.update(cfg, state, batch, jax.random.PRNGKey(1))
    # c² <- c² + 0.5 (mean A² - c²), A measured with the value after its step
    expected = 4.0 + 0.5 * (float(metrics["adv_sq_mean"]) - 4.0)
    assert float(new.adv_sq_norm) == pytest.approx(expected, rel=1e-6)
    plain, _ = awr.update(config(), make_state(config())[0], batch, jax.random.PRNGKey(1))
    assert float(plain.adv_sq_norm) == 100.0  # AWR's own normalization leaves c² alone
