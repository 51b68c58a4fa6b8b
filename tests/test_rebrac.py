"""ReBRAC: the dataset's next actions, the BC terms of actor and critic target by hand, the
per-dataset β pairs."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers import random_dataset

from offrl import algos
from offrl.algos import rebrac
from offrl.core import Batch, spec_from_dataset
from offrl.data.transforms import make_transforms


def test_next_actions_stay_inside_episodes():
    ds = random_dataset(n=5, act_dim=1, episode_len=3)  # episodes: rows 0-2 and 3-4
    cols = rebrac.extra_columns(rebrac.Config(), ds, make_transforms(ds, normalize_obs=False))
    a = ds.actions[:, 0]
    np.testing.assert_allclose(cols["next_act"][:, 0], [a[1], a[2], a[2], a[4], a[4]], rtol=1e-6)
    assert cols["has_next_act"].tolist() == [1, 1, 0, 1, 0]


def test_bc_penalty_sums_over_action_dimensions():
    act, data = jnp.array([[0.5, -0.5], [1.0, 0.0]]), jnp.zeros((2, 2))
    np.testing.assert_allclose(rebrac.bc_penalty(act, data), [0.5, 1.0])


def constant_nets(state, q_value: float, target_q: float):
    """Every kernel zero: π(s) = π′(s) = tanh(0) = 0, Q = q_value, Q′ = target_q."""
    zero = lambda tree: jax.tree_util.tree_map(jnp.zeros_like, tree)  # noqa: E731

    def with_last_bias(params, value):
        params = zero(params)
        members = params["params"]["VmapQNet_0"]["MLP_0"]
        last = sorted(k for k in members if k.startswith("Dense"))[-1]
        members[last]["bias"] = jnp.full_like(members[last]["bias"], value)
        return params

    actor = state.actor.replace(params=zero(state.actor.params))
    critic = state.critic.replace(params=with_last_bias(state.critic.params, q_value))
    return state.replace(
        actor=actor,
        critic=critic,
        target_actor=actor.params,
        target_critic=with_last_bias(state.critic.params, target_q),
    )


@pytest.fixture()
def setup():
    ds = random_dataset(n=10, obs_dim=3, act_dim=2)
    cfg = rebrac.Config(hidden=(4,), critic_bc_coef=0.5, actor_bc_coef=0.2, policy_noise=0.0)
    tf = make_transforms(ds, normalize_obs=False)
    state = rebrac.init(cfg, spec_from_dataset(ds, tf), jax.random.key(0))
    return cfg, constant_nets(state, q_value=1.0, target_q=3.0)


def test_critic_target_by_hand(setup):
    """ã = 0 (no noise), Q′ = 3: y = r + γ (1 − d)(3 − β_c ‖a′‖² · has_next). Rows: a′ = (1, 1)
    bootstrapped (y = 1 + 0.99 (3 − 0.5·2) = 2.98); a terminal (y = r = 2); a row without a
    next action (y = 0 + 0.99·3 = 2.97). L_Q = Σ_{2 critics} mean((1 − y)²)."""
    cfg, state = setup
    batch = Batch(
        obs=jnp.zeros((3, 3)),
        act=jnp.zeros((3, 2)),
        rew=jnp.array([1.0, 2.0, 0.0]),
        next_obs=jnp.zeros((3, 3)),
        done=jnp.array([0.0, 1.0, 0.0]),
        extra={"next_act": jnp.ones((3, 2)), "has_next_act": jnp.array([1.0, 1.0, 0.0])},
    )
    loss, m = rebrac.critic_loss(state.critic.params, state, batch, cfg, jax.random.key(0))
    y = np.array([2.98, 2.0, 2.97])
    assert float(loss) == pytest.approx(2 * np.mean((1 - y) ** 2), rel=1e-5)
    assert float(m["critic_bc"]) == pytest.approx(4 / 3, rel=1e-6)  # ‖ã − a′‖² = 2, twice


def test_actor_loss_by_hand(setup):
    """π(s) = 0, Q = 1, λ = 1/|1| = 1, data actions (1, -1): L_π = 0.2 · 2 − 1 = −0.6."""
    cfg, state = setup
    batch = Batch(
        obs=jnp.zeros((2, 3)), act=jnp.array([[1.0, -1.0], [1.0, -1.0]]), rew=jnp.zeros(2),
        next_obs=jnp.zeros((2, 3)), done=jnp.zeros(2),
    )  # fmt: skip
    loss, m = rebrac.actor_loss(state.actor.params, state, batch, cfg)
    assert float(loss) == pytest.approx(-0.6, rel=1e-6)
    assert float(m["lambda"]) == pytest.approx(1.0)


def test_layer_norm_critics_and_per_dataset_pairs():
    cfg = algos.make_algo_config("rebrac", {})
    assert cfg.critic_layer_norm and cfg.batch_size == 1024 and cfg.hidden == (256, 256, 256)
    assert algos.task_defaults("rebrac", "hopper-medium-replay", None) == {
        "actor_bc_coef": 0.05, "critic_bc_coef": 0.5,
    }  # fmt: skip
