"""Online DQN behaviour agents: the ε schedule, the logged replay, exact resumption and
regeneration, snapshots, configuration and CLI errors."""

from __future__ import annotations

import json

import flax.serialization
import numpy as np
import pytest

from offrl.behavior.online import read_jsonl
from offrl.behavior.online_dqn import (
    DQNBehaviorConfig,
    default_config,
    epsilon_at,
    read_replay,
    replay_digest,
    replay_of,
    train_dqn_behavior,
)
from offrl.cli import main
from offrl.errors import ConfigError

SMALL = {"hidden": (16, 16), "batch_size": 32}


def tiny(steps: int = 500, **kw) -> DQNBehaviorConfig:
    base = dict(
        env_id="CartPole-v1",
        steps=steps,
        start_steps=100,
        epsilon_end=0.1,
        epsilon_decay_steps=200,
        update_every=50,
        snapshot_every=200,
        checkpoint_every=150,
        eval_episodes=2,
        algo_config=SMALL,
    )
    return DQNBehaviorConfig(**(base | kw))


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """A 500-step CartPole run; its directory."""
    out = tmp_path_factory.mktemp("dqn") / "run"
    train_dqn_behavior(tiny(500), out, progress=False)
    return out


def test_epsilon_is_one_then_falls_linearly_then_holds():
    bc = tiny(500)  # start 100, from 1.0 to 0.1 over 200 steps
    assert epsilon_at(bc, 0) == epsilon_at(bc, 99) == 1.0
    assert epsilon_at(bc, 100) == 1.0
    assert epsilon_at(bc, 150) == pytest.approx(1.0 - 0.9 * 50 / 200)  # 0.775
    assert epsilon_at(bc, 250) == pytest.approx(1.0 - 0.9 * 150 / 200)  # 0.325
    assert epsilon_at(bc, 300) == epsilon_at(bc, 5_000) == pytest.approx(0.1)


def test_replay_logs_every_transition_with_its_epsilon_and_policy(run):
    log = read_replay(run)
    t = np.arange(500)
    assert len(log["rewards"]) == 500
    assert log["actions"].shape == (500, 1) and log["actions"].dtype == np.int64
    assert set(np.unique(log["actions"])) <= {0, 1}
    np.testing.assert_allclose(log["epsilon"], [epsilon_at(tiny(500), i) for i in t], rtol=1e-6)
    # Chunks of 50 updates run after steps 100, 150, ...: row t acted after 50·(chunks so far).
    expected_updates = np.where(t < 100, 0, 50 * ((t - 100) // 50 + 1))
    np.testing.assert_array_equal(log["policy_update"], expected_updates)
    assert log["policy_update"][499] == 400  # after steps 100, 150, ..., 450: 8 chunks
    np.testing.assert_array_equal(log["snapshot"], t // 200)
    # Rows chain within episodes; the last row ends an episode.
    ends = np.flatnonzero(log["terminals"] | log["timeouts"])
    inside = np.setdiff1d(np.arange(499), ends)
    np.testing.assert_array_equal(log["next_observations"][inside], log["observations"][inside + 1])
    assert ends[-1] == 499
    # Episodes as the log sums them are the ones episodes.jsonl recorded.
    starts = np.concatenate([[0], ends[:-1] + 1])
    returns = np.add.reduceat(log["rewards"], starts)
    recorded = read_jsonl(run / "episodes.jsonl")
    np.testing.assert_array_equal(returns, [e["return"] for e in recorded])
    summary = json.loads((run / "summary.json").read_text())
    assert summary["replay_sha256"] == replay_digest(log)


def test_rerunning_the_configuration_reproduces_the_logged_replay(run):
    again = replay_of(tiny(500))
    logged = read_replay(run)
    for column in logged:
        np.testing.assert_array_equal(again[column], logged[column], err_msg=column)


def test_extending_a_run_equals_running_it_at_once(run, tmp_path):
    train_dqn_behavior(tiny(330), tmp_path / "b", progress=False)  # ends inside an episode
    meta = json.loads((tmp_path / "b" / "checkpoint" / "meta.json").read_text())
    assert meta["step"] < 330  # checkpoints only at episode ends
    resumed = train_dqn_behavior(tiny(500), tmp_path / "b", resume=True, progress=False)
    assert (
        resumed["replay_sha256"] == json.loads((run / "summary.json").read_text())["replay_sha256"]
    )
    for name in ("checkpoint/state.msgpack",):
        assert (run / name).read_bytes() == (tmp_path / "b" / name).read_bytes()
    for log in ("snapshots.jsonl", "episodes.jsonl"):
        assert read_jsonl(run / log) == read_jsonl(tmp_path / "b" / log)
    # The tail written after the 330-step run's last checkpoint was replaced, not kept.
    parts = sorted(p.name for p in (tmp_path / "b" / "replay").glob("part_*"))
    assert parts == resumed["replay_parts"]


def test_snapshots_hold_q_and_transforms_and_evaluations(run):
    snaps = read_jsonl(run / "snapshots.jsonl")
    assert [s["step"] for s in snaps] == [200, 400]
    assert all(np.isfinite(s["return_mean"]) for s in snaps)
    assert "q_loss" in snaps[-1] and snaps[-1]["epsilon"] == pytest.approx(0.1)
    payload = flax.serialization.msgpack_restore(
        (run / "snapshots" / "step_0000400.msgpack").read_bytes()
    )
    assert set(payload) == {"q", "tf"}
    np.testing.assert_array_equal(payload["tf"]["obs_std"], np.ones(4))  # raw observations


def test_default_config_merges_the_environment_schedule():
    bc = default_config("CartPole-v1", steps=5_000, algo_config={"batch_size": 16})
    assert bc.steps == 5_000 and bc.snapshot_every == 2_500
    assert bc.algo_config == {"lr": 1e-3, "target_update_period": 100, "batch_size": 16}
    assert default_config("Unknown-v0").steps == DQNBehaviorConfig("x").steps


@pytest.mark.parametrize(
    "change, message",
    [
        ({"algo": "sac"}, "algo 'sac'"),
        ({"steps": 0}, "steps must be positive"),
        ({"buffer_size": 0}, "buffer_size must be positive"),
        ({"epsilon_decay_steps": -1}, "epsilon_decay_steps must be positive"),
        ({"eval_episodes": 0}, "eval_episodes must be positive"),
        ({"start_steps": -50}, "start_steps must be >= 0"),
        ({"epsilon_end": 1.5}, "epsilon_end must be in [0, 1]"),
        ({"epsilon_start": -0.1}, "epsilon_start must be in [0, 1]"),
        ({"start_steps": 75}, "multiples of update_every"),
    ],
)
def test_bad_configuration_is_refused(change, message, tmp_path):
    with pytest.raises(ConfigError, match=message.replace("[", r"\[").replace("]", r"\]")):
        train_dqn_behavior(tiny(**({"steps": 100} | change)), tmp_path / "r", progress=False)
    assert not (tmp_path / "r").exists()


def test_run_directory_errors(run, tmp_path):
    with pytest.raises(ConfigError, match="Discrete action space"):
        train_dqn_behavior(tiny(100, env_id="Pendulum-v1"), tmp_path / "p", progress=False)
    assert not (tmp_path / "p").exists()  # the environment is checked before the directory
    with pytest.raises(ConfigError, match="different configuration"):
        train_dqn_behavior(tiny(500, seed=1), run, resume=True, progress=False)
    with pytest.raises(ConfigError, match="fewer steps"):
        train_dqn_behavior(tiny(200), run, resume=True, progress=False)
    with pytest.raises(ConfigError, match="not empty"):
        train_dqn_behavior(tiny(500), run, progress=False)
    with pytest.raises(ConfigError, match="nothing to resume"):
        train_dqn_behavior(tiny(500), tmp_path / "other", resume=True, progress=False)


def test_reading_an_unfinished_or_damaged_replay_fails_naming_it(run, tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(ConfigError, match="has not finished"):
        read_replay(tmp_path / "empty")
    summary = json.loads((run / "summary.json").read_text())
    damaged = tmp_path / "damaged"
    (damaged / "replay").mkdir(parents=True)
    (damaged / "summary.json").write_text(json.dumps(summary))
    with pytest.raises(ConfigError, match="missing or out of order"):
        read_replay(damaged)


def exit_status(argv: list[str]) -> int:
    """main's status, also when argparse ends the program (bad choices)."""
    try:
        return main(argv)
    except SystemExit as exc:
        return int(exc.code)


@pytest.mark.parametrize(
    "argv, message",
    [
        (["behavior", "train", "CartPole-v1", "--set", "nope=1"], "unknown config field"),
        (["behavior", "train", "NoSuchEnv-v0", "--steps", "10"], "NoSuchEnv-v0"),
        (["behavior", "train", "Pendulum-v1", "--algo", "dqn", "--steps", "10"], "Discrete action"),
        (["behavior", "train", "CartPole-v1", "--start-steps", "75"], "multiples"),
        (["behavior", "train", "CartPole-v1", "--algo", "sac"], "continuous (Box) action"),
        (["behavior", "train", "CartPole-v1", "--algo", "bc"], "invalid choice"),
        (["behavior", "publish", "x", "--env", "cartpole", "--role", "qr"], "invalid choice"),
        (["behavior", "publish", "x", "--env", "moon", "--role", "dqn"], "moon"),
    ],
)
def test_cli_errors_are_one_line_exit_2(argv, message, tmp_path, capsys):
    argv = [*argv, "--out", str(tmp_path / "r")] if argv[1] == "train" else argv
    assert exit_status(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("offrl: error:") and message in err and "\n" not in err


def test_cli_trains_and_resumes(tmp_path, capsys):
    argv = ["behavior", "train", "CartPole-v1", "--steps", "100", "--start-steps", "50",
            "--snapshot-every", "100", "--set", "hidden=16,16", "--set", "batch_size=32",
            "--out", str(tmp_path / "run"), "--no-progress"]  # fmt: skip
    assert main(argv) == 0
    assert "100 steps" in capsys.readouterr().out
    assert main(argv) == 2  # the directory is taken
    assert "pass --resume" in capsys.readouterr().err
    longer = [*argv, "--resume"]
    longer[longer.index("100")] = "150"
    assert main(longer) == 0
    assert "150 steps" in capsys.readouterr().out
    saved = json.loads((tmp_path / "run" / "config.json").read_text())
    assert saved["algo"] == "dqn"  # the default for a Discrete action space
    assert saved["algo_config"] == {"lr": 1e-3, "target_update_period": 100} | {
        "hidden": "16,16",
        "batch_size": "32",
    }


@pytest.mark.slow
def test_dqn_learns_cartpole_online(tmp_path):
    """The committed CartPole agent's run (its default schedule) evaluated 500.0 at step 5000;
    a run of 7,500 steps must pass 400 at one of its snapshots (random: about 23)."""
    bc = default_config("CartPole-v1", steps=7_500, snapshot_every=2_500)
    train_dqn_behavior(bc, tmp_path / "run", progress=False)
    best = max(s["return_mean"] for s in read_jsonl(tmp_path / "run" / "snapshots.jsonl"))
    assert best >= 400, best
