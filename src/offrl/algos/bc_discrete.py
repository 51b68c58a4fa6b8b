"""Behaviour cloning for discrete actions: a softmax policy fitted by cross-entropy.

Paper: Pomerleau 1991 (ALVINN); the discrete "BC" baseline of Fujimoto, Conti, Ghavamzadeh
& Pineau, "Benchmarking Batch Deep Reinforcement Learning Algorithms", 2019, and the
imitation model G_ω of discrete BCQ (Fujimoto et al. 2019) are this network and loss.

Policy: π_θ(a|s) = softmax(f_θ(s))_a, f_θ an MLP with one logit per action.
Loss, for dataset pairs (s, a):
    L(θ) = -E[ log π_θ(a|s) ]          (cross-entropy with the data action as the label)

Update order: one Adam step on L per update.
Acting: argmax_a π_θ(a|s) when deterministic, else a ~ π_θ(·|s).

Defaults: 256-256 MLP (the benchmark paper's reference code uses 256-256 for non-Atari
tasks), Adam lr 1e-3 and batch 256 as offrl's continuous BC, observations standardized with
the dataset's mean/std (as the continuous BC).
Deviations: none beyond the choice of defaults above.
"""

from __future__ import annotations

from dataclasses import dataclass

import flax.struct
import jax
import jax.numpy as jnp
import optax
from flax.training.train_state import TrainState

from offrl.core import Batch, Metrics, Spec, adam, gradient_step, greedy, make_model
from offrl.data.transforms import Transforms
from offrl.nets.discrete import DiscreteQNet

__all__ = ["Config", "State", "act", "cross_entropy_loss", "init", "logits_cross_entropy", "update"]

action_kind = "discrete"


@dataclass(frozen=True)
class Config:
    hidden: tuple[int, ...] = (256, 256)  # policy MLP widths
    lr: float = 1e-3  # Adam learning rate
    batch_size: int = 256
    normalize_obs: bool = True  # standardize observations with dataset statistics
    reward_scaling: str = "none"  # rewards are unused by BC


@flax.struct.dataclass
class State:
    policy: TrainState  # logits f_θ(s), one per action
    tf: Transforms
    step: jnp.ndarray


def init(cfg: Config, spec: Spec, key: jax.Array) -> State:
    # One output per action: the same network shape as a Q-network, read as logits.
    net = DiscreteQNet(cfg.hidden, spec.num_actions)
    policy = make_model(net, key, (jnp.zeros((1, spec.obs_dim)),), adam(cfg.lr))
    return State(policy=policy, tf=spec.transforms, step=jnp.zeros((), jnp.int32))


def cross_entropy_loss(params, apply_fn, batch: Batch) -> tuple[jnp.ndarray, Metrics]:
    return logits_cross_entropy(apply_fn(params, batch.obs), batch.act)


def logits_cross_entropy(logits: jnp.ndarray, act: jnp.ndarray) -> tuple[jnp.ndarray, Metrics]:
    """Mean cross-entropy of the actions `act` (B,) under `logits` (B, n), and the accuracy."""
    loss = jnp.mean(optax.softmax_cross_entropy_with_integer_labels(logits, act))
    accuracy = jnp.mean(greedy(logits) == act)
    return loss, {"bc_loss": loss, "accuracy": accuracy}


def update(cfg: Config, state: State, batch: Batch, key: jax.Array) -> tuple[State, Metrics]:
    del key  # BC is deterministic given the batch
    policy, metrics = gradient_step(state.policy, cross_entropy_loss, state.policy.apply_fn, batch)
    return state.replace(policy=policy, step=state.step + 1), metrics


def act(cfg: Config, state: State, obs: jnp.ndarray, key: jax.Array, deterministic: bool = True):
    logits = state.policy.apply_fn(state.policy.params, state.tf.obs(obs))
    if deterministic:
        return greedy(logits)
    return jax.random.categorical(key, logits).astype(jnp.int32)
