"""Paper-style score tables from a results directory: rows are datasets, columns are labels.

The run directories are the source of truth: a table is rebuilt from their summary.json /
failed.json at any time, so an interrupted or still-running sweep gives a partial table in
which every missing seed is counted, never silently dropped.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import re
from pathlib import Path
from typing import Any

import numpy as np

from offrl.atomic import atomic_write
from offrl.bench import FAILED_FILE, SWEEP_JSON
from offrl.errors import ConfigError
from offrl.training import METRICS_FILE, SUMMARY_FILE

DASH = "—"


@dataclasses.dataclass(frozen=True)
class RunRecord:
    """One seed's outcome. `status`: completed | diverged | failed | pending."""

    dataset: str
    label: str
    seed: int
    dir: Path
    status: str
    final: float | None = None
    best: float | None = None
    is_return: bool = False  # the env has no reference scores: final/best are returns
    error: str | None = None


@dataclasses.dataclass(frozen=True)
class Results:
    """Everything known about a sweep, in the order its tables show it."""

    root: Path
    name: str
    datasets: list[str]
    labels: list[str]
    runs: dict[tuple[str, str], list[RunRecord]]

    def cell(self, dataset: str, label: str) -> list[RunRecord]:
        return self.runs.get((dataset, label), [])

    def all_runs(self) -> list[RunRecord]:
        return [r for d in self.datasets for lab in self.labels for r in self.cell(d, lab)]


@dataclasses.dataclass(frozen=True)
class Cell:
    """Statistics over the completed seeds of one (dataset, label); `n` counts known seeds."""

    mean: float | None
    std: float | None
    k: int
    n: int
    failed: int
    diverged: int

    @property
    def text(self) -> str:
        if self.mean is None or self.std is None:
            return DASH
        out = f"{self.mean:.1f} ± {self.std:.1f}"
        if self.k < self.n:
            notes = [f"{self.k}/{self.n}"]
            notes += [f"{self.failed} failed"] if self.failed else []
            notes += [f"{self.diverged} diverged"] if self.diverged else []
            out += f" ({', '.join(notes)})"
        return out


@dataclasses.dataclass(frozen=True)
class Table:
    title: str
    labels: list[str]
    rows: list[tuple[str, list[Cell]]]
    average: list[float | None]  # per label: mean of the row means that exist


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read JSON ({exc})") from None


def read_evals(run_dir: Path) -> list[dict]:
    """The eval records of metrics.jsonl; a torn last line (run still writing) is skipped."""
    path = run_dir / METRICS_FILE
    if not path.exists():
        return []
    out = []
    for line in path.read_text().splitlines():
        try:
            rec = json.loads(line)
        except json.JSONDecodeError:
            continue
        if rec.get("kind") == "eval":
            out.append(rec)
    return out


def _record(dataset: str, label: str, seed: int, run_dir: Path) -> RunRecord:
    base = RunRecord(dataset, label, seed, run_dir, "pending")
    if (run_dir / SUMMARY_FILE).exists():
        s = _read_json(run_dir / SUMMARY_FILE)
        status = s.get("status", "completed")
        final, best = s.get("final_normalized_score"), s.get("best_normalized_score")
        if status != "completed":
            return dataclasses.replace(base, status=status)
        if final is not None:
            return dataclasses.replace(base, status=status, final=final, best=best)
        # No reference scores for this env: fall back to returns, the best one from the log.
        returns = [e["return_mean"] for e in read_evals(run_dir) if "return_mean" in e]
        final = s.get("final_return")
        best = max(returns, default=final)
        return dataclasses.replace(base, status=status, final=final, best=best, is_return=True)
    if (run_dir / FAILED_FILE).exists():
        error = str(_read_json(run_dir / FAILED_FILE).get("error", "")).strip()
        return dataclasses.replace(base, status="failed", error=error)
    return base


def collect(results_dir: Path) -> Results:
    """Read every run of a sweep, ordered as sweep.json says (else by sorted name)."""
    root = Path(results_dir)
    if not root.is_dir():
        raise ConfigError(f"{root}: results directory does not exist")
    keys: list[tuple[str, str, int, Path]] = []
    datasets: list[str] = []
    labels: list[str] = []
    name = root.resolve().name
    if (root / SWEEP_JSON).exists():
        sweep = _read_json(root / SWEEP_JSON)
        name = sweep.get("name") or name
        datasets, labels = list(sweep.get("datasets", [])), list(sweep.get("labels", []))
        for run in sweep.get("runs", []):
            keys.append((run["dataset"], run["label"], int(run["seed"]), root / run["dir"]))
    else:
        for path in root.glob("*/*/seed*"):
            match = re.fullmatch(r"seed(\d+)", path.name)
            if path.is_dir() and match:
                keys.append((path.parent.parent.name, path.parent.name, int(match[1]), path))
        datasets = sorted({k[0] for k in keys})
        labels = sorted({k[1] for k in keys})
    if not keys:
        raise ConfigError(f"{root}: no run directories (expected DATASET/LABEL/seedN/)")
    runs: dict[tuple[str, str], list[RunRecord]] = {}
    for dataset, label, seed, run_dir in keys:
        datasets += [] if dataset in datasets else [dataset]
        labels += [] if label in labels else [label]
        runs.setdefault((dataset, label), []).append(_record(dataset, label, seed, run_dir))
    for recs in runs.values():
        recs.sort(key=lambda r: r.seed)
    return Results(root, name, datasets, labels, runs)


def _cell(records: list[RunRecord], which: str) -> Cell:
    values = [
        getattr(r, which)
        for r in records
        if r.status == "completed" and getattr(r, which) is not None
    ]
    arr = np.asarray(values, float)
    count = lambda s: sum(r.status == s for r in records)  # noqa: E731
    mean, std = (float(arr.mean()), float(arr.std())) if arr.size else (None, None)
    return Cell(mean, std, len(values), len(records), count("failed"), count("diverged"))


def score_table(results: Results, which: str) -> Table:
    """`which`: "final" or "best" — the score at the end of training or the best evaluation."""
    rows = [
        (d, [_cell(results.cell(d, lab), which) for lab in results.labels])
        for d in results.datasets
    ]
    average = []
    for j in range(len(results.labels)):
        means = [cells[j].mean for _, cells in rows if cells[j].mean is not None]
        average.append(float(np.mean(means)) if means else None)
    seeds = {r.seed for r in results.all_runs()}
    by_return = [
        d
        for d in results.datasets
        if any(r.is_return for lab in results.labels for r in results.cell(d, lab))
    ]
    score = "return" if len(by_return) == len(results.datasets) else "normalized score"
    what = f"Final {score}" if which == "final" else f"Best {score} during training"
    title = f"{what}, mean ± std over {len(seeds)} seeds"
    if by_return and score != "return":
        title += f"; cells of {', '.join(by_return)} are returns (no reference scores)"
    elif by_return:
        title += " (cells are returns: no reference scores)"
    return Table(title, list(results.labels), rows, average)


def _fmt(x: float | None) -> str:
    return DASH if x is None else f"{x:.1f}"


def table_markdown(table: Table) -> str:
    lines = [
        "| dataset | " + " | ".join(table.labels) + " |",
        "|---|" + "---|" * len(table.labels),
        *(f"| {d} | " + " | ".join(c.text for c in cells) + " |" for d, cells in table.rows),
        "| average | " + " | ".join(_fmt(a) for a in table.average) + " |",
    ]
    return "\n".join(lines)


def markdown(results: Results) -> str:
    parts = [
        f"{t.title}\n\n{table_markdown(t)}"
        for t in (score_table(results, "final"), score_table(results, "best"))
    ]
    return "\n\n".join(parts) + "\n"


def table_csv(table: Table) -> str:
    """Full-precision numbers (rounded to 6 places) for plotting or further analysis."""
    num = lambda x: "" if x is None else str(round(x, 6))  # noqa: E731
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["dataset"] + [f"{lab}_{s}" for lab in table.labels for s in ("mean", "std", "n")])
    for dataset, cells in table.rows:
        w.writerow([dataset] + [v for c in cells for v in (num(c.mean), num(c.std), c.k)])
    w.writerow(["average"] + [v for a in table.average for v in (num(a), "", "")])
    return buf.getvalue()


def write_tables(results_dir: Path) -> str:
    """Write table.md, table_final.csv and table_best.csv into the results dir; return the md."""
    results = collect(results_dir)
    text = markdown(results)
    root = results.root
    atomic_write(root / "table.md", text.encode())
    for which in ("final", "best"):
        atomic_write(root / f"table_{which}.csv", table_csv(score_table(results, which)).encode())
    return text
