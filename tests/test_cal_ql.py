"""Cal-QL: the push-down's lower bound by hand, the Monte-Carlo column, CQL unchanged without
the bound."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers import random_dataset

from offrl import algos
from offrl.algos import cal_ql, cql
from offrl.core import spec_from_dataset
from offrl.data.transforms import make_transforms


def constant_critics(state, value: float):
    """Every kernel zero, the last bias `value`: Q_i(s, a) = value everywhere."""
    params = jax.tree_util.tree_map(jnp.zeros_like, state.critic.params)
    layers = params["params"]["VmapQNet_0"]["MLP_0"]
    last = sorted(k for k in layers if k.startswith("Dense"))[-1]
    layers[last]["bias"] = jnp.full_like(layers[last]["bias"], value)
    return params


@pytest.fixture()
def setup():
    ds = random_dataset(n=20, obs_dim=2, act_dim=1)
    cfg = cal_ql.Config(hidden=(4,), num_sampled_actions=1, cql_alpha=2.0)
    tf = make_transforms(ds, normalize_obs=False)
    state = cal_ql.init(cfg, spec_from_dataset(ds, tf), jax.random.key(0))
    return cfg, state, constant_critics(state, 1.0)


def rows(lower_bound=None) -> dict:
    """One state, N = 1, |A| = 1: acts (1, 4, 1) = data, uniform, π(s), π(s′); log-densities 0."""
    out = {
        "obs": jnp.zeros((1, 2)),
        "acts": jnp.zeros((1, 4, 1)),
        "logp_pi": jnp.zeros((1, 1)),
        "logp_next_pi": jnp.zeros((1, 1)),
        "target": jnp.array([0.5]),
        "push_up_weight": jnp.ones(1),
    }
    return out if lower_bound is None else out | {"lower_bound": jnp.array([lower_bound])}


def test_push_down_bounded_by_the_mc_return(setup):
    """Q ≡ 1, V^μ = 3: x = (1 − log 0.5, max(1, 3), max(1, 3)) = (1.693, 3, 3);
    C = log(e^1.693 + 2 e^3); per critic TD (1 − 0.5)² + α (C − 1); two critics."""
    cfg, state, params = setup
    loss, m = cql.critic_loss(params, rows(lower_bound=3.0), state, cfg)
    lse = math.log(math.exp(1 - math.log(0.5)) + 2 * math.exp(3.0))
    assert float(loss) == pytest.approx(2 * (0.25 + 2.0 * (lse - 1.0)), rel=1e-5)
    assert float(m["bound_rate"]) == 1.0


def test_a_bound_below_q_changes_nothing(setup):
    cfg, state, params = setup
    bounded, _ = cql.critic_loss(params, rows(lower_bound=-5.0), state, cfg)
    plain, m = cql.critic_loss(params, rows(), state, cfg)
    assert float(bounded) == pytest.approx(float(plain), rel=1e-7)
    assert "bound_rate" not in m
    lse = math.log(math.exp(1 - math.log(0.5)) + 2 * math.exp(1.0))
    assert float(plain) == pytest.approx(2 * (0.25 + 2.0 * (lse - 1.0)), rel=1e-5)


def test_mc_return_column():
    ds = random_dataset(n=4, act_dim=1, episode_len=2)
    ds = ds.replace(rewards=np.array([1.0, 2.0, 3.0, 4.0], np.float32))
    cfg = cal_ql.Config(discount=0.5)
    cols = cal_ql.extra_columns(cfg, ds, make_transforms(ds, normalize_obs=False))
    np.testing.assert_allclose(cols["mc_return"], [1 + 0.5 * 2, 2, 3 + 0.5 * 4, 4])


def test_registered_with_cql_defaults():
    cfg = algos.make_algo_config("cal_ql", {})
    assert cfg.cql_alpha == cql.Config().cql_alpha and isinstance(cfg, cql.Config)
