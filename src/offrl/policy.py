"""Load a trained policy from a run directory: a callable from observations to actions."""

from __future__ import annotations

import json
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from offrl import checkpoint
from offrl.algos import get_algo, make_algo_config
from offrl.core import template_spec
from offrl.errors import ConfigError
from offrl.evaluate import HistoryPolicy, compiled_act, evaluate, jax_policy


class Policy:
    """`policy(obs)` -> action, for one observation (obs_dim,) or a batch (n, obs_dim): an
    (act_dim,) float vector per observation, or an int action index for discrete actions.

    A policy of the history (the Decision Transformer) keeps that history between calls, for
    a caller stepping one environment (or n in lockstep): `reset()` at an episode's start,
    `policy(obs)` each step, then `observe(reward)` with what the action earned. For a
    memoryless policy `reset` and `observe` do nothing."""

    def __init__(self, algo, cfg, state, run: dict):
        self.algo, self.cfg, self.state, self.run = algo, cfg, state, run
        self._act = compiled_act(algo, cfg, True)
        self._history = HistoryPolicy(algo, cfg, state) if hasattr(algo, "act_step") else None

    @property
    def env_id(self) -> str:
        return self.run["env_id"]

    @property
    def step(self) -> int:
        return int(self.state.step)

    @property
    def stateful(self) -> bool:
        return self._history is not None

    def reset(self, n: int = 1) -> None:
        """Start n new episodes (the history is forgotten)."""
        if self._history is not None:
            self._history.reset(n)

    def observe(self, reward) -> None:
        """The reward the last action earned (a float, or (n,) for n environments)."""
        if self._history is not None:
            self._history.observe(np.atleast_1d(np.asarray(reward, np.float32)))

    def __call__(self, obs: np.ndarray) -> np.ndarray:
        obs = np.asarray(obs, np.float32)
        single = obs.ndim == 1
        if self._history is not None:
            act = self._history(np.atleast_2d(obs))
        else:
            act = np.asarray(self._act(self.state, jnp.atleast_2d(obs), jax.random.key(0)))
        return act[0] if single else act

    def evaluate(self, episodes: int = 10, seed: int = 0) -> dict[str, float]:
        return evaluate(
            jax_policy(self.algo, self.cfg, self.state, seed=seed),
            self.env_id,
            episodes,
            seed,
            self.run.get("ref_min_score"),
            self.run.get("ref_max_score"),
        )


def load_policy(run_dir: str | Path) -> Policy:
    from offrl.training import CHECKPOINT_DIR, CONFIG_FILE

    run_dir = Path(run_dir)
    config_path, ckpt = run_dir / CONFIG_FILE, run_dir / CHECKPOINT_DIR
    if not config_path.exists() or not checkpoint.exists(ckpt):
        raise ConfigError(
            f"{run_dir}: not a run directory with a checkpoint (need {CONFIG_FILE} "
            f"and {CHECKPOINT_DIR}/{checkpoint.STATE_FILE})"
        )
    run = json.loads(config_path.read_text())
    algo = get_algo(run["algo"])
    cfg = make_algo_config(run["algo"], run["algo_config"])
    # Runs saved before discrete actions existed have no num_actions: continuous.
    spec = template_spec(run["obs_dim"], run["act_dim"], run.get("num_actions", 0))
    template = algo.init(cfg, spec, jax.random.key(0))
    try:
        state, _ = checkpoint.load(ckpt, template)
    except Exception as exc:  # msgpack/structure errors: a corrupt or foreign file
        raise ConfigError(
            f"{ckpt / checkpoint.STATE_FILE}: cannot restore checkpoint ({exc})"
        ) from None
    return Policy(algo, cfg, state, run)
