"""Synthetic data for tests, the constant networks of the discrete algorithms' tests and a
constant dynamics model."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from offrl import core, dynamics
from offrl.data.dataset import Dataset
from offrl.data.transforms import make_transforms
from offrl.nets.dynamics import MEMBERS


def random_dataset(
    n: int = 200, obs_dim: int = 3, act_dim: int = 2, episode_len: int = 50, seed: int = 0
) -> Dataset:
    """Chained random transitions, episodes cut by timeouts, actions in [-1, 1]."""
    rng = np.random.default_rng(seed)
    obs = rng.normal(size=(n + 1, obs_dim)).astype(np.float32)
    timeouts = np.zeros(n, bool)
    timeouts[episode_len - 1 :: episode_len] = True
    return Dataset(
        observations=obs[:-1],
        actions=rng.uniform(-1, 1, size=(n, act_dim)).astype(np.float32),
        rewards=rng.normal(size=n).astype(np.float32),
        next_observations=obs[1:],
        terminals=np.zeros(n, bool),
        timeouts=timeouts,
        action_low=-np.ones(act_dim, np.float32),
        action_high=np.ones(act_dim, np.float32),
        env_id="Pendulum-v1" if (obs_dim, act_dim) == (3, 1) else None,
    )


def random_discrete_dataset(
    n: int = 200, obs_dim: int = 4, num_actions: int = 2, episode_len: int = 50, seed: int = 0
) -> Dataset:
    """Chained random transitions with uniform action indices 0..num_actions-1, (n, 1) int64;
    episodes cut by timeouts. obs_dim 4 with 2 actions names CartPole-v1."""
    rng = np.random.default_rng(seed)
    obs = rng.normal(size=(n + 1, obs_dim)).astype(np.float32)
    timeouts = np.zeros(n, bool)
    timeouts[episode_len - 1 :: episode_len] = True
    return Dataset(
        observations=obs[:-1],
        actions=rng.integers(0, num_actions, size=(n, 1)),
        rewards=rng.normal(size=n).astype(np.float32),
        next_observations=obs[1:],
        terminals=np.zeros(n, bool),
        timeouts=timeouts,
        env_id="CartPole-v1" if (obs_dim, num_actions) == (4, 2) else None,
        num_actions=num_actions,
    )


# --------------------------------------------------------------------------- discrete algorithms


def discrete_state(algo, cfg, obs_dim: int, num_actions: int) -> Any:
    """`algo.init` with key 0 on the spec of `random_discrete_dataset` (observations
    standardized)."""
    ds = random_discrete_dataset(obs_dim=obs_dim, num_actions=num_actions)
    tf = make_transforms(ds, normalize_obs=True)
    return algo.init(cfg, core.spec_from_dataset(ds, tf), jax.random.key(0))


def data_batch(state, obs_dim: int, num_actions: int, size: int = 16) -> core.Batch:
    """The first `size` transitions of `random_discrete_dataset`, transformed by the state's
    transforms: a real batch for update steps."""
    ds = random_discrete_dataset(obs_dim=obs_dim, num_actions=num_actions)
    return jax.tree_util.tree_map(lambda x: x[:size], core.to_device(ds, state.tf))


def hand_batch(actions: Sequence[int], obs_dim: int) -> core.Batch:
    """Two transitions at zero observations: actions[0] with reward 1, not terminal;
    actions[1] with reward 0, ending in a terminal."""
    z = np.zeros((2, obs_dim), np.float32)
    return core.Batch(
        obs=z,
        act=np.asarray(actions, np.int32),
        rew=np.array([1.0, 0.0], np.float32),
        next_obs=z,
        done=np.array([0.0, 1.0], np.float32),
    )


def constant_output(params: dict, out_bias: Sequence[float]) -> dict:
    """A DiscreteQNet's parameters made constant: every weight and bias 0 but the output
    layer's bias, so the network outputs `out_bias` for every input (laid out as the output
    layer: action-major, then heads or quantiles)."""
    zeros = jax.tree_util.tree_map(lambda x: np.zeros(x.shape, np.float32), params)
    layers = zeros["params"]["MLP_0"]
    output = max((k for k in layers if k.startswith("Dense_")), key=lambda k: int(k[6:]))
    layers[output]["bias"] = np.asarray(out_bias, np.float32)
    return zeros


def with_constant_q(state, online: Sequence[float], target: Sequence[float]):
    """The state with Q(s, ·) = online and Q'(s, ·) = target at every s (`constant_output`)."""
    return state.replace(
        q=state.q.replace(params=constant_output(state.q.params, online)),
        target_q=constant_output(state.target_q, target),
    )


def same_tree(a, b) -> bool:
    """Every leaf of `a` equal to the matching leaf of `b`."""
    leaves = jax.tree_util.tree_leaves
    return all(np.array_equal(x, y) for x, y in zip(leaves(a), leaves(b), strict=True))


def constant_dynamics(cfg, obs_dim, act_dim, mean_bias, raw_logvar_bias):
    """A dynamics model whose members all predict the same constants (zero kernels, the
    given biases of the last layer): mean (Δs, r) = mean_bias, raw log-variance as given."""
    model = dynamics.init(cfg, obs_dim, act_dim, jax.random.key(0))
    p = jax.tree_util.tree_map(jnp.zeros_like, model.params)
    layers = p["params"][MEMBERS]["MLP_0"]
    last = f"Dense_{len(cfg.hidden)}"
    bias = jnp.broadcast_to(
        jnp.concatenate([mean_bias, raw_logvar_bias]), layers[last]["bias"].shape
    )
    layers[last]["bias"] = bias
    p["params"]["max_logvar"] = jnp.full(obs_dim + 1, 0.5)
    p["params"]["min_logvar"] = jnp.full(obs_dim + 1, -10.0)
    return model.replace(params=p)
