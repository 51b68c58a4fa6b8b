"""Online behaviour agents: learning, snapshots, exact resumption, configuration errors."""

from __future__ import annotations

import json

import flax.serialization
import numpy as np
import pytest

from offrl.behavior.online import BehaviorConfig, pack_run, read_jsonl, train_behavior
from offrl.cli import main
from offrl.errors import ConfigError

SMALL = {"hidden": (16, 16), "batch_size": 32}


def tiny(steps: int, **kw) -> BehaviorConfig:
    base = dict(
        env_id="Pendulum-v1",
        steps=steps,
        start_steps=400,
        update_every=50,
        snapshot_every=200,
        checkpoint_every=400,
        eval_episodes=2,
        algo_config=SMALL,
    )
    return BehaviorConfig(**(base | kw))


def test_run_writes_snapshots_episodes_and_a_checkpoint(tmp_path):
    summary = train_behavior(tiny(800), tmp_path / "run", progress=False)
    assert summary["steps"] == 800
    snaps = read_jsonl(tmp_path / "run" / "snapshots.jsonl")
    assert [s["step"] for s in snaps] == [200, 400, 600, 800]
    for s in snaps:
        assert np.isfinite(s["return_mean"]) and np.isfinite(s["explore_return_mean"])
        assert (tmp_path / "run" / "snapshots" / f"step_{s['step']:07d}.msgpack").exists()
    episodes = read_jsonl(tmp_path / "run" / "episodes.jsonl")
    assert [e["length"] for e in episodes] == [200] * 4  # Pendulum's time limit
    assert "critic_loss" in snaps[-1] and "alpha" in snaps[-1]


@pytest.mark.parametrize("algo", ["sac", "ddpg"])
def test_extending_a_run_equals_running_it_at_once(tmp_path, algo):
    straight = train_behavior(tiny(1000, algo=algo), tmp_path / "a", progress=False)
    train_behavior(tiny(600, algo=algo), tmp_path / "b", progress=False)
    resumed = train_behavior(tiny(1000, algo=algo), tmp_path / "b", resume=True, progress=False)
    assert straight["steps"] == resumed["steps"] == 1000
    a = (tmp_path / "a" / "checkpoint" / "state.msgpack").read_bytes()
    b = (tmp_path / "b" / "checkpoint" / "state.msgpack").read_bytes()
    assert a == b
    for log in ("snapshots.jsonl", "episodes.jsonl"):
        assert read_jsonl(tmp_path / "a" / log) == read_jsonl(tmp_path / "b" / log)
    with np.load(tmp_path / "a" / "buffer.npz") as x, np.load(tmp_path / "b" / "buffer.npz") as y:
        for column in x.files:
            np.testing.assert_array_equal(x[column], y[column])


def test_a_packed_run_resumes_exactly_from_its_actions(tmp_path):
    # The packed copy has no buffer.npz: resuming replays the 600 actions in the
    # environment, and the run then goes on as if never stopped.
    straight = train_behavior(tiny(1000), tmp_path / "a", progress=False)
    train_behavior(tiny(600), tmp_path / "b", progress=False)
    argv = ["behavior", "pack", str(tmp_path / "b"), "--out", str(tmp_path / "c")]
    assert main([*argv, "--snapshots", "400"]) == 0
    packed = tmp_path / "c"
    assert not (packed / "buffer.npz").exists() and (packed / "actions.npz").exists()
    assert [p.name for p in (packed / "snapshots").iterdir()] == ["step_0000400.msgpack"]
    resumed = train_behavior(tiny(1000), packed, resume=True, progress=False)
    assert straight["steps"] == resumed["steps"] == 1000
    a = (tmp_path / "a" / "checkpoint" / "state.msgpack").read_bytes()
    assert a == (packed / "checkpoint" / "state.msgpack").read_bytes()
    for log in ("snapshots.jsonl", "episodes.jsonl"):
        assert read_jsonl(tmp_path / "a" / log) == read_jsonl(packed / log)
    with np.load(tmp_path / "a" / "buffer.npz") as x, np.load(packed / "buffer.npz") as y:
        for column in x.files:
            np.testing.assert_array_equal(x[column], y[column])


def test_a_packed_run_whose_actions_replay_differently_is_refused(tmp_path):
    train_behavior(tiny(400), tmp_path / "b", progress=False)
    pack_run(tmp_path / "b", tmp_path / "c")
    with np.load(tmp_path / "c" / "actions.npz") as saved:
        act, logp = saved["act"].copy(), saved["logp"]
    act[5] = -act[5]  # another simulator would step to other states
    np.savez(tmp_path / "c" / "actions.npz", act=act, logp=logp, digest="0" * 64)
    with pytest.raises(ConfigError, match="do not make the packed buffer"):
        train_behavior(tiny(800), tmp_path / "c", resume=True, progress=False)
    (tmp_path / "c" / "actions.npz").unlink()
    with pytest.raises(ConfigError, match="neither buffer.npz nor actions.npz"):
        train_behavior(tiny(800), tmp_path / "c", resume=True, progress=False)
    with pytest.raises(ConfigError, match="not empty"):
        pack_run(tmp_path / "b", tmp_path / "c")
    with pytest.raises(ConfigError, match="not a behaviour run with a checkpoint"):
        pack_run(tmp_path / "nothing", tmp_path / "d")


def test_snapshot_holds_the_actor_and_transforms(tmp_path):
    train_behavior(tiny(400), tmp_path / "run", progress=False)
    payload = flax.serialization.msgpack_restore(
        (tmp_path / "run" / "snapshots" / "step_0000400.msgpack").read_bytes()
    )
    assert set(payload) == {"actor", "tf"}
    np.testing.assert_array_equal(payload["tf"]["act_high"], [2.0])


def test_sac_learns_pendulum_online(tmp_path):
    """SAC's short learning test: from -1176 ± 287 (random) to better than -600 in 7k steps
    (the committed Pendulum agent, the same run at full length, is at -123 by then)."""
    bc = BehaviorConfig(
        "Pendulum-v1",
        steps=7_000,
        start_steps=1_000,
        snapshot_every=7_000,
        checkpoint_every=7_000,
        eval_episodes=10,
    )
    summary = train_behavior(bc, tmp_path / "run", progress=False)
    assert summary["snapshots"][-1]["return_mean"] > -600, summary


def test_resume_refuses_a_different_config_and_fewer_steps(tmp_path):
    train_behavior(tiny(400), tmp_path / "run", progress=False)
    with pytest.raises(ConfigError, match="different configuration"):
        train_behavior(tiny(400, seed=1), tmp_path / "run", resume=True, progress=False)
    with pytest.raises(ConfigError, match="fewer steps"):
        train_behavior(tiny(200), tmp_path / "run", resume=True, progress=False)
    with pytest.raises(ConfigError, match="not empty"):
        train_behavior(tiny(400), tmp_path / "run", progress=False)
    with pytest.raises(ConfigError, match="nothing to resume"):
        train_behavior(tiny(400), tmp_path / "other", resume=True, progress=False)


@pytest.mark.parametrize(
    "argv, message",
    [
        (["behavior", "train", "Pendulum-v1", "--set", "nope=1"], "unknown config field"),
        (["behavior", "train", "NoSuchEnv-v0", "--steps", "10"], "NoSuchEnv-v0"),
        (["behavior", "train", "CartPole-v1", "--algo", "sac", "--steps", "10"], "continuous"),
        (["behavior", "train", "Pendulum-v1", "--start-steps", "75"], "multiples"),
        (["behavior", "publish", "x", "--env", "moon"], "moon"),
    ],
)
def test_behavior_cli_errors_are_one_line(argv, message, tmp_path, capsys):
    assert main([*argv, "--out", str(tmp_path / "r")] if argv[1] == "train" else argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("offrl: error:") and message in err and "\n" not in err


def test_config_json_round_trips(tmp_path):
    train_behavior(tiny(200), tmp_path / "run", progress=False)
    saved = json.loads((tmp_path / "run" / "config.json").read_text())
    assert saved["env_id"] == "Pendulum-v1" and saved["algo_config"]["hidden"] == [16, 16]


def test_behavior_cli_trains_and_resumes(tmp_path, capsys):
    argv = ["behavior", "train", "Pendulum-v1", "--steps", "400", "--start-steps", "200",
            "--snapshot-every", "200", "--set", "hidden=16,16", "--set", "batch_size=32",
            "--out", str(tmp_path / "run"), "--no-progress"]  # fmt: skip
    assert main(argv) == 0
    assert "400 steps" in capsys.readouterr().out
    assert main(argv) == 2  # the directory is taken
    assert "pass --resume" in capsys.readouterr().err
    longer = [*argv, "--resume"]
    longer[longer.index("400")] = "600"
    assert main(longer) == 0
    assert "600 steps" in capsys.readouterr().out
