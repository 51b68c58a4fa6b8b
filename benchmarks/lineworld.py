"""Experiment 2 of issue 5: the 1D lineworld of the BEAR paper, distribution matching against
a support constraint.

Kumar, Fu, Tucker & Levine (NeurIPS 2019) and the BEAR blog post (Figs. 4–6): a line of
states, start S, goal G, actions LEFT/RIGHT; the behaviour policy β takes the wrong action
LEFT with probability 0.9 at S and between S and G, and only LEFT beyond S. Their claim: the
support-constrained policy reaches G with probability 1 at every size, while a
distribution-matching (KL) constraint's probability falls toward 0 as the line grows,
whatever its strength α.

Every policy is computed exactly (soft / restricted value iteration) and its probability of
reaching G from S within H steps is computed exactly on its Markov chain in the true world.
Two behaviour models: the exact β (zero mass on the action the data never took) and a fitted
β̂ = 0.98 β + 0.01 (full support, as any density model has). The set-up's choices are in
src/offrl/tabular/lineworld.py and docs/tabular.md. Writes figures/lineworld.png.

    python benchmarks/lineworld.py                        # ~10 s; the table in docs/tabular.md
    python benchmarks/lineworld.py --reward sparse --figure /tmp/lineworld_sparse.png
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
from experiments import FIGURES, markdown_table, save

from offrl.tabular import (
    RIGHT,
    Lineworld,
    distribution_matching_policy,
    goal_probability,
    make_lineworld,
    support_policy,
)

REWARDS = {  # (step reward, goal reward)
    "dense": (-1.0, 0.0),  # −1 per step until G
    "sparse": (0.0, 1.0),  # +1 for the step into G, 0 otherwise
}


def arguments() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sizes", type=int, nargs="+", default=[5, 10, 15, 20, 30, 40, 50])
    p.add_argument("--alphas", type=float, nargs="+", default=[0.1, 1.0, 10.0, 100.0])
    p.add_argument("--floor", type=float, default=0.02, help="η of the fitted β̂")
    p.add_argument("--epsilon", type=float, default=0.05, help="support threshold on β̂")
    p.add_argument("--horizon", type=int, default=1000, help="steps allowed to reach G")
    p.add_argument("--reward", choices=sorted(REWARDS), default="dense")
    p.add_argument("--unknown-value", type=float, default=0.0, help="Q of pairs with no data")
    p.add_argument("--policy-size", type=int, default=20, help="world of the policy table")
    p.add_argument("--figure", type=Path, default=FIGURES / "lineworld.png")
    args = p.parse_args()
    if min(args.sizes) < 3 or args.horizon < 1 or min(args.alphas) <= 0:
        p.error("--sizes must be >= 3, --horizon >= 1, --alphas > 0")
    if not 0 < args.floor < 1 or not args.floor / 2 <= args.epsilon < 1:
        p.error("--floor must be in (0, 1) and --epsilon in [floor / 2, 1)")
    return args


def methods(args: argparse.Namespace) -> dict[str, Callable[[Lineworld], np.ndarray]]:
    """label -> (world -> policy)."""
    out = {
        "behaviour β": lambda w: w.behaviour,
        f"support, β̂ > {args.epsilon:g}": lambda w: support_policy(w, args.epsilon, args.floor),
    }
    for floor, model in ((0.0, "exact β"), (args.floor, "fitted β̂")):
        for alpha in args.alphas:
            out[f"KL, {model}, α = {alpha:g}"] = lambda w, a=alpha, f=floor: (
                distribution_matching_policy(w, a, f, args.unknown_value)
            )
    return out


def world(size: int, args: argparse.Namespace) -> Lineworld:
    step, goal = REWARDS[args.reward]
    return make_lineworld(size, step_reward=step, goal_reward=goal)


def probabilities(args: argparse.Namespace) -> dict[str, list[float]]:
    """label -> P(reach G within H | S) per size, then the size-max one with H = ∞."""
    out = {}
    for label, solve in methods(args).items():
        row = []
        for size in args.sizes:
            w = world(size, args)
            row.append(goal_probability(w, solve(w), args.horizon))
        w = world(max(args.sizes), args)
        row.append(goal_probability(w, solve(w), None))
        out[label] = row
    return out


def probability_table(probs: dict[str, list[float]], args: argparse.Namespace) -> str:
    header = ["method"] + [f"N={n}" for n in args.sizes] + [f"N={max(args.sizes)}, H=∞"]
    rows = [[label] + [f"{p:.3g}" for p in row] for label, row in probs.items()]
    return markdown_table(header, rows)


def policy_table(args: argparse.Namespace) -> str:
    """π(RIGHT | s) around S: where each method sends the agent."""
    w = world(args.policy_size, args)
    states = [("0", 0), ("S−1", w.start - 1), ("S", w.start), ("S+1", w.start + 1)]
    states.append(("G−1", w.goal - 1))
    rows = []
    for label, solve in methods(args).items():
        policy = solve(w)
        rows.append([label] + [f"{policy[s, RIGHT]:.3g}" for _, s in states])
    return markdown_table(["method"] + [f"π(RIGHT \\| {name})" for name, _ in states], rows)


def plot(probs: dict[str, list[float]], args: argparse.Namespace) -> None:
    fig, axes = plt.subplots(1, 2, figsize=(11, 4), sharey=True)
    for ax, model in zip(axes, ("exact β", "fitted β̂")):
        for label, row in probs.items():
            if label.startswith("KL") and model not in label:
                continue
            kl = label.startswith("KL")
            style = {"marker": "o"} if kl else {"ls": "--", "lw": 2.5, "zorder": 3}  # on top
            ax.plot(args.sizes, row[:-1], label=label.replace(f", {model}", ""), **style)
        ax.set_title(f"KL penalty with the {model}")
        ax.set(xlabel="world size N", ylim=(-0.03, 1.03))
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    axes[0].set_ylabel(f"P(reach G from S within {args.horizon} steps)")
    save(fig, args.figure)


def main() -> None:
    args = arguments()
    step, goal = REWARDS[args.reward]
    print(
        f"## P(reach G from S within H = {args.horizon} steps): reward {step:g} per step, "
        f"{goal:g} into G; γ = 0.99; η = {args.floor:g}; unknown Q = {args.unknown_value:g}\n"
    )
    probs = probabilities(args)
    print(probability_table(probs, args))
    print(
        f"\n## The policies around S, N = {args.policy_size} (S = {(args.policy_size - 1) // 2})\n"
    )
    print(policy_table(args))
    plot(probs, args)
    print(f"\nfigure: {args.figure}")


if __name__ == "__main__":
    main()
