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
Deviations: actions are mapped to [-1, 1] before training (the paper's environments already
have these bounds, so it is the identity there), which makes σ and c unit-free.
"""

from __future__ import annotations

from dataclasses import dataclass

import flax.struct
import jax
import jax.numpy as jnp
from flax.training.train_state import TrainState

from offrl.core import Batch, Metrics, Spec, adam, gradient_step, make_model, polyak, td_target
from offrl.data.transforms import Transforms
from offrl.nets import DeterministicPolicy, QEnsemble, QNet, ensemble_member


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
    normalize_obs: bool = True  # the paper's state normalization
    reward_scaling: str = "none"


@flax.struct.dataclass
class State:
    actor: TrainState
    critic: TrainState
    target_actor: dict
    target_critic: dict
    tf: Transforms
    step: jnp.ndarray


def init(cfg: Config, spec: Spec, key: jax.Array) -> State:
    k_actor, k_critic = jax.random.split(key)
    obs, act = jnp.zeros((1, spec.obs_dim)), jnp.zeros((1, spec.act_dim))
    actor = make_model(
        DeterministicPolicy(cfg.hidden, spec.act_dim), k_actor, (obs,), adam(cfg.actor_lr)
    )
    critic = make_model(QEnsemble(cfg.hidden, num=2), k_critic, (obs, act), adam(cfg.critic_lr))
    return State(
        actor=actor,
        critic=critic,
        target_actor=actor.params,
        target_critic=critic.params,
        tf=spec.transforms,
        step=jnp.zeros((), jnp.int32),
    )


def bc_weight(q: jnp.ndarray, alpha: float) -> jnp.ndarray:
    """λ = α / mean|Q|, held constant in the actor's gradient."""
    return jax.lax.stop_gradient(alpha / jnp.mean(jnp.abs(q)))


def critic_loss(params, state: State, batch: Batch, cfg: Config, key: jax.Array):
    noise = jnp.clip(
        cfg.policy_noise * jax.random.normal(key, batch.act.shape), -cfg.noise_clip, cfg.noise_clip
    )
    next_act = jnp.clip(state.actor.apply_fn(state.target_actor, batch.next_obs) + noise, -1, 1)
    next_q = state.critic.apply_fn(state.target_critic, batch.next_obs, next_act).min(axis=0)
    target = td_target(batch, next_q, cfg.discount)
    q = state.critic.apply_fn(params, batch.obs, batch.act)  # (2, B)
    loss = jnp.sum(jnp.mean((q - target) ** 2, axis=1))
    return loss, {"critic_loss": loss, "q_mean": q.mean()}


def actor_loss(params, state: State, batch: Batch, cfg: Config):
    pi = state.actor.apply_fn(params, batch.obs)
    q1 = ensemble_member(state.critic.params, 0)
    q = QNet(cfg.hidden).apply(q1, batch.obs, pi)
    lmbda = bc_weight(q, cfg.alpha)
    bc = jnp.mean((pi - batch.act) ** 2)
    loss = -lmbda * q.mean() + bc
    return loss, {"actor_loss": loss, "bc_loss": bc, "lambda": lmbda}


def _actor_and_targets(cfg: Config, state: State, batch: Batch) -> tuple[State, Metrics]:
    actor, metrics = gradient_step(state.actor, actor_loss, state, batch, cfg)
    state = state.replace(
        actor=actor,
        target_actor=polyak(state.target_actor, actor.params, cfg.tau),
        target_critic=polyak(state.target_critic, state.critic.params, cfg.tau),
    )
    return state, metrics


def _skip_actor(cfg: Config, state: State, batch: Batch) -> tuple[State, Metrics]:
    nan = jnp.full((), jnp.nan)  # no actor step: reported as NaN, dropped from averages
    return state, {"actor_loss": nan, "bc_loss": nan, "lambda": nan}


def update(cfg: Config, state: State, batch: Batch, key: jax.Array) -> tuple[State, Metrics]:
    critic, m_critic = gradient_step(state.critic, critic_loss, state, batch, cfg, key)
    state = state.replace(critic=critic, step=state.step + 1)
    state, m_actor = jax.lax.cond(
        state.step % cfg.policy_freq == 0,
        lambda s: _actor_and_targets(cfg, s, batch),
        lambda s: _skip_actor(cfg, s, batch),
        state,
    )
    return state, m_critic | m_actor


def act(cfg: Config, state: State, obs: jnp.ndarray, key: jax.Array, deterministic: bool = True):
    del key, deterministic  # the TD3 actor is deterministic; exploration is not used offline
    return state.tf.action_to_env(state.actor.apply_fn(state.actor.params, state.tf.obs(obs)))
