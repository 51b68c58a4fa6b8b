"""BEAR: bootstrapping error accumulation reduction (an MMD support constraint on the actor).

Paper: Kumar, Fu, Tucker & Levine, "Stabilizing Off-Policy Q-Learning via Bootstrapping
Error Reduction", NeurIPS 2019. Reference code: aviralkumar2907/BEAR, `algos.py` class
`BEAR` (the paper's algorithm; `BEAR_IS` is an importance-sampled variant not done here)
with `main.py` and the README's recommended settings.

Networks: a Q-ensemble Q_1..Q_K (K = 2), a tanh-Gaussian actor π (a = tanh(u),
u ~ N(μ(s), σ(s)²)), their Polyak targets Q'_i and π', and BCQ's conditional VAE as the
behaviour model (offrl.nets.vae: latent 2|A|, prior latents clipped to ±0.5 when sampling).

VAE (BCQ's ELBO):   L_VAE = E‖D(s, z) − a‖² + ½ KL(N(μ_z, σ_z²) ‖ N(0, I)),  z ~ q(·|s, a)
Critic (soft clipped double-Q, max over p target samples), a'_j ~ π'(·|s'), j = 1..p:
    v(s')  = max_j [ λ min_i Q'_i(s', a'_j) + (1 − λ) max_i Q'_i(s', a'_j) ]
    y      = r + γ (1 − d) v(s'),          L_Q = Σ_i E[(Q_i(s, a) − y)²]
Support constraint: n behaviour samples b_k = raw VAE decoder outputs (pre-tanh) at s, n
actor samples u_l = μ(s) + σ(s) · clip(ξ_l, −0.5, 0.5) (pre-tanh, reparameterized), and
    MMD²(s) = mean_kk' k(b_k, b_k') + mean_ll' k(u_l, u_l') − 2 mean_kl k(b_k, u_l)
    MMD(s)  = sqrt(MMD²(s) + 1e-6)
    Laplacian k(x, y) = exp(−‖x − y‖₁ / (2σ_k)),   Gaussian k(x, y) = exp(−‖x − y‖² / (2σ_k))
Actor, α = exp(log α) held constant, Q̄_i(s) = mean_l Q_i(s, tanh(u_l)):
    L_π = E[ −reduce_i Q̄_i(s) + c · std_i Q̄_i(s) + α · MMD(s) ]      (reduce: min by default)
    first `warmstart_steps` updates:  L_π = E[α · MMD(s)]
Lagrange multiplier (dual gradient descent on log α, MMD held constant):
    L_α = −α · (E[MMD(s)] − ε),   then log α ← clip(log α, −5, 10)
so α grows while the constraint E[MMD] ≤ ε is violated and shrinks while it holds.
(The reference's actor loss carries α · MMD without −ε: the same gradient.)

Update order per step (the reference's): VAE step; critic step (targets from π' and Q');
actor step (behaviour samples from the just-updated VAE, Q from the just-updated critic,
the current α); α step on the MMD the actor step measured (before its own update, as in
the reference); clamp log α; then both targets by Polyak averaging with τ, every step.

Acting (evaluation, `deterministic=True`): the reference's `select_action`: `act_samples`
(10) samples a_j ~ π(·|s) (unclipped noise), the one with the highest Q_1(s, a_j). It
depends on the key, as in the reference; `act_samples=0` gives the key-free tanh(μ(s)).
`deterministic=False` returns one sample a ~ π(·|s).

Defaults: the reference code (`algos.BEAR`, `main.py`) with the README's "hyperparameters
that generally work well": Adam 1e-3 for actor, critic and VAE (PyTorch's default rate, the
code passes none), 1e-3 for log α; batch 100, γ = 0.99, τ = 0.005 (`train()` defaults);
actor and critics 400-300, VAE 750-750; K = 2; λ = 0.75 and p = 10 target samples;
Laplacian kernel with σ_k = 10, n = 5 samples (README; `main.py`'s argparse defaults are
σ_k = 20, n = 10 and mode "hardcoded"); ε = 0.05 (the code's `thresh`); log α clamped to
[−5, `lagrange_thresh` = 10]; reduce = min (`version=0`); no ensemble-std penalty (README:
`use_ensemble_variance=False`, `lamda=0`). Warm start: the reference tests `epoch >= 20`
where an epoch is one `train()` call of `eval_freq` updates; the README's commands use
`eval_freq=1000`, so 20,000 updates.
Deviations:
- Actions live in [−1, 1] (the transforms map them); the reference scales by `max_action`.
  The MMD is on pre-tanh values, so it is unchanged; the VAE's reconstruction error is in
  unit rather than environment units (M² smaller for bounds ±M).
- log α starts at `init_log_alpha` = 0 (α = 1); the reference draws it from N(0, 1).
- The actor's log σ is clipped to [−20, 2] (nets.TanhGaussianPolicy); the reference's
  is unclipped. flax's default initializers, not PyTorch's.
- MMD² is floored at 0 before the 1e-6 (it is a squared RKHS norm, ≥ 0 up to rounding):
  a guard against float rounding, no change otherwise.
- Dataset timeouts bootstrap (offrl keeps next observations); the reference's loaders
  builds s' by shifting observations and so crosses episode ends.
- π'(s') is evaluated once per state and its p samples differ in the noise only (the
  reference runs the actor on p copies of s': the same numbers, p times the work).
- Not implemented: the KL distance option (`distance_type=KL`), the hardcoded-coefficient
  mode (`mode=hardcoded`, a fixed 100 · MMD), bootstrap masks (`use_bootstrap`), BEAR_IS.
"""

from __future__ import annotations

from dataclasses import dataclass

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
from offrl.nets import VAE, QEnsemble, QNet, TanhGaussianPolicy, ensemble_member
from offrl.nets.vae import vae_loss

KERNELS = ("laplacian", "gaussian")
Q_REDUCTIONS = ("min", "max", "mean")  # the reference's version 0, 1, 2


@dataclass(frozen=True)
class Config:
    discount: float = 0.99  # γ
    tau: float = 0.005  # Polyak rate of the target actor and critics (every step)
    actor_lr: float = 1e-3  # Adam lr of the actor (PyTorch's default in the reference)
    critic_lr: float = 1e-3  # Adam lr of the critics
    vae_lr: float = 1e-3  # Adam lr of the behaviour VAE
    alpha_lr: float = 1e-3  # Adam lr of log α, the Lagrange multiplier
    hidden: tuple[int, ...] = (400, 300)  # actor and critic MLP widths (reference: 400-300)
    vae_hidden: tuple[int, ...] = (750, 750)  # VAE encoder and decoder widths
    num_qs: int = 2  # K, critics in the ensemble
    lam: float = 0.75  # λ of the soft clipped target λ min + (1 − λ) max
    num_target_samples: int = 10  # p, actions from π'(·|s') per target; max over them
    q_reduce: str = "min"  # ensemble reduction in the actor loss: min | max | mean
    std_weight: float = 0.0  # c, weight of the ensemble std of Q in the actor loss
    kernel: str = "laplacian"  # MMD kernel: laplacian | gaussian
    mmd_sigma: float = 10.0  # σ_k, kernel bandwidth (divided by 2σ_k, as in the reference)
    num_samples_match: int = 5  # n, samples per state from the VAE and from π for the MMD
    mmd_threshold: float = 0.05  # ε of the constraint E[MMD] ≤ ε
    init_log_alpha: float = 0.0  # log α at step 0
    log_alpha_min: float = -5.0  # clamp of log α after each dual step
    log_alpha_max: float = 10.0  # (the reference's `lagrange_thresh`)
    warmstart_steps: int = 20_000  # first updates train the actor on α · MMD only
    act_samples: int = 10  # evaluation acts by argmax Q_1 over this many π samples; 0: tanh(μ)
    batch_size: int = 100
    normalize_obs: bool = False  # the reference feeds raw observations
    reward_scaling: str = "none"  # the reference uses raw rewards

    def __post_init__(self):
        if self.kernel not in KERNELS:
            raise ConfigError(f"bear: kernel {self.kernel!r}; choose one of {', '.join(KERNELS)}")
        if self.q_reduce not in Q_REDUCTIONS:
            raise ConfigError(
                f"bear: q_reduce {self.q_reduce!r}; choose one of {', '.join(Q_REDUCTIONS)}"
            )
        for name in ("num_qs", "num_target_samples", "num_samples_match"):
            if getattr(self, name) < 1:
                raise ConfigError(f"bear: {name} must be at least 1, got {getattr(self, name)}")
        if self.act_samples < 0:
            raise ConfigError(f"bear: act_samples must be >= 0, got {self.act_samples}")
        if self.mmd_sigma <= 0:
            raise ConfigError(f"bear: mmd_sigma must be positive, got {self.mmd_sigma}")
        if self.log_alpha_min > self.log_alpha_max:
            raise ConfigError("bear: log_alpha_min must not exceed log_alpha_max")


@flax.struct.dataclass
class State:
    actor: TrainState
    critic: TrainState
    vae: TrainState
    target_actor: dict
    target_critic: dict
    log_alpha: TrainState  # scalar log α, the Lagrange multiplier of the MMD constraint
    tf: Transforms
    step: jnp.ndarray


def init(cfg: Config, spec: Spec, key: jax.Array) -> State:
    k_actor, k_critic, k_vae, k_vae_noise = jax.random.split(key, 4)
    obs, act = jnp.zeros((1, spec.obs_dim)), jnp.zeros((1, spec.act_dim))
    actor = make_model(
        TanhGaussianPolicy(cfg.hidden, spec.act_dim), k_actor, (obs,), adam(cfg.actor_lr)
    )
    critic = make_model(
        QEnsemble(cfg.hidden, num=cfg.num_qs), k_critic, (obs, act), adam(cfg.critic_lr)
    )
    vae_module = VAE(cfg.vae_hidden, spec.act_dim, latent_dim=2 * spec.act_dim)
    vae = make_model(vae_module, k_vae, (obs, act, k_vae_noise), adam(cfg.vae_lr))
    return State(
        actor=actor,
        critic=critic,
        vae=vae,
        target_actor=actor.params,
        target_critic=critic.params,
        log_alpha=scalar_param(cfg.init_log_alpha, cfg.alpha_lr),
        tf=spec.transforms,
        step=jnp.zeros((), jnp.int32),
    )


# --------------------------------------------------------------------------- MMD


def _mean_kernel(x: jnp.ndarray, y: jnp.ndarray, kernel: str, sigma: float) -> jnp.ndarray:
    """mean_{k, l} k(x_k, y_l) over sample axes: x (..., n, d), y (..., m, d) -> (...)."""
    diff = x[..., :, None, :] - y[..., None, :, :]  # (..., n, m, d)
    dist = jnp.sum(jnp.abs(diff), -1) if kernel == "laplacian" else jnp.sum(diff**2, -1)
    return jnp.mean(jnp.exp(-dist / (2.0 * sigma)), axis=(-2, -1))


def _mmd(x: jnp.ndarray, y: jnp.ndarray, kernel: str, sigma: float) -> jnp.ndarray:
    mmd2 = (
        _mean_kernel(x, x, kernel, sigma)
        + _mean_kernel(y, y, kernel, sigma)
        - 2.0 * _mean_kernel(x, y, kernel, sigma)
    )
    return jnp.sqrt(jnp.maximum(mmd2, 0.0) + 1e-6)


def mmd_laplacian(x: jnp.ndarray, y: jnp.ndarray, sigma: float) -> jnp.ndarray:
    """Sampled MMD per state with k(x, y) = exp(−‖x − y‖₁ / (2σ)): x (..., n, d), y (..., m, d)
    -> (...), sqrt(MMD² + 1e-6) as in the reference."""
    return _mmd(x, y, "laplacian", sigma)


def mmd_gaussian(x: jnp.ndarray, y: jnp.ndarray, sigma: float) -> jnp.ndarray:
    """Sampled MMD per state with k(x, y) = exp(−‖x − y‖² / (2σ)) (σ not squared, as in the
    reference): x (..., n, d), y (..., m, d) -> (...)."""
    return _mmd(x, y, "gaussian", sigma)


MMD = {"laplacian": mmd_laplacian, "gaussian": mmd_gaussian}


# --------------------------------------------------------------------------- sampling


def behaviour_samples(vae: TrainState, obs: jnp.ndarray, key: jax.Array, n: int) -> jnp.ndarray:
    """n pre-tanh VAE decoder outputs per state, (B, n, |A|): the latent is drawn and clipped
    as in VAE.sample (so tanh of these equals VAE.sample on the repeated states)."""

    def raw_decode(module: VAE, obs_n: jnp.ndarray, key: jax.Array) -> jnp.ndarray:
        z = jax.random.normal(key, (*obs_n.shape[:-1], module.latent_dim))
        z = jnp.clip(z, -module.latent_clip, module.latent_clip)
        return module.decoder(jnp.concatenate([obs_n, z], -1))

    raw = vae.apply_fn(vae.params, repeat_states(obs, n), key, method=raw_decode)
    return jax.lax.stop_gradient(raw)


def clipped_actor_samples(mean, log_std, key: jax.Array, n: int) -> jnp.ndarray:
    """n reparameterized pre-tanh samples per state, noise clipped to ±0.5 (the reference's
    `sample_multiple`): (B, |A|) -> (B, n, |A|)."""
    noise = jnp.clip(jax.random.normal(key, (mean.shape[0], n, mean.shape[-1])), -0.5, 0.5)
    return mean[:, None] + jnp.exp(log_std)[:, None] * noise


def soft_clipped_max_target(next_q: jnp.ndarray, lam: float) -> jnp.ndarray:
    """v(s') from target Q-values (K, B, p): soft clipped double-Q per sample, max over p."""
    return soft_clipped_min(next_q, lam).max(axis=-1)


# --------------------------------------------------------------------------- losses


def critic_loss(params, state: State, batch: Batch, cfg: Config, key: jax.Array):
    p = cfg.num_target_samples
    mean, log_std = state.actor.apply_fn(state.target_actor, batch.next_obs)  # once per state
    mean, log_std, next_obs = (
        repeat_states(mean, p),
        repeat_states(log_std, p),
        repeat_states(batch.next_obs, p),
    )
    next_act = jnp.tanh(mean + jnp.exp(log_std) * jax.random.normal(key, mean.shape))
    next_q = state.critic.apply_fn(state.target_critic, next_obs, next_act)  # (K, B, p)
    next_v = soft_clipped_max_target(next_q, cfg.lam)
    target = jax.lax.stop_gradient(td_target(batch, next_v, cfg.discount))
    q = state.critic.apply_fn(params, batch.obs, batch.act)  # (K, B)
    loss = jnp.sum(jnp.mean((q - target) ** 2, axis=1))
    return loss, {"critic_loss": loss, "q_mean": q.mean(), "target_mean": target.mean()}


def reduce_q(q: jnp.ndarray, how: str) -> jnp.ndarray:
    """Reduce the ensemble axis 0: the reference's version 0 (min), 1 (max), 2 (mean)."""
    return {"min": jnp.min, "max": jnp.max, "mean": jnp.mean}[how](q, axis=0)


def actor_loss(params, state: State, batch: Batch, cfg: Config, key, behaviour: jnp.ndarray):
    """α · MMD(s) (warm start), then −reduce_i Q̄_i + c · std_i Q̄_i + α · MMD(s)."""
    mean, log_std = state.actor.apply_fn(params, batch.obs)
    raw = clipped_actor_samples(mean, log_std, key, cfg.num_samples_match)  # (B, n, |A|)
    mmd = MMD[cfg.kernel](behaviour, raw, cfg.mmd_sigma)  # (B,)
    obs_n = repeat_states(batch.obs, cfg.num_samples_match)
    q = state.critic.apply_fn(state.critic.params, obs_n, jnp.tanh(raw)).mean(-1)  # (K, B)
    q_pi = reduce_q(q, cfg.q_reduce)
    policy_term = -q_pi + cfg.std_weight * jnp.std(q, axis=0)
    alpha = jnp.exp(state.log_alpha.params["value"])
    warm = state.step < cfg.warmstart_steps
    loss = jnp.mean(jnp.where(warm, 0.0, policy_term) + alpha * mmd)
    return loss, {
        "actor_loss": loss,
        "mmd": mmd.mean(),
        "q_pi": q_pi.mean(),
        "log_std": log_std.mean(),
        "warmstart": warm.astype(jnp.float32),
    }


def alpha_loss(log_alpha: dict, mmd: jnp.ndarray, cfg: Config):
    """Dual step for E[MMD] ≤ ε: −α (MMD − ε) with the MMD held constant, so gradient
    descent raises log α while MMD > ε and lowers it while MMD < ε."""
    alpha = jnp.exp(log_alpha["value"])
    loss = -alpha * jax.lax.stop_gradient(mmd - cfg.mmd_threshold)
    return loss, {"alpha_loss": loss}


def clamp_log_alpha(log_alpha: TrainState, cfg: Config) -> TrainState:
    value = jnp.clip(log_alpha.params["value"], cfg.log_alpha_min, cfg.log_alpha_max)
    return log_alpha.replace(params={"value": value})


# --------------------------------------------------------------------------- update


def update(cfg: Config, state: State, batch: Batch, key: jax.Array) -> tuple[State, Metrics]:
    k_vae, k_critic, k_behaviour, k_actor = jax.random.split(key, 4)
    # 1. behaviour VAE
    vae, m_vae = gradient_step(state.vae, vae_loss, state.vae.apply_fn, batch.obs, batch.act, k_vae)
    state = state.replace(vae=vae)
    # 2. critics towards the soft clipped, max-over-samples target
    critic, m_critic = gradient_step(state.critic, critic_loss, state, batch, cfg, k_critic)
    state = state.replace(critic=critic)
    # 3. actor: Q of the new critic + α · MMD to samples of the new VAE (MMD only in warm start)
    behaviour = behaviour_samples(state.vae, batch.obs, k_behaviour, cfg.num_samples_match)
    alpha = jnp.exp(state.log_alpha.params["value"])
    actor, m_actor = gradient_step(state.actor, actor_loss, state, batch, cfg, k_actor, behaviour)
    # 4. dual step on the MMD just measured, then the clamp
    log_alpha, m_alpha = gradient_step(state.log_alpha, alpha_loss, m_actor["mmd"], cfg)
    # 5. targets
    state = state.replace(
        actor=actor,
        log_alpha=clamp_log_alpha(log_alpha, cfg),
        target_actor=polyak(state.target_actor, actor.params, cfg.tau),
        target_critic=polyak(state.target_critic, state.critic.params, cfg.tau),
        step=state.step + 1,
    )
    return state, m_vae | m_critic | m_actor | m_alpha | {"alpha": alpha}


def act(cfg: Config, state: State, obs: jnp.ndarray, key: jax.Array, deterministic: bool = True):
    """argmax_j Q_1(s, a_j) over `act_samples` samples a_j ~ π(·|s) (the reference's
    `select_action`; tanh(μ(s)) when act_samples = 0); deterministic=False: one sample."""
    obs = state.tf.obs(obs)
    mean, log_std = state.actor.apply_fn(state.actor.params, obs)
    if deterministic and cfg.act_samples == 0:
        return state.tf.action_to_env(jnp.tanh(mean))
    n = cfg.act_samples if deterministic else 1
    obs_n, mean_n, log_std_n = (
        repeat_states(obs, n),
        repeat_states(mean, n),
        repeat_states(log_std, n),
    )
    acts = jnp.tanh(mean_n + jnp.exp(log_std_n) * jax.random.normal(key, mean_n.shape))
    if not deterministic:
        return state.tf.action_to_env(acts[:, 0])
    q1 = QNet(cfg.hidden).apply(ensemble_member(state.critic.params, 0), obs_n, acts)  # (B, n)
    return state.tf.action_to_env(best_candidate(q1, acts))
