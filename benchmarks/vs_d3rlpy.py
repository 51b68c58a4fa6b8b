"""offrl against d3rlpy: the same algorithm, data, number of updates and seeds in both.

For every (dataset, algorithm, seed) this trains offrl (`offrl.train`, an ordinary run
directory under OUT/offrl) and d3rlpy (`fit` on the same transitions as an MDPDataset, with
the hyper-parameters of offrl's Config defaults), evaluates both with offrl's evaluation
(`offrl.evaluate.evaluate`: the same environment, episodes and episode seeds), and times both.

    python benchmarks/vs_d3rlpy.py --algos bc td3_bc iql cql \
        --datasets hopper-medium --seeds 0 1 2 --steps 100000 --out runs/vs_d3rlpy

Each finished (library, algorithm, dataset, seed) is stored as OUT/results/LIB/DATASET/
ALGO/seedN.json and skipped when present, so an interrupted comparison continues where it
stopped. Prints a Markdown table (rows: dataset and algorithm) and writes it to
OUT/vs_d3rlpy.md. Needs d3rlpy and torch (the .venv-bench environment, see README.md).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jax
import numpy as np

import offrl
from offrl.algos import make_algo_config, parse_overrides
from offrl.atomic import atomic_write, atomic_write_json
from offrl.data.transforms import make_transforms
from offrl.envs.registry import reference_scores
from offrl.errors import DivergenceError
from offrl.evaluate import evaluate
from offrl.training import eval_seed

sys.path.insert(0, str(Path(__file__).resolve().parent))  # benchmarks/ is not a package
import speed  # noqa: E402  (its d3rlpy import and MDPDataset helpers)

LIBS = ("offrl", "d3rlpy")

# --------------------------------------------------------------------------- d3rlpy configs
#
# One entry per algorithm: (d3rlpy, offrl Config, encoder factory) -> the d3rlpy
# Config with the same hyper-parameters. Batch size and the observation/action/reward
# scalers are added by `d3rlpy_algo` for every algorithm. Adding an algorithm d3rlpy also
# has is one entry here (and, when some setting has no d3rlpy counterpart, one in UNMATCHED).


def _bc(d3, c, enc):
    policy_type = {"deterministic": "deterministic", "gaussian": "stochastic"}[c.variant]
    return d3.algos.BCConfig(encoder_factory=enc, learning_rate=c.lr, policy_type=policy_type)


def _td3_bc(d3, c, enc):
    return d3.algos.TD3PlusBCConfig(**_td3_kwargs(c, enc), alpha=c.alpha)


def _iql(d3, c, enc):
    schedule = None
    if c.actor_lr_decay_steps > 0:
        schedule = d3.optimizers.CosineAnnealingLRFactory(T_max=c.actor_lr_decay_steps)
    return d3.algos.IQLConfig(
        actor_encoder_factory=enc,
        critic_encoder_factory=enc,
        value_encoder_factory=enc,
        actor_learning_rate=c.actor_lr,
        critic_learning_rate=c.critic_lr,  # d3rlpy: one Adam for Q and V (offrl's value_lr)
        actor_optim_factory=d3.optimizers.AdamFactory(lr_scheduler_factory=schedule),
        gamma=c.discount,
        tau=c.tau,
        n_critics=2,
        expectile=c.expectile,
        weight_temp=c.beta,
        max_weight=c.max_weight,
    )


def _cql(d3, c, enc):
    return d3.algos.CQLConfig(
        actor_encoder_factory=enc,
        critic_encoder_factory=enc,
        actor_learning_rate=c.actor_lr,
        critic_learning_rate=c.critic_lr,
        temp_learning_rate=c.actor_lr if c.auto_alpha else 0.0,  # offrl: log α with actor_lr
        initial_temperature=c.init_alpha,
        # α' (the Lagrange multiplier): fixed at 1 unless with_lagrange, as offrl; d3rlpy's
        # penalty is α' · α_cql (E[logsumexp - Q] - τ), a constant apart from offrl's.
        alpha_learning_rate=c.critic_lr if c.with_lagrange else 0.0,
        initial_alpha=1.0,
        alpha_threshold=c.target_action_gap,
        conservative_weight=c.cql_alpha,
        n_action_samples=c.num_sampled_actions,
        soft_q_backup=c.backup_entropy,
        max_q_backup=c.max_q_backup,
        gamma=c.discount,
        tau=c.tau,
        n_critics=2,
    )


def _sac(d3, c, enc):
    return d3.algos.SACConfig(
        actor_encoder_factory=enc,
        critic_encoder_factory=enc,
        actor_learning_rate=c.actor_lr,
        critic_learning_rate=c.critic_lr,
        temp_learning_rate=c.actor_lr if c.auto_alpha else 0.0,
        initial_temperature=c.init_alpha,
        gamma=c.discount,
        tau=c.tau,
        n_critics=2,
    )


def _td3(d3, c, enc):
    return d3.algos.TD3Config(**_td3_kwargs(c, enc))


def _td3_kwargs(c, enc) -> dict:
    """TD3's settings, shared by TD3 and TD3+BC (and by offrl's two Configs)."""
    return {
        "actor_encoder_factory": enc,
        "critic_encoder_factory": enc,
        "actor_learning_rate": c.actor_lr,
        "critic_learning_rate": c.critic_lr,
        "gamma": c.discount,
        "tau": c.tau,
        "n_critics": c.num_critics,
        "target_smoothing_sigma": c.policy_noise,
        "target_smoothing_clip": c.noise_clip,
        "update_actor_interval": c.policy_freq,
    }


def _ddpg(d3, c, enc):
    return d3.algos.DDPGConfig(
        actor_encoder_factory=enc,
        critic_encoder_factory=enc,
        actor_learning_rate=c.actor_lr,
        critic_learning_rate=c.critic_lr,
        gamma=c.discount,
        tau=c.tau,
        n_critics=c.num_critics,
    )


D3RLPY_CONFIGS: dict[str, Callable[..., Any]] = {
    "bc": _bc,
    "td3_bc": _td3_bc,
    "iql": _iql,
    "cql": _cql,
    "sac": _sac,
    "td3": _td3,
    "ddpg": _ddpg,
}

# What cannot be matched: (condition on offrl's Config, why). A condition true for the
# Config in use is printed under the table and stored in the result.
UNMATCHED: dict[str, list[tuple[Callable[[Any], bool], str]]] = {
    "bc": [
        (
            lambda c: c.variant == "gaussian",
            "gaussian BC: d3rlpy's stochastic BC has a state-dependent log σ in [-4, 15]",
        )
    ],
    "iql": [
        (
            lambda c: c.value_lr != c.critic_lr,
            "value_lr: d3rlpy steps Q and V with one optimizer at critic_learning_rate",
        ),
        (
            lambda c: True,
            "log σ: d3rlpy's state-independent log σ is squashed by a sigmoid into [-5, 2] "
            "(so it starts at -1.5), offrl's is clipped to [-5, 2] (starts at 0); d3rlpy "
            "steps V together with Q (V's loss reads the target Q, Q's target the old V)",
        ),
    ],
    "cql": [
        (
            lambda c: True,
            "target action: d3rlpy's deterministic backup uses tanh(mean of π(·|s')), "
            "offrl's a sample a' ~ π(·|s') (as the CQL reference)",
        ),
        (lambda c: c.target_entropy is not None, "target_entropy: d3rlpy's is fixed at -|A|"),
        (lambda c: c.temperature != 1.0, "temperature: d3rlpy's logsumexp has T = 1"),
        (lambda c: not c.importance_sampling, "importance_sampling=False: d3rlpy has only IS"),
        (lambda c: c.bc_warmup_steps > 0, "bc_warmup_steps: d3rlpy's CQL has no BC warm-up"),
    ],
}
COMMON_UNMATCHED = (
    "initialization: torch's default (Kaiming-uniform) layers in d3rlpy, flax's LeCun-normal "
    "in offrl; d3rlpy's MDPDataset drops the last transition of every episode that ends in a "
    "timeout (it has no next observation for it), offrl keeps it"
)


def unmatched(name: str, cfg) -> list[str]:
    return [why for cond, why in UNMATCHED.get(name, []) if cond(cfg)]


def d3rlpy_algo(d3rlpy, name: str, cfg, ds):
    """d3rlpy's `name` with offrl's Config `cfg`: the same networks, rates and
    preprocessing. offrl's transforms give the numbers: observations standardized with the
    same mean and std (+1e-3) where offrl normalizes, actions mapped from the environment's
    bounds to [-1, 1] (d3rlpy's predict maps them back), rewards scaled where offrl scales.
    """
    tf = make_transforms(ds, cfg.normalize_obs, cfg.reward_scaling)
    P = d3rlpy.preprocessing
    obs_scaler = act_scaler = reward_scaler = None
    if cfg.normalize_obs:
        # offrl's std already holds the + 1e-3; d3rlpy divides by (std + eps).
        obs_scaler = P.StandardObservationScaler(
            mean=np.asarray(tf.obs_mean), std=np.asarray(tf.obs_std), eps=0.0
        )
    low, high = np.asarray(tf.act_low), np.asarray(tf.act_high)
    if not (np.all(low == -1.0) and np.all(high == 1.0)):
        act_scaler = P.MinMaxActionScaler(minimum=low, maximum=high)
    if float(tf.reward_scale) != 1.0:
        reward_scaler = P.MultiplyRewardScaler(multiplier=float(tf.reward_scale))
    enc = d3rlpy.models.VectorEncoderFactory(hidden_units=list(cfg.hidden))
    config = dataclasses.replace(
        D3RLPY_CONFIGS[name](d3rlpy, cfg, enc),
        batch_size=cfg.batch_size,
        observation_scaler=obs_scaler,
        action_scaler=act_scaler,
        reward_scaler=reward_scaler,
    )
    return config.create(device="cpu:0")


def d3rlpy_policy(algo):
    """d3rlpy's greedy action as offrl's batch policy (environment units: the action
    scaler's reverse transform is part of predict)."""

    def policy(obs: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        return algo.predict(np.asarray(obs, np.float32))

    return policy


# --------------------------------------------------------------------------- runs


def result_path(out: Path, lib: str, dataset: str, algo: str, seed: int) -> Path:
    return out / "results" / lib / dataset / algo / f"seed{seed}.json"


def references(ds) -> tuple[float, float]:
    if ds.ref_min_score is not None and ds.ref_max_score is not None:
        return ds.ref_min_score, ds.ref_max_score
    return reference_scores(ds.env_id)


def run_offrl(args, dataset: str, algo: str, seed: int) -> dict:
    run_dir = args.out / "offrl" / dataset / algo / f"seed{seed}"
    try:
        summary = offrl.train(
            algo,
            dataset,
            steps=args.steps,
            seed=seed,
            out=run_dir,
            eval_every=args.eval_every or args.steps,
            eval_episodes=args.eval_episodes,
            overrides=parse_overrides(args.set),
            overwrite=True,
            progress=False,
        )
    except DivergenceError as exc:
        return {"status": "diverged", "error": str(exc), "run_dir": str(run_dir)}
    records = [json.loads(ln) for ln in (run_dir / "metrics.jsonl").read_text().splitlines()]
    evals = [r for r in records if r["kind"] == "eval"]
    return {
        "status": summary["status"],
        "run_dir": str(run_dir),
        "env_id": summary["env_id"],
        "final_return": summary["final_return"],
        "final_normalized_score": summary["final_normalized_score"],
        "evals": [{k: e[k] for k in e if k != "kind"} for e in evals],
        "wall_seconds": summary["wall_seconds"],
        "train_seconds": summary["train_seconds"],
        "updates_per_second": summary["updates_per_second"],
    }


def run_d3rlpy(args, libs, ds, d3_data, dataset: str, algo: str, seed: int) -> dict:
    d3rlpy, _ = libs
    cfg = make_algo_config(algo, parse_overrides(args.set))  # as offrl.train makes it
    d3rlpy.seed(seed)
    model = d3rlpy_algo(d3rlpy, algo, cfg, ds)
    ref_min, ref_max = references(ds)
    every = args.eval_every or args.steps
    evals: list[dict] = []
    eval_seconds = 0.0

    def callback(_algo, _epoch: int, step: int) -> None:  # inside fit, as offrl's evals
        nonlocal eval_seconds
        if step % every == 0 or step == args.steps:
            start = time.perf_counter()
            policy = d3rlpy_policy(model)
            result = evaluate(
                policy, ds.env_id, args.eval_episodes, eval_seed(seed), ref_min, ref_max
            )
            eval_seconds += time.perf_counter() - start
            evals.append({"step": step, **result})

    start = time.perf_counter()
    model.fit(
        d3_data,
        n_steps=args.steps,
        n_steps_per_epoch=args.steps,
        experiment_name=f"vs_offrl_{algo}",
        with_timestamp=False,
        logger_adapter=d3rlpy.logging.NoopAdapterFactory(),
        show_progress=False,
        save_interval=10**9,
        evaluators=None,
        callback=callback,
    )
    wall = time.perf_counter() - start
    final = evals[-1]
    return {
        "status": "completed",
        "env_id": ds.env_id,
        "final_return": final["return_mean"],
        "final_normalized_score": final.get("normalized_score"),
        "evals": evals,
        "wall_seconds": wall,
        "train_seconds": wall - eval_seconds,
        "eval_seconds": eval_seconds,
        "updates_per_second": args.steps / (wall - eval_seconds),
        "torch_threads": args.torch_threads,
        "unmatched": unmatched(algo, cfg),
    }


def check_transitions(ds) -> str:
    """d3rlpy rebuilds s' from the next row of the episode; say if offrl's s' differ."""
    ends = ds.terminals | ds.timeouts
    inner = ~ends[:-1]
    same = np.all(np.isclose(ds.next_observations[:-1], ds.observations[1:]), axis=1)
    bad = int(np.sum(inner & ~same))
    return f"{bad} transitions whose s' is not the next row's s" if bad else ""


def run_all(args, libs) -> dict:
    d3rlpy = libs[0]
    results: dict = {lib: {} for lib in LIBS}
    for dataset in args.datasets:
        ds = d3_data = None
        for algo in args.algos:
            for seed in args.seeds:
                for lib in LIBS:
                    path = result_path(args.out, lib, dataset, algo, seed)
                    overrides = parse_overrides(args.set)
                    result = json.loads(path.read_text()) if path.exists() else None
                    if result is None or result.get("overrides", {}) != overrides:
                        started = time.perf_counter()
                        if lib == "offrl":
                            result = run_offrl(args, dataset, algo, seed)
                        else:
                            if d3_data is None:
                                ds = offrl.load_dataset(dataset)
                                if ds.env_id is None:
                                    raise SystemExit(f"{dataset}: the dataset names no env")
                                t0 = time.perf_counter()
                                d3_data = speed.d3rlpy_dataset(d3rlpy, ds)
                                print(
                                    f"{dataset}: MDPDataset built in "
                                    f"{time.perf_counter() - t0:.1f} s",
                                    file=sys.stderr,
                                )
                                warn = check_transitions(ds)
                                if warn:
                                    print(f"{dataset}: warning: {warn}", file=sys.stderr)
                            result = run_d3rlpy(args, libs, ds, d3_data, dataset, algo, seed)
                        result |= {"library": lib, "dataset": dataset, "algo": algo}
                        result |= {"seed": seed, "steps": args.steps, "overrides": overrides}
                        result["eval_episodes"] = args.eval_episodes
                        atomic_write_json(path, result)
                        score = result.get("final_normalized_score")
                        print(
                            f"{dataset} {algo} seed {seed} {lib}: "
                            f"{'—' if score is None else f'{score:.1f}'} "
                            f"({time.perf_counter() - started:.0f} s)",
                            file=sys.stderr,
                        )
                    results[lib].setdefault((dataset, algo), []).append(result)
    return results


# --------------------------------------------------------------------------- report


def _scores(rs: list[dict]) -> np.ndarray:
    s = [r.get("final_normalized_score") for r in rs]
    return np.array([np.nan if v is None else v for v in s], float)


def _mean(rs: list[dict], key: str) -> float:
    return float(np.mean([r[key] for r in rs])) if rs and all(key in r for r in rs) else np.nan


def _score_cell(rs: list[dict]) -> str:
    s = _scores(rs)
    return "—" if not s.size else f"{s.mean():.1f} ± {s.std():.1f}"


def _sec(x: float) -> str:
    return "—" if not np.isfinite(x) else f"{x:,.1f}"


def _ratio(d3: float, ours: float) -> str:
    return "—" if not (np.isfinite(d3) and np.isfinite(ours) and ours) else f"{d3 / ours:.2f}x"


def tables(results: dict, args) -> str:
    keys = list(dict.fromkeys([*results["offrl"], *results["d3rlpy"]]))
    lines = [
        f"Final normalized score, mean ± std over {len(args.seeds)} seed(s), {args.steps:,} "
        f"updates, {args.eval_episodes} evaluation episodes; offrl's Config defaults in both "
        f"libraries{' with ' + ', '.join(args.set) if args.set else ''}; "
        f"torch threads {args.torch_threads}. Wall s: offrl.train's wall_seconds "
        "(dataset load, compilation, updates, evaluations, checkpoints); d3rlpy's fit "
        "(updates and evaluations). Speed ratio: d3rlpy wall / offrl wall.",
        "",
        "| dataset | algo | offrl score | d3rlpy score | offrl wall s | d3rlpy wall s "
        "| speed ratio |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    for key in keys:
        o, d = results["offrl"].get(key, []), results["d3rlpy"].get(key, [])
        ow, dw = _mean(o, "wall_seconds"), _mean(d, "wall_seconds")
        lines.append(
            f"| {key[0]} | {key[1]} | {_score_cell(o)} | {_score_cell(d)} | {_sec(ow)} "
            f"| {_sec(dw)} | {_ratio(dw, ow)} |"
        )
    lines += [
        "",
        "Updates only (offrl: the compiled chunks' time, compilation excluded; d3rlpy: fit "
        "less its evaluations), mean seconds:",
        "",
        "| dataset | algo | offrl train s | d3rlpy train s | ratio |",
        "|---|---|---:|---:|---:|",
    ]
    for key in keys:
        o, d = results["offrl"].get(key, []), results["d3rlpy"].get(key, [])
        ot, dt = _mean(o, "train_seconds"), _mean(d, "train_seconds")
        lines.append(f"| {key[0]} | {key[1]} | {_sec(ot)} | {_sec(dt)} | {_ratio(dt, ot)} |")
    notes = {
        (key[1], why)
        for key, rs in results["d3rlpy"].items()
        for r in rs
        for why in r.get("unmatched", [])
    }
    lines += ["", "Not matched in d3rlpy:", f"- all: {COMMON_UNMATCHED}"]
    lines += [f"- {algo}: {why}" for algo, why in sorted(notes)]
    bad = [
        f"{r['library']} {r['dataset']} {r['algo']} seed {r['seed']}: {r['status']}"
        for by_key in results.values()
        for rs in by_key.values()
        for r in rs
        if r.get("status") != "completed"
    ]
    if bad:
        lines += ["", "Runs that did not complete:", *[f"- {b}" for b in bad]]
    return "\n".join(lines)


# --------------------------------------------------------------------------- main


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument(
        "--algos", nargs="+", default=["bc", "td3_bc", "iql", "cql"], choices=list(D3RLPY_CONFIGS)
    )
    p.add_argument("--datasets", nargs="+", default=["pendulum-medium-expert"])
    p.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    p.add_argument("--steps", type=int, default=5_000, help="updates per run (both libraries)")
    p.add_argument(
        "--eval-every",
        type=int,
        default=None,
        help="evaluate every this many updates too (default: only at the end)",
    )
    p.add_argument("--eval-episodes", type=int, default=10)
    p.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override an offrl Config field, in both libraries (e.g. hidden=64,64)",
    )
    p.add_argument(
        "--torch-threads",
        type=int,
        default=1,
        help="torch.set_num_threads for d3rlpy (default 1: see benchmarks/README.md)",
    )
    p.add_argument("--out", type=Path, default=Path("runs/vs_d3rlpy"))
    p.add_argument("--json", metavar="FILE", help="also write every result as JSON here")
    args = p.parse_args(argv)
    if args.steps <= 0 or args.eval_episodes <= 0 or (args.eval_every or 1) <= 0:
        p.error("--steps, --eval-every and --eval-episodes must be positive")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    libs, why = speed.import_d3rlpy()
    if libs is None:
        print(
            f"d3rlpy is not importable ({why}); run this in .venv-bench (see benchmarks/README.md)",
            file=sys.stderr,
        )
        return 2
    d3rlpy, torch = libs
    torch.set_num_threads(args.torch_threads)
    env = {
        "cpu": speed.cpuinfo().get("model name", platform.processor()),
        "cores": speed.CORES,
        "load_avg_at_start": os.getloadavg(),
        "jax": jax.__version__,
        "d3rlpy": d3rlpy.__version__,
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "python": platform.python_version(),
    }
    load = env["load_avg_at_start"][0]
    print(
        f"{env['cpu']}, {env['cores']} cores, jax {env['jax']}, d3rlpy {env['d3rlpy']}, "
        f"torch {env['torch']} ({env['torch_threads']} thread(s)); load average at start "
        f"{load:.2f}" + (" — the machine is busy: wall times are noisy" if load > 0.5 else "")
    )
    sys.stdout.flush()
    results = run_all(args, libs)
    env["load_avg_at_end"] = os.getloadavg()
    text = tables(results, args)
    print("\n" + text)
    print(f"\nLoad average at end: {env['load_avg_at_end'][0]:.2f}")
    atomic_write(args.out / "vs_d3rlpy.md", (text + "\n").encode())
    if args.json:
        flat = [r for by_key in results.values() for rs in by_key.values() for r in rs]
        atomic_write_json(Path(args.json), {"environment": env, "results": flat})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
