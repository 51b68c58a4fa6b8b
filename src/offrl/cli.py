"""The `offrl` command line: train, eval, data, behavior, bench, dagger, demo.

Bad input ends with one line on stderr, `offrl: error: ...`, and exit status 2.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from offrl.errors import ConfigError, OffrlError

DEMO_ALGO, DEMO_DATASET, DEMO_STEPS = "td3_bc", "pendulum-medium-expert", 10_000
CONTINUOUS_BEHAVIOR, DISCRETE_BEHAVIOR = ("sac", "td3", "ddpg"), ("dqn", "ddqn")
DQN_ROLE = "dqn"  # the discrete recipes' behaviour agent (recipes.discrete.DQN)


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # argparse's usage dump becomes one line, exit 2
        self.exit(2, f"offrl: error: {message} (see `{self.prog} --help`)\n")


def build_parser() -> argparse.ArgumentParser:
    from offrl.algos import NAMES

    parser = _Parser(prog="offrl", description="Offline reinforcement learning in JAX.")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    train = sub.add_parser("train", help="train an algorithm on a dataset")
    train.add_argument("algo", choices=NAMES)
    train.add_argument("--dataset", required=True, help="recipe name (e.g. hopper-medium) or path")
    train.add_argument(
        "--steps", type=int, help="number of updates (default on --resume: as before)"
    )
    train.add_argument("--seed", type=int, default=0)
    train.add_argument("--out", required=True, type=Path, help="run directory")
    train.add_argument(
        "--env",
        help="gymnasium id to evaluate in, when the dataset names none; with no environment "
        "evaluation is off-policy on held-out episodes",
    )
    train.add_argument(
        "--holdout",
        type=float,
        default=0.1,
        help="with no environment: the fraction of whole episodes held out for OPE",
    )
    train.add_argument(
        "--ope",
        default="fqe",
        help="with no environment: comma-separated estimators (fqe,is,pdis,wis,wpdis,dr|all)",
    )
    train.add_argument(
        "--ope-set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override an OPEConfig field, e.g. fqe_steps=20000 (repeatable)",
    )
    train.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a Config field (repeatable)",
    )
    train.add_argument(
        "--no-task-defaults",
        action="store_true",
        help="keep the Config's defaults where the algorithm's reference sets fields per task "
        "(e.g. AWR's action_std on hopper); --set overrides win either way",
    )
    _add_loop_options(train)
    train.add_argument("--resume", action="store_true", help="continue from the last checkpoint")
    train.add_argument("--overwrite", action="store_true", help="replace an existing run")
    train.add_argument(
        "--clip-actions",
        action="store_true",
        help="clip dataset actions into the action space instead of failing",
    )

    ev = sub.add_parser("eval", help="evaluate a trained run's checkpoint")
    ev.add_argument("run_dir", type=Path)
    ev.add_argument("--episodes", type=int, default=10)
    ev.add_argument("--seed", type=int, default=0)

    op = sub.add_parser("ope", help="off-policy estimates of a run's policy from logged data")
    op.add_argument("run_dir", type=Path)
    op.add_argument("--dataset", required=True, help="recipe name or path of the logged data")
    op.add_argument(
        "--estimator", default="fqe", help="fqe|is|pdis|wis|wpdis|dr|mb, comma-separated, or all"
    )
    op.add_argument("--discount", type=float, help="default: the algorithm's γ, else 0.99")
    op.add_argument("--seed", type=int, default=0)
    op.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override an OPEConfig field, e.g. fqe_steps=20000 (repeatable)",
    )
    op.add_argument("--json", action="store_true", help='print {"fqe": {"value", "ci"}, ...}')

    ex = sub.add_parser("export", help="a run's deterministic policy as one ONNX graph")
    ex.add_argument("run_dir", type=Path)
    ex.add_argument("--format", default="onnx", help="onnx")
    ex.add_argument("--out", required=True, type=Path, help="the .onnx file to write")
    ex.add_argument("--overwrite", action="store_true", help="replace an existing --out")

    model = sub.add_parser("model", help="the dynamics ensemble of model-based methods")
    model_sub = model.add_subparsers(dest="model_command", required=True, parser_class=_Parser)
    mtrain = model_sub.add_parser("train", help="fit a dynamics ensemble to a dataset")
    mtrain.add_argument("dataset", help="recipe name or path")
    mtrain.add_argument("--out", required=True, type=Path, help="the model's directory")
    mtrain.add_argument("--seed", type=int, default=0)
    mtrain.add_argument(
        "--set", action="append", default=[], metavar="KEY=VALUE", help="DynamicsConfig field"
    )
    mtrain.add_argument("--overwrite", action="store_true", help="replace a model in --out")
    mtrain.add_argument("--no-progress", action="store_true", help="no progress bar")
    meval = model_sub.add_parser("eval", help="a model's MSE and NLL per output on a dataset")
    meval.add_argument("model_dir", type=Path)
    meval.add_argument("--dataset", required=True, help="recipe name or path (held-out data)")
    meval.add_argument("--json", action="store_true")

    data = sub.add_parser("data", help="inspect datasets")
    data_sub = data.add_subparsers(dest="data_command", required=True, parser_class=_Parser)
    info = data_sub.add_parser("info", help="size, episodes, returns, shapes and bounds")
    info.add_argument("source", help="recipe name (e.g. hopper-medium) or path")
    info.add_argument("--json", action="store_true", help="print JSON")
    listing = data_sub.add_parser(
        "list", help="every dataset recipe: size, behaviour return, references, cached"
    )
    listing.add_argument("--json", action="store_true", help="one JSON object per recipe")
    imp = data_sub.add_parser("import", help="a Parquet/CSV log table -> a Minari dataset")
    imp.add_argument("file", type=Path)
    imp.add_argument("--obs", required=True, help="columns: names or a glob, e.g. 'obs_*'")
    imp.add_argument("--act", required=True, help="columns: names or a glob")
    imp.add_argument("--reward", required=True)
    imp.add_argument("--episode", required=True, help="the column naming each row's episode")
    imp.add_argument("--terminal")
    imp.add_argument("--timeout")
    imp.add_argument("--next-obs", help="columns; default: the next row's observation")
    imp.add_argument("--behavior-log-prob", help="column of log π_b(a|s), for OPE")
    imp.add_argument("--step", help="orders the rows of an episode (default: file order)")
    imp.add_argument("--env", help="the gymnasium id the log comes from, if any")
    imp.add_argument("--out", required=True, type=Path, help="Minari dataset directory")
    imp.add_argument("--overwrite", action="store_true")
    exp = data_sub.add_parser("export", help="a dataset -> a Parquet/CSV table")
    exp.add_argument("source", help="recipe name or path")
    exp.add_argument("--format", choices=("parquet", "csv"), help="default: from --out's suffix")
    exp.add_argument("--out", required=True, type=Path)
    exp.add_argument("--overwrite", action="store_true")
    make = data_sub.add_parser("make", help="generate recipe datasets into the cache")
    make.add_argument("names", nargs="+", help="recipe names, e.g. hopper-medium")
    make.add_argument("--overwrite", action="store_true", help="regenerate a cached dataset")
    make.add_argument(
        "--replay-run",
        type=Path,
        metavar="RUN_DIR",
        help="a replay recipe (medium-replay, final-buffer, concurrent, replay): read the "
        "published training run's directory instead of re-running the training",
    )

    behavior = sub.add_parser("behavior", help="online behaviour agents that make the datasets")
    behavior_sub = behavior.add_subparsers(
        dest="behavior_command", required=True, parser_class=_Parser
    )
    btrain = behavior_sub.add_parser(
        "train", help="train SAC/TD3/DDPG (Box actions) or DQN/DDQN (Discrete) online in ENV"
    )
    btrain.add_argument("env", help="gymnasium id, e.g. Hopper-v5, CartPole-v1")
    btrain.add_argument(
        "--algo",
        choices=CONTINUOUS_BEHAVIOR + DISCRETE_BEHAVIOR,
        help="default: sac in a Box-action ENV, dqn in a Discrete one",
    )
    btrain.add_argument("--steps", type=int, help="environment steps (default: per environment)")
    btrain.add_argument("--seed", type=int, default=0)
    btrain.add_argument("--start-steps", type=int, help="uniform random actions first")
    btrain.add_argument("--snapshot-every", type=int, help="policy snapshot interval")
    btrain.add_argument("--checkpoint-every", type=int, help="resumable checkpoint interval")
    btrain.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a field of the algorithm's Config, e.g. expl_noise=0.5",
    )
    btrain.add_argument("--out", type=Path, help="run directory (default runs/behavior/...)")
    btrain.add_argument("--resume", action="store_true", help="continue from the last checkpoint")
    btrain.add_argument("--no-progress", action="store_true", help="no progress bar")

    pack = behavior_sub.add_parser(
        "pack",
        help="a resumable copy of a run without its replay buffer (the actions it took "
        "instead, replayed on resume)",
    )
    pack.add_argument("run_dir", type=Path)
    pack.add_argument("--out", type=Path, required=True)
    pack.add_argument(
        "--snapshots",
        default="",
        metavar="STEPS",
        help="comma-separated steps of the snapshots to keep (default: none)",
    )

    pub = behavior_sub.add_parser(
        "publish", help="commit a run's expert/medium/replay snapshots for the dataset recipes"
    )
    pub.add_argument("run_dir", type=Path)
    pub.add_argument("--env", required=True, help="recipe environment, e.g. hopper")
    pub.add_argument(
        "--role", default="sac", choices=("sac", "ddpg-noise0.5", "ddpg-noise0.1", DQN_ROLE)
    )
    pub.add_argument(
        "--candidates",
        type=int,
        default=5,
        help="SAC/DDPG: snapshots measured again to choose the expert and the medium policy",
    )
    pub.add_argument(
        "--select-episodes", type=int, default=20, help="episodes per candidate's measurement"
    )
    pub.add_argument("--episodes", type=int, default=100, help="episodes per measured return")
    pub.add_argument(
        "--noisy-fraction",
        type=float,
        default=0.5,
        help="role dqn: the noisy snapshot's return is this far from random to expert",
    )

    bench = sub.add_parser("bench", help="benchmark sweeps on Ray: run, table, plot, report")
    bench_sub = bench.add_subparsers(dest="bench_command", required=True, parser_class=_Parser)
    brun = bench_sub.add_parser("run", help="run (or resume) every run of a sweep spec (YAML)")
    brun.add_argument("spec", type=Path, help="sweep spec, e.g. benchmarks/specs/quick.yaml")
    brun.add_argument("--out", type=Path, help="results directory (default runs/bench/NAME)")
    brun.add_argument("--address", help="join this Ray cluster (default: start Ray here)")
    brun.add_argument("--num-cpus", type=int, help="CPUs of the local Ray (default: all)")
    brun.add_argument("--no-progress", action="store_true", help="no progress bars")
    sel = bench_sub.add_parser(
        "select", help="rank a sweep's runs by an off-policy estimate from logged data"
    )
    sel.add_argument("results", type=Path)
    sel.add_argument("--dataset", required=True, help="recipe name or path of the logged data")
    sel.add_argument(
        "--estimator",
        default="fqe",
        help="fqe|is|pdis|wis|wpdis|dr|mb, comma-separated (the first ranks), or all",
    )
    sel.add_argument("--discount", type=float, default=0.99, help="γ of the values (all runs)")
    sel.add_argument(
        "--episodes", type=int, default=10, help="rollouts per run for its true value (0: none)"
    )
    sel.add_argument("--seed", type=int, default=0)
    sel.add_argument(
        "--set", action="append", default=[], metavar="KEY=VALUE", help="OPEConfig field"
    )
    sel.add_argument("--json", action="store_true", help="print the whole selection record")
    sel.add_argument("--no-progress", action="store_true", help="no progress bar")
    for name, text in (
        ("table", "print and write the score tables (Markdown and CSV)"),
        ("plot", "learning curves per dataset: mean and a band over seeds"),
        ("report", "a self-contained HTML page: tables, curves, every run's config"),
    ):
        bench_sub.add_parser(name, help=text).add_argument("results", type=Path)

    dg = sub.add_parser(
        "dagger", help="DAgger: BC on the learner's own states, labelled by a recipe's expert"
    )
    dg.add_argument("env_slug", help="recipe environment with a committed expert, e.g. pendulum")
    dg.add_argument("--iterations", type=int, default=10, help="rounds N (the first: expert)")
    dg.add_argument("--episodes-per-iteration", type=int, default=10, help="episodes per round")
    dg.add_argument(
        "--beta-decay",
        type=float,
        default=0.0,
        help="p in [0, 1]: round i executes the expert's action with probability p^i per step "
        "(0: the learner alone after round 0)",
    )
    dg.add_argument(
        "--steps-per-iteration",
        type=int,
        default=10_000,
        help="BC updates per round (from scratch)",
    )
    dg.add_argument("--eval-episodes", type=int, default=10, help="the learner's measurement")
    dg.add_argument("--horizon", type=int, help="cut collected and measured episodes at H steps")
    dg.add_argument(
        "--tolerance", type=float, default=0.1, help="disagreement: |Δa| beyond this (normalized)"
    )
    dg.add_argument("--seed", type=int, default=0)
    dg.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a BC Config field, e.g. hidden=64,64 (repeatable)",
    )
    dg.add_argument("--out", required=True, type=Path, help="run directory")
    dg.add_argument("--overwrite", action="store_true", help="replace an existing run")
    dg.add_argument("--no-progress", action="store_true", help="no progress bars")

    demo = sub.add_parser("demo", help=f"{DEMO_ALGO} on {DEMO_DATASET}: make, train, evaluate")
    demo.add_argument("--out", type=Path, default=Path("runs/demo"))
    demo.add_argument("--steps", type=int, default=DEMO_STEPS)
    demo.add_argument("--seed", type=int, default=0)
    _add_loop_options(demo)
    return parser


def _add_loop_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--eval-every", type=int, default=5_000)
    p.add_argument("--eval-episodes", type=int, default=10)
    p.add_argument("--chunk-size", type=int, default=1_000, help="updates fused per call")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")


def cmd_train(args) -> None:
    from offrl.algos import parse_overrides
    from offrl.training import train

    if args.steps is None and not args.resume:
        raise OffrlError("--steps is required (except with --resume)")
    summary = train(
        args.algo,
        args.dataset,
        steps=args.steps or 0,
        seed=args.seed,
        out=args.out,
        env=args.env,
        overrides=parse_overrides(args.set),
        eval_every=args.eval_every,
        eval_episodes=args.eval_episodes,
        chunk_size=args.chunk_size,
        resume=args.resume,
        overwrite=args.overwrite,
        clip_actions=args.clip_actions,
        progress=not args.no_progress,
        holdout=args.holdout,
        ope_estimators=args.ope,
        ope_config=parse_overrides(args.ope_set),
        task_defaults=not args.no_task_defaults,
    )
    _print_summary(summary, args.out)


def cmd_demo(args) -> None:
    from offrl.training import train

    out = _fresh_dir(args.out)  # a demo run never replaces an earlier result
    print(f"offrl demo: {DEMO_ALGO} on the {DEMO_DATASET} dataset ({args.steps} updates)")
    summary = train(
        DEMO_ALGO,
        DEMO_DATASET,
        steps=args.steps,
        seed=args.seed,
        out=out,
        eval_every=args.eval_every,
        eval_episodes=args.eval_episodes,
        chunk_size=args.chunk_size,
        progress=not args.no_progress,
    )
    _print_summary(summary, out)


def cmd_dagger(args) -> None:
    from offrl.algos import parse_overrides
    from offrl.dagger import dagger

    def show(r: dict) -> None:
        print(
            f"iteration {r['iteration']}: beta {r['beta']:.3g}, {r['labels']} labels; learner "
            f"return {r['return_mean']:.1f} ± {r['return_std']:.1f}, action MSE "
            f"{r['action_mse']:.4g}, disagreement {r['disagreement']:.3f}",
            flush=True,
        )

    summary = dagger(
        args.env_slug,
        iterations=args.iterations,
        episodes_per_iteration=args.episodes_per_iteration,
        beta_decay=args.beta_decay,
        steps_per_iteration=args.steps_per_iteration,
        seed=args.seed,
        out=args.out,
        overrides=parse_overrides(args.set),
        eval_episodes=args.eval_episodes,
        horizon=args.horizon,
        tolerance=args.tolerance,
        overwrite=args.overwrite,
        progress=not args.no_progress,
        callback=show,
    )
    d = summary["dagger"]
    print(
        f"expert (deterministic) return {d['expert_return_mean']:.1f} ± "
        f"{d['expert_return_std']:.1f}; best iteration {d['best_iteration']}"
    )
    _print_summary(summary, args.out)


def _fresh_dir(base: Path) -> Path:
    """`base` if it is absent or empty, else the first of base-1, base-2, ... that is."""
    candidate, n = base, 0
    while candidate.exists() and any(candidate.iterdir()):
        n += 1
        candidate = base.with_name(f"{base.name}-{n}")
    return candidate


def _print_summary(summary: dict, out: Path) -> None:
    score = summary["final_normalized_score"]
    if summary.get("evaluation") == "ope":
        for name, est in (summary.get("ope") or {}).items():
            lo, hi = est["ci"]
            print(
                f"{name} estimate on held-out episodes: {est['value']:.2f} "
                f"[{lo:.2f}, {hi:.2f}] (discount {est['discount']}; no environment)"
            )
    else:
        _print_returns(summary, score)
    print(f"{summary['updates_per_second']:,.0f} updates/s; {summary['wall_seconds']:.0f} s in all")
    applied = json.loads((out / "config.json").read_text()).get("task_defaults")
    if applied:
        fields = ", ".join(f"{k}={v}" for k, v in applied.items())
        print(f"the reference's settings for this task: {fields} (--no-task-defaults: none)")
    print(f"run directory: {out.resolve()}")


def _print_returns(summary: dict, score: float | None) -> None:
    print(
        f"final return {summary['final_return']:.1f} ± {summary['final_return_std']:.1f} "
        f"over {summary['eval_episodes']} episodes in {summary['env_id']}; normalized score "
        + (f"{score:.1f}" if score is not None else "n/a (no reference returns)")
    )


def cmd_ope(args) -> None:
    """Estimates of the run's deterministic policy on the whole given dataset: the
    evaluator training uses on its held-out episodes."""
    from offrl import ope, recipes
    from offrl.algos import parse_overrides
    from offrl.evaluate import OPEEvaluator
    from offrl.policy import load_policy

    estimators = ope.check_estimators(args.estimator)
    config = ope.config_from_overrides(parse_overrides(args.set))
    policy = load_policy(args.run_dir)
    data = recipes.load_dataset(args.dataset)
    algo, cfg, state = policy.algo, policy.cfg, policy.state
    discount = args.discount if args.discount is not None else getattr(cfg, "discount", 0.99)
    results = OPEEvaluator(data, estimators, discount, config)(algo, cfg, state, args.seed)
    print(ope.format_results(results["ope"], as_json=args.json))


def cmd_model(args) -> None:
    from offrl import dynamics, recipes
    from offrl.overrides import parse_overrides, replace_fields

    if args.model_command == "eval":
        model, _ = dynamics.load(args.model_dir)
        data = recipes.load_dataset(args.dataset)
        if (data.obs_dim, data.act_dim) != (model.obs_dim, model.act_dim):
            raise ConfigError(
                f"{args.dataset}: obs/act dimensions ({data.obs_dim}, {data.act_dim}) differ "
                f"from the model's ({model.obs_dim}, {model.act_dim})"
            )
        scores = dynamics.evaluate(model, data)
        if args.json:
            print(json.dumps(scores))
            return
        print(f"{'output':<12} {'MSE':>12} {'NLL (nats)':>12}")
        names = dynamics.output_names(model.obs_dim)
        for name, mse, nll in zip(names, scores["mse"], scores["nll"]):
            print(f"{name:<12} {mse:12.5g} {nll:12.4f}")
        return
    cfg = replace_fields(dynamics.DynamicsConfig, parse_overrides(args.set), "dynamics config")
    dynamics.check_config(cfg)
    if (args.out / dynamics.MODEL_FILE).exists() and not args.overwrite:
        raise ConfigError(f"{args.out}: a model is already there; --overwrite to replace it")
    data = recipes.load_dataset(args.dataset)
    from tqdm.auto import tqdm

    bar = tqdm(desc="dynamics", unit="epoch", disable=args.no_progress)

    def progress(h: dict) -> None:
        bar.update(1)
        bar.set_postfix(nll=f"{h['train_nll']:.3f}", mse=f"{min(h['holdout_mse']):.4g}")

    model, record = dynamics.train(cfg, data, args.seed, progress)
    bar.close()
    dynamics.save(
        args.out, model, cfg, {"dataset": args.dataset, "env_id": data.env_id, "record": record}
    )
    mse = ", ".join(f"{record['holdout_mse'][i]:.4g}" for i in record["elites"])
    print(
        f"{record['epochs']} epochs ({record['stopped']}); held-out "
        f"{record['holdout_transitions']} transitions; elites {record['elites']} with MSE "
        f"{mse} (standardized); "
        f"termination: {record['termination']}"
    )
    if "warning" in record:
        print(f"warning: {record['warning']}", file=sys.stderr)
    print(f"model in {args.out}")


def cmd_export(args) -> None:
    from offrl.export import export_main

    print(export_main(args.run_dir, args.out, args.format, args.overwrite))


def cmd_eval(args) -> None:
    from offrl.policy import load_policy

    if args.episodes <= 0:
        raise OffrlError("--episodes must be positive")
    policy = load_policy(args.run_dir)
    result = policy.evaluate(args.episodes, args.seed)
    score = result.get("normalized_score")
    print(
        f"{args.run_dir} (step {policy.step}) in {policy.env_id}: return "
        f"{result['return_mean']:.1f} ± {result['return_std']:.1f} over {args.episodes} episodes"
        + (f"; normalized score {score:.1f}" if score is not None else "")
    )


def cmd_data(args) -> None:
    from offrl import recipes

    if args.data_command == "list":
        rows = [recipes.describe(name) for name in recipes.names()]
        if args.json:
            print("\n".join(json.dumps(row) for row in rows))
        else:
            _print_recipes(rows)
        return
    if args.data_command in ("import", "export"):
        return _data_table(args)
    if args.data_command == "make":
        for name in args.names:
            recipes.split_name(name)  # every name is checked before any work
        for name in args.names:
            if recipes.is_cached(name) and not args.overwrite:
                print(f"{name}: already cached at {recipes.cache_path(name)} (--overwrite remakes)")
                continue
            stale = recipes.cache_path(name).exists()  # made from other policies, or partial
            path, seconds = recipes.make(name, args.overwrite or stale, args.replay_run)
            print(f"{name}: made in {seconds:.1f} s at {path}")
        return
    info = recipes.load_dataset(args.source).info()
    if args.json:
        print(json.dumps(info, indent=2))
        return
    width = max(map(len, info))
    for key, value in info.items():
        print(f"{key:{width}s}  {value}")


def _data_table(args) -> None:
    from offrl import recipes
    from offrl.data import io, tables

    if args.data_command == "export":
        path = tables.export_table(
            recipes.load_dataset(args.source), args.out, args.format, args.overwrite
        )
        print(f"{args.source}: written to {path}")
        return
    tables.import_table(
        args.file,
        args.obs,
        args.act,
        args.reward,
        args.episode,
        out=args.out,
        terminal=args.terminal,
        timeout=args.timeout,
        next_obs=args.next_obs,
        behavior_log_prob=args.behavior_log_prob,
        step=args.step,
        env_id=args.env,
        overwrite=args.overwrite,
    )
    print(f"{args.file}: {tables.describe_import(io.read(args.out))}; written to {args.out}")


def _print_recipes(rows: list[dict]) -> None:
    print(f"{'name':40s} {'transitions':>11s}  {'behaviour return':31s} {'refs':5s} cached")
    for r in rows:
        cached = "no"
        if r["cached"]:
            score = r.get("normalized_return_mean")
            cached = f"yes: return {r['return_mean']:.1f}" + (
                f", normalized {score:.1f}" if score is not None else ""
            )
        refs = _refs_label(r["references"])
        size, behavior = f"{r['transitions']:>11,d}", f"{r['behavior_return']:31s}"
        print(f"{r['name']:40s} {size}  {behavior} {refs:5s} {cached}")
    for source in sorted({r["references"]["source"] for r in rows}):
        print(f"refs {_refs_label({'source': source})}: {source}")


def _refs_label(refs: dict) -> str:
    return "d4rl" if refs["source"].startswith("D4RL") else "offrl"


def cmd_behavior(args) -> None:
    if args.behavior_command == "publish":
        return _publish(args)
    if args.behavior_command == "pack":
        return _pack(args)
    from offrl.algos import make_algo_config, parse_overrides

    algo = args.algo or _default_behavior_algo(args.env)
    overrides = parse_overrides(args.set)
    make_algo_config(algo, overrides)  # unknown or mistyped fields fail here, before a run
    if algo in DISCRETE_BEHAVIOR:
        from offrl.behavior.online_dqn import default_config
        from offrl.behavior.online_dqn import train_dqn_behavior as train
    else:
        from offrl.behavior.online import default_config
        from offrl.behavior.online import train_behavior as train
    bc = default_config(
        args.env,
        algo=algo,
        steps=args.steps,
        seed=args.seed,
        start_steps=args.start_steps,
        snapshot_every=args.snapshot_every,
        checkpoint_every=args.checkpoint_every,
        algo_config=overrides or None,
    )
    slug = args.env.replace("/", "-")
    out = args.out or Path("runs/behavior") / f"{slug}-{algo}-seed{args.seed}"
    summary = train(bc, out, resume=args.resume, progress=not args.no_progress)
    last = summary["snapshots"][-1] if summary["snapshots"] else {}
    print(
        f"{args.env} {algo}: {summary['steps']} steps, {summary['steps_per_second']:.0f} "
        "steps/s; last snapshot "
        f"return {last.get('return_mean', float('nan')):.1f}; run directory {out}"
    )


def _pack(args) -> None:
    from offrl.behavior.online import pack_run

    try:
        steps = [int(s) for s in args.snapshots.split(",") if s.strip()]
    except ValueError:
        raise ConfigError(f"--snapshots: {args.snapshots!r} is not a list of steps") from None
    packed = pack_run(args.run_dir, args.out, steps)
    print(
        f"{args.out}: resumable at step {packed['step']}, actions {packed['actions_bytes']:,} "
        f"bytes, {len(packed['snapshots'])} snapshots"
    )


def _default_behavior_algo(env_id: str) -> str:
    """sac for a Box action space, dqn for a Discrete one (an unknown id fails here)."""
    import gymnasium as gym

    from offrl.envs.rollout import env_spaces

    discrete = isinstance(env_spaces(env_id)[1], gym.spaces.Discrete)
    return DISCRETE_BEHAVIOR[0] if discrete else CONTINUOUS_BEHAVIOR[0]


def _publish(args) -> None:
    from offrl import recipes

    if args.env not in recipes.ENVS:
        raise OffrlError(f"--env {args.env!r}: choose one of {', '.join(recipes.ENVS)}")
    if args.role == DQN_ROLE:
        return _publish_dqn(args)
    from offrl.recipes.publish import publish

    agent = publish(
        args.run_dir, args.env, args.role, args.episodes, args.candidates, args.select_episodes
    )
    for label, snap in agent["snapshots"].items():
        ret = snap["return"]
        print(
            f"{args.env} {args.role} {label}: step {snap['step']}, return {ret['mean']:.1f} ± "
            f"{ret['std']:.1f} over {ret['episodes']} episodes"
        )
    replay = agent["replay"]
    ret = replay["return"]
    print(
        f"replay: the buffer to step {replay['until']}, {replay['episodes']} training episodes "
        f"of return {ret['mean']:.1f} ± {ret['std']:.1f}"
    )


def _publish_dqn(args) -> None:
    from offrl.recipes.publish_dqn import publish_dqn

    entry = publish_dqn(args.run_dir, args.env, args.episodes, args.noisy_fraction)
    agent = entry["agents"][DQN_ROLE]
    for label, snap in agent["snapshots"].items():
        ret = snap["return"]
        print(
            f"{args.env} {label}: step {snap['step']}, return {ret['mean']:.1f} ± "
            f"{ret['std']:.1f} at ε = {snap['epsilon']} over {ret['episodes']} episodes"
        )
    r, steps = entry["random_return"], agent["replay"]["steps"]
    print(f"{args.env} random: {r['mean']:.1f} ± {r['std']:.1f}; replay {steps} steps")


def cmd_bench(args) -> int:
    if args.bench_command == "run":
        return _bench_run(args)
    if args.bench_command == "select":
        return _bench_select(args)
    if args.bench_command == "table":
        from offrl.bench.tables import write_tables

        print(write_tables(args.results))
        print(f"\nwritten: {args.results / 'table.md'}, table_final.csv, table_best.csv")
    elif args.bench_command == "plot":
        from offrl.bench.plots import plot_learning_curves

        for path in plot_learning_curves(args.results):
            print(path)
    else:
        from offrl.bench.report import write_report

        print(write_report(args.results))
    return 0


def _bench_run(args) -> int:
    from offrl.bench.sweep import run_sweep

    results, outcomes = run_sweep(
        args.spec,
        out=args.out,
        address=args.address,
        num_cpus=args.num_cpus,
        progress=not args.no_progress,
    )
    counts = {s: sum(o.status == s for o in outcomes) for s in ("skipped", "completed")}
    counts |= {s: sum(o.status == s for o in outcomes) for s in ("diverged", "failed")}
    print(", ".join(f"{n} {s}" for s, n in counts.items() if n) or "nothing to run")
    for o in outcomes:
        if o.status == "failed":
            print(f"failed: {o.dir}: {o.error}", file=sys.stderr)
    print(f"results in {results}; the tables: `offrl bench table {results}`")
    return 1 if counts["failed"] else 0


def _bench_select(args) -> int:
    from offrl import ope
    from offrl.algos import parse_overrides
    from offrl.bench.select import Settings, markdown, select_runs

    if args.episodes < 0:
        raise ConfigError(f"--episodes must be >= 0, got {args.episodes}")
    if not 0.0 < args.discount <= 1.0:
        raise ConfigError(f"--discount must be in (0, 1], got {args.discount}")
    settings = Settings(
        dataset=args.dataset,
        estimators=ope.check_estimators(args.estimator),
        discount=args.discount,
        episodes=args.episodes,
        seed=args.seed,
        config=ope.config_from_overrides(parse_overrides(args.set)),
    )
    record = select_runs(args.results, settings, progress=not args.no_progress)
    print(json.dumps(record) if args.json else markdown(record), end="" if not args.json else "\n")
    return 0


COMMANDS = {
    "bench": cmd_bench,
    "behavior": cmd_behavior,
    "train": cmd_train,
    "eval": cmd_eval,
    "ope": cmd_ope,
    "export": cmd_export,
    "model": cmd_model,
    "data": cmd_data,
    "dagger": cmd_dagger,
    "demo": cmd_demo,
}


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        status = COMMANDS[args.command](args)
    except OffrlError as exc:
        print(f"offrl: error: {exc}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # e.g. `offrl data info X | head`: stop quietly
        sys.stdout = open(os.devnull, "w")  # noqa: SIM115 - silence the flush at exit
        return 0
    except KeyboardInterrupt:
        again = (
            "finished runs are kept; the same `offrl bench run` resumes the sweep"
            if args.command == "bench"
            else "a run continues from its last checkpoint with --resume"
        )
        print(f"offrl: interrupted; {again}", file=sys.stderr)
        return 130
    return status or 0


if __name__ == "__main__":
    sys.exit(main())
