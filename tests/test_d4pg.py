"""D4PG: the n-step columns and the clipped deterministic policy gradient by hand, the
distributional critic's target."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers import random_dataset

from offrl.algos import d4pg
from offrl.core import Batch, spec_from_dataset
from offrl.data.transforms import make_transforms


def test_n_step_columns_stop_at_episode_ends():
    """Rows 0-3 end by a timeout at 3, rows 4-5 by a terminal at 5; n = 3, γ = 0.5."""
    ds = random_dataset(n=6, obs_dim=1, act_dim=1, episode_len=4)
    terminals = np.zeros(6, bool)
    terminals[5] = True
    ds = ds.replace(rewards=np.arange(1.0, 7.0, dtype=np.float32), terminals=terminals)
    cfg = d4pg.Config(n_step=3, discount=0.5)
    cols = d4pg.extra_columns(cfg, ds, make_transforms(ds, normalize_obs=False))
    r = np.arange(1.0, 7.0)
    want_return = [
        r[0] + 0.5 * r[1] + 0.25 * r[2],
        r[1] + 0.5 * r[2] + 0.25 * r[3],
        r[2] + 0.5 * r[3],  # n′ = 2: the episode ends at row 3
        r[3],
        r[4] + 0.5 * r[5],
        r[5],
    ]
    np.testing.assert_allclose(cols["nstep_return"], want_return)
    # γ^{n′}, 0 where the last row is a terminal (rows 4 and 5 end at the terminal row 5)
    np.testing.assert_allclose(cols["nstep_discount"], [0.125, 0.125, 0.25, 0.5, 0.0, 0.0])
    last = [2, 3, 3, 3, 5, 5]
    np.testing.assert_allclose(cols["nstep_obs"], ds.next_observations[last], rtol=1e-6)


@pytest.fixture()
def zero_state():
    """Every weight zero: p uniform (Q = mean of the atoms = 0), π(s) = tanh(0) = 0."""
    ds = random_dataset(n=8, obs_dim=2, act_dim=2)
    cfg = d4pg.Config(hidden=(4,), num_atoms=3, v_min=-1.0, v_max=1.0)
    state = d4pg.init(cfg, spec_from_dataset(ds, make_transforms(ds, False)), jax.random.key(0))
    zero = lambda t: jax.tree_util.tree_map(jnp.zeros_like, t)  # noqa: E731
    actor, critic = state.actor.replace(params=zero(state.actor.params)), state.critic
    critic = critic.replace(params=zero(critic.params))
    state = state.replace(
        actor=actor, critic=critic, target_actor=actor.params, target_critic=critic.params
    )
    return cfg, state


def batch_of(ret, discount):
    b = len(ret)
    return Batch(
        obs=jnp.zeros((b, 2)), act=jnp.zeros((b, 2)), rew=jnp.zeros(b),
        next_obs=jnp.zeros((b, 2)), done=jnp.zeros(b),
        extra={"nstep_return": jnp.asarray(ret), "nstep_discount": jnp.asarray(discount),
               "nstep_obs": jnp.zeros((b, 2))},
    )  # fmt: skip


def test_critic_target_and_loss_by_hand(zero_state):
    """Atoms (-1, 0, 1), p′ uniform. R = 0.5, γ_t = 0.5: R + γ_t z = (0, 0.5, 1) -> m =
    (0, 1/2, 1/2); R = -1, γ_t = 0 (terminal): all on -1 -> m = (1, 0, 0). p uniform:
    L = log 3 for both."""
    cfg, state = zero_state
    loss, m = d4pg.critic_loss(state.critic.params, state, batch_of([0.5, -1.0], [0.5, 0.0]), cfg)
    assert float(loss) == pytest.approx(np.log(3), rel=1e-6)
    assert float(m["q_mean"]) == pytest.approx(0.0, abs=1e-7)


def test_actor_loss_by_hand():
    """No hidden layer: logits = W [s, a], π(s) = 0 (zero actor). At a = 0, p = 1/3 each, and
    ∇_a Q = Σ_k z_k p_k (w_k − w̄) = w_2 / 3 for action weights w_0 = w_1 = 0, w_2 = (6, −1.5):
    (2, −0.5), clipped to (1, −0.5). L_π = ½ ‖clip‖² = 0.625, its gradient −clip."""
    ds = random_dataset(n=8, obs_dim=2, act_dim=2)
    cfg = d4pg.Config(hidden=(), num_atoms=3, v_min=-1.0, v_max=1.0, layer_norm=False)
    state = d4pg.init(cfg, spec_from_dataset(ds, make_transforms(ds, False)), jax.random.key(0))
    zero = lambda t: jax.tree_util.tree_map(jnp.zeros_like, t)  # noqa: E731
    critic_params = zero(state.critic.params)
    kernel = np.zeros((4, 3), np.float32)  # rows: obs (2), act (2); columns: atoms
    kernel[2:, 2] = [6.0, -1.5]
    critic_params["params"]["MLP_0"]["Dense_0"]["kernel"] = jnp.asarray(kernel)
    state = state.replace(
        actor=state.actor.replace(params=zero(state.actor.params)),
        critic=state.critic.replace(params=critic_params),
    )
    batch = batch_of([0.0], [0.0])
    loss, m = d4pg.actor_loss(state.actor.params, state, batch, cfg)
    assert float(loss) == pytest.approx(0.625, rel=1e-5)
    assert float(m["dq_da_norm"]) == pytest.approx(np.hypot(1.0, 0.5), rel=1e-5)
    # the gradient flows to the actor's bias as −clip(∇_a Q) (π = tanh(b) at b = 0)
    grads = jax.grad(lambda p: d4pg.actor_loss(p, state, batch, cfg)[0])(state.actor.params)
    bias = grads["params"]["MLP_0"]["Dense_0"]["bias"]
    np.testing.assert_allclose(bias, [-1.0, 0.5], rtol=1e-5)
