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

import offrl
from offrl.algos import parse_overrides
from offrl.atomic import atomic_write_json
from offrl.bench import SWEEP_JSON
from offrl.bench import tables as bench_tables

# Per-algorithm overrides used for the Pendulum tables, with the reason in docs/algos (the
# same as tests/test_learning.py's): IQL's β and AWAC's λ / CRR's β are temperatures in
# reward units; BRAC's reference α = 0.1 lets Q extrapolate on Pendulum; the VAEs are sized
# to the 3-dimensional task as `hidden` is; BEAR's warm start and BRAC's behaviour
# pretraining (20k and 300k updates in the references) are cut to a fifth of a 5k run.
PENDULUM_OVERRIDES = {
    "iql": {"beta": "0.3"},
    "bcq": {"vae_hidden": "64,64"},
    "bear": {"vae_hidden": "64,64", "warmstart_steps": "1000"},
    "brac": {"behavior_pretrain_steps": "1000", "warm_start_steps": "500", "alpha": "10"},
    "awac": {"lam": "10"},
    "crr": {"beta": "10"},
}


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


def tables(args) -> str:
    """The paper-style tables of offrl.bench (final and best score), over the runs asked for:
    the run directories are laid out as a sweep's, and sweep.json names which to count."""
    runs = [
        {"dataset": d, "label": a, "algo": a, "seed": s, "dir": f"{d}/{a}/seed{s}"}
        for d in args.datasets
        for a in args.algos
        for s in args.seeds
    ]
    sweep = {"name": "scores", "datasets": args.datasets, "labels": args.algos, "runs": runs}
    atomic_write_json(args.out / SWEEP_JSON, sweep)
    return bench_tables.markdown(bench_tables.collect(args.out))


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
    text = (
        f"{args.steps} updates, {args.eval_episodes} evaluation episodes every "
        f"{args.eval_every}; overrides: {args.set or 'none'}"
        f" (+ {PENDULUM_OVERRIDES} on Pendulum)\n\n" + tables(args)
    )
    print(text)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "scores.md").write_text(text + "\n")
    (args.out / "scores.json").write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
