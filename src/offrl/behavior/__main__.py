"""`python -m offrl.behavior`: the online DQN behaviour agents of the discrete recipes.

    python -m offrl.behavior train-dqn CartPole-v1 [--steps N] [--resume] [--set lr=1e-4]
    python -m offrl.behavior publish-dqn runs/behavior/CartPole-v1-dqn-seed0 --env cartpole

(SAC/TD3/DDPG agents: `offrl behavior train|publish`.) Bad input ends with one line on
stderr, `offrl: error: ...`, and exit status 2, as in the `offrl` command.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from offrl.errors import OffrlError


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # argparse's usage dump becomes one line, exit 2
        self.exit(2, f"offrl: error: {message} (see `{self.prog} --help`)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="python -m offrl.behavior", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    train = sub.add_parser("train-dqn", help="train DQN online in a Discrete-action ENV")
    train.add_argument("env", help="gymnasium id, e.g. CartPole-v1 or offrl/MinAtarBreakout-v0")
    train.add_argument("--algo", choices=("dqn", "ddqn"), default="dqn")
    train.add_argument("--steps", type=int, help="environment steps (default: per environment)")
    train.add_argument("--seed", type=int, default=0)
    train.add_argument("--start-steps", type=int, help="uniform random actions first")
    train.add_argument("--snapshot-every", type=int, help="Q snapshot interval")
    train.add_argument("--checkpoint-every", type=int, help="resumable checkpoint interval")
    train.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a field of dqn's Config, e.g. lr=1e-4",
    )
    train.add_argument("--out", type=Path, help="run directory (default runs/behavior/...)")
    train.add_argument("--resume", action="store_true", help="continue from the last checkpoint")
    train.add_argument("--no-progress", action="store_true", help="no progress bar")

    pub = sub.add_parser("publish-dqn", help="commit a DQN run's snapshots for the recipes")
    pub.add_argument("run_dir", type=Path)
    pub.add_argument("--env", required=True, help="recipe environment, e.g. cartpole")
    pub.add_argument("--episodes", type=int, default=100, help="episodes per measured return")
    pub.add_argument(
        "--noisy-fraction",
        type=float,
        default=0.5,
        help="the noisy snapshot's return: this far from random to expert",
    )
    return parser


def train_dqn(args) -> None:
    from offrl.behavior.online_dqn import default_config, train_dqn_behavior
    from offrl.training import make_algo_config, parse_overrides

    overrides = parse_overrides(args.set)
    make_algo_config(args.algo, overrides)  # unknown or mistyped fields fail before a run
    bc = default_config(
        args.env,
        algo=args.algo,
        steps=args.steps,
        seed=args.seed,
        start_steps=args.start_steps,
        snapshot_every=args.snapshot_every,
        checkpoint_every=args.checkpoint_every,
        algo_config=overrides or None,
    )
    slug = args.env.replace("/", "-")
    out = args.out or Path("runs/behavior") / f"{slug}-{args.algo}-seed{args.seed}"
    summary = train_dqn_behavior(bc, out, resume=args.resume, progress=not args.no_progress)
    last = summary["snapshots"][-1] if summary["snapshots"] else {}
    print(
        f"{args.env} {args.algo}: {summary['steps']} steps in {summary['seconds']:.0f} s; "
        f"last snapshot return {last.get('return_mean', float('nan')):.1f}; run directory {out}"
    )


def publish(args) -> None:
    from offrl.behavior.publish_dqn import publish_dqn

    entry = publish_dqn(args.run_dir, args.env, args.episodes, args.noisy_fraction)
    agent = entry["agents"]["dqn"]
    for label, snap in agent["snapshots"].items():
        ret = snap["return"]
        print(
            f"{args.env} {label}: step {snap['step']}, return {ret['mean']:.1f} ± "
            f"{ret['std']:.1f} at ε = {snap['epsilon']} over {ret['episodes']} episodes"
        )
    r, steps = entry["random_return"], agent["replay"]["steps"]
    print(f"{args.env} random: {r['mean']:.1f} ± {r['std']:.1f}; replay {steps} steps")


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        (train_dqn if args.command == "train-dqn" else publish)(args)
    except OffrlError as exc:
        print(f"offrl: error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
