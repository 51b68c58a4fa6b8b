"""Decision Transformer: causal masking of the model, the masked loss by hand, the window
and return-to-go carried while acting, the target of pretrain, a history kept by
load_policy and rollouts, ONNX refusing it, and a short return-conditioning check."""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers import random_dataset

import offrl
from offrl import core, export
from offrl.algos import dt
from offrl.data import io
from offrl.data.transforms import make_transforms
from offrl.envs.rollout import rollout
from offrl.errors import ConfigError
from offrl.evaluate import HistoryPolicy, jax_policy
from offrl.nets.transformer import CausalTransformer, DecisionTransformer

SMALL = {"hidden": (16,), "context": 4, "batch_size": 8}
K, OBS, ACT = 4, 3, 1
act_step = jax.jit(dt.act_step, static_argnums=(0, 6))  # cfg, deterministic
act = jax.jit(dt.act, static_argnums=(0, 4))


def tiny_state(cfg: dt.Config | None = None, ds=None):
    """cfg (default: SMALL) and its fresh state on `ds` (default: a random dataset); the
    default pair is made once (an init compiles) and shared."""
    if cfg is None and ds is None:
        return _default_state()
    cfg = cfg or dt.Config(**SMALL)
    ds = ds or random_dataset(obs_dim=OBS, act_dim=ACT)
    tf = make_transforms(ds, cfg.normalize_obs, cfg.reward_scaling)
    return cfg, dt.init(cfg, core.spec_from_dataset(ds, tf), jax.random.key(0))


@functools.cache
def _default_state():
    return tiny_state(dt.Config(**SMALL), random_dataset(obs_dim=OBS, act_dim=ACT))


def window_inputs(seed: int = 0, b: int = 2):
    r = np.random.default_rng(seed)
    f = lambda *s: jnp.asarray(r.normal(size=s), jnp.float32)  # noqa: E731
    return f(b, K, OBS), f(b, K, ACT), f(b, K), jnp.tile(jnp.arange(K, dtype=jnp.int32), (b, 1))


# --------------------------------------------------------------------------- the model


def test_the_transformer_is_causal():
    model = CausalTransformer(dim=8, num_layers=2, num_heads=2)
    x, noise = jnp.asarray(np.random.default_rng(0).normal(size=(2, 2, 6, 8)), jnp.float32)
    params = model.init(jax.random.key(0), x)
    apply = jax.jit(model.apply)
    out = apply(params, x)
    moved = apply(params, x.at[:, 3].add(noise[:, 3]))  # not a constant: LN removes it
    np.testing.assert_array_equal(out[:, :3], moved[:, :3])  # earlier tokens: unchanged
    for later in range(3, 6):  # the token itself and the later ones move
        assert not np.allclose(out[:, later], moved[:, later]), later


def tiny_decision_transformer(obs, act, rtg, ts):
    """(params, jitted apply) of a one-block DT of width 16 with a 10-step timestep table."""
    model = DecisionTransformer(act_dim=ACT, dim=16, num_layers=1, max_timestep=10)
    return model.init(jax.random.key(0), obs, act, rtg, ts), jax.jit(model.apply)


def test_decision_transformer_outputs_see_only_the_past():
    obs, act, rtg, ts = window_inputs()
    params, apply = tiny_decision_transformer(obs, act, rtg, ts)
    out = apply(params, obs, act, rtg, ts)
    assert out.shape == (2, K, ACT) and bool(jnp.all(jnp.abs(out) < 1))
    j = 2
    cases = {  # perturbed input -> first position whose output may change
        "obs": (obs.at[:, j].add(1.0), act, rtg, j),
        "rtg": (obs, act, rtg.at[:, j].add(1.0), j),
        "act": (obs, act.at[:, j].add(1.0), rtg, j + 1),  # â_j is predicted before a_j
    }
    for name, (o, a, r, first) in cases.items():
        moved = apply(params, o, a, r, ts)
        np.testing.assert_array_equal(out[:, :first], moved[:, :first], err_msg=name)
        assert not np.allclose(out[:, first], moved[:, first]), name


def test_timesteps_are_embedded_and_clamped_to_the_table():
    obs, act, rtg, ts = window_inputs()
    params, apply = tiny_decision_transformer(obs, act, rtg, ts)
    out = apply(params, obs, act, rtg, ts)
    assert not np.allclose(out, apply(params, obs, act, rtg, ts + 1))
    far = apply(params, obs, act, rtg, jnp.full_like(ts, 10_000))
    np.testing.assert_array_equal(far, apply(params, obs, act, rtg, jnp.full_like(ts, 9)))


# --------------------------------------------------------------------------- the loss


def padded_window(garbage: float = 0.0) -> core.Window:
    """Two windows: the first all real, the second real for 2 steps then padding whose
    entries are `garbage`."""
    obs, act, rtg, ts = window_inputs(seed=1)
    act = jnp.tanh(act)
    mask = jnp.array([[1, 1, 1, 1], [1, 1, 0, 0]], jnp.float32)
    pad = mask == 0
    fill = lambda x: jnp.where(pad.reshape(pad.shape + (1,) * (x.ndim - 2)), garbage, x)  # noqa: E731
    return core.Window(
        obs=fill(obs),
        act=fill(act),
        rew=fill(rtg),
        rtg=fill(rtg),
        timestep=jnp.where(pad, 0, ts),
        mask=mask,
    )


def test_padded_steps_do_not_change_the_loss():
    cfg, state = tiny_state()
    key = jax.random.key(7)
    loss = jax.jit(lambda w: dt.action_loss(state.model.params, state, w, cfg, key)[0])
    assert float(loss(padded_window(0.0))) == pytest.approx(float(loss(padded_window(5.0))))


def test_the_loss_is_the_mean_squared_error_over_real_steps():
    cfg, state = tiny_state()
    params = jax.tree_util.tree_map(lambda x: x, state.model.params)  # a copy to edit
    head = params["params"]["action_head"]
    head["kernel"] = jnp.zeros_like(head["kernel"])
    head["bias"] = jnp.full_like(head["bias"], 0.3)  # every prediction is tanh(0.3)
    window = padded_window(9.0)
    loss_fn = jax.jit(dt.action_loss, static_argnums=3)
    loss, metrics = loss_fn(params, state, window, cfg, jax.random.key(0))
    act, mask = np.asarray(window.act)[..., 0], np.asarray(window.mask)
    by_hand = np.sum(mask * (np.tanh(0.3) - act) ** 2) / mask.sum()  # 6 real steps, |A| = 1
    assert float(loss) == pytest.approx(by_hand, rel=1e-5)
    assert float(metrics["real_fraction"]) == pytest.approx(6 / 8)


def test_update_warms_up_the_learning_rate():
    cfg, state = tiny_state()
    update = jax.jit(dt.update, static_argnums=0)
    state, metrics = update(cfg, state, padded_window(), jax.random.key(0))
    assert cfg.warmup_steps == 10_000
    assert float(metrics["learning_rate"]) == pytest.approx(cfg.lr / 1e4)  # (0 + 1) / 10k
    _, metrics = update(cfg, state, padded_window(), jax.random.key(1))
    assert float(metrics["learning_rate"]) == pytest.approx(2 * cfg.lr / 1e4)
    assert np.isfinite(float(metrics["grad_norm"])) and int(state.step) == 1
    schedule = dt.warmup_schedule(cfg.lr, 10)
    assert float(schedule(0)) == pytest.approx(cfg.lr / 10)
    assert float(schedule(9)) == pytest.approx(cfg.lr) == float(schedule(50))


# --------------------------------------------------------------------------- acting


def test_act_step_decrements_the_return_to_go_and_fills_then_shifts_the_window():
    cfg, state = tiny_state()
    state = state.replace(target_return=jnp.asarray(5.0))
    carry = dt.act_carry(cfg, state, 2)
    np.testing.assert_allclose(carry.rtg_now, [5.0 * cfg.rtg_scale] * 2)
    rng = np.random.default_rng(0)
    observations = rng.normal(size=(6, 2, OBS)).astype(np.float32)
    rewards = np.array([[7.0, 7.0], [1.0, 0.0], [2.0, 0.5], [3.0, 0.0], [0.5, 1.0], [1.0, 1.0]])
    expected = 5.0
    history = []  # (rtg, obs, act, t) of env 0, to redo the prediction without the window
    for t in range(6):
        action, carry = act_step(
            cfg, state, carry, jnp.asarray(observations[t]), jnp.asarray(rewards[t]), None
        )
        if t > 0:  # the reward at t = 0 is ignored: no action has earned it
            expected -= rewards[t, 0]
        assert float(carry.rtg_now[0]) == pytest.approx(expected * cfg.rtg_scale, rel=1e-5)
        assert carry.t.tolist() == [t + 1, t + 1]
        seen = min(t + 1, K)
        assert carry.timestep[0, :seen].tolist() == list(range(t + 1 - seen, t + 1))
        assert carry.timestep[0, seen:].tolist() == [0] * (K - seen)  # right padding
        norm = np.asarray(state.tf.obs(observations[t, 0]))
        np.testing.assert_allclose(carry.obs[0, seen - 1], norm, rtol=1e-6)
        np.testing.assert_allclose(carry.rtg[0, seen - 1], expected * cfg.rtg_scale, rtol=1e-5)
        history.append((expected * cfg.rtg_scale, norm, float(carry.act[0, seen - 1, 0]), t))
        assert float(action[0, 0]) == pytest.approx(history[-1][2])  # bounds are [-1, 1]
        if t not in (1, 5):  # one step while the window fills, one after it has shifted
            continue
        # The same action from the unpadded history of the last `seen` steps (CORL's way).
        last = history[-seen:]
        r, o, a, ts = (jnp.asarray([x[i] for x in last])[None] for i in range(4))
        a = a.at[0, -1].set(0.0)[..., None]  # the newest action is not known yet
        pred = jax.jit(state.model.apply_fn)(state.model.params, o, a, r, ts.astype(jnp.int32))
        assert float(pred[0, -1, 0]) == pytest.approx(float(action[0, 0]), abs=1e-5)
    # env 1 earned other rewards: its return-to-go is its own
    assert float(carry.rtg_now[1]) == pytest.approx((5.0 - 2.5) * cfg.rtg_scale, rel=1e-5)


def test_the_decrement_is_in_transformed_reward_units():
    cfg, state = tiny_state()
    state = state.replace(tf=state.tf.replace(reward_scale=jnp.asarray(2.0)))
    carry = dt.act_carry(cfg, state, 1)
    obs = jnp.zeros((1, OBS))
    _, carry = act_step(cfg, state, carry, obs, jnp.zeros(1), None)
    _, carry = act_step(cfg, state, carry, obs, jnp.array([3.0]), None)
    assert float(carry.rtg_now[0]) == pytest.approx(-6.0 * cfg.rtg_scale)


def test_act_is_the_first_step_and_deterministic():
    cfg, state = tiny_state()
    obs = jnp.asarray(np.random.default_rng(0).normal(size=(5, OBS)), jnp.float32)
    first, _ = act_step(cfg, state, dt.act_carry(cfg, state, 5), obs, jnp.zeros(5), None)
    a = act(cfg, state, obs, jax.random.key(0), True)
    b = act(cfg, state, obs, jax.random.key(1), False)
    np.testing.assert_array_equal(a, first)
    np.testing.assert_array_equal(a, b)
    assert a.shape == (5, ACT)


def two_episodes():
    """Episodes of 3 and 2 steps paying 1, 2, 3 and 4, 0: returns 6 and 4."""
    ds = random_dataset(n=5, obs_dim=OBS, act_dim=ACT, episode_len=3)
    timeouts = np.array([0, 0, 1, 0, 1], bool)
    return ds.replace(rewards=np.array([1, 2, 3, 4, 0], np.float32), timeouts=timeouts)


def test_pretrain_targets_the_best_return_unless_one_is_given():
    ds = two_episodes()
    cfg, state = tiny_state(ds=ds)
    state, info = dt.pretrain(cfg, state, ds, jax.random.key(0))
    assert info["best_return"] == pytest.approx(6.0) and float(state.target_return) == 6.0
    given = dt.Config(**SMALL, target_return=3600.0)
    cfg, state = tiny_state(given, ds)
    assert float(state.target_return) == 3600.0  # set by init already
    state, info = dt.pretrain(cfg, state, ds, jax.random.key(0))
    assert float(state.target_return) == 3600.0 and info["target_return"] == 3600.0
    carry = dt.act_carry(cfg, state, 1)
    assert float(carry.rtg_now[0]) == pytest.approx(3.6)


def test_hidden_is_one_width_per_block():
    module = dt.model_module(dt.Config(hidden=(16, 16, 16)), ACT)
    obs, act_, rtg, ts = window_inputs()
    params = jax.eval_shape(module.init, jax.random.key(0), obs, act_, rtg, ts)["params"]
    blocks = sorted(k for k in params["transformer"] if k.startswith("Block"))
    assert blocks == ["Block_0", "Block_1", "Block_2"]
    assert params["obs_embed"]["kernel"].shape == (OBS, 16)
    assert params["time_embed"]["embedding"].shape == (1000, 16)


def test_bad_configs_are_refused():
    for bad in ({"hidden": (16, 8)}, {"hidden": ()}, {"hidden": (16,), "num_heads": 3}):
        with pytest.raises(ValueError):
            tiny_state(dt.Config(**SMALL | bad))


# --------------------------------------------------------------------------- the loop


def test_a_trained_policy_keeps_its_history_in_load_policy_and_rollouts(tmp_path):
    ds = random_dataset(n=400, obs_dim=OBS, act_dim=ACT, episode_len=200)  # names Pendulum-v1
    path = str(io.write_npz(ds, tmp_path / "log.npz"))
    out = tmp_path / "run"
    summary = offrl.train(
        "dt", path, steps=20, out=out, overrides=SMALL, eval_every=20, chunk_size=10,
        eval_episodes=1, progress=False,
    )  # fmt: skip
    assert np.isfinite(summary["final_return"])
    policy = offrl.load_policy(out)
    assert policy.stateful
    best = float(ds.episode_returns().max())
    assert float(policy.state.target_return) == pytest.approx(best, rel=1e-5)  # kept
    policy.reset()
    first = policy(np.zeros(OBS, np.float32))
    assert first.shape == (ACT,)
    policy.observe(-3.0)
    policy(np.ones(OBS, np.float32))
    carry = policy._history.carry
    assert carry.t.tolist() == [2]
    assert float(carry.rtg_now[0]) == pytest.approx((best + 3.0) * policy.cfg.rtg_scale, rel=1e-5)
    policy.reset()
    assert policy._history.carry.t.tolist() == [0]
    np.testing.assert_array_equal(policy(np.zeros(OBS, np.float32)), first)  # history forgotten
    wrapped = jax_policy(policy.algo, policy.cfg, policy.state)
    assert isinstance(wrapped, HistoryPolicy)
    result = rollout("Pendulum-v1", wrapped, episodes=2, num_envs=2)
    assert result.lengths.tolist() == [200, 200]
    assert int(wrapped.carry.t[0]) == 200


def test_onnx_export_refuses_dt_in_one_line():
    cfg, state = tiny_state()
    with pytest.raises(ConfigError) as exc:
        export.act_function(dt, cfg, state)
    message = str(exc.value)
    assert "dt" in message and "history" in message and "\n" not in message


# --------------------------------------------------------------------------- learning


def conditioned_dataset(episodes: int = 40, length: int = 8):
    """Half the episodes act +0.8 and earn 1 a step, half act -0.8 and earn 0; the
    observations are noise, so only the return-to-go tells the two apart."""
    ds = random_dataset(n=episodes * length, obs_dim=OBS, act_dim=ACT, episode_len=length)
    good = np.repeat(np.arange(episodes) % 2 == 0, length)
    act = np.where(good, 0.8, -0.8).astype(np.float32)[:, None]
    return ds.replace(actions=act, rewards=good.astype(np.float32))


def test_dt_learns_to_follow_the_return_it_is_conditioned_on():
    ds = conditioned_dataset()
    overrides = {"lr": 3e-3, "warmup_steps": 0, "rtg_scale": 0.125}
    overrides |= {"embedding_dropout": 0.0, "attention_dropout": 0.0, "residual_dropout": 0.0}
    cfg, state = tiny_state(dt.Config(**SMALL | overrides), ds)
    data = core.algorithm_data(dt, cfg, ds, state.tf)
    state, metrics, finite = core.make_update_chunk(dt, cfg, 300)(state, data, jax.random.key(1))
    assert bool(finite) and core.chunk_metrics(metrics)["action_loss"] < 0.3
    obs = jnp.zeros((1, OBS))
    high = act(cfg, state.replace(target_return=jnp.asarray(8.0)), obs, None, True)
    low = act(cfg, state.replace(target_return=jnp.asarray(0.0)), obs, None, True)
    assert float(high[0, 0]) > 0.5 and float(low[0, 0]) < -0.5
