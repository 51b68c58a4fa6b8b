"""COMBO: conservative offline model-based policy optimization, CQL on model rollouts.

Paper: Yu, Kumar, Rafailov, Rajeswaran, Levine & Finn, "COMBO: Conservative Offline
Model-Based Policy Optimization", NeurIPS 2021. Reference code: OfflineRL-Kit's combo.py (the
v2-data reproduction quoted in docs/algos/combo.md).

Model and rollouts: MOPO's (offrl.algos.mopo.rollout_and_mix), with the model's own reward
and no uncertainty penalty: COMBO does not trust the ensemble's uncertainty ("notoriously
difficult for neural networks") and regularizes the critic instead.
Critic, on a minibatch from d_f = f · D + (1 − f) · model rollouts (f = real_ratio = 0.5), the
lecture's eq. 4 with CQL(H)'s sampling distribution (offrl.algos.cql):
    L_Q = β (E_{s ~ d_f}[T log Σ_a exp(Q(s, a) / T)] − E_{(s,a) ~ D}[Q(s, a)])
          + E_{(s,a,s') ~ d_f}[(Q(s, a) − B̂^π Q̄(s, a))²]
The push-down is over every state of the mixed minibatch (OfflineRL-Kit's rho_s = "mix"), with
CQL's importance-sampled uniform and π(·|s), π(·|s') actions; the push-up is over its dataset
rows only. Actor and entropy temperature: SAC's, as in CQL.

Update order per step: (1)-(2) MOPO's: 50 branches of h steps (the model's reward) into the
buffer, the mixed minibatch; (3) CQL's step on it (α, actor, critic with the COMBO
regularizer, α' when Lagrange, Polyak targets).
Defaults: OfflineRL-Kit's COMBO script — actor lr 1e-4, critic lr 3e-4, γ 0.99, τ 0.005,
learned α, β = cql_weight 5.0 (per task 0.5 or 5), T = 1, 10 sampled actions per kind,
deterministic backup, no Lagrange, real_ratio 0.5, rollout_batch_size 50k every 1000
updates, model_retain_epochs 5, h = 5; per dataset (h, β) as TASK_DEFAULTS, from its
run_combo.py (h 1 or 5, β 0.5 or 5).
Deviations: MOPO's rollout schedule (50 branches every update, docs/algos/mopo.md);
256-256 networks (OfflineRL-Kit: 256 × 3, `hidden=256,256,256` restores it).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import flax.struct
import jax
import jax.numpy as jnp
from flax.training.train_state import TrainState

from offrl import dynamics
from offrl.algos import cql, mopo
from offrl.core import Batch, Metrics, RingBuffer, Spec
from offrl.data.dataset import Dataset
from offrl.data.transforms import Transforms


@dataclass(frozen=True)
class Config:
    # CQL (offrl.algos.cql), OfflineRL-Kit's COMBO settings.
    discount: float = 0.99
    tau: float = 0.005
    actor_lr: float = 1e-4
    critic_lr: float = 3e-4
    hidden: tuple[int, ...] = (256, 256)
    auto_alpha: bool = True
    init_alpha: float = 1.0
    target_entropy: float | None = None
    backup_entropy: bool = False
    max_q_backup: bool = False
    cql_alpha: float = 5.0  # β
    num_sampled_actions: int = 10
    temperature: float = 1.0
    importance_sampling: bool = True
    with_lagrange: bool = False
    target_action_gap: float = 10.0
    bc_warmup_steps: int = 0
    batch_size: int = 256
    normalize_obs: bool = False
    reward_scaling: str = "none"
    # cql's critic step in blocks of states (speed only); measured 2026-12-08, speed.py
    # --seconds 8: 12.9 upd/s in 1 block, 11.8 in 4 (its rollouts dominate), so 1
    critic_blocks: int = 1
    # The model and its rollouts (offrl.algos.mopo).
    rollout_length: int = 5
    rollout_batch_size: int = 50_000
    rollout_freq: int = 1000
    model_retain_epochs: int = 5
    rollout_every: int = 5
    real_ratio: float = 0.5  # f
    dynamics: str | None = None
    dynamics_epochs: int = 0

    branches_per_update = mopo.Config.branches_per_update
    branches_per_rollout = mopo.Config.branches_per_rollout
    buffer_capacity = mopo.Config.buffer_capacity
    real_rows = mopo.Config.real_rows


# (h, β) per dataset for D4RL's v2 data: OfflineRL-Kit's run_combo.py ("suggested hypers").
TASK_DEFAULTS = {
    name: {"rollout_length": h, "cql_alpha": beta}
    for name, (h, beta) in {
        "halfcheetah-medium": (5, 0.5),
        "hopper-medium": (5, 5.0),
        "walker2d-medium": (1, 5.0),
        "halfcheetah-medium-replay": (5, 0.5),
        "hopper-medium-replay": (5, 0.5),
        "walker2d-medium-replay": (1, 0.5),
        "halfcheetah-medium-expert": (5, 5.0),
        "hopper-medium-expert": (5, 5.0),
        "walker2d-medium-expert": (1, 5.0),
    }.items()
}


@flax.struct.dataclass
class State:
    # CQL's fields, under CQL's names: cql.update steps them in place.
    actor: TrainState
    critic: TrainState
    target_critic: dict
    log_alpha: TrainState
    log_alpha_prime: TrainState
    tf: Transforms
    step: jnp.ndarray
    model: dynamics.Dynamics
    buffer: RingBuffer


def init(cfg: Config, spec: Spec, key: jax.Array) -> State:
    mopo.check(cfg)
    k_cql, k_model = jax.random.split(key)
    agent = cql.init(cfg, spec, k_cql)
    model = dynamics.init(dynamics.DynamicsConfig(), spec.obs_dim, spec.act_dim, k_model)
    buffer = RingBuffer.create(cfg.buffer_capacity, spec.obs_dim, spec.act_dim)
    fields = {f.name: getattr(agent, f.name) for f in dataclasses.fields(agent)}
    return State(**fields, model=model, buffer=buffer)


def pretrain(cfg: Config, state: State, dataset: Dataset, key: jax.Array) -> tuple[State, dict]:
    """The dynamics ensemble: loaded from cfg.dynamics, else fitted (as MOPO's)."""
    model, info = dynamics.fit_or_load(dataset, cfg.dynamics, cfg.dynamics_epochs, key)
    return state.replace(model=model), info


# --------------------------------------------------------------------------- losses
# The regularizer is cql.critic_loss with its push-up restricted to the dataset rows, the
# first cfg.real_rows of the mixed minibatch (cql.critic_rows' push-up weight).


# --------------------------------------------------------------------------- update


def update(cfg: Config, state: State, batch: Batch, key: jax.Array) -> tuple[State, Metrics]:
    k_roll, k_sample, k_cql = jax.random.split(key, 3)
    state, mixed, m_model = mopo.rollout_and_mix(cfg, state, batch, (k_roll, k_sample), None)
    state, metrics = cql.update(cfg, state, mixed, k_cql, push_up_rows=cfg.real_rows)
    return state, metrics | m_model


def act(cfg: Config, state: State, obs: jnp.ndarray, key: jax.Array, deterministic: bool = True):
    return cql.act(cfg, state, obs, key, deterministic)
