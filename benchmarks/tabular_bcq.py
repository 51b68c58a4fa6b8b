"""Experiment 1 of issue 5: tabular batch Q-learning against tabular BCQ.

Fujimoto, Meger & Precup, "Off-Policy Deep RL without Exploration" (ICML 2019), Sec. 4.1: on
a batch B, Q-learning's backup maximises over every action, so pairs the batch never holds
keep whatever value Q started with and pass it on; BCQ maximises over the batch's actions
only and converges to Q* of the MDP restricted to B with the estimated model P̂ (exact
answer: value iteration on that restricted MDP).

Random MDPs (Garnets): 20 states, 4 actions, R ~ U(−1, 1), γ = 0.9; a behaviour policy that
takes 2 random actions per state; episodes of 20 steps from state 0. Two parts:
1. deterministic MDPs, 10 episodes: BCQ from three initialisations against Q-learning from
   the same three, over 20 MDPs — the Q error on B, each method's own estimate of its start
   value and the true value of its greedy policy;
2. stochastic MDPs (3 successors per pair): the batch grows from 2 to 5000 episodes; BCQ's
   error against the restricted optimum under the TRUE model, which shrinks as counts grow.
Writes figures/tabular_bcq.png.

    python benchmarks/tabular_bcq.py        # ~20 s on one core
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
from experiments import FIGURES, markdown_table, save

from offrl.tabular import (
    Transitions,
    batch_bcq,
    batch_q_learning,
    bcq_policy,
    collect,
    empirical_mdp,
    evaluate_policy,
    garnet,
    greedy_policy,
    q_learning_sweep,
    random_behaviour,
    value_iteration,
)
from offrl.tabular.mdp import MDP, batch_support

STATES, ACTIONS, SUPPORT = 20, 4, 2  # β takes SUPPORT of the ACTIONS at each state
DISCOUNT = 0.9
HORIZON = 20  # steps per episode, from state START
START = 0
DETERMINISTIC_EPISODES = 10
STOCHASTIC_EPISODES = (2, 5, 20, 100, 500, 5000)
BRANCHING = 3  # successors per pair in the stochastic MDPs
OPTIMISTIC = 1.0 / (1 - DISCOUNT)  # r_max / (1 − γ): above every true value


def initial_tables(rng: np.random.Generator) -> dict[str, np.ndarray | float]:
    """The initialisations compared: zero, optimistic, and an arbitrary random table."""
    arbitrary = rng.uniform(-OPTIMISTIC, OPTIMISTIC, (STATES, ACTIONS))
    return {"0": 0.0, "r_max/(1−γ)": OPTIMISTIC, "U(±r_max/(1−γ))": arbitrary}


@dataclass
class Problem:
    mdp: MDP
    behaviour: np.ndarray
    batch: Transitions
    exact: np.ndarray  # Q*_B: value iteration on P̂ restricted to B (NaN outside B)
    seen: np.ndarray  # (s, a) ∈ B


def make_problem(seed: int, branching: int, episodes: int) -> tuple[Problem, np.random.Generator]:
    rng = np.random.default_rng(seed)
    mdp = garnet(STATES, ACTIONS, branching, DISCOUNT, rng)
    behaviour = random_behaviour(STATES, ACTIONS, SUPPORT, rng)
    batch = collect(mdp, behaviour, START, episodes, HORIZON, rng)
    model = empirical_mdp(batch, DISCOUNT)
    exact = value_iteration(model.mdp, allowed=model.seen).q
    return Problem(mdp, behaviour, batch, exact, model.seen), rng


def start_estimate(q: np.ndarray, allowed: np.ndarray | None) -> float:
    """A method's own value of the start state: the max of its Q over the actions it may take."""
    row = q[START] if allowed is None else np.where(allowed[START], q[START], -np.inf)
    return float(row.max())


def deterministic_runs(seeds: int) -> dict[str, dict[str, list[float]]]:
    """Per method: the max |Q − Q*_B| on B, its own V̂(s0), its greedy policy's true V(s0)."""
    out: dict[str, dict[str, list[float]]] = {}

    def record(name: str, **values: float) -> None:
        for key, value in values.items():
            out.setdefault(name, {}).setdefault(key, []).append(value)

    for seed in range(seeds):
        p, rng = make_problem(seed, branching=1, episodes=DETERMINISTIC_EPISODES)
        record(
            "references",
            optimum=value_iteration(p.mdp).v[START],
            constrained=value_iteration(p.mdp, allowed=p.seen).v[START],
            behaviour=evaluate_policy(p.mdp, p.behaviour).v[START],
        )
        for init_name, init in initial_tables(rng).items():
            for method, solve in (("Q-learning", batch_q_learning), ("BCQ", batch_bcq)):
                q = solve(p.batch, DISCOUNT, init).q
                allowed = p.seen if method == "BCQ" else None
                policy = bcq_policy(q, p.batch) if method == "BCQ" else greedy_policy(q)
                record(
                    f"{method}, Q0 = {init_name}",
                    error=np.max(np.abs(q - p.exact)[p.seen]),
                    estimate=start_estimate(q, allowed),
                    true_value=evaluate_policy(p.mdp, policy).v[START],
                )
    return out


def sweep_errors(seed: int, sweeps: int) -> dict[str, list[float]]:
    """max |Q − Q*_B| on B after each sweep, on one deterministic problem."""
    p, rng = make_problem(seed, branching=1, episodes=DETERMINISTIC_EPISODES)
    support = batch_support(p.batch)
    curves = {}
    for init_name, init in initial_tables(rng).items():
        for method, allowed in (("Q-learning", None), ("BCQ", support)):
            q = np.broadcast_to(np.asarray(init, float), p.exact.shape).copy()
            errors = []
            for _ in range(sweeps):
                q = q_learning_sweep(q, p.batch, DISCOUNT, allowed)
                errors.append(float(np.max(np.abs(q - p.exact)[p.seen])))
            curves[f"{method}, Q0 = {init_name}"] = errors
    return curves


def stochastic_runs(seeds: int) -> list[dict[str, float]]:
    """Per batch size, over MDPs: BCQ against the estimated and the true model."""
    rows = []
    for episodes in STOCHASTIC_EPISODES:
        stats: dict[str, list[float]] = {}
        for seed in range(seeds):
            p, _ = make_problem(1000 + seed, BRANCHING, episodes)
            bcq = batch_bcq(p.batch, DISCOUNT).q
            true_restricted = value_iteration(p.mdp, allowed=p.seen)
            gap = np.abs(bcq - true_restricted.q)[p.seen]
            values = {
                "transitions": len(p.batch),
                "pairs": p.seen.sum(),
                "vs_estimated": np.max(np.abs(bcq - p.exact)[p.seen]),
                "mean_error": gap.mean(),
                "max_error": gap.max(),
                "policy_value": evaluate_policy(p.mdp, bcq_policy(bcq, p.batch)).v[START],
                "constrained": true_restricted.v[START],
            }
            for key, value in values.items():
                stats.setdefault(key, []).append(float(value))
        summary = {key: float(np.mean(v)) for key, v in stats.items()}
        summary["vs_estimated"] = max(stats["vs_estimated"])  # the worst MDP
        summary["mean_error_std"] = float(np.std(stats["mean_error"]))
        summary["mean_error_quartiles"] = np.percentile(stats["mean_error"], [25, 50, 75])
        rows.append({"episodes": episodes} | summary)
    return rows


def pm(values: list[float], digits: int = 2) -> str:
    return f"{np.mean(values):.{digits}f} ± {np.std(values):.{digits}f}"


def deterministic_table(runs: dict[str, dict[str, list[float]]]) -> str:
    ref = runs.pop("references")
    rows = []
    for name, r in runs.items():
        overestimate = np.subtract(r["estimate"], r["true_value"])
        off = sum(e > 1e-6 for e in r["error"])
        rows.append(
            [
                name,
                f"{max(r['error']):.1e}",
                f"{off}/{len(r['error'])}",
                pm(r["estimate"]),
                pm(r["true_value"]),
                pm(overestimate),
            ]
        )
    rows += [
        ["optimal policy (true MDP)", "—", "—", "—", pm(ref["optimum"]), "—"],
        ["batch-constrained optimum", "0", "—", pm(ref["constrained"]), "—", "—"],
        ["behaviour policy β", "—", "—", "—", pm(ref["behaviour"]), "—"],
    ]
    header = [
        "method",
        "max \\|Q − Q*_B\\| on B",
        "MDPs with error > 1e-6",
        "own estimate V̂(s0)",
        "true V^π(s0)",
        "V̂(s0) − V^π(s0)",
    ]
    return markdown_table(header, rows)


def stochastic_table(rows: list[dict[str, float]]) -> str:
    body = [
        [
            str(r["episodes"]),
            f"{r['transitions']:.0f}",
            f"{r['pairs']:.1f}",
            f"{r['vs_estimated']:.1e}",
            f"{r['mean_error']:.3f} ± {r['mean_error_std']:.3f}",
            f"{r['max_error']:.3f}",
            f"{r['policy_value']:.2f}",
            f"{r['constrained']:.2f}",
        ]
        for r in rows
    ]
    header = [
        "episodes",
        "transitions",
        "pairs in B",
        "max \\|Q_BCQ − Q̂*_B\\| (P̂), worst MDP",
        "mean over B \\|Q_BCQ − Q*_B\\| (true P)",
        "max over B \\|Q_BCQ − Q*_B\\|",
        "true V^π_BCQ(s0)",
        "V*_B(s0) (true P)",
    ]
    return markdown_table(header, body)


def plot(curves: dict[str, list[float]], rows: list[dict[str, float]], path: Path) -> None:
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4))
    for name, errors in curves.items():
        style = "-" if name.startswith("BCQ") else "--"
        left.semilogy(np.arange(1, len(errors) + 1), np.maximum(errors, 1e-16), style, label=name)
    left.set(xlabel="sweeps over the batch", ylabel="max |Q − Q*_B| on B")
    left.set_title("one deterministic MDP (seed 0): error per sweep")
    left.legend(fontsize=7)
    n = np.array([r["transitions"] for r in rows])
    low, median, high = np.array([r["mean_error_quartiles"] for r in rows]).T
    right.loglog(n, median, "o-", label="BCQ: mean over B; median and quartiles over MDPs")
    right.fill_between(n, low, high, alpha=0.2)
    right.loglog(n, median[0] * np.sqrt(n[0] / n), ":", color="gray", label="∝ 1/√n")
    right.set(xlabel="transitions in the batch", ylabel="|Q_BCQ − Q*_B (true P)|")
    right.set_title("stochastic MDPs: the estimated model's error")
    right.legend(fontsize=8)
    for ax in (left, right):
        ax.grid(alpha=0.3)
    save(fig, path)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seeds", type=int, default=20, help="random MDPs per setting")
    p.add_argument("--sweeps", type=int, default=300, help="sweeps shown in the figure")
    p.add_argument("--figure", type=Path, default=FIGURES / "tabular_bcq.png")
    args = p.parse_args()
    if args.seeds < 1 or args.sweeps < 1:
        p.error("--seeds and --sweeps must be >= 1")
    print(f"## Deterministic MDPs ({args.seeds} MDPs, {DETERMINISTIC_EPISODES} episodes each)\n")
    print(deterministic_table(deterministic_runs(args.seeds)))
    rows = stochastic_runs(args.seeds)
    print(f"\n## Stochastic MDPs ({args.seeds} MDPs per batch size; means over them)\n")
    print(stochastic_table(rows))
    plot(sweep_errors(0, args.sweeps), rows, args.figure)
    print(f"\nfigure: {args.figure}")


if __name__ == "__main__":
    main()
