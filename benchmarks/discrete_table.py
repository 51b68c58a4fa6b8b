"""Experiment 3 of issue 5: the discrete benchmark table.

BC, DQN, Double DQN, QR-DQN, REM, discrete BCQ and discrete CQL (and offrl's other discrete
algorithms: Ensemble-DQN, SPIBB, FQI) trained offline on the
noisy-snapshot and replay datasets of CartPole, Acrobot and LunarLander (`--suite minatar`:
MinAtar Breakout and Space Invaders). Prints the final return (mean ± std over seeds, greedy
policy) next to two references per dataset:

- noisy-snapshot: the noise-free behaviour policy (the snapshot at ε = 0.001), the comparison
  of Fujimoto, Conti, Ghavamzadeh & Pineau (2019), "Benchmarking Batch Deep RL Algorithms in
  the Discrete Setting": which methods exceed the behavioural policy without its noise;
- replay: the best policy of the online DQN run that logged the data, the comparison of
  Agarwal, Schuurmans & Norouzi (2020), "An Optimistic Perspective on Offline RL": which
  methods match or exceed the online agent trained on the same transitions.

Cells marked * exceed the reference. Writes a grouped bar chart (returns normalized from
random = 0 to expert = 100, so the tasks share an axis).

One setting for every algorithm and task (no per-task tuning): 64-64 MLPs (also on MinAtar's
400- and 600-input grids), batch 64, Adam 3e-4, γ = 0.99, 20k updates, targets copied every
100 updates;
QR-DQN and the QR head of discrete CQL use 50 quantiles instead of the Atari 200
(sb3-contrib's QR-DQN default, chosen when 200 cost 40 ms per update; since the blocked loss
of docs/algos/qrdqn.md, 200 costs 4 ms at batch 256). BC is trained on all the data.

    python benchmarks/discrete_table.py                   # CartPole, Acrobot, LunarLander
    python benchmarks/discrete_table.py --suite minatar   # Breakout, Space Invaders
    python benchmarks/discrete_table.py --no-run          # table + PNG from the results
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from experiments import (
    FIGURES,
    common_args,
    grouped_bars,
    last_values,
    markdown_table,
    mean_std,
    records,
    run,
    select,
)

from offrl import recipes
from offrl.envs.registry import normalized_score
from offrl.recipes.discrete import DQN
from offrl.training import SUMMARY_FILE

KINDS = ("noisy-snapshot", "replay")
SUITES = {  # tasks, network widths, default results directory
    "classic": (("cartpole", "acrobot", "lunarlander"), [64, 64], "runs/exp/discrete_table"),
    # 64-64 too: the behaviour agents' 256-256 trained BC at 194 updates/s on Breakout's
    # 400 inputs (2-core CPU, loaded), several hours for the suite.
    "minatar": (("breakout", "space-invaders"), [64, 64], "runs/exp/discrete_table_minatar"),
}
QUANTILES = {"num_quantiles": 50}


def datasets_of(suite: str) -> list[str]:
    return [f"{task}-{kind}" for task in SUITES[suite][0] for kind in KINDS]


def algos(hidden: list[int]) -> list[dict]:
    net = {"hidden": hidden}
    # A target copy every 1000 updates (the algorithms' Atari-derived default) gives only 20
    # backups in 20k updates: too few to carry values across episodes hundreds of steps
    # long. 100 is the behaviour agents' (Dopamine's CartPole/Acrobot setting).
    q = net | {"target_update_period": 100}
    return [
        {"algo": "bc_discrete", "label": "bc", "set": net},
        {"algo": "dqn", "label": "dqn", "set": q},
        {"algo": "ddqn", "label": "ddqn", "set": q},
        {"algo": "qrdqn", "label": "qrdqn", "set": q | QUANTILES},
        {"algo": "rem", "label": "rem", "set": q},
        {"algo": "bcq_discrete", "label": "bcq", "set": q},
        {"algo": "cql_discrete", "label": "cql", "set": q},
        {"algo": "cql_discrete", "label": "cql_qr", "set": q | QUANTILES | {"head": "qr"}},
        # offrl's other discrete algorithms, beyond the seven. FQI keeps its own
        # schedule: a fresh fit per iterate, 2000 updates each (10 iterates in 20k).
        {"algo": "ensemble_dqn", "label": "ensemble", "set": q},
        {"algo": "spibb", "label": "spibb", "set": q},
        {"algo": "fqi", "label": "fqi", "set": net},
    ]


def references(dataset: str) -> dict[str, float]:
    """The dataset's own mean return, the reference policy's return (see the module
    docstring) and the task's random and expert returns (for the normalized chart)."""
    env, kind = recipes.split_name(dataset)
    task = env.slug
    snapshots = recipes.manifest()[task]["agents"][DQN]["snapshots"]
    reference = snapshots["noisy-snapshot" if kind == "noisy-snapshot" else "expert"]
    random, expert = recipes.reference_returns(task)
    return {
        "data": float(recipes.describe(dataset)["return_mean"]),
        "reference": float(reference["return"]["mean"]),
        "random": random,
        "expert": expert,
    }


def final_returns(results, dataset: str, label: str) -> list[float]:
    """Each finished seed's return at its last evaluation."""
    summaries = [
        json.loads((r.dir / SUMMARY_FILE).read_text()) for r in records(results, dataset, label)
    ]
    return [float(s["final_return"]) for s in summaries]


def final_q(results, dataset: str, label: str) -> list[float]:
    """Each seed's mean Q(s, a) over its last training minibatches (the `q_mean` metric)."""
    values = [last_values([r], "train", "q_mean") for r in records(results, dataset, label)]
    return [v[0] for v in values if v]


def data_return_to_go(dataset: str, discount: float = 0.99) -> float:
    """The data's mean discounted return-to-go over its transitions: where a Q-learner's
    Q(s, a) on the data should be, give or take the policy improvement."""
    ds = recipes.load(dataset)
    to_go = np.zeros(len(ds))
    for start, end in zip(ds.episode_starts, ds.episode_ends):
        running = 0.0
        for t in range(end, start - 1, -1):
            running = ds.rewards[t] + discount * running
            to_go[t] = running
    return float(to_go.mean())


def main(argv: list[str] | None = None) -> int:
    parser = common_args(__doc__.splitlines()[0], "", 20_000, 3)
    parser.add_argument("--suite", choices=SUITES, default="classic")
    parser.add_argument("--datasets", nargs="+", help="a part of the suite's datasets")
    parser.add_argument("--evals", type=int, default=10, help="evaluations per run")
    parser.add_argument("--eval-episodes", type=int, default=10)
    args = parser.parse_args(argv)
    _, hidden, out = SUITES[args.suite]
    args.out = args.out if str(args.out) not in ("", ".") else Path(out)
    args.datasets = args.datasets or datasets_of(args.suite)
    unknown = set(args.datasets) - set(datasets_of(args.suite))
    if unknown:
        raise SystemExit(f"--datasets: not in the {args.suite} suite: {sorted(unknown)}")
    spec = {
        "name": "discrete-table" + ("" if args.suite == "classic" else f"-{args.suite}"),
        "algos": select(algos(hidden), args.only),
        "datasets": args.datasets,
        "seeds": args.seeds,
        "steps": args.steps,
        "eval_every": args.steps // args.evals,
        "eval_episodes": args.eval_episodes,
        "chunk_size": 1000,
        "resources": {"num_cpus": 1},
    }
    results = run(spec, args.out, args.num_cpus, execute=not args.no_run)
    refs = {d: references(d) for d in args.datasets}
    finals = {
        (d, lab): final_returns(results, d, lab) for d in args.datasets for lab in results.labels
    }
    print(
        f"Final return after {args.steps} updates (greedy, {args.eval_episodes} episodes), "
        "mean ± std over "
        "seeds; * above the reference (noisy-snapshot: the noise-free behaviour policy; "
        "replay: the online DQN's best policy)\n"
    )
    rows = []
    for d in args.datasets:
        ref = refs[d]["reference"]
        cells = []
        for lab in results.labels:
            values = finals[d, lab]
            cells.append(mean_std(values) + (" *" if values and np.mean(values) > ref else ""))
        rows.append([d, f"{refs[d]['data']:.1f}", f"{ref:.1f}", *cells])
    print(markdown_table(["dataset", "data", "reference", *results.labels], rows))
    print(
        "\nQ(s, a) on the training minibatches at the end of training, mean ± std over seeds, "
        "against the data's mean discounted return-to-go (γ = 0.99): far above it, Q diverged\n"
    )
    q_rows = [
        [d, f"{data_return_to_go(d):.1f}"]
        + [mean_std(final_q(results, d, lab)) for lab in results.labels if lab != "bc"]
        for d in args.datasets
    ]
    q_labels = [lab for lab in results.labels if lab != "bc"]
    print(markdown_table(["dataset", "data return-to-go", *q_labels], q_rows))
    for kind in KINDS:
        of_kind = [d for d in args.datasets if d.endswith(kind)]
        winners = [
            lab
            for lab in results.labels
            if of_kind
            and all(
                finals[d, lab] and np.mean(finals[d, lab]) > refs[d]["reference"] for d in of_kind
            )
        ]
        print(f"\nabove the reference on every {kind} dataset: {', '.join(winners) or 'none'}")
    figure = args.figure or FIGURES / f"discrete_table_{args.suite}.png"
    print(f"\nfigure: {plot(args.datasets, results.labels, finals, refs, figure)}")
    return 0


def plot(datasets, labels, finals, refs, figure):
    def norm(d: str, value: float) -> float:
        return normalized_score(value, refs[d]["random"], refs[d]["expert"])

    scores = {key: [norm(key[0], v) for v in values] for key, values in finals.items()}
    reference = {d: norm(d, refs[d]["reference"]) for d in datasets}
    ylabel = "final return, normalized (random 0, expert 100)"
    return grouped_bars(scores, datasets, labels, reference, "reference", ylabel, figure, 12.0)


if __name__ == "__main__":
    raise SystemExit(main())
