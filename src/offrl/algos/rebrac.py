"""ReBRAC: revisited behaviour-regularized actor-critic, TD3+BC with the BC term in the actor
and in the critic's target.

Paper: Tarasov, Kurenkov, Nikulin & Kolesnikov, "Revisiting the Minimalist Approach to
Offline Reinforcement Learning", NeurIPS 2023. Reference code: CORL's rebrac.py (JAX), whose
configs give the defaults and the per-dataset β pairs below.

Critic (TD3's twin Q with target policy smoothing, layer norm in the critics), with a′ the
dataset's next action:
    ã  = clip(π′(s′) + clip(ε, -c, c), -1, 1),   ε ~ N(0, σ²)
    y  = r + γ (1 - d) [min_{i=1,2} Q′_i(s′, ã) − β_critic ‖ã − a′‖²]
    L_Q = Σ_i E[(Q_i(s, a) − y)²]
Actor, every `policy_freq` critic steps (λ not differentiated):
    λ   = 1 / E|min_i Q_i(s, π(s))|      (1 when normalize_q is off)
    L_π = E[β_actor ‖π(s) − a‖² − λ min_i Q_i(s, π(s))]
then the targets of actor and critics move by Polyak averaging with τ.

Update order per step: TD3's (offrl.algos.td3.delayed_update): critic step; if step %
policy_freq == 0: actor step, then both targets.
Defaults: CORL's ReBRAC configs: 256 × 3 MLPs, layer norm in the critics only, Adam 1e-3 for
both, batch 1024, γ 0.99, τ 0.005, σ 0.2, c 0.5, policy_freq 2, normalize_q on, raw states;
β_actor = β_critic = 0.01 unless the dataset has its own pair (TASK_DEFAULTS).
The dataset's next action a′ is the next row's action within the episode (`extra_columns`).
An episode's last row has none: there the critic's penalty is 0 (a terminal has no
bootstrap anyway; a timeout bootstraps without the penalty). D4RL's qlearning_dataset,
which CORL reads, drops timeout rows instead.
Deviations: flax's default initializers (CORL's: PyTorch-like fan-in uniform for the hidden
layers, zero-mean small last layers).
"""

from __future__ import annotations

from dataclasses import dataclass

import jax
import jax.numpy as jnp
import numpy as np

from offrl.algos.td3 import State, actor_critic_state, delayed_update, smoothed_target_action
from offrl.core import Batch, Spec, td_target
from offrl.data.dataset import Dataset
from offrl.data.transforms import Transforms
from offrl.nets import QEnsemble

__all__ = ["Config", "State", "act", "actor_loss", "critic_loss", "init", "update"]


@dataclass(frozen=True)
class Config:
    actor_bc_coef: float = 0.01  # β_actor
    critic_bc_coef: float = 0.01  # β_critic
    normalize_q: bool = True  # λ = 1 / mean|Q| in the actor loss
    discount: float = 0.99  # γ
    tau: float = 0.005  # Polyak rate of the target networks
    policy_noise: float = 0.2  # σ of the target policy smoothing noise
    noise_clip: float = 0.5  # c, clip of that noise
    policy_freq: int = 2  # actor and target update every this many critic steps
    actor_lr: float = 1e-3
    critic_lr: float = 1e-3
    hidden: tuple[int, ...] = (256, 256, 256)  # actor and critic MLP widths
    critic_layer_norm: bool = True  # layer norm after each hidden layer of the critics
    batch_size: int = 1024
    num_critics: int = 2
    normalize_obs: bool = False  # CORL's normalize_states: false
    reward_scaling: str = "none"


# (β_actor, β_critic) per dataset for D4RL's v2 data: CORL's configs/offline/rebrac.
TASK_DEFAULTS = {
    name: {"actor_bc_coef": actor, "critic_bc_coef": critic}
    for name, (actor, critic) in {
        "halfcheetah-medium": (0.001, 0.01),
        "hopper-medium": (0.01, 0.01),
        "walker2d-medium": (0.05, 0.1),
        "halfcheetah-medium-replay": (0.01, 0.001),
        "hopper-medium-replay": (0.05, 0.5),
        "walker2d-medium-replay": (0.05, 0.01),
        "halfcheetah-medium-expert": (0.01, 0.1),
        "hopper-medium-expert": (0.1, 0.01),
        "walker2d-medium-expert": (0.01, 0.01),
    }.items()
}


def init(cfg: Config, spec: Spec, key: jax.Array) -> State:
    """TD3's state, the critics layer-normed when cfg.critic_layer_norm."""
    critics = QEnsemble(cfg.hidden, cfg.num_critics, cfg.critic_layer_norm)
    return actor_critic_state(cfg, spec, key, critics)


def extra_columns(cfg: Config, dataset: Dataset, tf: Transforms) -> dict[str, np.ndarray]:
    """a′ per row: the next row's action in [-1, 1] within the episode, and whether the row
    has one (an episode's last row does not; its a′ is its own action, weighted 0)."""
    del cfg
    unit = np.asarray(tf.action_to_unit(jnp.asarray(dataset.actions, jnp.float32)))
    has_next = np.ones(len(dataset), np.float32)
    has_next[dataset.episode_ends] = 0.0
    following = np.concatenate([unit[1:], unit[-1:]])
    next_act = np.where(has_next[:, None] > 0, following, unit)
    return {"next_act": next_act, "has_next_act": has_next}


# --------------------------------------------------------------------------- losses


def bc_penalty(act: jnp.ndarray, data_act: jnp.ndarray) -> jnp.ndarray:
    """‖a − a_data‖² per row: summed over action dimensions (CORL's), not averaged."""
    return jnp.sum((act - data_act) ** 2, axis=-1)


def critic_loss(params, state: State, batch: Batch, cfg: Config, key: jax.Array):
    next_act = smoothed_target_action(state, batch, cfg, key)
    next_q = state.critic.apply_fn(state.target_critic, batch.next_obs, next_act).min(axis=0)
    penalty = bc_penalty(next_act, batch.extra["next_act"]) * batch.extra["has_next_act"]
    target = td_target(batch, next_q - cfg.critic_bc_coef * penalty, cfg.discount)
    q = state.critic.apply_fn(params, batch.obs, batch.act)  # (num_critics, B)
    loss = jnp.sum(jnp.mean((q - target) ** 2, axis=1))
    return loss, {"critic_loss": loss, "q_mean": q.mean(), "critic_bc": penalty.mean()}


def actor_loss(params, state: State, batch: Batch, cfg: Config):
    pi = state.actor.apply_fn(params, batch.obs)
    q = state.critic.apply_fn(state.critic.params, batch.obs, pi).min(axis=0)
    lmbda = (
        jax.lax.stop_gradient(1.0 / jnp.mean(jnp.abs(q))) if cfg.normalize_q else q.dtype.type(1)
    )
    bc = bc_penalty(pi, batch.act)
    loss = jnp.mean(cfg.actor_bc_coef * bc - lmbda * q)
    return loss, {"actor_loss": loss, "bc_loss": bc.mean(), "lambda": lmbda}


# --------------------------------------------------------------------------- update

update = delayed_update(actor_loss, critic_loss)


def act(cfg: Config, state: State, obs: jnp.ndarray, key: jax.Array, deterministic: bool = True):
    del key, deterministic  # a deterministic actor
    return state.tf.action_to_env(state.actor.apply_fn(state.actor.params, state.tf.obs(obs)))
