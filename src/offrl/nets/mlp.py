"""Multi-layer perceptrons, value heads and the vmapped Q-ensemble."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp


class MLP(nn.Module):
    hidden: Sequence[int]
    out_dim: int
    activation: Callable = nn.relu
    layer_norm: bool = False

    @nn.compact
    def __call__(self, x: jnp.ndarray) -> jnp.ndarray:
        for width in self.hidden:
            x = nn.Dense(width)(x)
            if self.layer_norm:
                x = nn.LayerNorm()(x)
            x = self.activation(x)
        return nn.Dense(self.out_dim)(x)


class QNet(nn.Module):
    hidden: Sequence[int]
    layer_norm: bool = False

    @nn.compact
    def __call__(self, obs: jnp.ndarray, act: jnp.ndarray) -> jnp.ndarray:
        x = jnp.concatenate([obs, act], axis=-1)
        return MLP(self.hidden, 1, layer_norm=self.layer_norm)(x)[..., 0]


class DistributionalQNet(nn.Module):
    """Logits of a categorical return distribution on `num_atoms` atoms per (s, a): (..., K)
    (D4PG's critic)."""

    hidden: Sequence[int]
    num_atoms: int
    layer_norm: bool = False

    @nn.compact
    def __call__(self, obs: jnp.ndarray, act: jnp.ndarray) -> jnp.ndarray:
        x = jnp.concatenate([obs, act], axis=-1)
        return MLP(self.hidden, self.num_atoms, layer_norm=self.layer_norm)(x)


def independent(module: type[nn.Module], num: int) -> type[nn.Module]:
    """`num` copies of `module` with their own parameters (a leading axis of size num),
    applied to the same inputs in one vmap: their outputs stacked on a new axis 0."""
    return nn.vmap(
        module,
        variable_axes={"params": 0},
        split_rngs={"params": True},
        in_axes=None,
        out_axes=0,
        axis_size=num,
    )


class QEnsemble(nn.Module):
    """`num` independent Q-networks evaluated in one vmap: output (num, ...batch)."""

    hidden: Sequence[int]
    num: int = 2
    layer_norm: bool = False

    @nn.compact
    def __call__(self, obs: jnp.ndarray, act: jnp.ndarray) -> jnp.ndarray:
        return independent(QNet, self.num)(self.hidden, self.layer_norm)(obs, act)


def ensemble_member(params: dict, index: int) -> dict:
    """One member's parameters of a QEnsemble, to apply with QNet: evaluating a single
    critic (TD3's actor loss reads Q1 only) without paying for the whole ensemble."""
    members = params["params"]["VmapQNet_0"]
    return {"params": jax.tree_util.tree_map(lambda p: p[index], members)}


class ValueNet(nn.Module):
    hidden: Sequence[int]
    layer_norm: bool = False

    @nn.compact
    def __call__(self, obs: jnp.ndarray) -> jnp.ndarray:
        return MLP(self.hidden, 1, layer_norm=self.layer_norm)(obs)[..., 0]
