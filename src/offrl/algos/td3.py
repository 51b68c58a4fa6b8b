"""TD3: twin delayed deep deterministic policy gradient (used offline it is a naive baseline).

Paper: Fujimoto, van Hoof & Meger, "Addressing Function Approximation Error in Actor-Critic
Methods", ICML 2018.

Critic (`num_critics` Q-functions, clipped double-Q with target policy smoothing):
    ã  = clip(π'(s') + clip(ε, -c, c), -1, 1),   ε ~ N(0, σ²)
    y  = r + γ (1 - d) min_i Q'_i(s', ã)
    L_Q = Σ_i E[(Q_i(s, a) - y)²]
Actor, every `policy_freq` critic steps:
    L_π = -E[Q_1(s, π(s))]
then the targets of actor and critics move by Polyak averaging with τ.
Exploration (online, `act(deterministic=False)`): a = clip(π(s) + N(0, expl_noise²), -1, 1).

Update order per step: critic step; if step % policy_freq == 0: actor step, then both targets.
Defaults: the paper's (and its reference code's) σ = 0.2, c = 0.5, policy_freq = 2,
expl_noise = 0.1, γ = 0.99, τ = 0.005, Adam 3e-4, batch 256, 256-256 MLPs (the code's; the
paper's Table 3 lists 400-300).
Deviations: actions are mapped to [-1, 1] before the networks (the identity on MuJoCo), so
σ, c and the exploration noise are in units of the half action range.
DDPG (offrl.algos.ddpg) is this file with one critic, policy_freq 1 and no smoothing.
"""

from __future__ import annotations

from collections.abc import Callable
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
    discount: float = 0.99  # γ
    tau: float = 0.005  # Polyak rate of the target networks
    num_critics: int = 2  # clipped double-Q over this many critics (DDPG: 1)
    policy_noise: float = 0.2  # σ of the target policy smoothing noise
    noise_clip: float = 0.5  # c, clip of that noise
    policy_freq: int = 2  # actor and target update every this many critic steps
    expl_noise: float = 0.1  # std of the Gaussian exploration noise when acting online
    actor_lr: float = 3e-4
    critic_lr: float = 3e-4
    hidden: tuple[int, ...] = (256, 256)  # actor and critic MLP widths
    batch_size: int = 256
    normalize_obs: bool = False
    reward_scaling: str = "none"


@flax.struct.dataclass
class State:
    actor: TrainState
    critic: TrainState
    target_actor: dict
    target_critic: dict
    tf: Transforms
    step: jnp.ndarray


def init(cfg, spec: Spec, key: jax.Array) -> State:
    return actor_critic_state(cfg, spec, key, QEnsemble(cfg.hidden, num=cfg.num_critics))


def actor_critic_state(cfg, spec: Spec, key: jax.Array, critic_net) -> State:
    """A tanh actor of cfg.hidden and `critic_net`, each with Adam (cfg.actor_lr,
    cfg.critic_lr), targets equal to them, step 0: TD3's start, ReBRAC's and D4PG's."""
    k_actor, k_critic = jax.random.split(key)
    obs, act = jnp.zeros((1, spec.obs_dim)), jnp.zeros((1, spec.act_dim))
    actor = make_model(
        DeterministicPolicy(cfg.hidden, spec.act_dim), k_actor, (obs,), adam(cfg.actor_lr)
    )
    critic = make_model(critic_net, k_critic, (obs, act), adam(cfg.critic_lr))
    return State(
        actor=actor,
        critic=critic,
        target_actor=actor.params,
        target_critic=critic.params,
        tf=spec.transforms,
        step=jnp.zeros((), jnp.int32),
    )


def smoothed_target_action(state: State, batch: Batch, cfg, key: jax.Array) -> jnp.ndarray:
    """ã = clip(π′(s′) + clip(ε, -c, c), -1, 1), ε ~ N(0, σ²): target policy smoothing."""
    noise = jnp.clip(
        cfg.policy_noise * jax.random.normal(key, batch.act.shape), -cfg.noise_clip, cfg.noise_clip
    )
    return jnp.clip(state.actor.apply_fn(state.target_actor, batch.next_obs) + noise, -1, 1)


def critic_loss(params, state: State, batch: Batch, cfg, key: jax.Array):
    next_act = smoothed_target_action(state, batch, cfg, key)
    next_q = state.critic.apply_fn(state.target_critic, batch.next_obs, next_act).min(axis=0)
    target = td_target(batch, next_q, cfg.discount)
    q = state.critic.apply_fn(params, batch.obs, batch.act)  # (num_critics, B)
    loss = jnp.sum(jnp.mean((q - target) ** 2, axis=1))
    return loss, {"critic_loss": loss, "q_mean": q.mean()}


def first_critic_q(state: State, cfg, obs: jnp.ndarray, act: jnp.ndarray) -> jnp.ndarray:
    """Q_1(s, a): the critic the actor climbs (TD3 and TD3+BC read the first one only)."""
    return QNet(cfg.hidden).apply(ensemble_member(state.critic.params, 0), obs, act)


def actor_loss(params, state: State, batch: Batch, cfg):
    q = first_critic_q(state, cfg, batch.obs, state.actor.apply_fn(params, batch.obs))
    loss = -q.mean()
    return loss, {"actor_loss": loss}


Loss = Callable[..., tuple[jnp.ndarray, Metrics]]


def delayed_update(actor_loss_fn: Loss, critic_loss_fn: Loss = critic_loss):
    """TD3's update step around given actor and critic losses (TD3+BC swaps in its actor
    loss, ReBRAC both)."""

    def actor_and_targets(cfg, state: State, batch: Batch) -> tuple[State, Metrics]:
        actor, metrics = gradient_step(state.actor, actor_loss_fn, state, batch, cfg)
        state = state.replace(
            actor=actor,
            target_actor=polyak(state.target_actor, actor.params, cfg.tau),
            target_critic=polyak(state.target_critic, state.critic.params, cfg.tau),
        )
        return state, metrics

    def update_fn(cfg, state: State, batch: Batch, key: jax.Array) -> tuple[State, Metrics]:
        critic, m_critic = gradient_step(state.critic, critic_loss_fn, state, batch, cfg, key)
        state = state.replace(critic=critic, step=state.step + 1)
        actor_shapes = jax.eval_shape(lambda s: actor_and_targets(cfg, s, batch)[1], state)
        # No actor step: its metrics are NaN there and dropped from the chunk's averages.
        skip = {k: jnp.full(v.shape, jnp.nan, v.dtype) for k, v in actor_shapes.items()}
        state, m_actor = jax.lax.cond(
            state.step % cfg.policy_freq == 0,
            lambda s: actor_and_targets(cfg, s, batch),
            lambda s: (s, skip),
            state,
        )
        return state, m_critic | m_actor

    return update_fn


update = delayed_update(actor_loss)


def act(cfg, state: State, obs: jnp.ndarray, key: jax.Array, deterministic: bool = True):
    unit = state.actor.apply_fn(state.actor.params, state.tf.obs(obs))
    if not deterministic:  # online exploration: Gaussian noise on the deterministic action
        unit = jnp.clip(unit + cfg.expl_noise * jax.random.normal(key, unit.shape), -1.0, 1.0)
    return state.tf.action_to_env(unit)
