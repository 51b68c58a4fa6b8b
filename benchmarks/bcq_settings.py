"""Experiment 3 of issue 4: the batch settings of the BCQ paper on HalfCheetah.

BCQ against offline DDPG and BC on the four datasets of Fujimoto et al. (2019), Sec. 5:
- final-buffer: every transition a DDPG agent saw while training with N(0, 0.5²) noise;
- concurrent: the replay of a DDPG agent (N(0, 0.1²) noise) trained at the same time;
- imitation: the trained DDPG policy, no noise;
- imperfect: the same policy with N(0, 0.3²) noise and a uniform action 30% of the time.
The behavioural return is that of the noise-free behaviour policy (the paper's "Behavioral"
line): the final DDPG agent of the noise-0.5 run for final-buffer, that of the noise-0.1 run
for the other three. The table also gives the data's own average return.

The paper's result (its Fig. 2): BCQ matches or beats the behavioural policy in all four
settings; offline DDPG fails everywhere, even on the imitation data it "should" copy; BC does
well on imitation only.

    python benchmarks/bcq_settings.py                      # ~25 min on a 2-core CPU
    python benchmarks/bcq_settings.py --no-run             # table + PNG from the results
"""

from __future__ import annotations

import json

import matplotlib.pyplot as plt
from experiments import (
    FIGURES,
    band,
    common_args,
    markdown_table,
    mean_std,
    plot_band,
    records,
    run,
    save,
    select,
)

from offrl import recipes

ENV = "halfcheetah"
SETTINGS = ("final-buffer", "concurrent", "imitation", "imperfect")
BEHAVIOUR_AGENT = {"final-buffer": "ddpg-noise0.5"} | {
    s: "ddpg-noise0.1" for s in ("concurrent", "imitation", "imperfect")
}
SMALL = {"hidden": [64, 64]}
ALGOS = [
    {"algo": "bcq", "label": "bcq", "set": SMALL | {"vae_hidden": [128, 128]}},
    {"algo": "ddpg", "label": "ddpg", "set": SMALL},
    {"algo": "bc", "label": "bc", "set": SMALL},
]


def behavioural_score(setting: str) -> float:
    """Normalized return of the noise-free behaviour policy, as measured when it was saved."""
    manifest = json.loads((recipes.POLICY_DIR / "manifest.json").read_text())
    agent = manifest[ENV]["agents"][BEHAVIOUR_AGENT[setting]]
    low, high = recipes.reference_returns(ENV)  # what the datasets' scores are normalized by
    return 100 * (agent["snapshots"]["expert"]["return"]["mean"] - low) / (high - low)


def main(argv: list[str] | None = None) -> int:
    args = common_args(__doc__.splitlines()[0], "runs/exp/bcq_settings", 10_000, 3).parse_args(argv)
    datasets = [f"{ENV}-{s}" for s in SETTINGS]
    spec = {
        "name": "bcq-settings",
        "algos": select(ALGOS, args.only),
        "datasets": datasets,
        "seeds": args.seeds,
        "steps": args.steps,
        "eval_every": args.steps // 8,
        "eval_episodes": 5,
        "chunk_size": 500,
        "resources": {"num_cpus": 1},
    }
    results = run(spec, args.out, args.num_cpus, execute=not args.no_run)
    rows = []
    for setting, d in zip(SETTINGS, datasets):
        cells = [
            mean_std([r.final for r in records(results, d, lab) if r.final is not None])
            for lab in results.labels
        ]
        data = recipes.describe(d)["normalized_return_mean"]
        rows.append([setting, f"{behavioural_score(setting):.1f}", f"{data:.1f}", *cells])
    print(f"{ENV}: final normalized score after {args.steps} updates, mean ± std over seeds\n")
    print(markdown_table(["setting", "behavioural policy", "data average", *results.labels], rows))
    figure = args.figure or FIGURES / "bcq_settings.png"
    print(f"\nfigure: {plot(results, datasets, figure)}")
    return 0


def plot(results, datasets, figure):
    fig, axes = plt.subplots(1, len(datasets), figsize=(4.2 * len(datasets), 3.6))
    for ax, setting, d in zip(axes, SETTINGS, datasets):
        for lab in results.labels:
            recs = records(results, d, lab)
            plot_band(ax, *band(recs, "eval", "normalized_score"), f"{lab} (n={len(recs)})")
        ax.axhline(behavioural_score(setting), color="k", ls="--", lw=1, label="behavioural")
        ax.set_title(f"{ENV} {setting}")
        ax.set_xlabel("updates")
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("normalized score")
    axes[0].legend(fontsize="small")
    return save(fig, figure)


if __name__ == "__main__":
    raise SystemExit(main())
