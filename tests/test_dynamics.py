"""The dynamics ensemble: its log-variance bounds and Gaussian NLL by hand; the elite
choice; the termination functions by hand and against gymnasium's own; a model step that
ends at a terminal; training, early stopping, save/load; `offrl model train | eval`."""

from __future__ import annotations

import json
import math

import gymnasium as gym
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers import constant_dynamics as constant_model
from helpers import random_dataset, random_discrete_dataset

from offrl import cli, dynamics
from offrl.data import io
from offrl.errors import ConfigError
from offrl.nets.dynamics import MEMBERS, GaussianEnsemble, bound_logvar

TINY = dynamics.DynamicsConfig(
    num_members=3, num_elites=2, hidden=(8,), weight_decay=(0.0, 0.0), batch_size=32
)


def softplus(x: float) -> float:
    return math.log1p(math.exp(x))


def test_logvar_bounds_by_hand():
    raw = jnp.array([-100.0, 0.0, 100.0])
    lv = np.asarray(bound_logvar(raw, jnp.array(0.5), jnp.array(-10.0)))
    upper = 0.5 - softplus(0.5 - 0.0)
    assert lv[1] == pytest.approx(-10 + softplus(upper + 10), abs=1e-6)
    # The lower bound is applied last, so the upper one holds up to softplus(min − max).
    assert -10 <= lv[0] < -9.99 and 0.49 < lv[2] <= 0.5 + softplus(-10.5) + 1e-7


def test_gaussian_nll_bounds_term_and_weight_decay_by_hand():
    cfg = dynamics.DynamicsConfig(num_members=2, num_elites=1, hidden=(4,), weight_decay=(0.1, 0.2))
    model = constant_model(cfg, 1, 1, jnp.array([1.0, 2.0]), jnp.array([0.0, 0.0]))
    x = jnp.zeros((2, 3, 2))
    y = jnp.array([[[0.0, 2.0]] * 3, [[1.0, 4.0]] * 3])  # member 0 errs (1, 0), member 1 (0, 2)
    lv = -10 + softplus(0.5 - softplus(0.5) + 10)  # both outputs' bounded log-variance
    per_member = [
        np.mean([1 * math.exp(-lv) + lv, 0 + lv]),
        np.mean([0 + lv, 4 * math.exp(-lv) + lv]),
    ]
    loss, m = dynamics.nll_loss(model.params, model.module, x, y, cfg)
    bounds = 0.01 * (2 * 0.5 - 2 * -10.0)
    assert float(m["nll"]) == pytest.approx(sum(per_member), rel=1e-5)
    assert float(loss) == pytest.approx(sum(per_member) + bounds, rel=1e-5)  # zero kernels
    p = jax.tree_util.tree_map(lambda a: a, model.params)
    p["params"][MEMBERS]["MLP_0"]["Dense_0"]["kernel"] = jnp.ones_like(
        p["params"][MEMBERS]["MLP_0"]["Dense_0"]["kernel"]
    )
    loss2, _ = dynamics.nll_loss(p, model.module, x, y, cfg)
    # Dense_0 kernels: 2 members × (2 inputs × 4 units) ones -> 0.1 · ½ · 16; the members'
    # outputs change too (swish of the inputs, which are 0: swish(0) = 0), so only the decay.
    assert float(loss2 - loss) == pytest.approx(0.1 * 0.5 * 16, rel=1e-5)


def test_elites_are_the_lowest_holdout_mse():
    assert dynamics.choose_elites(np.array([0.3, 0.1, 0.5, 0.1, 0.2]), 3).tolist() == [1, 3, 4]


def test_ensemble_shapes_shared_and_per_member_inputs():
    net = GaussianEnsemble(out_dim=4, num=3, hidden=(8, 8))
    params = net.init(jax.random.key(0), jnp.zeros((1, 5)))
    mean, lv = net.apply(params, jnp.ones((7, 5)))
    assert mean.shape == lv.shape == (3, 7, 4)
    same = net.apply(params, jnp.ones((3, 7, 5)))
    np.testing.assert_allclose(same[0], mean)
    assert np.all(np.asarray(lv) <= 0.5) and np.all(np.asarray(lv) >= -10)


# --------------------------------------------------------------------------- termination


def test_termination_functions_by_hand():
    hop = jnp.array([[1.0, 0.0, 0.0], [0.6, 0.0, 0.0], [1.0, 0.3, 0.0], [1.0, 0.0, 150.0]])
    assert np.asarray(dynamics.hopper_done(hop)).tolist() == [False, True, True, True]
    walk = jnp.array([[1.2, 0.0], [0.7, 0.0], [2.1, 0.0], [1.2, -1.5]])
    assert np.asarray(dynamics.walker2d_done(walk)).tolist() == [False, True, True, True]
    ant = jnp.array([[0.5, 0.0], [0.1, 0.0], [1.1, 0.0], [jnp.nan, 0.0]])
    assert np.asarray(dynamics.ant_done(ant)).tolist() == [False, True, True, True]
    assert dynamics.termination_for("Hopper-v5") == "hopper"
    assert dynamics.termination_for("Walker2d-v4") == "walker2d"
    assert dynamics.termination_for("HalfCheetah-v5") == "none"
    assert dynamics.termination_for(None) == "none"


@pytest.mark.parametrize("env_id", ["Hopper-v5", "Walker2d-v5", "Ant-v5"])
def test_termination_functions_agree_with_gymnasium(env_id):
    """Random actions, every step: the function of the next observation says what the
    environment's `terminated` says."""
    env, rng = gym.make(env_id), np.random.default_rng(0)
    done_fn = dynamics.TERMINATIONS[dynamics.termination_for(env_id)]
    flags, said = [], []
    for episode in range(4):
        env.reset(seed=episode)
        for _ in range(300):
            obs, _, terminated, truncated, _ = env.step(rng.uniform(-1, 1, env.action_space.shape))
            flags.append(terminated)
            said.append(bool(done_fn(jnp.asarray(obs[None]))[0]))
            if terminated or truncated:
                break
    env.close()
    assert flags == said
    assert env_id == "Ant-v5" or any(flags)  # random actions topple Hopper and Walker2d


def test_a_model_step_ends_at_a_terminal():
    """A hopper model that lowers z by 0.5 per step: 1.0 -> 0.5 is a fall."""
    mean_bias = jnp.array([-0.5, 0.0, 0.0, 1.0])  # Δz, Δangle, Δother, reward
    model = constant_model(TINY, 3, 1, mean_bias, jnp.full(4, -100.0)).replace(termination="hopper")
    obs = jnp.array([[1.0, 0.0, 0.0], [1.5, 0.0, 0.0]])
    next_obs, reward, terminal, (mean, std) = dynamics.step(
        model, jax.random.key(0), obs, jnp.zeros((2, 1))
    )
    # σ is at its floor, e^{-10/2} ≈ 0.007: the samples lie within a few σ of the mean.
    np.testing.assert_allclose(next_obs[:, 0], [0.5, 1.0], atol=0.04)
    np.testing.assert_allclose(reward, [1.0, 1.0], atol=0.04)
    assert np.asarray(terminal).tolist() == [True, False]
    assert mean.shape == std.shape == (3, 2, 4)


# --------------------------------------------------------------------------- training


def linear_dataset(n: int = 2000):
    """s' = 0.9 s + 0.1 a, r = s_0: learnable by a tiny net."""
    ds = random_dataset(n, 3, 1, seed=3)
    nxt = 0.9 * ds.observations + 0.1 * ds.actions
    return ds.replace(
        next_observations=nxt.astype(np.float32), rewards=ds.observations[:, 0].copy()
    )


def test_training_learns_and_saves_and_loads(tmp_path):
    ds = linear_dataset()
    cfg = TINY.__class__(**{**TINY.__dict__, "max_epochs": 15, "lr": 3e-3})
    model, record = dynamics.train(cfg, ds, 0)
    history = record["history"]
    assert record["holdout_transitions"] == 200 and record["train_transitions"] == 1800
    assert min(history[-1]["holdout_mse"]) < 0.5 * min(history[0]["holdout_mse"])
    assert record["elites"] == dynamics.choose_elites(np.array(record["holdout_mse"]), 2).tolist()
    dynamics.save(tmp_path, model, cfg, {"record": record})
    loaded, meta = dynamics.load(tmp_path)
    obs, act = jnp.asarray(ds.observations[:4]), jnp.asarray(ds.actions[:4])
    for a, b in zip(dynamics.predict(model, obs, act), dynamics.predict(loaded, obs, act)):
        np.testing.assert_array_equal(a, b)
    assert meta["termination"] == "none" and meta["obs_dim"] == 3
    scores = dynamics.evaluate(loaded, ds)
    assert len(scores["mse"]) == len(scores["nll"]) == 4 and np.all(np.isfinite(scores["nll"]))


def test_early_stopping_after_patience_epochs_without_improvement():
    cfg = TINY.__class__(**{**TINY.__dict__, "patience": 2, "improvement": 10.0})
    model, record = dynamics.train(cfg, linear_dataset(400), 0)
    assert record["epochs"] == 2 and record["stopped"] == "early stopping"


def test_terminals_of_an_unknown_env_are_reported():
    ds = linear_dataset(400)
    ds = ds.replace(terminals=np.eye(1, len(ds), 5, dtype=bool)[0])
    _, record = dynamics.train(dynamics.DynamicsConfig(**{**TINY.__dict__, "max_epochs": 1}), ds, 0)
    assert "model rollouts never end" in record["warning"]


def test_bad_inputs_are_one_line_errors(tmp_path):
    with pytest.raises(ConfigError, match="continuous actions"):
        dynamics.train(TINY, random_discrete_dataset(300), 0)
    with pytest.raises(ConfigError, match="one per layer"):
        dynamics.check_config(TINY.__class__(hidden=(8, 8), weight_decay=(0.1,)))
    with pytest.raises(ConfigError, match="not a dynamics model"):
        dynamics.load(tmp_path)


def test_cli_model_train_and_eval(tmp_path, capsys):
    data = str(io.write_npz(linear_dataset(600), tmp_path / "lin.npz"))
    out = tmp_path / "model"
    tiny = ["--set", "num_members=3", "--set", "num_elites=2", "--set", "hidden=8"]
    tiny += ["--set", "weight_decay=0,0", "--set", "max_epochs=2", "--no-progress"]
    assert cli.main(["model", "train", data, "--out", str(out)] + tiny) == 0
    assert "2 epochs (max_epochs)" in capsys.readouterr().out
    assert cli.main(["model", "eval", str(out), "--dataset", data, "--json"]) == 0
    scores = json.loads(capsys.readouterr().out)
    assert len(scores["mse"]) == 4
    assert cli.main(["model", "train", data, "--out", str(out)] + tiny) == 2
    assert "--overwrite" in capsys.readouterr().err
    assert cli.main(["model", "train", data, "--out", str(tmp_path / "m2"), "--set", "lr=x"]) == 2
    assert "cannot read 'x'" in capsys.readouterr().err
    other = str(io.write_npz(random_dataset(100, 4, 2), tmp_path / "other.npz"))
    assert cli.main(["model", "eval", str(out), "--dataset", other]) == 2
    assert "differ from the model's" in capsys.readouterr().err
