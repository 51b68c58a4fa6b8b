"""BCQ: batch-constrained deep Q-learning, the continuous-action version.

Paper: Fujimoto, Meger & Precup, "Off-Policy Deep Reinforcement Learning without
Exploration", ICML 2019. Reference code: sfujim/BCQ, continuous_BCQ/BCQ.py and main.py.

Networks: a conditional VAE G_ω = (E, D) of the behaviour policy (offrl.nets.vae), a
perturbation network ξ_φ and twin critics Q_1, Q_2, with targets ξ_φ', Q'_1, Q'_2.
Actions live in [-1, 1]; ã ~ G_ω(s) means z ~ N(0, I) clipped to ±0.5, ã = D(s, z).
Perturbed action:   π_φ(s, a) = clip(a + Φ · tanh(MLP_φ(s, a)), -1, 1)
VAE (negative ELBO, the reference's weighting and means):
    μ, σ = E(s, a),  z = μ + σ ε,  L_G = mean (D(s, z) - a)² + ½ · mean_j KL(N(μ_j, σ_j²) ‖ N(0, 1))
Critic, n actions per next state from the (just updated) VAE, perturbed by the TARGET ξ:
    a'_k = π_φ'(s', ã_k),  ã_k ~ G_ω(s'),  k = 1..n
    y = r + γ (1 - d) max_k [ λ min_{i=1,2} Q'_i(s', a'_k) + (1 - λ) max_{i=1,2} Q'_i(s', a'_k) ]
    L_Q = Σ_i E[(Q_i(s, a) - y)²]
Actor (DPG through the first critic only, as in the reference):
    L_ξ = -E[ Q_1(s, π_φ(s, ã)) ],  ã ~ G_ω(s) (a constant to the actor's gradient)
Acting: sample N actions from G_ω(s), perturb with ξ_φ, take the argmax of Q_1.

Update order per step (the reference's `train` loop): VAE step; critic step (VAE samples
from the VAE as just updated); actor step against the critic as just updated; then both
targets move by Polyak averaging with τ (critic and actor, every step).

Defaults: the reference code (continuous_BCQ/BCQ.py, main.py): γ = 0.99, τ = 0.005,
λ = 0.75, Φ = 0.05, n = 10 target samples, batch 100, Adam 1e-3 for actor and critic and
Adam's default 1e-3 for the VAE, 400-300 actor and critics, 750-750 VAE encoder and
decoder, latent dimension 2|A| clipped to ±0.5 when sampling, log σ clamped to [-4, 15],
raw observations and rewards. Paper Algorithm 1 and Eq. (13) agree on λ, Φ and n.
Deviations:
- Acting samples `num_act_samples` = 100 actions (the reference's `select_action`);
  the paper's Eq. (11) uses the same n as training (10): set `num_act_samples=10` for it.
- `act(deterministic=False)` returns one perturbed VAE sample without the argmax (the
  batch-constrained proposal distribution); neither the paper nor the code has this mode.
- Actions are mapped to [-1, 1] before the networks, so Φ is in units of the half action
  range; the reference scales Φ by `max_action` instead, the same for symmetric bounds.
  The VAE's reconstruction error is in unit actions too: 1/M² of the reference's on
  bounds [-M, M], which shifts its balance with the KL term by that factor.
- flax default initializers (LeCun-normal weights, zero biases) rather than PyTorch's
  uniform ±1/√fan_in.
(Not a deviation: as in the reference, the critic target and the actor draw their VAE
samples separately; here each from its own key, and the VAE step's noise from a third.)
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import flax.linen as nn
import flax.struct
import jax
import jax.numpy as jnp
from flax.training.train_state import TrainState

from offrl.algos.td3 import first_critic_q
from offrl.core import (
    Batch,
    Metrics,
    Spec,
    adam,
    best_candidate,
    gradient_step,
    make_model,
    polyak,
    repeat_states,
    soft_clipped_min,
    td_target,
)
from offrl.data.transforms import Transforms
from offrl.errors import ConfigError
from offrl.nets import MLP, VAE, QEnsemble
from offrl.nets.vae import vae_loss, vae_sample


@dataclass(frozen=True)
class Config:
    discount: float = 0.99  # γ
    tau: float = 0.005  # Polyak rate of the target actor and critics (every step)
    lmbda: float = 0.75  # λ of the soft clipped double-Q: λ min + (1 - λ) max
    phi: float = 0.05  # Φ, the largest perturbation, in units of the [-1, 1] action range
    num_samples: int = 10  # n VAE actions per next state in the critic target
    num_act_samples: int = 100  # VAE actions per state when acting (reference; paper: 10)
    latent_clip: float = 0.5  # prior latents are clipped to ±this when sampling the VAE
    actor_lr: float = 1e-3  # Adam lr of the perturbation network
    critic_lr: float = 1e-3  # Adam lr of the twin critics
    vae_lr: float = 1e-3  # Adam lr of the VAE (PyTorch's default in the reference)
    hidden: tuple[int, ...] = (400, 300)  # perturbation network and critic MLP widths
    vae_hidden: tuple[int, ...] = (750, 750)  # VAE encoder and decoder MLP widths
    batch_size: int = 100
    normalize_obs: bool = False  # the reference feeds raw observations
    reward_scaling: str = "none"  # and raw rewards

    def __post_init__(self):
        if not 0.0 <= self.lmbda <= 1.0:
            raise ConfigError(f"bcq: lmbda must be in [0, 1], got {self.lmbda}")
        if self.phi < 0.0:
            raise ConfigError(f"bcq: phi must be >= 0, got {self.phi}")
        if self.num_samples < 1 or self.num_act_samples < 1:
            raise ConfigError(
                "bcq: num_samples and num_act_samples must be >= 1, got "
                f"{self.num_samples} and {self.num_act_samples}"
            )
        if self.latent_clip <= 0.0:
            raise ConfigError(f"bcq: latent_clip must be > 0, got {self.latent_clip}")


def perturb(act: jnp.ndarray, logits: jnp.ndarray, phi: float) -> jnp.ndarray:
    """clip(a + Φ tanh(logits), -1, 1): a move of at most Φ per dimension, kept in bounds."""
    return jnp.clip(act + phi * jnp.tanh(logits), -1.0, 1.0)


class Perturbation(nn.Module):
    """ξ_φ: π_φ(s, a) = clip(a + Φ tanh(MLP(s, a)), -1, 1) (the reference's `Actor`)."""

    hidden: Sequence[int]
    act_dim: int
    phi: float

    @nn.compact
    def __call__(self, obs: jnp.ndarray, act: jnp.ndarray) -> jnp.ndarray:
        logits = MLP(self.hidden, self.act_dim)(jnp.concatenate([obs, act], axis=-1))
        return perturb(act, logits, self.phi)


@flax.struct.dataclass
class State:
    vae: TrainState  # behaviour model G_ω
    actor: TrainState  # perturbation network ξ_φ
    critic: TrainState  # twin Q (QEnsemble, num=2)
    target_actor: dict
    target_critic: dict
    tf: Transforms
    step: jnp.ndarray


def init(cfg: Config, spec: Spec, key: jax.Array) -> State:
    k_vae, k_actor, k_critic, k_sample = jax.random.split(key, 4)
    obs, act = jnp.zeros((1, spec.obs_dim)), jnp.zeros((1, spec.act_dim))
    vae_module = VAE(cfg.vae_hidden, spec.act_dim, 2 * spec.act_dim, cfg.latent_clip)
    vae = make_model(vae_module, k_vae, (obs, act, k_sample), adam(cfg.vae_lr))
    actor = make_model(
        Perturbation(cfg.hidden, spec.act_dim, cfg.phi), k_actor, (obs, act), adam(cfg.actor_lr)
    )
    critic = make_model(QEnsemble(cfg.hidden, num=2), k_critic, (obs, act), adam(cfg.critic_lr))
    return State(
        vae=vae,
        actor=actor,
        critic=critic,
        target_actor=actor.params,
        target_critic=critic.params,
        tf=spec.transforms,
        step=jnp.zeros((), jnp.int32),
    )


def perturbed_samples(state: State, actor_params, obs: jnp.ndarray, n: int, key: jax.Array):
    """n perturbed VAE actions per state: (B, n, |A|), with the repeated states (B, n, obs)."""
    obs_n = repeat_states(obs, n)
    sampled = vae_sample(state.vae, state.vae.params, obs_n, key)
    return obs_n, state.actor.apply_fn(actor_params, obs_n, sampled)


def soft_clipped_max(q_next: jnp.ndarray, lmbda: float) -> jnp.ndarray:
    """Eq. (13)'s value of s': q_next (2, B, n) twin target Q of n actions per state ->
    max_k [λ min_i Q'_i + (1 - λ) max_i Q'_i], shape (B,)."""
    return soft_clipped_min(q_next, lmbda).max(axis=-1)


def critic_loss(params, state: State, batch: Batch, cfg: Config, key: jax.Array):
    obs_n, next_act = perturbed_samples(
        state, state.target_actor, batch.next_obs, cfg.num_samples, key
    )
    q_next = state.critic.apply_fn(state.target_critic, obs_n, next_act)  # (2, B, n)
    target = jax.lax.stop_gradient(
        td_target(batch, soft_clipped_max(q_next, cfg.lmbda), cfg.discount)
    )
    q = state.critic.apply_fn(params, batch.obs, batch.act)  # (2, B)
    loss = jnp.sum(jnp.mean((q - target) ** 2, axis=1))
    return loss, {"critic_loss": loss, "q_mean": q.mean(), "target_mean": target.mean()}


def actor_loss(params, state: State, batch: Batch, cfg: Config, key: jax.Array):
    sampled = vae_sample(state.vae, state.vae.params, batch.obs, key)  # one per state
    perturbed = state.actor.apply_fn(params, batch.obs, jax.lax.stop_gradient(sampled))
    loss = -first_critic_q(state, cfg, batch.obs, perturbed).mean()
    return loss, {"actor_loss": loss, "perturbation": jnp.mean(jnp.abs(perturbed - sampled))}


def update(cfg: Config, state: State, batch: Batch, key: jax.Array) -> tuple[State, Metrics]:
    k_vae, k_critic, k_actor = jax.random.split(key, 3)
    # 1. behaviour VAE (negative ELBO)
    vae, m_vae = gradient_step(state.vae, vae_loss, state.vae.apply_fn, batch.obs, batch.act, k_vae)
    state = state.replace(vae=vae)
    # 2. twin critics towards the soft clipped max over n perturbed samples of the new VAE
    critic, m_critic = gradient_step(state.critic, critic_loss, state, batch, cfg, k_critic)
    state = state.replace(critic=critic)
    # 3. perturbation network: maximize Q_1 of the new critic
    actor, m_actor = gradient_step(state.actor, actor_loss, state, batch, cfg, k_actor)
    # 4. targets of critic and actor
    state = state.replace(
        actor=actor,
        target_critic=polyak(state.target_critic, state.critic.params, cfg.tau),
        target_actor=polyak(state.target_actor, actor.params, cfg.tau),
        step=state.step + 1,
    )
    return state, m_vae | m_critic | m_actor


def act(cfg: Config, state: State, obs: jnp.ndarray, key: jax.Array, deterministic: bool = True):
    """argmax_k Q_1(s, π_φ(s, ã_k)) over `num_act_samples` VAE samples ã_k (the reference's
    `select_action`); deterministic=False: one perturbed VAE sample, no argmax."""
    obs = state.tf.obs(obs)
    n = cfg.num_act_samples if deterministic else 1
    obs_n, candidates = perturbed_samples(state, state.actor.params, obs, n, key)
    if not deterministic:
        return state.tf.action_to_env(candidates[:, 0])
    q1 = first_critic_q(state, cfg, obs_n, candidates)  # (B, n)
    return state.tf.action_to_env(best_candidate(q1, candidates))
