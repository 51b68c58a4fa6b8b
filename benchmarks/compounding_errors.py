"""Experiment 1 of the DAgger issue: compounding errors of BC against DAgger, by horizon.

For every horizon H (episodes cut at H steps, in the data and in the measurement), BC and
DAgger get the same number of expert labels: DAgger (offrl.dagger, β_i = I(i = 0), BC
retrained from scratch each round) runs N rounds of M episodes (M fixed, or with --labels
chosen per H so that every H has about the same label budget); BC trains once on expert
episodes from the same start states as DAgger's, cut to exactly DAgger's final label count.
Both learners are then measured alone, on their own state distribution, over the same
episodes as the deterministic expert:

    gap(H)      = expert return − learner return        (the regret, in return units)
    action MSE  = mean squared difference to the expert's action on the learner's states,
                  in normalized action units (what BC minimizes on the expert's states)

Expected (Ross & Bagnell 2010; Ross, Gordon & Bagnell 2011, Thm 3.2): BC's gap grows like
εH² (its errors carry it off the expert's distribution, where it errs more), DAgger's like
εH. The script fits log gap = k log H + c by least squares and reports the exponents k
(and the same slope for the action MSE: BC's rises with H, DAgger's stays flat).

    python benchmarks/compounding_errors.py                      # pendulum, ~10 min on 2 cores
    python benchmarks/compounding_errors.py --tasks hopper halfcheetah   # hours
    python benchmarks/compounding_errors.py --no-run             # table + PNG from results.json

Prints a Markdown table per task and the fitted exponents; writes OUT/results.json and
benchmarks/figures/compounding_errors.png. Networks are 64-64 for every task (`--hidden`).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import matplotlib
import numpy as np

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from offrl import dagger, training  # noqa: E402
from offrl.data import io  # noqa: E402
from offrl.evaluate import jax_policy  # noqa: E402
from offrl.policy import load_policy  # noqa: E402

FIGURE = Path(__file__).parent / "figures" / "compounding_errors.png"
# Per task: the horizons, DAgger's rounds N and episodes per round M, BC updates per fit.
TASKS = {
    "pendulum": {"horizons": [25, 50, 100, 200], "iterations": 5, "episodes": 4, "steps": 2000},
    "hopper": {
        "horizons": [50, 100, 200, 500, 1000],
        "iterations": 10,
        "episodes": 5,
        "steps": 20_000,
    },
    "halfcheetah": {
        "horizons": [50, 100, 200, 500, 1000],
        "iterations": 10,
        "episodes": 5,
        "steps": 20_000,
    },
}


def args_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--tasks", nargs="+", default=["pendulum"], choices=list(TASKS))
    p.add_argument("--seeds", type=int, default=2)
    p.add_argument("--horizons", type=int, nargs="+", help="default: per task")
    p.add_argument("--iterations", type=int, help="DAgger rounds N (default: per task)")
    p.add_argument("--episodes", type=int, help="episodes per round M (default: per task)")
    p.add_argument(
        "--labels",
        type=int,
        help="a fixed label budget at every H instead: M = max(1, labels // (N H)), so that ε "
        "does not shrink as H grows",
    )
    p.add_argument("--steps", type=int, help="BC updates per fit (default: per task)")
    p.add_argument("--eval-episodes", type=int, default=10)
    p.add_argument("--hidden", default="64,64", help="BC MLP widths")
    p.add_argument("--out", type=Path, default=Path("runs/compounding_errors"))
    p.add_argument("--figure", type=Path, default=FIGURE)
    p.add_argument("--no-run", action="store_true", help="only read OUT/results.json")
    return p


# --------------------------------------------------------------------------- one cell


def run_cell(task: str, horizon: int, seed: int, settings: dict, args, out: Path) -> dict:
    """DAgger and BC at one horizon and seed, with the same number of expert labels."""
    overrides = {"hidden": tuple(int(w) for w in args.hidden.split(","))}
    n, m, steps = settings["iterations"], settings["episodes"], settings["steps"]
    if args.labels is not None:
        m = max(1, args.labels // (n * horizon))
    summary = dagger.dagger(
        task,
        iterations=n,
        episodes_per_iteration=m,
        beta_decay=0.0,
        steps_per_iteration=steps,
        seed=seed,
        out=out / "dagger",
        overrides=overrides,
        eval_episodes=args.eval_episodes,
        horizon=horizon,
        overwrite=True,
    )
    d = summary["dagger"]
    labels = d["labels"]
    env_id, expert, _ = dagger.expert_policy(task, seed)
    seeds = [training.eval_seed(seed) + e for e in range(args.eval_episodes)]
    bc = fit_bc_on_expert_labels(task, env_id, expert, labels, n * m, seed, horizon, steps)
    bc_result = dagger.measure(env_id, expert, bc(out / "bc", overrides), seeds, 0.1, horizon)
    expert_return = d["expert_return_mean"]
    return {
        "task": task,
        "horizon": horizon,
        "seed": seed,
        "labels": labels,
        "expert_return": expert_return,
        "dagger_return": d["final_return_mean"],
        "bc_return": bc_result["return_mean"],
        "dagger_gap": expert_return - d["final_return_mean"],
        "bc_gap": expert_return - bc_result["return_mean"],
        "dagger_action_mse": d["final_action_mse"],
        "bc_action_mse": bc_result["action_mse"],
    }


def fit_bc_on_expert_labels(task, env_id, expert, labels, episodes, seed, horizon, steps):
    """Expert episodes from DAgger's start states (round 0's first; then more), the first
    `labels` rows kept; returns a function that trains BC on them into a run directory and
    gives back its deterministic policy."""
    from offrl import recipes

    rng = np.random.default_rng([seed, 0])
    while True:  # more episodes when the expert's end early (a terminal state)
        seeds = dagger.collection_seeds(seed, 0, episodes)  # round 0's seeds come first
        visits = dagger.labelled_rollouts(env_id, expert, None, 1.0, seeds, rng, horizon)
        if len(visits) >= labels:
            break
        episodes *= 2
    low, high = dagger.action_bounds(env_id)
    refs = recipes.references(task)
    data = dagger.labelled_dataset(
        visits, low, high, env_id=env_id, ref_min_score=refs["random"], ref_max_score=refs["expert"]
    )
    data = data.subset(np.arange(labels))

    def train(run_dir: Path, overrides: dict):
        run_dir.mkdir(parents=True, exist_ok=True)
        path = io.write_npz(data, run_dir.parent / "bc_data.npz", overwrite=True)
        training.train(
            "bc",
            path,
            steps=steps,
            seed=seed,
            out=run_dir,
            overrides=overrides,
            eval_every=steps,
            eval_episodes=2,
            chunk_size=min(1000, steps),
            overwrite=True,
            progress=False,
        )
        policy = load_policy(run_dir)
        return jax_policy(policy.algo, policy.cfg, policy.state)

    return train


# --------------------------------------------------------------------------- analysis


def slope(horizons, values) -> tuple[float, int]:
    """Least-squares slope of log value against log H over the positive values; and how
    many points it used."""
    h, v = np.asarray(horizons, float), np.asarray(values, float)
    keep = v > 0
    if keep.sum() < 2:
        return float("nan"), int(keep.sum())
    return float(np.polyfit(np.log(h[keep]), np.log(v[keep]), 1)[0]), int(keep.sum())


def aggregate(rows: list[dict], task: str) -> list[dict]:
    """Mean over seeds per horizon."""
    out = []
    for h in sorted({r["horizon"] for r in rows if r["task"] == task}):
        cell = [r for r in rows if r["task"] == task and r["horizon"] == h]
        keys = [k for k in cell[0] if k not in ("task", "horizon", "seed")]
        mean = {k: float(np.mean([r[k] for r in cell])) for k in keys}
        std = {f"{k}_std": float(np.std([r[k] for r in cell])) for k in keys}
        out.append({"horizon": h, "seeds": len(cell)} | mean | std)
    return out


def report(rows: list[dict], tasks: list[str]) -> str:
    lines = []
    for task in tasks:
        cells = aggregate(rows, task)
        if not cells:
            continue
        lines.append(f"\n### {task} ({cells[0]['seeds']} seeds; mean ± std)\n")
        head = ["H", "labels", "expert", "BC return", "DAgger return", "BC gap", "DAgger gap"]
        head += ["BC act-MSE", "DAgger act-MSE"]
        lines.append("| " + " | ".join(head) + " |")
        lines.append("|" + "---|" * len(head))
        for c in cells:
            pm = lambda k, f=".1f", c=c: f"{c[k]:{f}} ± {c[k + '_std']:{f}}"  # noqa: E731
            lines.append(
                f"| {c['horizon']} | {c['labels']:.0f} | {c['expert_return']:.1f} | "
                f"{pm('bc_return')} | {pm('dagger_return')} | {pm('bc_gap')} | "
                f"{pm('dagger_gap')} | {pm('bc_action_mse', '.3g')} | "
                f"{pm('dagger_action_mse', '.3g')} |"
            )
        hs = [c["horizon"] for c in cells]
        lines.append("")
        for what in ("gap", "action_mse"):
            bc, n_bc = slope(hs, [c[f"bc_{what}"] for c in cells])
            dg, n_dg = slope(hs, [c[f"dagger_{what}"] for c in cells])
            expected = "(expected 2 and 1)" if what == "gap" else "(expected ~1 and ~0)"
            lines.append(
                f"log-log slope of {what} vs H: BC {bc:.2f} ({n_bc} points), "
                f"DAgger {dg:.2f} ({n_dg} points) {expected}"
            )
    return "\n".join(lines)


def plot(rows: list[dict], tasks: list[str], path: Path) -> Path:
    tasks = [t for t in tasks if aggregate(rows, t)]
    fig, axes = plt.subplots(len(tasks), 2, figsize=(9, 3.4 * len(tasks)), squeeze=False)
    for ax_row, task in zip(axes, tasks):
        cells = aggregate(rows, task)
        hs = np.array([c["horizon"] for c in cells], float)
        for ax, what, title in zip(
            ax_row, ("gap", "action_mse"), ("return gap to the expert", "action MSE, own states")
        ):
            for name, color in (("bc", "C0"), ("dagger", "C1")):
                v = np.array([c[f"{name}_{what}"] for c in cells])
                k, _ = slope(hs, v)
                keep = v > 0
                ax.plot(hs[keep], v[keep], "o-", color=color, label=f"{name} (slope {k:.2f})")
            ax.set_xscale("log")
            ax.set_yscale("log")
            ax.set_xlabel("horizon H")
            ax.set_title(f"{task}: {title}")
            ax.grid(alpha=0.3, which="both")
            ax.legend()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


def main() -> None:
    args = args_parser().parse_args()
    results = args.out / "results.json"
    rows = json.loads(results.read_text()) if results.exists() else []
    if not args.no_run:
        rows = [r for r in rows if r["task"] not in args.tasks]
        for task in args.tasks:
            settings = dict(TASKS[task])
            for key in ("iterations", "episodes", "steps"):
                if getattr(args, key) is not None:
                    settings[key] = getattr(args, key)
            for horizon in args.horizons or settings["horizons"]:
                for seed in range(args.seeds):
                    started = time.perf_counter()
                    cell_dir = args.out / task / f"H{horizon}" / f"seed{seed}"
                    rows.append(run_cell(task, horizon, seed, settings, args, cell_dir))
                    r = rows[-1]
                    print(
                        f"{task} H={horizon} seed {seed}: {r['labels']} labels, gap BC "
                        f"{r['bc_gap']:.1f} DAgger {r['dagger_gap']:.1f} "
                        f"({time.perf_counter() - started:.0f} s)",
                        flush=True,
                    )
                    args.out.mkdir(parents=True, exist_ok=True)
                    results.write_text(json.dumps(rows, indent=1))
    print(report(rows, args.tasks))
    print(f"\nfigure: {plot(rows, args.tasks, args.figure)}; results: {results}")


if __name__ == "__main__":
    main()
