"""Experiment 2 of issue 4: how the data's composition decides which methods work.

BC, BCQ, BEAR, naive SAC, TD3+BC and CQL on the random, medium and expert datasets of hopper
and halfcheetah. Prints the final normalized score (mean ± std over seeds) next to the
dataset's own average (normalized) return, marks with * the cells above it, and says which
methods exceed the data on random and on expert data. Writes a grouped bar chart.

The BEAR paper's claim (Kumar et al. 2019, Sec. 6): BC and BCQ, which stay close to the
data's distribution, do well on expert data and badly on random data; naive off-policy RL
fails on expert data (too little action coverage to estimate Q off the data); a support
constraint (BEAR) does well on both.

    python benchmarks/data_composition.py                  # ~45 min on a 2-core CPU
    python benchmarks/data_composition.py --no-run         # table + PNG from the results
"""

from __future__ import annotations

import numpy as np
from experiments import (
    FIGURES,
    common_args,
    grouped_bars,
    markdown_table,
    mean_std,
    records,
    run,
    select,
)

from offrl import recipes

DATASETS = [
    f"{env}-{kind}" for env in ("hopper", "halfcheetah") for kind in ("random", "medium", "expert")
]
# One network size for every algorithm (see bootstrapping_error.py for why 64-64 here).
SMALL = {"hidden": [64, 64]}
VAE = {"vae_hidden": [128, 128]}
# BEAR's reference warm start (20k MMD-only actor updates of 1M) scaled to these budgets.
BEAR_WARMSTART = {"warmstart_steps": 1000}
ALGOS = [
    {"algo": "bc", "label": "bc", "set": SMALL},
    {"algo": "bcq", "label": "bcq", "set": SMALL | VAE},
    {"algo": "bear", "label": "bear", "set": SMALL | VAE | BEAR_WARMSTART},
    {"algo": "sac", "label": "sac", "set": SMALL},
    {"algo": "td3_bc", "label": "td3_bc", "set": SMALL},
    {"algo": "cql", "label": "cql", "set": SMALL},
]


def data_score(name: str) -> float:
    """The dataset's own average normalized episode return."""
    return float(recipes.describe(name)["normalized_return_mean"])


def main(argv: list[str] | None = None) -> int:
    args = common_args(__doc__.splitlines()[0], "runs/exp/composition", 10_000, 3).parse_args(argv)
    spec = {
        "name": "data-composition",
        "algos": select(ALGOS, args.only),
        "datasets": DATASETS,
        "seeds": args.seeds,
        "steps": args.steps,
        "eval_every": args.steps // 4,
        "eval_episodes": 5,
        "chunk_size": 500,
        "resources": {"num_cpus": 1},
    }
    results = run(spec, args.out, args.num_cpus, execute=not args.no_run)
    finals = {
        (d, lab): [r.final for r in records(results, d, lab) if r.final is not None]
        for d in DATASETS
        for lab in results.labels
    }
    rows = []
    for d in DATASETS:
        ref = data_score(d)
        cells = []
        for lab in results.labels:
            values = finals[d, lab]
            above = bool(values) and np.mean(values) > ref
            cells.append(mean_std(values) + (" *" if above else ""))
        rows.append([d, f"{ref:.1f}", *cells])
    print(
        f"Final normalized score after {args.steps} updates, mean ± std over seeds "
        "(* above the data's average return)\n"
    )
    print(markdown_table(["dataset", "data", *results.labels], rows))
    for kind in ("random", "medium", "expert"):
        winners = [
            lab
            for lab in results.labels
            if all(
                finals[d, lab] and np.mean(finals[d, lab]) > data_score(d)
                for d in DATASETS
                if d.endswith(f"-{kind}")
            )
        ]
        print(f"\nabove the data on every {kind} dataset: {', '.join(winners) or 'none'}")
    figure = args.figure or FIGURES / "data_composition.png"
    print(f"\nfigure: {plot(results, finals, figure)}")
    return 0


def plot(results, finals, figure):
    refs = {d: data_score(d) for d in DATASETS}
    return grouped_bars(
        finals, DATASETS, results.labels, refs, "data", "final normalized score", figure
    )


if __name__ == "__main__":
    raise SystemExit(main())
