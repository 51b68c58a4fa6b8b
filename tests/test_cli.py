"""The command line: every bad input gives one line on stderr and exit status 2, no traceback."""

from __future__ import annotations

import json
import subprocess
import sys

import h5py
import numpy as np
import pytest
from helpers import random_dataset

from offrl import cli
from offrl.data import io


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
    assert "Traceback" not in err
    for fragment in fragments:
        assert fragment in lines[0], (fragment, lines[0])


def columns(n: int = 100) -> dict[str, np.ndarray]:
    ds = random_dataset(n=n, obs_dim=3, act_dim=1)
    return {c: getattr(ds, c) for c in io.COLUMNS}


def write_npz(path, **changes) -> str:
    cols = columns() | changes
    np.savez(path, **{k: v for k, v in cols.items() if v is not None})
    return str(path)


def write_h5(path, **changes) -> str:
    cols = columns() | changes
    with h5py.File(path, "w") as f:
        for key, value in cols.items():
            if value is not None:
                f[key] = value
    return str(path)


def train_args(dataset: str, out, *extra: str) -> list[str]:
    return [
        "train",
        "bc",
        "--dataset",
        dataset,
        "--steps",
        "10",
        "--out",
        str(out),
        "--env",
        "Pendulum-v1",
        "--no-progress",
        *extra,
    ]


BAD_DATASETS = {
    "missing key": (write_h5, {"rewards": None}, ["'rewards'", "missing"]),
    "NaN": (
        write_npz,
        {"rewards": np.where(np.arange(100) == 17, np.nan, 0.0)},
        ["'rewards'", "NaN", "17"],
    ),
    "inf in observations": (
        write_npz,
        {"observations": np.full((100, 3), np.inf)},
        ["'observations'"],
    ),
    "length mismatch": (write_npz, {"actions": np.zeros((99, 1), np.float32)}, ["'actions'"]),
    "wrong dimensionality": (
        write_h5,
        {"observations": np.zeros((100, 3, 1), np.float32)},
        ["'observations'"],
    ),
    "empty": (write_npz, {c: v[:0] for c, v in columns().items()}, ["empty"]),
    "bad flags": (write_npz, {"terminals": np.full(100, 3.0)}, ["'terminals'"]),
}


@pytest.mark.parametrize("case", BAD_DATASETS)
def test_bad_dataset_is_one_line_exit_2(case, tmp_path, capsys):
    writer, changes, fragments = BAD_DATASETS[case]
    path = writer(tmp_path / ("data.npz" if writer is write_npz else "data.hdf5"), **changes)
    code, _, err = run_cli(capsys, *train_args(path, tmp_path / "run"))
    assert_one_line_error(code, err, "data.", *fragments)
    code, _, err = run_cli(capsys, "data", "info", path)
    assert_one_line_error(code, err, *fragments)


def test_actions_outside_bounds_error_unless_clipping(tmp_path, capsys):
    acts = np.full((100, 1), 1.5, np.float32)
    path = write_npz(
        tmp_path / "d.npz", actions=acts, action_low=np.array([-1.0]), action_high=np.array([1.0])
    )
    code, _, err = run_cli(capsys, *train_args(path, tmp_path / "run"))
    assert_one_line_error(code, err, "'actions'")
    code, out, err = run_cli(
        capsys,
        *train_args(
            path, tmp_path / "run2", "--clip-actions", "--eval-episodes", "1", "--eval-every", "10"
        ),
    )
    assert code == 0, err


def test_episodes_of_length_one_are_legal(tmp_path, capsys):
    cols = columns(20)
    cols["timeouts"] = np.ones(20, bool)  # every transition is its own episode
    path = tmp_path / "ones.npz"
    np.savez(path, **cols)
    code, out, err = run_cli(capsys, "data", "info", str(path))
    assert code == 0, err
    assert "episodes" in out and " 20" in out


# fmt: off
TRAIN = ["train", "bc", "--dataset", "pendulum-expert", "--out", "x"]


@pytest.mark.parametrize(
    "argv, fragments",
    [
        (["train", "bc", "--dataset", "no/such/file.npz", "--steps", "5", "--out", "x"],
         ["no/such/file.npz", "dataset recipes are ENV-KIND"]),
        (["train", "nope", "--dataset", "pendulum-expert", "--steps", "5", "--out", "x"],
         ["invalid choice", "nope"]),
        (TRAIN, ["--steps"]),
        (TRAIN + ["--steps", "5", "--set", "alpah=1"], ["alpah", "valid: variant"]),
        (TRAIN + ["--steps", "5", "--set", "lr=fast"], ["'lr'", "float"]),
        (TRAIN + ["--steps", "5", "--set", "lr"], ["key=value"]),
        (TRAIN + ["--steps", "5", "--set", "variant=laplace"], ["variant"]),
        (TRAIN + ["--steps", "0"], ["positive"]),
        (["eval", "not/a/run"], ["not/a/run", "config.json"]),
        (["data", "info", "notes.txt"], ["notes.txt", "unrecognized dataset format"]),
    ],
)
# fmt: on
def test_bad_arguments_are_one_line_exit_2(argv, fragments, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "notes.txt").write_text("not a dataset")
    code, _, err = run_cli(capsys, *argv)
    assert_one_line_error(code, err, *fragments)


def test_dataset_without_env_trains_with_ope_and_bad_ope_options_are_one_line(tmp_path, capsys):
    path = write_h5(tmp_path / "d4rl.hdf5")
    base = ["train", "bc", "--dataset", path, "--steps", "5", "--eval-every", "5"]
    tiny = ["--set", "hidden=8,8", "--set", "batch_size=8"]
    tiny += [f"--ope-set={kv}" for kv in ("fqe_steps=50", "fqe_hidden=8,8", "num_bootstrap=10")]
    code, out, _ = run_cli(capsys, *base, *tiny, "--chunk-size", "5", "--out", str(tmp_path / "r"))
    assert code == 0 and "fqe estimate on held-out episodes" in out, out
    summary = json.loads((tmp_path / "r" / "summary.json").read_text())
    assert summary["final_return"] is None and np.isfinite(summary["ope"]["fqe"]["value"])
    code, _, err = run_cli(capsys, *base, "--ope", "fqe,magic", "--out", str(tmp_path / "r2"))
    assert_one_line_error(code, err, "unknown estimator", "magic")
    code, _, err = run_cli(capsys, *base, "--ope-set", "fqe_stepz=1", "--out", str(tmp_path / "r3"))
    assert_one_line_error(code, err, "fqe_stepz")
    code, _, err = run_cli(capsys, *train_args(path, tmp_path / "run2", "--env", "NoSuchEnv-v9"))
    assert_one_line_error(code, err, "NoSuchEnv-v9")


def test_non_empty_out_is_refused(tmp_path, capsys):
    out = tmp_path / "run"
    out.mkdir()
    (out / "precious.txt").write_text("keep me")
    code, _, err = run_cli(
        capsys, "train", "bc", "--dataset", "pendulum-expert", "--steps", "5", "--out", str(out)
    )
    assert_one_line_error(code, err, "not empty", "--resume", "--overwrite")
    assert (out / "precious.txt").read_text() == "keep me"


def test_corrupt_checkpoint_is_one_line(tmp_path, capsys):
    out = tmp_path / "run"
    code, _, err = run_cli(
        capsys,
        "train",
        "bc",
        "--dataset",
        "pendulum-expert",
        "--steps",
        "20",
        "--out",
        str(out),
        "--eval-every",
        "20",
        "--eval-episodes",
        "1",
        "--set",
        "hidden=8,8",
        "--no-progress",
    )
    assert code == 0, err
    (out / "checkpoint" / "state.msgpack").write_bytes(b"not msgpack")
    code, _, err = run_cli(capsys, "eval", str(out))
    assert_one_line_error(code, err, "state.msgpack")


def test_train_eval_and_data_info_end_to_end(tmp_path):
    """The installed entry point, in a subprocess, as a user runs it."""
    out = tmp_path / "run"
    cmd = [sys.executable, "-m", "offrl.cli"]
    done = subprocess.run(
        cmd
        + [
            "train",
            "bc",
            "--dataset",
            "pendulum-expert",
            "--steps",
            "200",
            "--out",
            str(out),
            "--eval-every",
            "100",
            "--eval-episodes",
            "2",
            "--set",
            "hidden=16,16",
            "--no-progress",
        ],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr
    assert "normalized score" in done.stdout and str(out) in done.stdout
    done = subprocess.run(
        cmd + ["eval", str(out), "--episodes", "2"], capture_output=True, text=True
    )
    assert done.returncode == 0 and "normalized score" in done.stdout, done.stderr
    done = subprocess.run(cmd + ["data", "info", "pendulum-expert"], capture_output=True, text=True)
    assert done.returncode == 0 and "transitions" in done.stdout and "50000" in done.stdout


def test_demo_never_replaces_an_earlier_run(tmp_path, capsys):
    out = tmp_path / "demo"
    argv = ["demo", "--out", str(out), "--steps", "20", "--eval-every", "20",
            "--eval-episodes", "1", "--no-progress"]
    assert run_cli(capsys, *argv)[0] == 0
    first = (out / "summary.json").read_text()
    code, stdout, err = run_cli(capsys, *argv)
    assert code == 0, err
    assert (out / "summary.json").read_text() == first
    assert (tmp_path / "demo-1" / "summary.json").exists() and "demo-1" in stdout


def test_resume_without_steps_continues_to_the_saved_total(tmp_path, capsys):
    out = tmp_path / "run"
    base = ["train", "bc", "--dataset", "pendulum-expert", "--out", str(out), "--eval-every",
            "20", "--eval-episodes", "1", "--set", "hidden=8,8", "--no-progress"]
    assert run_cli(capsys, *base, "--steps", "40")[0] == 0
    code, _, err = run_cli(capsys, *base, "--resume")
    assert code == 0, err
    assert json.loads((out / "summary.json").read_text())["steps"] == 40


def test_ope_command_prints_estimates_and_refuses_mismatched_data(tmp_path, capsys):
    data = write_npz(tmp_path / "log.npz")
    run = tmp_path / "run"
    code, _, _ = run_cli(capsys, *train_args(data, run, "--set", "hidden=8,8"))
    assert code == 0
    tiny = [f"--set={kv}" for kv in ("fqe_steps=50", "fqe_hidden=8,8", "num_bootstrap=10")]
    code, out, _ = run_cli(
        capsys, "ope", str(run), "--dataset", data, "--estimator", "fqe,wis", "--json", *tiny
    )
    assert code == 0
    results = json.loads(out)
    assert set(results) == {"fqe", "wis"}
    for est in results.values():
        assert est["ci"][0] <= est["value"] <= est["ci"][1] and est["discount"] == 0.99
    assert results["wis"]["behavior"] == "fitted"  # the file logs no behaviour log-probs
    wrong = str(write_npz(tmp_path / "wrong.npz", **columns_with_obs_dim(5)))
    code, _, err = run_cli(capsys, "ope", str(run), "--dataset", wrong, *tiny)
    assert code == 2 and len(err.strip().splitlines()) == 1, err


def columns_with_obs_dim(obs_dim: int) -> dict:
    ds = random_dataset(n=100, obs_dim=obs_dim, act_dim=1)
    return {"observations": ds.observations, "next_observations": ds.next_observations}


def test_parquet_log_with_no_environment_imports_and_trains_iql_off_policy(tmp_path, capsys):
    """A user's own log: steps as rows of a Parquet table, no environment named anywhere."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    rng = np.random.default_rng(0)
    n, episodes = 400, 8
    table = {f"obs_{i}": rng.normal(size=n) for i in range(11)}  # obs_10 after obs_9
    table |= {"act_0": rng.uniform(-1, 1, n), "act_1": rng.uniform(-1, 1, n)}
    table |= {"reward": rng.normal(size=n)}
    table |= {"episode": np.repeat(np.arange(episodes), n // episodes)}
    pq.write_table(pa.table(table), tmp_path / "log.parquet")
    data = tmp_path / "log"
    code, out, err = run_cli(
        capsys, "data", "import", str(tmp_path / "log.parquet"), "--obs", "obs_*",
        "--act", "act_0,act_1", "--reward", "reward", "--episode", "episode", "--out", str(data),
    )  # fmt: skip
    assert code == 0, err
    code, out, _ = run_cli(capsys, "data", "info", str(data), "--json")
    info = json.loads(out)
    assert code == 0 and info["env_id"] is None and info["obs_shape"] == [11]
    tiny = [f"--ope-set={kv}" for kv in ("fqe_steps=50", "fqe_hidden=8,8", "num_bootstrap=10")]
    code, out, err = run_cli(
        capsys, "train", "iql", "--dataset", str(data), "--steps", "10", "--eval-every", "10",
        "--chunk-size", "10", "--set", "hidden=8,8", "--out", str(tmp_path / "run"), *tiny,
    )  # fmt: skip
    assert code == 0, err
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["final_normalized_score"] is None and np.isfinite(summary["ope"]["fqe"]["value"])
    code, _, _ = run_cli(capsys, "data", "export", str(data), "--out", str(tmp_path / "back.csv"))
    header = (tmp_path / "back.csv").read_text().splitlines()[0].replace('"', "").split(",")
    assert code == 0 and header[:3] == ["obs_0", "obs_1", "obs_2"] and "obs_10" in header
