"""MOReL: the ensemble's disagreement and the USAD threshold by hand; the pessimistic MDP's
halt (reward −κ, terminal) where the members disagree, the model's step where they agree."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers import constant_dynamics, random_dataset

from offrl import dynamics
from offrl.algos import morel
from offrl.nets.dynamics import MEMBERS

TINY = dynamics.DynamicsConfig(num_members=3, num_elites=3, hidden=(4,), weight_decay=(0, 0))


def spread_model(offsets):
    """Members predicting Δs = (offset_i, 0, 0) and r = 1, all with the floor variance."""
    model = constant_dynamics(TINY, 3, 1, jnp.array([0.0, 0.0, 0.0, 1.0]), jnp.full(4, -100.0))
    params = jax.tree_util.tree_map(lambda x: x, model.params)
    bias = params["params"][MEMBERS]["MLP_0"]["Dense_1"]["bias"]
    params["params"][MEMBERS]["MLP_0"]["Dense_1"]["bias"] = bias.at[:, 0].set(jnp.array(offsets))
    return model.replace(params=params)


def test_disagreement_is_the_largest_pairwise_distance():
    mean = jnp.array([[[0.0, 0.0, 9.0]], [[3.0, 4.0, -9.0]], [[1.0, 0.0, 0.0]]])  # 3 members
    # next states are the first 2 outputs: the pairs' distances 5, 1, √20; the reward ignored
    assert float(dynamics.disagreement(mean, 2)[0]) == pytest.approx(5.0)


def test_threshold_is_the_data_maximum_over_the_pessimism_coefficient():
    model = spread_model([0.0, 0.1, 0.3])  # disagreement 0.3 everywhere
    ds = random_dataset(50, 3, 1)
    threshold = morel.usad_threshold(model, ds, 2.0, 20, jax.random.key(0))
    assert threshold == pytest.approx(0.15, rel=1e-5)


def test_unknown_steps_halt_with_minus_kappa():
    obs = jnp.ones((2, 3))
    zero = lambda o, k: jnp.zeros((o.shape[0], 1))  # noqa: E731
    for offsets, threshold, halted in (
        ([0.0, 0.1, 0.3], 0.2, True),
        ([0.0, 0.05, 0.1], 0.2, False),
    ):
        fn = morel.halting(jnp.asarray(threshold), 100.0, 3)
        rows, valid = dynamics.branched_rollout(
            spread_model(offsets), zero, obs, jax.random.key(0), 3, fn
        )
        if halted:
            assert np.asarray(valid).tolist() == [True, True, False, False, False, False]
            np.testing.assert_allclose(rows.rew[:2], -100.0)
            assert np.asarray(rows.done[:2]).tolist() == [1.0, 1.0]
        else:
            assert bool(valid.all()) and np.allclose(rows.rew, 1.0, atol=0.05)
            assert not np.asarray(rows.done).any()
