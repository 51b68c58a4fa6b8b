"""Turn a finished behaviour run into committed policy files and manifest entries.

For a SAC run (role "sac"): the expert is the snapshot with the best exploring return; the
medium snapshot is the one whose exploring return is nearest one third of the way from the
random policy's return to the expert's (D4RL's "about 1/3 of the expert"); the replay
snapshots are every `replay_every` steps from start_steps up to the medium snapshot. For a
DDPG run (roles "ddpg-noise0.5", "ddpg-noise0.1"): the expert is the snapshot with the best
deterministic return and the replay covers the whole run. Every published policy's return is
measured again over `episodes` episodes (the snapshots' own evaluations use 5), and for a SAC
run the environment's reference returns too: the uniform random policy and the expert, both
acting as in the datasets. Files go to offrl/recipes/policies/SLUG/ROLE/.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np

from offrl import recipes
from offrl.atomic import atomic_write_json
from offrl.behavior.online import CONFIG_FILE, SNAPSHOT_LOG, read_jsonl, snapshot_path
from offrl.envs.rollout import env_spaces, rollout
from offrl.errors import ConfigError
from offrl.recipes import agents

REFERENCE_SEED = 10_000  # evaluation episodes use seeds from here on, apart from training's
ROLES = (recipes.SAC, recipes.DDPG_FINAL, recipes.DDPG_CONCURRENT)


def measure(env_id: str, policy, episodes: int, seed: int = REFERENCE_SEED) -> dict:
    returns = rollout(env_id, policy, episodes, seed=seed).returns
    return {"mean": float(np.mean(returns)), "std": float(np.std(returns)), "episodes": episodes}


def publish(
    run_dir: str | Path,
    slug: str,
    role: str = recipes.SAC,
    replay_every: int | None = None,
    episodes: int = 100,
) -> dict:
    """Copy the run's chosen snapshots under agents.POLICY_DIR and record them in its manifest."""
    run_dir, policy_dir = Path(run_dir), agents.POLICY_DIR
    if role not in ROLES:
        raise ConfigError(f"role {role!r}: choose one of {', '.join(ROLES)}")
    config = json.loads((run_dir / CONFIG_FILE).read_text())
    snapshots = read_jsonl(run_dir / SNAPSHOT_LOG)
    if not snapshots:
        raise ConfigError(f"{run_dir}: no snapshots to publish")
    env = recipes.ENVS[slug]
    if config["env_id"] != env.env_id:
        raise ConfigError(f"{run_dir}: trained in {config['env_id']}, not {env.env_id}")
    manifest_path = policy_dir / "manifest.json"
    manifest = json.loads(manifest_path.read_text()) if manifest_path.exists() else {}
    entry = manifest.setdefault(slug, {"env_id": env.env_id, "agents": {}})

    agent = {
        "name": role,
        "algo": config["algo"],
        "algo_config": config["algo_config"],
        "seed": config["seed"],
        "steps": snapshots[-1]["step"],
        "start_steps": config["start_steps"],
        "obs_dim": None,
        "act_dim": None,
    }
    obs_space, act_space = env_spaces(env.env_id)
    agent["obs_dim"], agent["act_dim"] = int(obs_space.shape[0]), int(act_space.shape[0])
    copy = lambda step: copy_snapshot(run_dir, step, policy_dir, f"{slug}/{role}")  # noqa: E731

    if role == recipes.SAC:
        expert = max(snapshots, key=lambda s: s["explore_return_mean"])
        expert_file = copy(expert["step"])
        expert_policy = recipes.snapshot_policy(agent, expert_file, False, REFERENCE_SEED)
        entry["random_return"] = measure(env.env_id, recipes.uniform_policy(env.env_id), episodes)
        entry["expert_return"] = measure(env.env_id, expert_policy, episodes)
        low, high = entry["random_return"]["mean"], entry["expert_return"]["mean"]
        target = low + (high - low) / 3
        earlier = [s for s in snapshots if s["step"] < expert["step"]]
        medium = min(earlier, key=lambda s: abs(s["explore_return_mean"] - target))
        chosen = {"expert": expert, "medium": medium}
        until = medium["step"]
    else:
        expert = max(snapshots, key=lambda s: s["return_mean"])
        chosen = {"expert": expert}
        until = snapshots[-1]["step"]

    agent["snapshots"] = {}
    for label, snap in chosen.items():
        file = copy(snap["step"])
        deterministic = role != recipes.SAC  # DDPG's expert acts without noise (imitation)
        policy = recipes.snapshot_policy(agent, file, deterministic, REFERENCE_SEED)
        agent["snapshots"][label] = {
            "file": file,
            "step": snap["step"],
            "deterministic": deterministic,
            "return": measure(env.env_id, policy, episodes),
        }
    every = replay_every or config["snapshot_every"]
    replay_steps = range(config["start_steps"], until, every)
    agent["replay"] = {
        "until": until,
        "every": every,
        "files": [{"step": s, "file": copy(s)} for s in replay_steps if s > 0],
    }
    entry["agents"][role] = agent
    atomic_write_json(manifest_path, manifest)
    recipes.manifest.cache_clear()
    return agent


def copy_snapshot(run_dir: Path, step: int, policy_dir: Path, sub: str) -> str:
    source = snapshot_path(run_dir, step)
    if not source.exists():
        raise ConfigError(f"{source}: snapshot missing")
    target = policy_dir / sub / source.name
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(source, target)
    return f"{sub}/{source.name}"
