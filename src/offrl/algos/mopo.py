"""MOPO: model-based offline policy optimization, SAC on an uncertainty-penalized model.

Paper: Yu, Thomas, Yu, Ermon, Zou, Levine, Finn & Ma, "MOPO: Model-based Offline Policy
Optimization", NeurIPS 2020. Reference code: tianheyu927/mopo; OfflineRL-Kit's mopo.py (the
v2-data reproduction quoted in docs/algos/mopo.md).

Model: offrl.dynamics' ensemble (7 × 4×200, 5 elites), fitted before training (`pretrain`)
or loaded (`dynamics=DIR`, a model of `offrl model train`: one per dataset for a sweep).
Penalized reward of a model transition, u the largest predicted std over the ensemble:
    r̃(s, a) = r̂(s, a) − λ u(s, a),   u(s, a) = max_i ‖σ_i(s, a)‖₂
Rollouts: h-step branches from dataset states with the current policy (sampled actions), a
random elite per row and step; a branch stops at the model's terminals (the environment's
termination function, where known). Transitions go to a ring buffer in the State that keeps
the last `model_retain_epochs` × `rollout_freq` updates' worth.
Policy: SAC (offrl.algos.sac: twin Q, entropy tuning, its update order) on minibatches of
`real_ratio` · B dataset rows and the rest from the model buffer.

Update order per step: (1) on every `rollout_every`-th update, branches of h steps from the
first rollout_every · rollout_batch_size / rollout_freq states of the real minibatch (its rows
again, in order, if it has fewer), with the current actor, into the buffer;
(2) the mixed minibatch; (3) SAC's α, actor, critic, target steps on it.
Defaults: OfflineRL-Kit's MOPO script — actor lr 1e-4, critic lr 3e-4, 256-256, γ 0.99,
τ 0.005, learned α, real_ratio 0.05, rollout_batch_size 50k every rollout_freq = 1000
updates, model_retain_epochs 5, h = 5, λ = 2.5 (its defaults), with its per-dataset (h, λ)
for D4RL's locomotion datasets as TASK_DEFAULTS (a fresh run on hopper-medium takes (5, 5.0)).
Deviations: MOPO rolls out 50k branches every 1000 updates; offrl rolls out 250 every 5
(the same number of model transitions per update, the same buffer, one compiled step with
no host round trip; each branch uses an actor at most 4 updates old rather than up to 1000;
5 · 50 start rows fit a 256-row minibatch, and 250-row model steps run 1.5× faster per row
than 50-row ones). The buffer then holds 250 × 5000 = 1.25M transitions and is part of every
checkpoint (~135 MB for Hopper). The model's states are raw observations; the SAC nets
see them through the run's transforms as everywhere else.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import flax.struct
import jax
import jax.numpy as jnp
from flax.training.train_state import TrainState

from offrl import dynamics
from offrl.algos import sac
from offrl.core import Batch, Metrics, RingBuffer, Spec
from offrl.data.dataset import Dataset
from offrl.data.transforms import Transforms
from offrl.nets.policies import tanh_gaussian_sample


@dataclass(frozen=True)
class Config:
    # SAC (offrl.algos.sac), OfflineRL-Kit's MOPO settings.
    discount: float = 0.99
    tau: float = 0.005
    actor_lr: float = 1e-4
    critic_lr: float = 3e-4
    hidden: tuple[int, ...] = (256, 256)
    auto_alpha: bool = True
    init_alpha: float = 1.0
    target_entropy: float | None = None  # None: -|A|
    batch_size: int = 256  # real and model rows together
    normalize_obs: bool = False
    reward_scaling: str = "none"
    # The model and its rollouts.
    penalty_coef: float = 2.5  # λ
    rollout_length: int = 5  # h
    rollout_batch_size: int = 50_000  # branches per rollout_freq updates
    rollout_freq: int = 1000
    model_retain_epochs: int = 5  # the buffer keeps this many rollout_freq periods
    # offrl's schedule: a rollout every `rollout_every` updates, of that many updates'
    # branches (5 × 50 = 250 start rows, distinct rows of a 256-row minibatch)
    rollout_every: int = 5
    real_ratio: float = 0.05  # fraction of each minibatch from the dataset
    dynamics: str | None = None  # an `offrl model train` directory; None: fitted in pretrain
    dynamics_epochs: int = 0  # max epochs of that fit; 0: until early stopping

    @property
    def branches_per_update(self) -> int:
        return max(1, self.rollout_batch_size // self.rollout_freq)

    @property
    def branches_per_rollout(self) -> int:
        return self.branches_per_update * self.rollout_every

    @property
    def buffer_capacity(self) -> int:
        per_update = self.branches_per_update * self.rollout_length
        return per_update * self.rollout_freq * self.model_retain_epochs

    @property
    def real_rows(self) -> int:
        return int(round(self.real_ratio * self.batch_size))


# (h, λ) per dataset for D4RL's v2 data: OfflineRL-Kit's README (its MOPO reproductions).
TASK_DEFAULTS = {
    name: {"rollout_length": h, "penalty_coef": lam}
    for name, (h, lam) in {
        "halfcheetah-medium": (5, 0.5),
        "hopper-medium": (5, 5.0),
        "walker2d-medium": (5, 0.5),
        "halfcheetah-medium-replay": (5, 0.5),
        "hopper-medium-replay": (5, 2.5),
        "walker2d-medium-replay": (1, 2.5),
        "halfcheetah-medium-expert": (5, 2.5),
        "hopper-medium-expert": (5, 5.0),
        "walker2d-medium-expert": (1, 2.5),
    }.items()
}


@flax.struct.dataclass
class State:
    # SAC's fields, under SAC's names: sac.update steps them in place.
    actor: TrainState
    critic: TrainState
    target_critic: dict
    log_alpha: TrainState
    tf: Transforms
    step: jnp.ndarray
    model: dynamics.Dynamics
    buffer: RingBuffer


def check(cfg: Config) -> None:
    if not 0.0 <= cfg.real_ratio <= 1.0:
        raise ValueError(f"real_ratio must be in [0, 1], got {cfg.real_ratio}")
    if min(cfg.rollout_length, cfg.rollout_freq, cfg.model_retain_epochs, cfg.rollout_every) < 1:
        raise ValueError(
            "rollout_length, rollout_freq, model_retain_epochs and rollout_every must be >= 1"
        )


def sac_config(cfg: Config) -> sac.Config:
    return sac.config_of(cfg)


def init(cfg: Config, spec: Spec, key: jax.Array) -> State:
    check(cfg)
    k_sac, k_model = jax.random.split(key)
    agent = sac.init(sac_config(cfg), spec, k_sac)
    model = dynamics.init(dynamics.DynamicsConfig(), spec.obs_dim, spec.act_dim, k_model)
    buffer = RingBuffer.create(cfg.buffer_capacity, spec.obs_dim, spec.act_dim)
    fields = {f.name: getattr(agent, f.name) for f in dataclasses.fields(agent)}
    return State(**fields, model=model, buffer=buffer)


def pretrain(cfg: Config, state: State, dataset: Dataset, key: jax.Array) -> tuple[State, dict]:
    """The dynamics ensemble: loaded from cfg.dynamics, else fitted to the dataset."""
    model, info = dynamics.fit_or_load(dataset, cfg.dynamics, cfg.dynamics_epochs, key)
    return state.replace(model=model), info


# --------------------------------------------------------------------------- losses


def rollout_policy(state: State):
    """The current actor, sampling, on raw states: what the branches act with."""

    def policy(raw_obs: jnp.ndarray, key: jax.Array) -> jnp.ndarray:
        mean, log_std = state.actor.apply_fn(state.actor.params, state.tf.obs(raw_obs))
        return tanh_gaussian_sample(key, mean, log_std)[0]

    return policy


def raw_obs(tf: Transforms, obs: jnp.ndarray) -> jnp.ndarray:
    """The nets' observations back in dataset units."""
    return obs * tf.obs_std + tf.obs_mean


def to_nets(tf: Transforms, rows: Batch) -> Batch:
    """Model rows (raw states and rewards) in the units the SAC nets train on."""
    return rows.replace(
        obs=tf.obs(rows.obs), next_obs=tf.obs(rows.next_obs), rew=tf.reward(rows.rew)
    )


def mixed_batch(cfg: Config, real: Batch, model_rows: Batch) -> Batch:
    """real_rows dataset rows, then the rest from the model buffer."""
    n = cfg.real_rows
    join = lambda a, b: jnp.concatenate([a[:n], b[: cfg.batch_size - n]])  # noqa: E731
    return Batch(
        obs=join(real.obs, model_rows.obs),
        act=join(real.act, model_rows.act),
        rew=join(real.rew, model_rows.rew),
        next_obs=join(real.next_obs, model_rows.next_obs),
        done=join(real.done, model_rows.done),
    )


# --------------------------------------------------------------------------- update


def rollout_and_mix(cfg, state, batch: Batch, keys: tuple[jax.Array, jax.Array], reward_fn):
    """Steps (1) and (2) of the update, shared by MOPO, MOReL and COMBO: on every
    rollout_every-th update the branches into the buffer, then the mixed minibatch (keys:
    rollout, buffer sample). Returns (state, batch, metrics); the rollout's metrics are NaN
    on the updates without one (the chunk's means skip them)."""
    k_roll, k_sample = keys

    def rollout(buffer: RingBuffer):
        rows_of = jnp.arange(cfg.branches_per_rollout) % batch.obs.shape[0]  # repeats if B is small
        starts = raw_obs(state.tf, batch.obs[rows_of])
        rows, valid = dynamics.branched_rollout(
            state.model, rollout_policy(state), starts, k_roll, cfg.rollout_length, reward_fn
        )
        stats = {"model_reward": jnp.mean(rows.rew, where=valid), "rollout_valid": jnp.mean(valid)}
        return buffer.add(to_nets(state.tf, rows), valid), stats

    def no_rollout(buffer: RingBuffer):
        nan = jnp.full((), jnp.nan, jnp.float32)
        return buffer, {"model_reward": nan, "rollout_valid": nan}

    due = state.step % cfg.rollout_every == 0
    buffer, metrics = jax.lax.cond(due, rollout, no_rollout, state.buffer)
    model_rows = buffer.sample(k_sample, cfg.batch_size - cfg.real_rows)
    metrics = metrics | {"buffer_size": buffer.size.astype(jnp.float32)}
    return state.replace(buffer=buffer), mixed_batch(cfg, batch, model_rows), metrics


def model_based_update(cfg, state, batch: Batch, key: jax.Array, reward_fn: dynamics.RewardFn):
    """One step of SAC on model rollouts (shared with MOReL, which reshapes the model's
    rewards its own way): branches into the buffer, the mixed minibatch, SAC's step."""
    k_roll, k_sample, k_sac = jax.random.split(key, 3)
    state, mixed, m_model = rollout_and_mix(cfg, state, batch, (k_roll, k_sample), reward_fn)
    state, metrics = sac.update(sac_config(cfg), state, mixed, k_sac)
    return state, metrics | m_model


def update(cfg: Config, state: State, batch: Batch, key: jax.Array) -> tuple[State, Metrics]:
    return model_based_update(cfg, state, batch, key, dynamics.penalized(cfg.penalty_coef))


def act(cfg: Config, state: State, obs: jnp.ndarray, key: jax.Array, deterministic: bool = True):
    return sac.act(sac_config(cfg), state, obs, key, deterministic)
