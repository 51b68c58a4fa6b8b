"""Sweep specs and the Ray sweep runner: parsing errors reported together, a 2x2x2 sweep
that completes, resumes without re-running and survives a failing run; seeds in one program."""

from __future__ import annotations

import json
from pathlib import Path

import jax
import numpy as np
import pytest
import yaml
from helpers import random_dataset

from offrl import cli, training
from offrl.bench.spec import SpecError, load_spec, parse_spec, plan
from offrl.bench.sweep import FAILED_FILE, SWEEP_JSON, run_sweep
from offrl.bench.tables import collect, write_tables
from offrl.checkpoint import load as load_checkpoint
from offrl.data import io

TINY = {"hidden": [16, 16], "batch_size": 16}


def write_spec(tmp_path: Path, **spec) -> Path:
    path = tmp_path / "spec.yaml"
    path.write_text(yaml.safe_dump(spec))
    return path


@pytest.fixture(scope="module")
def datasets(tmp_path_factory) -> list[str]:
    """Two small Pendulum-shaped datasets as files."""
    root = tmp_path_factory.mktemp("data")
    return [
        str(io.write_npz(random_dataset(300, 3, 1, seed=i), root / f"{name}.npz"))
        for i, name in enumerate(("alpha", "beta"))
    ]


def tiny_spec(datasets: list[str], **extra) -> dict:
    return {
        "name": "tiny",
        "algos": ["bc", {"algo": "td3_bc", "label": "td3_bc-a5", "set": {"alpha": 5}}],
        "datasets": datasets,
        "seeds": 2,
        "steps": 20,
        "eval_every": 10,
        "eval_episodes": 1,
        "chunk_size": 10,
        "set": TINY,
    } | extra


# --------------------------------------------------------------------------- spec


def test_spec_fields_defaults_and_plan(datasets):
    spec = parse_spec(tiny_spec(datasets, seeds=[3, 5]))
    assert [e.label for e in spec.algos] == ["bc", "td3_bc-a5"]
    assert spec.algos[1].overrides == {"hidden": "16,16", "batch_size": "16", "alpha": "5"}
    assert spec.seeds == (3, 5) and spec.resources == {"num_cpus": 1}
    tasks = plan(spec)
    assert len(tasks) == 8 and tasks[0].dirs == ("alpha/bc/seed3",)
    grouped = plan(parse_spec(tiny_spec(datasets, seeds_in_one_program=True)))
    assert len(grouped) == 4 and grouped[0].dirs == ("alpha/bc/seed0", "alpha/bc/seed1")
    assert parse_spec({"algos": ["bc"], "datasets": datasets, "steps": 1000}).eval_every == 100


def test_spec_problems_are_reported_together(datasets, tmp_path):
    raw = tiny_spec(
        datasets + ["no-such-dataset"],
        algos=[
            "nope",
            {"algo": "bc", "set": {"not_a_field": 1}},
            {"algo": "iql", "set": {"beta": "high"}},
        ],
        colour="blue",
        steps=-5,
    )
    with pytest.raises(SpecError) as err:
        parse_spec(raw, source="s.yaml")
    msg = str(err.value)
    assert msg.startswith("s.yaml: 6 problems: ")
    for fragment in (
        "unknown key 'colour'",
        "'steps' must be a positive integer",
        "unknown algorithm 'nope'",
        "not_a_field",
        "cannot read 'high' as float",
        "unknown dataset 'no-such-dataset'",
    ):
        assert fragment in msg
    assert "\n" not in msg


@pytest.mark.parametrize(
    "raw, fragment",
    [
        ("[1, 2", "not valid YAML at line"),
        ("- just\n- a list\n", "expected a mapping"),
        ("algos: [bc, bc]\ndatasets: [pendulum-medium]\nsteps: 10\n", "label 'bc' used twice"),
        ("algos: [bc]\ndatasets: [pendulum-medium]\nsteps: 10\nseeds: [1, 1]\n", "'seeds'"),
        ("algos: [bc]\ndatasets: [pendulum-medium]\nsteps: 10\nresources: {cpus: 1}\n", "cpus"),
    ],
)
def test_bad_specs_fail_in_the_cli_before_anything_runs(raw, fragment, tmp_path, capsys):
    spec = tmp_path / "bad.yaml"
    spec.write_text(raw)
    out = tmp_path / "results"
    assert cli.main(["bench", "run", str(spec), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("offrl: error: ") and fragment in err and err.count("\n") == 1
    assert not out.exists()


def test_missing_spec_file(tmp_path):
    with pytest.raises(SpecError, match="cannot read the spec"):
        load_spec(tmp_path / "absent.yaml")


# --------------------------------------------------------------------------- sweeps


def test_sweep_completes_resumes_and_survives_a_failing_run(datasets, tmp_path):
    spec = write_spec(tmp_path, **tiny_spec(datasets))
    out = tmp_path / "results"
    # The failing run: its directory holds another run's config (the spec was changed), so
    # it cannot be resumed as asked.
    bad = out / "beta/td3_bc-a5/seed1"
    bad.mkdir(parents=True)
    (bad / "config.json").write_text(json.dumps({"algo": "bc", "dataset": "elsewhere", "steps": 5}))
    _, outcomes = run_sweep(spec, out=out, progress=False)
    status = {o.dir: o.status for o in outcomes}
    assert len(status) == 8
    assert status.pop("beta/td3_bc-a5/seed1") == "failed"
    assert set(status.values()) == {"completed"}
    failed = json.loads((out / "beta/td3_bc-a5/seed1" / FAILED_FILE).read_text())
    assert (
        failed["error"].startswith("ConfigError: ")
        and "cannot resume it as td3_bc" in failed["error"]
    )
    assert "Traceback" in failed["traceback"]
    summary = out / "alpha/bc/seed0/summary.json"
    stamp = summary.stat().st_mtime_ns
    sweep = json.loads((out / SWEEP_JSON).read_text())
    assert sweep["labels"] == ["bc", "td3_bc-a5"] and sweep["datasets"] == ["alpha", "beta"]
    assert "(3/4, 1 failed)" not in write_tables(out)  # 2 seeds per cell
    assert "(1/2, 1 failed)" in write_tables(out)

    # Resumed: only the failed run runs again (now it can, and succeeds); the others are skipped.
    (bad / "config.json").unlink()
    _, again = run_sweep(spec, out=out, progress=False)
    status = {o.dir: o.status for o in again}
    assert status.pop("beta/td3_bc-a5/seed1") == "completed"
    assert set(status.values()) == {"skipped"}
    assert summary.stat().st_mtime_ns == stamp
    assert not (out / "beta/td3_bc-a5/seed1" / FAILED_FILE).exists()
    assert all(len(runs) == 2 for runs in collect(out).runs.values())

    # Nothing left: no Ray at all, everything skipped.
    _, third = run_sweep(spec, out=out, progress=False)
    assert {o.status for o in third} == {"skipped"}


def test_interrupted_run_resumes_from_its_checkpoint(datasets, tmp_path):
    spec = write_spec(tmp_path, **tiny_spec(datasets[:1], algos=["bc"], seeds=[0]))
    out = tmp_path / "results"
    run = out / "alpha/bc/seed0"
    # As if a sweep was killed after the step-10 checkpoint: config and checkpoint, no summary.
    training.train("bc", datasets[0], 10, out=run, overrides=TINY, eval_every=10,
                   eval_episodes=1, chunk_size=10, progress=False)  # fmt: skip
    config = json.loads((run / "config.json").read_text())
    (run / "config.json").write_text(json.dumps(config | {"steps": 20}))
    (run / "summary.json").unlink()
    _, outcomes = run_sweep(spec, out=out, progress=False)
    assert [o.status for o in outcomes] == ["completed"]
    steps = [json.loads(ln)["step"] for ln in (run / "metrics.jsonl").read_text().splitlines()]
    assert steps == [10, 10, 20, 20]  # train+eval at 10 (kept), then 20: no step done twice


def test_seeds_in_one_program_match_separate_runs(datasets, tmp_path):
    """vmap over seeds: each seed's run directory as `train` writes it, and the same
    parameters as the seed trained alone (up to float reassociation)."""
    kw = dict(overrides=TINY, eval_every=10, eval_episodes=1, chunk_size=10, progress=False)
    outs = [tmp_path / "g0", tmp_path / "g1"]
    summaries = training.train_seeds("td3_bc", datasets[0], 20, [0, 1], outs, **kw)
    assert [s["seed"] for s in summaries] == [0, 1]
    assert all(s["status"] == "completed" and s["steps"] == 20 for s in summaries)
    alone = training.train("td3_bc", datasets[0], 20, seed=1, out=tmp_path / "a1", **kw)
    assert alone["steps"] == 20
    template = (
        training._Trainer(  # a state of the right structure for loading
            *_prepared(datasets[0], tmp_path / "t", kw), False, None
        )
        .members[0]
        .state
    )
    grouped, _ = load_checkpoint(outs[1] / "checkpoint", template)
    single, _ = load_checkpoint(tmp_path / "a1" / "checkpoint", template)
    for a, b in zip(jax.tree_util.tree_leaves(grouped), jax.tree_util.tree_leaves(single)):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-4, atol=1e-5)
    seed0 = load_checkpoint(outs[0] / "checkpoint", template)[0]
    assert not np.allclose(
        np.asarray(jax.tree_util.tree_leaves(seed0.actor.params)[0]),
        np.asarray(jax.tree_util.tree_leaves(grouped.actor.params)[0]),
    )


def _prepared(dataset, out, kw):
    opts = training._Options(None, kw["eval_every"], kw["eval_episodes"], kw["chunk_size"],
                             False, False, False, 0.1, ("fqe",), {})  # fmt: skip
    runs, cfg, data, evaluator = training._prepare("td3_bc", dataset, 20, [0], [out], TINY, opts)
    return runs, cfg, data, evaluator, [out]


def test_grouped_sweep_writes_one_directory_per_seed(datasets, tmp_path):
    raw = tiny_spec(datasets[:1], algos=["bc"], seeds=3, seeds_in_one_program=True)
    _, outcomes = run_sweep(write_spec(tmp_path, **raw), out=tmp_path / "r",
                            progress=False)  # fmt: skip
    assert sorted(o.dir for o in outcomes) == [f"alpha/bc/seed{s}" for s in range(3)]
    assert {o.status for o in outcomes} == {"completed"}
