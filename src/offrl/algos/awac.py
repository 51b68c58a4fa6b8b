"""AWAC: advantage-weighted actor-critic.

Paper: Nair, Gupta, Dalal & Levine, "AWAC: Accelerating Online Reinforcement Learning with
Offline Datasets", arXiv:2006.09359 (2020). Reference code: rail-berkeley/rlkit,
rlkit/torch/sac/awac_trainer.py with examples/awac/mujoco/awac1.py (the Gym MuJoCo
settings); reimplementations read for comparison: tinkoff-ai/CORL
algorithms/offline/awac.py and ikostrikov/jaxrl jaxrl/agents/awac/.

The critic is evaluated by TD learning on the current policy's actions (off-policy
evaluation of π, no conservatism); the actor is a weighted maximum-likelihood fit of the
dataset's actions, the weight growing with the critic's advantage. π is never pushed
towards actions the data does not contain: its only gradient is the log-likelihood of data
actions.

Critic (twin Q, i = 1, 2; no entropy term; a' from the *online* actor, no target actor):
    a' ~ π(·|s'),   y = r + γ (1 - d) min_i Q'_i(s', a')
    L_Q = Σ_i E[(Q_i(s, a) - y)²]
Advantage (the critic after its step; a_k ~ π(·|s), K = `num_value_samples`):
    V(s) = (1/K) Σ_k min_i Q_i(s, a_k),     A(s, a) = min_i Q_i(s, a) - V(s)
Actor (weights held constant, λ = `lam`):
    "exp"     (the paper):   w = min(exp(A / λ), w_max)
    "softmax" (rlkit/jaxrl): w = B · softmax_batch(A / λ)     (B the batch size)
    L_π = -E[w log π(a|s)]
π(·|s) = N(tanh(MLP(s)), σ²), log σ = lo + (hi - lo) · sigmoid(θ), θ a learned
state-independent vector (rlkit's GaussianPolicy with std_architecture="values", bounds
[-6, 0]); the Gaussian itself is not squashed. Sampled actions (a', a_k, and acting with
deterministic=False) are clipped to [-1, 1].

Update order per step (one minibatch): critic step (a' sampled from the actor as it is);
actor step, its advantages from the critic just updated; target critics by Polyak
averaging with τ; step + 1. This is CORL's order (jaxrl's too, which moves the targets
between the two steps; the actor never reads them, so that is the same). rlkit computes
all losses from the pre-step networks and then steps Q, π and the targets: its actor
weights come from the critic one step older.

Defaults: the reference's Gym MuJoCo script (awac1.py) and trainer: Adam 3e-4 for actor and
critics, actor L2 weight decay 1e-4 (PyTorch Adam's `weight_decay`: λ_wd θ added to the
gradient), batch 1024, γ = 0.99, τ = 0.005 every step, critics 256-256, log σ in [-6, 0],
one policy sample for V with the min over the twins (awr_min_q=True, vf_K=1,
awr_use_mle_for_vf=False), no entropy term (alpha=0, no tuning), rewards unscaled
(reward_scale=1), raw observations. λ = 1.0 is the trainer's default and CORL's; see below.
Deviations:
- Target critics start as copies of the critics. rlkit builds them as separate networks with
  their own random initialization and never copies them at the start, so its targets begin
  unrelated and Polyak averaging (τ = 0.005) pulls them to the critics over a few hundred
  updates. Not measured here.
- Weights. The paper writes exp(A / λ) without normalization; that is the default here,
  clipped at `max_weight` = 100 as in CORL (a guard against overflow; the paper has no
  clip). rlkit's default (normalize_over_batch=True, which awac1.py keeps) and jaxrl use
  B · softmax(A / λ) over the minibatch, available as weighting="softmax" (no clip).
  rlkit's MuJoCo script sweeps β = λ = 2 with the softmax weights (jaxrl's config uses 2.0
  too); λ's scale is the reward's, so with other rewards it needs its own value.
- Actor size. `hidden` sets the critics' widths; `actor_hidden` = () gives the actor the
  same widths (256-256). The reference's actor is 256 x 4: set `actor_hidden=256,256,256,256`.
- Sampled actions are clipped to [-1, 1] before the critic sees them (CORL does so; rlkit
  evaluates the Gaussian's raw samples, which may leave the action bounds).
- Initialization: flax defaults (LeCun-normal weights, zero biases); rlkit draws hidden
  layers fan-in uniform and the mean's last layer uniform in ±1e-3. θ starts at 0 in both
  (log σ = -3).
- Actions are mapped to [-1, 1] by the transforms (the identity on MuJoCo's bounds).
- Not implemented: rlkit's online phase and its options outside the paper's algorithm
  (BC pretraining, buffer policies, reparameterized or BRAC terms, β schedules).
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass

import flax.linen as nn
import flax.struct
import jax
import jax.numpy as jnp
import optax
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
from offrl.errors import ConfigError
from offrl.nets import MLP, QEnsemble
from offrl.nets.policies import gaussian_log_prob

WEIGHTINGS = ("exp", "softmax")


class OptionError(ConfigError, ValueError):
    """A config value outside its choices. A ConfigError, so the CLI prints one line and exits
    with status 2, and a ValueError for Python callers."""


@dataclass(frozen=True)
class Config:
    lam: float = 1.0  # λ, temperature of the weights exp(A / λ) (in reward units)
    weighting: str = "exp"  # "exp": min(exp(A/λ), max_weight); "softmax": B·softmax_batch(A/λ)
    max_weight: float = 100.0  # clip of exp(A / λ) ("exp" only; CORL's exp_adv_max)
    num_value_samples: int = 1  # K actions a_k ~ π(·|s) in V(s) = mean_k min_i Q_i(s, a_k)
    num_critics: int = 2  # twin Q: min over them in the target and the advantage
    discount: float = 0.99  # γ
    tau: float = 0.005  # Polyak rate of the target critics, every step
    actor_lr: float = 3e-4
    critic_lr: float = 3e-4
    actor_weight_decay: float = 1e-4  # L2 on the actor's parameters, added to the gradient
    hidden: tuple[int, ...] = (256, 256)  # critic MLP widths (and the actor's if actor_hidden=())
    actor_hidden: tuple[int, ...] = ()  # actor MLP widths; () = hidden (reference: 256 x 4)
    log_std_min: float = -6.0  # log σ = min + (max - min) · sigmoid(θ)
    log_std_max: float = 0.0
    batch_size: int = 1024
    normalize_obs: bool = False  # rlkit feeds raw observations
    reward_scaling: str = "none"  # rlkit's reward_scale = 1

    def __post_init__(self):
        check_choice("awac", "weighting", self.weighting, WEIGHTINGS)
        check_positive("awac", lam=self.lam, num_value_samples=self.num_value_samples)
        check_networks("awac", self)


def check_choice(algo: str, name: str, value: str, choices: Sequence[str]) -> None:
    if value not in choices:
        options = " or ".join(repr(c) for c in choices)
        raise OptionError(f"{algo}: {name} must be {options}, got {value!r}")


def check_positive(algo: str, **values) -> None:
    for name, value in values.items():
        if not value > 0:
            raise OptionError(f"{algo}: {name} must be > 0, got {value!r}")


def check_networks(algo: str, cfg) -> None:
    """The fields `init` reads, shared by AWAC and CRR."""
    check_positive(algo, num_critics=cfg.num_critics)
    if cfg.log_std_min > cfg.log_std_max:
        raise OptionError(
            f"{algo}: log_std_min must be <= log_std_max, got {cfg.log_std_min} > {cfg.log_std_max}"
        )


class Policy(nn.Module):
    """N(tanh(MLP(s)), σ²) with log σ = lo + (hi - lo) · sigmoid(θ), θ state-independent
    (rlkit's GaussianPolicy, std_architecture="values"). Returns (mean, log_std)."""

    hidden: Sequence[int]
    act_dim: int
    log_std_min: float = -6.0
    log_std_max: float = 0.0

    @nn.compact
    def __call__(self, obs: jnp.ndarray) -> tuple[jnp.ndarray, jnp.ndarray]:
        mean = jnp.tanh(MLP(self.hidden, self.act_dim)(obs))
        logits = self.param("log_std_logits", nn.initializers.zeros, (self.act_dim,))
        span = self.log_std_max - self.log_std_min
        log_std = self.log_std_min + span * jax.nn.sigmoid(logits)
        return mean, jnp.broadcast_to(log_std, mean.shape)


@functools.cache
def adam_l2(lr: float, weight_decay: float) -> optax.GradientTransformation:
    """Adam with PyTorch's `weight_decay` (coupled L2: wd · θ added to the gradient before
    Adam's moments). Cached for the same reason as core.adam."""
    if weight_decay == 0.0:
        return adam(lr)
    return optax.chain(optax.add_decayed_weights(weight_decay), optax.adam(lr))


@flax.struct.dataclass
class State:
    actor: TrainState
    critic: TrainState  # QEnsemble: outputs (num_critics, ...batch)
    target_critic: dict
    tf: Transforms
    step: jnp.ndarray


def init(cfg, spec: Spec, key: jax.Array) -> State:
    """Actor and critics from the fields AWAC and CRR share (hidden, actor_hidden, log σ
    bounds, learning rates, actor_weight_decay, num_critics)."""
    k_actor, k_critic = jax.random.split(key)
    obs, act = jnp.zeros((1, spec.obs_dim)), jnp.zeros((1, spec.act_dim))
    policy = Policy(cfg.actor_hidden or cfg.hidden, spec.act_dim, cfg.log_std_min, cfg.log_std_max)
    actor = make_model(policy, k_actor, (obs,), adam_l2(cfg.actor_lr, cfg.actor_weight_decay))
    critic = make_model(
        QEnsemble(cfg.hidden, num=cfg.num_critics), k_critic, (obs, act), adam(cfg.critic_lr)
    )
    return State(
        actor=actor,
        critic=critic,
        target_critic=critic.params,
        tf=spec.transforms,
        step=jnp.zeros((), jnp.int32),
    )


def sample_actions(key: jax.Array, mean: jnp.ndarray, log_std: jnp.ndarray, num: int):
    """`num` Gaussian samples per state, clipped to [-1, 1]: (num, ...batch, act_dim)."""
    noise = jax.random.normal(key, (num, *mean.shape))
    return jnp.clip(mean + jnp.exp(log_std) * noise, -1.0, 1.0)


def policy_q(state, critic_params, obs: jnp.ndarray, policy, key: jax.Array, num: int):
    """min_i Q_i(s, a_k) of `num` actions a_k ~ N(mean, σ²) per state, policy = (mean, log σ)
    of π(·|s): (num, B)."""
    acts = sample_actions(key, *policy, num)
    obs = jnp.broadcast_to(obs, (num, *obs.shape))
    return state.critic.apply_fn(critic_params, obs, acts).min(axis=0)


def advantage_weights(adv: jnp.ndarray, cfg: Config) -> jnp.ndarray:
    """The AWAC weights of advantages A (B,), held constant in the actor's gradient."""
    if cfg.weighting == "softmax":
        return jax.lax.stop_gradient(adv.shape[0] * jax.nn.softmax(adv / cfg.lam))
    return exp_weights(adv / cfg.lam, cfg.max_weight)


def weighted_nll(weights: jnp.ndarray, log_prob: jnp.ndarray) -> jnp.ndarray:
    """-E[w log π(a|s)]: the weighted log-likelihood loss of AWR, AWAC and CRR."""
    return -jnp.mean(weights * log_prob)


def critic_loss(params, state, batch: Batch, cfg, key: jax.Array, next_actor_params):
    """TD regression onto r + γ (1 - d) min_i Q'_i(s', a'), a' ~ π(·|s') of the actor whose
    parameters are `next_actor_params` (AWAC: the online actor; CRR: the target actor)."""
    next_policy = state.actor.apply_fn(next_actor_params, batch.next_obs)
    next_q = policy_q(state, state.target_critic, batch.next_obs, next_policy, key, 1)[0]
    target = jax.lax.stop_gradient(td_target(batch, next_q, cfg.discount))
    q = state.critic.apply_fn(params, batch.obs, batch.act)  # (num_critics, B)
    loss = jnp.sum(jnp.mean((q - target) ** 2, axis=1))
    return loss, {"critic_loss": loss, "q_mean": q.mean(), "target_mean": target.mean()}


def data_and_policy_q(state, batch: Batch, policy, key: jax.Array, num: int):
    """min_i Q_i of the online critic at the data actions, (B,), and at `num` samples of
    π(·|s) per state, (num, B); policy = (mean, log σ) of π(·|s), held constant."""
    q = state.critic.apply_fn(state.critic.params, batch.obs, batch.act).min(axis=0)
    policy = jax.lax.stop_gradient(policy)
    return q, policy_q(state, state.critic.params, batch.obs, policy, key, num)


def actor_metrics(loss, adv, weights, log_std) -> Metrics:
    return {
        "actor_loss": loss,
        "adv_mean": adv.mean(),
        "adv_std": adv.std(),
        "weight_mean": weights.mean(),
        "weight_max": weights.max(),
        "log_std": log_std.mean(),
    }


def actor_loss(params, state: State, batch: Batch, cfg: Config, key: jax.Array):
    mean, log_std = state.actor.apply_fn(params, batch.obs)
    q, q_pi = data_and_policy_q(state, batch, (mean, log_std), key, cfg.num_value_samples)
    adv = q - q_pi.mean(axis=0)  # A = Q(s, a) - V(s)
    weights = advantage_weights(adv, cfg)
    loss = weighted_nll(weights, gaussian_log_prob(batch.act, mean, log_std))
    return loss, actor_metrics(loss, adv, weights, log_std)


def update(cfg: Config, state: State, batch: Batch, key: jax.Array) -> tuple[State, Metrics]:
    k_critic, k_actor = jax.random.split(key)
    # 1. critics: TD onto the online actor's next actions
    critic, m_critic = gradient_step(
        state.critic, critic_loss, state, batch, cfg, k_critic, state.actor.params
    )
    state = state.replace(critic=critic)
    # 2. actor: weighted likelihood, advantages from the critic just updated
    actor, m_actor = gradient_step(state.actor, actor_loss, state, batch, cfg, k_actor)
    # 3. targets
    state = state.replace(
        actor=actor,
        target_critic=polyak(state.target_critic, state.critic.params, cfg.tau),
        step=state.step + 1,
    )
    return state, m_critic | m_actor


def act(cfg, state, obs: jnp.ndarray, key: jax.Array, deterministic: bool = True):
    """The mean tanh(MLP(s)), or a Gaussian sample clipped to [-1, 1]; in env units."""
    mean, log_std = state.actor.apply_fn(state.actor.params, state.tf.obs(obs))
    unit = mean if deterministic else sample_actions(key, mean, log_std, 1)[0]
    return state.tf.action_to_env(unit)
