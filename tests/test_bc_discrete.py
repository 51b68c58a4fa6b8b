"""Discrete BC: cross-entropy, accuracy and gradient on a constant network by hand; argmax and
sampled acting; it fits a labelling it can represent."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers import random_discrete_dataset

from offrl import core
from offrl.algos import bc_discrete
from offrl.data.transforms import make_transforms

OBS_DIM, NUM_ACTIONS, HIDDEN = 3, 2, (8, 8)
OUT = f"Dense_{len(HIDDEN)}"

loss_fn = jax.jit(bc_discrete.cross_entropy_loss, static_argnums=1)
grad_fn = jax.jit(
    jax.grad(lambda p, f, b: bc_discrete.cross_entropy_loss(p, f, b)[0]), static_argnums=1
)
act = jax.jit(bc_discrete.act, static_argnums=(0, 4))


def make_state(cfg: bc_discrete.Config, dataset=None):
    ds = dataset or random_discrete_dataset(obs_dim=OBS_DIM, num_actions=NUM_ACTIONS)
    tf = make_transforms(ds, cfg.normalize_obs)
    return bc_discrete.init(cfg, core.spec_from_dataset(ds, tf), jax.random.key(0))


def constant(params, out_bias):
    zeros = jax.tree_util.tree_map(lambda x: np.zeros(x.shape, np.float32), params)
    zeros["params"]["MLP_0"][OUT]["bias"] = np.asarray(out_bias, np.float32)
    return zeros


# logits [0, ln 3] everywhere: π = softmax = [1/4, 3/4]
LOGITS = [0.0, math.log(3.0)]


@pytest.fixture(scope="module")
def state():
    return make_state(bc_discrete.Config(hidden=HIDDEN))


def test_cross_entropy_accuracy_and_gradient_by_hand(state):
    params = constant(state.policy.params, LOGITS)
    batch = core.Batch(
        obs=np.zeros((3, OBS_DIM), np.float32),
        act=np.array([0, 1, 1], np.int32),
        rew=np.zeros(3, np.float32),
        next_obs=np.zeros((3, OBS_DIM), np.float32),
        done=np.zeros(3, np.float32),
    )
    loss, m = loss_fn(params, state.policy.apply_fn, batch)
    # -(ln 1/4 + 2 ln 3/4) / 3 = (ln 4 + 2 ln 4/3) / 3
    assert float(loss) == pytest.approx((math.log(4) + 2 * math.log(4 / 3)) / 3, rel=1e-6)
    assert float(m["accuracy"]) == pytest.approx(2 / 3)  # argmax 1 matches two of three
    # dL/dlogits = mean(softmax - onehot) = [1/4 - 1/3, 3/4 - 2/3] = [-1/12, 1/12]
    grads = grad_fn(params, state.policy.apply_fn, batch)
    np.testing.assert_allclose(grads["params"]["MLP_0"][OUT]["bias"], [-1 / 12, 1 / 12], rtol=1e-5)


def test_act_argmax_or_sampled(state):
    cfg = bc_discrete.Config(hidden=HIDDEN)
    s = state.replace(policy=state.policy.replace(params=constant(state.policy.params, LOGITS)))
    obs = jnp.zeros((4000, OBS_DIM))
    assert bool(jnp.all(act(cfg, s, obs, jax.random.key(0), True) == 1))
    sampled = act(cfg, s, obs, jax.random.key(0), False)
    assert sampled.dtype == jnp.int32
    # π(1|s) = 3/4; the std of the frequency over 4000 draws is below 0.007
    assert abs(float(jnp.mean(sampled == 1)) - 0.75) < 0.03


def test_fits_a_labelling_it_can_represent():
    # The action is 1 exactly when the first observation coordinate is positive.
    ds = random_discrete_dataset(n=512, obs_dim=OBS_DIM, num_actions=NUM_ACTIONS, seed=1)
    ds = ds.replace(actions=(ds.observations[:, :1] > 0).astype(np.int64))
    cfg = bc_discrete.Config(hidden=(32, 32), batch_size=64)
    s = make_state(cfg, ds)
    data = core.to_device(ds, s.tf)
    chunk = core.make_update_chunk(bc_discrete, cfg, 300)
    s, metrics, _ = chunk(s, data, jax.random.key(0))
    predicted = act(cfg, s, jnp.asarray(ds.observations), jax.random.key(0), True)
    assert float(jnp.mean(predicted == data.act)) > 0.95
    assert core.chunk_metrics(metrics)["bc_loss"] < math.log(2)  # better than uniform
