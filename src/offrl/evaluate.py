"""Evaluation of one kind or the other behind one interface.

An evaluator is called as `evaluator(algo, cfg, state, seed) -> dict` and returns the record
the training loop logs. Two kinds:
- `EnvEvaluator`: a jitted, batched policy in lockstep gymnasium environments:
  {"return_mean", "return_std", "normalized_score" (when references are known)};
- `OPEEvaluator`: off-policy estimates on held-out logged episodes, for data with no
  simulator: {"estimate": the first estimator's value, "ope": {name: {"value", "ci", ...}}}.
The loop reads `score(record)` and never asks which kind it has.
"""

from __future__ import annotations

import functools
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from offrl import ope
from offrl.data import Dataset
from offrl.envs.registry import normalized_score
from offrl.envs.rollout import BatchPolicy, rollout
from offrl.errors import ConfigError


@functools.lru_cache(maxsize=32)
def compiled_act(algo, cfg, deterministic: bool):
    """`algo.act` jitted once per (algorithm, config): every evaluation of a run reuses it."""
    return jax.jit(lambda state, obs, key: algo.act(cfg, state, obs, key, deterministic))


@functools.lru_cache(maxsize=32)
def compiled_act_step(algo, cfg, deterministic: bool):
    """`algo.act_step` of a stateful algorithm, jitted once per (algorithm, config)."""

    def step(state, carry, obs, reward, key):
        return algo.act_step(cfg, state, carry, obs, reward, key, deterministic)

    return jax.jit(step)


class HistoryPolicy:
    """A stateful algorithm (act_carry / act_step) as a numpy batch policy: `reset(n)` starts
    n episodes, each call acts on the new observations and advances the carried history, and
    `observe(rewards)` hands in what those actions earned, used at the next call. A call with
    a batch of another size, or before any reset, starts that many episodes."""

    def __init__(self, algo, cfg, state: Any, deterministic: bool = True, seed: int = 0):
        self.algo, self.cfg, self.state = algo, cfg, state
        self._step = compiled_act_step(algo, cfg, deterministic)
        self._key = jax.random.key(seed)
        self.carry, self._reward = None, None

    def reset(self, n: int) -> None:
        self.carry = self.algo.act_carry(self.cfg, self.state, n)
        self._reward = jnp.zeros(n, jnp.float32)

    def __call__(self, obs: np.ndarray, rng: np.random.Generator | None = None) -> np.ndarray:
        obs = jnp.asarray(obs, jnp.float32)
        if self.carry is None or self._reward.shape[0] != obs.shape[0]:
            self.reset(obs.shape[0])
        self._key, sub = jax.random.split(self._key)
        act, self.carry = self._step(self.state, self.carry, obs, self._reward, sub)
        self._reward = jnp.zeros_like(self._reward)  # until observe() says otherwise
        return np.asarray(act)

    def observe(self, rewards) -> None:
        self._reward = jnp.asarray(rewards, jnp.float32).reshape(self._reward.shape)


def jax_policy(algo, cfg, state: Any, deterministic: bool = True, seed: int = 0) -> BatchPolicy:
    """Wrap `algo.act` as a numpy batch policy (a HistoryPolicy for a stateful algorithm)."""
    if hasattr(algo, "act_step"):
        return HistoryPolicy(algo, cfg, state, deterministic, seed)
    act = compiled_act(algo, cfg, deterministic)
    key = jax.random.key(seed)

    def policy(obs: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        nonlocal key
        key, sub = jax.random.split(key)
        return np.asarray(act(state, jnp.asarray(obs, jnp.float32), sub))

    return policy


def evaluate(
    policy: BatchPolicy,
    env_id: str,
    episodes: int,
    seed: int,
    ref_min: float | None,
    ref_max: float | None,
) -> dict[str, float]:
    """Mean/std return over `episodes` and the normalized score when references are known."""
    returns = rollout(env_id, policy, episodes, seed=seed).returns
    result = {"return_mean": float(returns.mean()), "return_std": float(returns.std())}
    if ref_min is not None and ref_max is not None:
        result["normalized_score"] = normalized_score(float(returns.mean()), ref_min, ref_max)
    return result


class EnvEvaluator:
    """Rollouts in `env_id`: mean/std return over `episodes`, normalized when references exist."""

    def __init__(self, env_id: str, episodes: int, ref_min=None, ref_max=None):
        self.env_id, self.episodes, self.ref_min, self.ref_max = env_id, episodes, ref_min, ref_max

    def __call__(self, algo, cfg, state, seed: int) -> dict[str, float]:
        policy = jax_policy(algo, cfg, state, seed=seed)
        return evaluate(policy, self.env_id, self.episodes, seed, self.ref_min, self.ref_max)


class OPEEvaluator:
    """Off-policy estimates of the deterministic policy's discounted return on `heldout`
    episodes; `estimate` is the first estimator's value (what progress and curves show).
    The dynamics model of "mb" depends on the data only: one evaluator values many policies
    (or checkpoints) in one model."""

    def __init__(
        self,
        heldout: Dataset,
        estimators: tuple[str, ...] = ("fqe",),
        discount: float = 0.99,
        config: ope.OPEConfig | None = None,
    ):
        self.heldout, self.estimators = heldout, ope.check_estimators(estimators)
        self.discount, self.config = discount, config or ope.OPEConfig()
        self.dynamics = None  # "mb"'s model: fitted at the first call, kept for the others

    def __call__(self, algo, cfg, state, seed: int) -> dict:
        if hasattr(algo, "act_step"):
            raise ConfigError(
                "off-policy estimators value policies of the state; this one acts on its "
                "history (a context of past steps), which logged episodes cannot replay"
            )

        def act_fn(obs):
            return algo.act(cfg, state, obs, jax.random.key(0), True)

        if "mb" in self.estimators and self.dynamics is None and not self.heldout.discrete:
            self.dynamics = ope.fit_dynamics(self.heldout, self.config, seed)

        results = ope.estimate(
            act_fn,
            self.heldout,
            self.estimators,
            self.discount,
            key=seed,
            behavior_log_probs=self.heldout.complete_log_probs(),
            config=self.config,
            action_low=self.heldout.action_low,
            action_high=self.heldout.action_high,
            dynamics_model=self.dynamics,
        )
        return {"estimate": results[self.estimators[0]]["value"], "ope": results}


def score(record: dict) -> float | None:
    """The number an evaluation record is judged by: normalized score, else return, else
    the OPE estimate."""
    for key in ("normalized_score", "return_mean", "estimate"):
        if record.get(key) is not None:
            return record[key]
    return None
