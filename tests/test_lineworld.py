"""The BEAR lineworld: its layout, hand-computed policies and reach probabilities, the
support constraint reaching G at every size, distribution matching failing as the world
grows (and where it does not), and the error paths."""

from __future__ import annotations

import re

import numpy as np
import pytest

from offrl.errors import ConfigError
from offrl.tabular import (
    LEFT,
    RIGHT,
    behaviour_model,
    distribution_matching_policy,
    goal_probability,
    make_lineworld,
    support_policy,
)

SIZES = (5, 20, 50)
HORIZON = 1000


def fails(call, pattern: str) -> None:
    with pytest.raises(ConfigError) as info:
        call()
    msg = str(info.value)
    assert "\n" not in msg and re.search(pattern, msg), msg


def test_layout_of_a_five_state_world():
    w = make_lineworld(5)
    assert (w.start, w.goal) == (2, 4)
    np.testing.assert_array_equal(w.mdp.transitions[:, LEFT].argmax(axis=1), [0, 0, 1, 2, 3])
    np.testing.assert_array_equal(w.mdp.transitions[:4, RIGHT].argmax(axis=1), [1, 2, 3, 4])
    np.testing.assert_array_equal(w.mdp.terminal, [False, False, False, False, True])
    np.testing.assert_array_equal(w.mdp.rewards[:4], -np.ones((4, 2)))
    np.testing.assert_allclose(w.behaviour[:4], [[1, 0], [1, 0], [0.9, 0.1], [0.9, 0.1]])
    np.testing.assert_array_equal(w.data_pairs[:4, RIGHT], [False, False, True, True])


def test_sparse_reward_pays_only_the_step_into_the_goal():
    w = make_lineworld(4, step_reward=0.0, goal_reward=1.0)
    np.testing.assert_array_equal(w.mdp.rewards, [[0, 0], [0, 0], [0, 1], [0, 0]])


def test_behaviour_reach_probability_by_hand():
    # N = 5, S = 2: h(3) = 0.1 + 0.9 h(2), h(2) = 0.1 h(3) (LEFT from 2 enters the all-LEFT
    # trap)  ⇒  h(2) = 0.01 / 0.91. Within 2 steps only RIGHT, RIGHT: 0.1 · 0.1.
    w = make_lineworld(5)
    assert goal_probability(w, w.behaviour, None) == pytest.approx(0.01 / 0.91)
    assert goal_probability(w, w.behaviour, HORIZON) == pytest.approx(0.01 / 0.91)
    assert goal_probability(w, w.behaviour, 2) == pytest.approx(0.01)


def test_kl_policy_on_a_three_state_world_by_hand():
    # N = 3: S = 1, G = 2. Beyond S (state 0) β only goes LEFT: V(0) = −1 / (1 − γ) = −100.
    # Q(1, RIGHT) = −1, Q(1, LEFT) = −1 + 0.99 · (−100) = −100
    # π(RIGHT | 1) = 0.1 e^{−1/α} / (0.1 e^{−1/α} + 0.9 e^{−100/α}) = 1 / (1 + 9 e^{−99/α}).
    w = make_lineworld(3)
    for alpha in (10.0, 100.0):
        policy = distribution_matching_policy(w, alpha)
        expected = 1 / (1 + 9 * np.exp(-99 / alpha))
        assert policy[1, RIGHT] == pytest.approx(expected, rel=1e-8)
        assert policy[0, RIGHT] == 0.0  # the action β never takes
        assert goal_probability(w, policy, None) == pytest.approx(expected, rel=1e-8)


def test_behaviour_model_mixes_in_the_floor():
    w = make_lineworld(5)
    np.testing.assert_allclose(behaviour_model(w, 0.02)[0], [0.99, 0.01])
    np.testing.assert_allclose(behaviour_model(w, 0.02)[2], [0.892, 0.108])


@pytest.mark.parametrize("floor", [0.0, 0.02])
def test_the_support_constraint_reaches_the_goal_at_every_size(floor):
    for size in SIZES:
        w = make_lineworld(size)
        policy = support_policy(w, epsilon=0.05, floor=floor)
        assert goal_probability(w, policy, HORIZON) == pytest.approx(1.0, abs=1e-12)
        np.testing.assert_array_equal(policy[w.start : w.goal, RIGHT], 1.0)


def kl_goal_probability(size: int, alpha: float, floor: float) -> float:
    w = make_lineworld(size)
    return goal_probability(w, distribution_matching_policy(w, alpha, floor), HORIZON)


def test_a_tight_kl_penalty_fails_more_as_the_world_grows():
    for floor in (0.0, 0.02):
        probs = [kl_goal_probability(size, 100.0, floor) for size in SIZES]
        assert probs[0] > probs[1] > probs[2] and probs[2] < 1e-20, probs


def test_with_a_fitted_behaviour_model_every_kl_strength_fails_on_a_large_world():
    for alpha in (0.1, 1.0, 10.0, 100.0):
        assert kl_goal_probability(50, alpha, 0.02) < 1e-20, alpha


def test_a_loose_kl_penalty_takes_the_unseen_action_and_turns_back_at_s():
    # The mechanism of the BEAR blog post: Q(S−1, RIGHT) has no data and reads 0, above every
    # true value, so the policy goes RIGHT at S−1 and LEFT at S, and cycles between them.
    w = make_lineworld(20)
    policy = distribution_matching_policy(w, 0.1, floor=0.02)
    assert policy[w.start - 1, RIGHT] > 0.99 and policy[w.start, LEFT] > 0.99
    # A pessimistic value for the unseen pairs removes the lure and the policy reaches G.
    pessimistic = distribution_matching_policy(w, 0.1, floor=0.02, unknown_value=-100.0)
    assert goal_probability(w, pessimistic, HORIZON) == pytest.approx(1.0, abs=1e-9)


def test_with_the_exact_behaviour_a_small_kl_strength_acts_like_the_support_constraint():
    # Where β is exactly 0 the KL penalty is infinite, a hard support constraint: here the
    # paper's "whatever α" does not hold (docs/tabular.md).
    for size in SIZES:
        w = make_lineworld(size)
        policy = distribution_matching_policy(w, 0.1)
        assert goal_probability(w, policy, HORIZON) == pytest.approx(1.0, abs=1e-9)


def test_lineworld_rejects_bad_settings():
    fails(lambda: make_lineworld(2), r"size: the lineworld needs at least 3 states, got 2")
    for p in (0.0, 1.0):
        fails(lambda p=p: make_lineworld(5, wrong_prob=p), r"wrong_prob: must be in \(0, 1\)")
    fails(lambda: make_lineworld(5, discount=1.0), r"MDP\.discount: must be in \[0, 1\)")
    w = make_lineworld(5)
    for floor in (1.0, -0.1):
        fails(lambda f=floor: behaviour_model(w, f), r"floor: must be in \[0, 1\)")
    fails(lambda: support_policy(w, 0.005, floor=0.02), r"epsilon: 0\.005 admits actions the data")
    fails(lambda: distribution_matching_policy(w, 0.0), r"alpha: must be > 0")
    fails(lambda: goal_probability(w, w.behaviour, -1), r"horizon: must be >= 0")
    fails(lambda: goal_probability(w, w.behaviour[:, :1], 1), r"policy: must have shape \(5, 2\)")
