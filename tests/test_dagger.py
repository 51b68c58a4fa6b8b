"""DAgger: the β schedule, the mixture's rollouts, aggregation of expert-labelled states
(checked by hand with toy policies in Pendulum-v1), the run directory of `offrl dagger`,
and its bad input as one line with exit status 2."""

from __future__ import annotations

import json

import numpy as np
import pytest

from offrl import cli, dagger
from offrl.data import io
from offrl.policy import load_policy

ENV = "Pendulum-v1"  # action Box [-2, 2], observation (cos θ, sin θ, θ̇)


def run_cli(capsys, *argv: str) -> tuple[int, str, str]:
    try:
        code = cli.main(list(argv))
    except SystemExit as exc:  # argparse's own errors
        code = exc.code
    out, err = capsys.readouterr()
    return code, out, err


def assert_one_line_error(code: int, err: str, *fragments: str) -> None:
    assert code == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("offrl: error: "), err
    for fragment in fragments:
        assert fragment in lines[0], (fragment, lines[0])


def toy_expert(obs: np.ndarray, rng=None) -> np.ndarray:
    """A deterministic function of the state: a damping controller -θ̇/4, within [-2, 2]."""
    return np.clip(-obs[:, 2:3] / 4.0, -2.0, 2.0).astype(np.float32)


def constant(value: float):
    def policy(obs: np.ndarray, rng=None) -> np.ndarray:
        return np.full((len(obs), 1), value, np.float32)

    return policy


# --------------------------------------------------------------------------- schedule


def test_beta_schedule_is_p_to_the_i_with_the_expert_alone_first():
    assert [dagger.beta(i, 0.5) for i in range(4)] == [1.0, 0.5, 0.25, 0.125]
    assert [dagger.beta(i, 0.0) for i in range(3)] == [1.0, 0.0, 0.0]  # β_i = I(i = 0)
    assert [dagger.beta(i, 1.0) for i in range(3)] == [1.0, 1.0, 1.0]  # never the learner


def test_mixture_executes_the_expert_with_probability_beta_per_step():
    seeds = list(range(8))
    kwargs = {"seeds": seeds, "horizon": 50}
    for beta, expected in ((1.0, 1.0), (0.0, 0.0)):
        rng = np.random.default_rng(0)
        v = dagger.labelled_rollouts(ENV, constant(1.0), constant(-1.0), beta, rng=rng, **kwargs)
        assert len(v) == 400 and v.expert_acted.mean() == expected
    rng = np.random.default_rng(0)
    v = dagger.labelled_rollouts(ENV, constant(1.0), constant(-1.0), 0.3, rng=rng, **kwargs)
    assert abs(v.expert_acted.mean() - 0.3) < 0.07
    assert np.all(v.expert_actions == 1.0) and np.all(v.learner_actions == -1.0)
    assert v.timeouts.sum() == 8 and np.all(v.lengths == 50)  # cut at the horizon
    # the executed action drives the state: all-learner torque -1 differs from all-expert +1
    same_starts = [
        dagger.labelled_rollouts(ENV, constant(1.0), constant(-1.0), b, [3], rng, 20)
        for b in (1.0, 0.0)
    ]
    np.testing.assert_array_equal(same_starts[0].observations[0], same_starts[1].observations[0])
    assert not np.allclose(same_starts[0].observations[-1], same_starts[1].observations[-1])


def test_no_learner_means_the_expert_must_act():
    with pytest.raises(dagger.ConfigError, match="no learner"):
        dagger.labelled_rollouts(ENV, toy_expert, None, 0.5, [0], np.random.default_rng(0))


# --------------------------------------------------------------------------- aggregation


def test_each_round_aggregates_every_earlier_labelled_state_plus_its_own():
    """Round i's D holds D after round i-1 as its prefix, then the states round i visited,
    every one labelled with the expert's action; round i rolls out the learner fit in round
    i-1 (here a constant policy whose value tells which round made it)."""
    seen: list = []

    def fit(i, data):
        seen.append(data)
        return constant(0.1 * (i + 1)), {"round": i}

    rounds = list(
        dagger.iterate(ENV, toy_expert, fit, iterations=3, episodes=2, beta_decay=0.0, horizon=7)
    )
    assert [len(d) for d in seen] == [14, 28, 42]
    assert [r.data.num_episodes for r in rounds] == [2, 4, 6]
    for i, r in enumerate(rounds):
        assert r.data is seen[i] and r.fit_info == {"round": i}
        np.testing.assert_array_equal(r.data.actions, toy_expert(r.data.observations))
        new = slice(len(r.data) - len(r.visits), len(r.data))
        np.testing.assert_array_equal(r.data.observations[new], r.visits.observations)
        if i:
            prev = rounds[i - 1].data
            for col in ("observations", "actions", "next_observations", "timeouts"):
                np.testing.assert_array_equal(getattr(r.data, col)[: len(prev)], getattr(prev, col))
            assert not r.visits.expert_acted.any()  # p = 0: the learner alone
            np.testing.assert_allclose(r.visits.learner_actions, 0.1 * i)  # π̂_i, fit in i-1
        else:
            assert r.visits.expert_acted.all()  # round 0: plain BC data
    # fresh start states each round; the dataset keeps the environment and bounds
    assert not np.allclose(rounds[0].visits.observations[0], rounds[1].visits.observations[0])
    assert rounds[2].data.env_id is None  # no fields given
    np.testing.assert_array_equal(rounds[2].data.action_high, [2.0])


def test_disagreement_is_in_normalized_action_units():
    low, high = np.array([-2.0]), np.array([2.0])
    expert, learner = np.zeros((4, 1)), np.array([[0.4], [0.4], [0.0], [0.0]])
    got = dagger.disagreement(expert, learner, low, high, tolerance=0.1)
    assert got["action_mse"] == pytest.approx(0.5 * 0.2**2)
    assert got["disagreement"] == 0.5
    assert dagger.disagreement(expert, learner, low, high, tolerance=0.3)["disagreement"] == 0.0


# --------------------------------------------------------------------------- the command


TINY = [
    "--episodes-per-iteration",
    "2",
    "--steps-per-iteration",
    "50",
    "--eval-episodes",
    "2",
    "--set",
    "hidden=16,16",
    "--set",
    "batch_size=64",
    "--no-progress",
]


def test_cli_writes_a_run_directory_that_eval_and_load_policy_read(tmp_path, capsys):
    out = tmp_path / "dagger"
    code, stdout, err = run_cli(
        capsys, "dagger", "pendulum", "--iterations", "2", *TINY, "--out", str(out)
    )
    assert code == 0, err
    assert "iteration 1" in stdout and "run directory" in stdout
    for name in ("config.json", "summary.json", "metrics.jsonl", "curve.png", "dagger.json"):
        assert (out / name).is_file(), name
    config = json.loads((out / "config.json").read_text())
    assert config["algo"] == "bc" and config["env_id"] == ENV
    assert config["algo_config"]["hidden"] == [16, 16]
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["labels"] for r in records] == [400, 800]  # 2 episodes of 200 steps per round
    assert [r["beta"] for r in records] == [1.0, 0.0]
    assert [r["expert_acted_fraction"] for r in records] == [1.0, 0.0]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["dagger"]["labels"] == 800 and summary["steps"] == 50
    # the measurement episodes are the training loop's evaluation episodes
    assert records[-1]["return_mean"] == pytest.approx(summary["final_return"])

    policy = load_policy(out)
    assert policy.step == 50 and policy(np.zeros(3, np.float32)).shape == (1,)
    # the aggregated data: round 0's rows first, every label the deterministic expert's
    d0, d1 = (io.read_npz(out / "data" / f"dataset_0{i}.npz") for i in (0, 1))
    np.testing.assert_array_equal(d1.observations[: len(d0)], d0.observations)
    _, expert, _ = dagger.expert_policy("pendulum")
    np.testing.assert_allclose(d1.actions, expert(d1.observations, None), atol=1e-5)

    code, stdout, err = run_cli(capsys, "eval", str(out), "--episodes", "2")
    assert code == 0, err
    assert "step 50" in stdout
    # an existing run is kept unless --overwrite
    code, _, err = run_cli(
        capsys, "dagger", "pendulum", "--iterations", "1", *TINY, "--out", str(out)
    )
    assert_one_line_error(code, err, "--overwrite")


@pytest.mark.parametrize(
    ("argv", "fragments"),
    [
        (["hoper"], ["'hoper'", "pendulum"]),
        (["cartpole"], ["cartpole", "discrete"]),
        (["pendulum", "--iterations", "0"], ["--iterations"]),
        (["pendulum", "--beta-decay", "1.5"], ["--beta-decay", "[0, 1]"]),
        (["pendulum", "--beta-decay", "-0.1"], ["--beta-decay"]),
        (["pendulum", "--steps-per-iteration", "0"], ["--steps-per-iteration"]),
        (["pendulum", "--set", "hiden=8"], ["hiden"]),
        (["pendulum", "--iterations", "two"], ["--iterations"]),
    ],
)
def test_bad_input_is_one_line_exit_2_and_writes_nothing(argv, fragments, tmp_path, capsys):
    out = tmp_path / "run"
    code, _, err = run_cli(capsys, "dagger", *argv, "--out", str(out), "--no-progress")
    assert_one_line_error(code, err, *fragments)
    assert not out.exists()


def test_an_environment_without_a_committed_expert_is_refused(tmp_path, capsys, monkeypatch):
    # Every continuous recipe environment has a published expert now (ant's since
    # 2026-12-07), so the manifest is made to lack one.
    from offrl.recipes import agents

    full = agents.manifest()
    monkeypatch.setattr(agents, "manifest", lambda: {k: v for k, v in full.items() if k != "ant"})
    out = tmp_path / "run"
    code, _, err = run_cli(capsys, "dagger", "ant", "--out", str(out), "--no-progress")
    assert_one_line_error(code, err, "ant", "no committed expert")
    assert not out.exists()
