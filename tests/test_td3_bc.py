"""TD3+BC: λ by hand, the actor and critic losses on constant networks, target policy smoothing,
the delayed actor and target updates, and terminals against timeouts."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers import random_dataset

from offrl import core
from offrl.algos import td3_bc
from offrl.data.transforms import make_transforms

OBS_DIM, ACT_DIM, HIDDEN = 3, 2, (8, 8)
OUT = f"Dense_{len(HIDDEN)}"  # the output layer of an MLP


# Jitted once per config: a compiled call is faster here than running the ops one by one.
actor_loss = jax.jit(td3_bc.actor_loss, static_argnums=3)
actor_grad = jax.jit(
    jax.grad(lambda params, *args: td3_bc.actor_loss(params, *args)[0]), static_argnums=3
)
critic_losses = jax.jit(  # one loss per key
    lambda params, state, batch, cfg, keys: jax.vmap(
        lambda k: td3_bc.critic_loss(params, state, batch, cfg, k)
    )(keys),
    static_argnums=3,
)
act = jax.jit(td3_bc.act, static_argnums=0)


def config(**overrides) -> td3_bc.Config:
    return td3_bc.Config(hidden=HIDDEN, batch_size=16, **overrides)


def _mlp(params):
    p = params["params"]
    return p["VmapQNet_0"]["MLP_0"] if "VmapQNet_0" in p else p["MLP_0"]


def _zeros(params):
    return jax.tree_util.tree_map(lambda x: np.zeros(x.shape, np.float32), params)


def constant(params, out_bias):
    """The same network made constant: every weight 0, the output layer's bias `out_bias`.

    For the actor the output is tanh(out_bias); for the twin critic out_bias is (2, 1)."""
    zeros = _zeros(params)
    last = _mlp(zeros)[OUT]
    last["bias"] = np.asarray(out_bias, np.float32).reshape(last["bias"].shape)
    return zeros


def critic_of_first_action(params):
    """Both critics equal Q(s, a) = a_0 + 1 for actions in [-1, 1] (zero elsewhere in the net).

    Hidden unit 0 of layer 1 is relu(a_0 + 1) = a_0 + 1 ≥ 0, passed through layer 2 unchanged
    and read out with weight 1."""
    zeros = _zeros(params)
    mlp = _mlp(zeros)
    mlp["Dense_0"]["kernel"][:, OBS_DIM, 0] = 1.0  # the input a_0
    mlp["Dense_0"]["bias"][:, 0] = 1.0
    mlp["Dense_1"]["kernel"][:, 0, 0] = 1.0
    mlp[OUT]["kernel"][:, 0, 0] = 1.0
    return zeros


# Two hand-made transitions: π = (0.5, 0) everywhere in the tests below.
ACT = np.array([[0.5, -0.5], [0.0, 1.0]], np.float32)
PI = np.array([0.5, 0.0])
# mean over all 4 entries of (π - a)²: (0² + 0.5² + 0.5² + 1²) / 4 = 1.5 / 4 = 0.375
BC_BY_HAND = 0.375


def hand_batch(rew=(1.0, 1.0), done=(0.0, 1.0)) -> core.Batch:
    return core.Batch(
        obs=np.zeros((2, OBS_DIM), np.float32),
        act=ACT,
        rew=np.asarray(rew, np.float32),
        next_obs=np.zeros((2, OBS_DIM), np.float32),
        done=np.asarray(done, np.float32),
    )


@pytest.fixture(scope="module")
def setup():
    """One initial state and the dataset on device, shared by the tests (none changes them)."""
    cfg = config()
    dataset = random_dataset(obs_dim=OBS_DIM, act_dim=ACT_DIM)
    tf = make_transforms(dataset, cfg.normalize_obs, cfg.reward_scaling)
    state = td3_bc.init(cfg, core.spec_from_dataset(dataset, tf), jax.random.PRNGKey(0))
    return cfg, state, core.to_device(dataset, tf)


def test_bc_weight_hand_computed_and_without_gradient():
    q = jnp.array([1.0, -3.0, 2.0])
    # mean |Q| = (1 + 3 + 2) / 3 = 2, so λ = 2.5 / 2 = 1.25
    assert float(td3_bc.bc_weight(q, 2.5)) == pytest.approx(1.25)
    # λ is a constant to the gradient: d λ / dQ = 0 ...
    grad = jax.grad(lambda q: td3_bc.bc_weight(q, 2.5))(q)
    np.testing.assert_array_equal(grad, np.zeros(3))
    # ... so d(λ · mean Q) / dQ = λ / 3 for every entry (no term from λ's own dependence on Q).
    grad = jax.grad(lambda q: td3_bc.bc_weight(q, 2.5) * q.mean())(q)
    np.testing.assert_allclose(grad, np.full(3, 1.25 / 3), rtol=1e-6)


def test_actor_loss_on_constant_networks(setup):
    cfg, state, _ = setup
    # Q_1 = 3 and Q_2 = -5 everywhere: the actor must read Q_1 (min Q would be -5).
    state = state.replace(
        critic=state.critic.replace(params=constant(state.critic.params, [3, -5]))
    )
    actor = constant(state.actor.params, np.arctanh(PI))
    loss, m = actor_loss(actor, state, hand_batch(), cfg)
    # λ = 2.5 / |3| = 5/6;  -λ mean Q_1 = -(5/6) · 3 = -2.5;  plus the BC term 0.375
    assert float(m["lambda"]) == pytest.approx(2.5 / 3)
    assert float(m["bc_loss"]) == pytest.approx(BC_BY_HAND)
    assert float(loss) == pytest.approx(-2.5 + BC_BY_HAND)
    # The critic ignores the action here, so only the BC term moves the actor's output bias:
    # dL/db_j = (2 / (B·|A|)) Σ_b (π_j - a_bj) · (1 - π_j²) = 0.5 · [0.5, -0.5] · [0.75, 1]
    grads = actor_grad(actor, state, hand_batch(), cfg)
    np.testing.assert_allclose(_mlp(grads)[OUT]["bias"], [0.1875, -0.25], rtol=1e-5)


def test_critic_loss_on_constant_networks(setup):
    cfg, state, _ = setup
    # Target critics output 2 and 4 for every (s', ã), whatever the noise: min = 2.
    state = state.replace(target_critic=constant(state.target_critic, [2.0, 4.0]))
    critic = constant(state.critic.params, [0.0, 1.0])
    batch = hand_batch(rew=(1.0, 1.0), done=(0.0, 1.0))
    # y = r + 0.99 (1 - d) · 2 = [2.98, 1]   (the terminal does not bootstrap)
    # Q_1 = 0: ((0 - 2.98)² + (0 - 1)²) / 2 = (8.8804 + 1) / 2 = 4.9402
    # Q_2 = 1: ((1 - 2.98)² + (1 - 1)²) / 2 = 3.9204 / 2 = 1.9602
    loss, m = critic_losses(critic, state, batch, cfg, jax.random.split(jax.random.PRNGKey(0), 4))
    # one value per noise key: the noise cannot matter
    np.testing.assert_allclose(loss, np.full(4, 4.9402 + 1.9602), rtol=1e-5)
    np.testing.assert_allclose(m["q_mean"], np.full(4, 0.5), rtol=1e-6)


def target_values(cfg, state, keys) -> np.ndarray:
    """y = 0.99 Q'(s', ã) for one transition with r = 0, d = 0, one value per key.

    With both online critics 0 the loss is 2 y², so y = sqrt(loss / 2)."""
    state = state.replace(
        target_critic=critic_of_first_action(state.target_critic),
        target_actor=constant(state.target_actor, [20.0, 20.0]),  # π'(s') = tanh(20) = 1
    )
    critic = constant(state.critic.params, [0.0, 0.0])
    z = np.zeros
    batch = core.Batch(z((1, OBS_DIM)), z((1, ACT_DIM)), z(1), z((1, OBS_DIM)), z(1))
    loss, _ = critic_losses(critic, state, batch, cfg, keys)
    return np.sqrt(np.asarray(loss) / 2.0)


def test_target_policy_noise_is_clipped_and_action_kept_in_bounds(setup):
    _, state, _ = setup
    keys = jax.random.split(jax.random.PRNGKey(7), 64)
    # Q'(s', ã) = ã_0 + 1 and π'(s') = 1, so ã_0 = clip(1 + clip(ε, -c, c), -1, 1).
    # With σ = 10 the noise is almost always beyond ±c = ±0.5: ε > 0 gives ã_0 = 1 (the action
    # clip), ε < -0.5 gives ã_0 = 0.5 (the noise clip). So y = 0.99 (ã_0 + 1) lies in
    # [0.99 · 1.5, 0.99 · 2], and both ends are reached among 64 draws.
    y = target_values(config(policy_noise=10.0), state, keys)
    assert y.min() == pytest.approx(0.99 * 1.5, rel=1e-5)
    assert y.max() == pytest.approx(0.99 * 2.0, rel=1e-5)
    assert np.all((y >= 0.99 * 1.5 - 1e-5) & (y <= 0.99 * 2.0 + 1e-5))


def _same(a, b) -> bool:
    return all(jax.tree_util.tree_leaves(jax.tree_util.tree_map(np.array_equal, a, b)))


def test_policy_delay_actor_and_targets_every_second_step(setup):
    cfg, state0, data = setup
    assert cfg.policy_freq == 2
    update = jax.jit(td3_bc.update, static_argnums=0)
    batch = jax.tree_util.tree_map(lambda x: x[: cfg.batch_size], data)

    state1, m1 = update(cfg, state0, batch, jax.random.PRNGKey(2))
    assert int(state1.step) == 1
    assert not _same(state1.critic.params, state0.critic.params)  # the critic always steps
    assert _same(state1.actor.params, state0.actor.params)
    assert _same(state1.target_actor, state0.target_actor)
    assert _same(state1.target_critic, state0.target_critic)
    assert np.isnan(float(m1["actor_loss"])) and np.isfinite(float(m1["critic_loss"]))

    state2, m2 = update(cfg, state1, batch, jax.random.PRNGKey(3))
    assert int(state2.step) == 2
    assert not _same(state2.actor.params, state1.actor.params)
    assert np.isfinite(float(m2["actor_loss"])) and np.isfinite(float(m2["lambda"]))
    # Both targets moved by Polyak towards the networks as they are after this step.
    # target <- τ · online + (1 - τ) · target, with τ = 0.005
    for target, old, online in (
        (state2.target_actor, state1.target_actor, state2.actor.params),
        (state2.target_critic, state1.target_critic, state2.critic.params),
    ):
        expected = jax.tree_util.tree_map(
            lambda o, n: 0.005 * np.asarray(n) + 0.995 * np.asarray(o), old, online
        )
        jax.tree_util.tree_map(
            lambda x, y: np.testing.assert_allclose(x, y, rtol=1e-5, atol=1e-7), target, expected
        )
    assert not _same(state2.target_actor, state1.target_actor)


def test_td_target_terminals_stop_bootstrapping():
    batch = core.Batch(
        obs=jnp.zeros((3, 1)),
        act=jnp.zeros((3, 1)),
        rew=jnp.array([1.0, 1.0, -1.0]),
        next_obs=jnp.zeros((3, 1)),
        done=jnp.array([0.0, 1.0, 0.0]),
    )
    # r + 0.99 (1 - d) · 10 = [1 + 9.9, 1 + 0, -1 + 9.9]
    target = core.td_target(batch, jnp.full(3, 10.0), 0.99)
    np.testing.assert_allclose(target, [10.9, 1.0, 8.9], rtol=1e-6)


def test_to_device_done_holds_terminals_not_timeouts():
    ds = random_dataset(n=20, obs_dim=OBS_DIM, act_dim=ACT_DIM, episode_len=10)
    terminals = np.zeros(20, bool)
    terminals[4] = True  # an episode ending in a terminal state at 4
    timeouts = np.zeros(20, bool)
    timeouts[[9, 19]] = True  # episodes cut by the time limit at 9 and 19
    ds = ds.replace(terminals=terminals, timeouts=timeouts)
    tf = make_transforms(ds, normalize_obs=True)
    done = np.asarray(core.to_device(ds, tf).done)
    assert done[4] == 1.0
    assert done[9] == 0.0 and done[19] == 0.0
    np.testing.assert_array_equal(done, terminals.astype(np.float32))


def test_act_maps_to_the_environment_bounds(setup):
    cfg, state, _ = setup
    ds = random_dataset(obs_dim=OBS_DIM, act_dim=ACT_DIM)
    low, high = np.array([-2.0, 0.0], np.float32), np.array([2.0, 10.0], np.float32)
    ds = ds.replace(
        actions=low + (ds.actions + 1) / 2 * (high - low), action_low=low, action_high=high
    )
    actor = state.actor.replace(params=constant(state.actor.params, np.arctanh(PI)))
    state = state.replace(actor=actor, tf=make_transforms(ds, cfg.normalize_obs))
    a = np.asarray(act(cfg, state, ds.observations[:3], jax.random.PRNGKey(0)))
    # unit (0.5, 0) -> (-2 + 1.5 · 2, 0 + 1 · 5) = (1, 5)
    np.testing.assert_allclose(a, np.tile([1.0, 5.0], (3, 1)), rtol=1e-5)
