"""Learning: each offline algorithm, trained briefly on a recipe dataset, beats a random policy.

The random policy scores 0 on the normalized scale by definition (its return is the
reference minimum). Its episode returns spread by ~28 normalized points, so the mean of 10
evaluation episodes has a standard error of ~9: "a clear margin" here is a normalized score
of at least 30, more than three standard errors above random. (Measured at these budgets,
seed 0: every algorithm clears it; see benchmarks/README.md for the scores over seeds.)
Small networks keep this under a minute per algorithm on a 2-core CPU; the paper-size
runs live in benchmarks/. The naive off-policy learners (sac, td3, ddpg) learn online here:
tests/test_behavior.py.
"""

from __future__ import annotations

import pytest

import offrl

# Steps and overrides per algorithm: enough for each to learn Pendulum's swing-up.
BUDGET = {
    "bc": (2_000, {}),
    "td3_bc": (4_000, {}),
    # Pendulum's per-step rewards are ~5x larger than locomotion's after IQL's return-range
    # scaling (200-step episodes, not 1000), so exp(β·A) with the paper's β = 3 saturates and
    # filters on noise; β = 0.3 puts the advantages back on the paper's scale.
    "iql": (4_000, {"beta": 0.3}),
    "cql": (4_000, {}),
    "awr": (1_000, {}),
    # The reference's 750-750 VAE learns as well on Pendulum (3 obs, 1 action dims) but is
    # ~5x slower: docs/algos/bcq.md.
    "bcq": (3_000, {"vae_hidden": (64, 64)}),
    # BEAR's warm start (20k MMD-only actor updates) is longer than this whole budget.
    "bear": (2_500, {"vae_hidden": (64, 64), "warmstart_steps": 500}),
    # AWAC's λ and CRR's β are in reward units: on Pendulum (rewards to -16 per step) the
    # paper's 1.0 lets a few noisy advantages drive the actor (it collapses, then Q
    # diverges); 10 puts them on the paper's scale. docs/algos/awac.md, crr.md.
    "awac": (3_000, {"lam": 10.0}),
    "crr": (2_000, {"beta": 10.0}),
    # BRAC's reference schedule (300k behaviour updates, then a 20k warm start) is sized for
    # 500k updates; scaled to this budget. α = 0.1 (the reference's) lets Q extrapolate on
    # Pendulum (the KL grows to 5.7 nats and Q(s, a_data) turns positive with rewards <= 0),
    # so the penalty is raised: docs/algos/brac.md.
    "brac": (5_000, {"behavior_pretrain_steps": 1000, "warm_start_steps": 500, "alpha": 10.0}),
}
# The model-based algorithms: the ensemble is fitted for 5 epochs only, and the SAC nets keep
# their default 256-256 (at 64-64, actor lr 1e-4 or 3e-4, MOPO does not learn Pendulum in
# 3-4k updates: measured -22 and 3; 128-128: 39; 256-256: 56 at 2k; docs/algos/mopo.md).
# Two to six minutes each on a 2-core CPU, so `make test-slow` runs them, not CI; their
# shared and hand-computed tests run in CI.
SLOW_BUDGET = {
    name: (2_000, {"dynamics_epochs": 5, "hidden": (256, 256)})
    for name in ("mopo", "morel", "combo")
}
# SAC-N with 10 critics: as MOPO's SAC, 64-64 does not learn Pendulum in 4k updates (measured
# -39); 256-256 reached 81.5 at 2k (96 s for 3k). EDAC needs >= 2 action dimensions and
# Pendulum has one: its learning is measured in benchmarks (docs/algos/edac.md).
SLOW_BUDGET["sac_n"] = (2_000, {"hidden": (256, 256)})
# ReBRAC at 64-64 and its batch of 1024: 84.5 at 4k updates (26.1 at 3k), 48 s on a busy
# machine; slow-tier to keep CI's time (docs/algos/rebrac.md).
SLOW_BUDGET["rebrac"] = (4_000, {})
# Cal-QL at CQL's budget: 13.5, 46.5, 44.9, 31.8 at 1k-4k (99 s on a busy machine).
SLOW_BUDGET["cal_ql"] = (4_000, {})


def final_score(name: str, dataset: str, steps: int, overrides: dict, out) -> float:
    """The normalized score of 10 evaluation episodes after `steps` updates (seed 0, 64-64)."""
    summary = offrl.train(
        name,
        dataset,
        steps=steps,
        seed=0,
        out=out / name,
        overrides={"hidden": (64, 64), **overrides},
        eval_every=steps,
        eval_episodes=10,
        chunk_size=500,
        progress=False,
    )
    return summary["final_normalized_score"]


@pytest.mark.parametrize(
    "name",
    sorted(BUDGET) + [pytest.param(n, marks=pytest.mark.slow) for n in sorted(SLOW_BUDGET)],
)
def test_beats_random_policy(name, tmp_path):
    steps, overrides = (BUDGET | SLOW_BUDGET)[name]
    assert final_score(name, "pendulum-medium-expert", steps, overrides, tmp_path) >= 30


# Discrete algorithms on CartPole-v1 (random 23.0, expert 500: 10 normalized points is a
# return of 71, over ten standard errors of the random policy's 10-episode mean). The
# Q-learners learn from uniformly random data (measured at these budgets, 64-64, seeds 0-2:
# every return above 100; docs/algos/NAME.md); BC needs a good behaviour policy to copy.
DISCRETE_BUDGET = {
    "dqn": ("cartpole-random", 10_000, {}),
    "ddqn": ("cartpole-random", 10_000, {}),
    "qrdqn": ("cartpole-random", 7_500, {"num_quantiles": 50}),
    "c51": ("cartpole-random", 7_500, {}),  # returns 146.8, 211.0 (seeds 0, 1); 15 s
    "rem": ("cartpole-random", 7_500, {}),
    "ensemble_dqn": ("cartpole-random", 7_500, {}),
    "fqi": ("cartpole-random", 14_000, {}),
    "bcq_discrete": ("cartpole-random", 10_000, {}),
    "cql_discrete": ("cartpole-random", 17_500, {}),
    "spibb": ("cartpole-random", 10_000, {}),
    "bc_discrete": ("cartpole-noisy-snapshot", 500, {}),
}


@pytest.mark.parametrize("name", sorted(DISCRETE_BUDGET))
def test_discrete_beats_random_policy(name, tmp_path):
    dataset, steps, overrides = DISCRETE_BUDGET[name]
    assert final_score(name, dataset, steps, overrides, tmp_path) >= 10
