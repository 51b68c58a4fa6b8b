"""TD3+BC: a minimalist approach to offline RL.

Paper: Fujimoto & Gu, "A Minimalist Approach to Offline Reinforcement Learning", NeurIPS 2021.

Critic (TD3, twin Q with clipped double-Q and target policy smoothing):
    ã  = clip(π'(s') + clip(ε, -c, c), -1, 1),   ε ~ N(0, σ²)
    y  = r + γ (1 - d) min_{i=1,2} Q'_i(s', ã)
    L_Q = Σ_i E[(Q_i(s, a) - y)²]
Actor, every `policy_freq` critic steps:
    λ   = α / E|Q_1(s, π(s))|          (λ is not differentiated: a stop-gradient)
    L_π = -λ E[Q_1(s, π(s))] + E[(π(s) - a)²]
then the targets of actor and critics move by Polyak averaging with τ.

Update order per step: critic step; if step % policy_freq == 0: actor step, then both targets.
Defaults: the paper's Table/appendix: α = 2.5, σ = 0.2, c = 0.5, policy_freq = 2, γ = 0.99,
τ = 0.005, Adam 3e-4 for both nets, 256-256 MLPs, batch 256, states standardized with the
dataset mean/std (ε = 1e-3 added to the std).
TD3's pieces (State, init, the critic loss and the delayed update) come from offrl.algos.td3.
Deviations: actions are mapped to [-1, 1] before training (the paper's environments already
have these bounds, so it is the identity there), which makes σ and c unit-free.
"""

from __future__ import annotations

from dataclasses import dataclass

import jax
import jax.numpy as jnp

from offrl.algos.td3 import State, critic_loss, delayed_update, first_critic_q, init
from offrl.core import Batch

__all__ = ["Config", "State", "act", "actor_loss", "critic_loss", "init", "update"]


@dataclass(frozen=True)
class Config:
    alpha: float = 2.5  # BC trade-off: λ = α / mean|Q|
    discount: float = 0.99  # γ
    tau: float = 0.005  # Polyak rate of the target networks
    policy_noise: float = 0.2  # σ of the target policy smoothing noise
    noise_clip: float = 0.5  # c, clip of that noise
    policy_freq: int = 2  # actor and target update every this many critic steps
    actor_lr: float = 3e-4
    critic_lr: float = 3e-4
    hidden: tuple[int, ...] = (256, 256)  # actor and critic MLP widths
    batch_size: int = 256
    num_critics: int = 2  # the twin critics of TD3
    normalize_obs: bool = True  # the paper's state normalization
    reward_scaling: str = "none"


def bc_weight(q: jnp.ndarray, alpha: float) -> jnp.ndarray:
    """λ = α / mean|Q|, held constant in the actor's gradient."""
    return jax.lax.stop_gradient(alpha / jnp.mean(jnp.abs(q)))


def actor_loss(params, state: State, batch: Batch, cfg: Config):
    pi = state.actor.apply_fn(params, batch.obs)
    q = first_critic_q(state, cfg, batch.obs, pi)
    lmbda = bc_weight(q, cfg.alpha)
    bc = jnp.mean((pi - batch.act) ** 2)
    loss = -lmbda * q.mean() + bc
    return loss, {"actor_loss": loss, "bc_loss": bc, "lambda": lmbda}


update = delayed_update(actor_loss)  # TD3's critic step and delayed actor/target steps


def act(cfg: Config, state: State, obs: jnp.ndarray, key: jax.Array, deterministic: bool = True):
    del key, deterministic  # the TD3 actor is deterministic; exploration is not used offline
    return state.tf.action_to_env(state.actor.apply_fn(state.actor.params, state.tf.obs(obs)))
