"""Issue 21, item 2: does standardizing MinAtar's binary grids hurt the discrete learners?

Up to commit 62c14cf `normalize_obs` standardized every observation column by
(x − mean) / (std + 1e-3). A MinAtar cell that is rarely lit in the data has a tiny std, so
when it lights up at evaluation it enters the network at about 1/std: 1000 for a cell never
lit in the data (p = 0), 91 at p = 1e-4, 9.9 at p = 1e-2. The references (Dopamine,
batch_rl, MinAtar's own DQN) feed raw inputs. This script trains BC, DQN and discrete CQL
on the MinAtar noisy-snapshot datasets with the columns as they are (`raw`:
normalize_obs=false) and with the algorithms' default (`default`: normalize_obs=true), with
the discrete table's settings (benchmarks/discrete_table.py: 64-64 MLPs, a target copy every
100 updates), and prints the final greedy returns, mean ± std over seeds.

`default` is the rule of the code that runs it; keep each rule's results in its own `--out`.
Three were measured (docs/datasets.md, "Binary observations"): plain standardization (commit
62c14cf), a binary column's std floored at 0.1 (commit 31522be), and the rule since then: a
column constant in the data (a cell never lit) only centred, every other column
standardized.

    python benchmarks/binary_inputs.py                      # 36 runs, 10k updates each
    python benchmarks/binary_inputs.py --only bc-default dqn-default cql-default --out DIR
    python benchmarks/binary_inputs.py --datasets space-invaders-noisy-snapshot
    python benchmarks/binary_inputs.py --no-run             # the table from the results
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from discrete_table import algos, final_returns, references
from experiments import common_args, markdown_table, mean_std, run, select

DATASETS = ("breakout-noisy-snapshot", "space-invaders-noisy-snapshot")
LABELS = ("bc", "dqn", "cql")
INPUTS = {"raw": {"normalize_obs": False}, "default": {}}


def spec_algos() -> list[dict]:
    base = {a["label"]: a for a in algos([64, 64]) if a["label"] in LABELS}
    return [
        {"algo": base[lab]["algo"], "label": f"{lab}-{inputs}", "set": base[lab]["set"] | extra}
        for lab in LABELS
        for inputs, extra in INPUTS.items()
    ]


def main(argv: list[str] | None = None) -> int:
    p = common_args(__doc__.splitlines()[0], "runs/exp/binary_inputs", 10_000, 3)
    p.add_argument("--datasets", nargs="+", default=list(DATASETS), choices=DATASETS)
    p.add_argument("--eval-episodes", type=int, default=10)
    args = p.parse_args(argv)
    spec = {
        "name": "binary-inputs",
        "algos": select(spec_algos(), args.only),
        "datasets": args.datasets,
        "seeds": args.seeds,
        "steps": args.steps,
        "eval_every": args.steps,
        "eval_episodes": args.eval_episodes,
        "chunk_size": 1000,
        "resources": {"num_cpus": 1},
    }
    results = run(spec, Path(args.out), args.num_cpus, execute=not args.no_run)
    if results is None:
        print(f"no results in {args.out}")
        return 1
    header = ["dataset", "data", "reference"]
    header += [f"{lab} {inputs}" for lab in LABELS for inputs in INPUTS]
    rows = []
    for d in args.datasets:
        ref = references(d)
        cells = [
            mean_std(final_returns(results, d, f"{lab}-{inputs}"))
            for lab in LABELS
            for inputs in INPUTS
        ]
        rows.append([d, f"{ref['data']:.1f}", f"{ref['reference']:.1f}", *cells])
    print(
        f"Final greedy return after {args.steps} updates ({args.eval_episodes} episodes), "
        f"mean ± std over {args.seeds} seeds\n"
    )
    print(markdown_table(header, rows))
    gaps = [
        np.mean(final_returns(results, d, f"{lab}-raw"))
        - np.mean(final_returns(results, d, f"{lab}-default"))
        for d in args.datasets
        for lab in LABELS
        if final_returns(results, d, f"{lab}-raw") and final_returns(results, d, f"{lab}-default")
    ]
    if gaps:
        print(f"\nraw − default, mean over cells: {np.mean(gaps):+.2f} (min {min(gaps):+.2f})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
