"""CQL: conservative Q-learning, the CQL(H) variant on top of SAC.

Paper: Kumar, Zhou, Tucker & Levine, "Conservative Q-Learning for Offline Reinforcement
Learning", NeurIPS 2020. Reference code: aviralkumar2907/CQL, d4rl/rlkit/torch/sac/cql.py
(commit 0787a29; `min_q_version=3`, the importance-sampled CQL(H)).

Critic (twin Q, i = 1, 2; deterministic backup: no entropy term in the target):
    a' ~ π(·|s'),   y = r + γ (1 - d) min_i Q'_i(s', a')       [- α log π(a'|s') if backup_entropy]
    L_Q = Σ_i E[(Q_i(s, a) - y)²] + α_cql Σ_i E_s[ C_i(s) - Q_i(s, a) ]
CQL(H) penalty with importance sampling: N samples each of a_u ~ U[-1, 1]^|A|,
a_π ~ π(·|s) and a'_π ~ π(·|s') (all three evaluated at s, actions and log-densities
held constant), T the temperature:
    C_i(s) = T log Σ_{3N samples} exp(x / T),  x ∈ { Q_i(s, a_u) - log 0.5^|A|,
                                                     Q_i(s, a_π) - log π(a_π|s),
                                                     Q_i(s, a'_π) - log π(a'_π|s') }
Lagrange variant (with_lagrange): with P_i = α_cql E[C_i - Q_i(s, a)] (α_cql included, as in
the reference) and the target gap τ,
    L_Q uses α' (P_i - τ) in place of P_i,   α' = clip(exp(log α'), 0, 1e6)
    L_α' = -α' (mean_i P_i - τ)              (α' grows while the penalty is above τ)
Actor (SAC), a ~ π(·|s) reparameterized:
    L_π = E[α log π(a|s) - min_i Q_i(s, a)]
    first `bc_warmup_steps` updates:  L_π = E[α log π(a|s) - log π(a_data|s)]
Entropy temperature, target entropy H̄ = -|A|:
    L_α = -log α · E[log π(a|s) + H̄]

Update order per step: α (on the current policy's entropy); actor with the new α against
the current critic; critic (TD + CQL penalty, sampling from the just-updated actor); α'
(Lagrange only, on the penalty the critic step measured, which used the old α'); then
the target critics by Polyak averaging, every step.
The reference steps α first, then computes the actor and critic losses from the same
pre-step networks and steps actor, then critics (its α' step also precedes the critic
step but the critic loss already holds the old α'). The one difference here: the
critic's sampled actions (target and penalty) come from the actor after its step rather
than before — a one-step lag, as in any sequential actor/critic update.
The critic step takes its states in `critic_blocks` blocks (core.blocked_gradient_step):
the loss is a mean over states, so the averaged gradient is the same up to rounding, and
each block's activations stay in cache (speed only).

Defaults: the reference's Gym-MuJoCo setting (README and examples/cql_mujoco_new.py):
policy lr 1e-4 (log α the same), Q lr 3e-4 (log α' the same), γ = 0.99, τ = 0.005,
batch 256, automatic entropy tuning with H̄ = -|A|, α_cql (min_q_weight) = 5.0, N = 10,
T = 1.0, importance sampling, deterministic backup, no Lagrange (README: lagrange_thresh
= -1), no max-Q backup, observations not normalized, rewards unscaled. For the Lagrange
variant τ = 10.0, the script's variant dict (its command-line default, 5.0, overrides
that; the antmaze README uses 5.0 with min_q_weight 5.0).
The logsumexp over 3N samples is not corrected by log 3N (nor in the reference): a
constant in the penalty, no change to gradients, but part of what τ is compared with.
Deviations:
- Target critics start as copies of the critics. rlkit builds them as separate networks with
  their own random initialization and never copies them at the start, so its targets begin
  unrelated and Polyak averaging (τ = 0.005) pulls them to the critics over a few hundred
  updates. Not measured here.
- 256-256 MLPs (the reference uses 256-256-256; set `hidden=(256, 256, 256)` for it) and
  flax's default initializers (rlkit uses fan-in uniform hidden layers and ±3e-3/±1e-3
  uniform output layers).
- `bc_warmup_steps` defaults to 0; the reference script's `policy_eval_start` is 40000
  (its comments: 10k to 40k work alike, and "not much difference" without it). Here
  exactly `bc_warmup_steps` updates use the BC loss (the reference, counting from 1,
  makes one fewer). The BC log-likelihood clips data actions to ±(1 - 1e-6) for atanh.
- Actions are mapped to [-1, 1] by the transforms (the identity on MuJoCo), so the
  uniform density 0.5^|A| is exact.
- `max_q_backup` takes the max over the N next-state samples the penalty also uses
  (the reference draws a separate 10).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import flax.struct
import jax
import jax.numpy as jnp
from flax.training.train_state import TrainState

from offrl.algos import sac
from offrl.algos.sac import scalar_param
from offrl.core import (
    Batch,
    Metrics,
    Spec,
    blocked_gradient_step,
    gradient_step,
    polyak,
    repeat_states,
    td_target,
)
from offrl.data.transforms import Transforms
from offrl.nets.policies import tanh_gaussian_log_prob, tanh_gaussian_sample

ALPHA_PRIME_MAX = 1e6  # the reference's clamp of α'


@dataclass(frozen=True)
class Config:
    discount: float = 0.99  # γ
    tau: float = 0.005  # Polyak rate of the target critics (updated every step)
    actor_lr: float = 1e-4  # Adam lr of the actor and of log α
    critic_lr: float = 3e-4  # Adam lr of the critics and of log α'
    hidden: tuple[int, ...] = (256, 256)  # actor and critic MLP widths (reference: 256 x 3)
    # Entropy temperature α.
    auto_alpha: bool = True  # learn log α towards the target entropy; False: α = init_alpha
    init_alpha: float = 1.0  # α at step 0 (the reference's log α = 0)
    target_entropy: float | None = None  # H̄; None means -|A|
    backup_entropy: bool = False  # subtract α log π(a'|s') in the target (reference: no)
    max_q_backup: bool = False  # y uses max over the N next-state samples (antmaze option)
    # Conservative penalty.
    cql_alpha: float = 5.0  # α_cql, the reference's min_q_weight
    num_sampled_actions: int = 10  # N per kind (uniform, π(·|s), π(·|s')): 3N in the logsumexp
    temperature: float = 1.0  # T in T logsumexp(Q / T)
    importance_sampling: bool = True  # CQL(H) min_q_version 3; False: version 2 (no densities)
    with_lagrange: bool = False  # learn α' so the penalty tracks target_action_gap
    target_action_gap: float = 10.0  # τ of the Lagrange variant
    bc_warmup_steps: int = 0  # updates with the BC log-likelihood actor loss first
    batch_size: int = 256
    normalize_obs: bool = False  # the reference feeds raw observations
    reward_scaling: str = "none"  # the reference's reward_scale = 1
    # Speed only: the critic step in this many blocks of states (gcd with the batch size): the
    # same gradient up to rounding, each block's share of the 7,936 rows' activations in cache.
    critic_blocks: int = 4


@flax.struct.dataclass
class State:
    actor: TrainState
    critic: TrainState
    target_critic: dict
    log_alpha: TrainState  # scalar log α, the entropy temperature
    log_alpha_prime: TrainState  # scalar log α', the Lagrange multiplier (with_lagrange only)
    tf: Transforms
    step: jnp.ndarray


def init(cfg: Config, spec: Spec, key: jax.Array) -> State:
    """SAC's networks and temperature, plus the Lagrange multiplier α'."""
    sac_state = sac.init(sac.config_of(cfg), spec, key)
    return State(
        actor=sac_state.actor,
        critic=sac_state.critic,
        target_critic=sac_state.target_critic,
        log_alpha=sac_state.log_alpha,
        log_alpha_prime=scalar_param(0.0, cfg.critic_lr),
        tf=sac_state.tf,
        step=sac_state.step,
    )


def cql_penalty(
    q_rand: jnp.ndarray,
    q_pi: jnp.ndarray,
    logp_pi: jnp.ndarray,
    q_next_pi: jnp.ndarray,
    logp_next_pi: jnp.ndarray,
    q_data: jnp.ndarray,
    act_dim: int,
    temperature: float,
    importance_sampling: bool = True,
    push_up_rows: int | None = None,
    push_up_weight: jnp.ndarray | None = None,
) -> jnp.ndarray:
    """E_s[T logsumexp(x / T)] - E[Q(s, a_data)], not yet weighted by α_cql.

    Samples are (..., B, N), q_data (..., B); returns (...), e.g. one value per Q-network.
    Without importance sampling (min_q_version 2) the logsumexp runs over the raw Q-values
    of the 3N samples and the data action. The push-down (logsumexp) is over every state;
    the push-up over the first `push_up_rows` rows only when given (COMBO: the batch's
    dataset rows, its model rows pushed down only), else over every row (CQL). The same push-up
    as per-row weights (B,), `push_up_weight` (B / R on the first R rows, 0 after), is a mean
    over the rows: what a block of them can take.
    """
    if importance_sampling:
        log_uniform = act_dim * jnp.log(0.5)
        logp_pi, logp_next_pi = jax.lax.stop_gradient((logp_pi, logp_next_pi))
        x = [q_rand - log_uniform, q_next_pi - logp_next_pi, q_pi - logp_pi]
    else:
        x = [q_rand, q_data[..., None], q_next_pi, q_pi]
    lse = temperature * jax.nn.logsumexp(jnp.concatenate(x, axis=-1) / temperature, axis=-1)
    if push_up_weight is None:
        push_up = jnp.mean(q_data[..., :push_up_rows], axis=-1)
    else:
        push_up = jnp.mean(push_up_weight * q_data, axis=-1)
    return jnp.mean(lse, axis=-1) - push_up


def _alpha_prime(log_alpha_prime: dict) -> jnp.ndarray:
    return jnp.clip(jnp.exp(log_alpha_prime["value"]), 0.0, ALPHA_PRIME_MAX)


def actor_loss(params, state: State, batch: Batch, cfg: Config, key: jax.Array, alpha):
    """SAC's actor loss; the first `bc_warmup_steps` updates maximize log π(a_data|s) instead."""
    loss, metrics = sac.actor_loss(params, state, batch, cfg, key, alpha)
    if cfg.bc_warmup_steps > 0:
        mean, log_std = state.actor.apply_fn(params, batch.obs)
        _, log_pi = tanh_gaussian_sample(key, mean, log_std)
        bc = jnp.mean(alpha * log_pi - tanh_gaussian_log_prob(batch.act, mean, log_std))
        loss = jnp.where(state.step < cfg.bc_warmup_steps, bc, loss)
    return loss, metrics | {"actor_loss": loss}


def critic_rows(
    state: State,
    batch: Batch,
    cfg: Config,
    key: jax.Array,
    alpha,
    push_up_rows=None,
    lower_bound: jnp.ndarray | None = None,
) -> dict:
    """What the critic loss needs per state, none of it differentiated: the state, its data
    action and 3N penalty actions (B, 1 + 3N, |A|), the policy samples' log-densities (B, N)
    each, the TD target (B,), and the push-up's weight (B,): on the first `push_up_rows` rows
    (COMBO's dataset part of a mixed batch), or on all (None: CQL). With `lower_bound` (B,)
    (Cal-QL's Monte-Carlo returns), the policy samples' Q-values in the push-down are
    bounded below by it."""
    (b, act_dim), n = batch.act.shape, cfg.num_sampled_actions
    k_next, k_rand, k_pi, k_next_pi = jax.random.split(key, 4)
    policy = lambda obs: state.actor.apply_fn(state.actor.params, obs)  # noqa: E731
    mean, log_std = policy(batch.obs)
    next_mean, next_log_std = policy(batch.next_obs)
    n_copies = lambda x: repeat_states(x, n)  # noqa: E731

    # Penalty samples, (B, N, |A|) each: uniform, π(·|s), π(·|s').
    rand = jax.random.uniform(k_rand, (b, n, act_dim), minval=-1.0, maxval=1.0)
    pi, logp_pi = tanh_gaussian_sample(k_pi, n_copies(mean), n_copies(log_std))
    next_pi, logp_next_pi = tanh_gaussian_sample(
        k_next_pi, n_copies(next_mean), n_copies(next_log_std)
    )

    # Target.
    if cfg.max_q_backup:
        next_obs = n_copies(batch.next_obs)
        next_q = state.critic.apply_fn(state.target_critic, next_obs, next_pi).max(-1).min(0)
    else:
        next_act, next_logp = tanh_gaussian_sample(k_next, next_mean, next_log_std)
        next_q = state.critic.apply_fn(state.target_critic, batch.next_obs, next_act).min(0)
        if cfg.backup_entropy:
            next_q = next_q - alpha * next_logp
    pushed_up = push_up_rows or b
    rows = {
        "obs": batch.obs,
        "acts": jnp.concatenate([batch.act[:, None], rand, pi, next_pi], axis=1),
        "logp_pi": logp_pi,
        "logp_next_pi": logp_next_pi,
        "target": td_target(batch, next_q, cfg.discount),
        "push_up_weight": jnp.where(jnp.arange(b) < pushed_up, b / pushed_up, 0.0),
    }
    if lower_bound is not None:
        rows["lower_bound"] = lower_bound
    return jax.lax.stop_gradient(rows)


def critic_loss(params, rows: dict, state: State, cfg: Config):
    """TD on every row plus α_cql · cql_penalty, on critic_rows' rows: a mean over their
    states, so a block of them gives its share."""
    b, samples, act_dim = rows["acts"].shape
    # One critic pass over the data action and the 3N samples of every state: (2, B, 1 + 3N).
    obs = jnp.broadcast_to(rows["obs"][:, None], (b, samples, rows["obs"].shape[-1]))
    q = state.critic.apply_fn(params, obs, rows["acts"])
    q_data, (q_rand, q_pi, q_next_pi) = q[..., 0], jnp.split(q[..., 1:], 3, axis=-1)
    target = rows["target"]
    bounded = {}
    if "lower_bound" in rows:  # Cal-QL: Q(s, a_π) >= V^μ(s) in the push-down
        bound = rows["lower_bound"][:, None]
        bounded = {"bound_rate": jnp.mean(jnp.stack([q_pi, q_next_pi]) < bound)}
        q_pi, q_next_pi = jnp.maximum(q_pi, bound), jnp.maximum(q_next_pi, bound)

    td = jnp.mean((q_data - target) ** 2, axis=-1)  # (2,)
    gap = cql_penalty(
        q_rand,
        q_pi,
        rows["logp_pi"],
        q_next_pi,
        rows["logp_next_pi"],
        q_data,
        act_dim,
        cfg.temperature,
        cfg.importance_sampling,
        push_up_weight=rows["push_up_weight"],
    )
    penalty = cfg.cql_alpha * gap  # (2,)
    if cfg.with_lagrange:
        alpha_prime = _alpha_prime(state.log_alpha_prime.params)
        conservative = alpha_prime * (penalty - cfg.target_action_gap)
    else:
        conservative = penalty
    loss = jnp.sum(td + conservative)
    return loss, {
        "critic_loss": loss,
        "td_loss": td.mean(),
        "cql_penalty": penalty.mean(),
        "q_mean": q_data.mean(),
        "q_rand": q_rand.mean(),
        "q_pi": q_pi.mean(),
        "target_mean": target.mean(),
    } | bounded


def alpha_prime_loss(log_alpha_prime, penalty: jnp.ndarray, cfg: Config):
    """Dual step on α' for the constraint penalty <= τ: -α' (P - τ), P held constant."""
    alpha_prime = _alpha_prime(log_alpha_prime)
    loss = -alpha_prime * jax.lax.stop_gradient(penalty - cfg.target_action_gap)
    return loss, {"alpha_prime_loss": loss, "alpha_prime": alpha_prime}


def update(
    cfg: Config,
    state: State,
    batch: Batch,
    key: jax.Array,
    push_up_rows: int | None = None,
    lower_bound: jnp.ndarray | None = None,
) -> tuple[State, Metrics]:
    """One CQL step; `push_up_rows` and `lower_bound` as in critic_rows (COMBO passes its
    dataset rows, Cal-QL its Monte-Carlo returns)."""
    k_pi, k_critic = jax.random.split(key)
    state, alpha, metrics = sac.entropy_step(state, batch, cfg, k_pi)  # 1. α (when tuned)
    # 2. actor against the current critic
    actor, m_actor = gradient_step(state.actor, actor_loss, state, batch, cfg, k_pi, alpha)
    state = state.replace(actor=actor)
    # 3. critics: TD + conservative penalty (weighted by the current α' when Lagrange), in
    # blocks of states
    rows = critic_rows(state, batch, cfg, k_critic, alpha, push_up_rows, lower_bound)
    blocks = math.gcd(len(batch.rew), cfg.critic_blocks)
    critic, m_critic = blocked_gradient_step(state.critic, critic_loss, rows, blocks, state, cfg)
    state = state.replace(critic=critic)
    if cfg.with_lagrange:  # 4. α' on the penalty just measured
        log_alpha_prime, m_lagrange = gradient_step(
            state.log_alpha_prime, alpha_prime_loss, m_critic["cql_penalty"], cfg
        )
        state = state.replace(log_alpha_prime=log_alpha_prime)
        metrics = metrics | m_lagrange
    # 5. targets
    state = state.replace(
        target_critic=polyak(state.target_critic, state.critic.params, cfg.tau),
        step=state.step + 1,
    )
    return state, metrics | m_actor | m_critic | {"alpha": alpha}


act = sac.act  # the tanh-Gaussian actor acts as in SAC
