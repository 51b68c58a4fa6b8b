"""Tabular batch RL in numpy: finite MDPs, batch Q-learning vs tabular BCQ, and the BEAR
lineworld (distribution matching vs a support constraint). See docs/tabular.md.

A package of its own rather than DESIGN.md's envs/tabular.py and envs/lineworld.py: besides
the worlds it holds exact solvers and tabular algorithms (value iteration, batch Q-learning,
BCQ, the KL-regularized soft policy), which are not environments, and it needs neither
gymnasium nor JAX."""

from offrl.tabular.algorithms import (
    SoftSolution,
    SweepResult,
    batch_bcq,
    batch_q_learning,
    bcq_policy,
    q_learning_sweep,
    soft_value_iteration,
    support_constrained,
    td_targets,
)
from offrl.tabular.lineworld import (
    LEFT,
    RIGHT,
    Lineworld,
    behaviour_model,
    distribution_matching_policy,
    goal_probability,
    make_lineworld,
    support_policy,
)
from offrl.tabular.mdp import (
    MDP,
    EmpiricalModel,
    Transitions,
    Values,
    batch_support,
    collect,
    empirical_mdp,
    evaluate_policy,
    garnet,
    greedy_policy,
    pair_counts,
    policy_chain,
    random_behaviour,
    reach_probability,
    state_values,
    value_iteration,
)

__all__ = [
    "LEFT",
    "MDP",
    "RIGHT",
    "EmpiricalModel",
    "Lineworld",
    "SoftSolution",
    "SweepResult",
    "Transitions",
    "Values",
    "batch_bcq",
    "batch_q_learning",
    "batch_support",
    "bcq_policy",
    "behaviour_model",
    "collect",
    "distribution_matching_policy",
    "empirical_mdp",
    "evaluate_policy",
    "garnet",
    "goal_probability",
    "greedy_policy",
    "make_lineworld",
    "pair_counts",
    "policy_chain",
    "q_learning_sweep",
    "random_behaviour",
    "reach_probability",
    "soft_value_iteration",
    "state_values",
    "support_constrained",
    "support_policy",
    "td_targets",
    "value_iteration",
]
