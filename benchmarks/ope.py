"""Off-policy evaluation on offrl's own data: how well each estimator values and ranks a
family of policies of graded quality, in the manner of the deep OPE benchmark (Fu et al.,
ICLR 2021), whose D4RL part values 11 snapshots of one SAC training run per task.

Per task, the family is one of (`--family`):
- `run`: 8 snapshots of the task's behaviour agent (the SAC run the datasets come from),
  whose training evaluations lie nearest to 8 evenly spaced returns from its worst to its
  best, and 3 offline policies trained on the task's dataset (BC, TD3+BC, IQL,
  `--offline-steps`). It needs the behaviour run's directory;
- `committed` (the default; a fresh clone has everything it needs): the task's committed
  behaviour snapshots (expert and medium, src/offrl/recipes/policies) and 8 offline policies
  trained on the task's dataset: BC, TD3+BC, IQL and AWAC, each after a tenth of
  `--offline-steps` and after all of them.
Each policy's true value is its discounted return (γ = `--discount`) from `--episodes`
deterministic rollouts; every estimator values it from the task's dataset alone, with its
logged behaviour log-probabilities. The scores are offrl.ope.selection's: Spearman,
regret@1/@5 and absolute error on values min-max normalized by the true values' range.

    python benchmarks/ope.py --tasks halfcheetah walker2d           # committed snapshots
    python benchmarks/ope.py --tasks pendulum --family run          # ~25 min on 2 cores
    python benchmarks/ope.py --tasks hopper --family run            # needs the 1M-step run
    python benchmarks/ope.py --tasks pendulum --no-run              # tables from the values

The behaviour runs: pendulum's is remade in a few minutes by
`offrl behavior train Pendulum-v1 --algo sac --steps 20000 --out runs/behavior/small/pendulum-sac`;
the locomotion ones are the 1M-step runs of docs/datasets.md (runs/behavior/d4rl/ENV-sac).
Values are cached per policy in OUT/FAMILY/TASK/values.json; a rerun computes only what is
missing. The values measured so far are kept in benchmarks/results/ope (a new machine starts
from them: `cp -r benchmarks/results/ope/* runs/ope_bench/`). Each family's figure is
benchmarks/figures/ope_FAMILY.png.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path

import numpy as np

from offrl import ope, recipes, training
from offrl.atomic import atomic_write, atomic_write_json
from offrl.behavior.online import load_actor, read_jsonl, snapshot_path
from offrl.bench.select import Settings, evaluator, metrics_table, score_selection, value_policy
from offrl.envs.rollout import env_spaces
from offrl.policy import load_policy
from offrl.recipes.agents import POLICY_DIR, agent_template

FIGURES = Path(__file__).parent / "figures"
TASKS = {  # task: (behaviour run, dataset, per-task OPE settings)
    "pendulum": ("runs/behavior/small/pendulum-sac", "pendulum-medium-expert", {}),
    "hopper": ("runs/behavior/d4rl/hopper-sac", "hopper-medium-expert", {}),
    "walker2d": ("runs/behavior/d4rl/walker2d-sac", "walker2d-medium-expert", {}),
    "halfcheetah": ("runs/behavior/d4rl/halfcheetah-sac", "halfcheetah-medium-expert", {}),
}
SNAPSHOTS = 8
OFFLINE = ("bc", "td3_bc", "iql")
OFFLINE_COMMITTED = ("bc", "td3_bc", "iql", "awac")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--tasks", nargs="+", default=["pendulum"], choices=list(TASKS))
    p.add_argument("--family", choices=("committed", "run"), default="committed")
    p.add_argument("--estimators", default="all")
    p.add_argument("--discount", type=float, default=0.99)
    p.add_argument("--episodes", type=int, default=10, help="rollouts per policy (true value)")
    p.add_argument("--offline-steps", type=int, default=10_000)
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="OPEConfig")
    p.add_argument("--out", type=Path, default=Path("runs/ope_bench"))
    p.add_argument("--no-run", action="store_true", help="tables and figure from cached values")
    args = p.parse_args(argv)
    from offrl.algos import parse_overrides

    estimators = ope.check_estimators(args.estimators)
    tables = {}
    for task in args.tasks:
        run_dir, dataset, extra = TASKS[task]
        config = ope.config_from_overrides(extra | parse_overrides(args.set))
        settings = Settings(dataset, estimators, args.discount, args.episodes, 0, config)
        if args.family == "run" and not args.no_run and not Path(run_dir).exists():
            print(f"{task}: behaviour run {run_dir} not found (see this script's docstring)")
            return 2
        tables[task] = run_task(task, Path(run_dir), settings, args)
    report(tables, args.out / args.family)
    return 0


def run_task(task: str, run_dir: Path, s: Settings, args) -> dict:
    """Value every policy of the task with every estimator; a policy valued before under
    the same settings gets only the estimators it lacks (its true value is kept)."""
    out = args.out / args.family / task
    cache = out / "values.json"
    known = json.loads(cache.read_text()) if cache.exists() else {}
    if args.no_run and known:  # report what was valued, under the settings it was valued with
        s = dataclasses.replace(s, config=ope.config_from_overrides(known["settings"]["config"]))
    if _without_estimators(known.get("settings", {})) != _without_estimators(s.record()):
        known = {"settings": s.record(), "policies": {}}
    if not args.no_run:
        data = recipes.load_dataset(s.dataset)
        evaluators: dict[tuple[str, ...], object] = {}
        members = (
            run_family(run_dir, s.dataset, out, args.offline_steps)
            if args.family == "run"
            else committed_family(task, s.dataset, out, args.offline_steps)
        )
        for name, make in members:
            old = known["policies"].get(name)
            missing = tuple(n for n in s.estimators if old is None or n not in old["ope"])
            if not missing:
                continue
            sub = dataclasses.replace(s, estimators=missing, episodes=0 if old else s.episodes)
            if missing not in evaluators:
                evaluators[missing] = evaluator(data, sub)
            algo, cfg, state, env_id = make()
            new = value_policy(algo, cfg, state, env_id, evaluators[missing], sub)
            known["policies"][name] = new if old is None else old | {"ope": old["ope"] | new["ope"]}
            known["settings"] = s.record()
            atomic_write_json(cache, known)
            t = known["policies"][name]["true"]
            print(f"{task} {name}: true {t['value']:.2f} (return {t['return']:.1f})", flush=True)
    entries = [e for e in known["policies"].values() if all(n in e["ope"] for n in s.estimators)]
    return {
        "settings": s.record(),
        "policies": {n: e for n, e in known["policies"].items() if e in entries},
        "metrics": score_selection(entries, s.estimators) if entries else {},
    }


def _without_estimators(settings: dict) -> dict:
    """The settings that decide a cached value; config fields added since default."""
    out = {k: v for k, v in settings.items() if k != "estimators"}
    out["config"] = dataclasses.asdict(ope.OPEConfig()) | out.get("config", {})
    return json.loads(json.dumps(out))


def run_family(run_dir: Path, dataset: str, out: Path, offline_steps: int):
    """(name, () -> (algo, cfg, state, env_id)) of every policy of the `run` family, lazily
    made: the behaviour run's graded snapshots, then the offline policies."""
    config = json.loads((run_dir / "config.json").read_text())
    env_id = config["env_id"]
    obs_space, act_space = env_spaces(env_id)
    template = agent_template(
        config["algo"], json.dumps(config["algo_config"], sort_keys=True),
        obs_space.shape[0], act_space.shape[0],
    )  # fmt: skip

    def snapshot(step: int):
        algo, cfg, state = template
        return algo, cfg, load_actor(snapshot_path(run_dir, step), state), env_id

    for step in graded_steps(read_jsonl(run_dir / "snapshots.jsonl"), SNAPSHOTS):
        yield f"snapshot-{step}", lambda step=step: snapshot(step)
    yield from offline_family(OFFLINE, (offline_steps,), dataset, env_id, out)


def committed_family(task: str, dataset: str, out: Path, offline_steps: int):
    """The `committed` family: the task's committed snapshots, then the offline policies."""
    entry = recipes.manifest()[task]
    env_id, agent = entry["env_id"], entry["agents"]["sac"]

    def snapshot(file: str):
        config = json.dumps(agent["algo_config"], sort_keys=True)
        algo, cfg, state = agent_template("sac", config, agent["obs_dim"], agent["act_dim"])
        return algo, cfg, load_actor(POLICY_DIR / file, state), env_id

    for role, snap in agent["snapshots"].items():
        yield f"{role}-{snap['step']}", lambda file=snap["file"]: snapshot(file)
    lengths = (offline_steps // 10, offline_steps)
    yield from offline_family(OFFLINE_COMMITTED, lengths, dataset, env_id, out)


def offline_family(algo_names, lengths, dataset: str, env_id: str, out: Path):
    """Policies trained offline on the task's dataset: each algorithm after each length."""

    def offline(algo_name: str, steps: int):
        run = out / "offline" / f"{algo_name}-{steps}"
        if not (run / training.SUMMARY_FILE).exists():
            training.train(
                algo_name, dataset, steps, out=run, eval_every=steps,
                eval_episodes=5, overwrite=True, progress=False,
            )  # fmt: skip
        policy = load_policy(run)
        return policy.algo, policy.cfg, policy.state, env_id

    for algo_name in algo_names:
        for steps in lengths:
            label = f"{algo_name}-{steps // 1000}k" if steps >= 1000 else f"{algo_name}-{steps}"
            yield label, lambda a=algo_name, n=steps: offline(a, n)


def graded_steps(snapshots: list[dict], n: int) -> list[int]:
    """The steps of up to n snapshots whose training evaluation returns lie nearest to n
    evenly spaced levels from the worst to the best (each snapshot once), ordered by step:
    a family graded in quality, not n copies of the plateau a run spends most time on."""
    returns = np.array([r["return_mean"] for r in snapshots])
    chosen: list[int] = []
    for level in np.linspace(returns.min(), returns.max(), n):
        order = np.argsort(np.abs(returns - level), kind="stable")
        chosen.append(next(int(i) for i in order if int(i) not in chosen))
    return sorted(snapshots[i]["step"] for i in chosen)


# --------------------------------------------------------------------------- report


def report(tables: dict[str, dict], out: Path) -> None:
    md = markdown(tables)
    print(md)
    atomic_write(out / "ope.md", md.encode())
    atomic_write_json(out / "ope.json", tables)
    png = FIGURES / f"ope_{out.name}.png"  # one figure per family
    figure(tables, png)
    print(f"written: {out / 'ope.md'}, {out / 'ope.json'}, {png}")


def markdown(tables: dict[str, dict]) -> str:
    lines = []
    for task, t in tables.items():
        s = t["settings"]
        lines += [
            f"### {task}: {len(t['policies'])} policies valued from {s['dataset']}, "
            f"γ = {s['discount']}",
            "",
            "| policy | true value | return | " + " | ".join(s["estimators"]) + " |",
            "|---|---:|---:|" + "---:|" * len(s["estimators"]),
        ]
        by_true = sorted(t["policies"].items(), key=lambda kv: kv[1]["true"]["value"])
        for name, e in by_true:
            est = " | ".join(f"{e['ope'][n]['value']:.1f}" for n in s["estimators"])
            lines.append(
                f"| {name} | {e['true']['value']:.1f} | {e['true']['return']:.1f} | {est} |"
            )
        lines += ["", *metrics_table(t["metrics"], digits=2), ""]
    return "\n".join(lines)


def figure(tables: dict[str, dict], path: Path) -> None:
    """Estimated against true value, both min-max normalized by the true values, one panel
    per estimator, one colour per task."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = next(iter(tables.values()))["settings"]["estimators"]
    fig, axes = plt.subplots(1, len(names), figsize=(3.2 * len(names), 3.2), squeeze=False)
    for ax, name in zip(axes[0], names):
        for task, t in tables.items():
            true = np.array([e["true"]["value"] for e in t["policies"].values()])
            est = np.array([e["ope"][name]["value"] for e in t["policies"].values()])
            lo, span = true.min(), max(np.ptp(true), 1e-12)
            ax.scatter((true - lo) / span, np.clip((est - lo) / span, -1, 2), s=14, label=task)
        ax.plot([0, 1], [0, 1], color="grey", lw=0.8)
        ax.set(title=name, xlabel="true (normalized)", ylim=(-1.05, 2.05))
    axes[0][0].set_ylabel("estimate (normalized, clipped to [-1, 2])")
    axes[0][-1].legend(fontsize=7)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)


if __name__ == "__main__":
    sys.exit(main())
