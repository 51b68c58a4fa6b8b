"""Importance sampling: trajectory-wise (IS), per-decision (PDIS), weighted (WIS, WPDIS).

Per transition, ρ_t = π(a_t|s_t) / μ(a_t|s_t); within episode i the cumulative weight is
w_t = Π_{k<=t} ρ_k, optionally clipped to w_t <= max_weight. With n episodes of lengths T_i
and γ the discount:

    IS    = 1/n Σ_i w^i_{T_i-1} G_i,                 G_i = Σ_t γ^t r^i_t
    PDIS  = 1/n Σ_i Σ_t γ^t w^i_t r^i_t
    WIS   = Σ_i w^i_{T_i-1} G_i / Σ_i w^i_{T_i-1}
    WPDIS = Σ_t γ^t (Σ_i w^i_t r^i_t) / (Σ_i w^i_t)

WPDIS pads every episode to the longest one with an absorbing state (reward 0, ratio 1), so an
ended episode keeps its last weight in the denominators of later steps (the fixed-horizon
form of Thomas 2015). No estimator here bootstraps past the end of an episode: a timeout-cut
episode contributes its return up to the cut.

The estimators are functions of per-episode components and of episode counts c (c = 1 for
the point estimate, a multinomial resample for the bootstrap): a mean becomes Σ c x / Σ c.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp

from offrl.ope.episodes import Trajectories

# exp(60) ≈ 1e26: log-weights are capped here so that sums of weights stay finite in float32.
LOG_WEIGHT_CAP = 60.0


def log_weights(traj: Trajectories, log_ratio: jnp.ndarray, max_weight: float | None):
    """log w_t = Σ_{k<=t} log ρ_k within each episode (a segmented scan), clipped at
    log(max_weight) and at LOG_WEIGHT_CAP: (N,) -> (N,), and the (N,) mask of clipped steps."""

    def combine(a, b):  # segmented sum: b's segment restarts where b has seen a first step
        (a_sum, a_first), (b_sum, b_first) = a, b
        return jnp.where(b_first, b_sum, a_sum + b_sum), a_first | b_first

    cumulative, _ = jax.lax.associative_scan(combine, (log_ratio, traj.first))
    cap = LOG_WEIGHT_CAP if max_weight is None else min(LOG_WEIGHT_CAP, math.log(max_weight))
    return jnp.minimum(cumulative, cap), cumulative > cap


def components(traj: Trajectories, log_w: jnp.ndarray, discount: float) -> dict:
    """Per-episode (E,) pieces of IS, PDIS and WIS: the discounted return G, the final weight
    W = w_{T-1}, and the per-decision sum PD = Σ_t γ^t w_t r_t."""
    disc_rew = traj.discounts(discount) * traj.rew
    w = jnp.exp(log_w)
    return {
        "ret": traj.episode_sum(disc_rew),
        "weight": w[traj.ends],
        "pd": traj.episode_sum(w * disc_rew),
    }


def stepwise_components(traj: Trajectories, log_w: jnp.ndarray, discount: float) -> dict:
    """WPDIS's dense (E, horizon) numerators γ^t w_t r_t (0 after the end) and weights w_t
    (the final weight after the end: the absorbing padding)."""
    w = jnp.exp(log_w)
    shape = (traj.num_episodes, traj.horizon)
    num = jnp.zeros(shape).at[traj.episode, traj.step].set(traj.discounts(discount) * w * traj.rew)
    den = jnp.broadcast_to(w[traj.ends][:, None], shape).at[traj.episode, traj.step].set(w)
    return {"num": num, "den": den}


# --------------------------------------------------------------------------- estimators of counts


def mean(x: jnp.ndarray, counts: jnp.ndarray) -> jnp.ndarray:
    """Σ c x / Σ c: the mean over (resampled) episodes."""
    return jnp.sum(counts * x) / jnp.sum(counts)


def ratio(num: jnp.ndarray, den: jnp.ndarray, counts: jnp.ndarray) -> jnp.ndarray:
    """Σ c num / Σ c den, 0 when every weight is 0."""
    total = jnp.sum(counts * den)
    return jnp.where(total > 0, jnp.sum(counts * num) / jnp.where(total > 0, total, 1.0), 0.0)


def mean_stat(comp: dict, counts: jnp.ndarray) -> jnp.ndarray:
    """The mean of comp["v"] over episodes: FQE's estimate from its initial-state values."""
    return mean(comp["v"], counts)


def is_stat(comp: dict, counts: jnp.ndarray) -> jnp.ndarray:
    return mean(comp["weight"] * comp["ret"], counts)


def pdis_stat(comp: dict, counts: jnp.ndarray) -> jnp.ndarray:
    return mean(comp["pd"], counts)


def wis_stat(comp: dict, counts: jnp.ndarray) -> jnp.ndarray:
    return ratio(comp["weight"] * comp["ret"], comp["weight"], counts)


def wpdis_stat(comp: dict, counts: jnp.ndarray) -> jnp.ndarray:
    num, den = counts @ comp["num"], counts @ comp["den"]  # (horizon,)
    return jnp.sum(jnp.where(den > 0, num / jnp.where(den > 0, den, 1.0), 0.0))


def effective_sample_size(weight: jnp.ndarray) -> jnp.ndarray:
    """(Σ W)² / Σ W² of the trajectory weights (scaled by their max first: no overflow)."""
    w = weight / jnp.maximum(jnp.max(weight), 1e-30)
    return jnp.sum(w) ** 2 / jnp.maximum(jnp.sum(w**2), 1e-30)
