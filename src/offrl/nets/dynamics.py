"""The probabilistic dynamics ensemble's network (PETS, MBPO, MOPO).

`GaussianEnsemble(out_dim, num, hidden)` maps standardized inputs to a Gaussian per member:
(num, B, d_in) -> mean, log_var, each (num, B, out_dim); inputs (B, d_in) are shared by
every member. Each member is an MLP with swish activations and its own parameters (one vmap).
The log-variance is bounded softly between a learned maximum and minimum, shared by the
members (Chua et al. 2018, appendix A.1; MBPO's and MOPO's code):

    lv = max − softplus(max − raw),   lv = min + softplus(lv − min)

`max_logvar` starts at 0.5 and `min_logvar` at −10 (MBPO's values). The training loss adds
a small term that keeps the bounds tight (offrl.dynamics).
"""

from __future__ import annotations

from collections.abc import Sequence

import flax.linen as nn
import jax.numpy as jnp

from offrl.nets.mlp import MLP

MEMBERS = "VmapGaussianMLP_0"  # the members' parameter subtree, leading axis = member


class GaussianMLP(nn.Module):
    hidden: Sequence[int]
    out_dim: int

    @nn.compact
    def __call__(self, x: jnp.ndarray) -> tuple[jnp.ndarray, jnp.ndarray]:
        out = MLP(self.hidden, 2 * self.out_dim, activation=nn.swish)(x)
        return out[..., : self.out_dim], out[..., self.out_dim :]


class GaussianEnsemble(nn.Module):
    out_dim: int
    num: int = 7
    hidden: Sequence[int] = (200, 200, 200, 200)
    init_max_logvar: float = 0.5
    init_min_logvar: float = -10.0

    @nn.compact
    def __call__(self, x: jnp.ndarray) -> tuple[jnp.ndarray, jnp.ndarray]:
        if x.ndim == 2:  # one batch for every member
            x = jnp.broadcast_to(x, (self.num, *x.shape))
        members = nn.vmap(
            GaussianMLP,
            variable_axes={"params": 0},
            split_rngs={"params": True},
            in_axes=0,
            out_axes=0,
            axis_size=self.num,
        )
        mean, raw = members(self.hidden, self.out_dim)(x)
        full = lambda v: lambda key, shape: jnp.full(shape, v)  # noqa: E731
        max_lv = self.param("max_logvar", full(self.init_max_logvar), (self.out_dim,))
        min_lv = self.param("min_logvar", full(self.init_min_logvar), (self.out_dim,))
        return mean, bound_logvar(raw, max_lv, min_lv)


def bound_logvar(raw: jnp.ndarray, max_lv: jnp.ndarray, min_lv: jnp.ndarray) -> jnp.ndarray:
    """The soft bounds: smooth, ≥ min, ≤ max + softplus(min − max) (the lower bound is
    applied last), ≈ raw well inside them."""
    lv = max_lv - nn.softplus(max_lv - raw)
    return min_lv + nn.softplus(lv - min_lv)
