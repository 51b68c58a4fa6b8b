"""The 1D lineworld of the BEAR paper (Kumar et al., "Stabilizing Off-Policy Q-Learning via
Bootstrapping Error Reduction", NeurIPS 2019; BAIR blog post, Dec 2019, Figs. 4–6).

States 0 … N−1 on a line, actions LEFT and RIGHT (deterministic moves; LEFT at state 0 stays
there). Start S = ⌊(N−1)/2⌋, goal G = N−1, terminal. By default every step taken before G
costs −1 (R(s, a) = −1 for s ≠ G) and γ = 0.99; `goal_reward` adds a reward to the step into
G (the "sparse" variant: step 0, goal 1). None of this is in the seeds' text (the blog's
figure carries the rewards): these are our choices, listed in docs/tabular.md. The
behaviour policy β takes the wrong action LEFT with probability 0.9 (RIGHT with 0.1) at S
and every state between S and G — both actions in distribution — and only LEFT at the
states beyond S (0 … S−1).

The learner's data is every pair β takes, with β's exact probabilities (the limit of a batch
whose episodes start everywhere on the line: episodes from S alone would almost never reach
the states near G, and then no method could find G). The moves are deterministic, so the
model of every pair in the data is exact; the pairs outside it (RIGHT beyond S) have no
model, and a Q-table holds `unknown_value` there.

Compared (see docs/tabular.md):
- distribution matching: the KL-regularised optimum π ∝ β̂ exp(Q/α) (`soft_value_iteration`);
- support constraint: greedy over {a : β̂(a|s) > ε} on the restricted Q*.
β̂ = (1 − η) β + η / 2 is the behaviour model the learner uses: η = 0 is the exact β, η > 0 a
fitted model with full support, as any density model has, under which the KL penalty of an
action the data never took is large but finite.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from offrl.errors import ConfigError
from offrl.tabular.algorithms import soft_value_iteration, support_constrained
from offrl.tabular.mdp import MDP, policy_chain, reach_probability

LEFT, RIGHT = 0, 1
MIN_SIZE = 3  # a state beyond S, S, and G


@dataclass(frozen=True)
class Lineworld:
    mdp: MDP
    behaviour: np.ndarray  # β[s, a], (N, 2); the terminal goal's row is uniform (never used)
    start: int  # S
    goal: int  # G

    @property
    def size(self) -> int:
        return self.mdp.num_states

    @property
    def data_pairs(self) -> np.ndarray:
        """The pairs the data holds (β > 0): the ones whose model the learner knows."""
        return self.behaviour > 0


def make_lineworld(
    size: int,
    wrong_prob: float = 0.9,
    discount: float = 0.99,
    step_reward: float = -1.0,
    goal_reward: float = 0.0,
) -> Lineworld:
    """Every step taken before G earns `step_reward`; the step into G earns `goal_reward` more."""
    if size < MIN_SIZE:
        raise ConfigError(f"size: the lineworld needs at least {MIN_SIZE} states, got {size}")
    if not 0 < wrong_prob < 1:
        raise ConfigError(
            f"wrong_prob: must be in (0, 1) so both actions are in the data, got {wrong_prob}"
        )
    start, goal = (size - 1) // 2, size - 1
    states = np.arange(size)
    transitions = np.zeros((size, 2, size))
    transitions[states, LEFT, np.maximum(states - 1, 0)] = 1.0
    transitions[states, RIGHT, np.minimum(states + 1, goal)] = 1.0
    terminal = states == goal
    rewards = np.where(terminal[:, None], 0.0, step_reward) * np.ones((size, 2))
    rewards[goal - 1, RIGHT] += goal_reward
    behaviour = np.zeros((size, 2))
    behaviour[:start, LEFT] = 1.0
    behaviour[start:goal] = (wrong_prob, 1 - wrong_prob)
    behaviour[goal] = 0.5
    return Lineworld(MDP(transitions, rewards, discount, terminal), behaviour, start, goal)


def behaviour_model(world: Lineworld, floor: float) -> np.ndarray:
    """β̂ = (1 − η) β + η / |A|: η = `floor` spread evenly, so every action has mass ≥ η/|A|."""
    if not 0 <= floor < 1:
        raise ConfigError(f"floor: must be in [0, 1), got {floor}")
    return (1 - floor) * world.behaviour + floor / world.mdp.num_actions


def distribution_matching_policy(
    world: Lineworld, alpha: float, floor: float = 0.0, unknown_value: float = 0.0
) -> np.ndarray:
    """π ∝ β̂ exp(Q/α) at the KL-regularised optimum; pairs outside the data hold Q =
    `unknown_value` (0 here is optimistic: every true value is negative)."""
    prior = behaviour_model(world, floor)
    solution = soft_value_iteration(
        world.mdp, prior, alpha, known=world.data_pairs, unknown_value=unknown_value
    )
    return solution.policy


def support_policy(world: Lineworld, epsilon: float, floor: float = 0.0) -> np.ndarray:
    """Greedy over {a : β̂(a|s) > ε} on Q* of the MDP restricted to those pairs."""
    prior = behaviour_model(world, floor)
    outside = (prior > epsilon) & ~world.data_pairs & ~world.mdp.terminal[:, None]
    if outside.any():
        raise ConfigError(
            f"epsilon: {epsilon} admits actions the data never took (β̂ = {prior[outside].max():.3g}"
            " there); it must be at least floor / 2"
        )
    policy, _ = support_constrained(world.mdp, prior, epsilon)
    return policy


def goal_probability(world: Lineworld, policy: np.ndarray, horizon: int | None) -> float:
    """P(the policy, started at S, reaches G within `horizon` steps) in the true lineworld."""
    goal = np.arange(world.size) == world.goal
    chain = policy_chain(world.mdp, policy)
    return float(reach_probability(chain, goal, horizon)[world.start])
