"""BC: the MSE and Gaussian log-likelihood losses by hand, an invalid variant, learning a small
linear task, acting."""

from __future__ import annotations

import functools
import math

import jax
import numpy as np
import pytest
from helpers import random_dataset
from scipy import stats

from offrl import core
from offrl.algos import bc
from offrl.data.transforms import make_transforms

OBS_DIM, ACT_DIM, HIDDEN = 3, 2, (8, 8)
OUT = f"Dense_{len(HIDDEN)}"  # the policy MLP's output layer
LOG_2PI = math.log(2 * math.pi)

# Two hand-made pairs (s, a); the constant policies below output the mean π = (0.5, 0).
ACT = np.array([[0.5, -0.5], [0.0, 1.0]], np.float32)
PI = np.array([0.5, 0.0])
BATCH = core.Batch(
    obs=np.zeros((2, OBS_DIM), np.float32),
    act=ACT,
    rew=np.zeros(2, np.float32),
    next_obs=np.zeros((2, OBS_DIM), np.float32),
    done=np.zeros(2, np.float32),
)


def linear_dataset():
    """Actions a linear function of the observation, a = s W / 4 (inside [-1, 1] but rarely)."""
    ds = random_dataset(n=400, obs_dim=OBS_DIM, act_dim=ACT_DIM)
    w = np.array([[1.0, 0.0], [-1.0, 0.5], [0.0, 1.0]], np.float32)
    return ds.replace(actions=np.clip(ds.observations @ w / 4, -1, 1).astype(np.float32))


def constant(params, log_std=None):
    """The policy made constant: zero weights, output bias arctanh(PI) so tanh(MLP(s)) = PI;
    the Gaussian's log-std parameter set to `log_std` (zeros by default)."""
    zeros = jax.tree_util.tree_map(lambda x: np.zeros(x.shape, np.float32), params)
    zeros["params"]["MLP_0"][OUT]["bias"] = np.arctanh(PI).astype(np.float32)
    if log_std is not None:
        zeros["params"]["log_std"] = np.full(ACT_DIM, log_std, np.float32)
    return zeros


@functools.cache
def make(variant: str):
    """Config, initial state and data on device for a variant; made once, never changed."""
    cfg = bc.Config(variant=variant, hidden=HIDDEN, batch_size=64)
    dataset = linear_dataset()
    tf = make_transforms(dataset, cfg.normalize_obs, cfg.reward_scaling)
    state = bc.init(cfg, core.spec_from_dataset(dataset, tf), jax.random.PRNGKey(0))
    return cfg, state, core.to_device(dataset, tf)


@pytest.fixture(scope="module", params=["deterministic", "gaussian"])
def setup(request):
    return make(request.param)


def loss_fn(cfg, state):
    fn = bc.mse_loss if cfg.variant == "deterministic" else bc.nll_loss
    return jax.jit(lambda params, batch: fn(params, state.policy.apply_fn, batch))


def test_loss_on_constant_policy(setup):
    cfg, state, _ = setup
    loss, m = loss_fn(cfg, state)(constant(state.policy.params), BATCH)
    if cfg.variant == "deterministic":
        # mean over all 4 entries of (π - a)²: (0² + 0.5² + 0.5² + 1²) / 4 = 0.375
        assert float(loss) == pytest.approx(0.375)
    else:
        # log σ = 0, so -log N(a; μ, 1) = Σ_dims (0.5 z² + 0.5 log 2π) with z = a - μ:
        #   pair 1: z = (0, -0.5):  0.125 + log 2π;  pair 2: z = (-0.5, 1):  0.625 + log 2π
        # mean: 0.375 + log 2π ≈ 2.212877
        assert float(loss) == pytest.approx(0.375 + LOG_2PI, rel=1e-6)
        assert float(m["log_std"]) == 0.0
    assert float(m["bc_loss"]) == pytest.approx(float(loss))


@pytest.mark.parametrize("log_std, effective", [(math.log(2.0), math.log(2.0)), (10.0, 2.0)])
def test_gaussian_nll_matches_scipy(log_std, effective):
    cfg, state, _ = make("gaussian")
    loss, m = loss_fn(cfg, state)(constant(state.policy.params, log_std), BATCH)
    # log σ is clipped to [-5, 2]: a parameter of 10 acts as 2.
    expected = -stats.norm.logpdf(ACT, loc=PI, scale=math.exp(effective)).sum(-1).mean()
    assert float(loss) == pytest.approx(expected, rel=1e-5)
    assert float(m["log_std"]) == pytest.approx(effective)


def test_invalid_variant_raises():
    cfg = bc.Config(variant="stochastic", hidden=HIDDEN)
    dataset = linear_dataset()
    spec = core.spec_from_dataset(dataset, make_transforms(dataset, cfg.normalize_obs))
    with pytest.raises(ValueError, match="variant"):
        bc.init(cfg, spec, jax.random.PRNGKey(0))


def test_learns_a_linear_task(setup):
    cfg, state, data = setup
    loss = loss_fn(cfg, state)
    before = float(loss(state.policy.params, data)[0])
    chunk = core.make_update_chunk(bc, cfg, 1500)
    new, metrics, finite = chunk(state, data, jax.random.PRNGKey(1))
    after = float(loss(new.policy.params, data)[0])
    assert bool(finite) and int(new.step) == 1500
    if cfg.variant == "deterministic":
        # the MSE of the initial network falls at least twentyfold
        assert after < before / 20, (before, after)
    else:
        # the NLL falls by at least 1 nat per action (σ shrinks as the mean fits)
        assert after < before - 2.0, (before, after)
        assert core.chunk_metrics(metrics)["log_std"] < 0.0


def test_act_shapes_and_bounds(setup):
    cfg, state, data = setup
    obs = np.random.default_rng(0).normal(size=(5, OBS_DIM)).astype(np.float32)
    a = bc.act(cfg, state, obs, jax.random.PRNGKey(0), deterministic=True)
    b = bc.act(cfg, state, obs, jax.random.PRNGKey(0), deterministic=False)
    assert a.shape == b.shape == (5, ACT_DIM)
    assert bool(np.all(np.abs(a) <= 1.0)) and bool(np.all(np.abs(b) <= 1.0))
    if cfg.variant == "deterministic":
        np.testing.assert_array_equal(a, b)  # nothing to sample
    else:
        assert not np.allclose(a, b)  # σ = 1 at init: a sample differs from the mean
