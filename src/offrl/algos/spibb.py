"""SPIBB: Q-learning that copies the behaviour policy where the data says too little.

Paper: Laroche, Trichelair & Tachet des Combes, "Safe Policy Improvement with Baseline
Bootstrapping", ICML 2019 (Π_b-SPIBB and its deep version SPIBB-DQN); with an
estimated behaviour policy: Simão, Laroche & Tachet des Combes, "Safe Policy Improvement
with an Estimated Baseline Policy", AAMAS 2020. Reference code: rems75/SPIBB-DQN (`ai.py`,
learning types `pi_b` and `pi_b_hat_behavior_cloning`).

π̂_b(a|s) = softmax(g_ω(s))_a estimates the behaviour policy (discrete BCQ's imitation model:
cross-entropy + λ mean g_ω², bcq_discrete.imitation_loss). The pairs the data covers too
thinly are bootstrapped:
    Ñ(s, a) = N̂ π̂_b(a|s)                 (pseudo-count: N̂ = `pseudo_count` visits per state)
    B(s) = { a : Ñ(s, a) < N∧ }            (N∧ = `n_wedge`; i.e. π̂_b(a|s) < N∧ / N̂)
The SPIBB policy keeps π̂_b on B(s) and gives the rest of the mass to the best action
outside B(s):
    π_spibb(a|s) = π̂_b(a|s)                          a ∈ B(s)
                 + 1{a = a*} Σ_{a' ∉ B(s)} π̂_b(a'|s)    a* = argmax_{a ∉ B(s)} Q(s, a)
(all mass to π̂_b when B(s) holds every action). For dataset transitions (s, a, r, s', d),
d = 1 only for true terminals, with a* chosen by the online Q (`double`) or by Q':
    y = r + γ (1 - d) Σ_a' π_spibb(a'|s') Q'(s', a')
    L_Q = E[ huber_κ(Q(s, a) - y) ],  κ = 1      (y constant in the gradient)
    L_G = E[ -log π̂_b(a|s) ] + λ E[ mean_a g_ω(s)_a² ]
Update order per step: one Adam step on L_Q (π̂_b as it is) and one on L_G; step <- step + 1;
then every `target_update_period` updates Q' <- τ_Q Q + (1 - τ_Q) Q' (a hard copy by default).
Acting: the mode of π_spibb(·|s) when deterministic, which is a* whenever some action lies
outside B(s) (each a ∉ B(s) has π̂_b >= N∧/N̂ > every bootstrapped action's), else a sample
of π_spibb(·|s).

The count. Tabular SPIBB counts N_D(s, a) in the dataset. SPIBB-DQN uses a kernel
pseudo-count Ñ(s, a) = Σ_{j: a_j = a} max(0, 1 - ‖s - s_j‖ / d0) over the dataset's states,
computed for every state it meets, evaluation states included. offrl's estimate is the
behaviour probability times a constant pseudo-count N̂ per state, so the test reads
π̂_b(a|s) < N∧/N̂ and every piece is a network: `act` needs no dataset and the update no
O(N²) precomputation. Its cost: it does not see how many times the data visited the
neighbourhood of s, only which actions the behaviour preferred there.

Defaults: N∧ = 10 (the reference's CartPole setting `minimum_count: 10`), N̂ = 100 (a choice:
actions below 10% behaviour probability are bootstrapped), `double` = True (the reference's
configs set `ddqn: True`), λ = 0.01 (discrete BCQ's reference). Every other default is
offrl's DQN default for small vector tasks (Adam lr 3e-4, batch 64, γ 0.99, 256-256 MLPs, a
hard target copy every 1000 updates; see dqn.py); the reference trains with RMSprop lr
2.5e-4, batch 32, γ 0.9 on CartPole. Raise N∧ where the actions to distrust have behaviour
probability above N∧/N̂ (docs/algos/spibb.md: N∧ = 20 on CartPole with 30% random actions).
Deviations: π̂_b is learned alongside Q (the reference clones it before training Q), the
count estimate above, and Huber averaged over the batch (the reference sums it). n_wedge = 0
bootstraps nothing: the target is then Double DQN's (DQN's with `double=False`).
Observations are standardized with the dataset's mean/std; Flax's default initializers.
"""

from __future__ import annotations

from dataclasses import dataclass

import flax.struct
import jax
import jax.numpy as jnp
from flax.training.train_state import TrainState

from offrl.algos.bcq_discrete import imitation_loss, masked_greedy, q_and_classifier
from offrl.core import (
    Batch,
    Metrics,
    Spec,
    action_values,
    check_huber_delta,
    check_target_update,
    gradient_step,
    huber_td_loss,
    td_target,
    update_target,
)
from offrl.data.transforms import Transforms

__all__ = [
    "Config",
    "State",
    "act",
    "bootstrapped",
    "init",
    "policy_probs",
    "q_loss",
    "spibb_policy",
    "update",
]

action_kind = "discrete"


@dataclass(frozen=True)
class Config:
    n_wedge: float = 10.0  # N∧: (s, a) with pseudo-count below it copy π̂_b (reference: 10)
    pseudo_count: float = 100.0  # N̂: visits credited to a state, Ñ(s, a) = N̂ π̂_b(a|s)
    double: bool = True  # the online Q picks a* among the non-bootstrapped (reference: ddqn)
    logit_l2: float = 0.01  # λ: L2 penalty on the behaviour-model logits (discrete BCQ's)
    discount: float = 0.99  # γ
    lr: float = 3e-4  # Adam learning rate of Q and of π̂_b (offrl's DQN default)
    adam_eps: float = 1e-8  # Adam's ε
    target_update_period: int = 1000  # updates between target moves (as offrl's dqn)
    target_tau: float = 1.0  # τ_Q of each move Q' <- τ_Q Q + (1-τ_Q) Q' (1: a hard copy)
    huber_delta: float = 1.0  # κ of the Huber loss
    hidden: tuple[int, ...] = (256, 256)  # widths of the Q MLP and of the behaviour MLP
    batch_size: int = 64
    normalize_obs: bool = True  # standardize observations with the dataset's mean/std
    reward_scaling: str = "none"


@flax.struct.dataclass
class State:
    q: TrainState  # Q(s, ·): obs (B, d) -> (B, n)
    target_q: dict  # parameters of Q'
    behaviour: TrainState  # logits g_ω(s) of π̂_b(·|s): obs (B, d) -> (B, n)
    tf: Transforms
    step: jnp.ndarray


def init(cfg: Config, spec: Spec, key: jax.Array) -> State:
    if cfg.n_wedge < 0:
        raise ValueError(f"n_wedge must be >= 0, got {cfg.n_wedge}")
    if cfg.pseudo_count <= 0:
        raise ValueError(f"pseudo_count must be > 0, got {cfg.pseudo_count}")
    if cfg.logit_l2 < 0:
        raise ValueError(f"logit_l2 must be >= 0, got {cfg.logit_l2}")
    check_huber_delta(cfg.huber_delta)
    check_target_update(cfg.target_update_period, cfg.target_tau)
    q, behaviour = q_and_classifier(cfg, spec, key)
    return State(
        q=q,
        target_q=q.params,
        behaviour=behaviour,
        tf=spec.transforms,
        step=jnp.zeros((), jnp.int32),
    )


def bootstrapped(behaviour_probs: jnp.ndarray, cfg: Config) -> jnp.ndarray:
    """(s, a) ∈ B: the pseudo-count N̂ π̂_b(a|s) is below N∧, (B, n) bool."""
    return cfg.pseudo_count * behaviour_probs < cfg.n_wedge


def spibb_policy(q: jnp.ndarray, behaviour_probs: jnp.ndarray, boot: jnp.ndarray) -> jnp.ndarray:
    """π_spibb (B, n): π̂_b on the bootstrapped actions, the remaining mass on the action of
    highest q among the others (none when all are bootstrapped)."""
    kept = jnp.where(boot, behaviour_probs, 0.0)
    free_mass = 1.0 - kept.sum(axis=-1)  # Σ of π̂_b over the non-bootstrapped actions
    best = masked_greedy(q, ~boot)
    free_mass = jnp.where(boot.all(axis=-1), 0.0, free_mass)  # float round-off when all in B
    return kept + free_mass[:, None] * jax.nn.one_hot(best, q.shape[-1])


def policy_probs(
    state: State, obs: jnp.ndarray, cfg: Config, q_params=None
) -> tuple[jnp.ndarray, jnp.ndarray]:
    """π_spibb(·|obs) from the behaviour model and the Q of `q_params` (online by default);
    obs already normalized. Returns (probs (B, n), bootstrapped (B, n))."""
    logits = state.behaviour.apply_fn(state.behaviour.params, obs)
    probs = jax.nn.softmax(logits)
    boot = bootstrapped(probs, cfg)
    q = state.q.apply_fn(state.q.params if q_params is None else q_params, obs)
    return spibb_policy(q, probs, boot), boot


def q_loss(params, state: State, batch: Batch, cfg: Config) -> tuple[jnp.ndarray, Metrics]:
    chooser = None if cfg.double else state.target_q  # whose Q picks a* at s'
    next_policy, boot = policy_probs(state, batch.next_obs, cfg, chooser)
    next_q_target = state.q.apply_fn(state.target_q, batch.next_obs)
    next_value = jnp.sum(next_policy * next_q_target, axis=-1)
    target = td_target(batch, next_value, cfg.discount)
    q_data = action_values(state.q.apply_fn(params, batch.obs), batch.act)
    loss, metrics = huber_td_loss(q_data, target, cfg.huber_delta)
    # bootstrapped_fraction: the share of (s', a) pairs in B
    return loss, metrics | {"bootstrapped_fraction": boot.mean()}


def update(cfg: Config, state: State, batch: Batch, key: jax.Array) -> tuple[State, Metrics]:
    del key  # the update is deterministic given the batch
    q, m_q = gradient_step(state.q, q_loss, state, batch, cfg)  # π̂_b before its own step
    behaviour, m_b = gradient_step(
        state.behaviour, imitation_loss, state.behaviour.apply_fn, batch, cfg.logit_l2
    )
    step = state.step + 1
    target_q = update_target(
        q.params, state.target_q, step, cfg.target_update_period, cfg.target_tau
    )
    new_state = state.replace(q=q, target_q=target_q, behaviour=behaviour, step=step)
    return new_state, m_q | m_b


def act(cfg: Config, state: State, obs: jnp.ndarray, key: jax.Array, deterministic: bool = True):
    probs, _ = policy_probs(state, state.tf.obs(obs), cfg)
    if deterministic:
        return jnp.argmax(probs, axis=-1).astype(jnp.int32)
    return jax.random.categorical(key, jnp.log(probs)).astype(jnp.int32)
