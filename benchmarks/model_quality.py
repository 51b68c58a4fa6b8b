"""Model quality of the dynamics ensemble (issue 17): held-out error, and how errors compound
over h-step model rollouts against real rollouts of the same policy.

Per task, for a model of `offrl model train DATASET --out DIR`:
- **held-out MSE**: the elites' MSE on the model's own held-out transitions (standardized
  targets; recorded at training time, dynamics.json's record), mean and range over elites;
- **compounding error**: `--episodes` real episodes of each committed behaviour snapshot
  (medium and expert: the policies the datasets come from, sampling as when they were
  logged), up to `--horizon` steps. From each episode's first state the model replays the
  episode's own actions open-loop (so the error is the model's alone, not the policy's
  reaction to it), one step at a time, from its own predictions:
  - `mean`: the elites' average mean (Δs, r), no noise;
  - `sample`: a random elite's Gaussian sample per step, as MOPO's rollouts draw it.
  The error at step h is the RMS over observation dimensions of (ŝ_h − s_h) / σ, σ the
  dataset's per-dimension observation std, averaged over the episodes still alive at h.
  The one-step error (each prediction from the real s_{h−1}) is printed beside it.

    python benchmarks/model_quality.py --tasks halfcheetah walker2d \
        --model halfcheetah=runs/ope_bench/models/halfcheetah \
        --model walker2d=runs/ope_bench/models/walker2d

Writes OUT/TASK.json and the figure benchmarks/figures/model_quality.png.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from offrl import dynamics, recipes
from offrl.atomic import atomic_write_json
from offrl.envs.rollout import make_env
from offrl.recipes.agents import snapshot_policy

FIGURES = Path(__file__).parent / "figures"
DATASETS = {  # task: the dataset its model is trained on (the OPE benchmark's)
    "hopper": "hopper-medium-expert",
    "walker2d": "walker2d-medium-expert",
    "halfcheetah": "halfcheetah-medium-expert",
    "ant": "ant-medium-expert",
}
REPORT_AT = (1, 5, 10, 25, 50, 100)


def real_episodes(task: str, episodes: int, horizon: int, seed: int) -> list[dict]:
    """Real episodes of each committed snapshot: obs (T+1, d), act (T, a) in [-1, 1], rew."""
    agent = recipes.manifest()[task]["agents"]["sac"]
    env = make_env(recipes.manifest()[task]["env_id"])
    low, high = env.action_space.low, env.action_space.high
    out = []
    for r, (role, snap) in enumerate(agent["snapshots"].items()):
        policy = snapshot_policy(agent, snap["file"], deterministic=False, seed=seed + r)
        rng = np.random.default_rng(seed + r)
        for e in range(episodes):
            obs, _ = env.reset(seed=seed + 1000 * r + e)
            states, acts, rews = [obs], [], []
            for _ in range(horizon):
                act = policy(obs[None].astype(np.float32), rng)[0]
                obs, rew, terminated, truncated, _ = env.step(act)
                states.append(obs)
                acts.append(2 * (act - low) / (high - low) - 1)
                rews.append(rew)
                if terminated or truncated:
                    break
            out.append(
                {
                    "role": role,
                    "obs": np.array(states),
                    "act": np.array(acts),
                    "rew": np.array(rews),
                }
            )
    return out


def open_loop(model, obs0: np.ndarray, acts: np.ndarray, sample: bool, key: jax.Array):
    """Model states ŝ_1..ŝ_T and rewards from ŝ_0 = obs0 under the recorded actions."""

    def body(carry, xs):
        obs, key = carry
        act = xs
        key, k = jax.random.split(key)
        if sample:
            nxt, rew, _, _ = dynamics.step(model, k, obs[None], act[None])
            nxt, rew = nxt[0], rew[0]
        else:
            mean, _ = dynamics.predict(model, obs[None], act[None])
            delta = mean[model.elites].mean(axis=0)[0]
            nxt, rew = obs + delta[:-1], delta[-1]
        return (nxt, key), (nxt, rew)

    _, (states, rews) = jax.lax.scan(body, (jnp.asarray(obs0), key), jnp.asarray(acts))
    return states, rews


def one_step(model, obs: np.ndarray, acts: np.ndarray) -> np.ndarray:
    """ŝ_{t+1} from the real s_t: the elites' average mean."""
    mean, _ = dynamics.predict(model, jnp.asarray(obs[:-1]), jnp.asarray(acts))
    return obs[:-1] + np.asarray(mean[model.elites].mean(axis=0))[:, :-1]


def rms_error(pred: np.ndarray, real: np.ndarray, obs_std: np.ndarray) -> np.ndarray:
    """Per row: the RMS over dimensions of the error in dataset stds."""
    return np.sqrt(np.mean(((pred - real) / obs_std) ** 2, axis=1))


def compounding(model, episodes: list[dict], obs_std: np.ndarray, horizon: int, seed: int):
    """Per h = 1..horizon: mean error (mean, sample, one-step) over alive episodes, and count."""
    sums = {k: np.zeros(horizon) for k in ("mean", "sample", "one_step", "reward_mean")}
    alive = np.zeros(horizon)
    run = jax.jit(open_loop, static_argnums=3)
    for i, ep in enumerate(episodes):
        t = len(ep["act"])
        real = ep["obs"][1:]
        key = jax.random.key(seed + i)
        states_m, rew_m = map(np.asarray, run(model, ep["obs"][0], ep["act"], False, key))
        states_s = np.asarray(run(model, ep["obs"][0], ep["act"], True, key)[0])
        sums["mean"][:t] += rms_error(states_m, real, obs_std)
        sums["sample"][:t] += rms_error(states_s, real, obs_std)
        sums["one_step"][:t] += rms_error(one_step(model, ep["obs"], ep["act"]), real, obs_std)
        sums["reward_mean"][:t] += np.abs(rew_m - ep["rew"])
        alive[:t] += 1
    safe = np.maximum(alive, 1)
    return {k: (v / safe).tolist() for k, v in sums.items()} | {"alive": alive.tolist()}


def run_task(task: str, model_dir: Path, args) -> dict:
    model, meta = dynamics.load(model_dir)
    record = meta["record"]
    elite_mse = np.asarray(record["holdout_mse"])[np.asarray(record["elites"])]
    data = recipes.load_dataset(meta.get("dataset") or DATASETS[task])
    obs_std = np.maximum(data.observations.std(axis=0), 1e-6)
    episodes = real_episodes(task, args.episodes, args.horizon, args.seed)
    result = {
        "task": task,
        "model": str(model_dir),
        "dataset": meta.get("dataset"),
        "holdout_mse_elites": elite_mse.tolist(),
        "episodes": len(episodes),
        "horizon": args.horizon,
    } | compounding(model, episodes, obs_std, args.horizon, args.seed)
    return result


def print_table(results: list[dict]) -> None:
    cols = [h for h in REPORT_AT if any(h <= r["horizon"] for r in results)]
    print("| task | held-out MSE (elites) | error | " + " | ".join(f"h={h}" for h in cols) + " |")
    print("|---|---|---|" + "---:|" * len(cols))
    for r in results:
        mse = np.asarray(r["holdout_mse_elites"])
        head = f"{mse.mean():.3f} ({mse.min():.3f}–{mse.max():.3f})"
        for kind in ("one_step", "mean", "sample", "reward_mean"):
            cells = [
                f"{r[kind][h - 1]:.3f}" if h <= r["horizon"] and r["alive"][h - 1] else "—"
                for h in cols
            ]
            print(f"| {r['task']} | {head} | {kind} | " + " | ".join(cells) + " |")
            head = ""
        alive = [f"{int(r['alive'][h - 1])}" if h <= r["horizon"] else "—" for h in cols]
        print(f"| {r['task']} | | episodes alive | " + " | ".join(alive) + " |")


def figure(results: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(results), figsize=(4.5 * len(results), 3.4), squeeze=False)
    for ax, r in zip(axes[0], results):
        h = np.arange(1, r["horizon"] + 1)
        keep = np.asarray(r["alive"]) > 0
        for kind, label in (("one_step", "one step"), ("mean", "open loop, mean"),
                            ("sample", "open loop, sampled elite")):  # fmt: skip
            ax.plot(h[keep], np.asarray(r[kind])[keep], label=label)
        ax.set_yscale("log")
        ax.set_xlabel("model steps h")
        ax.set_title(f"{r['task']} ({r['dataset']})")
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel("RMS error of ŝ_h (dataset stds)")
    axes[0][0].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--tasks", nargs="+", default=["halfcheetah", "walker2d"], choices=DATASETS)
    p.add_argument("--model", action="append", default=[], metavar="TASK=DIR",
                   help="the model of a task (default runs/ope_bench/models/TASK)")  # fmt: skip
    p.add_argument("--episodes", type=int, default=10, help="per snapshot")
    p.add_argument("--horizon", type=int, default=100)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, default=Path("runs/model_quality"))
    args = p.parse_args(argv)
    dirs = {t: Path("runs/ope_bench/models") / t for t in args.tasks}
    dirs |= {k: Path(v) for k, v in (m.split("=", 1) for m in args.model)}
    args.out.mkdir(parents=True, exist_ok=True)
    results = []
    for task in args.tasks:
        result = run_task(task, dirs[task], args)
        atomic_write_json(args.out / f"{task}.json", result)
        results.append(result)
        print(f"{task}: done", flush=True)
    print_table(results)
    figure(results, FIGURES / "model_quality.png")
    print(json.dumps({"figure": str(FIGURES / "model_quality.png")}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
