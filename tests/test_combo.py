"""COMBO: the regularizer on a tiny batch by hand (push-down over every state of the mixed
minibatch, push-up over its dataset rows only); the update's minibatch composition."""

from __future__ import annotations

import math

import jax.numpy as jnp
import pytest

from offrl.algos import combo, cql


def test_regularizer_pushes_up_the_dataset_rows_only():
    """Two states, one sample of each kind, no importance sampling: the logsumexp of state i
    runs over (q_rand, q_data, q_next_pi, q_pi) = (0, q_i, 0, 0). Row 0 is the dataset's."""
    zeros = jnp.zeros((2, 1))
    q_data = jnp.array([1.0, 3.0])
    args = (zeros, zeros, zeros, zeros, zeros, q_data)
    lse = [math.log(3 + math.e), math.log(3 + math.e**3)]
    combo_gap = cql.cql_penalty(*args, 1, 1.0, False, push_up_rows=1)
    assert float(combo_gap) == pytest.approx(sum(lse) / 2 - 1.0, rel=1e-6)
    cql_gap = cql.cql_penalty(*args, 1, 1.0, False)  # CQL: every row pushed up
    assert float(cql_gap) == pytest.approx(sum(lse) / 2 - 2.0, rel=1e-6)


def test_defaults_mix_half_dataset_half_model():
    cfg = combo.Config()
    assert cfg.real_rows == 128 and cfg.batch_size == 256 and cfg.cql_alpha == 5.0
    assert cfg.buffer_capacity == 50 * 5 * 1000 * 5
