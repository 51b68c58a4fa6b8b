"""IQL: Implicit Q-Learning.

Paper: Kostrikov, Nair & Levine, "Offline Reinforcement Learning with Implicit Q-Learning",
ICLR 2022. Reference code: github.com/ikostrikov/implicit_q_learning.

IQL never queries Q at actions outside the dataset. A state value V fits an upper expectile
of the target critic over the dataset's actions, Q regresses onto r + γV(s'), and the policy
is extracted by advantage-weighted regression (AWR) on the dataset's actions.

Value (expectile regression, τ = `expectile`, Q̂ the target critic):
    u     = min_{i=1,2} Q̂_i(s, a) - V(s)
    L_V   = E[ |τ - 1(u < 0)| u² ]
Critic (twin Q, target from the value net, no target policy):
    y     = r + γ (1 - d) V(s')
    L_Q   = Σ_i E[(Q_i(s, a) - y)²]
Actor (AWR, β = `beta` the inverse temperature; the weight is a constant):
    w     = min(exp(β (min_i Q̂_i(s, a) - V(s))), 100)
    L_π   = -E[ w log π(a | s) ],   π(·|s) = N(tanh(MLP(s)), diag(exp(log σ))²),
            log σ a state-independent parameter clipped to [-5, 2].
then the target critic moves by Polyak averaging: Q̂ <- τ_p Q + (1 - τ_p) Q̂.

Update order per step: V; then Q (its target uses the new V); then π (its weights use the
new V and the target critic); then the target critic. Kostrikov's code steps the actor
before the critic; that makes no difference, because the actor reads only the target
critic and V, never the online critic, so the two steps commute.
Acting: the tanh mean (deterministic), or a Gaussian sample clipped to [-1, 1].

Defaults: the paper's MuJoCo locomotion settings (its appendix of experimental details)
and the reference's configs/mujoco_config.py: τ = 0.7, β = 3.0, weight clip 100, γ = 0.99,
Polyak 0.005, Adam 3e-4 for actor, critic and value, 256-256 MLPs, batch 256, log σ
clipped to [-5, 2] (the reference's learner.py); rewards scaled by
1000 / (max episode return - min episode return) (the reference's `normalize` for
locomotion, here reward_scaling="return_range"); observations not standardized (the
reference does not; set normalize_obs=True to standardize them).
Deviations:
- The reference decays the actor's learning rate by a cosine schedule over the whole run
  (1M steps) by default. Here `actor_lr_decay_steps = 0` keeps it constant, because a
  Config does not know the run's length; set it to the number of training steps to
  reproduce the reference.
- Actions are mapped to [-1, 1] before training (the identity on the paper's locomotion
  tasks, whose bounds are already [-1, 1]).
- Layers use flax's default (LeCun-normal) initialization; the reference's MLPs are
  orthogonally initialized. No dropout (the reference uses none for locomotion).
- AntMaze (reward - 1 in the reference, with τ = 0.9, β = 10) is not a preset: pick
  reward_scaling and the hyperparameters in the Config.
"""

from __future__ import annotations

from dataclasses import dataclass

import flax.struct
import jax
import jax.numpy as jnp
from flax.training.train_state import TrainState

from offrl.core import (
    Batch,
    Metrics,
    Spec,
    adam,
    exp_weights,
    gradient_step,
    make_model,
    polyak,
    td_target,
)
from offrl.data.transforms import Transforms
from offrl.nets import GaussianPolicy, QEnsemble, ValueNet
from offrl.nets.policies import gaussian_log_prob


@dataclass(frozen=True)
class Config:
    expectile: float = 0.7  # τ of the value's expectile regression (0.5 = mean, -> 1 = max)
    beta: float = 3.0  # β, inverse temperature of the advantage weights
    max_weight: float = 100.0  # clip of the advantage weight exp(β A)
    discount: float = 0.99  # γ
    tau: float = 0.005  # Polyak rate of the target critic
    actor_lr: float = 3e-4
    critic_lr: float = 3e-4
    value_lr: float = 3e-4
    actor_lr_decay_steps: int = 0  # > 0: cosine decay of actor_lr to 0 over this many steps
    hidden: tuple[int, ...] = (256, 256)  # actor, critic and value MLP widths
    batch_size: int = 256
    normalize_obs: bool = False  # the reference does not standardize observations
    reward_scaling: str = "return_range"  # r * 1000 / (max - min episode return)


@flax.struct.dataclass
class State:
    actor: TrainState
    critic: TrainState  # twin Q: outputs (2, B)
    value: TrainState
    target_critic: dict
    tf: Transforms
    step: jnp.ndarray


def init(cfg: Config, spec: Spec, key: jax.Array) -> State:
    k_actor, k_critic, k_value = jax.random.split(key, 3)
    obs, act = jnp.zeros((1, spec.obs_dim)), jnp.zeros((1, spec.act_dim))
    actor = make_model(
        GaussianPolicy(cfg.hidden, spec.act_dim),
        k_actor,
        (obs,),
        adam(cfg.actor_lr, cfg.actor_lr_decay_steps),
    )
    critic = make_model(QEnsemble(cfg.hidden, num=2), k_critic, (obs, act), adam(cfg.critic_lr))
    value = make_model(ValueNet(cfg.hidden), k_value, (obs,), adam(cfg.value_lr))
    return State(
        actor=actor,
        critic=critic,
        value=value,
        target_critic=critic.params,
        tf=spec.transforms,
        step=jnp.zeros((), jnp.int32),
    )


def expectile_loss(diff: jnp.ndarray, expectile: float) -> jnp.ndarray:
    """mean of |τ - 1(u < 0)| u²: weight τ where u >= 0, 1 - τ where u < 0."""
    weight = jnp.where(diff < 0, 1.0 - expectile, expectile)
    return jnp.mean(weight * diff**2)


def awr_weight(adv: jnp.ndarray, beta: float, max_weight: float) -> jnp.ndarray:
    """min(exp(β A), max_weight), held constant in the actor's gradient."""
    return exp_weights(beta * adv, max_weight)


def value_loss(params, state: State, batch: Batch, cfg: Config) -> tuple[jnp.ndarray, Metrics]:
    q = state.critic.apply_fn(state.target_critic, batch.obs, batch.act).min(axis=0)
    v = state.value.apply_fn(params, batch.obs)
    loss = expectile_loss(q - v, cfg.expectile)
    return loss, {"value_loss": loss, "v_mean": v.mean()}


def critic_loss(params, state: State, batch: Batch, cfg: Config) -> tuple[jnp.ndarray, Metrics]:
    next_v = state.value.apply_fn(state.value.params, batch.next_obs)
    target = td_target(batch, next_v, cfg.discount)
    q = state.critic.apply_fn(params, batch.obs, batch.act)  # (2, B)
    loss = jnp.sum(jnp.mean((q - target) ** 2, axis=1))
    return loss, {"critic_loss": loss, "q_mean": q.mean()}


def actor_loss(params, state: State, batch: Batch, cfg: Config) -> tuple[jnp.ndarray, Metrics]:
    q = state.critic.apply_fn(state.target_critic, batch.obs, batch.act).min(axis=0)
    v = state.value.apply_fn(state.value.params, batch.obs)
    adv = q - v
    weight = awr_weight(adv, cfg.beta, cfg.max_weight)
    mean, log_std = state.actor.apply_fn(params, batch.obs)
    log_prob = gaussian_log_prob(batch.act, mean, log_std)
    loss = -jnp.mean(weight * log_prob)
    return loss, {
        "actor_loss": loss,
        "adv_mean": adv.mean(),
        "weight_mean": weight.mean(),
        "weight_clipped_frac": jnp.mean(weight >= cfg.max_weight),
        "log_std": log_std.mean(),
    }


def update(cfg: Config, state: State, batch: Batch, key: jax.Array) -> tuple[State, Metrics]:
    del key  # no sampling inside an IQL step (the reference's dropout is off for locomotion)
    value, m_v = gradient_step(state.value, value_loss, state, batch, cfg)  # V first
    state = state.replace(value=value)
    critic, m_q = gradient_step(state.critic, critic_loss, state, batch, cfg)  # y uses new V
    state = state.replace(critic=critic)
    actor, m_pi = gradient_step(state.actor, actor_loss, state, batch, cfg)  # AWR on new V
    state = state.replace(
        actor=actor,
        target_critic=polyak(state.target_critic, state.critic.params, cfg.tau),
        step=state.step + 1,
    )
    return state, m_v | m_q | m_pi


def act(cfg: Config, state: State, obs: jnp.ndarray, key: jax.Array, deterministic: bool = True):
    mean, log_std = state.actor.apply_fn(state.actor.params, state.tf.obs(obs))
    if deterministic:
        unit = mean
    else:
        noise = jax.random.normal(key, mean.shape) * jnp.exp(log_std)
        unit = jnp.clip(mean + noise, -1.0, 1.0)
    return state.tf.action_to_env(unit)
