"""Sweep tables, curves and report from hand-written run directories with known numbers."""

from __future__ import annotations

import csv
import html
import json
import re
from pathlib import Path

import pytest

from offrl.bench.plots import plot_learning_curves
from offrl.bench.report import write_report
from offrl.bench.tables import collect, markdown, score_table, write_tables
from offrl.errors import ConfigError

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
ERROR = "RuntimeError: boom <&> in the critic"


def write_run(root: Path, dataset: str, label: str, seed: int, outcome: str, **scores) -> Path:
    """outcome: completed | diverged | failed | pending; scores: final, best (or returns)."""
    run = root / dataset / label / f"seed{seed}"
    run.mkdir(parents=True)
    config = {
        "algo": label,
        "dataset": dataset,
        "seed": seed,
        "steps": 200,
        "algo_config": {"marker": f"cfg-{dataset}-{label}-{seed}"},
    }
    (run / "config.json").write_text(json.dumps(config, indent=2))
    returns = scores.get("returns")
    norm = [] if returns else [scores.get("best", 0.0) - 1, scores.get("final", 0.0)]
    evals = [
        {"step": 100 * (i + 1), "kind": "eval", "return_mean": r, "return_std": 1.0}
        for i, r in enumerate(returns or [-100.0, -50.0])
    ]
    for e, s in zip(evals, norm):
        e["normalized_score"] = s
    lines = [
        json.dumps({"step": e["step"], "kind": "train", "critic_loss": 1.0}) + "\n" + json.dumps(e)
        for e in evals
    ]
    if outcome == "pending":
        lines = lines[:1] + ['{"step": 200, "kind": "ev']  # a torn line, still being written
    (run / "metrics.jsonl").write_text("\n".join(lines) + "\n")
    base = {"algo": label, "dataset": dataset, "env_id": "X-v0", "steps": 200, "seed": seed}
    if outcome == "completed":
        if returns:
            final = {
                "final_return": returns[-1],
                "final_normalized_score": None,
                "best_normalized_score": None,
            }
        else:
            final = {
                "final_return": -50.0,
                "final_normalized_score": scores["final"],
                "best_normalized_score": scores["best"],
            }
        timing = {"wall_seconds": 10.0, "updates_per_second": 20.0}
        summary = base | {"status": "completed", **final, **timing}
        (run / "summary.json").write_text(json.dumps(summary))
    elif outcome == "diverged":
        (run / "summary.json").write_text(json.dumps(base | {"status": "diverged"}))
    elif outcome == "failed":
        failed = {"error": ERROR, "traceback": "Traceback (most recent call last):\n  ..."}
        (run / "failed.json").write_text(json.dumps(failed))
    return run


@pytest.fixture
def sweep(tmp_path: Path) -> Path:
    """2 datasets x 2 labels x 3 seeds; one failed, one diverged, one cell with nothing done."""
    root = tmp_path / "results"
    for seed, (final, best) in enumerate([(10, 15), (20, 25), (30, 35)]):
        write_run(root, "ds-b", "iql", seed, "completed", final=final, best=best)
    write_run(root, "ds-b", "bc", 0, "completed", final=50, best=52)
    write_run(root, "ds-b", "bc", 1, "completed", final=60, best=62)
    write_run(root, "ds-b", "bc", 2, "failed")
    write_run(root, "ds-a", "iql", 0, "completed", final=40, best=41)
    write_run(root, "ds-a", "iql", 1, "diverged")
    write_run(root, "ds-a", "iql", 2, "completed", final=44, best=47)
    write_run(root, "ds-a", "bc", 0, "pending")  # seeds 1 and 2 not started: no directory
    runs = [
        {
            "dataset": d,
            "label": lab,
            "algo": lab,
            "seed": s,
            "dir": f"{d}/{lab}/seed{s}",
            "overrides": {},
        }
        for d in ("ds-b", "ds-a")
        for lab in ("iql", "bc")
        for s in range(3)
    ]
    sweep = {"name": "demo", "datasets": ["ds-b", "ds-a"], "labels": ["iql", "bc"], "runs": runs}
    (root / "sweep.json").write_text(json.dumps(sweep))
    return root


def texts(table) -> list[list[str]]:
    return [[d, *(c.text for c in cells)] for d, cells in table.rows]


def test_cells_and_average_computed_by_hand(sweep):
    results = collect(sweep)
    assert (results.name, results.datasets, results.labels) == (
        "demo",
        ["ds-b", "ds-a"],
        ["iql", "bc"],
    )
    final, best = score_table(results, "final"), score_table(results, "best")
    assert texts(final) == [
        ["ds-b", "20.0 ± 8.2", "55.0 ± 5.0 (2/3, 1 failed)"],
        ["ds-a", "42.0 ± 2.0 (2/3, 1 diverged)", "—"],
    ]
    assert final.average == pytest.approx([31.0, 55.0])
    assert texts(best) == [
        ["ds-b", "25.0 ± 8.2", "57.0 ± 5.0 (2/3, 1 failed)"],
        ["ds-a", "44.0 ± 3.0 (2/3, 1 diverged)", "—"],
    ]
    assert best.average == pytest.approx([34.5, 57.0])
    assert final.title == "Final normalized score, mean ± std over 3 seeds"
    statuses = [r.status for r in results.cell("ds-a", "bc")]
    assert statuses == ["pending", "pending", "pending"]
    assert results.cell("ds-b", "bc")[2].error == ERROR


def test_markdown_and_csv_files(sweep):
    text = write_tables(sweep)
    assert (sweep / "table.md").read_text() == text
    assert "| dataset | iql | bc |" in text
    assert "| ds-a | 42.0 ± 2.0 (2/3, 1 diverged) | — |" in text
    assert "| average | 31.0 | 55.0 |" in text
    assert "| average | 34.5 | 57.0 |" in text
    assert "Best normalized score during training, mean ± std over 3 seeds" in text
    with open(sweep / "table_final.csv", newline="") as f:
        rows = list(csv.reader(f))
    assert rows == [
        ["dataset", "iql_mean", "iql_std", "iql_n", "bc_mean", "bc_std", "bc_n"],
        ["ds-b", "20.0", "8.164966", "3", "55.0", "5.0", "2"],
        ["ds-a", "42.0", "2.0", "2", "", "", "0"],
        ["average", "31.0", "", "", "55.0", "", ""],
    ]
    with open(sweep / "table_best.csv", newline="") as f:
        assert list(csv.reader(f))[-1] == ["average", "34.5", "", "", "57.0", "", ""]


def test_without_sweep_json_orders_by_name(sweep):
    (sweep / "sweep.json").unlink()
    results = collect(sweep)
    assert (results.datasets, results.labels) == (["ds-a", "ds-b"], ["bc", "iql"])
    assert results.name == "results"
    assert texts(score_table(results, "final")) == [
        ["ds-a", "—", "42.0 ± 2.0 (2/3, 1 diverged)"],
        ["ds-b", "55.0 ± 5.0 (2/3, 1 failed)", "20.0 ± 8.2"],
    ]
    assert [r.seed for r in results.cell("ds-a", "bc")] == [0]  # only the directory that exists


def test_returns_when_no_reference_scores(tmp_path):
    root = tmp_path / "r"
    write_run(root, "lw", "bc", 0, "completed", returns=[90.0, 120.0, 100.0])
    write_run(root, "lw", "bc", 1, "completed", returns=[105.0, 110.0])
    final, best = score_table(collect(root), "final"), score_table(collect(root), "best")
    assert texts(final) == [["lw", "105.0 ± 5.0"]]
    assert texts(best) == [["lw", "115.0 ± 5.0"]]
    assert "return" in final.title and "normalized" not in final.title
    assert "Final return" in markdown(collect(root))


def test_missing_or_empty_directory_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        collect(tmp_path / "nope")
    (tmp_path / "empty" / "junk").mkdir(parents=True)
    with pytest.raises(ConfigError, match="no run directories"):
        collect(tmp_path / "empty")


def test_curves_are_pngs(sweep):
    paths = plot_learning_curves(sweep)
    assert paths == [sweep / "curves" / "ds-b.png", sweep / "curves" / "ds-a.png"]
    for path in paths:
        assert path.read_bytes()[:8] == PNG_MAGIC


def test_report_is_self_contained(sweep):
    path = write_report(sweep)
    assert path == sweep / "report.html"
    page = path.read_text()
    assert page.count("data:image/png;base64,") == 2
    assert not re.search(r"""(src|href)\s*=\s*["']?https?://""", page)
    assert "http://" not in page and "https://" not in page
    assert "<h1>Sweep demo</h1>" in page
    assert "<td>55.0 ± 5.0 (2/3, 1 failed)</td>" in page
    assert html.escape(ERROR) in page and ERROR not in page
    assert ", 200 updates in 10 s (20 updates/s)" in page
    for run in collect(sweep).all_runs():
        if (run.dir / "config.json").exists():
            assert html.escape((run.dir / "config.json").read_text()) in page
    assert page.count("(no config.json yet)") == 2  # ds-a/bc seeds 1 and 2
