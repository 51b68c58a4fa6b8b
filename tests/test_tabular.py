"""The finite-MDP toolkit and tabular batch RL: solvers, batches, batch Q-learning and BCQ,
KL-regularised and support-constrained control — each on hand-computed values, plus the
convergence claims and every error path."""

from __future__ import annotations

import re

import numpy as np
import pytest

from offrl.errors import ConfigError, DataError
from offrl.tabular import (
    MDP,
    Transitions,
    batch_bcq,
    batch_q_learning,
    batch_support,
    bcq_policy,
    collect,
    empirical_mdp,
    evaluate_policy,
    garnet,
    greedy_policy,
    q_learning_sweep,
    random_behaviour,
    reach_probability,
    soft_value_iteration,
    support_constrained,
    td_targets,
    value_iteration,
)

GAMMA = 0.9


def fails(error: type[Exception], call, *patterns: str) -> str:
    """The call raises `error` with a one-line message matching every pattern."""
    with pytest.raises(error) as info:
        call()
    msg = str(info.value)
    assert "\n" not in msg, msg
    for pattern in patterns:
        assert re.search(pattern, msg), (pattern, msg)
    return msg


def chain_mdp() -> MDP:
    """0 → 1 → 2 (terminal). ADVANCE (action 0) earns 1 and moves on; STAY (action 1) earns
    0.5 and stays."""
    p = np.zeros((3, 2, 3))
    p[0, 0, 1] = p[1, 0, 2] = 1.0
    p[0, 1, 0] = p[1, 1, 1] = 1.0
    p[2, :, 2] = 1.0
    r = np.array([[1.0, 0.5], [1.0, 0.5], [7.0, 7.0]])  # the terminal row is never used
    return MDP(p, r, GAMMA, np.array([False, False, True]))


def transitions(rows: list[tuple[int, int, float, int, bool]], states=2, actions=2) -> Transitions:
    s, a, r, s2, d = (np.array(col) for col in zip(*rows))
    return Transitions(s, a, r.astype(float), s2, d.astype(bool), states, actions)


# --- exact solvers -------------------------------------------------------------------------


def test_value_iteration_on_the_chain_matches_the_closed_form():
    # V(1) = max(ADVANCE: 1, STAY forever: 0.5 / (1 − 0.9) = 5) = 5
    # V(0) = max(ADVANCE: 1 + 0.9·5 = 5.5, STAY forever: 5) = 5.5; Q(0, STAY) = 0.5 + 0.9·5.5
    values = value_iteration(chain_mdp())
    np.testing.assert_allclose(values.v, [5.5, 5.0, 0.0], atol=1e-9)
    np.testing.assert_allclose(values.q, [[5.5, 5.45], [1.0, 5.0], [0.0, 0.0]], atol=1e-9)


def test_value_iteration_restricted_to_allowed_pairs():
    # Without STAY at 1: V(1) = 1, and at 0 staying forever (5) beats 1 + 0.9·1 = 1.9.
    allowed = np.array([[True, True], [True, False], [True, True]])
    values = value_iteration(chain_mdp(), allowed=allowed)
    np.testing.assert_allclose(values.v, [5.0, 1.0, 0.0], atol=1e-9)
    assert np.isnan(values.q[1, 1])
    np.testing.assert_allclose(values.q[0], [1.9, 5.0], atol=1e-9)


def test_a_state_with_no_allowed_action_is_a_dead_end_worth_zero():
    allowed = np.array([[True, False], [False, False], [True, True]])
    values = value_iteration(chain_mdp(), allowed=allowed)
    np.testing.assert_allclose(values.v, [1.0, 0.0, 0.0], atol=1e-12)  # 1 + 0.9 · 0


def test_evaluate_policy_solves_the_uniform_policy_exactly():
    # V(1) = ½·1 + ½(0.5 + 0.9 V(1))  ⇒ V(1) = 0.75 / 0.55 = 15/11
    # V(0) = ½(1 + 0.9 V(1)) + ½(0.5 + 0.9 V(0))  ⇒ V(0) = (0.75 + 0.45·15/11) / 0.55 = 300/121
    values = evaluate_policy(chain_mdp(), np.full((3, 2), 0.5))
    np.testing.assert_allclose(values.v, [300 / 121, 15 / 11, 0.0], atol=1e-12)
    np.testing.assert_allclose(values.q[1], [1.0, 0.5 + 0.9 * 15 / 11], atol=1e-12)


def test_greedy_policy_splits_ties_and_is_uniform_where_nothing_is_allowed():
    q = np.array([[1.0, 1.0, 0.0], [0.0, 2.0, 3.0], [5.0, 5.0, 5.0]])
    allowed = np.array([[True, True, True], [True, True, False], [False, False, False]])
    policy = greedy_policy(q, allowed)
    np.testing.assert_allclose(policy, [[0.5, 0.5, 0], [0, 1, 0], [1 / 3, 1 / 3, 1 / 3]])


def test_reach_probability_of_a_three_state_chain():
    # 0 is a trap, 2 the goal; from 1: goal 0.3, trap 0.2, stay 0.5.
    chain = np.array([[1.0, 0, 0], [0.2, 0.5, 0.3], [0, 0, 1.0]])
    goal = np.array([False, False, True])
    np.testing.assert_allclose(reach_probability(chain, goal), [0, 0.3 / 0.5, 1], atol=1e-12)
    np.testing.assert_allclose(reach_probability(chain, goal, 2), [0, 0.3 + 0.5 * 0.3, 1])
    np.testing.assert_allclose(reach_probability(chain, goal, 0), [0, 0, 1])


def test_reach_probability_stays_exact_when_the_escape_is_tiny():
    # 0 ↔ 1 almost surely; from 1 the goal and the trap each take 1e-40: h = ½ exactly, which
    # a plain solve of (I − P) h = b cannot see (1 − 1e-40 rounds to 1).
    chain = np.array([[0, 1.0, 0, 0], [1 - 2e-40, 0, 1e-40, 1e-40], [0, 0, 1.0, 0], [0, 0, 0, 1.0]])
    goal = np.array([False, False, True, False])
    np.testing.assert_allclose(reach_probability(chain, goal), [0.5, 0.5, 1, 0], rtol=1e-12)


# --- batches and the empirical model --------------------------------------------------------


def test_empirical_mdp_counts_transitions_and_rewards():
    batch = transitions(
        [(0, 0, 1.0, 1, False), (0, 0, 3.0, 1, False), (0, 0, 2.0, 2, True), (0, 0, 2.0, 1, False)],
        states=3,
    )
    model = empirical_mdp(batch, GAMMA)
    np.testing.assert_array_equal(model.counts, [[4, 0], [0, 0], [0, 0]])
    np.testing.assert_allclose(model.mdp.transitions[0, 0], [0, 0.75, 0.25])
    assert model.mdp.rewards[0, 0] == pytest.approx(2.0)
    np.testing.assert_array_equal(model.mdp.terminal, [False, False, True])
    np.testing.assert_array_equal(model.seen, [[True, False], [False, False], [False, False]])


def test_collect_follows_the_behaviour_and_stops_at_terminals_and_the_horizon():
    mdp = chain_mdp()
    only_stay = np.array([[0.0, 1.0], [0.0, 1.0], [0.5, 0.5]])
    batch = collect(mdp, only_stay, start=0, episodes=3, horizon=4, rng=np.random.default_rng(0))
    assert len(batch) == 12 and not batch.terminals.any()  # truncated, never terminal
    assert (batch.actions == 1).all() and (batch.next_states == 0).all()
    advance = np.array([[1.0, 0.0], [1.0, 0.0], [0.5, 0.5]])
    batch = collect(mdp, advance, start=0, episodes=2, horizon=10, rng=np.random.default_rng(0))
    np.testing.assert_array_equal(batch.states, [0, 1, 0, 1])  # episode by episode
    np.testing.assert_array_equal(batch.terminals, [False, True, False, True])
    np.testing.assert_array_equal(batch.rewards, [1.0, 1.0, 1.0, 1.0])


# --- batch Q-learning and BCQ: one backup by hand --------------------------------------------


def hand_batch() -> Transitions:
    """Two transitions of (0, 0) and one of (1, 0); (0, 1) and (1, 1) are not in the batch."""
    return transitions([(0, 0, 1.0, 1, False), (0, 0, 3.0, 1, False), (1, 0, 0.0, 0, False)])


HAND_Q = np.array([[1.0, -4.0], [2.0, 5.0]])  # Q(1, 1) = 5 is unseen and would win the max


def test_one_q_learning_sweep_by_hand():
    # targets of (0, 0): 1 + 0.9·max(2, 5) = 5.5 and 3 + 4.5 = 7.5, mean 6.5
    # → Q(0, 0) = 1 + 0.5·(6.5 − 1) = 3.75; (1, 0): 0 + 0.9·max(1, −4) = 0.9 → 2 + 0.5·(0.9 − 2)
    q = q_learning_sweep(HAND_Q, hand_batch(), GAMMA, None, step_size=0.5)
    np.testing.assert_allclose(q, [[3.75, -4.0], [1.45, 5.0]])


def test_one_bcq_sweep_ignores_the_unseen_action_that_would_win():
    # At s' = 1 only action 0 is in the batch: targets 1 + 0.9·2 = 2.8 and 4.8, mean 3.8
    # → Q(0, 0) = 1 + 0.5·2.8 = 2.4; (1, 0) as for Q-learning (at s' = 0 action 0 wins anyway).
    support = batch_support(hand_batch())
    q = q_learning_sweep(HAND_Q, hand_batch(), GAMMA, support, step_size=0.5)
    np.testing.assert_allclose(q, [[2.4, -4.0], [1.45, 5.0]])


def test_td_targets_do_not_bootstrap_through_terminals():
    batch = transitions([(0, 0, 1.0, 1, True), (1, 1, 2.0, 0, False)])
    np.testing.assert_allclose(td_targets(HAND_Q, batch, GAMMA, None), [1.0, 2.0 + 0.9 * 1.0])


def test_bcq_policy_only_picks_batch_actions():
    np.testing.assert_allclose(bcq_policy(HAND_Q, hand_batch()), [[1, 0], [1, 0]])


# --- convergence claims ---------------------------------------------------------------------


def deterministic_problem(seed: int):
    rng = np.random.default_rng(seed)
    mdp = garnet(12, 3, 1, GAMMA, rng)
    behaviour = random_behaviour(12, 3, 2, rng)
    batch = collect(mdp, behaviour, 0, 6, 15, rng)
    model = empirical_mdp(batch, GAMMA)
    return mdp, batch, model, value_iteration(model.mdp, allowed=model.seen)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_bcq_converges_to_the_batch_constrained_optimum_on_deterministic_mdps(seed):
    mdp, batch, model, exact = deterministic_problem(seed)
    np.testing.assert_array_equal(model.mdp.transitions[model.seen], mdp.transitions[model.seen])
    for initial in (0.0, 10.0, np.random.default_rng(seed).uniform(-10, 10, (12, 3))):
        q = batch_bcq(batch, GAMMA, initial).q
        assert np.max(np.abs(q - exact.q)[model.seen]) < 1e-6
    # Theorem 2 of the paper: its own estimate is the true value of its policy.
    q = batch_bcq(batch, GAMMA).q
    true_v = evaluate_policy(mdp, bcq_policy(q, batch)).v[0]
    assert np.max(q[0][model.seen[0]]) == pytest.approx(true_v, abs=1e-6)


def test_q_learning_propagates_the_initial_values_of_unseen_pairs():
    mdp, batch, model, exact = deterministic_problem(0)
    optimistic = 1 / (1 - GAMMA)  # r_max / (1 − γ) = 10, above every true value
    q = batch_q_learning(batch, GAMMA, optimistic).q
    assert (q[~model.seen] == optimistic).all()  # never updated
    # β leaves one action of three unseen at every state, so every successor's max is the
    # unseen 10 (a batch pair reaches r + 0.9·10 ≤ 10 at most): Q = R + 9 on the whole batch.
    np.testing.assert_allclose(q[model.seen], mdp.rewards[model.seen] + GAMMA * optimistic)
    assert np.max(np.abs(q - exact.q)[model.seen]) > 1.0


def test_bcq_approaches_the_true_restricted_optimum_as_the_batch_grows():
    errors = []
    for episodes in (5, 2000):
        rng = np.random.default_rng(7)
        mdp = garnet(10, 3, 3, GAMMA, rng)
        behaviour = random_behaviour(10, 3, 2, rng)
        batch = collect(mdp, behaviour, 0, episodes, 20, rng)
        model = empirical_mdp(batch, GAMMA)
        q = batch_bcq(batch, GAMMA).q
        estimated = value_iteration(model.mdp, allowed=model.seen).q
        assert np.max(np.abs(q - estimated)[model.seen]) < 1e-6  # exact on P̂, at any size
        true_restricted = value_iteration(mdp, allowed=model.seen).q
        errors.append(np.mean(np.abs(q - true_restricted)[model.seen]))
    assert errors[1] < errors[0] / 5 and errors[1] < 0.1, errors


# --- KL-regularised and support-constrained control ------------------------------------------


def bandit() -> MDP:
    """State 0 with two actions into the terminal state 1: rewards 1 and 0."""
    p = np.zeros((2, 2, 2))
    p[:, :, 1] = 1.0
    return MDP(p, np.array([[1.0, 0.0], [0.0, 0.0]]), GAMMA, np.array([False, True]))


def test_soft_value_iteration_by_hand():
    # Q = (1, 0); V = α log(½e^{1/α} + ½) with α = 1; π(0) = e / (e + 1)
    solution = soft_value_iteration(bandit(), np.full((2, 2), 0.5), alpha=1.0)
    np.testing.assert_allclose(solution.q[0], [1.0, 0.0], atol=1e-12)
    assert solution.v[0] == pytest.approx(np.log((np.e + 1) / 2))
    assert solution.policy[0, 0] == pytest.approx(np.e / (np.e + 1))


def test_soft_value_iteration_never_takes_an_action_the_prior_excludes():
    solution = soft_value_iteration(bandit(), np.array([[0.0, 1.0], [0.5, 0.5]]), alpha=0.01)
    np.testing.assert_allclose(solution.policy[0], [0.0, 1.0])
    assert solution.v[0] == pytest.approx(0.0)


def test_soft_value_iteration_holds_unknown_pairs_at_their_value():
    # Q(0, 1) has no model: it reads 5, so π(1) = e^5 / (e^1 + e^5) with α = 1.
    known = np.array([[True, False], [True, True]])
    solution = soft_value_iteration(
        bandit(), np.full((2, 2), 0.5), 1.0, known=known, unknown_value=5.0
    )
    np.testing.assert_allclose(solution.q[0], [1.0, 5.0], atol=1e-12)
    assert solution.policy[0, 1] == pytest.approx(np.exp(5) / (np.e + np.exp(5)))


def test_support_constraint_drops_actions_below_epsilon():
    prior = np.array([[0.96, 0.04], [0.5, 0.5]])
    policy, values = support_constrained(bandit(), prior, epsilon=0.05)
    np.testing.assert_allclose(policy[0], [1.0, 0.0])
    policy, _ = support_constrained(bandit(), np.array([[0.04, 0.96], [0.5, 0.5]]), 0.05)
    np.testing.assert_allclose(policy[0], [0.0, 1.0])  # the better action is out of support
    assert np.isnan(values.q[0, 1])


# --- error paths ----------------------------------------------------------------------------


def mdp_parts():
    m = chain_mdp()
    return m.transitions.copy(), m.rewards.copy(), m.terminal.copy()


def test_mdp_rejects_bad_transitions():
    p, r, t = mdp_parts()
    fails(ConfigError, lambda: MDP(p[:, :, :2], r, GAMMA, t), r"MDP\.transitions: .*shape")
    bad = p.copy()
    bad[0, 1] = [0.5, 0.4, 0.0]
    fails(
        ConfigError, lambda: MDP(bad, r, GAMMA, t), r"MDP\.transitions: row \[0, 1\] sums to 0\.9"
    )
    bad[0, 1] = [1.5, -0.5, 0.0]
    fails(ConfigError, lambda: MDP(bad, r, GAMMA, t), r"MDP\.transitions: negative probability")
    bad[0, 1] = [np.nan, 1.0, 0.0]
    fails(ConfigError, lambda: MDP(bad, r, GAMMA, t), r"MDP\.transitions: .*non-finite")


def test_mdp_rejects_bad_rewards_discount_and_terminals():
    p, r, t = mdp_parts()
    fails(ConfigError, lambda: MDP(p, r[:2], GAMMA, t), r"MDP\.rewards: must have shape \(3, 2\)")
    fails(ConfigError, lambda: MDP(p, r * np.inf, GAMMA, t), r"MDP\.rewards: .*non-finite")
    for discount in (1.0, -0.1, 1.5):
        fails(
            ConfigError, lambda d=discount: MDP(p, r, d, t), r"MDP\.discount: must be in \[0, 1\)"
        )
    fails(ConfigError, lambda: MDP(p, r, GAMMA, t[:2]), r"MDP\.terminal: .*shape \(3,\)")
    fails(ConfigError, lambda: MDP(p, r, GAMMA, t.astype(int)), r"MDP\.terminal: .*bool")


def test_transitions_reject_bad_columns():
    ok = dict(
        states=np.array([0, 1]),
        actions=np.array([0, 1]),
        rewards=np.array([0.0, 1.0]),
        next_states=np.array([1, 0]),
        terminals=np.array([False, False]),
        num_states=2,
        num_actions=2,
    )
    cases = {
        "states": (np.array([], int), r"Transitions\.states: the batch is empty"),
        "actions": (np.array([0, 2]), r"Transitions\.actions: indices must lie in \[0, 2\)"),
        "next_states": (np.array([0.0, 1.0]), r"Transitions\.next_states: must be 2 ints"),
        "rewards": (np.array([0.0, np.nan]), r"Transitions\.rewards: must be 2 finite floats"),
        "terminals": (np.array([0, 1]), r"Transitions\.terminals: must be 2 bools"),
    }
    for column, (value, pattern) in cases.items():
        fails(DataError, lambda c=column, v=value: Transitions(**(ok | {c: v})), pattern)
    fails(DataError, lambda: Transitions(**(ok | {"states": np.array([0, -1])})), r"\[0, 2\)")
    fails(DataError, lambda: Transitions(**(ok | {"actions": np.array([0])})), r"must be 2 ints")


def test_empirical_mdp_rejects_inconsistent_terminals():
    mixed = transitions([(0, 0, 0.0, 1, True), (0, 1, 0.0, 1, False)])
    fails(DataError, lambda: empirical_mdp(mixed, GAMMA), r"state 1 is flagged terminal in some")
    after_end = transitions([(0, 0, 0.0, 1, True), (1, 0, 0.0, 0, False)])
    fails(
        DataError, lambda: empirical_mdp(after_end, GAMMA), r"starts in state 1, which is terminal"
    )


def test_solvers_reject_bad_settings():
    mdp = chain_mdp()
    fails(
        ConfigError,
        lambda: value_iteration(mdp, allowed=np.ones((3, 3), bool)),
        r"allowed: .*\(3, 2\)",
    )
    fails(ConfigError, lambda: value_iteration(mdp, allowed=np.ones((3, 2))), r"allowed: .*bool")
    fails(ConfigError, lambda: value_iteration(mdp, tol=0.0), r"tol: must be > 0")
    fails(
        ConfigError, lambda: value_iteration(mdp, max_iterations=0), r"max_iterations: must be >= 1"
    )
    fails(
        ConfigError,
        lambda: value_iteration(mdp, max_iterations=3),
        r"max_iterations: .*did not reach",
    )
    fails(
        ConfigError, lambda: evaluate_policy(mdp, np.full((3, 2), 0.4)), r"policy: row \[0\] sums"
    )
    fails(
        ConfigError, lambda: evaluate_policy(mdp, np.full((2, 2), 0.5)), r"policy: must have shape"
    )


def test_reach_probability_rejects_bad_inputs():
    chain, goal = np.eye(3), np.array([False, False, True])
    fails(
        ConfigError, lambda: reach_probability(chain[:2], goal), r"chain: must have shape \(S, S\)"
    )
    fails(
        ConfigError, lambda: reach_probability(chain * 0.5, goal), r"chain: row \[0\] sums to 0\.5"
    )
    fails(ConfigError, lambda: reach_probability(chain, goal.astype(int)), r"goal: .*bool")
    fails(ConfigError, lambda: reach_probability(chain, goal, horizon=-1), r"horizon: must be >= 0")


def test_collect_and_random_models_reject_bad_settings():
    mdp, rng = chain_mdp(), np.random.default_rng(0)
    beh = np.full((3, 2), 0.5)
    fails(
        ConfigError, lambda: collect(mdp, beh, 3, 1, 1, rng), r"start: must be a state in \[0, 3\)"
    )
    fails(ConfigError, lambda: collect(mdp, beh, 2, 1, 1, rng), r"start: state 2 is terminal")
    fails(ConfigError, lambda: collect(mdp, beh, 0, 0, 1, rng), r"episodes, horizon: must be >= 1")
    fails(
        ConfigError, lambda: collect(mdp, beh[:, :1], 0, 1, 1, rng), r"behaviour: must have shape"
    )
    fails(ConfigError, lambda: garnet(3, 2, 4, GAMMA, rng), r"branching: must be in \[1, 3\]")
    fails(
        ConfigError, lambda: garnet(0, 2, 1, GAMMA, rng), r"num_states, num_actions: must be >= 1"
    )
    fails(ConfigError, lambda: random_behaviour(3, 2, 3, rng), r"support_size: must be in \[1, 2\]")


def test_batch_learners_reject_bad_settings():
    batch = hand_batch()
    fails(ConfigError, lambda: batch_bcq(batch, 1.0), r"discount: must be in \[0, 1\)")
    for step in (0.0, 1.5):
        fails(
            ConfigError,
            lambda s=step: batch_q_learning(batch, GAMMA, step_size=s),
            r"step_size: must be in \(0, 1\]",
        )
    fails(
        ConfigError,
        lambda: batch_q_learning(batch, GAMMA, np.zeros((3, 2))),
        r"initial_q: .*\(2, 2\)",
    )
    fails(ConfigError, lambda: batch_bcq(batch, GAMMA, np.nan), r"initial_q: has non-finite")
    fails(
        ConfigError, lambda: batch_bcq(batch, GAMMA, max_sweeps=2), r"max_sweeps: .*did not reach"
    )
    fails(ConfigError, lambda: batch_bcq(batch, GAMMA, max_sweeps=0), r"max_sweeps: must be >= 1")
    fails(ConfigError, lambda: q_learning_sweep(np.zeros((2, 3)), batch, GAMMA), r"q: .*\(2, 2\)")


def test_kl_and_support_control_reject_bad_settings():
    mdp, prior = bandit(), np.full((2, 2), 0.5)
    for alpha in (0.0, -1.0):
        fails(
            ConfigError, lambda a=alpha: soft_value_iteration(mdp, prior, a), r"alpha: must be > 0"
        )
    fails(
        ConfigError,
        lambda: soft_value_iteration(mdp, prior * 2, 1.0),
        r"prior: row \[0\] sums to 2",
    )
    fails(
        ConfigError,
        lambda: soft_value_iteration(mdp, prior, 1.0, known=np.ones(2, bool)),
        r"known: ",
    )
    fails(
        ConfigError,
        lambda: soft_value_iteration(mdp, prior, 1.0, unknown_value=np.inf),
        r"unknown_value: must be finite",
    )
    for eps in (1.0, -0.1):
        fails(
            ConfigError,
            lambda e=eps: support_constrained(mdp, prior, e),
            r"epsilon: must be in \[0, 1\)",
        )
