"""Dataset recipes: D4RL- and BCQ-style datasets regenerated locally from committed policies.

A recipe is named ENV-KIND, e.g. `hopper-medium`. The behaviour policies are small files in
policies/ (actor parameters of offrl's own online SAC and DDPG agents, see offrl.behavior)
described by policies/manifest.json: environment, algorithm, seed, training steps and the
policies' returns measured over 100 episodes. Kinds:

D4RL (Fu et al. 2020), every environment with a SAC agent:
    random          uniform random actions
    medium          the SAC snapshot nearest one third of the expert's normalized return
    expert          the best SAC snapshot (the agent trained to the end of its budget)
    medium-expert   medium + expert, concatenated
    medium-replay   the SAC agent's training experience up to the medium snapshot, replayed
                    from its committed snapshots: uniform actions for the first start_steps,
                    then each snapshot acting (sampling, as it explored) for the steps up to
                    the next one. D4RL stores the replay buffer itself; offrl re-collects it
                    from the snapshot policies, which costs as much as a dataset of that size
                    and differs from the buffer only in the policy's change within an interval.
BCQ paper (Fujimoto et al. 2019), environments with the two DDPG agents:
    final-buffer    DDPG trained with N(0, 0.5²) exploration noise: all its training steps,
                    replayed from snapshots as above
    concurrent      DDPG trained with N(0, 0.1²) noise: all its training steps, replayed
    imitation       the trained DDPG (noise 0.1) acting deterministically
    imperfect       that DDPG with N(0, 0.3²) noise and a uniformly random action 30% of the time

The SAC (and DDPG) policies act as they did when exploring: SAC samples from its
tanh-Gaussian, DDPG adds its Gaussian noise; the expert reference return is measured the
same way. Datasets are made on first use (or `offrl data make NAME`) into
$OFFRL_HOME/datasets/offrl/NAME-v0 in the Minari layout (Minari id offrl/NAME-v0), written
to a temporary directory and renamed at the end, so a partial dataset is never taken for a
complete one. Generation is a function of the committed files and the kind's seed.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import platformdirs
from filelock import FileLock

from offrl.data.dataset import Dataset
from offrl.envs.rollout import BatchPolicy
from offrl.errors import DataError

POLICY_DIR = Path(__file__).parent / "policies"
D4RL_KINDS = ("random", "medium", "medium-replay", "expert", "medium-expert")
BCQ_KINDS = ("final-buffer", "concurrent", "imitation", "imperfect")
KIND_SEEDS = {kind: 1_000 * i for i, kind in enumerate(D4RL_KINDS + BCQ_KINDS)}
SAC, DDPG_FINAL, DDPG_CONCURRENT = "sac", "ddpg-noise0.5", "ddpg-noise0.1"
IMPERFECT_NOISE, IMPERFECT_RANDOM = 0.3, 0.3


@dataclass(frozen=True)
class EnvRecipe:
    slug: str  # the ENV part of ENV-KIND
    env_id: str
    transitions: int  # per single-policy kind (random, medium, expert, imitation, imperfect)


ENVS = {
    e.slug: e
    for e in (
        EnvRecipe("pendulum", "Pendulum-v1", 50_000),
        EnvRecipe("inverted-double-pendulum", "InvertedDoublePendulum-v5", 100_000),
        EnvRecipe("hopper", "Hopper-v5", 1_000_000),
        EnvRecipe("halfcheetah", "HalfCheetah-v5", 1_000_000),
        EnvRecipe("walker2d", "Walker2d-v5", 1_000_000),
    )
}


# --------------------------------------------------------------------------- manifest


@functools.cache
def manifest() -> dict:
    path = POLICY_DIR / "manifest.json"
    return json.loads(path.read_text()) if path.exists() else {}


def kinds_of(slug: str) -> tuple[str, ...]:
    agents = manifest().get(slug, {}).get("agents", {})
    kinds = D4RL_KINDS if SAC in agents else ()
    if DDPG_FINAL in agents and DDPG_CONCURRENT in agents:
        kinds += BCQ_KINDS
    return kinds


def names() -> tuple[str, ...]:
    return tuple(f"{slug}-{kind}" for slug in ENVS for kind in kinds_of(slug))


def split_name(name: str) -> tuple[EnvRecipe, str]:
    for slug, env in ENVS.items():
        kind = name.removeprefix(f"{slug}-")
        if kind != name and kind in kinds_of(slug):
            return env, kind
    raise DataError(f"{name}: no such dataset recipe; {names_hint()}")


def names_hint() -> str:
    """The recipes in one short phrase, for error messages."""
    envs = [slug for slug in ENVS if kinds_of(slug)]
    kinds = sorted({k for slug in envs for k in kinds_of(slug)}, key=KIND_SEEDS.get)
    return (
        f"dataset recipes are ENV-KIND with ENV one of {', '.join(envs)} and KIND one of "
        f"{', '.join(kinds)} (`offrl data list` shows which exist)"
    )


def reference_returns(slug: str) -> tuple[float, float]:
    """(random, expert) mean returns measured over 100+ episodes, from the manifest."""
    entry = manifest()[slug]
    return entry["random_return"]["mean"], entry["expert_return"]["mean"]


# --------------------------------------------------------------------------- cache


def home() -> Path:
    return Path(os.environ.get("OFFRL_HOME") or platformdirs.user_cache_dir("offrl"))


def minari_root() -> Path:
    """Set MINARI_DATASETS_PATH to this and `minari.load_dataset("offrl/NAME-v0")` finds
    every cached recipe."""
    return home() / "datasets"


def cache_path(name: str) -> Path:
    return minari_root() / "offrl" / f"{name}-v0"


RECIPE_VERSION = 1  # bump when generation changes in a way the manifest does not show


def fingerprint(name: str) -> str:
    """What a cached dataset was made from: its environment's manifest entry, kind and size."""
    env, kind = split_name(name)
    source = {"manifest": manifest()[env.slug], "kind": kind, "transitions": env.transitions}
    blob = json.dumps(source | {"version": RECIPE_VERSION}, sort_keys=True).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


def stored_metadata(name: str) -> dict | None:
    """The offrl metadata of the cached dataset, or None when there is no complete one."""
    meta_file = cache_path(name) / "data" / "metadata.json"
    if not (cache_path(name) / "data" / "main_data.hdf5").exists() or not meta_file.exists():
        return None
    return json.loads(meta_file.read_text()).get("offrl", {}).get("metadata", {})


def is_cached(name: str) -> bool:
    """A complete dataset made from the current policies is in the cache."""
    stored = stored_metadata(name)
    return stored is not None and stored.get("fingerprint") == fingerprint(name)


def load(name: str) -> Dataset:
    """The cached dataset, generating and caching it on first use (again when the committed
    policies changed since it was made: a cache is regenerable, never a result)."""
    if not is_cached(name):
        # Processes of a sweep may ask for the same new dataset at once: one makes it.
        cache_path(name).parent.mkdir(parents=True, exist_ok=True)
        with FileLock(f"{cache_path(name)}.lock"):
            if not is_cached(name):
                make(name, overwrite=cache_path(name).exists())
    return _read_cached(name).replace(name=name)


# A flat-column copy of a cached dataset, kept inside its Minari directory (regenerating the
# dataset replaces the directory, copy included). The Minari layout keeps one HDF5 group per
# episode: reading hopper-random's ~45k short episodes takes 40 s to minutes, its copy a second.
COLUMNS_FILE = "offrl_columns.npz"


def _read_cached(name: str) -> Dataset:
    """The cached dataset, from its flat-column copy when that was made from the current
    policies; otherwise from the Minari files, writing the copy for next time."""
    from offrl.data import io

    columns = cache_path(name) / COLUMNS_FILE
    if columns.is_file():
        dataset = io.read_npz(columns)
        if dataset.metadata.get("fingerprint") == fingerprint(name):
            return dataset
    dataset = io.read(cache_path(name))
    try:
        io.write_npz(dataset, columns, overwrite=True)
    except OSError:  # a read-only cache still loads, only slower
        pass
    return dataset


def make(name: str, overwrite: bool = False) -> tuple[Path, float]:
    """Generate `name` into the cache; returns (path, seconds spent generating)."""
    from offrl.data import io

    started = time.perf_counter()
    dataset = generate(name)
    seconds = time.perf_counter() - started
    summary = {
        "generation_seconds": round(seconds, 1),
        "transitions": len(dataset),
        "episodes": dataset.num_episodes,
        "return_mean": float(dataset.episode_returns().mean()),
        "return_std": float(dataset.episode_returns().std()),
        "normalized_return_mean": dataset.normalized_return_mean(),
        "fingerprint": fingerprint(name),
    }
    dataset = dataset.replace(metadata=dataset.metadata | summary)
    path = io.write_minari(dataset, cache_path(name), f"offrl/{name}-v0", overwrite=overwrite)
    return path, seconds


def describe(name: str) -> dict:
    """What `offrl data list` shows: planned size, behaviour return, cache state."""
    env, kind = split_name(name)
    entry = manifest()[env.slug]
    agents = entry["agents"]
    replay_agent = {"medium-replay": SAC, "final-buffer": DDPG_FINAL, "concurrent": DDPG_CONCURRENT}
    if kind in replay_agent:
        replay = agents[replay_agent[kind]]["replay"]
        size, behaviour = replay["until"], f"training replay to step {replay['until']}"
    else:
        size = env.transitions * (2 if kind == "medium-expert" else 1)
        behaviour = _behaviour_return(entry, kind)
    out = {"name": name, "env_id": env.env_id, "transitions": size, "behaviour_return": behaviour}
    out["cached"] = is_cached(name)
    if out["cached"]:
        stored = stored_metadata(name) or {}
        out |= {k: stored.get(k) for k in ("return_mean", "normalized_return_mean", "episodes")}
    return out


def _behaviour_return(entry: dict, kind: str) -> str:
    if kind == "random":
        ret = entry["random_return"]
    elif kind in ("medium", "expert"):
        ret = entry["agents"][SAC]["snapshots"][kind]["return"]
    elif kind == "imitation":
        ret = entry["agents"][DDPG_CONCURRENT]["snapshots"]["expert"]["return"]
    else:
        return {"medium-expert": "medium + expert", "imperfect": "noisy imitation"}[kind]
    return f"{ret['mean']:.1f} ± {ret['std']:.1f}"


# --------------------------------------------------------------------------- generation


def generate(name: str) -> Dataset:
    """Make the named dataset from its committed behaviour policies (deterministic)."""
    env, kind = split_name(name)
    if kind == "medium-expert":  # the two datasets themselves, from the cache when there
        parts = [_part(f"{env.slug}-{k}") for k in ("medium", "expert")]
    else:
        parts = [_generate(env, kind)]
    low, high = reference_returns(env.slug)
    meta = {"recipe": name, "parts": [p.metadata for p in parts]}
    return Dataset.concatenate(parts, name=name, ref_min_score=low, ref_max_score=high).replace(
        metadata=meta
    )


def _part(name: str) -> Dataset:
    """A whole recipe as one part of another (its own metadata, without its references)."""
    ds = load(name)
    meta = ds.metadata.get("parts", [ds.metadata])[0]
    return ds.replace(name="", ref_min_score=None, ref_max_score=None, metadata=meta)


def _generate(env: EnvRecipe, kind: str) -> Dataset:
    from offrl.data.recipes.collect import collect

    seed = KIND_SEEDS[kind]
    agents = manifest()[env.slug]["agents"]
    if kind in ("medium-replay", "final-buffer", "concurrent"):
        agent = agents[
            {"medium-replay": SAC, "final-buffer": DDPG_FINAL}.get(kind, DDPG_CONCURRENT)
        ]
        cols = _replay(env, agent, seed)
        source = {"agent": agent["name"], "replay_until": agent["replay"]["until"]}
    else:
        policy, source = _single_policy(env, kind, agents, seed)
        cols = collect(env.env_id, policy, env.transitions, seed)
    low, high = _action_bounds(env.env_id)
    meta = {"kind": kind, "seed": seed, **source}
    return Dataset(**cols, env_id=env.env_id, action_low=low, action_high=high, metadata=meta)


def _single_policy(env: EnvRecipe, kind: str, agents: dict, seed: int):
    if kind == "random":
        return uniform_policy(env.env_id), {"policy": "uniform"}
    if kind in ("medium", "expert"):
        snap = agents[SAC]["snapshots"][kind]
        return snapshot_policy(agents[SAC], snap["file"], False, seed), {"policy": snap["file"]}
    snap = agents[DDPG_CONCURRENT]["snapshots"]["expert"]
    policy = snapshot_policy(agents[DDPG_CONCURRENT], snap["file"], True, seed)
    if kind == "imperfect":
        policy = imperfect(policy, env.env_id)
    return policy, {"policy": snap["file"]}


def _replay(env: EnvRecipe, agent: dict, seed: int) -> dict[str, np.ndarray]:
    """The agent's training experience: uniform first, then each snapshot until the next."""
    from offrl.data.recipes.collect import collect

    replay = agent["replay"]
    steps = [s["step"] for s in replay["files"]] + [replay["until"]]
    parts = [collect(env.env_id, uniform_policy(env.env_id), agent["start_steps"], seed)]
    for i, snap in enumerate(replay["files"]):
        policy = snapshot_policy(agent, snap["file"], False, seed + i + 1)
        parts.append(collect(env.env_id, policy, steps[i + 1] - steps[i], seed + i + 1))
    return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}


# --------------------------------------------------------------------------- policies


def _action_bounds(env_id: str) -> tuple[np.ndarray, np.ndarray]:
    from offrl.envs.rollout import env_spaces

    space = env_spaces(env_id)[1]
    return space.low.astype(np.float32), space.high.astype(np.float32)


def uniform_policy(env_id: str) -> BatchPolicy:
    low, high = _action_bounds(env_id)
    return lambda obs, rng: rng.uniform(low, high, (len(obs), len(low)))


def imperfect(policy: BatchPolicy, env_id: str) -> BatchPolicy:
    """BCQ's imperfect demonstrations: N(0, 0.3²) noise, and a random action 30% of the time."""
    low, high = _action_bounds(env_id)
    half_range = (high - low) / 2

    def noisy(obs: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        act = policy(obs, rng) + rng.normal(0.0, IMPERFECT_NOISE, (len(obs), len(low))) * half_range
        random = rng.uniform(low, high, act.shape)
        explore = rng.random((len(obs), 1)) < IMPERFECT_RANDOM
        return np.clip(np.where(explore, random, act), low, high)

    return noisy


def snapshot_policy(agent: dict, file: str, deterministic: bool, seed: int) -> BatchPolicy:
    """A committed snapshot as a batch policy (sampling/exploring unless deterministic)."""
    from offrl.behavior.online import load_actor
    from offrl.evaluate import jax_policy

    config = json.dumps(agent["algo_config"], sort_keys=True)
    algo, cfg, state = _agent_template(agent["algo"], config, agent["obs_dim"], agent["act_dim"])
    state = load_actor(POLICY_DIR / file, state)
    return jax_policy(algo, cfg, state, deterministic, seed)


@functools.cache
def _agent_template(algo_name: str, config_json: str, obs_dim: int, act_dim: int):
    """(algo, cfg, state) whose actor a snapshot file overwrites; one per agent config."""
    import jax

    from offrl import algos
    from offrl.training import make_algo_config, template_spec

    algo = algos.get(algo_name)
    cfg = make_algo_config(algo_name, json.loads(config_json))
    return algo, cfg, algo.init(cfg, template_spec(obs_dim, act_dim), jax.random.key(0))
