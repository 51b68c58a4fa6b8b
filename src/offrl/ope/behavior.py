"""Policy densities for importance sampling: the target policy's, and a fitted behaviour model.

All continuous densities are over unit actions u in [-1, 1] (core.to_device's mapping of the
environment's bounds); a density in environment units differs by the constant Jacobian
Σ_j log((high_j - low_j) / 2) (offrl.data.transforms.unit_log_jacobian), which cancels in
π/μ when both are in the same units.

Target policy (the deterministic π(s) made stochastic, so that π(a|s) > 0 at logged actions):
    continuous:  π(u|s) = Π_j N(u_j; π_j(s), σ²) / (Φ((1 - π_j(s))/σ) - Φ((-1 - π_j(s))/σ)),
                 the Gaussian around π(s) truncated to [-1, 1], σ = `target_std`
    discrete:    π(a|s) = (1 - ε) 1[a = π(s)] + ε / n,   ε = `target_epsilon`
Behaviour model (fitted by maximum likelihood when no log-probabilities are logged):
    continuous:  μ(u|s) the same truncated Gaussian with mean tanh(MLP(s)) and a
                 state-dependent log σ(s) clipped to [-5, 2]
    discrete:    μ(a|s) = softmax(MLP(s))_a
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import flax.linen as nn
import jax
import jax.numpy as jnp
from flax.training.train_state import TrainState
from jax.scipy.special import log_ndtr

from offrl import core
from offrl.core import Batch
from offrl.nets.mlp import MLP
from offrl.nets.policies import gaussian_log_prob
from offrl.ope.fit import run_updates

LOG_STD_MIN, LOG_STD_MAX = -5.0, 2.0


def truncated_normal_log_prob(x: jnp.ndarray, mean: jnp.ndarray, log_std: jnp.ndarray):
    """log density of N(mean, σ²) truncated to [-1, 1]^d at x, summed over the last axis."""
    std = jnp.exp(log_std)
    log_hi, log_lo = log_ndtr((1.0 - mean) / std), log_ndtr((-1.0 - mean) / std)
    log_mass = log_hi + jnp.log1p(-jnp.exp(jnp.minimum(log_lo - log_hi, -1e-7)))
    return gaussian_log_prob(x, mean, log_std) - jnp.sum(log_mass, axis=-1)


def epsilon_greedy_log_prob(act: jnp.ndarray, greedy: jnp.ndarray, epsilon: float, n: int):
    """log((1 - ε) 1[a = greedy] + ε / n), per row."""
    return jnp.log(jnp.where(act == greedy, 1.0 - epsilon, 0.0) + epsilon / n)


def target_log_probs(act, pi, discrete: bool, cfg, num_actions: int) -> jnp.ndarray:
    """log π(a|s) of the logged actions `act` under the target policy around π(s) = `pi`
    (unit actions (N, d), or (N,) indices)."""
    if discrete:
        return epsilon_greedy_log_prob(act, pi, cfg.target_epsilon, num_actions)
    log_std = jnp.full_like(pi, jnp.log(cfg.target_std))
    return truncated_normal_log_prob(act, pi, log_std)


# --------------------------------------------------------------------------- behaviour model


class GaussianBehavior(nn.Module):
    """(mean, log σ) of a Gaussian over [-1, 1] actions, both state-dependent."""

    hidden: Sequence[int]
    act_dim: int

    @nn.compact
    def __call__(self, obs: jnp.ndarray) -> tuple[jnp.ndarray, jnp.ndarray]:
        mean, log_std = jnp.split(MLP(self.hidden, 2 * self.act_dim)(obs), 2, axis=-1)
        return jnp.tanh(mean), jnp.clip(log_std, LOG_STD_MIN, LOG_STD_MAX)


class SoftmaxBehavior(nn.Module):
    """Logits over n discrete actions."""

    hidden: Sequence[int]
    num_actions: int

    @nn.compact
    def __call__(self, obs: jnp.ndarray) -> jnp.ndarray:
        return MLP(self.hidden, self.num_actions)(obs)


@dataclass(frozen=True)
class BehaviorConfig:
    discrete: bool
    batch_size: int


def log_prob(model: TrainState, params, obs: jnp.ndarray, act: jnp.ndarray, discrete: bool):
    """log μ(a|s), (B,): unit actions (B, d) or indices (B,)."""
    if discrete:
        logp = jax.nn.log_softmax(model.apply_fn(params, obs), axis=-1)
        return core.action_values(logp, act)
    mean, log_std = model.apply_fn(params, obs)
    return truncated_normal_log_prob(act, mean, log_std)


def nll_loss(params, model: TrainState, batch: Batch, cfg: BehaviorConfig):
    loss = -jnp.mean(log_prob(model, params, batch.obs, batch.act, cfg.discrete))
    return loss, {"behavior_nll": loss}


def update(cfg: BehaviorConfig, model: TrainState, batch: Batch, key: jax.Array):
    del key
    return core.gradient_step(model, nll_loss, model, batch, cfg)


def fit_behavior(data: Batch, num_actions: int, cfg, key: jax.Array) -> tuple[TrainState, dict]:
    """μ fitted to the (obs, act) pairs of `data` for cfg.behavior_steps Adam steps on
    minibatches sampled on device; returns the model and the last chunk's mean NLL."""
    discrete = num_actions > 0
    obs = data.obs[:1]
    net = (
        SoftmaxBehavior(cfg.behavior_hidden, num_actions)
        if discrete
        else GaussianBehavior(cfg.behavior_hidden, data.act.shape[-1])
    )
    k_init, k_fit = jax.random.split(key)
    model = core.make_model(net, k_init, (obs,), core.adam(cfg.behavior_lr))
    bcfg = BehaviorConfig(discrete, cfg.behavior_batch_size)
    return run_updates(update, bcfg, model, data, k_fit, cfg.behavior_steps, cfg.chunk_size)
