"""FQI: fitted Q iteration with a neural network, one fresh regression per iteration.

Papers: Ernst, Geurts & Wehenkel, "Tree-Based Batch Mode Reinforcement Learning", JMLR 2005
(fitted Q iteration, with regression trees); Riedmiller, "Neural Fitted Q Iteration",
ECML 2005 (the same iteration with a multi-layer perceptron). No reference code is followed:
both papers fit each iterate to convergence on the whole batch (trees; Rprop epochs), which
offrl replaces by a fixed number of Adam minibatch steps.

Iterates Q_0 ≡ 0 (Ernst et al.), Q_{k+1} = argmin_Q E_D[ℓ(Q(s, a) - y_k)] with, for dataset
transitions (s, a, r, s', d), d = 1 only for true terminals,
    y_k = r + γ (1 - d) max_a' Q_k(s', a')      (y_0 = r: Q_0 is zero, not the initial net)
    ℓ(x) = x² / 2 (`loss = "squared"`, the papers' regression) or huber_1(x) (`"huber"`)
Iteration k runs `iteration_steps` Adam steps on minibatches; then Q_{k+1} is frozen as the
target network and, with `reinit=True`, the network being fitted is re-initialized (fresh
weights from the step's key, fresh Adam moments): every iterate is a regression from
scratch onto the previous iterate's targets, as in the papers, not a continuation of it.
With `reinit=False` the fit continues from Q_{k+1}'s weights: DQN with hard target copies
every `iteration_steps` updates (apart from Q_0 ≡ 0 and acting on the frozen iterate).

Update order per step: one Adam step on the iteration's loss; step <- step + 1; if step %
iteration_steps == 0: target <- online (Q_{k+1} frozen), then (reinit) online <- fresh init.
The update is pure and scan-able: the boundary is a `lax.cond` on the step counter.
Acting: greedy on the last completed iterate, i.e. the target network (with `reinit=True`
the online network right after a boundary is untrained); before the first iteration ends
that is the network's untrained initialization. Not deterministic: ε-greedy, ε =
`eval_epsilon`.

Defaults: γ, Adam lr 3e-4, batch 64 and the 256-256 MLP as offrl's DQN for small vector
tasks (dqn.py); `iteration_steps` = 2000 chosen by measurement on uniform-random CartPole
data (docs/algos/fqi.md); squared loss as the papers.
Deviations: minibatch Adam for a fixed budget instead of fitting to convergence; acting on
the last completed iterate; observations standardized with the dataset's mean/std; Flax's
default initializers.
"""

from __future__ import annotations

from dataclasses import dataclass

import flax.struct
import jax
import jax.numpy as jnp
import optax
from flax.training.train_state import TrainState

from offrl.algos.dqn import q_network
from offrl.core import (
    Batch,
    Metrics,
    Spec,
    action_values,
    epsilon_greedy,
    gradient_step,
    greedy,
    td_target,
    update_target,
)
from offrl.data.transforms import Transforms
from offrl.nets.discrete import DiscreteQNet

__all__ = ["Config", "State", "act", "fresh_model", "init", "iterate_target", "q_loss", "update"]

action_kind = "discrete"
LOSSES = ("squared", "huber")


@dataclass(frozen=True)
class Config:
    iteration_steps: int = 2000  # Adam updates per iteration (per fitted iterate Q_k)
    reinit: bool = True  # re-initialize the fitted network at every iteration (False: DQN-like)
    loss: str = "squared"  # "squared": x²/2 (the papers' regression) | "huber": κ = 1
    discount: float = 0.99  # γ
    lr: float = 3e-4  # Adam learning rate (offrl's DQN default)
    adam_eps: float = 1e-8  # Adam's ε
    eval_epsilon: float = 0.001  # ε of act(deterministic=False)
    hidden: tuple[int, ...] = (256, 256)  # Q-network MLP widths
    batch_size: int = 64
    normalize_obs: bool = True  # standardize observations with the dataset's mean/std
    reward_scaling: str = "none"


@flax.struct.dataclass
class State:
    q: TrainState  # the network being fitted to the current iteration's targets
    target_q: dict  # parameters of the last completed iterate Q_k (initial net before Q_1)
    tf: Transforms
    step: jnp.ndarray
    num_actions: int = flax.struct.field(pytree_node=False)  # to rebuild the net at re-init


def init(cfg: Config, spec: Spec, key: jax.Array) -> State:
    if cfg.iteration_steps < 1:
        raise ValueError(f"iteration_steps must be >= 1, got {cfg.iteration_steps}")
    if cfg.loss not in LOSSES:
        raise ValueError(f"loss must be one of {LOSSES}, got {cfg.loss!r}")
    q = q_network(cfg, spec, key)
    return State(
        q=q,
        target_q=q.params,
        tf=spec.transforms,
        step=jnp.zeros((), jnp.int32),
        num_actions=spec.num_actions,
    )


def fresh_model(cfg: Config, state: State, obs_dim: int, key: jax.Array) -> TrainState:
    """The fitted network re-initialized: new weights from `key`, new Adam moments."""
    params = DiscreteQNet(cfg.hidden, state.num_actions).init(key, jnp.zeros((1, obs_dim)))
    q = state.q
    return q.replace(params=params, opt_state=q.tx.init(params), step=jnp.zeros_like(q.step))


def iterate_target(state: State, batch: Batch, cfg: Config) -> jnp.ndarray:
    """y_k = r + γ (1 - d) max_a' Q_k(s', a'), with Q_0 ≡ 0 during the first iteration."""
    first_iteration = state.step < cfg.iteration_steps
    next_max = state.q.apply_fn(state.target_q, batch.next_obs).max(axis=1)
    return td_target(batch, jnp.where(first_iteration, 0.0, next_max), cfg.discount)


def q_loss(params, state: State, batch: Batch, cfg: Config) -> tuple[jnp.ndarray, Metrics]:
    target = jax.lax.stop_gradient(iterate_target(state, batch, cfg))
    q_data = action_values(state.q.apply_fn(params, batch.obs), batch.act)
    if cfg.loss == "huber":
        loss = jnp.mean(optax.huber_loss(q_data, target, delta=1.0))
    else:
        loss = jnp.mean(0.5 * (q_data - target) ** 2)
    return loss, {"q_loss": loss, "q_mean": q_data.mean(), "target_mean": target.mean()}


def update(cfg: Config, state: State, batch: Batch, key: jax.Array) -> tuple[State, Metrics]:
    q, metrics = gradient_step(state.q, q_loss, state, batch, cfg)
    step = state.step + 1
    boundary = step % cfg.iteration_steps == 0
    target_q = update_target(q.params, state.target_q, step, cfg.iteration_steps)  # Q_{k+1}
    if cfg.reinit:  # `key` is the step's own key (the loop folds the step into it)
        obs_dim = batch.obs.shape[-1]
        fresh = lambda: fresh_model(cfg, state, obs_dim, key)  # noqa: E731
        q = jax.lax.cond(boundary, fresh, lambda: q)
    return state.replace(q=q, target_q=target_q, step=step), metrics


def act(cfg: Config, state: State, obs: jnp.ndarray, key: jax.Array, deterministic: bool = True):
    q = state.q.apply_fn(state.target_q, state.tf.obs(obs))  # the last completed iterate
    return greedy(q) if deterministic else epsilon_greedy(key, q, cfg.eval_epsilon)
