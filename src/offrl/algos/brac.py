"""BRAC: behavior regularized actor critic, the primal variant with a KL penalty.

Paper: Wu, Tucker & Nachum, "Behavior Regularized Offline Reinforcement Learning",
arXiv:1911.11361 (2019). Reference code: google-research/google-research,
behavior_regularized_offline_rl/brac/ (brac_primal_agent.py, bc_agent.py, divergences.py,
networks.py, agent.py, run_primal.sh, README.md).

Two phases inside one `update`, switched by the step counter (lax.cond):

1. Behaviour fit, the first `behavior_pretrain_steps` updates (the reference trains a
   separate BC agent for 300k steps and loads its checkpoint). π_b is a tanh-Gaussian fitted
   by maximum likelihood with an entropy bonus whose weight α_b is tuned towards H̄:
       L_b   = E[ α_b log π_b(ã|s) - log π_b(clip(a, ±(1-ε))|s) ],  ã ~ π_b(·|s), ε = 1e-3
       L_α_b = α_b · E[ -log π_b(ã|s) - H̄ ]        (α_b grows while the entropy is below H̄)
2. Actor-critic, every later update; π_b is frozen (as in the reference) unless
   `train_behavior_after_pretrain`.
   KL estimate from n samples of the current policy (the reference's `primal_estimate`):
       D(s) = 1/n Σ_j [ log π(a_j|s) - log π_b(clip(a_j, ±(1-ε))|s) ],   a_j ~ π(·|s)
   Critic (ensemble i = 1..K, Q̂ = λ min_i + (1 - λ) max_i, λ = 1: the min), a' ~ π(·|s'):
       y   = r + γ (1 - d) [ Q̂'(s', a') - α_e log π(a'|s') - α D(s') ]   (α D: BRAC-v only)
       L_Q = Σ_i E[(Q_i(s, a) - y)²]
   Actor, a ~ π(·|s) reparameterized, gradients through the samples of D as well:
       L_π = E[ α_e log π(a|s) + α D(s) - 1[k >= warm_start] Q̂(s, a) ]
   (k counts actor-critic updates: the first `warm_start_steps` only pull π towards π_b.)
   Dual step on α (train_alpha), a clipped raw variable, not log α:
       α   = clip(α_raw, 0, α_max),   L_α = -α · (E[D(s)] - D_target)
       ∂L_α/∂α_raw = -(E[D] - D_target): α grows while D > D_target, shrinks while below.
   Entropy weight α_e (train_entropy_alpha): L_α_e = α_e · E[-log π(a|s) - H̄].
   Clipped variables get the reference's `clip_v2` gradient: it passes through the clip
   whenever the descent step points back into [low, high], so a variable sitting at a bound
   can leave it (a plain clip would freeze it there).

Update order of an actor-critic step (the reference's `_optimize_step`): critic; actor
against the just-updated critic; α on a fresh D(s) from the just-updated actor; α_e; then the
target critics by Polyak averaging (the reference moves the targets at the start of the next
step instead, which is the same sequence of networks).

Defaults: run_primal.sh and the README's BRAC example (the paper's setup): α = 0.1 (the
agent's own constructor default is 1.0), value penalty on (BRAC-v), KL, n = 4 samples,
fixed α (train_alpha off, D_target = 0, α_max = 500), no entropy term (α_e = 0), ensemble
of 2 critics with λ = 1, warm start 20k, Adam 1e-3 critic / 3e-4 actor / 1e-3 α, γ = 0.99,
τ = 0.005 every step, batch 256. Behaviour: bc_agent.py and the README's BC command: 300k
steps, Adam 5e-4, entropy α_b tuned from 1.0 towards H̄ = -|A|. Policies (reference
networks.py): tanh-Gaussian, log σ = -5 + 2.5 (tanh(x) + 1) ∈ [-5, 0]; evaluation with tanh(μ).
Deviations:
- 256-256 ReLU MLPs for all networks by default; the reference uses ReLU too (its
  networks.py), with 300-300 critics and 200-200 actor and behaviour policy
  (`hidden=(300, 300), actor_hidden=(200, 200)` restores the widths). flax's default
  initializers (the reference: Keras glorot-uniform).
- The behaviour fit runs inside the same update loop (the reference's separate BC run);
  its updates count in the run's steps, so a run needs more than `behavior_pretrain_steps`.
- Exactly `warm_start_steps` actor updates leave Q out (the reference's `step > warm_start`,
  counting from 0, makes one more).
- Targets start equal to the critics (the reference draws them from a separate init).
- Actions live in [-1, 1] (the transforms map them to the environment's bounds); ε = 1e-3 is
  applied there, not in environment units. Weight decay is not implemented (reference: 0).
- The reference's "max_q" test policy (the best of sampled actions) is not provided.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass

import flax.linen as nn
import flax.struct
import jax
import jax.numpy as jnp
from flax.training.train_state import TrainState

from offrl.algos.sac import scalar_param
from offrl.core import (
    Batch,
    Metrics,
    Spec,
    adam,
    gradient_step,
    make_model,
    polyak,
    soft_clipped_min,
    td_target,
)
from offrl.data.transforms import Transforms
from offrl.errors import ConfigError
from offrl.nets import MLP, QEnsemble
from offrl.nets.policies import tanh_gaussian_log_prob, tanh_gaussian_sample

CLIP_EPS = 1e-3  # the reference's clip of actions before log π_b (atanh)


@dataclass(frozen=True)
class Config:
    # Behaviour regularization.
    alpha: float = 0.1  # α, weight of the divergence (initial value when train_alpha)
    value_penalty: bool = True  # BRAC-v: α D(s') in the critic target too; False: BRAC-p
    n_div_samples: int = 4  # n, samples of π(·|s) per state in the KL estimate
    train_alpha: bool = False  # dual gradient descent on α towards target_divergence
    target_divergence: float = 0.0  # D_target of the dual step
    alpha_max: float = 500.0  # α is clipped to [0, alpha_max]
    alpha_lr: float = 1e-3  # Adam lr of α and of α_e
    # Entropy term of the actor-critic phase (the reference has it, off by default).
    entropy_alpha: float = 0.0  # α_e (initial value when train_entropy_alpha)
    train_entropy_alpha: bool = False  # tune α_e towards the target entropy
    target_entropy_per_dim: float = -1.0  # H̄ = this × |A|, for α_e and for α_b
    # Behaviour policy π_b.
    behavior_pretrain_steps: int = 300_000  # first updates fit only π_b
    behavior_lr: float = 5e-4  # Adam lr of π_b and of its entropy weight α_b
    behavior_entropy: bool = True  # entropy bonus with α_b tuned towards H̄ (bc_agent.py)
    train_behavior_after_pretrain: bool = False  # keep fitting π_b afterwards (reference: no)
    # Actor-critic.
    warm_start_steps: int = 20_000  # first actor updates minimize α D (+ α_e log π) only
    num_critics: int = 2  # K, the Q ensemble
    ensemble_q_lambda: float = 1.0  # λ in λ min_i Q_i + (1 - λ) max_i Q_i
    discount: float = 0.99  # γ
    tau: float = 0.005  # Polyak rate of the target critics, every step
    actor_lr: float = 3e-4
    critic_lr: float = 1e-3
    hidden: tuple[int, ...] = (256, 256)  # critic MLP widths; also the policies' if actor_hidden=()
    actor_hidden: tuple[int, ...] = ()  # actor and π_b widths; () means `hidden`
    log_std_min: float = -5.0  # log σ = min + (max - min)(tanh(x) + 1) / 2 (pre-tanh σ)
    log_std_max: float = 0.0
    batch_size: int = 256
    normalize_obs: bool = False  # the reference feeds raw observations
    reward_scaling: str = "none"  # the reference uses raw rewards

    def __post_init__(self):
        checks = [
            (self.alpha >= 0.0, f"alpha must be >= 0, got {self.alpha}"),
            (self.alpha_max > 0.0, f"alpha_max must be > 0, got {self.alpha_max}"),
            (self.alpha <= self.alpha_max, f"alpha {self.alpha} exceeds alpha_max"),
            (self.entropy_alpha >= 0.0, f"entropy_alpha must be >= 0, got {self.entropy_alpha}"),
            (self.n_div_samples >= 1, f"n_div_samples must be >= 1, got {self.n_div_samples}"),
            (self.num_critics >= 1, f"num_critics must be >= 1, got {self.num_critics}"),
            (
                0.0 <= self.ensemble_q_lambda <= 1.0,
                f"ensemble_q_lambda must be in [0, 1], got {self.ensemble_q_lambda}",
            ),
            (
                self.behavior_pretrain_steps >= 0 and self.warm_start_steps >= 0,
                "behavior_pretrain_steps and warm_start_steps must be >= 0",
            ),
            (
                self.log_std_min < self.log_std_max,
                f"log_std_min {self.log_std_min} must be < log_std_max {self.log_std_max}",
            ),
        ]
        for ok, message in checks:
            if not ok:
                raise ConfigError(f"brac: {message}")


class SquashedStdPolicy(nn.Module):
    """The reference's tanh-Gaussian: a = tanh(u), u ~ N(μ(s), σ(s)²), with log σ squashed
    smoothly into [log_std_min, log_std_max] by a tanh. Returns (μ, log σ) of u."""

    hidden: Sequence[int]
    act_dim: int
    log_std_min: float = -5.0
    log_std_max: float = 0.0

    @nn.compact
    def __call__(self, obs: jnp.ndarray) -> tuple[jnp.ndarray, jnp.ndarray]:
        mean, pre = jnp.split(MLP(self.hidden, 2 * self.act_dim)(obs), 2, axis=-1)
        span = self.log_std_max - self.log_std_min
        return mean, self.log_std_min + 0.5 * span * (jnp.tanh(pre) + 1.0)


@flax.struct.dataclass
class State:
    actor: TrainState
    behavior: TrainState  # π_b
    critic: TrainState
    target_critic: dict
    alpha: TrainState  # raw α (used as clip(α, 0, α_max))
    entropy_alpha: TrainState  # raw α_e (used as max(α_e, 0))
    behavior_alpha: TrainState  # raw α_b, the entropy weight of the behaviour fit
    tf: Transforms
    step: jnp.ndarray


def init(cfg: Config, spec: Spec, key: jax.Array) -> State:
    k_actor, k_behavior, k_critic = jax.random.split(key, 3)
    obs, act = jnp.zeros((1, spec.obs_dim)), jnp.zeros((1, spec.act_dim))
    policy = SquashedStdPolicy(
        cfg.actor_hidden or cfg.hidden, spec.act_dim, cfg.log_std_min, cfg.log_std_max
    )
    critic = make_model(
        QEnsemble(cfg.hidden, num=cfg.num_critics), k_critic, (obs, act), adam(cfg.critic_lr)
    )
    return State(
        actor=make_model(policy, k_actor, (obs,), adam(cfg.actor_lr)),
        behavior=make_model(policy, k_behavior, (obs,), adam(cfg.behavior_lr)),
        critic=critic,
        target_critic=critic.params,
        alpha=scalar_param(cfg.alpha, cfg.alpha_lr),
        entropy_alpha=scalar_param(cfg.entropy_alpha, cfg.alpha_lr),
        behavior_alpha=scalar_param(1.0, cfg.behavior_lr),
        tf=spec.transforms,
        step=jnp.zeros((), jnp.int32),
    )


# ----------------------------------------------------------------------------- pieces


@functools.partial(jax.custom_vjp, nondiff_argnums=(1, 2))
def clip_v2(x: jnp.ndarray, low: float, high: float) -> jnp.ndarray:
    """clip(x, low, high) whose gradient passes wherever descent moves x back inside:
    for g > 0 (descent lowers x) while x > low, for g < 0 while x < high."""
    return jnp.clip(x, low, high)


def _clip_v2_fwd(x, low, high):
    return jnp.clip(x, low, high), x


def _clip_v2_bwd(low, high, x, g):
    return (g * jnp.where(g > 0, x > low, x < high).astype(g.dtype),)


clip_v2.defvjp(_clip_v2_fwd, _clip_v2_bwd)


def current_alpha(raw: dict, cfg: Config) -> jnp.ndarray:
    return clip_v2(raw["value"], 0.0, cfg.alpha_max)


def nonneg(raw: dict) -> jnp.ndarray:
    """An entropy weight: max(raw, 0) with clip_v2's gradient (the reference's relu_v2)."""
    return clip_v2(raw["value"], 0.0, jnp.inf)


def sample_kl(logp_pi: jnp.ndarray, logp_b: jnp.ndarray) -> jnp.ndarray:
    """KL(π ‖ π_b) per state from samples a_j ~ π, sample axis first: mean_j log π - log π_b."""
    return jnp.mean(logp_pi - logp_b, axis=0)


def behavior_log_prob(act: jnp.ndarray, mean: jnp.ndarray, log_std: jnp.ndarray):
    """log π_b(a|s) of actions pulled in to ±(1 - ε) first, as the reference does."""
    return tanh_gaussian_log_prob(jnp.clip(act, -1.0 + CLIP_EPS, 1.0 - CLIP_EPS), mean, log_std)


def kl_divergence(key, cfg: Config, pi_dist, behavior_dist) -> jnp.ndarray:
    """D(s) of the docstring, (B,): n reparameterized samples of π, scored by both."""
    (mean, log_std), (b_mean, b_log_std) = pi_dist, behavior_dist
    shape = (cfg.n_div_samples, *mean.shape)
    acts, logp = tanh_gaussian_sample(
        key, jnp.broadcast_to(mean, shape), jnp.broadcast_to(log_std, shape)
    )
    return sample_kl(logp, behavior_log_prob(acts, b_mean, b_log_std))


def penalized_target(
    batch: Batch, next_q, next_logp, next_kl, alpha, entropy_alpha, cfg: Config
) -> jnp.ndarray:
    """y = r + γ (1 - d) [Q̂'(s', a') - α_e log π(a'|s') - α D(s')]; α D only in BRAC-v."""
    value = next_q - entropy_alpha * next_logp
    if cfg.value_penalty:
        value = value - alpha * next_kl
    return td_target(batch, value, cfg.discount)


# ----------------------------------------------------------------------------- losses


def behavior_loss(params, state: State, batch: Batch, cfg: Config, key, behavior_alpha):
    """-E log π_b(a_data|s) + α_b E log π_b(ã|s), ã ~ π_b: maximum likelihood + entropy."""
    mean, log_std = state.behavior.apply_fn(params, batch.obs)
    nll = -jnp.mean(behavior_log_prob(batch.act, mean, log_std))
    _, logp = tanh_gaussian_sample(key, mean, log_std)
    loss = nll + behavior_alpha * jnp.mean(logp)
    return loss, {"behavior_loss": loss, "behavior_nll": nll, "behavior_entropy": -logp.mean()}


def temperature_loss(raw: dict, entropy: jnp.ndarray, target: float):
    """α · (H - H̄), H held constant: α falls while the entropy is above H̄, grows below."""
    value = nonneg(raw)
    return value * jax.lax.stop_gradient(entropy - target), {}


def alpha_loss(raw: dict, divergence: jnp.ndarray, cfg: Config):
    """Dual step: -α (D - D_target), D held constant: α grows while D > D_target."""
    loss = -current_alpha(raw, cfg) * jax.lax.stop_gradient(divergence - cfg.target_divergence)
    return loss, {"alpha_loss": loss}


def critic_loss(params, state: State, batch: Batch, cfg: Config, key, alpha, entropy_alpha):
    k_act, k_div = jax.random.split(key)
    pi_next = state.actor.apply_fn(state.actor.params, batch.next_obs)
    next_act, next_logp = tanh_gaussian_sample(k_act, *pi_next)
    next_q = state.critic.apply_fn(state.target_critic, batch.next_obs, next_act)
    next_q = soft_clipped_min(next_q, cfg.ensemble_q_lambda)
    b_next = state.behavior.apply_fn(state.behavior.params, batch.next_obs)
    next_kl = kl_divergence(k_div, cfg, pi_next, b_next)
    target = penalized_target(batch, next_q, next_logp, next_kl, alpha, entropy_alpha, cfg)
    target = jax.lax.stop_gradient(target)
    q = state.critic.apply_fn(params, batch.obs, batch.act)  # (K, B)
    loss = jnp.sum(jnp.mean((q - target) ** 2, axis=1))
    return loss, {
        "critic_loss": loss,
        "q_mean": q.mean(),
        "target_mean": target.mean(),
        "kl_next": next_kl.mean(),
    }


def actor_loss(params, state: State, batch: Batch, cfg: Config, key, alpha, entropy_alpha, use_q):
    k_act, k_div = jax.random.split(key)
    dist = state.actor.apply_fn(params, batch.obs)
    act, logp = tanh_gaussian_sample(k_act, *dist)
    q = soft_clipped_min(
        state.critic.apply_fn(state.critic.params, batch.obs, act), cfg.ensemble_q_lambda
    )
    b_dist = state.behavior.apply_fn(state.behavior.params, batch.obs)
    kl = kl_divergence(k_div, cfg, dist, b_dist)
    loss = jnp.mean(entropy_alpha * logp + alpha * kl - use_q * q)
    return loss, {
        "actor_loss": loss,
        "kl": kl.mean(),
        "kl_std": kl.std(),
        "q_pi": q.mean(),
        "entropy": -logp.mean(),
    }


# ----------------------------------------------------------------------------- update


def behavior_step(cfg: Config, state: State, batch: Batch, key) -> tuple[State, Metrics]:
    """One step of π_b, then (behavior_entropy) one of α_b on a fresh sample of the new π_b."""
    k_fit, k_alpha = jax.random.split(key)
    b_alpha = nonneg(state.behavior_alpha.params) if cfg.behavior_entropy else 0.0
    behavior, metrics = gradient_step(
        state.behavior, behavior_loss, state, batch, cfg, k_fit, b_alpha
    )
    state = state.replace(behavior=behavior)
    if cfg.behavior_entropy:
        mean, log_std = behavior.apply_fn(behavior.params, batch.obs)
        entropy = -tanh_gaussian_sample(k_alpha, mean, log_std)[1].mean()
        target = cfg.target_entropy_per_dim * batch.act.shape[-1]
        b_alpha_state, _ = gradient_step(state.behavior_alpha, temperature_loss, entropy, target)
        state = state.replace(behavior_alpha=b_alpha_state)
        metrics = metrics | {"behavior_alpha": b_alpha}
    return state, metrics


def actor_critic_step(cfg: Config, state: State, batch: Batch, key) -> tuple[State, Metrics]:
    k_q, k_pi, k_alpha, k_ent = jax.random.split(key, 4)
    alpha, ent_alpha = current_alpha(state.alpha.params, cfg), nonneg(state.entropy_alpha.params)
    # 1. critics, target with the α D(s') penalty (BRAC-v)
    critic, metrics = gradient_step(
        state.critic, critic_loss, state, batch, cfg, k_q, alpha, ent_alpha
    )
    state = state.replace(critic=critic)
    # 2. actor against the new critics; Q enters after the warm start
    use_q = (state.step - cfg.behavior_pretrain_steps >= cfg.warm_start_steps).astype(jnp.float32)
    actor, m_actor = gradient_step(
        state.actor, actor_loss, state, batch, cfg, k_pi, alpha, ent_alpha, use_q
    )
    state = state.replace(actor=actor)
    metrics = metrics | m_actor | {"alpha": alpha, "entropy_alpha": ent_alpha}
    # 3. dual steps on fresh samples of the new actor
    dist = actor.apply_fn(actor.params, batch.obs)
    if cfg.train_alpha:
        b_dist = state.behavior.apply_fn(state.behavior.params, batch.obs)
        kl = kl_divergence(k_alpha, cfg, dist, b_dist).mean()
        alpha_state, m_alpha = gradient_step(state.alpha, alpha_loss, kl, cfg)
        state, metrics = state.replace(alpha=alpha_state), metrics | m_alpha
    if cfg.train_entropy_alpha:
        entropy = -tanh_gaussian_sample(k_ent, *dist)[1].mean()
        target = cfg.target_entropy_per_dim * batch.act.shape[-1]
        ent_state, _ = gradient_step(state.entropy_alpha, temperature_loss, entropy, target)
        state = state.replace(entropy_alpha=ent_state)
    # 4. targets
    state = state.replace(target_critic=polyak(state.target_critic, critic.params, cfg.tau))
    return state, metrics


def _nan_like(shapes: Metrics) -> Metrics:
    return {k: jnp.full(v.shape, jnp.nan, v.dtype) for k, v in shapes.items()}


def update(cfg: Config, state: State, batch: Batch, key: jax.Array) -> tuple[State, Metrics]:
    k_behavior, k_rl = jax.random.split(key)

    def pretrain(s):  # phase 1: π_b only
        return behavior_step(cfg, s, batch, k_behavior)

    def actor_critic(s):  # phase 2: (π_b if still trained), critics, actor, α, α_e, targets
        metrics = {}
        if cfg.train_behavior_after_pretrain:
            s, metrics = behavior_step(cfg, s, batch, k_behavior)
        s, m_rl = actor_critic_step(cfg, s, batch, k_rl)
        return s, metrics | m_rl

    if cfg.behavior_pretrain_steps == 0:
        state, metrics = actor_critic(state)
    else:
        # Both branches report every metric; a phase's missing ones are NaN (the chunk
        # averages skip NaNs).
        names = jax.eval_shape(lambda s: pretrain(s)[1] | actor_critic(s)[1], state)

        def reporting_all(phase):
            def run(s):
                s, metrics = phase(s)
                return s, _nan_like(names) | metrics

            return run

        state, metrics = jax.lax.cond(
            state.step < cfg.behavior_pretrain_steps,
            reporting_all(pretrain),
            reporting_all(actor_critic),
            state,
        )
    return state.replace(step=state.step + 1), metrics


def act(cfg: Config, state: State, obs: jnp.ndarray, key: jax.Array, deterministic: bool = True):
    mean, log_std = state.actor.apply_fn(state.actor.params, state.tf.obs(obs))
    unit = jnp.tanh(mean) if deterministic else tanh_gaussian_sample(key, mean, log_std)[0]
    return state.tf.action_to_env(unit)
