"""Doubly robust OPE, per-decision form (Jiang & Li 2016; Thomas & Brunskill 2016).

With a model Q̂ (FQE's critic), V̂(s) = E_{a~π} Q̂(s, a), the cumulative weights w_t of
importance.py (w_{-1} = 1) and γ the discount, episode i contributes

    DR_i = Σ_t γ^t [ w_t r_t - (w_t Q̂(s_t, a_t) - w_{t-1} V̂(s_t)) ]

and DR = 1/n Σ_i DR_i. offrl writes it with the next state's value,

    DR_i = V̂(s_0) + Σ_t γ^t w_t (r_t + γ (1 - d_t) V̂(s'_t) - Q̂(s_t, a_t)),

d_t = 1 at terminals only. Within an episode s'_t = s_{t+1}, so the two are equal but for
one term after the last transition, γ^T w_{T-1} (1 - d_{T-1}) V̂(s'_{T-1}): 0 after a
terminal; after a timeout it is the value past the cut, so DR estimates the same
infinite-horizon value as FQE (IS/PDIS/WIS stop at the cut).
Identities: with Q̂ = V̂ = 0, DR = PDIS; with a model whose TD residual
r_t + γ (1 - d_t) V̂(s'_t) - Q̂(s_t, a_t) is 0 on every transition, DR = mean_i V̂(s_0^i).
"""

from __future__ import annotations

import jax.numpy as jnp

from offrl.ope.episodes import Trajectories
from offrl.ope.importance import mean


def components(
    traj: Trajectories,
    log_w: jnp.ndarray,
    q_taken: jnp.ndarray,
    v_next: jnp.ndarray,
    v_start: jnp.ndarray,
    discount: float,
) -> dict:
    """Per-episode DR_i, (E,): q_taken Q̂(s_t, a_t) and v_next V̂(s'_t) per transition (N,),
    v_start V̂(s_0) per episode (E,)."""
    residual = traj.rew + discount * (1.0 - traj.terminal) * v_next - q_taken
    correction = traj.episode_sum(traj.discounts(discount) * jnp.exp(log_w) * residual)
    return {"dr": v_start + correction}


def dr_stat(comp: dict, counts: jnp.ndarray) -> jnp.ndarray:
    return mean(comp["dr"], counts)
