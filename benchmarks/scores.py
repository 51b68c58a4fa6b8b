"""Learning quality: final normalized score, mean ± std over seeds, per dataset and algorithm.

    python benchmarks/scores.py --algos bc td3_bc iql cql \
        --datasets pendulum-medium pendulum-medium-expert --seeds 0 1 2 --steps 5000 \
        --set hidden=64,64 --out runs/scores

Each run is an ordinary `offrl.train` run directory under --out; a run whose summary.json
exists is reused, so an interrupted benchmark continues where it stopped. Prints a Markdown
table (rows: datasets, columns: algorithms) and writes it to OUT/scores.md and scores.json.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

import offrl
from offrl.training import parse_overrides

# Per-algorithm overrides used for the Pendulum tables, with the reason in docs/algos.
PENDULUM_OVERRIDES = {"iql": {"beta": "0.3"}}


def run_all(args) -> dict:
    common = parse_overrides(args.set)
    results: dict = {}
    for dataset in args.datasets:
        for algo in args.algos:
            for seed in args.seeds:
                out = args.out / dataset / algo / f"seed{seed}"
                summary_path = out / "summary.json"
                if summary_path.exists():
                    summary = json.loads(summary_path.read_text())
                else:
                    extra = PENDULUM_OVERRIDES.get(algo, {}) if "pendulum" in dataset else {}
                    started = time.perf_counter()
                    summary = offrl.train(
                        algo,
                        dataset,
                        steps=args.steps,
                        seed=seed,
                        out=out,
                        overrides=common | extra,
                        eval_every=args.eval_every,
                        eval_episodes=args.eval_episodes,
                        overwrite=True,
                        progress=False,
                    )
                    print(
                        f"{dataset} {algo} seed {seed}: "
                        f"{summary['final_normalized_score']:.1f} "
                        f"({time.perf_counter() - started:.0f} s)",
                        file=sys.stderr,
                    )
                results.setdefault(dataset, {}).setdefault(algo, []).append(summary)
    return results


def table(results: dict, algos: list[str], key: str) -> str:
    head = "| dataset | " + " | ".join(algos) + " |"
    rule = "|---|" + "---|" * len(algos)
    rows, per_algo = [], {a: [] for a in algos}
    for dataset, by_algo in results.items():
        cells = []
        for algo in algos:
            scores = np.array([s[key] for s in by_algo.get(algo, [])], float)
            per_algo[algo].append(scores.mean() if scores.size else np.nan)
            cells.append(f"{scores.mean():.1f} ± {scores.std():.1f}" if scores.size else "—")
        rows.append(f"| {dataset} | " + " | ".join(cells) + " |")
    avg = " | ".join(f"{np.nanmean(per_algo[a]):.1f}" for a in algos)
    return "\n".join([head, rule, *rows, f"| average | {avg} |"])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--algos", nargs="+", default=["bc", "td3_bc", "iql", "cql"])
    p.add_argument("--datasets", nargs="+", default=["pendulum-medium", "pendulum-medium-expert"])
    p.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    p.add_argument("--steps", type=int, default=5_000)
    p.add_argument("--eval-every", type=int, default=1_000)
    p.add_argument("--eval-episodes", type=int, default=10)
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    p.add_argument("--out", type=Path, default=Path("runs/scores"))
    args = p.parse_args()
    results = run_all(args)
    n = len(args.seeds)
    text = (
        f"Final normalized score, mean ± std over {n} seeds, {args.steps} updates, "
        f"{args.eval_episodes} evaluation episodes; overrides: {args.set or 'none'}"
        f" (+ {PENDULUM_OVERRIDES} on Pendulum)\n\n"
        + table(results, args.algos, "final_normalized_score")
        + "\n\nBest normalized score during training (evaluated every "
        + f"{args.eval_every} updates)\n\n"
        + table(results, args.algos, "best_normalized_score")
    )
    print(text)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "scores.md").write_text(text + "\n")
    (args.out / "scores.json").write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
