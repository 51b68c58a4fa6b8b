"""Policies over actions in [-1, 1] (the transforms map them to the environment's bounds)."""

from __future__ import annotations

from collections.abc import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from offrl.nets.mlp import MLP

LOG_2PI = jnp.log(2.0 * jnp.pi)


def gaussian_log_prob(x: jnp.ndarray, mean: jnp.ndarray, log_std: jnp.ndarray) -> jnp.ndarray:
    """log N(x; mean, exp(log_std)^2), summed over the last axis."""
    z = (x - mean) * jnp.exp(-log_std)
    return jnp.sum(-0.5 * z**2 - log_std - 0.5 * LOG_2PI, axis=-1)


class DeterministicPolicy(nn.Module):
    """a = tanh(MLP(s)): the actor of TD3, TD3+BC and deterministic BC."""

    hidden: Sequence[int]
    act_dim: int

    @nn.compact
    def __call__(self, obs: jnp.ndarray) -> jnp.ndarray:
        return jnp.tanh(MLP(self.hidden, self.act_dim)(obs))


class GaussianPolicy(nn.Module):
    """N(tanh(MLP(s)), exp(log_std)^2) with a state-independent log std (IQL, Gaussian BC).

    Returns (mean, log_std); the mean is squashed, samples are not.
    """

    hidden: Sequence[int]
    act_dim: int
    log_std_min: float = -5.0
    log_std_max: float = 2.0

    @nn.compact
    def __call__(self, obs: jnp.ndarray) -> tuple[jnp.ndarray, jnp.ndarray]:
        mean = jnp.tanh(MLP(self.hidden, self.act_dim)(obs))
        log_std = self.param("log_std", nn.initializers.zeros, (self.act_dim,))
        log_std = jnp.clip(log_std, self.log_std_min, self.log_std_max)
        return mean, jnp.broadcast_to(log_std, mean.shape)


class TanhGaussianPolicy(nn.Module):
    """a = tanh(u), u ~ N(mu(s), sigma(s)^2): the SAC/CQL actor. Returns (mean, log_std) of u."""

    hidden: Sequence[int]
    act_dim: int
    log_std_min: float = -20.0
    log_std_max: float = 2.0

    @nn.compact
    def __call__(self, obs: jnp.ndarray) -> tuple[jnp.ndarray, jnp.ndarray]:
        out = MLP(self.hidden, 2 * self.act_dim)(obs)
        mean, log_std = jnp.split(out, 2, axis=-1)
        return mean, jnp.clip(log_std, self.log_std_min, self.log_std_max)


def tanh_gaussian_sample(
    key: jax.Array, mean: jnp.ndarray, log_std: jnp.ndarray
) -> tuple[jnp.ndarray, jnp.ndarray]:
    """Reparameterized sample a = tanh(u) and its log-density with the tanh correction."""
    u = mean + jnp.exp(log_std) * jax.random.normal(key, mean.shape)
    # log(1 - tanh(u)^2) written stably: 2 (log 2 - u - softplus(-2u)).
    correction = jnp.sum(2.0 * (jnp.log(2.0) - u - jax.nn.softplus(-2.0 * u)), axis=-1)
    return jnp.tanh(u), gaussian_log_prob(u, mean, log_std) - correction


def tanh_gaussian_log_prob(act: jnp.ndarray, mean: jnp.ndarray, log_std: jnp.ndarray):
    """log π(a|s) of given actions a in [-1, 1] (pulled in to ±(1 - 1e-6) first)."""
    a = jnp.clip(act, -1.0 + 1e-6, 1.0 - 1e-6)
    return gaussian_log_prob(jnp.arctanh(a), mean, log_std) - jnp.sum(jnp.log1p(-(a**2)), axis=-1)
