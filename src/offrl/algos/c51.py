"""C51: categorical distributional Q-learning, on a fixed dataset.

Paper: Bellemare, Dabney & Munos, "A Distributional Perspective on Reinforcement Learning",
ICML 2017. Used offline by Agarwal, Schuurmans & Norouzi, "An Optimistic Perspective on
Offline Reinforcement Learning", ICML 2020, who found it, with QR-DQN, ahead of online DQN
on the DQN Replay data (reference code: google/dopamine, `agents/rainbow`, whose C51 is
Rainbow with its other parts off).

The return of each action is a categorical distribution on K fixed atoms
z_k = v_min + k Δz, Δz = (v_max - v_min) / (K - 1); the network outputs logits (B, n, K),
p_k(s, a) = softmax_k, and Q(s, a) = Σ_k z_k p_k(s, a). For dataset transitions
(s, a, r, s', d), d = 1 only for true terminals:
    a*  = argmax_a' Σ_k z_k p′_k(s', a')                       (target net p′)
    T̂z_j = clip(r + γ (1 - d) z_j, v_min, v_max)
    m_k = Σ_j p′_j(s', a*) · max(0, 1 - |(T̂z_j - v_min)/Δz - k|)   (projection onto the atoms)
    L   = E_batch[ -Σ_k m_k log p_k(s, a) ]                   (m held constant)
The projection's triangular kernel splits each T̂z_j between its two neighbouring atoms in
proportion to its distance: the paper's Algorithm 1 (with b_j = l = u landing on one atom).
The target network is a copy every `target_update_period` updates.

Update order per step (DQN's): one Adam step on L; step <- step + 1; if step %
target_update_period == 0: θ' <- θ.
Acting: argmax_a Q(s, a) when deterministic, else ε-greedy with ε = `eval_epsilon`.

Defaults: K = 51 atoms on [-10, 10] (the paper's; Atari's clipped rewards). Every other default
is offrl's DQN default for small vector tasks (Adam lr 3e-4, ε_Adam 1e-8, batch 64, 256-256,
a hard target copy every 1000 updates: dqn.py), as QR-DQN's are, so the three differ only in
the loss. The support must cover the task's discounted returns. With unit rewards and
γ = 0.99 they lie within 1 / (1 - γ) = 100 of zero, so CartPole's support is [0, 100] and
Acrobot's [-100, 0] (TASK_DEFAULTS; offrl's derivation, not a reference's). Set v_min and
v_max for any other task; returns beyond them are clipped into the end atoms.
Deviations: observations are standardized with the dataset's mean/std; Flax's default
initializers.
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
    check_target_update,
    epsilon_greedy,
    greedy,
)

__all__ = ["Config", "State", "act", "categorical_loss", "init", "project", "update"]

action_kind = "discrete"


@dataclass(frozen=True)
class Config:
    num_atoms: int = 51  # K (paper)
    v_min: float = -10.0  # the support's ends (paper, Atari)
    v_max: float = 10.0
    discount: float = 0.99  # γ
    lr: float = 3e-4  # Adam learning rate (offrl's DQN default; Dopamine Atari: 2.5e-4)
    adam_eps: float = 1e-8  # Adam's ε (Dopamine Atari: 0.01 / 32)
    target_update_period: int = 1000  # updates between hard copies θ' <- θ
    eval_epsilon: float = 0.001  # ε of act(deterministic=False)
    hidden: tuple[int, ...] = (256, 256)  # MLP widths; the last layer has n·K outputs
    batch_size: int = 64
    normalize_obs: bool = True  # standardize observations with the dataset's mean/std
    reward_scaling: str = "none"


# Supports covering the discounted returns of unit-reward tasks at γ = 0.99 (docstring).
TASK_DEFAULTS = {
    "cartpole": {"v_min": 0.0, "v_max": 100.0},
    "acrobot": {"v_min": -100.0, "v_max": 0.0},
}


def init(cfg: Config, spec: Spec, key: jax.Array) -> State:
    """DQN's State; q maps obs (B, d) to logits (B, n, K), target_q holds θ'."""
    if cfg.num_atoms < 2 or not cfg.v_min < cfg.v_max:
        raise ValueError(
            f"need num_atoms >= 2 and v_min < v_max, got {cfg.num_atoms} atoms on "
            f"[{cfg.v_min}, {cfg.v_max}]"
        )
    check_target_update(cfg.target_update_period)
    return q_learning_state(cfg, spec, key, quantiles=cfg.num_atoms)


def atoms(cfg: Config) -> jnp.ndarray:
    return jnp.linspace(cfg.v_min, cfg.v_max, cfg.num_atoms, dtype=jnp.float32)


def q_values(logits: jnp.ndarray, cfg: Config) -> jnp.ndarray:
    """Σ_k z_k p_k over the last axis: (..., K) -> (...)."""
    return jax.nn.softmax(logits, axis=-1) @ atoms(cfg)


# --------------------------------------------------------------------------- losses


def project(probs: jnp.ndarray, targets: jnp.ndarray, cfg: Config) -> jnp.ndarray:
    """m: the distribution of atoms `targets` (B, K) with probabilities `probs` (B, K),
    clipped to the support and split between neighbouring atoms: (B, K)."""
    dz = (cfg.v_max - cfg.v_min) / (cfg.num_atoms - 1)
    b = (jnp.clip(targets, cfg.v_min, cfg.v_max) - cfg.v_min) / dz  # (B, K) fractional atoms
    k = jnp.arange(cfg.num_atoms, dtype=jnp.float32)
    weights = jnp.clip(1.0 - jnp.abs(b[:, None, :] - k[None, :, None]), 0.0, 1.0)  # (B, k, j)
    return jnp.einsum("bkj,bj->bk", weights, probs)


def target_distribution(state: State, batch: Batch, cfg: Config) -> jnp.ndarray:
    """m of the module docstring: (B, K)."""
    next_logits = state.q.apply_fn(state.target_q, batch.next_obs)  # (B, n, K)
    best = greedy(q_values(next_logits, cfg))
    next_probs = jax.nn.softmax(action_values(next_logits, best), axis=-1)  # (B, K)
    shifted = batch.rew[:, None] + cfg.discount * (1.0 - batch.done[:, None]) * atoms(cfg)
    return project(next_probs, shifted, cfg)


def cross_entropy(target: jnp.ndarray, logits: jnp.ndarray) -> jnp.ndarray:
    """E_batch[-Σ_k m_k log p_k]: target m (B, K) held constant, logits (B, K)."""
    target = jax.lax.stop_gradient(target)
    return -jnp.mean(jnp.sum(target * jax.nn.log_softmax(logits, axis=-1), axis=-1))


def categorical_loss(
    params, state: State, batch: Batch, cfg: Config
) -> tuple[jnp.ndarray, Metrics]:
    target = target_distribution(state, batch, cfg)
    logits = action_values(state.q.apply_fn(params, batch.obs), batch.act)  # (B, K)
    loss = cross_entropy(target, logits)
    return loss, {"categorical_loss": loss, "q_mean": q_values(logits, cfg).mean()}


# --------------------------------------------------------------------------- update


def update(cfg: Config, state: State, batch: Batch, key: jax.Array) -> tuple[State, Metrics]:
    del key  # the update is deterministic given the batch
    return q_learning_step(cfg, state, batch, categorical_loss)


def act(cfg: Config, state: State, obs: jnp.ndarray, key: jax.Array, deterministic: bool = True):
    q = q_values(state.q.apply_fn(state.q.params, state.tf.obs(obs)), cfg)
    return greedy(q) if deterministic else epsilon_greedy(key, q, cfg.eval_epsilon)
