"""Experiment 1 of issue 4: bootstrapping error on small expert datasets.

Naive offline SAC against BEAR, BCQ, TD3+BC and CQL, trained on the first 10 and the first
100 episodes (10^4 and 10^5 transitions) of `halfcheetah-expert`. Prints, per algorithm and
size, the final normalized score and the final mean Q of the data actions next to what a Q
can be at most here (r_max / (1 - γ)) and what the data's own discounted returns average.
Writes a PNG: normalized return over training (top) and the mean Q on a symlog scale
(bottom), one column per dataset size.

Expected from the papers (BEAR, Kumar et al. 2019, Fig. 1; BCQ, Fujimoto et al. 2019):
the naive runs' Q-values grow far beyond any achievable return and their returns collapse,
while the constrained methods stay bounded and recover the data's performance.

    python benchmarks/bootstrapping_error.py                # ~1 h on a 2-core CPU
    python benchmarks/bootstrapping_error.py --no-run       # table + PNG from the results
"""

from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
from experiments import (
    FIGURES,
    band,
    common_args,
    last_values,
    markdown_table,
    mean_std,
    plot_band,
    records,
    run,
    save,
    select,
)

from offrl.data.io import write_npz
from offrl.recipes import load_dataset

SOURCE = "halfcheetah-expert"
EPISODES = {"10k": 10, "100k": 100}  # 1000-step episodes: 10^4 and 10^5 transitions
DISCOUNT = 0.99  # every algorithm's default γ
# One network size for every algorithm, so the comparison is of the algorithms: 64-64 keeps
# CQL's 30 sampled actions per state and BEAR's MMD samples affordable on a 2-core CPU. The
# behaviour VAEs of BCQ and BEAR (750-750 in their papers) are 128-128 for the same reason.
SMALL = {"hidden": [64, 64]}
VAE = {"vae_hidden": [128, 128]}
# BEAR's reference warm start (20k MMD-only actor updates of 1M) scaled to these budgets.
BEAR_WARMSTART = {"warmstart_steps": 1000}
ALGOS = [
    {"algo": "sac", "label": "sac", "set": SMALL},
    {"algo": "bear", "label": "bear", "set": SMALL | VAE | BEAR_WARMSTART},
    {"algo": "bcq", "label": "bcq", "set": SMALL | VAE},
    {"algo": "td3_bc", "label": "td3_bc", "set": SMALL},
    {"algo": "cql", "label": "cql", "set": SMALL},
]


def make_subsets(data_dir: Path) -> dict[str, Path]:
    """The first N episodes of the expert dataset, as .npz files (made once)."""
    paths = {size: data_dir / f"{SOURCE}-{size}.npz" for size in EPISODES}
    if all(p.exists() for p in paths.values()):
        return paths
    full = load_dataset(SOURCE)
    for size, episodes in EPISODES.items():
        end = int(full.episode_ends[episodes - 1]) + 1
        cut = {c: getattr(full, c)[:end] for c in ("observations", "actions", "rewards")}
        cut |= {c: getattr(full, c)[:end] for c in ("next_observations", "terminals")}
        subset = full.replace(**cut, timeouts=full.timeouts[:end], name=f"{SOURCE}-{size}")
        write_npz(subset, paths[size], overwrite=True)
    return paths


def q_references(path: Path) -> tuple[float, float]:
    """(the data's mean discounted return-to-go, r_max / (1 - γ)): what Q(s, a_data) should be
    under the behaviour policy, and the most any Q can be."""
    ds = load_dataset(path)
    return float(ds.returns_to_go(DISCOUNT).mean()), float(ds.rewards.max() / (1 - DISCOUNT))


def sweep_spec(name: str, algos: list[dict], paths, steps: int, seeds: int) -> dict:
    return {
        "name": name,
        "algos": algos,
        "datasets": [str(p.resolve()) for p in paths.values()],
        "seeds": seeds,
        "steps": steps,
        "eval_every": steps // 8,
        "eval_episodes": 5,
        "chunk_size": 500,
        "resources": {"num_cpus": 1},
    }


def main(argv: list[str] | None = None) -> int:
    parser = common_args(__doc__.splitlines()[0], "runs/exp/bootstrapping", 20_000, 3)
    parser.add_argument(
        "--long-steps", type=int, default=100_000, help="updates of the long naive-SAC runs"
    )
    args = parser.parse_args(argv)
    paths = make_subsets(args.out / "data")
    short = sweep_spec(
        "bootstrapping-error", select(ALGOS, args.only), paths, args.steps, args.seeds
    )
    # Naive SAC is cheap: it also runs 5x longer, to show where its Q-values go.
    long = sweep_spec("bootstrapping-error-long", ALGOS[:1], paths, args.long_steps, args.seeds)
    sweeps = {"": run(short, args.out, args.num_cpus, not args.no_run)}
    if not args.only or "sac" in args.only:
        sweeps[f", {args.long_steps // 1000}k updates"] = run(
            long, args.out / f"long-{args.long_steps // 1000}k", args.num_cpus, not args.no_run
        )
    sweeps = {k: v for k, v in sweeps.items() if v is not None}
    refs = {size: q_references(p) for size, p in paths.items()}
    rows = [
        row(results, path.stem, label, suffix, size, refs[size])
        for size, path in paths.items()
        for suffix, results in sweeps.items()
        for label in results.labels
    ]
    header = [
        "data",
        "algorithm",
        "seeds",
        "final normalized score",
        "final mean Q(s, a_data)",
        "Q / (r_max/(1-γ))",
        "data's mean discounted return",
        "r_max / (1-γ)",
    ]
    print(
        f"Bootstrapping error on {SOURCE}, {args.steps} updates unless said, mean ± std over seeds"
    )
    print()
    print(markdown_table(header, rows))
    figure = args.figure or FIGURES / "bootstrapping_error.png"
    print(f"\nfigure: {plot(sweeps, paths, refs, figure)}")
    return 0


def row(results, dataset: str, label: str, suffix: str, size: str, ref) -> list[str]:
    recs = records(results, dataset, label)
    finals = [r.final for r in recs if r.final is not None]
    diverged = sum(r.status == "diverged" for r in recs)
    q = last_values(recs, "train", "q_mean")
    rtg, bound = ref
    return [
        f"{size} transitions",
        label + suffix,
        f"{len(recs)}" + (f" ({diverged} NaN)" if diverged else ""),
        mean_std(finals),
        mean_std(q, 0),
        mean_std([v / bound for v in q], 2),
        f"{rtg:.0f}",
        f"{bound:.0f}",
    ]


def plot(sweeps: dict, paths: dict[str, Path], refs, figure: Path) -> Path:
    fig, axes = plt.subplots(2, len(paths), figsize=(5.5 * len(paths), 7.5), squeeze=False)
    for col, (size, path) in enumerate(paths.items()):
        top, bottom = axes[0, col], axes[1, col]
        for suffix, results in sweeps.items():
            for label in results.labels:
                recs = records(results, path.stem, label)
                style = {"ls": "--"} if suffix else {}
                name = f"{label}{suffix} (n={len(recs)})"
                plot_band(top, *band(recs, "eval", "normalized_score"), name, **style)
                plot_band(bottom, *band(recs, "train", "q_mean"), label + suffix, **style)
        rtg, bound = refs[size]
        bottom.axhline(bound, color="k", ls="--", lw=1, label="r_max / (1-γ)")
        bottom.axhline(rtg, color="k", ls=":", lw=1, label="data's discounted return")
        bottom.set_yscale("symlog", linthresh=100)
        top.set_title(f"{SOURCE}, first {size} transitions")
        top.set_ylabel("normalized score")
        bottom.set_ylabel("mean Q(s, a_data), symlog")
        for ax in (top, bottom):
            ax.set_xlabel("updates")
            ax.grid(alpha=0.3)
            ax.legend(fontsize="small")
    return save(fig, figure)


if __name__ == "__main__":
    raise SystemExit(main())
