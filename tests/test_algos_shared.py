"""Every registered algorithm: finite metrics and shapes, save/load, determinism.

Continuous algorithms train on a random continuous dataset, discrete ones (module attribute
`action_kind = "discrete"`) on a random discrete dataset with NUM_ACTIONS actions."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers import random_dataset, random_discrete_dataset, same_tree

from offrl import algos, checkpoint, core
from offrl.core import template_spec
from offrl.data.transforms import make_transforms

SMALL = {"hidden": (16, 16), "batch_size": 32}
OBS_DIM, ACT_DIM, NUM_ACTIONS = 5, 2, 3


def is_discrete(algo) -> bool:
    return algos.action_kind(algo) == "discrete"


def setup(name: str, seed: int = 0):
    algo = algos.get(name)
    cfg = algos.make_algo_config(name, SMALL)  # a preset's own fields, then the small sizes
    if is_discrete(algo):
        ds = random_discrete_dataset(n=300, obs_dim=OBS_DIM, num_actions=NUM_ACTIONS)
    else:
        ds = random_dataset(n=300, obs_dim=OBS_DIM, act_dim=ACT_DIM)
    tf = make_transforms(ds, cfg.normalize_obs, cfg.reward_scaling)
    state = algo.init(cfg, core.spec_from_dataset(ds, tf), jax.random.key(seed))
    return algo, cfg, state, core.algorithm_data(algo, cfg, ds, tf)


_CHUNKS = {}  # one compiled chunk per algorithm, reused by the three trainings


def train(name: str, steps: int = 6, seed: int = 0):
    algo, cfg, state, data = setup(name, seed)
    chunk = _CHUNKS.setdefault(name, core.make_update_chunk(algo, cfg, steps))
    state, metrics, finite = chunk(state, data, jax.random.key(seed + 1))
    return algo, cfg, state, core.chunk_metrics(metrics), finite


@pytest.fixture(scope="module", params=algos.NAMES)
def trained(request):
    return request.param, *train(request.param)


def test_metrics_finite_and_state_advances(trained):
    name, _, _, state, metrics, finite = trained
    assert bool(finite)
    assert int(state.step) == 6
    assert metrics, name
    for key, value in metrics.items():
        assert np.isfinite(float(value)), f"{name}: {key} = {value}"


def test_act_shapes_and_bounds(trained):
    name, algo, cfg, state, _, _ = trained
    obs = jnp.asarray(np.random.default_rng(0).normal(size=(7, OBS_DIM)), jnp.float32)
    for deterministic in (True, False):
        act = algo.act(cfg, state, obs, jax.random.key(3), deterministic)
        if is_discrete(algo):  # action indices
            assert act.shape == (7,) and act.dtype == jnp.int32, (name, act.shape, act.dtype)
            assert bool(jnp.all((act >= 0) & (act < NUM_ACTIONS))), name
        else:
            assert act.shape == (7, ACT_DIM), name
            assert bool(jnp.all((act >= -1) & (act <= 1))), name


def test_save_load_round_trip_acts_identically(trained, tmp_path):
    name, algo, cfg, state, _, _ = trained
    checkpoint.save(tmp_path, state, {"step": int(state.step)})
    if is_discrete(algo):
        spec = template_spec(OBS_DIM, 1, NUM_ACTIONS)
    else:
        spec = template_spec(OBS_DIM, ACT_DIM)
    template = algo.init(cfg, spec, jax.random.key(99))
    restored, meta = checkpoint.load(tmp_path, template)
    assert meta["step"] == 6
    obs = jnp.ones((4, OBS_DIM))
    key = jax.random.key(5)
    np.testing.assert_array_equal(
        algo.act(cfg, state, obs, key, True), algo.act(cfg, restored, obs, key, True)
    )
    for a, b in zip(jax.tree_util.tree_leaves(state), jax.tree_util.tree_leaves(restored)):
        np.testing.assert_array_equal(a, b)


def test_same_seed_same_parameters_other_seed_differs(trained):
    name, _, _, state, _, _ = trained
    _, _, again, _, _ = train(name)
    _, _, other, _, _ = train(name, seed=1)
    leaves = jax.tree_util.tree_leaves
    for a, b in zip(leaves(state), leaves(again)):
        np.testing.assert_array_equal(a, b)
    assert any(
        not np.array_equal(a, b)
        for a, b in zip(leaves(state), leaves(other))
        if np.asarray(a).dtype.kind == "f"
    )


@pytest.mark.parametrize("name", ["cql", "awac"])
def test_target_critics_start_as_copies_of_the_critics(name):
    """Declared in their docstrings: rlkit initializes the targets separately instead."""
    _, _, state, _ = setup(name)
    assert same_tree(state.target_critic, state.critic.params)


def test_atari_target_period_counts_updates_not_agent_steps():
    """batch_rl's target_update_period = 8000 counts agent steps; Dopamine updates every 4."""
    from offrl.algos import cql_discrete, ensemble_dqn, qrdqn, rem

    assert core.updates_in_agent_steps(8000, 4) == 2000
    for module in (qrdqn, rem, ensemble_dqn, cql_discrete):
        assert module.ATARI_TARGET_UPDATE_PERIOD == 2000
    with pytest.raises(ValueError, match="whole number"):
        core.updates_in_agent_steps(8001, 4)
    online, target = {"w": jnp.ones(2)}, {"w": jnp.zeros(2)}
    copied = [
        bool(core.update_target(online, target, jnp.asarray(s), 2000)["w"][0]) for s in (1999, 2000)
    ]
    assert copied == [False, True]
