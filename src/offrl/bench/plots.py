"""Learning curves of a sweep: one PNG per dataset, one line (mean ± std over seeds) per label.

Only completed runs are drawn: a pending or diverged run stops early and would cut every
seed's curve to its length, since seeds are aligned on the evaluation steps they share.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib
import numpy as np

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from offrl.atomic import atomic_path  # noqa: E402
from offrl.bench.tables import RunRecord, collect, read_evals  # noqa: E402

CURVES_DIR = "curves"


def _curve(records: list[RunRecord], key: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Steps shared by every seed, and the mean and std over seeds of `key` at those steps."""
    per_seed = [{e["step"]: e[key] for e in read_evals(r.dir) if key in e} for r in records]
    steps = sorted(set.intersection(*(set(s) for s in per_seed)))
    values = np.array([[s[t] for t in steps] for s in per_seed], float)
    return np.array(steps), values.mean(0), values.std(0)


def plot_learning_curves(results_dir: Path) -> list[Path]:
    """Write RESULTS/curves/DATASET.png for each dataset with a completed run; return the paths."""
    results = collect(results_dir)
    written = []
    for dataset in results.datasets:
        by_label = {
            lab: [r for r in results.cell(dataset, lab) if r.status == "completed"]
            for lab in results.labels
        }
        by_label = {lab: recs for lab, recs in by_label.items() if recs}
        evals = [e for recs in by_label.values() for r in recs for e in read_evals(r.dir)]
        if not evals:
            continue
        key = "normalized_score" if all("normalized_score" in e for e in evals) else "return_mean"
        fig, ax = plt.subplots(figsize=(5.5, 3.8))
        for label, recs in by_label.items():
            steps, mean, std = _curve(recs, key)
            if steps.size:
                line = ax.plot(steps, mean, label=f"{label} (n={len(recs)})")[0]
                ax.fill_between(steps, mean - std, mean + std, color=line.get_color(), alpha=0.2)
        ax.set_xlabel("updates")
        ax.set_ylabel("normalized score" if key == "normalized_score" else "return")
        ax.set_title(dataset)
        ax.grid(alpha=0.3)
        if ax.lines:
            ax.legend(fontsize="small")
        fig.tight_layout()
        out = results.root / CURVES_DIR / f"{dataset}.png"
        with atomic_path(out) as tmp:
            fig.savefig(tmp, dpi=90, format="png")
        plt.close(fig)
        written.append(out)
    return written
