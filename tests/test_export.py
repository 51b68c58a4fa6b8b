"""ONNX export (offrl.export): every registered algorithm's graph acts as its deterministic
`act` on raw observations far from the normalization mean, with the transforms inside the
graph; BCQ's and BEAR's fixed draws; the refusal of any other sampling act; and a real run
directory exported and compared with offrl.load_policy (bc, iql, td3_bc)."""

from __future__ import annotations

import dataclasses
import types
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import onnxruntime as ort
import pytest
from helpers import random_dataset
from onnxruntime.capi.onnxruntime_pybind11_state import Fail
from test_algos_shared import ACT_DIM, OBS_DIM, is_discrete, train

import offrl
from offrl import algos
from offrl.data import io
from offrl.errors import ConfigError
from offrl.export import SAMPLED_ACTS, export_main, export_onnx, policy_to_onnx
from offrl.nets import QNet, ensemble_member

CONTINUOUS_ATOL = 1e-4
E2E_ALGOS = ("bc", "iql", "td3_bc")


def session(model) -> ort.InferenceSession:
    return ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])


def onnx_act(sess: ort.InferenceSession, obs: np.ndarray) -> np.ndarray:
    return sess.run(["action"], {"obs": obs})[0]


def far_observations(rows: int, dim: int, seed: int = 0) -> np.ndarray:
    """Raw observations some 10 standard deviations away from the transforms' means."""
    rng = np.random.default_rng(seed)
    return (10.0 + 5.0 * rng.normal(size=(rows, dim))).astype(np.float32)


def with_transforms(state, discrete: bool):
    """The state with standardization and (continuous) action bounds far from identity."""
    tf = state.tf.replace(
        obs_mean=jnp.linspace(-3.0, 4.0, OBS_DIM), obs_std=jnp.linspace(0.5, 2.0, OBS_DIM)
    )
    if not discrete:
        low, high = jnp.linspace(-2.0, -0.5, ACT_DIM), jnp.linspace(3.0, 4.0, ACT_DIM)
        tf = tf.replace(act_low=low, act_high=high)
    return state.replace(tf=tf)


def jax_act(algo, cfg, state, obs: np.ndarray) -> np.ndarray:
    return np.asarray(algo.act(cfg, state, jnp.asarray(obs), jax.random.key(0), True))


def assert_same_actions(ours: np.ndarray, theirs: np.ndarray, discrete: bool) -> None:
    assert ours.shape == theirs.shape
    if discrete:
        assert ours.dtype == np.int32
        np.testing.assert_array_equal(ours, theirs)
    else:
        assert ours.dtype == np.float32
        np.testing.assert_allclose(ours, theirs, rtol=0, atol=CONTINUOUS_ATOL)


def first_critic(cfg, state, obs: np.ndarray, env_act: np.ndarray) -> np.ndarray:
    """Q_1(s, a) of raw observations and environment actions (BCQ's and BEAR's critic)."""
    params = ensemble_member(state.critic.params, 0)
    unit = state.tf.action_to_unit(jnp.asarray(env_act))
    return np.asarray(QNet(cfg.hidden).apply(params, state.tf.obs(jnp.asarray(obs)), unit))


def assert_same_or_tied_candidates(cfg, state, obs, ours, theirs) -> None:
    """BCQ and BEAR act by argmax_k Q_1(s, a_k) over candidates: where two candidates' Q
    are equal to float32 rounding, ONNX Runtime and XLA may pick either. Every row is the
    same action within 1e-4, or one of the same Q_1 within 1e-5 (relative)."""
    assert ours.shape == theirs.shape and ours.dtype == np.float32
    far = np.abs(ours - theirs).max(axis=-1) > CONTINUOUS_ATOL
    if far.any():
        q_ours, q_theirs = (first_critic(cfg, state, obs[far], a[far]) for a in (ours, theirs))
        np.testing.assert_allclose(q_ours, q_theirs, rtol=1e-5, atol=1e-6)


# A preset (marwil) exports as its module does; a policy of the history cannot be one graph.
MODULES = [n for n in algos.NAMES if n not in algos.PRESETS]
ONE_GRAPH = [n for n in MODULES if not algos.stateful(algos.get(n))]


@pytest.mark.parametrize("name", [n for n in MODULES if n not in ONE_GRAPH])
def test_a_policy_of_the_history_is_refused_in_one_line(name):
    algo, cfg, state, _, _ = train(name)
    with pytest.raises(ConfigError, match="acts on its history") as info:
        policy_to_onnx(algo, cfg, state)
    assert "\n" not in str(info.value)


@pytest.fixture(scope="module", params=ONE_GRAPH)
def exported(request):
    """(name, algo, cfg, state, ONNX session) of a briefly trained algorithm."""
    algo, cfg, state, _, _ = train(request.param)
    state = with_transforms(state, is_discrete(algo))
    model = policy_to_onnx(algo, cfg, state)
    return request.param, algo, cfg, state, model


def test_graph_acts_as_the_deterministic_act(exported):
    name, algo, cfg, state, model = exported
    sess = session(model)
    for rows in (1, 200):  # the batch dimension is dynamic
        obs = far_observations(rows, OBS_DIM, seed=rows)
        ours, theirs = onnx_act(sess, obs), jax_act(algo, cfg, state, obs)
        if name in SAMPLED_ACTS:
            assert_same_or_tied_candidates(cfg, state, obs, ours, theirs)
        else:
            assert_same_actions(ours, theirs, is_discrete(algo))
    (graph_input,) = sess.get_inputs()
    assert graph_input.name == "obs" and graph_input.shape == ["batch", OBS_DIM], name
    props = {p.key: p.value for p in model.metadata_props}
    assert props["algo"] == name and props["action_kind"] == algos.action_kind(algo)


@pytest.fixture(scope="module")
def bcq_trained():
    algo, cfg, state, _, _ = train("bcq")
    return algo, cfg, with_transforms(state, False)


def test_sampling_act_holds_its_draws_for_max_batch_rows(bcq_trained):
    algo, cfg, state = bcq_trained
    model = policy_to_onnx(algo, cfg, state, max_batch=8)
    assert {p.key: p.value for p in model.metadata_props}["max_batch"] == "8"
    sess = session(model)
    obs = far_observations(9, OBS_DIM)
    ours, theirs = onnx_act(sess, obs[:8]), jax_act(algo, cfg, state, obs[:8])
    assert_same_or_tied_candidates(cfg, state, obs[:8], ours, theirs)
    with pytest.raises(Fail):  # no draws for a 9th row
        onnx_act(sess, obs)


def test_bear_without_act_samples_needs_no_draws():
    algo, cfg, state, _, _ = train("bear")
    cfg = dataclasses.replace(cfg, act_samples=0)  # tanh(μ(s)): key-free
    state = with_transforms(state, False)
    model = policy_to_onnx(algo, cfg, state)
    assert not [i for i in model.graph.initializer if i.name == "noise_table"]
    obs = far_observations(20, OBS_DIM)
    assert_same_actions(onnx_act(session(model), obs), jax_act(algo, cfg, state, obs), False)


def test_an_other_act_that_samples_is_refused_in_one_line(bcq_trained):
    _, cfg, state = bcq_trained
    noisy = types.ModuleType("offrl.algos.noisy")
    noisy.act = lambda cfg, state, obs, key, deterministic=True: (
        obs + jax.random.normal(key, obs.shape)
    )
    with pytest.raises(ConfigError, match="noisy: its deterministic act draws random") as err:
        policy_to_onnx(noisy, cfg, state)
    assert "\n" not in str(err.value)


# ------------------------------------------------------------------ a real run directory


@pytest.fixture(scope="module")
def dataset_file(tmp_path_factory) -> Path:
    """A Pendulum-shaped dataset whose observations are far from zero mean and unit std,
    with Pendulum's action bounds [-2, 2]."""
    ds = random_dataset(n=300, obs_dim=3, act_dim=1)
    ds = dataclasses.replace(
        ds,
        observations=ds.observations * [1.0, 2.0, 0.5] + [3.0, -2.0, 1.0],
        next_observations=ds.next_observations * [1.0, 2.0, 0.5] + [3.0, -2.0, 1.0],
        actions=2.0 * ds.actions,
        action_low=np.full(1, -2.0, np.float32),
        action_high=np.full(1, 2.0, np.float32),
    )
    path = tmp_path_factory.mktemp("data") / "pendulum-far.npz"
    io.write(ds, path)
    return path


@pytest.fixture(scope="module")
def runs(dataset_file, tmp_path_factory):
    """name -> the run directory of a short training run on `dataset_file`, made once."""
    made: dict[str, Path] = {}

    def run(name: str) -> Path:
        if name not in made:
            made[name] = tmp_path_factory.mktemp("runs") / name
            offrl.train(
                name,
                str(dataset_file),
                steps=20,
                out=made[name],
                overrides={"hidden": (16, 16), "batch_size": 32, "normalize_obs": True},
                eval_every=20,
                eval_episodes=1,
                chunk_size=20,
                progress=False,
            )
        return made[name]

    return run


@pytest.mark.parametrize("name", E2E_ALGOS)
def test_run_directory_export_reproduces_load_policy(name, runs, tmp_path):
    run_dir = runs(name)
    out = export_onnx(run_dir, tmp_path / "policy.onnx")
    policy = offrl.load_policy(run_dir)
    obs = far_observations(64, 3)
    sess = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    ours = onnx_act(sess, obs)
    assert ours.shape == (64, 1) and ours.dtype == np.float32
    np.testing.assert_allclose(ours, policy(obs), rtol=0, atol=CONTINUOUS_ATOL)
    props = sess.get_modelmeta().custom_metadata_map
    assert props["algo"] == name and props["env_id"] == "Pendulum-v1"
    assert props["step"] == str(policy.step)


def test_export_main_refuses_an_existing_out_unless_overwrite(runs, tmp_path):
    run = runs("bc")
    out = tmp_path / "policy.onnx"
    line = export_main(run, out)
    assert str(out) in line and "\n" not in line and out.is_file()
    with pytest.raises(ConfigError, match="exists.*--overwrite"):
        export_main(run, out)
    export_main(run, out, overwrite=True)
    with pytest.raises(ConfigError, match="--format must be one of onnx"):
        export_main(run, tmp_path / "p.pt", fmt="torchscript")
    with pytest.raises(ConfigError, match="--opset must be in 13..23"):
        export_main(run, tmp_path / "p.onnx", opset=9)
    assert not (tmp_path / "p.onnx").exists()


def test_a_bad_run_directory_is_a_one_line_config_error(tmp_path):
    with pytest.raises(ConfigError, match="not a run directory") as err:
        export_main(tmp_path / "missing", tmp_path / "policy.onnx")
    assert "\n" not in str(err.value)
    assert not (tmp_path / "policy.onnx").exists()
