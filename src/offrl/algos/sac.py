"""SAC: soft actor-critic, the online off-policy learner (used offline it is the naive baseline).

Paper: Haarnoja, Zhou, Hartikainen, Tucker, Ha, Tan, Kumar, Zhu, Gupta, Abbeel & Levine,
"Soft Actor-Critic Algorithms and Applications", arXiv:1812.05905 (2018) — the version with
twin Q-functions, no V-network and automatic entropy tuning.

Critic (twin Q, i = 1, 2), a' ~ π(·|s'):
    y   = r + γ (1 - d) [min_i Q'_i(s', a') - α log π(a'|s')]
    L_Q = Σ_i E[(Q_i(s, a) - y)²]
Actor, a ~ π(·|s) reparameterized (a = tanh(u), u ~ N(μ(s), σ(s)²)):
    L_π = E[α log π(a|s) - min_i Q_i(s, a)]
Temperature, target entropy H̄ = -|A|:
    L_α = -log α · E[log π(a|s) + H̄]

Update order per step: α (on the current policy's entropy); actor with the new α against the
current critic; critic (its target sampling from the just-updated actor); target critics
by Polyak averaging with τ, every step.
Defaults: the paper's Table 1: Adam 3e-4 for everything, 256-256 MLPs, batch 256, γ = 0.99,
τ = 0.005, H̄ = -|A|, one gradient step per environment step (see offrl.behavior.online).
Deviations: flax's default initializers; the first α step precedes the actor step (the paper
steps all three from the same batch, in the order Q, π, α); log σ is clipped to [-20, 2]
(rlkit's bounds). Offline (`offrl train sac`), nothing is changed: it is the baseline that
bootstraps from out-of-distribution actions.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import flax.struct
import jax
import jax.numpy as jnp
from flax.training.train_state import TrainState

from offrl.core import Batch, Metrics, Spec, adam, gradient_step, make_model, polyak, td_target
from offrl.data.transforms import Transforms
from offrl.nets import QEnsemble, TanhGaussianPolicy
from offrl.nets.policies import tanh_gaussian_sample


@dataclass(frozen=True)
class Config:
    discount: float = 0.99  # γ
    tau: float = 0.005  # Polyak rate of the target critics
    actor_lr: float = 3e-4  # Adam lr of the actor and of log α
    critic_lr: float = 3e-4
    hidden: tuple[int, ...] = (256, 256)  # actor and critic MLP widths
    auto_alpha: bool = True  # learn log α towards the target entropy; False: α = init_alpha
    init_alpha: float = 1.0  # α at step 0
    target_entropy: float | None = None  # H̄; None means -|A|
    batch_size: int = 256
    normalize_obs: bool = False  # SAC feeds raw observations
    reward_scaling: str = "none"
    num_critics: int = 2  # the twin Q; SAC-N and EDAC (offrl.algos.edac) take N


def config_of(cfg) -> Config:
    """SAC's Config from an algorithm's that builds on SAC (MOPO, EDAC, CQL): the fields
    they share."""
    shared = (f.name for f in dataclasses.fields(Config) if hasattr(cfg, f.name))
    return Config(**{name: getattr(cfg, name) for name in shared})


@flax.struct.dataclass
class State:
    actor: TrainState
    critic: TrainState
    target_critic: dict
    log_alpha: TrainState  # scalar log α, the entropy temperature
    tf: Transforms
    step: jnp.ndarray


def scalar_param(value: float, lr: float) -> TrainState:
    """A learned scalar: params {"value": ()} (TrainState needs a dict) with its own Adam."""
    params = {"value": jnp.asarray(value, jnp.float32)}
    return TrainState.create(apply_fn=None, params=params, tx=adam(lr))


def init(cfg: Config, spec: Spec, key: jax.Array) -> State:
    k_actor, k_critic = jax.random.split(key)
    obs, act = jnp.zeros((1, spec.obs_dim)), jnp.zeros((1, spec.act_dim))
    actor = make_model(
        TanhGaussianPolicy(cfg.hidden, spec.act_dim), k_actor, (obs,), adam(cfg.actor_lr)
    )
    critic = make_model(
        QEnsemble(cfg.hidden, num=cfg.num_critics), k_critic, (obs, act), adam(cfg.critic_lr)
    )
    return State(
        actor=actor,
        critic=critic,
        target_critic=critic.params,
        log_alpha=scalar_param(jnp.log(cfg.init_alpha), cfg.actor_lr),
        tf=spec.transforms,
        step=jnp.zeros((), jnp.int32),
    )


def alpha_loss(log_alpha, state, batch: Batch, cfg, key: jax.Array):
    """-log α · E[log π(a|s) + H̄]: α grows while the entropy is below its target."""
    mean, log_std = state.actor.apply_fn(state.actor.params, batch.obs)
    _, log_pi = tanh_gaussian_sample(key, mean, log_std)
    target = -batch.act.shape[-1] if cfg.target_entropy is None else cfg.target_entropy
    entropy = -jnp.mean(log_pi)
    loss = log_alpha["value"] * jax.lax.stop_gradient(entropy - target)
    return loss, {"alpha_loss": loss, "entropy": entropy}


def actor_loss(params, state, batch: Batch, cfg, key: jax.Array, alpha):
    mean, log_std = state.actor.apply_fn(params, batch.obs)
    pi, log_pi = tanh_gaussian_sample(key, mean, log_std)
    q = state.critic.apply_fn(state.critic.params, batch.obs, pi).min(axis=0)
    loss = jnp.mean(alpha * log_pi - q)
    return loss, {"actor_loss": loss, "log_std": jnp.mean(log_std)}


def critic_loss(params, state: State, batch: Batch, cfg: Config, key: jax.Array, alpha):
    next_mean, next_log_std = state.actor.apply_fn(state.actor.params, batch.next_obs)
    next_act, next_logp = tanh_gaussian_sample(key, next_mean, next_log_std)
    next_q = state.critic.apply_fn(state.target_critic, batch.next_obs, next_act).min(axis=0)
    target = jax.lax.stop_gradient(td_target(batch, next_q - alpha * next_logp, cfg.discount))
    q = state.critic.apply_fn(params, batch.obs, batch.act)  # (N, B)
    loss = jnp.sum(jnp.mean((q - target) ** 2, axis=1))
    return loss, {"critic_loss": loss, "q_mean": q.mean(), "target_mean": target.mean()}


def entropy_step(state, batch: Batch, cfg, key: jax.Array):
    """Step log α (when tuned) and return (state, α, metrics): shared with CQL."""
    metrics: Metrics = {}
    if cfg.auto_alpha:
        log_alpha, metrics = gradient_step(state.log_alpha, alpha_loss, state, batch, cfg, key)
        state = state.replace(log_alpha=log_alpha)
    return state, jnp.exp(state.log_alpha.params["value"]), metrics


def update(cfg: Config, state: State, batch: Batch, key: jax.Array) -> tuple[State, Metrics]:
    return sac_step(cfg, state, batch, key, critic_loss)


def sac_step(cfg, state: State, batch: Batch, key: jax.Array, critic_loss_fn) -> tuple:
    """SAC's update with `critic_loss_fn` (critic_loss's signature) as the critic's loss:
    shared with EDAC, whose critic loss adds its diversity term."""
    k_pi, k_critic = jax.random.split(key)
    state, alpha, m_alpha = entropy_step(state, batch, cfg, k_pi)
    actor, m_actor = gradient_step(state.actor, actor_loss, state, batch, cfg, k_pi, alpha)
    state = state.replace(actor=actor)
    critic, m_critic = gradient_step(
        state.critic, critic_loss_fn, state, batch, cfg, k_critic, alpha
    )
    state = state.replace(
        critic=critic,
        target_critic=polyak(state.target_critic, critic.params, cfg.tau),
        step=state.step + 1,
    )
    return state, m_alpha | m_actor | m_critic | {"alpha": alpha}


def act(cfg: Config, state: State, obs: jnp.ndarray, key: jax.Array, deterministic: bool = True):
    mean, log_std = state.actor.apply_fn(state.actor.params, state.tf.obs(obs))
    unit = jnp.tanh(mean) if deterministic else tanh_gaussian_sample(key, mean, log_std)[0]
    return state.tf.action_to_env(unit)
