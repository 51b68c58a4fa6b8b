"""Discrete CQL: DQN or QR-DQN plus a penalty that pushes down Q off the data's actions.

Paper: Kumar, Zhou, Tucker & Levine, "Conservative Q-Learning for Offline Reinforcement
Learning", NeurIPS 2020: CQL(H), eq. 4, whose inner maximum over policies is, for discrete
actions, the log-sum-exp over actions. Reference code: aviralkumar2907/CQL, `atari/` (the
penalty added to QR-DQN in `batch_rl/multi_head/quantile_agent.py`, built on
google-research/batch_rl), `fixed_replay/configs/quantile.gin`.

For dataset transitions (s, a, r, s', d), d = 1 only for true terminals:
    penalty = E_s[ log Σ_a' exp Q(s, a') ] - E_(s,a)~D[ Q(s, a) ]
    L = L_TD + α penalty
with the TD part of the chosen head:
    head "mean" (DQN):  y = r + γ (1 - d) Q'(s', a*), a* = argmax Q'(s', ·) (or the online
                        argmax with `double`); L_TD = E[ huber_κ(Q(s, a) - y) ]
    head "qr" (QR-DQN, the paper's Atari agent): N quantiles θ_i(s, a), Q = (1/N) Σ_i θ_i;
                        L_TD = QR-DQN's quantile Huber loss (qrdqn.quantile_huber_loss on the
                        targets qrdqn.target_quantiles), and the penalty uses the mean Q.
The log-sum-exp is over all n actions at the batch's states; both terms of the penalty carry
gradient (the reference's form); targets are constants.

Update order per step: one Adam step on L; step <- step + 1; then every
`target_update_period` updates Q' <- τ_Q Q + (1 - τ_Q) Q' (core.update_target;
τ_Q = 1, a hard copy, by default).
Acting: argmax_a Q(s, a) (the mean over quantiles for "qr") when deterministic, else
ε-greedy with ε = `eval_epsilon`. No constraint at acting time: the penalty shapes Q itself.

Defaults: α = 1.0, the reference's Atari setting (quantile.gin `minq_weight = 1.0`, and the
README's command for the 1% datasets); the paper tunes α per dataset size. "qr" head: N = 200,
κ = 1 (quantile.gin). Every other default is offrl's DQN default for small vector tasks
(Adam lr 3e-4, ε_Adam 1e-8, batch 64, a 256-256 MLP, hard target copy every 1000 updates; see
dqn.py), so cql_discrete differs from dqn / qrdqn by the penalty alone. The reference's Atari
settings: `--set lr=5e-5 --set adam_eps=3.125e-4 --set batch_size=32 --set
target_update_period=2000` (batch_rl's 8000 agent steps at one update every 4; with the
convolutional torso offrl does not have).
Deviations: the default head is "mean" (a DQN head, cheaper on a CPU); the reference's Atari
agent is the "qr" head. Observations are standardized with the dataset's mean/std; Flax's
default initializers.
"""

from __future__ import annotations

from dataclasses import dataclass

import jax
import jax.numpy as jnp

from offrl.algos import dqn
from offrl.algos.dqn import State, q_learning_state
from offrl.algos.qrdqn import quantile_huber_loss, target_quantiles
from offrl.core import (
    Batch,
    Metrics,
    Spec,
    action_values,
    check_huber_delta,
    check_target_update,
    epsilon_greedy,
    gradient_step,
    greedy,
    huber_td_loss,
    td_target,
    update_target,
    updates_in_agent_steps,
)

__all__ = ["Config", "State", "act", "cql_loss", "cql_penalty", "init", "q_values", "update"]

action_kind = "discrete"
HEADS = ("mean", "qr")


# The Atari reference's target period (batch_rl's gin: 8000 agent steps, one update per 4).
ATARI_TARGET_UPDATE_PERIOD = updates_in_agent_steps(8000, 4)


@dataclass(frozen=True)
class Config:
    alpha: float = 1.0  # α, weight of the CQL penalty (reference Atari gin: minq_weight 1.0)
    head: str = "mean"  # "mean": DQN head, Huber TD; "qr": QR-DQN head, quantile Huber TD
    num_quantiles: int = 200  # N of the "qr" head (reference: num_atoms 200)
    double: bool = False  # "mean" head only: the online net picks a' (Double DQN)
    discount: float = 0.99  # γ
    lr: float = 3e-4  # Adam learning rate (offrl's DQN default; reference Atari: 5e-5)
    adam_eps: float = 1e-8  # Adam's ε (reference Atari: 3.125e-4)
    target_update_period: int = 1000  # updates between target moves (as offrl's dqn)
    target_tau: float = 1.0  # τ_Q of each move Q' <- τ_Q Q + (1-τ_Q) Q' (1: a hard copy)
    huber_delta: float = 1.0  # κ of the (quantile) Huber loss
    eval_epsilon: float = 0.001  # ε of act(deterministic=False)
    hidden: tuple[int, ...] = (256, 256)  # Q-network MLP widths
    batch_size: int = 64
    normalize_obs: bool = True  # standardize observations with the dataset's mean/std
    reward_scaling: str = "none"


def init(cfg: Config, spec: Spec, key: jax.Array) -> State:
    """DQN's State; q: obs (B, d) -> (B, n) ("mean") or (B, n, N) quantiles ("qr")."""
    if cfg.head not in HEADS:
        raise ValueError(f"head must be one of {HEADS}, got {cfg.head!r}")
    if cfg.alpha < 0:
        raise ValueError(f"alpha must be >= 0, got {cfg.alpha}")
    if cfg.head == "qr" and cfg.num_quantiles < 1:
        raise ValueError(f"num_quantiles must be >= 1, got {cfg.num_quantiles}")
    if cfg.head == "qr" and cfg.double:
        raise ValueError("double is for head 'mean' only (the qr head's target is QR-DQN's)")
    check_huber_delta(cfg.huber_delta)
    check_target_update(cfg.target_update_period, cfg.target_tau)
    quantiles = cfg.num_quantiles if cfg.head == "qr" else None
    return q_learning_state(cfg, spec, key, quantiles=quantiles)


def q_values(output: jnp.ndarray, cfg: Config) -> jnp.ndarray:
    """Q(s, ·), (B, n): the network output itself, or the mean over its quantiles."""
    return output.mean(axis=-1) if cfg.head == "qr" else output


def cql_penalty(q: jnp.ndarray, act: jnp.ndarray) -> jnp.ndarray:
    """E_s[log Σ_a exp Q(s, a)] - E_(s,a)~D[Q(s, a)]: q (B, n), act (B,) -> scalar >= 0
    (the log-sum-exp exceeds every term it sums)."""
    return jnp.mean(jax.nn.logsumexp(q, axis=-1)) - jnp.mean(action_values(q, act))


def td_loss(output: jnp.ndarray, state: State, batch: Batch, cfg: Config) -> jnp.ndarray:
    """The head's TD loss for the data's actions; `output` the online net's at batch.obs."""
    taken = action_values(output, batch.act)  # (B,) or (B, N)
    if cfg.head == "qr":
        targets = jax.lax.stop_gradient(target_quantiles(state, batch, cfg))
        return jnp.mean(quantile_huber_loss(taken, targets, cfg.huber_delta))
    target = td_target(batch, dqn.next_state_value(state, batch, cfg), cfg.discount)
    return huber_td_loss(taken, target, cfg.huber_delta)[0]


def cql_loss(params, state: State, batch: Batch, cfg: Config) -> tuple[jnp.ndarray, Metrics]:
    output = state.q.apply_fn(params, batch.obs)
    q = q_values(output, cfg)
    td = td_loss(output, state, batch, cfg)
    penalty = cql_penalty(q, batch.act)
    loss = td + cfg.alpha * penalty
    return loss, {
        "loss": loss,
        "td_loss": td,
        "cql_penalty": penalty,
        "q_mean": action_values(q, batch.act).mean(),
    }


def update(cfg: Config, state: State, batch: Batch, key: jax.Array) -> tuple[State, Metrics]:
    del key  # the update is deterministic given the batch
    q, metrics = gradient_step(state.q, cql_loss, state, batch, cfg)
    step = state.step + 1
    target_q = update_target(
        q.params, state.target_q, step, cfg.target_update_period, cfg.target_tau
    )
    return state.replace(q=q, target_q=target_q, step=step), metrics


def act(cfg: Config, state: State, obs: jnp.ndarray, key: jax.Array, deterministic: bool = True):
    q = q_values(state.q.apply_fn(state.q.params, state.tf.obs(obs)), cfg)
    return greedy(q) if deterministic else epsilon_greedy(key, q, cfg.eval_epsilon)
