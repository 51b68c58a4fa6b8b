"""EDAC and SAC-N: the gradient diversity term by hand, the N-critic ensemble, the preset
and the per-dataset settings."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from offrl import algos
from offrl.algos import edac
from offrl.core import template_spec
from offrl.nets import QEnsemble


def linear_critics(act_weights: list[list[float]], obs_dim: int = 1):
    """A QEnsemble with no hidden layer, Q_i(s, a) = w_i · [s, a]: ∇_a Q_i = w_i's action part."""
    n, act_dim = len(act_weights), len(act_weights[0])
    module = QEnsemble((), num=n)
    params = module.init(jax.random.key(0), jnp.zeros((1, obs_dim)), jnp.zeros((1, act_dim)))
    kernel = np.zeros((n, obs_dim + act_dim, 1), np.float32)
    kernel[:, :obs_dim, 0] = 0.5
    kernel[:, obs_dim:, 0] = np.asarray(act_weights)
    layer = params["params"]["VmapQNet_0"]["MLP_0"]["Dense_0"]
    layer["kernel"] = jnp.asarray(kernel)
    return params


def test_diversity_loss_by_hand():
    """Unit gradients (1, 0), (0, 1), (0.6, 0.8): Σ_{i≠j} ⟨g_i, g_j⟩ = 2 (0 + 0.6 + 0.8) = 2.8,
    over N - 1 = 2: 1.4 on every row."""
    params = linear_critics([[1.0, 0.0], [0.0, 2.0], [3.0, 4.0]])
    obs, act = jnp.ones((4, 1)), jnp.zeros((4, 2))
    assert float(edac.diversity_loss(params, (), obs, act)) == pytest.approx(1.4, rel=1e-6)


def test_diversity_loss_is_zero_for_orthogonal_and_one_for_aligned_pairs():
    obs, act = jnp.zeros((2, 1)), jnp.zeros((2, 2))
    orthogonal = linear_critics([[1.0, 0.0], [0.0, 5.0]])
    aligned = linear_critics([[1.0, 1.0], [2.0, 2.0]])
    assert float(edac.diversity_loss(orthogonal, (), obs, act)) == pytest.approx(0.0, abs=1e-7)
    assert float(edac.diversity_loss(aligned, (), obs, act)) == pytest.approx(2.0, rel=1e-6)


def test_diversity_gradient_pushes_critics_apart():
    """One step of -∇ L_ES on two nearly aligned critics lowers their cosine."""
    params = linear_critics([[1.0, 0.1], [1.0, -0.1]])
    obs, act = jnp.zeros((1, 1)), jnp.zeros((1, 2))
    loss = lambda p: edac.diversity_loss(p, (), obs, act)  # noqa: E731
    grads = jax.grad(loss)(params)
    stepped = jax.tree_util.tree_map(lambda p, g: p - 0.1 * g, params, grads)
    assert float(loss(stepped)) < float(loss(params))


def test_n_critics_and_the_preset():
    cfg = algos.make_algo_config("edac", {"num_critics": 5, "hidden": (8,)})
    state = edac.init(cfg, template_spec(3, 2), jax.random.key(0))
    q = state.critic.apply_fn(state.critic.params, jnp.zeros((4, 3)), jnp.zeros((4, 2)))
    assert q.shape == (5, 4)
    sac_n = algos.make_algo_config("sac_n", {})
    assert sac_n.eta == 0.0 and algos.get("sac_n") is edac
    with pytest.raises(ValueError, match="2 action dimensions"):
        edac.init(cfg, template_spec(3, 1), jax.random.key(0))
    with pytest.raises(ValueError, match="num_critics"):
        edac.init(algos.make_algo_config("edac", {"num_critics": 1}), template_spec(3, 2),
                  jax.random.key(0))  # fmt: skip


def test_per_dataset_settings():
    assert algos.task_defaults("edac", "halfcheetah-medium-expert", None) == {
        "num_critics": 10, "eta": 5.0,
    }  # fmt: skip
    assert algos.task_defaults("sac_n", "hopper-medium", None) == {"num_critics": 500}
    assert algos.task_defaults("marwil", "hopper-medium", None) == {}  # no table of its own
