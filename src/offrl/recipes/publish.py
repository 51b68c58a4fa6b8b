"""Turn a finished behaviour run into committed policy files and manifest entries.

For a SAC run (role "sac"), D4RL's procedure:
    expert   the best of the `candidates` snapshots of best exploring return in training's
             own 5-episode evaluations, each measured again over `select_episodes` sampling
             episodes on seeds apart from the reported ones (a 5-episode mean is too noisy
             to pick by: a hopper that falls once in five looks like one that never does)
    medium   among the snapshots before the expert, the `candidates` whose exploring
             return is nearest one third of the way from the random policy's return to the
             expert's (D4RL's "about 1/3 of the expert"), measured the same way; the nearest
    replay   the run's own replay buffer up to the medium snapshot (medium-replay)
For a DDPG run (roles "ddpg-noise0.5", "ddpg-noise0.1"): the expert is chosen the same way by
deterministic return (it acts without noise: imitation), and the replay is the whole buffer.
The replay is recorded by its length, its digest (sha256 of its dataset columns: a replay
made again is checked against it), the returns of the training episodes inside it, and the
run's configuration (what re-running it needs). Every published policy's return, and for a
SAC run the environment's references (the uniform random policy, the expert sampling as in
its dataset), are measured over `episodes` episodes from seed REFERENCE_SEED on.
Files go to offrl/recipes/policies/SLUG/ROLE/.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np

from offrl import recipes
from offrl.atomic import atomic_write_json
from offrl.behavior.online import (
    CONFIG_FILE,
    EPISODE_LOG,
    SNAPSHOT_LOG,
    buffer_dataset,
    read_buffer,
    read_jsonl,
    replay_digest,
    snapshot_path,
)
from offrl.envs.rollout import env_spaces, rollout
from offrl.errors import ConfigError
from offrl.recipes import agents

REFERENCE_SEED = 10_000  # reported returns: episodes from this seed on, apart from training's
SELECT_SEED = 20_000  # the candidates' measurements, apart from the reported ones
ROLES = (recipes.SAC, recipes.DDPG_FINAL, recipes.DDPG_CONCURRENT)


def measure(env_id: str, policy, episodes: int, seed: int = REFERENCE_SEED) -> dict:
    returns = rollout(env_id, policy, episodes, seed=seed).returns
    return {"mean": float(np.mean(returns)), "std": float(np.std(returns)), "episodes": episodes}


def publish(
    run_dir: str | Path,
    slug: str,
    role: str = recipes.SAC,
    episodes: int = 100,
    candidates: int = 5,
    select_episodes: int = 20,
) -> dict:
    """Copy the run's chosen snapshots under agents.POLICY_DIR and record them, its replay
    and (SAC) the environment's references in the manifest."""
    run_dir = Path(run_dir)
    for name, value in (("episodes", episodes), ("candidates", candidates)):
        if value < 1:
            raise ConfigError(f"{name} must be at least 1, got {value}")
    if select_episodes < 1:
        raise ConfigError(f"select_episodes must be at least 1, got {select_episodes}")
    config, snapshots = _finished_run(run_dir, slug, role)
    env = recipes.ENVS[slug]
    references: dict = {}
    obs_space, act_space = env_spaces(env.env_id)
    agent = {
        "name": role,
        "algo": config["algo"],
        "algo_config": config["algo_config"],
        "seed": config["seed"],
        "steps": snapshots[-1]["step"],
        "start_steps": config["start_steps"],
        "obs_dim": int(obs_space.shape[0]),
        "act_dim": int(act_space.shape[0]),
        "run_config": config,
    }
    deterministic = role != recipes.SAC  # DDPG's expert acts without noise (imitation)
    sub = f"{slug}/{role}"
    shutil.rmtree(agents.POLICY_DIR / sub, ignore_errors=True)  # a republished role's old files

    def policy_of(step: int, seed: int):
        file = copy_snapshot(run_dir, step, agents.POLICY_DIR, sub)
        return file, recipes.snapshot_policy(agent, file, deterministic, seed)

    def best(pool: list[dict], score) -> dict:
        """The candidate of best measured score (ties to the later step)."""
        measured = []
        for snap in pool:
            _, policy = policy_of(snap["step"], SELECT_SEED)
            ret = measure(env.env_id, policy, select_episodes, SELECT_SEED)["mean"]
            measured.append((score(ret), snap["step"], snap))
        return max(measured, key=lambda m: m[:2])[2]

    key = "return_mean" if deterministic else "explore_return_mean"
    top = sorted(snapshots, key=lambda s: (s[key], s["step"]))[-candidates:]
    expert = best(top, lambda ret: ret)
    chosen, measured = {"expert": expert}, {}
    if role == recipes.SAC:
        _, expert_policy = policy_of(expert["step"], REFERENCE_SEED)
        references["random_return"] = measure(
            env.env_id, recipes.uniform_policy(env.env_id), episodes
        )
        # the expert reference is the published expert's own return: measured once
        measured["expert"] = references["expert_return"] = measure(
            env.env_id, expert_policy, episodes
        )
        low, high = references["random_return"]["mean"], references["expert_return"]["mean"]
        target = low + (high - low) / 3
        earlier = [s for s in snapshots if s["step"] < expert["step"]]
        if not earlier:
            raise ConfigError(f"{run_dir}: no snapshot before the expert's to be the medium")
        near = sorted(earlier, key=lambda s: abs(s[key] - target))[:candidates]
        chosen["medium"] = best(near, lambda ret: -abs(ret - target))
        until = chosen["medium"]["step"]
    else:
        until = config["steps"]

    agent["snapshots"] = {}
    for label, snap in chosen.items():
        file, policy = policy_of(snap["step"], REFERENCE_SEED)
        agent["snapshots"][label] = {
            "file": file,
            "step": snap["step"],
            "deterministic": deterministic,
            "return": measured.get(label) or measure(env.env_id, policy, episodes),
        }
    _remove_unchosen(agents.POLICY_DIR / sub, agent["snapshots"])
    agent["replay"] = replay_record(run_dir, until, env.env_id)
    # read at the end: publishing two environments side by side keeps both entries
    manifest_path = agents.POLICY_DIR / "manifest.json"
    manifest = json.loads(manifest_path.read_text()) if manifest_path.exists() else {}
    entry = manifest.setdefault(slug, {"env_id": env.env_id, "agents": {}})
    entry |= references
    entry["agents"][role] = agent
    atomic_write_json(manifest_path, manifest)
    recipes.manifest.cache_clear()
    return agent


def _finished_run(run_dir: Path, slug: str, role: str) -> tuple[dict, list[dict]]:
    if role not in ROLES:
        raise ConfigError(f"role {role!r}: choose one of {', '.join(ROLES)}")
    if slug not in recipes.ENVS:
        raise ConfigError(f"--env {slug!r}: choose one of {', '.join(recipes.ENVS)}")
    if not (run_dir / CONFIG_FILE).exists():
        raise ConfigError(f"{run_dir}: not a run directory (no {CONFIG_FILE})")
    if not (run_dir / "summary.json").exists():
        raise ConfigError(f"{run_dir}: the run has not finished (no summary.json); resume it")
    config = json.loads((run_dir / CONFIG_FILE).read_text())
    env_id = recipes.ENVS[slug].env_id
    if config["env_id"] != env_id:
        raise ConfigError(f"{run_dir}: trained in {config['env_id']}, not {env_id}")
    # a packed and resumed run (offrl behavior pack) holds the files of only some snapshots
    snapshots = [
        s for s in read_jsonl(run_dir / SNAPSHOT_LOG) if snapshot_path(run_dir, s["step"]).exists()
    ]
    if not snapshots:
        raise ConfigError(f"{run_dir}: no snapshots to publish")
    return config, snapshots


def replay_record(run_dir: Path, until: int, env_id: str) -> dict:
    """What the manifest keeps of the run's buffer to step `until`: enough to make it again
    and to check that it was."""
    space = env_spaces(env_id)[1]
    cols = buffer_dataset(read_buffer(run_dir), until, space.low, space.high)
    returns = [e["return"] for e in read_jsonl(run_dir / EPISODE_LOG) if e["step"] <= until]
    return {
        "until": until,
        "sha256": replay_digest(cols),
        "episodes": len(returns),
        "return": {"mean": float(np.mean(returns)), "std": float(np.std(returns))},
    }


def copy_snapshot(run_dir: Path, step: int, policy_dir: Path, sub: str) -> str:
    source = snapshot_path(run_dir, step)
    if not source.exists():
        raise ConfigError(f"{source}: snapshot missing")
    target = policy_dir / sub / source.name
    target.parent.mkdir(parents=True, exist_ok=True)
    if not target.exists():
        shutil.copyfile(source, target)
    return f"{sub}/{source.name}"


def _remove_unchosen(directory: Path, chosen: dict) -> None:
    """Only the published snapshots stay (candidates measured and not chosen go)."""
    keep = {Path(snap["file"]).name for snap in chosen.values()}
    for path in directory.iterdir():
        if path.name not in keep:
            path.unlink()
