"""DQN and Double DQN on a fixed dataset of discrete-action transitions.

Papers: Mnih et al., "Human-level control through deep reinforcement learning", Nature 2015
(DQN); van Hasselt, Guez & Silver, "Deep Reinforcement Learning with Double Q-learning", AAAI
2016 (Double DQN). Used offline as the baseline of Fujimoto, Conti, Ghavamzadeh & Pineau,
"Benchmarking Batch Deep Reinforcement Learning Algorithms", 2019 (reference code
sfujim/BCQ, discrete_BCQ/DQN.py) and of Agarwal, Schuurmans & Norouzi (REM), 2020.

Loss, for dataset transitions (s, a, r, s', d), d = 1 only for true terminals:
    DQN:         y = r + γ (1 - d) max_a' Q'(s', a')
    Double DQN:  y = r + γ (1 - d) Q'(s', argmax_a' Q(s', a'))   (online argmax, target value)
    L = E[ huber_κ(Q(s, a) - y) ],  huber_κ(x) = x²/2 if |x| <= κ else κ (|x| - κ/2),  κ = 1
Q' is the target network, a copy of Q made every `target_update_period` updates; y is a
constant in the gradient.

Update order per step: one Adam step on L; step <- step + 1; if step % target_update_period
== 0: Q' <- Q (the reference's order: it counts the iteration, then copies).
Acting: argmax_a Q(s, a) when deterministic, else ε-greedy with ε = `eval_epsilon` (0.001,
the benchmark paper's evaluation ε).

Defaults: for the small vector tasks (CartPole, Acrobot, LunarLander), not Atari. The
benchmark paper's reference code for non-Atari tasks: Adam lr 3e-4 (PyTorch's ε_Adam 1e-8),
batch 64, γ = 0.99, a 256-256 MLP (FC_Q). It moves its target by Polyak averaging
(τ = 0.005) there; offrl keeps DQN's hard copy and copies every 1000 updates, chosen by
measurement: on uniform-random CartPole data, copies every 100 updates (Dopamine's CartPole
setting, with its lr 1e-3) peak early and then degrade as Q overestimates; every 1000 with
lr 3e-4 learned more slowly but kept improving (docs/algos/dqn.md).
For Atari the benchmark paper uses Adam lr 6.25e-5, ε_Adam = 1.5e-4, batch 32, a target
copy every 8000 updates: `--set lr=6.25e-5 --set adam_eps=1.5e-4 --set batch_size=32
--set target_update_period=8000` (with a convolutional torso offrl does not have).
Deviations: observations are standardized with the dataset's mean/std (`normalize_obs`);
the reference code feeds raw states (Dopamine scales CartPole/Acrobot by fixed bounds).
Flax's default initializers.
"""

from __future__ import annotations

from dataclasses import dataclass

import flax.struct
import jax
import jax.numpy as jnp
from flax.training.train_state import TrainState

from offrl.core import (
    Batch,
    Metrics,
    Spec,
    action_values,
    adam,
    check_huber_delta,
    check_target_update,
    epsilon_greedy,
    gradient_step,
    greedy,
    huber_td_loss,
    make_model,
    td_target,
    update_target,
)
from offrl.data.transforms import Transforms
from offrl.nets.discrete import DiscreteQNet

__all__ = [
    "Config",
    "State",
    "act",
    "init",
    "next_state_value",
    "q_learning_state",
    "q_loss",
    "q_network",
    "update",
]

action_kind = "discrete"


@dataclass(frozen=True)
class Config:
    double: bool = False  # Double DQN target: the online net picks a', the target net values it
    discount: float = 0.99  # γ
    lr: float = 3e-4  # Adam learning rate (benchmark paper's code, non-Atari)
    adam_eps: float = 1e-8  # Adam's ε (PyTorch's default there; Atari: 1.5e-4)
    target_update_period: int = 1000  # updates between hard copies Q' <- Q
    huber_delta: float = 1.0  # κ of the Huber loss
    eval_epsilon: float = 0.001  # ε of act(deterministic=False)
    hidden: tuple[int, ...] = (256, 256)  # Q-network MLP widths
    batch_size: int = 64
    normalize_obs: bool = True  # standardize observations with the dataset's mean/std
    reward_scaling: str = "none"


@flax.struct.dataclass
class State:
    """Also the state of QR-DQN, Ensemble-DQN, REM and discrete CQL (their q adds the
    trailing quantile or head axis)."""

    q: TrainState  # Q(s, ·): obs (B, d) -> (B, n)
    target_q: dict  # parameters of Q', a periodic copy of q.params
    tf: Transforms
    step: jnp.ndarray


def init(cfg: Config, spec: Spec, key: jax.Array) -> State:
    check_huber_delta(cfg.huber_delta)
    check_target_update(cfg.target_update_period)
    return q_learning_state(cfg, spec, key)


def q_network(cfg, spec: Spec, key: jax.Array, **layout) -> TrainState:
    """`DiscreteQNet(cfg.hidden, n, **layout)` (layout: heads=K, quantiles=N) with Adam(cfg.lr,
    ε = cfg.adam_eps): the Q network of every discrete algorithm."""
    net = DiscreteQNet(cfg.hidden, spec.num_actions, **layout)
    return make_model(net, key, (jnp.zeros((1, spec.obs_dim)),), adam(cfg.lr, eps=cfg.adam_eps))


def q_learning_state(cfg, spec: Spec, key: jax.Array, **layout) -> State:
    """Q from `q_network`, Q' = Q, step 0: the start of DQN and of the algorithms sharing its
    State."""
    q = q_network(cfg, spec, key, **layout)
    return State(q=q, target_q=q.params, tf=spec.transforms, step=jnp.zeros((), jnp.int32))


def next_state_value(state: State, batch: Batch, cfg: Config) -> jnp.ndarray:
    """max_a' Q'(s', a') (DQN) or Q'(s', argmax_a' Q(s', a')) (Double DQN), (B,)."""
    next_q_target = state.q.apply_fn(state.target_q, batch.next_obs)
    chooser = state.q.apply_fn(state.q.params, batch.next_obs) if cfg.double else next_q_target
    return action_values(next_q_target, greedy(chooser))


def q_loss(params, state: State, batch: Batch, cfg: Config) -> tuple[jnp.ndarray, Metrics]:
    target = td_target(batch, next_state_value(state, batch, cfg), cfg.discount)
    q_data = action_values(state.q.apply_fn(params, batch.obs), batch.act)
    return huber_td_loss(q_data, target, cfg.huber_delta)


def q_learning_step(cfg, state: State, batch: Batch, loss_fn, *args) -> tuple[State, Metrics]:
    """One Adam step on loss_fn(params, state, batch, cfg, *args), the step count, and a hard
    target copy every `target_update_period` updates: the update of DQN and of the
    Q-learners on its State (QR-DQN, C51, REM, Ensemble-DQN)."""
    q, metrics = gradient_step(state.q, loss_fn, state, batch, cfg, *args)
    step = state.step + 1
    target_q = update_target(q.params, state.target_q, step, cfg.target_update_period)
    return state.replace(q=q, target_q=target_q, step=step), metrics


def update(cfg: Config, state: State, batch: Batch, key: jax.Array) -> tuple[State, Metrics]:
    del key  # the update is deterministic given the batch
    return q_learning_step(cfg, state, batch, q_loss)


def act(cfg: Config, state: State, obs: jnp.ndarray, key: jax.Array, deterministic: bool = True):
    q = state.q.apply_fn(state.q.params, state.tf.obs(obs))
    return greedy(q) if deterministic else epsilon_greedy(key, q, cfg.eval_epsilon)
