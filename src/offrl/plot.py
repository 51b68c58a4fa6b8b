"""curve.png: evaluation return and the main losses against training steps."""

from __future__ import annotations

import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from offrl.atomic import atomic_path  # noqa: E402

LOSS_KEYS = (
    "critic_loss", "q_loss", "value_loss", "actor_loss", "bc_loss", "cql_penalty", "q_mean"
)  # fmt: skip


def plot_curves(metrics_path: Path, out_path: Path, title: str = "") -> None:
    records = [json.loads(ln) for ln in Path(metrics_path).read_text().splitlines()]
    evals = [r for r in records if r["kind"] == "eval"]
    train = [r for r in records if r["kind"] == "train"]
    losses = [k for k in LOSS_KEYS if any(k in r for r in train)]
    fig, axes = plt.subplots(1, 1 + len(losses), figsize=(4.2 * (1 + len(losses)), 3.4))
    axes = list(axes) if len(losses) else [axes]
    keys = ("normalized_score", "return_mean", "estimate")
    score_key = next((k for k in keys if evals and evals[0].get(k) is not None), "return_mean")
    axes[0].plot([r["step"] for r in evals], [r.get(score_key) for r in evals], marker="o")
    titles = {"normalized_score": "normalized score", "estimate": "OPE estimate (held out)"}
    axes[0].set_title(titles.get(score_key, "return"))
    for ax, key in zip(axes[1:], losses):
        rows = [r for r in train if key in r]
        ax.plot([r["step"] for r in rows], [r[key] for r in rows])
        ax.set_title(key)
        if key != "q_mean" and all(r[key] > 0 for r in rows):
            ax.set_yscale("log")
    for ax in axes:
        ax.set_xlabel("updates")
        ax.grid(alpha=0.3)
    fig.suptitle(title)
    fig.tight_layout()
    with atomic_path(out_path) as tmp:
        fig.savefig(tmp, dpi=90, format="png")
    plt.close(fig)
