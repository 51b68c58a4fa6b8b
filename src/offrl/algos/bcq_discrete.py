"""Discrete BCQ: Double-DQN-style Q-learning restricted to actions the data makes likely.

Paper: Fujimoto, Conti, Ghavamzadeh & Pineau, "Benchmarking Batch Deep Reinforcement
Learning Algorithms", NeurIPS 2019 Deep RL workshop (arXiv 1910.01708), Algorithm 1.
Reference code: sfujim/BCQ, `discrete_BCQ/discrete_BCQ.py` and `discrete_BCQ/main.py`.

An imitation model G_ω(a|s) = softmax(g_ω(s))_a estimates the behaviour policy. Only actions
whose relative probability passes the threshold τ are candidates, in the target and when
acting:
    allowed(s) = { a : G_ω(a|s) / max_â G_ω(â|s) > τ }
For dataset transitions (s, a, r, s', d), d = 1 only for true terminals:
    a' = argmax_{a' ∈ allowed(s')} Q(s', a')                  (online net chooses)
    y  = r + γ (1 - d) Q'(s', a')                              (target net values)
    L_Q = E[ huber_κ(Q(s, a) - y) ],  κ = 1                    (y constant in the gradient)
    L_G = E[ -log G_ω(a|s) ] + λ E[ mean_a g_ω(s)_a² ],  λ = 0.01  (the reference's L2 on the
                                                                  logits, keeps them bounded)
Update order per step (the reference's): one Adam step on L_Q (its mask from G_ω as it is)
and one on L_G; step <- step + 1; then every `target_update_period` updates
Q' <- τ_Q Q + (1 - τ_Q) Q' (`core.update_target`; τ_Q = 1 is a hard copy).
Acting: argmax_{a ∈ allowed(s)} Q(s, a) when deterministic, else ε-greedy on that choice with
ε = `eval_epsilon` (the random action is uniform over all actions, as the reference's).

Defaults: the reference's non-Atari setting (`regular_parameters` in main.py) but for the
target: Adam lr 3e-4, batch 64, γ = 0.99, 256-256 ReLU MLPs for Q and g_ω (`FC_Q`, two
separate towers), τ = 0.3 (`BCQ_threshold`, the paper's), λ = 0.01, κ = 1
(`smooth_l1_loss`). The target is offrl's DQN rule, a hard copy every 1000 updates, chosen by
measurement: on uniform-random CartPole data (docs/algos/bcq_discrete.md) the reference's
Polyak τ_Q = 0.005 after every update (`--set target_update_period=1 --set
target_tau=0.005`) returned about 50 from 10,000 to 20,000 updates, with Q-values near 100,
the hard copy above 100 for every seed over the same span. Atari (paper): `--set lr=6.25e-5
--set adam_eps=1.5e-4 --set batch_size=32 --set target_update_period=8000`.
Deviations: the target rule above. Q and G_ω have separate Adam optimizers; the reference
steps one Adam on L_Q + L_G, which is the same update because the towers share no parameter
and Adam acts per parameter. The acting ε is 0.001 (the paper's Atari evaluation ε; the
reference's non-Atari evaluation uses 0, which `deterministic=True` gives). Observations are
standardized with the dataset's mean/std (the reference feeds raw states); Flax's default
initializers.
"""

from __future__ import annotations

from dataclasses import dataclass

import flax.struct
import jax
import jax.numpy as jnp
from flax.training.train_state import TrainState

from offrl.algos.bc_discrete import logits_cross_entropy
from offrl.algos.dqn import q_network
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
)
from offrl.data.transforms import Transforms

__all__ = [
    "Config",
    "State",
    "act",
    "allowed_actions",
    "imitation_loss",
    "init",
    "masked_greedy",
    "q_loss",
    "update",
]

action_kind = "discrete"


@dataclass(frozen=True)
class Config:
    threshold: float = 0.3  # τ: a is allowed where G(a|s) / max_a G(a|s) > τ (paper, reference)
    logit_l2: float = 0.01  # λ: L2 penalty on the imitation logits (reference)
    discount: float = 0.99  # γ
    lr: float = 3e-4  # Adam learning rate of Q and G_ω (reference, non-Atari)
    adam_eps: float = 1e-8  # Adam's ε (PyTorch's default there; Atari: 1.5e-4)
    target_update_period: int = 1000  # updates between target moves (reference non-Atari: 1)
    target_tau: float = 1.0  # τ_Q of a move Q' <- τ_Q Q + (1-τ_Q) Q' (1: hard copy; ref: 0.005)
    huber_delta: float = 1.0  # κ of the Huber loss
    eval_epsilon: float = 0.001  # ε of act(deterministic=False)
    hidden: tuple[int, ...] = (256, 256)  # widths of the Q MLP and of the imitation MLP
    batch_size: int = 64
    normalize_obs: bool = True  # standardize observations with the dataset's mean/std
    reward_scaling: str = "none"


@flax.struct.dataclass
class State:
    q: TrainState  # Q(s, ·): obs (B, d) -> (B, n)
    target_q: dict  # parameters of Q'
    imitation: TrainState  # logits g_ω(s) of G_ω(·|s): obs (B, d) -> (B, n)
    tf: Transforms
    step: jnp.ndarray


def q_and_classifier(cfg, spec: Spec, key: jax.Array) -> tuple[TrainState, TrainState]:
    """A Q network and a behaviour classifier of the same shape (logits over the n actions),
    each with its own Adam: discrete BCQ's G_ω and SPIBB's π̂_b."""
    k_q, k_g = jax.random.split(key)
    return q_network(cfg, spec, k_q), q_network(cfg, spec, k_g)


def init(cfg: Config, spec: Spec, key: jax.Array) -> State:
    if not 0.0 <= cfg.threshold < 1.0:
        # τ >= 1 would forbid even the most likely action (its ratio is exactly 1)
        raise ValueError(f"threshold must be in [0, 1), got {cfg.threshold}")
    if cfg.logit_l2 < 0:
        raise ValueError(f"logit_l2 must be >= 0, got {cfg.logit_l2}")
    check_huber_delta(cfg.huber_delta)
    check_target_update(cfg.target_update_period, cfg.target_tau)
    q, imitation = q_and_classifier(cfg, spec, key)
    return State(
        q=q,
        target_q=q.params,
        imitation=imitation,
        tf=spec.transforms,
        step=jnp.zeros((), jnp.int32),
    )


def allowed_actions(logits: jnp.ndarray, threshold: float) -> jnp.ndarray:
    """G(a|s) / max_a G(a|s) > τ, (B, n) bool. The ratio of softmax probabilities is
    exp(g_a - max g): no normalization needed. The most likely action is always allowed."""
    return jnp.exp(logits - logits.max(axis=-1, keepdims=True)) > threshold


def masked_greedy(q: jnp.ndarray, allowed: jnp.ndarray) -> jnp.ndarray:
    """argmax over the allowed actions only, (B,) int32."""
    return greedy(jnp.where(allowed, q, -jnp.inf))


def q_loss(params, state: State, batch: Batch, cfg: Config) -> tuple[jnp.ndarray, Metrics]:
    next_logits = state.imitation.apply_fn(state.imitation.params, batch.next_obs)
    allowed = allowed_actions(next_logits, cfg.threshold)
    next_action = masked_greedy(state.q.apply_fn(state.q.params, batch.next_obs), allowed)
    next_value = action_values(state.q.apply_fn(state.target_q, batch.next_obs), next_action)
    target = td_target(batch, next_value, cfg.discount)
    q_data = action_values(state.q.apply_fn(params, batch.obs), batch.act)
    loss, metrics = huber_td_loss(q_data, target, cfg.huber_delta)
    # allowed_fraction: the share of (s', a) pairs passing the threshold
    return loss, metrics | {"allowed_fraction": allowed.mean()}


def imitation_loss(params, apply_fn, batch: Batch, logit_l2: float) -> tuple[jnp.ndarray, Metrics]:
    """Cross-entropy of the data's actions (discrete BC's loss) + λ mean(g_ω(s)²)."""
    logits = apply_fn(params, batch.obs)  # once: both terms' gradients flow through it
    bc_loss, metrics = logits_cross_entropy(logits, batch.act)
    penalty = jnp.mean(logits**2)
    loss = bc_loss + logit_l2 * penalty
    return loss, {"imitation_loss": bc_loss, "imitation_accuracy": metrics["accuracy"]}


def update(cfg: Config, state: State, batch: Batch, key: jax.Array) -> tuple[State, Metrics]:
    del key  # the update is deterministic given the batch
    q, m_q = gradient_step(state.q, q_loss, state, batch, cfg)  # mask from G_ω before its step
    imitation, m_g = gradient_step(
        state.imitation, imitation_loss, state.imitation.apply_fn, batch, cfg.logit_l2
    )
    step = state.step + 1
    target_q = update_target(
        q.params, state.target_q, step, cfg.target_update_period, cfg.target_tau
    )
    new_state = state.replace(q=q, target_q=target_q, imitation=imitation, step=step)
    return new_state, m_q | m_g


def act(cfg: Config, state: State, obs: jnp.ndarray, key: jax.Array, deterministic: bool = True):
    obs = state.tf.obs(obs)
    allowed = allowed_actions(state.imitation.apply_fn(state.imitation.params, obs), cfg.threshold)
    q = jnp.where(allowed, state.q.apply_fn(state.q.params, obs), -jnp.inf)
    return greedy(q) if deterministic else epsilon_greedy(key, q, cfg.eval_epsilon)
