"""Built-in datasets made locally in seconds, with no download: Pendulum-v1 in D4RL's kinds.

The behaviour policy is a hand-written swing-up controller (energy shaping far from the
top, a PD controller near it), which scores about -145 — near the optimum of Pendulum-v1.
Kinds, 100 episodes of 200 steps each (20,000 transitions; every episode ends in a timeout):
    pendulum-random         uniform actions in [-2, 2]
    pendulum-medium         the controller with a uniformly random action 60% of the time
    pendulum-expert         the controller with N(0, 0.1²) torque noise
    pendulum-medium-expert  medium + expert (40,000 transitions)
Datasets are cached under $OFFRL_HOME/datasets in the Minari layout (data/main_data.hdf5).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import numpy as np
import platformdirs

from offrl.data.dataset import Dataset
from offrl.envs.registry import reference_scores
from offrl.envs.rollout import rollout

ENV_ID = "Pendulum-v1"
MAX_TORQUE = 2.0
EPISODES = 100


def swing_up(obs: np.ndarray) -> np.ndarray:
    """Energy-shaping swing-up + PD balance for Pendulum-v1 (θ = 0 is upright)."""
    cos, sin, vel = obs[:, 0], obs[:, 1], obs[:, 2]
    # θ'' = 15 sin θ + 3u, so E = ½θ'² + 15 cos θ has dE/dt = 3uθ'; upright at rest: E = 15.
    energy = 0.5 * vel**2 + 15.0 * cos
    pump = 0.3 * vel * (15.0 - energy)
    balance = -(10.0 * np.arctan2(sin, cos) + 2.0 * vel)
    return np.clip(np.where(cos > 0.85, balance, pump), -MAX_TORQUE, MAX_TORQUE)[:, None]


def random_policy(obs: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    return rng.uniform(-MAX_TORQUE, MAX_TORQUE, (len(obs), 1))


def expert_policy(obs: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    return np.clip(swing_up(obs) + rng.normal(0, 0.1, (len(obs), 1)), -MAX_TORQUE, MAX_TORQUE)


def medium_policy(obs: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    explore = rng.random((len(obs), 1)) < 0.6
    return np.where(explore, random_policy(obs, rng), swing_up(obs))


POLICIES: dict[str, Callable] = {
    "random": random_policy,
    "medium": medium_policy,
    "expert": expert_policy,
}
KIND_SEEDS = {"random": 0, "medium": 1_000, "expert": 2_000}
NAMES = ("pendulum-random", "pendulum-medium", "pendulum-expert", "pendulum-medium-expert")


def home() -> Path:
    return Path(os.environ.get("OFFRL_HOME") or platformdirs.user_cache_dir("offrl"))


def cache_path(name: str) -> Path:
    return home() / "datasets" / name


def is_cached(name: str) -> bool:
    return (cache_path(name) / "data" / "main_data.hdf5").exists()


def generate(name: str) -> Dataset:
    """Make the named dataset from its behaviour policy (deterministic)."""
    kinds = name.removeprefix("pendulum-")
    parts = [
        _generate_kind(k) for k in (["medium", "expert"] if kinds == "medium-expert" else [kinds])
    ]
    low, high = reference_scores(ENV_ID)
    return Dataset.concatenate(parts, name=name, ref_min_score=low, ref_max_score=high)


def _generate_kind(kind: str) -> Dataset:
    out = rollout(ENV_ID, POLICIES[kind], EPISODES, seed=KIND_SEEDS[kind], record=True)
    low, high = np.array([-MAX_TORQUE], np.float32), np.array([MAX_TORQUE], np.float32)
    return Dataset(**out.transitions, env_id=ENV_ID, action_low=low, action_high=high)


def load(name: str) -> Dataset:
    """The cached dataset, generating and caching it on first use."""
    from offrl.data import io  # io imports validation; keep builtin importable without h5py use

    path = cache_path(name)
    if not is_cached(name):
        io.write_minari(generate(name), path, dataset_id=f"offrl/{name}-v0")
    return io.read(path).replace(name=name)
