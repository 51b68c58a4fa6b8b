"""EDAC and SAC-N: SAC with N critics and the minimum over them, and EDAC's ensemble
gradient diversity term.

Paper: An, Moon, Kim & Song, "Uncertainty-Based Offline Reinforcement Learning with
Diversified Q-Ensemble", NeurIPS 2021. Reference code: snu-mllab/EDAC; CORL's sac_n.py and
edac.py (the v2-data reproductions quoted in docs/algos/edac.md); OfflineRL-Kit's edac.

SAC-N (`sac_n`, a preset: η = 0) is SAC (offrl.algos.sac) with N critics in place of two:
the clipped double-Q target and the actor's Q both take the minimum over all N, so a large
N penalizes actions on which the ensemble disagrees (out-of-distribution ones):
    y   = r + γ (1 - d) [min_{i≤N} Q'_i(s', a') - α log π(a'|s')],   a' ~ π(·|s')
    L_Q = Σ_i E[(Q_i(s, a) - y)²]
    L_π = E[α log π(a|s) - min_i Q_i(s, a)]
EDAC adds to L_Q the ensemble similarity of the critics' action gradients at the data's
(s, a), so that a smaller N suffices:
    g_i = ∇_a Q_i(s, a) / (‖∇_a Q_i(s, a)‖ + 1e-10)
    L_ES = E_(s,a)~D [ 1/(N-1) Σ_{i≠j} ⟨g_i, g_j⟩ ],   L_critic = L_Q + η L_ES
Update order per step: SAC's (α, actor, critic with L_critic, Polyak targets).
Defaults: CORL's (edac.py, sac_n.py): 256 × 3 MLPs, Adam 3e-4 for actor, critics and α,
batch 256, γ 0.99, τ 0.005, learned α with target entropy −|A|, N = 10, η = 1. Per-dataset
(N, η) for D4RL's v2 locomotion data as TASK_DEFAULTS (OfflineRL-Kit's suggested EDAC
settings) and TASK_DEFAULTS_SAC_N (CORL's SAC-N configs).
EDAC refuses data with one action dimension (Pendulum): the unit gradients g_i are then ±1,
L_ES is piecewise constant, and its gradient is ~1e10 where a critic's slope changes sign
(an EDAC run on pendulum-medium-expert became NaN within 4k updates).
Deviations: flax's default initializers (the reference code sets hidden biases to 0.1 and
the last layers uniform in ±3e-3 and ±1e-3); log σ clipped to [-20, 2] as in offrl's SAC
(CORL clips to [-5, 2]); the first α step precedes the actor step (as offrl's SAC).
"""

from __future__ import annotations

from dataclasses import dataclass

import jax
import jax.numpy as jnp

from offrl.algos import sac
from offrl.core import Batch, Metrics, Spec
from offrl.nets import QNet

State = sac.State


@dataclass(frozen=True)
class Config:
    num_critics: int = 10  # N
    eta: float = 1.0  # η, weight of the gradient diversity term (0: SAC-N)
    discount: float = 0.99
    tau: float = 0.005
    actor_lr: float = 3e-4  # the actor's and log α's Adam learning rate
    critic_lr: float = 3e-4
    hidden: tuple[int, ...] = (256, 256, 256)
    auto_alpha: bool = True
    init_alpha: float = 1.0  # CORL: log α starts at 0
    target_entropy: float | None = None  # None: -|A|
    batch_size: int = 256
    normalize_obs: bool = False
    reward_scaling: str = "none"


# (N, η) per dataset for D4RL's v2 data: OfflineRL-Kit's run_edac.py ("suggested hypers").
TASK_DEFAULTS = {
    name: {"num_critics": n, "eta": eta}
    for name, (n, eta) in {
        "halfcheetah-medium": (10, 1.0),
        "hopper-medium": (50, 1.0),
        "walker2d-medium": (10, 1.0),
        "halfcheetah-medium-replay": (10, 1.0),
        "hopper-medium-replay": (50, 1.0),
        "walker2d-medium-replay": (10, 1.0),
        "halfcheetah-medium-expert": (10, 5.0),
        "hopper-medium-expert": (50, 1.0),
        "walker2d-medium-expert": (10, 5.0),
    }.items()
}
# N per dataset for SAC-N: CORL's configs/offline/sac_n (those it ships for these datasets).
TASK_DEFAULTS_SAC_N = {
    name: {"num_critics": n}
    for name, n in {
        "halfcheetah-medium-replay": 10,
        "halfcheetah-medium-expert": 10,
        "hopper-medium": 500,
        "hopper-medium-replay": 200,
        "walker2d-medium": 20,
        "walker2d-medium-expert": 20,
    }.items()
}


def check(cfg: Config) -> None:
    if cfg.num_critics < 2 or cfg.eta < 0:
        raise ValueError(f"num_critics must be >= 2 and eta >= 0, got {cfg.num_critics}, {cfg.eta}")


def init(cfg: Config, spec: Spec, key: jax.Array) -> State:
    check(cfg)
    if cfg.eta > 0 and spec.act_dim < 2:
        # A unit vector in one dimension is ±1: L_ES is then constant but where a critic's
        # slope changes sign, and its gradient there is ~1e10 (measured: NaN on Pendulum).
        raise ValueError(
            "eta > 0 needs at least 2 action dimensions (with one, the unit action gradients "
            "are ±1 and the diversity term has no useful gradient); use sac_n (eta = 0)"
        )
    return sac.init(sac.config_of(cfg), spec, key)


# --------------------------------------------------------------------------- losses


def diversity_loss(params, hidden, obs: jnp.ndarray, act: jnp.ndarray) -> jnp.ndarray:
    """L_ES of the module docstring for a QEnsemble's params, at the rows (obs, act)."""
    members = params["params"]["VmapQNet_0"]  # each leaf with a leading member axis
    net = QNet(hidden)

    def member_grad(member, a):  # ∇_a Q_i(s_b, a_b) for every row b: Q_i(s_b, ·) is row b's
        return jax.grad(lambda a: net.apply({"params": member}, obs, a).sum())(a)

    grads = jax.vmap(member_grad, in_axes=(0, None))(members, act)  # (N, B, A)
    unit = grads / (jnp.linalg.norm(grads, axis=-1, keepdims=True) + 1e-10)
    total = jnp.sum(unit, axis=0)  # Σ_i g_i: Σ_{i≠j} ⟨g_i, g_j⟩ = ‖Σ g_i‖² − Σ ‖g_i‖²
    pairs = jnp.sum(total**2, axis=-1) - jnp.sum(unit**2, axis=(0, 2))
    return jnp.mean(pairs) / (grads.shape[0] - 1)


def critic_loss(params, state: State, batch: Batch, cfg: Config, key: jax.Array, alpha):
    """SAC's N-critic TD loss, plus η L_ES (not computed at η = 0)."""
    loss, metrics = sac.critic_loss(params, state, batch, cfg, key, alpha)
    if cfg.eta == 0:
        return loss, metrics
    diversity = diversity_loss(params, cfg.hidden, batch.obs, batch.act)
    return loss + cfg.eta * diversity, metrics | {"diversity_loss": diversity}


# --------------------------------------------------------------------------- update


def update(cfg: Config, state: State, batch: Batch, key: jax.Array) -> tuple[State, Metrics]:
    return sac.sac_step(cfg, state, batch, key, critic_loss)


def act(cfg: Config, state: State, obs: jnp.ndarray, key: jax.Array, deterministic: bool = True):
    return sac.act(sac.config_of(cfg), state, obs, key, deterministic)
