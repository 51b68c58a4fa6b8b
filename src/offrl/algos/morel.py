"""MOReL: model-based offline RL in a pessimistic MDP that halts where the model is unsure.

Paper: Kidambi, Rajeswaran, Netrapalli & Joachims, "MOReL: Model-Based Offline Reinforcement
Learning", NeurIPS 2020. Reference code: aravindr93/mjrl (projects/morel).

Model: offrl.dynamics' ensemble, as MOPO's (`pretrain` fits it or loads `dynamics=DIR`).
Unknown state-action detector (USAD), from the ensemble's disagreement on the next state:
    disc(s, a) = max_{i,j} ‖μ_i(s, a) − μ_j(s, a)‖₂,    unknown ⇔ disc(s, a) > threshold
    threshold  = max_{(s,a) ∈ D} disc(s, a) / pessimism_coef     (the reference's truncate_lim)
The maximum is over up to `threshold_rows` dataset transitions, computed once in pretrain.
Pessimistic MDP: a step from an unknown (s, a) goes to the absorbing HALT state with reward
−κ (`halt_penalty`); every other model step keeps r̂. In the rollouts HALT is a terminal.
Planner: SAC in the P-MDP on MOPO's machinery (offrl.algos.mopo.model_based_update: h-step
branches from dataset states into an on-device buffer, minibatches of `real_ratio` dataset
rows and model rows). The paper plans with model-based NPG; offrl uses SAC, as MOPO does,
so the two differ only in how the model's uncertainty enters.

Update order per step: MOPO's, with the halt in place of MOPO's penalty.
Defaults: pessimism_coef 1.0 (the threshold is the largest disagreement seen on the data).
κ = 100 is offrl's choice: the reference code's default truncate_reward is 0, which on a
task with negative rewards (Pendulum) makes halting attractive, and its per-task values
could not be checked here. The SAC, rollout and buffer settings are MOPO's (OfflineRL-Kit's)
so that MOReL and MOPO compare on one footing; the paper's h for its NPG planner is longer.
Deviations: SAC for NPG (above); the threshold from a sample of the data when it is larger
than threshold_rows; the disagreement of the ensemble's means of s' in dataset units, as the
reference (its models predict s' directly).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import flax.struct
import jax
import jax.numpy as jnp
import numpy as np
from flax.training.train_state import TrainState

from offrl import dynamics
from offrl.algos import mopo
from offrl.core import Batch, Metrics, RingBuffer, Spec
from offrl.data.dataset import Dataset
from offrl.data.transforms import Transforms


@dataclass(frozen=True)
class Config:
    # SAC, the rollouts and the buffer: MOPO's settings (offrl.algos.mopo).
    discount: float = 0.99
    tau: float = 0.005
    actor_lr: float = 1e-4
    critic_lr: float = 3e-4
    hidden: tuple[int, ...] = (256, 256)
    auto_alpha: bool = True
    init_alpha: float = 1.0
    target_entropy: float | None = None
    batch_size: int = 256
    normalize_obs: bool = False
    reward_scaling: str = "none"
    rollout_length: int = 5
    rollout_batch_size: int = 50_000
    rollout_freq: int = 1000
    model_retain_epochs: int = 5
    rollout_every: int = 5
    real_ratio: float = 0.05
    dynamics: str | None = None
    dynamics_epochs: int = 0
    # The pessimistic MDP.
    pessimism_coef: float = 1.0  # threshold = max disagreement on the data / this
    halt_penalty: float = 100.0  # κ: the reward of a step into HALT is −κ
    threshold_rows: int = 100_000  # dataset rows the threshold's maximum is taken over

    branches_per_update = mopo.Config.branches_per_update
    branches_per_rollout = mopo.Config.branches_per_rollout
    buffer_capacity = mopo.Config.buffer_capacity
    real_rows = mopo.Config.real_rows


@flax.struct.dataclass
class State:
    actor: TrainState
    critic: TrainState
    target_critic: dict
    log_alpha: TrainState
    tf: Transforms
    step: jnp.ndarray
    model: dynamics.Dynamics
    buffer: RingBuffer
    threshold: jnp.ndarray  # () the USAD's disagreement threshold


def init(cfg: Config, spec: Spec, key: jax.Array) -> State:
    if cfg.pessimism_coef <= 0:
        raise ValueError(f"pessimism_coef must be > 0, got {cfg.pessimism_coef}")
    base = mopo.init(cfg, spec, key)
    fields = {f.name: getattr(base, f.name) for f in dataclasses.fields(base)}
    # Nothing is unknown until pretrain sets the threshold (finite: the divergence guard
    # reads every float of the state).
    return State(**fields, threshold=jnp.asarray(jnp.finfo(jnp.float32).max))


def pretrain(cfg: Config, state: State, dataset: Dataset, key: jax.Array) -> tuple[State, dict]:
    """The ensemble (fitted or loaded, as MOPO's) and the USAD threshold from the data."""
    k_model, k_rows = jax.random.split(key)
    model, info = dynamics.fit_or_load(dataset, cfg.dynamics, cfg.dynamics_epochs, k_model)
    threshold = usad_threshold(model, dataset, cfg.pessimism_coef, cfg.threshold_rows, k_rows)
    info["threshold"] = threshold
    return state.replace(model=model, threshold=jnp.asarray(threshold, jnp.float32)), info


def usad_threshold(model, dataset: Dataset, pessimism_coef: float, rows: int, key) -> float:
    """max disc(s, a) over (up to `rows` random) dataset transitions, / pessimism_coef."""
    x, _ = dynamics.model_arrays(dataset)
    if len(x) > rows:
        x = x[np.sort(np.asarray(jax.random.choice(key, len(x), (rows,), replace=False)))]
    obs_dim = model.obs_dim
    worst = 0.0
    for start in range(0, len(x), 8192):
        block = jnp.asarray(x[start : start + 8192])
        worst = max(worst, float(_max_disc(model, block[:, :obs_dim], block[:, obs_dim:])))
    return worst / pessimism_coef


@jax.jit
def _max_disc(model: dynamics.Dynamics, obs, act) -> jnp.ndarray:
    mean, _ = dynamics.predict(model, obs, act)
    return jnp.max(dynamics.disagreement(mean, model.obs_dim))


# --------------------------------------------------------------------------- losses


def halting(threshold: jnp.ndarray, halt_penalty: float, obs_dim: int) -> dynamics.RewardFn:
    """The P-MDP's step: unknown (s, a) -> HALT, reward −κ, terminal; else the model's."""

    def reward_fn(rew, terminal, mean, std):
        unknown = dynamics.disagreement(mean, obs_dim) > threshold
        return jnp.where(unknown, -halt_penalty, rew), terminal | unknown

    return reward_fn


# --------------------------------------------------------------------------- update


def update(cfg: Config, state: State, batch: Batch, key: jax.Array) -> tuple[State, Metrics]:
    reward_fn = halting(state.threshold, cfg.halt_penalty, state.model.obs_dim)
    return mopo.model_based_update(cfg, state, batch, key, reward_fn)


def act(cfg: Config, state: State, obs: jnp.ndarray, key: jax.Array, deterministic: bool = True):
    return mopo.act(cfg, state, obs, key, deterministic)
