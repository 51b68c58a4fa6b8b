"""MOPO: the uncertainty penalty on a tiny ensemble by hand; branched rollouts that stop at a
terminal; the on-device ring buffer; the mixed minibatch; a loaded dynamics model."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers import constant_dynamics, random_dataset

from offrl import dynamics, training
from offrl.algos import mopo
from offrl.core import Batch, RingBuffer, sample, spec_from_dataset, to_device
from offrl.data import io
from offrl.data.transforms import make_transforms
from offrl.errors import ConfigError

TINY = dynamics.DynamicsConfig(num_members=3, num_elites=2, hidden=(4,), weight_decay=(0, 0))
FLOOR = -100.0  # a raw log-variance far below the bound: σ = e^{-10/2}


def zero_policy(obs, key):
    return jnp.zeros((obs.shape[0], 1))


def test_uncertainty_is_the_largest_std_norm():
    std = jnp.array([[[3.0, 4.0]], [[1.0, 1.0]]])  # 2 members, 1 row: norms 5 and √2
    assert float(dynamics.uncertainty(std)[0]) == pytest.approx(5.0)


def test_penalized_reward_by_hand():
    """Δs has raw log-variance 0 (bounded: lv = −10 + softplus(0.5 − softplus(0.5) + 10)), the
    reward the floor: u = √3 · e^{lv/2} (the reward's σ adds 2e-5), r̃ = 1 − λ u."""
    model = constant_dynamics(
        TINY, 3, 1, jnp.array([0.0, 0.0, 0.0, 1.0]), jnp.array([0.0] * 3 + [FLOOR])
    )
    softplus = lambda x: np.log1p(np.exp(x))  # noqa: E731
    lv = -10 + softplus(0.5 - softplus(0.5) + 10)
    u = np.sqrt(3 * np.exp(lv) + np.exp(-10))
    obs = jnp.ones((4, 3))
    rows, valid = dynamics.branched_rollout(
        model, zero_policy, obs, jax.random.key(0), 2, dynamics.penalized(2.5)
    )
    assert rows.rew.shape == (8,) and bool(valid.all())
    np.testing.assert_allclose(rows.rew, 1 - 2.5 * u, atol=0.03)  # the reward's own noise σ 0.007


def test_rollout_stops_at_a_terminal():
    """Hopper: z falls 0.25 a step from 1.0; z = 0.5 after the second step is a fall."""
    model = constant_dynamics(TINY, 3, 1, jnp.array([-0.25, 0.0, 0.0, 1.0]), jnp.full(4, FLOOR))
    model = model.replace(termination="hopper")
    obs = jnp.array([[1.0, 0.0, 0.0]])
    rows, valid = dynamics.branched_rollout(model, zero_policy, obs, jax.random.key(0), 5)
    assert np.asarray(valid).tolist() == [True, True, False, False, False]
    assert np.asarray(rows.done[:2]).tolist() == [0.0, 1.0]
    np.testing.assert_allclose(rows.next_obs[:2, 0], [0.75, 0.5], atol=0.04)


def rows_of(values) -> Batch:
    v = jnp.asarray(values, jnp.float32)
    col = v[:, None]
    return Batch(obs=col, act=col, rew=v, next_obs=col, done=jnp.zeros_like(v))


def test_ring_buffer_drops_invalid_rows_and_wraps():
    buf = RingBuffer.create(4, 1, 1)
    buf = buf.add(rows_of([1, 2, 3]), jnp.array([True, False, True]))
    assert int(buf.size) == 2 and int(buf.ptr) == 2
    assert np.asarray(buf.rows.rew).tolist() == [1, 3, 0, 0]
    buf = buf.add(rows_of([4, 5, 6]), jnp.array([True, True, True]))  # wraps: 6 replaces 1
    assert int(buf.size) == 4 and int(buf.ptr) == 1
    assert np.asarray(buf.rows.rew).tolist() == [6, 3, 4, 5]
    sampled = buf.sample(jax.random.key(0), 50)
    assert set(np.asarray(sampled.rew).tolist()) <= {3.0, 4.0, 5.0, 6.0}


def test_mixed_batch_takes_real_rows_first():
    cfg = mopo.Config(batch_size=8, real_ratio=0.25)
    real, model_rows = rows_of(np.arange(8)), rows_of(100 + np.arange(8))
    mixed = mopo.mixed_batch(cfg, real, model_rows)
    assert np.asarray(mixed.rew).tolist() == [0, 1, 100, 101, 102, 103, 104, 105]
    assert cfg.buffer_capacity == 50 * 5 * 1000 * 5


def test_a_trained_model_is_loaded_not_refitted(tmp_path):
    data = random_dataset(400, 3, 1, seed=2)
    path = io.write_npz(data, tmp_path / "data.npz")
    model, record = dynamics.train(dynamics.DynamicsConfig(max_epochs=1, **_tiny_fields()), data, 0)
    dynamics.save(tmp_path / "model", model, TINY, {"record": record})
    small = {"hidden": (16, 16), "batch_size": 32, "rollout_batch_size": 8000, "rollout_freq": 1000}
    run = tmp_path / "run"
    training.train(
        "mopo", str(path), 4, out=run, eval_every=4, eval_episodes=1, chunk_size=4,
        overrides=small | {"dynamics": str(tmp_path / "model"), "model_retain_epochs": 1},
        progress=False,
    )  # fmt: skip
    first = (run / "metrics.jsonl").read_text().splitlines()[0]
    assert '"kind": "pretrain"' in first and str(tmp_path / "model") in first
    with pytest.raises(ConfigError, match="not a dynamics model"):
        training.train(
            "mopo", str(path), 4, out=tmp_path / "run2", eval_every=4, eval_episodes=1,
            overrides=small | {"dynamics": str(tmp_path)}, progress=False,
        )  # fmt: skip


def _tiny_fields() -> dict:
    return {"num_members": 3, "num_elites": 2, "hidden": (4,), "weight_decay": (0.0, 0.0)}


def test_rollouts_run_on_every_rollout_every_th_update():
    """rollout_every = 3: updates 0 and 3 add branches_per_rollout · h rows, the others none
    (and report no rollout metrics)."""
    data = random_dataset(200, 3, 1, seed=4)
    cfg = mopo.Config(
        hidden=(8,), batch_size=16, rollout_batch_size=4000, rollout_freq=1000,
        rollout_length=2, rollout_every=3, model_retain_epochs=1,
    )  # fmt: skip
    assert cfg.branches_per_rollout == 12
    tf = make_transforms(data, normalize_obs=False)
    state = mopo.init(cfg, spec_from_dataset(data, tf), jax.random.key(0))
    model = constant_dynamics(TINY, 3, 1, jnp.zeros(4), jnp.full(4, FLOOR))
    state = state.replace(model=model)
    batch = sample(to_device(data, tf), jax.random.key(1), cfg.batch_size)
    step = jax.jit(lambda s, k: mopo.update(cfg, s, batch, k))
    sizes, reported = [], []
    for i in range(5):
        state, metrics = step(state, jax.random.key(i))
        sizes.append(int(state.buffer.size))
        reported.append(bool(np.isfinite(metrics["rollout_valid"])))
    assert sizes == [24, 24, 24, 48, 48]
    assert reported == [True, False, False, True, False]
