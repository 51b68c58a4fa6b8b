"""QR-DQN: distributional Q-learning by quantile regression, on a fixed dataset.

Paper: Dabney, Rowland, Bellemare & Munos, "Distributional Reinforcement Learning with
Quantile Regression", AAAI 2018. Used offline by Agarwal, Schuurmans & Norouzi, "An
Optimistic Perspective on Offline Reinforcement Learning", ICML 2020 (reference code
google-research/batch_rl, `multi_head/quantile_agent.py`, `fixed_replay/configs/quantile.gin`)
and as the base of discrete CQL (Kumar et al. 2020).

The network outputs N quantiles θ_i(s, a), i = 1..N, of the return of each action, at the
quantile midpoints τ̂_i = (2i - 1) / (2N). Q(s, a) = (1/N) Σ_i θ_i(s, a).
For dataset transitions (s, a, r, s', d), d = 1 only for true terminals:
    a* = argmax_a' (1/N) Σ_j θ'_j(s', a')             (target net, mean over its quantiles)
    y_j = r + γ (1 - d) θ'_j(s', a*),   j = 1..N      (constants in the gradient)
    u_ij = y_j - θ_i(s, a)
    ρ^κ_τ(u) = |τ - 1{u < 0}| · huber_κ(u) / κ,   huber_κ(u) = u²/2 if |u| <= κ else κ(|u| - κ/2)
    L = E_batch[ Σ_i (1/N) Σ_j ρ^κ_τ̂i(u_ij) ]          (paper eq. 10; κ = 1)
θ' is the target network, a copy of θ every `target_update_period` updates.

Update order per step (DQN's): one Adam step on L; step <- step + 1; if step %
target_update_period == 0: θ' <- θ.
Acting: argmax_a Q(s, a) (mean over quantiles) when deterministic, else ε-greedy with ε =
`eval_epsilon`.

Defaults: N = 200 quantiles and κ = 1, as in the paper's Atari experiments and in the REM
paper's offline QR-DQN (quantile.gin: num_atoms = 200, kappa 1.0). Every other default is
offrl's DQN default for small vector tasks (Adam lr 3e-4, ε_Adam 1e-8, batch 64, a 256-256
MLP, hard target copy every 1000 updates; see dqn.py), so QR-DQN and DQN differ only in the
loss, the comparison the REM paper makes. Atari settings of the paper: Adam lr 5e-5, ε_Adam
0.01/32 = 3.125e-4; the REM paper's: the same, batch 32, target copy every 2000 updates
(batch_rl's 8000 agent steps, one update every 4).
Deviations: the REM paper's code (like Dopamine's) omits the 1/κ of eq. 10; offrl keeps the
paper's form (identical at the default κ = 1). Observations are standardized with the
dataset's mean/std; Flax's default initializers.
"""

from __future__ import annotations

from dataclasses import dataclass

import jax
import jax.numpy as jnp

from offrl.algos.dqn import State, q_learning_state, q_learning_step
from offrl.core import (
    Batch,
    Metrics,
    Spec,
    action_values,
    check_huber_delta,
    check_target_update,
    epsilon_greedy,
    greedy,
    td_target,
    updates_in_agent_steps,
)

__all__ = [
    "Config",
    "State",
    "act",
    "init",
    "quantile_huber_loss",
    "quantile_midpoints",
    "quantile_loss",
    "target_quantiles",
    "update",
]

action_kind = "discrete"


# The Atari reference's target period (batch_rl's gin: 8000 agent steps, one update per 4).
ATARI_TARGET_UPDATE_PERIOD = updates_in_agent_steps(8000, 4)


@dataclass(frozen=True)
class Config:
    num_quantiles: int = 200  # N (paper; REM paper's quantile.gin)
    huber_delta: float = 1.0  # κ of the quantile Huber loss (paper)
    discount: float = 0.99  # γ
    lr: float = 3e-4  # Adam learning rate (offrl's DQN default; Atari: 5e-5)
    adam_eps: float = 1e-8  # Adam's ε (Atari: 0.01 / 32)
    target_update_period: int = 1000  # updates between hard copies θ' <- θ
    eval_epsilon: float = 0.001  # ε of act(deterministic=False)
    hidden: tuple[int, ...] = (256, 256)  # MLP widths; the last layer has n·N outputs
    batch_size: int = 64
    normalize_obs: bool = True  # standardize observations with the dataset's mean/std
    reward_scaling: str = "none"


def init(cfg: Config, spec: Spec, key: jax.Array) -> State:
    """DQN's State; q is the quantile network θ: obs (B, d) -> (B, n, N), target_q holds θ'."""
    if cfg.num_quantiles < 1:
        raise ValueError(f"num_quantiles must be >= 1, got {cfg.num_quantiles}")
    check_huber_delta(cfg.huber_delta)
    check_target_update(cfg.target_update_period)
    return q_learning_state(cfg, spec, key, quantiles=cfg.num_quantiles)


def quantile_midpoints(num_quantiles: int) -> jnp.ndarray:
    """τ̂_i = (2i - 1) / (2N), i = 1..N: the levels at which N quantiles are the distribution's
    best W1 approximation (the paper's Lemma 2)."""
    return (jnp.arange(num_quantiles, dtype=jnp.float32) + 0.5) / num_quantiles


@jax.custom_vjp
def quantile_huber_loss(quantiles: jnp.ndarray, targets: jnp.ndarray, kappa: float) -> jnp.ndarray:
    """QR-DQN's loss per sample: Σ_i (1/M) Σ_j |τ̂_i - 1{u_ij < 0}| huber_κ(u_ij) / κ with
    u_ij = targets_j - quantiles_i (paper eq. 10). quantiles (..., N) at levels τ̂_i =
    quantile_midpoints(N), targets (..., M) samples of the target distribution -> (...).
    The sum over i makes each quantile's gradient independent of N; the mean over j averages
    the target samples. First-order differentiable in both inputs (callers stop the targets')."""
    return _quantile_huber_forward(quantiles, targets, kappa)[0]


# Samples per block of the pairwise (M, N) terms: a block's few MB stay in cache.
_PAIR_BLOCK = 16


def _quantile_huber_forward(quantiles, targets, kappa):
    """The loss, and the gradients' sums as residuals: Σ_j g_ij and Σ_i g_ij of
    g_ij = dρ/du_ij = |τ̂_i - 1{u_ij < 0}| clip(u_ij, -κ, κ) / κ.

    Why it is written this way (value and gradient on CPU, B = 256, N = M = 200, 10M pairs;
    docs/algos/qrdqn.md): a custom VJP keeping the (B, N, M) derivative took 100 ms; one XLA
    reduction over all pairs 50 ms (its reduction loops are not vectorized for this body, and
    a materialized (B, M, N) array costs 14 ms to write); the pairs in blocks of _PAIR_BLOCK
    samples (lax.map), each block's sums taken by contraction with ones (a matmul), 3.9 ms.
    The gradient is never autodiffed: huber_κ(u) = c (u - c/2) with c = clip(u, -κ, κ),
    and dρ/du = w c / κ."""
    lead, n, m = quantiles.shape[:-1], quantiles.shape[-1], targets.shape[-1]
    q, t = quantiles.reshape(-1, n), targets.reshape(-1, m)
    rows = q.shape[0]
    pad = (-rows) % _PAIR_BLOCK
    q, t = (jnp.pad(x, ((0, pad), (0, 0))) for x in (q, t))
    taus = quantile_midpoints(n)

    def block(qt):
        q, t = qt
        u = t[:, :, None] - q[:, None, :]  # (b, M, N): targets on the contracted axis
        c = jnp.clip(u, -kappa, kappa)
        wc = jnp.where(u < 0, 1 - taus, taus) * c
        sum_j = lambda x: jnp.einsum("bmn,m->bn", x, jnp.ones(m, x.dtype))  # noqa: E731
        sum_i = jnp.einsum("bmn,n->bm", wc, jnp.ones(n, wc.dtype))
        return sum_j(wc * (u - 0.5 * c)), sum_j(wc), sum_i

    blocks = (x.reshape(-1, _PAIR_BLOCK, x.shape[-1]) for x in (q, t))
    loss_i, grad_i, grad_j = (
        x.reshape(-1, x.shape[-1])[:rows] for x in jax.lax.map(block, tuple(blocks))
    )
    loss = (jnp.sum(loss_i, axis=-1) / (m * kappa)).reshape(lead)
    d_quantiles = (-grad_i / (m * kappa)).reshape(quantiles.shape)
    d_targets = (grad_j / (m * kappa)).reshape(targets.shape)
    return loss, (d_quantiles, d_targets)


def _quantile_huber_backward(residuals, cotangent):
    """u_ij = targets_j - quantiles_i: quantile i collects -mean_j g_ij, target j Σ_i g_ij / M."""
    d_quantiles, d_targets = residuals
    c = cotangent[..., None]
    return c * d_quantiles, c * d_targets, None  # κ: no gradient


quantile_huber_loss.defvjp(_quantile_huber_forward, _quantile_huber_backward)


def target_quantiles(state: State, batch: Batch, cfg: Config) -> jnp.ndarray:
    """y_j = r + γ (1 - d) θ'_j(s', a*), a* greedy on the target net's mean: (B, N)."""
    next_quantiles = state.q.apply_fn(state.target_q, batch.next_obs)  # (B, n, N)
    best = greedy(next_quantiles.mean(axis=-1))
    next_value = action_values(next_quantiles, best)  # (B, N)
    return td_target(batch, next_value, cfg.discount)


def quantile_loss(params, state: State, batch: Batch, cfg: Config) -> tuple[jnp.ndarray, Metrics]:
    targets = jax.lax.stop_gradient(target_quantiles(state, batch, cfg))
    quantiles = action_values(state.q.apply_fn(params, batch.obs), batch.act)  # (B, N)
    loss = jnp.mean(quantile_huber_loss(quantiles, targets, cfg.huber_delta))
    return loss, {
        "quantile_loss": loss,
        "q_mean": quantiles.mean(),
        "target_mean": targets.mean(),
    }


def update(cfg: Config, state: State, batch: Batch, key: jax.Array) -> tuple[State, Metrics]:
    del key  # the update is deterministic given the batch
    return q_learning_step(cfg, state, batch, quantile_loss)


def act(cfg: Config, state: State, obs: jnp.ndarray, key: jax.Array, deterministic: bool = True):
    q = state.q.apply_fn(state.q.params, state.tf.obs(obs)).mean(axis=-1)
    return greedy(q) if deterministic else epsilon_greedy(key, q, cfg.eval_epsilon)
