"""FQE: fitted Q evaluation.

Papers: Le, Voloshin & Yue, "Batch Policy Learning under Constraints", ICML 2019 (FQE);
Fu et al., "Benchmarks for Deep Off-Policy Evaluation", ICLR 2021 (its deep form, with a
target network, as benchmarked there).

Fit Q^π of a fixed policy π by TD on the dataset, K critics each regressing onto one target:
    a'  = π(s')                       (deterministic action; discrete: its greedy index)
    y   = r + γ (1 - d) agg_k Q'_k(s', a'),      agg = mean (default) or min over critics
    L_Q = Σ_k E[(Q_k(s, a) - y)²]
then Q' <- τ Q + (1 - τ) Q'. d is 1 at terminals only: the target bootstraps through
timeouts. The estimate is the mean over episode starts s_0 of agg_k Q_k(s_0, π(s_0)), the
discounted return Σ_t γ^t r_t of π from the dataset's initial states, in reward units.

Cost: π(s') is computed once for the whole dataset before fitting (π is fixed), so one
update is one critic forward at (s', a'), one forward/backward at (s, a) and the Polyak
average: a TD3 critic step without its target actor.
Deviations from Fu et al.: Adam 3e-4 and Polyak τ = 0.005 (TD3's settings) rather than a
periodic hard copy; `fqe_critics` independent critics (default 2, combined by their mean;
their min is TD3's pessimism, which biases an evaluation low).
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
    action_values,
    adam,
    gradient_step,
    make_model,
    polyak,
    td_target,
)
from offrl.nets import DiscreteQEnsemble, QEnsemble
from offrl.ope.fit import run_updates


@dataclass(frozen=True)
class FQEConfig:
    discount: float  # γ of the value estimated
    num_actions: int = 0  # discrete n; 0: continuous
    hidden: tuple[int, ...] = (256, 256)
    num_critics: int = 2
    target: str = "mean"  # agg over critics: mean | min
    lr: float = 3e-4
    tau: float = 0.005
    batch_size: int = 256

    @property
    def discrete(self) -> bool:
        return self.num_actions > 0


@flax.struct.dataclass
class FQEState:
    q: TrainState  # K critics
    target_q: dict  # Polyak average of q.params
    step: jnp.ndarray


def init(cfg: FQEConfig, obs_dim: int, act_dim: int, key: jax.Array) -> FQEState:
    obs = jnp.zeros((1, obs_dim))
    if cfg.discrete:
        net, inputs = DiscreteQEnsemble(cfg.hidden, cfg.num_actions, cfg.num_critics), (obs,)
    else:
        net, inputs = QEnsemble(cfg.hidden, num=cfg.num_critics), (obs, jnp.zeros((1, act_dim)))
    q = make_model(net, key, inputs, adam(cfg.lr))
    return FQEState(q=q, target_q=q.params, step=jnp.zeros((), jnp.int32))


def critic_values(state: FQEState, params, obs, act, cfg: FQEConfig) -> jnp.ndarray:
    """Q_k(s, a) of every critic, (K, B): act unit actions (B, d) or indices (B,)."""
    if cfg.discrete:
        q = state.q.apply_fn(params, obs)  # (K, B, n)
        return jax.vmap(action_values, in_axes=(0, None))(q, act)
    return state.q.apply_fn(params, obs, act)


def aggregate(q: jnp.ndarray, how: str) -> jnp.ndarray:
    """(K, B) -> (B,): the critics' mean or min."""
    return q.min(axis=0) if how == "min" else q.mean(axis=0)


def q_loss(params, state: FQEState, batch: Batch, cfg: FQEConfig) -> tuple[jnp.ndarray, Metrics]:
    next_q = critic_values(state, state.target_q, batch.next_obs, batch.extra["next_pi"], cfg)
    target = td_target(batch, aggregate(next_q, cfg.target), cfg.discount)
    q = critic_values(state, params, batch.obs, batch.act, cfg)  # (K, B)
    loss = jnp.sum(jnp.mean((q - target) ** 2, axis=1))
    return loss, {"fqe_loss": loss, "q_mean": q.mean()}


def update(cfg: FQEConfig, state: FQEState, batch: Batch, key: jax.Array):
    del key  # deterministic given the batch
    q, metrics = gradient_step(state.q, q_loss, state, batch, cfg)
    target_q = polyak(state.target_q, q.params, cfg.tau)
    return state.replace(q=q, target_q=target_q, step=state.step + 1), metrics


def fit(
    cfg: FQEConfig, data: Batch, key: jax.Array, steps: int, chunk_size: int
) -> tuple[FQEState, dict[str, float]]:
    """FQE's critics after `steps` updates on minibatches of `data`, whose extra["next_pi"]
    holds π(s') per transition; and the last chunk's mean loss and Q."""
    k_init, k_fit = jax.random.split(key)
    obs_dim = data.obs.shape[-1]
    act_dim = 1 if cfg.discrete else data.act.shape[-1]
    state = init(cfg, obs_dim, act_dim, k_init)
    return run_updates(update, cfg, state, data, k_fit, steps, chunk_size)


def values(state: FQEState, cfg: FQEConfig, obs: jnp.ndarray, act: jnp.ndarray) -> jnp.ndarray:
    """agg_k Q_k(s, a), (B,), with the online critics."""
    return aggregate(critic_values(state, state.q.params, obs, act, cfg), cfg.target)


def expected_values(state: FQEState, cfg: FQEConfig, obs: jnp.ndarray, greedy, epsilon: float):
    """E_{a~π_ε} Q̂(s, a) = (1 - ε) Q̂(s, greedy) + ε mean_a Q̂(s, a) (discrete only), (B,)."""
    q = aggregate_all(state, cfg, obs)  # (B, n)
    return (1.0 - epsilon) * action_values(q, greedy) + epsilon * q.mean(axis=-1)


def aggregate_all(state: FQEState, cfg: FQEConfig, obs: jnp.ndarray) -> jnp.ndarray:
    """agg_k Q_k(s, ·) over every action (discrete), (B, n)."""
    q = state.q.apply_fn(state.q.params, obs)  # (K, B, n)
    return q.min(axis=0) if cfg.target == "min" else q.mean(axis=0)
