"""REM (Random Ensemble Mixture): K Q-heads trained as one random convex combination per
minibatch, acting by their mean.

Paper: Agarwal, Schuurmans & Norouzi, "An Optimistic Perspective on Offline Reinforcement
Learning", ICML 2020 (Sec. 4.2, eq. 6); reference code google-research/batch_rl,
`multi_head/multi_head_dqn_agent.py` with `transform_strategy = 'STOCHASTIC'`,
`multi_head/atari_helpers.py` (`random_stochastic_matrix`, `combine_q_functions`) and
`fixed_replay/configs/rem.gin`.

The network is Ensemble-DQN's: K heads Q_k(s, a) on one shared torso. For every minibatch,
one α is drawn: α'_k ~ U(0, 1), α_k = α'_k / Σ_j α'_j (a point of the simplex; not a
uniform Dirichlet draw, exactly as the paper and the reference). With Q_α = Σ_k α_k Q_k and
the same α for the target network's heads Q'_k, for dataset transitions (s, a, r, s', d),
d = 1 only for true terminals:
    y = r + γ (1 - d) max_a' Σ_k α_k Q'_k(s', a')
    L = E_batch[ huber_κ(Σ_k α_k Q_k(s, a) - y) ],  κ = 1
y is a constant in the gradient. Q' is a copy of Q every `target_update_period` updates.

Update order per step (DQN's): draw α from the step's key; one Adam step on L;
step <- step + 1; if step % target_update_period == 0: Q' <- Q.
Acting: argmax_a (1/K) Σ_k Q_k(s, a) when deterministic (the reference's `q_values`, the
mean before the mixture), else ε-greedy on that mean with ε = `eval_epsilon`.

Defaults: K = 200 heads (the reference's rem.gin: num_heads = 200, num_convex_combinations
= 1, i.e. one α per minibatch shared by all its samples). Every other default is offrl's
DQN default for small vector tasks (Adam lr 3e-4, ε_Adam 1e-8, batch 64, a 256-256 MLP,
hard target copy every 1000 updates; see dqn.py). Atari settings of the reference: Adam lr
5e-5, ε_Adam 3.125e-4, batch 32, target copy every 2000 updates (batch_rl's 8000 agent
steps, one update every 4).
Deviations: no multi-network variant (K separate torsos, the paper's Sec. 5.3); observations
standardized with the dataset's mean/std; Flax's default initializers. State, `init` and
`act` are Ensemble-DQN's (offrl.algos.ensemble_dqn).
"""

from __future__ import annotations

from dataclasses import dataclass

import jax
import jax.numpy as jnp
import optax

from offrl.algos.dqn import q_learning_step
from offrl.algos.ensemble_dqn import State, act, init
from offrl.core import (
    Batch,
    Metrics,
    action_values,
    td_target,
    updates_in_agent_steps,
)

__all__ = [
    "Config",
    "State",
    "act",
    "init",
    "mixture_target",
    "q_loss",
    "random_convex_weights",
    "update",
]

action_kind = "discrete"


# The Atari reference's target period (batch_rl's gin: 8000 agent steps, one update per 4).
ATARI_TARGET_UPDATE_PERIOD = updates_in_agent_steps(8000, 4)


@dataclass(frozen=True)
class Config:
    num_heads: int = 200  # K (reference rem.gin)
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


def random_convex_weights(key: jax.Array, num_heads: int) -> jnp.ndarray:
    """α_k = α'_k / Σ_j α'_j with α'_k ~ U(0, 1): (K,) nonnegative, summing to 1."""
    raw = jax.random.uniform(key, (num_heads,))
    return raw / raw.sum()


def mixture_target(state: State, batch: Batch, cfg: Config, alpha: jnp.ndarray) -> jnp.ndarray:
    """y = r + γ (1 - d) max_a' Σ_k α_k Q'_k(s', a'): (B,)."""
    next_mixture = state.q.apply_fn(state.target_q, batch.next_obs) @ alpha  # (B, n)
    return td_target(batch, next_mixture.max(axis=1), cfg.discount)


def q_loss(
    params, state: State, batch: Batch, cfg: Config, alpha: jnp.ndarray
) -> tuple[jnp.ndarray, Metrics]:
    target = jax.lax.stop_gradient(mixture_target(state, batch, cfg, alpha))
    q_heads = action_values(state.q.apply_fn(params, batch.obs), batch.act)  # (B, K)
    loss = jnp.mean(optax.huber_loss(q_heads @ alpha, target, delta=cfg.huber_delta))
    # q_mean: the mean over heads, the value the policy acts on
    return loss, {"q_loss": loss, "q_mean": q_heads.mean(), "target_mean": target.mean()}


def update(cfg: Config, state: State, batch: Batch, key: jax.Array) -> tuple[State, Metrics]:
    alpha = random_convex_weights(key, cfg.num_heads)  # one mixture per minibatch
    return q_learning_step(cfg, state, batch, q_loss, alpha)
