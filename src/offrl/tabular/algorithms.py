"""Tabular batch RL: batch Q-learning, batch-constrained Q-learning, KL-regularised and
support-constrained control.

Batch Q-learning and BCQ (Fujimoto, Meger & Precup, "Off-Policy Deep Reinforcement Learning
without Exploration", ICML 2019, Sec. 4.1). Both sweep the Q-learning update over the batch
until the sweep changes nothing:

    y_i = r_i + γ (1 − d_i) max_{a' ∈ A(s'_i)} Q(s'_i, a')
    Q(s, a) ← Q(s, a) + η ( mean_{i: (s_i, a_i) = (s, a)} y_i − Q(s, a) )   for (s, a) ∈ B

Q-learning maximises over every action, A(s') = A, so a pair the batch never holds keeps its
initial value and that value flows into the backups of its predecessors. BCQ maximises only
over the batch's actions, A(s') = {a : (s', a) ∈ B} (a state with none is a dead end worth
0), and converges to Q* of the MDP restricted to B with the estimated model P̂ — which is
exactly `value_iteration(empirical_mdp(batch).mdp, allowed=batch_support(batch))`.

Deviation from the paper: the paper's BCQL samples one transition at a time with
Robbins–Monro step sizes; its limit is the fixed point of the per-pair averaged update above,
which we iterate directly (η = 1 is value iteration on P̂), so convergence is exact and
deterministic. Pairs outside B are never updated in either algorithm.

KL-regularised control (distribution matching; the value penalty of BRAC, G-learning): the
MDP with reward r − α KL(π(·|s) ‖ β(·|s)) has the soft Bellman solution

    V(s) = α log Σ_a β(a|s) exp(Q(s, a) / α),   Q(s, a) = R(s, a) + γ E_{s'} V(s'),
    π(a|s) = β(a|s) exp((Q(s, a) − V(s)) / α).

Actions with β(a|s) = 0 get no mass (their KL is infinite); pairs whose model is unknown hold
a fixed `unknown_value` (what an untrained Q reads there). Support constraint (BEAR's
idea, Kumar et al. 2019): the greedy policy of Q* restricted to {a : β(a|s) > ε}.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.special import logsumexp

from offrl.errors import ConfigError
from offrl.tabular.mdp import (
    MDP,
    Transitions,
    Values,
    backup,
    batch_support,
    check_discount,
    check_pair_mask,
    check_policy,
    check_solver,
    greedy_policy,
    pair_counts,
    pair_sums,
    state_values,
    value_iteration,
)


@dataclass(frozen=True)
class SweepResult:
    q: np.ndarray  # (S, A): the converged Q; pairs outside the batch hold their initial value
    sweeps: int  # sweeps until the largest change fell below tol


def td_targets(
    q: np.ndarray, batch: Transitions, discount: float, next_allowed: np.ndarray | None
) -> np.ndarray:
    """y_i = r_i + γ (1 − d_i) max_{a' ∈ A(s'_i)} Q(s'_i, a'), one per transition."""
    next_values = state_values(q, next_allowed)[batch.next_states]
    return batch.rewards + discount * np.where(batch.terminals, 0.0, next_values)


def q_learning_sweep(
    q: np.ndarray,
    batch: Transitions,
    discount: float,
    next_allowed: np.ndarray | None = None,
    step_size: float = 1.0,
) -> np.ndarray:
    """One sweep: every batch pair moves η of the way to the mean of its transitions' targets
    (computed with the Q before the sweep); pairs outside the batch stay as they are."""
    shape = (batch.num_states, batch.num_actions)
    if q.shape != shape:
        raise ConfigError(f"q: must have the batch's shape {shape}, got {q.shape}")
    if not 0 < step_size <= 1:
        raise ConfigError(f"step_size: must be in (0, 1], got {step_size}")
    targets = td_targets(q, batch, discount, next_allowed)
    counts = pair_counts(batch)
    mean_target = np.where(counts > 0, pair_sums(batch, targets) / np.maximum(counts, 1), q)
    return q + step_size * (mean_target - q)


def check_initial_q(initial_q: np.ndarray | float, batch: Transitions) -> np.ndarray:
    """Q_0: a float for every pair, or an (S, A) table."""
    shape = (batch.num_states, batch.num_actions)
    q = np.asarray(initial_q, float)
    if q.ndim == 0:
        q = np.full(shape, float(q))
    elif q.shape != shape:
        raise ConfigError(f"initial_q: must be a float or have shape {shape}, got {q.shape}")
    if not np.all(np.isfinite(q)):
        raise ConfigError("initial_q: has non-finite entries")
    return q.copy()


def sweep_to_convergence(
    batch: Transitions,
    discount: float,
    initial_q: np.ndarray | float,
    next_allowed: np.ndarray | None,
    step_size: float,
    tol: float,
    max_sweeps: int,
) -> SweepResult:
    discount = check_discount("discount", discount)
    check_solver(tol, max_sweeps, "max_sweeps")
    q = check_initial_q(initial_q, batch)
    for sweep in range(1, max_sweeps + 1):
        new_q = q_learning_sweep(q, batch, discount, next_allowed, step_size)
        change = np.max(np.abs(new_q - q))
        q = new_q
        if change < tol:
            return SweepResult(q, sweep)
    raise ConfigError(f"max_sweeps: the sweeps did not reach tol={tol} in {max_sweeps} sweeps")


def batch_q_learning(
    batch: Transitions,
    discount: float,
    initial_q: np.ndarray | float = 0.0,
    step_size: float = 1.0,
    tol: float = 1e-12,
    max_sweeps: int = 100_000,
) -> SweepResult:
    """Unconstrained batch Q-learning: the max in the target runs over every action."""
    return sweep_to_convergence(batch, discount, initial_q, None, step_size, tol, max_sweeps)


def batch_bcq(
    batch: Transitions,
    discount: float,
    initial_q: np.ndarray | float = 0.0,
    step_size: float = 1.0,
    tol: float = 1e-12,
    max_sweeps: int = 100_000,
) -> SweepResult:
    """Tabular BCQ (BCQL): the max in the target runs over the batch's actions at s' only."""
    support = batch_support(batch)
    return sweep_to_convergence(batch, discount, initial_q, support, step_size, tol, max_sweeps)


def bcq_policy(q: np.ndarray, batch: Transitions) -> np.ndarray:
    """π(s) = argmax over the batch's actions at s (uniform where the batch has none)."""
    return greedy_policy(q, batch_support(batch))


@dataclass(frozen=True)
class SoftSolution:
    q: np.ndarray  # (S, A)
    v: np.ndarray  # (S,): the soft value α log Σ_a β exp(Q/α)
    policy: np.ndarray  # (S, A): β exp((Q − V)/α)
    iterations: int


def soft_value_iteration(
    mdp: MDP,
    prior: np.ndarray,
    alpha: float,
    known: np.ndarray | None = None,
    unknown_value: float = 0.0,
    tol: float = 1e-10,
    max_iterations: int = 100_000,
) -> SoftSolution:
    """The KL-regularised optimum with behaviour prior β = `prior` and strength α > 0.

    Pairs with `known` False are not backed up: their Q stays `unknown_value`."""
    prior = check_policy("prior", prior, mdp.rewards.shape)
    if not alpha > 0:
        raise ConfigError(f"alpha: must be > 0, got {alpha}")
    known = check_pair_mask("known", known, mdp.rewards.shape)
    if not np.isfinite(unknown_value):
        raise ConfigError(f"unknown_value: must be finite, got {unknown_value}")
    check_solver(tol, max_iterations)
    with np.errstate(divide="ignore"):  # log 0 = −inf: actions the prior never takes
        log_prior = np.log(prior)
    q = np.where(known, 0.0, unknown_value)
    for iteration in range(1, max_iterations + 1):
        v = np.where(mdp.terminal, 0.0, alpha * logsumexp(log_prior + q / alpha, axis=1))
        new_q = np.where(known, backup(mdp, v), unknown_value)
        change = np.max(np.abs(new_q - q))
        q = new_q
        if change < tol:
            v = alpha * logsumexp(log_prior + q / alpha, axis=1)
            policy = np.exp(log_prior + (q - v[:, None]) / alpha)
            policy /= policy.sum(axis=1, keepdims=True)  # rounding only
            return SoftSolution(q, np.where(mdp.terminal, 0.0, v), policy, iteration)
    raise ConfigError(
        f"max_iterations: soft value iteration did not reach tol={tol} in {max_iterations} backups"
    )


def support_constrained(mdp: MDP, prior: np.ndarray, epsilon: float) -> tuple[np.ndarray, Values]:
    """(π, its restricted Q*): greedy over {a : β(a|s) > ε}, the actions in β's support."""
    prior = check_policy("prior", prior, mdp.rewards.shape)
    if not 0 <= epsilon < 1:
        raise ConfigError(f"epsilon: must be in [0, 1), got {epsilon}")
    support = prior > epsilon
    values = value_iteration(mdp, allowed=support)
    return greedy_policy(values.q, support), values
