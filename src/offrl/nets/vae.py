"""The conditional VAE behaviour model of BCQ (Fujimoto et al. 2019), also BEAR's.

Encoder E(s, a) -> (μ, log σ) of z; decoder D(s, z) = tanh(MLP(s, z)) in [-1, 1].
Sampling an action for s: z ~ N(0, I) clipped to [-clip, clip] (BCQ: 0.5), a = D(s, z);
the clip keeps z in the region the encoder's posteriors cover.
ELBO loss (BCQ's weighting, with the KL averaged over latent dimensions as in its code):
    L = E‖D(s, z) - a‖² (mean over action dims)  +  ½ · mean_j KL(N(μ_j, σ_j²) ‖ N(0, 1))
    KL_j = -½ (1 + log σ_j² - μ_j² - σ_j²)
"""

from __future__ import annotations

from collections.abc import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from offrl.core import Metrics
from offrl.nets.mlp import MLP

LOG_STD_MIN, LOG_STD_MAX = -4.0, 15.0  # BCQ's clamp of the encoder's log σ


class VAE(nn.Module):
    hidden: Sequence[int]
    act_dim: int
    latent_dim: int  # BCQ: 2 |A|
    latent_clip: float = 0.5

    def setup(self):
        self.encoder = MLP(self.hidden, 2 * self.latent_dim)
        self.decoder = MLP(self.hidden, self.act_dim)

    def encode(self, obs: jnp.ndarray, act: jnp.ndarray) -> tuple[jnp.ndarray, jnp.ndarray]:
        mean, log_std = jnp.split(self.encoder(jnp.concatenate([obs, act], -1)), 2, axis=-1)
        return mean, jnp.clip(log_std, LOG_STD_MIN, LOG_STD_MAX)

    def decode(self, obs: jnp.ndarray, z: jnp.ndarray) -> jnp.ndarray:
        return jnp.tanh(self.decoder(jnp.concatenate([obs, z], -1)))

    def sample(self, obs: jnp.ndarray, key: jax.Array) -> jnp.ndarray:
        """Actions for obs (..., obs_dim) decoded from prior latents clipped to ±latent_clip."""
        z = jax.random.normal(key, (*obs.shape[:-1], self.latent_dim))
        return self.decode(obs, jnp.clip(z, -self.latent_clip, self.latent_clip))

    def __call__(self, obs: jnp.ndarray, act: jnp.ndarray, key: jax.Array):
        """Reconstruction through a reparameterized posterior sample: (recon, μ, log σ)."""
        mean, log_std = self.encode(obs, act)
        z = mean + jnp.exp(log_std) * jax.random.normal(key, mean.shape)
        return self.decode(obs, z), mean, log_std


def elbo_terms(recon, act, mean, log_std) -> tuple[jnp.ndarray, jnp.ndarray]:
    """(reconstruction MSE, KL to N(0, I)), each averaged over batch and dimensions."""
    recon_loss = jnp.mean((recon - act) ** 2)
    kl = jnp.mean(-0.5 * (1.0 + 2.0 * log_std - mean**2 - jnp.exp(2.0 * log_std)))
    return recon_loss, kl


def vae_loss(params, apply_fn, obs, act, key: jax.Array) -> tuple[jnp.ndarray, Metrics]:
    """BCQ's negative ELBO: reconstruction + ½ KL."""
    recon, mean, log_std = apply_fn(params, obs, act, key)
    recon_loss, kl = elbo_terms(recon, act, mean, log_std)
    loss = recon_loss + 0.5 * kl
    return loss, {"vae_loss": loss, "vae_recon": recon_loss, "vae_kl": kl}


def vae_sample(vae_state, params, obs: jnp.ndarray, key: jax.Array) -> jnp.ndarray:
    """a ~ VAE(·|s) with the latent clipped, for a TrainState-held VAE."""
    return vae_state.apply_fn(params, obs, key, method=VAE.sample)
