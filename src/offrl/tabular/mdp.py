"""Finite MDPs in numpy: the model, exact solvers, batches of transitions and the model a batch
estimates.

An MDP is P[s, a, s'] (rows sum to 1), R[s, a], a discount γ in [0, 1) and a set of terminal
states. A terminal state ends the episode: its value is 0 and nothing is bootstrapped through
it (its own row of P and R is ignored), so

    Q(s, a) = R(s, a) + γ Σ_s' P(s'|s, a) (1 − term(s')) V(s'),     Q(terminal, ·) = 0.

Value iteration may be told which pairs it may use (`allowed`): V(s) = max over the allowed
actions at s; a non-terminal state with no allowed action is a dead end of value 0 (the batch
says nothing about what follows it). That is the "MDP restricted to the batch's state-action
pairs" of Fujimoto et al. (2019), whose optimum is what tabular BCQ converges to.

Errors in the inputs raise `ConfigError` (an MDP, a policy, a solver setting) or `DataError`
(a batch of transitions), each one line naming the field and the problem.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

from offrl.errors import ConfigError, DataError

PROBABILITY_TOL = 1e-6  # how far a row of probabilities may sum from 1


def check_probabilities(name: str, rows: np.ndarray) -> None:
    """Every entry finite and >= 0, every row (last axis) summing to 1."""
    if not np.all(np.isfinite(rows)):
        raise ConfigError(f"{name}: has non-finite entries")
    if np.any(rows < 0):
        where = tuple(int(i) for i in np.argwhere(rows < 0)[0])
        raise ConfigError(f"{name}: negative probability at {list(where)}")
    sums = rows.sum(axis=-1)
    bad = np.abs(sums - 1) > PROBABILITY_TOL
    if np.any(bad):
        where = tuple(int(i) for i in np.argwhere(bad)[0])
        raise ConfigError(f"{name}: row {list(where)} sums to {sums[where]:.6g}, not 1")


def check_discount(name: str, discount: float) -> float:
    if not 0 <= discount < 1:
        raise ConfigError(f"{name}: must be in [0, 1), got {discount}")
    return float(discount)


@dataclass(frozen=True)
class MDP:
    transitions: np.ndarray  # P[s, a, s'], float (S, A, S); each P[s, a] sums to 1
    rewards: np.ndarray  # R[s, a], float (S, A): expected reward of taking a in s
    discount: float  # γ in [0, 1)
    terminal: np.ndarray | None = None  # bool (S,); None: no terminal state

    def __post_init__(self) -> None:
        p = np.asarray(self.transitions, float)
        if p.ndim != 3 or p.shape[0] != p.shape[2] or 0 in p.shape:
            raise ConfigError(f"MDP.transitions: must have shape (S, A, S), got {p.shape}")
        check_probabilities("MDP.transitions", p)
        r = np.asarray(self.rewards, float)
        if r.shape != p.shape[:2]:
            raise ConfigError(f"MDP.rewards: must have shape {p.shape[:2]}, got {r.shape}")
        if not np.all(np.isfinite(r)):
            raise ConfigError("MDP.rewards: has non-finite entries")
        term = np.zeros(p.shape[0], bool) if self.terminal is None else np.asarray(self.terminal)
        if term.shape != (p.shape[0],) or term.dtype != bool:
            raise ConfigError(
                f"MDP.terminal: must be a bool array of shape ({p.shape[0]},), "
                f"got {term.dtype} {term.shape}"
            )
        object.__setattr__(self, "transitions", p)
        object.__setattr__(self, "rewards", r)
        object.__setattr__(self, "terminal", term)
        object.__setattr__(self, "discount", check_discount("MDP.discount", self.discount))

    @property
    def num_states(self) -> int:
        return self.transitions.shape[0]

    @property
    def num_actions(self) -> int:
        return self.transitions.shape[1]


class Values(NamedTuple):
    q: np.ndarray  # (S, A); NaN where the solver was told not to use the pair
    v: np.ndarray  # (S,)
    iterations: int  # backups until convergence (0 for a direct linear solve)


def check_pair_mask(name: str, mask: np.ndarray | None, shape: tuple[int, int]) -> np.ndarray:
    """A bool (S, A) mask; None means every pair."""
    if mask is None:
        return np.ones(shape, bool)
    mask = np.asarray(mask)
    if mask.shape != shape or mask.dtype != bool:
        raise ConfigError(
            f"{name}: must be a bool array of shape {shape}, got {mask.dtype} {mask.shape}"
        )
    return mask


def check_policy(name: str, policy: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """π[s, a]: one probability row per state."""
    policy = np.asarray(policy, float)
    if policy.shape != shape:
        raise ConfigError(f"{name}: must have shape {shape}, got {policy.shape}")
    check_probabilities(name, policy)
    return policy


def state_values(q: np.ndarray, allowed: np.ndarray | None = None) -> np.ndarray:
    """V(s) = max of Q(s, a) over the allowed actions; 0 where none is allowed (a dead end)."""
    if allowed is None:
        return q.max(axis=1)
    best = np.where(allowed, q, -np.inf).max(axis=1)
    return np.where(allowed.any(axis=1), best, 0.0)


def backup(mdp: MDP, v: np.ndarray) -> np.ndarray:
    """R + γ P V with terminal states worth 0; Q(terminal, ·) = 0."""
    v = np.where(mdp.terminal, 0.0, v)
    q = mdp.rewards + mdp.discount * mdp.transitions @ v
    return np.where(mdp.terminal[:, None], 0.0, q)


def check_solver(tol: float, max_iterations: int, name: str = "max_iterations") -> None:
    if not tol > 0:
        raise ConfigError(f"tol: must be > 0, got {tol}")
    if max_iterations < 1:
        raise ConfigError(f"{name}: must be >= 1, got {max_iterations}")


def value_iteration(
    mdp: MDP, allowed: np.ndarray | None = None, tol: float = 1e-12, max_iterations: int = 100_000
) -> Values:
    """Q* of the MDP whose policies may only take `allowed` pairs, to sup-norm change < tol.

    Q of a pair that is not allowed is NaN: the restricted MDP has no such pair."""
    allowed = check_pair_mask("allowed", allowed, mdp.rewards.shape)
    check_solver(tol, max_iterations)
    v = np.zeros(mdp.num_states)
    for iteration in range(1, max_iterations + 1):
        q = backup(mdp, v)
        new_v = np.where(mdp.terminal, 0.0, state_values(q, allowed))
        change = np.max(np.abs(new_v - v))
        v = new_v
        if change < tol:
            return Values(np.where(allowed, backup(mdp, v), np.nan), v, iteration)
    raise ConfigError(
        f"max_iterations: value iteration did not reach tol={tol} in {max_iterations} backups"
    )


def policy_chain(mdp: MDP, policy: np.ndarray) -> np.ndarray:
    """The Markov chain P_π[s, s'] = Σ_a π(a|s) P(s'|s, a); terminal states absorb."""
    policy = check_policy("policy", policy, mdp.rewards.shape)
    chain = np.einsum("sa,sat->st", policy, mdp.transitions)
    chain[mdp.terminal] = 0.0
    chain[mdp.terminal, mdp.terminal] = 1.0
    return chain


def evaluate_policy(mdp: MDP, policy: np.ndarray) -> Values:
    """Q^π and V^π exactly: V = (I − γ P_π M)⁻¹ r_π, M zeroing terminal next states."""
    chain = policy_chain(mdp, policy)
    live = ~mdp.terminal
    reward = np.where(live, (policy * mdp.rewards).sum(axis=1), 0.0)
    system = np.eye(mdp.num_states) - mdp.discount * chain * live[None, :]
    v = np.where(live, np.linalg.solve(system, reward), 0.0)
    return Values(backup(mdp, v), v, 0)


def greedy_policy(
    q: np.ndarray, allowed: np.ndarray | None = None, atol: float = 1e-9
) -> np.ndarray:
    """π(a|s) uniform over the allowed actions within `atol` of the best one (ties split);
    uniform over every action at a state with none allowed (nothing to choose by)."""
    allowed = check_pair_mask("allowed", allowed, q.shape)
    masked = np.where(allowed, q, -np.inf)
    best = masked.max(axis=1, keepdims=True)
    chosen = allowed & (masked >= best - atol)
    chosen[~allowed.any(axis=1)] = True
    return chosen / chosen.sum(axis=1, keepdims=True)


def reach_probability(
    chain: np.ndarray, goal: np.ndarray, horizon: int | None = None
) -> np.ndarray:
    """Per start state, the probability that the chain visits a goal state within `horizon`
    steps (None: ever). Exact dynamic programming: h_0 = 1[goal],
    h_t = 1[goal] + 1[not goal] P h_{t−1}; for `horizon=None`, `hitting_probability`."""
    chain = np.asarray(chain, float)
    n = chain.shape[0]
    if chain.shape != (n, n) or n == 0:
        raise ConfigError(f"chain: must have shape (S, S), got {chain.shape}")
    check_probabilities("chain", chain)
    goal = np.asarray(goal)
    if goal.shape != (n,) or goal.dtype != bool:
        raise ConfigError(
            f"goal: must be a bool array of shape ({n},), got {goal.dtype} {goal.shape}"
        )
    if horizon is not None:
        if horizon < 0:
            raise ConfigError(f"horizon: must be >= 0 or None, got {horizon}")
        h = goal.astype(float)
        for _ in range(horizon):
            h = np.where(goal, 1.0, chain @ h)
        return h
    return hitting_probability(chain, goal)


def hitting_probability(chain: np.ndarray, goal: np.ndarray) -> np.ndarray:
    """P(ever visit a goal state), by state elimination without subtractions (Grassmann,
    Taksar & Heyman 1985): each state's exit mass is a sum of positive terms, never 1 − P(s, s),
    so near-closed cycles (escape probabilities of 1e-40) stay accurate where a plain linear
    solve of (I − P) h = b returns garbage."""
    live = states_reaching(chain > 0, goal) & ~goal  # the unknowns; the others are 0 or 1
    n = int(live.sum())
    h = goal.astype(float)
    if n == 0:
        return h
    # Columns: the live states, then "reached a goal", then "can no longer reach one".
    flow = np.zeros((n, n + 2))
    flow[:, :n] = chain[np.ix_(live, live)]
    flow[:, n] = chain[np.ix_(live, goal)].sum(axis=1)
    flow[:, n + 1] = chain[np.ix_(live, ~live & ~goal)].sum(axis=1)
    np.fill_diagonal(flow[:, :n], 0.0)  # a self-loop only delays: h(s) = Σ_{j≠s} P h / Σ_{j≠s} P
    exit_mass = np.zeros(n)
    for k in range(n):  # fold state k into the states after it
        exit_mass[k] = flow[k, k + 1 :].sum()
        rows = slice(k + 1, n)
        flow[rows, k + 1 :] += np.outer(flow[rows, k], flow[k, k + 1 :] / exit_mass[k])
        flow[rows, k] = 0.0
        later = np.arange(k + 1, n)
        flow[later, later] = 0.0  # self-loops the fold created
    values = np.zeros(n)
    for k in reversed(range(n)):
        values[k] = (flow[k, k + 1 : n] @ values[k + 1 :] + flow[k, n]) / exit_mass[k]
    h[live] = values
    return h


def states_reaching(edges: np.ndarray, goal: np.ndarray) -> np.ndarray:
    """States with a path of positive-probability edges to a goal state (backward search)."""
    reached = goal.copy()
    while True:
        new = reached | (edges & reached[None, :]).any(axis=1)
        if (new == reached).all():
            return reached
        reached = new


def garnet(
    num_states: int,
    num_actions: int,
    branching: int,
    discount: float,
    rng: np.random.Generator,
) -> MDP:
    """A random MDP (a Garnet, Archibald et al. 1995): each pair moves to `branching` distinct
    random states with Dirichlet(1) probabilities (branching 1: deterministic), rewards
    R(s, a) ~ U(−1, 1); no terminal state."""
    if num_states < 1 or num_actions < 1:
        raise ConfigError(f"num_states, num_actions: must be >= 1, got {num_states}, {num_actions}")
    if not 1 <= branching <= num_states:
        raise ConfigError(f"branching: must be in [1, {num_states}], got {branching}")
    transitions = np.zeros((num_states, num_actions, num_states))
    for s in range(num_states):
        for a in range(num_actions):
            targets = rng.choice(num_states, size=branching, replace=False)
            probs = rng.dirichlet(np.ones(branching))
            transitions[s, a, targets] = probs / probs.sum()  # branching 1: exactly 1.0
    rewards = rng.uniform(-1.0, 1.0, (num_states, num_actions))
    return MDP(transitions, rewards, discount)


def random_behaviour(
    num_states: int, num_actions: int, support_size: int, rng: np.random.Generator
) -> np.ndarray:
    """β that takes `support_size` random actions per state, with Dirichlet(1) probabilities."""
    if not 1 <= support_size <= num_actions:
        raise ConfigError(f"support_size: must be in [1, {num_actions}], got {support_size}")
    behaviour = np.zeros((num_states, num_actions))
    for s in range(num_states):
        actions = rng.choice(num_actions, size=support_size, replace=False)
        behaviour[s, actions] = rng.dirichlet(np.ones(support_size))
    return behaviour


@dataclass(frozen=True)
class Transitions:
    """A batch of (s, a, r, s', d); d = 1 when s' is terminal (no bootstrap through it)."""

    states: np.ndarray  # int (N,)
    actions: np.ndarray  # int (N,)
    rewards: np.ndarray  # float (N,)
    next_states: np.ndarray  # int (N,)
    terminals: np.ndarray  # bool (N,)
    num_states: int
    num_actions: int

    def __post_init__(self) -> None:
        n = len(np.asarray(self.states))
        if n == 0:
            raise DataError("Transitions.states: the batch is empty")
        for name, upper in (("states", self.num_states), ("actions", self.num_actions)):
            self._set_index(name, upper, n)
        self._set_index("next_states", self.num_states, n)
        rewards = np.asarray(self.rewards, float)
        if rewards.shape != (n,) or not np.all(np.isfinite(rewards)):
            raise DataError(
                f"Transitions.rewards: must be {n} finite floats, got shape {rewards.shape}"
            )
        terminals = np.asarray(self.terminals)
        if terminals.shape != (n,) or terminals.dtype != bool:
            raise DataError(
                f"Transitions.terminals: must be {n} bools, got {terminals.dtype} {terminals.shape}"
            )
        object.__setattr__(self, "rewards", rewards)
        object.__setattr__(self, "terminals", terminals)

    def _set_index(self, name: str, upper: int, n: int) -> None:
        values = np.asarray(getattr(self, name))
        if values.shape != (n,) or not np.issubdtype(values.dtype, np.integer):
            raise DataError(
                f"Transitions.{name}: must be {n} ints, got {values.dtype} {values.shape}"
            )
        if upper < 1 or values.min() < 0 or values.max() >= upper:
            raise DataError(
                f"Transitions.{name}: indices must lie in [0, {upper}), "
                f"got [{values.min()}, {values.max()}]"
            )
        object.__setattr__(self, name, values.astype(np.int64))

    def __len__(self) -> int:
        return len(self.states)


def pair_counts(batch: Transitions) -> np.ndarray:
    """n(s, a): how many transitions of the batch start with (s, a)."""
    return pair_sums(batch, np.ones(len(batch))).astype(np.int64)


def pair_sums(batch: Transitions, values: np.ndarray) -> np.ndarray:
    """Σ of `values` (one per transition) over the transitions of each pair (s, a)."""
    flat = batch.states * batch.num_actions + batch.actions
    size = batch.num_states * batch.num_actions
    return np.bincount(flat, weights=values, minlength=size).reshape(size // batch.num_actions, -1)


def batch_support(batch: Transitions) -> np.ndarray:
    """(s, a) ∈ B: the pairs the batch holds at least one transition of."""
    return pair_counts(batch) > 0


def sample_rows(probs: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """One index per row of `probs` (E, K), by inverse CDF; u ∈ (0, 1] never picks a
    zero-probability index."""
    cdf = np.cumsum(probs, axis=1)
    cdf /= cdf[:, -1:]
    u = 1.0 - rng.random((len(probs), 1))
    return (cdf < u).sum(axis=1)


def collect(
    mdp: MDP,
    behaviour: np.ndarray,
    start: int,
    episodes: int,
    horizon: int,
    rng: np.random.Generator,
) -> Transitions:
    """Roll the behaviour policy out from `start`, all episodes side by side: each ends at a
    terminal state or after `horizon` steps (a truncation: its last transition keeps d = 0).
    Transitions come episode by episode, in time order."""
    behaviour = check_policy("behaviour", behaviour, mdp.rewards.shape)
    if not 0 <= start < mdp.num_states:
        raise ConfigError(f"start: must be a state in [0, {mdp.num_states}), got {start}")
    if mdp.terminal[start]:
        raise ConfigError(f"start: state {start} is terminal, so there is nothing to collect")
    if episodes < 1 or horizon < 1:
        raise ConfigError(f"episodes, horizon: must be >= 1, got {episodes}, {horizon}")
    state = np.full(episodes, start)
    episode = np.arange(episodes)
    steps = []
    for _ in range(horizon):
        action = sample_rows(behaviour[state], rng)
        next_state = sample_rows(mdp.transitions[state, action], rng)
        steps.append((episode, state, action, next_state))
        alive = ~mdp.terminal[next_state]
        state, episode = next_state[alive], episode[alive]
        if len(state) == 0:
            break
    ep, s, a, s_next = (np.concatenate(column) for column in zip(*steps))
    order = np.argsort(ep, kind="stable")
    s, a, s_next = s[order], a[order], s_next[order]
    return Transitions(
        s, a, mdp.rewards[s, a], s_next, mdp.terminal[s_next], mdp.num_states, mdp.num_actions
    )


@dataclass(frozen=True)
class EmpiricalModel:
    """The MDP a batch estimates: P̂(s'|s, a) = n(s, a, s') / n(s, a), R̂(s, a) the mean reward,
    terminal states those some transition flags terminal. Pairs the batch does not hold
    (`seen` is False) have no estimate: their rows in `mdp` are placeholders (a zero-reward
    self-loop), so solve it with `allowed=seen`."""

    mdp: MDP
    counts: np.ndarray  # n(s, a), int (S, A)

    @property
    def seen(self) -> np.ndarray:
        return self.counts > 0


def empirical_mdp(batch: Transitions, discount: float) -> EmpiricalModel:
    """Counts -> P̂, R̂ (maximum likelihood), with the batch's terminal flags."""
    s_count, a_count = batch.num_states, batch.num_actions
    counts = pair_counts(batch)
    flat = (batch.states * a_count + batch.actions) * s_count + batch.next_states
    next_counts = np.bincount(flat, minlength=s_count * a_count * s_count).reshape(
        s_count, a_count, s_count
    )
    reward_sums = pair_sums(batch, batch.rewards)
    seen = counts > 0
    placeholder = np.broadcast_to(np.eye(s_count)[:, None, :], next_counts.shape)
    p_hat = np.where(seen[..., None], next_counts / np.maximum(counts, 1)[..., None], placeholder)
    r_hat = np.where(seen, reward_sums / np.maximum(counts, 1), 0.0)
    terminal = batch_terminal_states(batch)
    return EmpiricalModel(MDP(p_hat, r_hat, discount, terminal), counts)


def batch_terminal_states(batch: Transitions) -> np.ndarray:
    """States the batch flags terminal; a batch must flag a state the same way every time and
    must not continue from a state it flags terminal."""
    flagged = np.zeros(batch.num_states, bool)
    flagged[batch.next_states[batch.terminals]] = True
    mixed = flagged[batch.next_states] != batch.terminals
    if mixed.any():
        s = int(batch.next_states[np.argmax(mixed)])
        raise DataError(
            f"Transitions.terminals: state {s} is flagged terminal in some transitions only"
        )
    starts = flagged[batch.states]
    if starts.any():
        s = int(batch.states[np.argmax(starts)])
        raise DataError(f"Transitions.states: a transition starts in state {s}, which is terminal")
    return flagged
