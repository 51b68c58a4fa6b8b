"""What the experiment scripts of issue 4 share: run a sweep spec, read curves, plot bands.

Each experiment (bootstrapping_error.py, data_composition.py, bcq_settings.py) writes its
spec as a YAML file, runs it with offrl's bench harness (Ray, resumable: finished runs are
skipped), then reads the run directories for its own table and figure.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import matplotlib
import numpy as np
import yaml

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from offrl.bench.sweep import run_sweep  # noqa: E402
from offrl.bench.tables import Results, RunRecord, collect  # noqa: E402
from offrl.training import METRICS_FILE  # noqa: E402

FIGURES = Path(__file__).parent / "figures"


def common_args(description: str, out: str, steps: int, seeds: int) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--out", type=Path, default=Path(out), help="results directory")
    p.add_argument("--steps", type=int, default=steps, help="updates per run")
    p.add_argument("--seeds", type=int, default=seeds)
    p.add_argument("--num-cpus", type=int, default=2, help="Ray CPUs (one run per CPU)")
    p.add_argument("--figure", type=Path, default=None, help="PNG path (default: figures/)")
    p.add_argument("--no-run", action="store_true", help="only read the results already there")
    p.add_argument("--only", nargs="+", metavar="LABEL", help="run only these algorithm labels")
    return p


def select(algos: list[dict], only: list[str] | None) -> list[dict]:
    """The spec's algorithm entries, or only those labelled in `only` (a partial sweep: the
    full one later skips what is done)."""
    if not only:
        return algos
    unknown = set(only) - {a["label"] for a in algos}
    if unknown:
        raise SystemExit(f"--only: unknown labels {sorted(unknown)}")
    return [a for a in algos if a["label"] in only]


def run(spec: dict[str, Any], out: Path, num_cpus: int, execute: bool = True) -> Results | None:
    """Write OUT/spec.yaml and run every unfinished run of it; return the collected results
    (None when only reading and nothing ran yet)."""
    if not execute:
        return collect(out / "results") if (out / "results").is_dir() else None
    out.mkdir(parents=True, exist_ok=True)
    spec_path = out / "spec.yaml"
    spec_path.write_text(yaml.safe_dump(spec, sort_keys=False))
    _, outcomes = run_sweep(spec_path, out / "results", num_cpus=num_cpus, progress=False)
    failed = [o for o in outcomes if o.status == "failed"]
    if failed:
        print(f"{len(failed)} runs failed: " + ", ".join(o.dir for o in failed))
    return collect(out / "results")


def records(results: Results, dataset: str, label: str) -> list[RunRecord]:
    """Seeds that have a summary (completed or diverged)."""
    return [r for r in results.cell(dataset, label) if r.status in ("completed", "diverged")]


def series(run_dir: Path, kind: str, key: str) -> dict[int, float]:
    """step -> value of `key` in the run's metrics.jsonl records of `kind` (train | eval)."""
    out = {}
    path = run_dir / METRICS_FILE
    for line in path.read_text().splitlines() if path.exists() else []:
        rec = json.loads(line)
        if rec.get("kind") == kind and key in rec:
            out[int(rec["step"])] = float(rec[key])
    return out


def band(recs: list[RunRecord], kind: str, key: str):
    """Steps every seed logged, with the mean and std over seeds of `key` there."""
    per_seed = [series(r.dir, kind, key) for r in recs]
    per_seed = [s for s in per_seed if s]
    if not per_seed:
        return np.zeros(0), np.zeros(0), np.zeros(0)
    steps = sorted(set.intersection(*(set(s) for s in per_seed)))
    values = np.array([[s[t] for t in steps] for s in per_seed], float)
    return np.array(steps), values.mean(0), values.std(0)


def last_values(recs: list[RunRecord], kind: str, key: str) -> list[float]:
    """Each seed's last logged value of `key`."""
    out = []
    for r in recs:
        s = series(r.dir, kind, key)
        if s:
            out.append(s[max(s)])
    return out


def mean_std(values: list[float], digits: int = 1) -> str:
    if not values:
        return "—"
    return f"{np.mean(values):.{digits}f} ± {np.std(values):.{digits}f}"


def plot_band(ax, steps, mean, std, label: str, **kw):
    if steps.size:
        line = ax.plot(steps, mean, label=label, **kw)[0]
        ax.fill_between(steps, mean - std, mean + std, color=line.get_color(), alpha=0.2)


def save(fig, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


def markdown_table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def grouped_bars(
    values: dict[tuple[str, str], list[float]],
    groups: list[str],
    labels: list[str],
    references: dict[str, float],
    reference_label: str,
    ylabel: str,
    figure: Path,
    width_inches: float = 11.0,
) -> Path:
    """A bar per (group, label): the mean of values[group, label] with its std over seeds as
    the error bar, and a black line per group at references[group]."""
    fig, ax = plt.subplots(figsize=(width_inches, 4.2))
    width, x = 0.8 / max(len(labels), 1), np.arange(len(groups))
    for i, lab in enumerate(labels):
        means = [np.mean(values[g, lab]) if values[g, lab] else np.nan for g in groups]
        stds = [np.std(values[g, lab]) if values[g, lab] else 0.0 for g in groups]
        ax.bar(x - 0.4 + (i + 0.5) * width, means, width, yerr=stds, label=lab, capsize=2)
    for i, g in enumerate(groups):
        label = reference_label if i == 0 else None
        ax.hlines(references[g], i - 0.45, i + 0.45, color="k", lw=2, label=label)
    ax.set_xticks(x, groups, rotation=15)
    ax.set_ylabel(ylabel)
    ax.axhline(0, color="grey", lw=0.5)
    ax.grid(axis="y", alpha=0.3)
    ax.legend(loc="center left", bbox_to_anchor=(1.0, 0.5), fontsize="small")
    return save(fig, figure)
