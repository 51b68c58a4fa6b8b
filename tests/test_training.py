"""The training loop: run directory, refusal/overwrite/resume, SIGKILL + resume exactness,
the divergence guard, config overrides, and the Python API round trip."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import offrl
from offrl import algos, training
from offrl.algos import bc
from offrl.errors import ConfigError, DivergenceError

DATASET = "pendulum-expert"
SMALL = {"hidden": (16, 16), "batch_size": 64}


def short_run(out: Path, **kwargs) -> dict:
    args = dict(
        steps=400,
        out=out,
        overrides=SMALL,
        eval_every=200,
        eval_episodes=2,
        chunk_size=100,
        progress=False,
    )
    return offrl.train("bc", DATASET, **(args | kwargs))


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("runs") / "bc"
    return out, short_run(out)


def test_run_directory_holds_everything(finished_run):
    out, summary = finished_run
    for name in ("config.json", "metrics.jsonl", "summary.json", "curve.png"):
        assert (out / name).is_file(), name
    assert (out / "checkpoint" / "state.msgpack").is_file()
    on_disk = json.loads((out / "summary.json").read_text())
    assert on_disk == summary
    for key in (
        "algo",
        "dataset",
        "steps",
        "seed",
        "final_return",
        "final_normalized_score",
        "updates_per_second",
        "wall_seconds",
    ):
        assert key in summary, key
    assert summary["steps"] == 400 and summary["status"] == "completed"
    assert summary["updates_per_second"] > 0 and summary["wall_seconds"] > 0
    config = json.loads((out / "config.json").read_text())
    assert config["env_id"] == "Pendulum-v1" and config["algo_config"]["hidden"] == [16, 16]
    records = [json.loads(ln) for ln in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records if r["kind"] == "eval"] == [200, 400]
    assert [r["step"] for r in records if r["kind"] == "train"] == [100, 200, 300, 400]


def test_existing_run_is_refused_without_resume_or_overwrite(finished_run):
    out, _ = finished_run
    with pytest.raises(ConfigError, match="not empty.*--resume.*--overwrite"):
        short_run(out)
    assert (out / "summary.json").exists()  # nothing was touched


def test_overwrite_replaces_the_run(tmp_path):
    out = tmp_path / "run"
    short_run(out, steps=200)
    (out / "marker").write_text("old")
    summary = short_run(out, steps=200, overwrite=True)
    assert not (out / "marker").exists() and summary["steps"] == 200


def test_resume_extends_a_finished_run(tmp_path):
    out = tmp_path / "run"
    short_run(out, steps=200)
    summary = short_run(out, steps=400, resume=True)
    assert summary["steps"] == 400
    steps = [json.loads(ln)["step"] for ln in (out / "metrics.jsonl").read_text().splitlines()]
    assert steps == sorted(steps) and steps.count(200) == 2  # one train, one eval line


def test_resume_without_a_run_is_an_error(tmp_path):
    with pytest.raises(ConfigError, match="nothing to resume"):
        short_run(tmp_path / "empty", resume=True)


def _train_command(out: Path) -> list[str]:
    return [
        sys.executable,
        "-m",
        "offrl.cli",
        "train",
        "bc",
        "--dataset",
        DATASET,
        "--steps",
        "3000",
        "--out",
        str(out),
        "--eval-every",
        "500",
        "--eval-episodes",
        "1",
        "--chunk-size",
        "100",
        "--set",
        "hidden=16,16",
        "--no-progress",
    ]


def _checkpoint_step(out: Path) -> int:
    meta = out / "checkpoint" / "meta.json"
    return json.loads(meta.read_text())["step"] if meta.exists() else 0


def test_sigkill_then_resume_matches_uninterrupted_run(tmp_path):
    env = os.environ.copy()
    reference, killed = tmp_path / "reference", tmp_path / "killed"
    subprocess.run(_train_command(reference), check=True, env=env, capture_output=True)

    proc = subprocess.Popen(
        _train_command(killed), env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    deadline = time.time() + 120
    while _checkpoint_step(killed) < 1000 and proc.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    assert proc.poll() is None, "the run finished before it could be killed"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not (killed / "summary.json").exists()
    assert 1000 <= _checkpoint_step(killed) < 3000

    subprocess.run(_train_command(killed) + ["--resume"], check=True, env=env, capture_output=True)
    state_bytes = lambda run: (run / "checkpoint" / "state.msgpack").read_bytes()  # noqa: E731
    assert state_bytes(killed) == state_bytes(reference)
    evals = lambda run: [  # noqa: E731
        json.loads(ln)
        for ln in (run / "metrics.jsonl").read_text().splitlines()
        if json.loads(ln)["kind"] == "eval"
    ]
    assert evals(killed) == evals(reference)


class _DivergingBC:
    """BC whose parameters and loss turn NaN after step 250."""

    Config, init, act = bc.Config, bc.init, bc.act

    @staticmethod
    def update(cfg, state, batch, key):
        state, metrics = bc.update(cfg, state, batch, key)
        poison = jnp.where(state.step > 250, jnp.nan, 1.0)
        params = jax.tree_util.tree_map(lambda p: p * poison, state.policy.params)
        state = state.replace(policy=state.policy.replace(params=params))
        return state, {"bc_loss": metrics["bc_loss"] * poison}


def test_divergence_guard_stops_and_keeps_last_good_checkpoint(tmp_path, monkeypatch):
    real_get = algos.get
    monkeypatch.setattr(algos, "get", lambda n: _DivergingBC if n == "bc" else real_get(n))
    out = tmp_path / "run"
    # Chunk metrics are NaN-skipping means, so here the parameters are what the guard sees.
    with pytest.raises(
        DivergenceError, match=r"between steps 200 and 300: .*NaN/inf.*\(step 200\)"
    ):
        short_run(out)
    summary = json.loads((out / "summary.json").read_text())
    assert summary["status"] == "diverged" and summary["last_good_step"] == 200
    assert summary["checkpoint_step"] == 200
    assert _checkpoint_step(out) == 200
    policy = offrl.load_policy(out)  # the kept checkpoint is finite and loads
    assert np.isfinite(policy(np.zeros(3, np.float32))).all()


def test_overrides_are_typed_and_unknown_keys_listed():
    cfg = training.make_algo_config(
        "td3_bc", {"alpha": "1.5", "hidden": "64,64", "normalize_obs": "false", "policy_freq": "3"}
    )
    assert (cfg.alpha, cfg.hidden, cfg.normalize_obs, cfg.policy_freq) == (1.5, (64, 64), False, 3)
    with pytest.raises(ConfigError, match="unknown config field.*alpah.*valid: alpha, discount"):
        training.make_algo_config("td3_bc", {"alpah": "1"})
    with pytest.raises(ConfigError, match="'alpha': cannot read 'x' as float"):
        training.make_algo_config("td3_bc", {"alpha": "x"})
    with pytest.raises(ConfigError, match="unknown algorithm"):
        training.make_algo_config("no_such_algo", {})


def test_override_of_a_field_whose_default_is_none_takes_its_other_type():
    # SAC's target_entropy: float | None (None means -|A|); it used to stay a string.
    assert training.make_algo_config("sac", {"target_entropy": "-3"}).target_entropy == -3.0
    assert training.make_algo_config("sac", {"target_entropy": "None"}).target_entropy is None
    with pytest.raises(ConfigError, match="'target_entropy': cannot read 'x' as float"):
        training.make_algo_config("sac", {"target_entropy": "x"})


def test_load_policy_acts_like_the_trained_state(finished_run):
    out, summary = finished_run
    policy = offrl.load_policy(out)
    obs = np.array([[1.0, 0.0, 0.0], [0.0, 1.0, 2.0]], np.float32)
    batch = policy(obs)
    assert batch.shape == (2, 1) and np.all(np.abs(batch) <= 2.0)
    np.testing.assert_array_equal(policy(obs[0]), batch[0])
    result = policy.evaluate(episodes=2, seed=training.eval_seed(0))
    assert result["return_mean"] == pytest.approx(summary["final_return"], rel=1e-5)


def test_chunk_of_critic_only_steps_is_not_divergence(tmp_path):
    """TD3+BC's actor metrics are absent on a one-step chunk that ends on an odd step."""
    summary = offrl.train(
        "td3_bc",
        DATASET,
        steps=3,
        out=tmp_path / "run",
        overrides=SMALL,
        eval_every=3,
        eval_episodes=1,
        chunk_size=1,
        progress=False,
    )
    assert summary["status"] == "completed"
    records = [
        json.loads(ln) for ln in (tmp_path / "run" / "metrics.jsonl").read_text().split("\n") if ln
    ]
    train = {r["step"]: r for r in records if r["kind"] == "train"}
    assert "actor_loss" in train[2] and "actor_loss" not in train[3] and "critic_loss" in train[3]


def test_d4rl_file_trains_and_evaluates_in_mujoco(tmp_path):
    """A D4RL-layout file names no environment: --env picks the MuJoCo one, and the
    normalized score uses D4RL's published Hopper references."""
    from helpers import random_dataset

    from offrl.data import io
    from offrl.envs.registry import D4RL_REFERENCE_RETURNS

    path = tmp_path / "hopper.hdf5"
    io.write_d4rl(random_dataset(n=300, obs_dim=11, act_dim=3), path)
    summary = offrl.train(
        "td3_bc",
        str(path),
        steps=20,
        out=tmp_path / "run",
        env="Hopper-v5",
        overrides={"hidden": (8, 8), "batch_size": 16},
        eval_every=20,
        eval_episodes=1,
        chunk_size=10,
        progress=False,
    )
    low, high = D4RL_REFERENCE_RETURNS["Hopper"]
    expected = 100 * (summary["final_return"] - low) / (high - low)
    assert summary["env_id"] == "Hopper-v5"
    assert summary["final_normalized_score"] == pytest.approx(expected)


def test_resume_refuses_a_different_configuration(finished_run):
    out, _ = finished_run
    with pytest.raises(ConfigError, match="cannot resume it as td3_bc"):
        offrl.train("td3_bc", DATASET, steps=400, out=out, resume=True, progress=False)
    with pytest.raises(ConfigError, match="--set cannot change"):
        short_run(out, resume=True, overrides={"lr": 0.5})


# --------------------------------------------------------------------------- no simulator

TINY_OPE = {"fqe_steps": 200, "fqe_hidden": (8, 8), "num_bootstrap": 20, "chunk_size": 100}


def test_no_environment_trains_and_evaluates_off_policy_on_held_out_episodes(tmp_path):
    """A dataset that names no environment (and no --env) trains on 90% of its episodes and
    is evaluated by FQE on the other 10%: returns and normalized score are null, the
    estimate is finite and logged, and the curve is drawn from it."""
    from helpers import random_dataset

    from offrl.data import io

    path = tmp_path / "log.hdf5"
    io.write_d4rl(random_dataset(n=1000, obs_dim=4, act_dim=2, episode_len=50), path)
    summary = offrl.train(
        "bc",
        str(path),
        steps=40,
        out=tmp_path / "run",
        overrides={"hidden": (8, 8), "batch_size": 16},
        eval_every=20,
        chunk_size=20,
        progress=False,
        ope_config=TINY_OPE,
    )
    assert summary["evaluation"] == "ope" and summary["env_id"] is None
    assert summary["final_return"] is None and summary["final_normalized_score"] is None
    fqe = summary["ope"]["fqe"]
    assert np.isfinite(fqe["value"]) and fqe["ci"][0] <= fqe["value"] <= fqe["ci"][1]
    assert fqe["episodes"] == 2  # 10% of 20 episodes
    evals = [
        json.loads(ln)
        for ln in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()
        if json.loads(ln)["kind"] == "eval"
    ]
    assert [e["step"] for e in evals] == [20, 40] and all(np.isfinite(e["estimate"]) for e in evals)
    assert (tmp_path / "run" / "curve.png").stat().st_size > 0


def test_environment_without_references_reports_raw_returns(tmp_path):
    from helpers import random_dataset

    from offrl.data import io

    path = tmp_path / "ip.hdf5"
    io.write_d4rl(random_dataset(n=200, obs_dim=4, act_dim=1), path)
    summary = offrl.train(
        "bc",
        str(path),
        steps=10,
        out=tmp_path / "run",
        env="InvertedPendulum-v5",
        overrides={"hidden": (8, 8), "batch_size": 16},
        eval_every=10,
        eval_episodes=1,
        chunk_size=10,
        progress=False,
    )
    assert np.isfinite(summary["final_return"]) and summary["final_normalized_score"] is None


@pytest.mark.parametrize(
    "obs_dim, act_dim, message",
    [(17, 2, "actions have dimension 2, environment HalfCheetah-v5 has action shape"),
     (11, 6, "observations have dimension 11, environment HalfCheetah-v5")],
)  # fmt: skip
def test_dataset_spaces_must_match_the_environment_before_training(
    obs_dim, act_dim, message, tmp_path
):
    from helpers import random_dataset

    from offrl.data import io

    path = tmp_path / "wrong.hdf5"
    io.write_d4rl(random_dataset(n=100, obs_dim=obs_dim, act_dim=act_dim), path)
    with pytest.raises(ConfigError, match=message):
        offrl.train("bc", str(path), steps=10, out=tmp_path / "run", env="HalfCheetah-v5")
    assert not (tmp_path / "run" / "metrics.jsonl").exists()  # refused before training
