"""Every dataset recipe: make it (timed) and print the table of docs/datasets.md.

    python benchmarks/datasets.py                  # all recipes (cached ones are reused)
    python benchmarks/datasets.py hopper-expert --remake
    python benchmarks/datasets.py walker2d-medium-replay --replay-root runs/behavior/d4rl

Columns: transitions, episodes, mean return ± std over the dataset's episodes, the mean
normalized score (the environment's random and expert references from the manifest), and
the generation time measured when the dataset was made (stored in its metadata). Also
prints, per environment, the expert's reference return next to D4RL's expert reference.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from offrl import recipes
from offrl.envs.registry import D4RL_REFERENCE_RETURNS


def row(name: str, remake: bool, replay_root: Path | None = None) -> str:
    if remake or not recipes.is_cached(name):
        recipes.make(name, recipes.cache_path(name).exists(), replay_run(name, replay_root))
    stored = recipes.stored_metadata(name)
    if "return_std" not in stored:  # made before the summary held it: read the data
        ds = recipes.load_dataset(name)
        returns = ds.episode_returns()
        stored |= {"transitions": len(ds), "return_std": float(returns.std())}
    return (
        f"| {name} | {stored['transitions']:,} | {stored['episodes']:,} "
        f"| {stored['return_mean']:.1f} ± {stored['return_std']:.1f} "
        f"| {stored['normalized_return_mean']:.1f} | {stored['generation_seconds']:.1f} |"
    )


def replay_run(name: str, root: Path | None) -> Path | None:
    """The SAC run directory ROOT/SLUG-sac a medium-replay recipe is read from (else None:
    the recipe re-runs the training)."""
    env, kind = recipes.split_name(name)
    run = root / f"{env.slug}-sac" if root is not None and kind == "medium-replay" else None
    return run if run is not None and run.is_dir() else None


def references() -> list[str]:
    lines = [
        "| environment | random return (offrl, 100 ep.) | expert return (offrl, 100 ep.) "
        "| D4RL random | D4RL expert |",
        "|---|---:|---:|---:|---:|",
    ]
    for slug, env in recipes.ENVS.items():
        entry = recipes.manifest().get(slug)
        if not entry:
            continue
        rand, expert = entry["random_return"], entry["expert_return"]
        d4rl = D4RL_REFERENCE_RETURNS.get(env.env_id.split("-")[0], ("—", "—"))
        lines.append(
            f"| {env.env_id} | {rand['mean']:.1f} ± {rand['std']:.1f} "
            f"| {expert['mean']:.1f} ± {expert['std']:.1f} | {d4rl[0]} | {d4rl[1]} |"
        )
    return lines


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("names", nargs="*", help="recipes (default: all)")
    p.add_argument("--remake", action="store_true", help="regenerate cached datasets (timed)")
    p.add_argument(
        "--replay-root", type=Path, help="medium-replay from ROOT/SLUG-sac (the SAC runs' buffers)"
    )
    args = p.parse_args()
    print("| dataset | transitions | episodes | return | normalized | generation s |")
    print("|---|---:|---:|---:|---:|---:|")
    for name in args.names or recipes.names():
        print(row(name, args.remake, args.replay_root), flush=True)
    print()
    print("\n".join(references()))


if __name__ == "__main__":
    main()
