"""Ensemble-DQN: K Q-heads on one torso, each trained on its own TD target, acting by their mean.

Paper: Agarwal, Schuurmans & Norouzi, "An Optimistic Perspective on Offline Reinforcement
Learning", ICML 2020 (the baseline of REM, Sec. 4.1); reference code google-research/batch_rl,
`multi_head/multi_head_dqn_agent.py` with `transform_strategy = 'IDENTITY'` and
`fixed_replay/configs/multi_head_dqn.gin`.

The network outputs Q_k(s, a), k = 1..K, from heads that share every layer but the last
(`nets.discrete.DiscreteQNet(heads=K)`, the paper's Fig. 2). For dataset transitions
(s, a, r, s', d), d = 1 only for true terminals:
    y_k = r + γ (1 - d) max_a' Q'_k(s', a')            (each head bootstraps from its own head)
    L = (1/K) Σ_k E_batch[ huber_κ(Q_k(s, a) - y_k) ],  κ = 1
Q' is the target network, a copy of Q every `target_update_period` updates; y is a constant
in the gradient. Heads differ only through their random initialization (all see the same
minibatch), as in the paper.

Update order per step (DQN's): one Adam step on L; step <- step + 1; if step %
target_update_period == 0: Q' <- Q.
Acting: argmax_a (1/K) Σ_k Q_k(s, a) when deterministic (the reference's `q_values`), else
ε-greedy on the same mean with ε = `eval_epsilon`.

Defaults: K = 200 heads (the reference's multi_head_dqn.gin and rem.gin: num_heads = 200,
the same 200-output-per-action last layer as its QR-DQN). Every other default is offrl's DQN
default for small vector tasks (Adam lr 3e-4, ε_Adam 1e-8, batch 64, a 256-256 MLP, hard
target copy every 1000 updates; see dqn.py). Atari settings of the reference: Adam lr 5e-5,
ε_Adam 3.125e-4, batch 32, target copy every 2000 updates (batch_rl's 8000 agent steps, one
update every 4).
Deviations: no multi-network variant (K separate torsos, the paper's Sec. 5.3); observations
standardized with the dataset's mean/std; Flax's default initializers.
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
    huber_td_loss,
    td_target,
    updates_in_agent_steps,
)

__all__ = ["Config", "State", "act", "head_targets", "init", "q_loss", "update"]

action_kind = "discrete"


# The Atari reference's target period (batch_rl's gin: 8000 agent steps, one update per 4).
ATARI_TARGET_UPDATE_PERIOD = updates_in_agent_steps(8000, 4)


@dataclass(frozen=True)
class Config:
    num_heads: int = 200  # K (reference multi_head_dqn.gin)
    discount: float = 0.99  # γ
    lr: float = 3e-4  # Adam learning rate (offrl's DQN default; Atari: 5e-5)
    adam_eps: float = 1e-8  # Adam's ε (Atari: 3.125e-4)
    target_update_period: int = 1000  # updates between hard copies Q' <- Q
    huber_delta: float = 1.0  # κ of the Huber loss
    eval_epsilon: float = 0.001  # ε of act(deterministic=False)
    hidden: tuple[int, ...] = (256, 256)  # shared torso widths; the last layer has n·K outputs
    batch_size: int = 64
    normalize_obs: bool = True  # standardize observations with the dataset's mean/std
    reward_scaling: str = "none"


def init(cfg: Config, spec: Spec, key: jax.Array) -> State:
    """DQN's State; q is the multi-head Q: obs (B, d) -> (B, n, K). Also REM's init (its
    Config has the same fields)."""
    if cfg.num_heads < 1:
        raise ValueError(f"num_heads must be >= 1, got {cfg.num_heads}")
    check_huber_delta(cfg.huber_delta)
    check_target_update(cfg.target_update_period)
    return q_learning_state(cfg, spec, key, heads=cfg.num_heads)


def head_targets(state: State, batch: Batch, cfg: Config) -> jnp.ndarray:
    """y_k = r + γ (1 - d) max_a' Q'_k(s', a') for every head k: (B, K)."""
    next_max = state.q.apply_fn(state.target_q, batch.next_obs).max(axis=1)  # (B, K)
    return td_target(batch, next_max, cfg.discount)


def q_loss(params, state: State, batch: Batch, cfg: Config) -> tuple[jnp.ndarray, Metrics]:
    q_data = action_values(state.q.apply_fn(params, batch.obs), batch.act)  # (B, K)
    return huber_td_loss(q_data, head_targets(state, batch, cfg), cfg.huber_delta)


def update(cfg: Config, state: State, batch: Batch, key: jax.Array) -> tuple[State, Metrics]:
    del key  # the update is deterministic given the batch
    return q_learning_step(cfg, state, batch, q_loss)


def act(cfg: Config, state: State, obs: jnp.ndarray, key: jax.Array, deterministic: bool = True):
    """Also REM's act: greedy (or ε-greedy) on the mean over heads."""
    q = state.q.apply_fn(state.q.params, state.tf.obs(obs)).mean(axis=-1)
    return greedy(q) if deterministic else epsilon_greedy(key, q, cfg.eval_epsilon)
