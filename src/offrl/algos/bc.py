"""Behaviour cloning (BC).

Paper: Pomerleau 1991 (ALVINN); as an offline-RL baseline, Fu et al. 2020 (D4RL) and
Fujimoto & Gu 2021 (TD3+BC) whose "BC" column uses the deterministic variant.

Losses, for dataset pairs (s, a) with a in [-1, 1]:
    deterministic:  L(θ) = E[ ||π_θ(s) - a||² ] / |A|          (mean squared error)
    gaussian:       L(θ) = -E[ log N(a; μ_θ(s), σ_θ²) ]         (maximum likelihood)
with μ_θ(s) = tanh(MLP(s)) and a state-independent log σ (the Gaussian policy of IQL).

Update order: one policy gradient step per update.
Acting: the deterministic output, or the Gaussian mean (a sample when deterministic=False).

Defaults: 256-256 MLP and Adam lr 1e-3 as d3rlpy's BC; batch 256 (d3rlpy: 100) like the
other algorithms; observations standardized
with the dataset's mean/std as in TD3+BC's BC baseline.
Deviations: none beyond the choice of defaults above.
"""

from __future__ import annotations

from dataclasses import dataclass

import flax.struct
import jax
import jax.numpy as jnp
from flax.training.train_state import TrainState

from offrl.core import Batch, Metrics, Spec, adam, gradient_step, make_model
from offrl.data.transforms import Transforms
from offrl.nets.policies import DeterministicPolicy, GaussianPolicy, gaussian_log_prob


@dataclass(frozen=True)
class Config:
    variant: str = "deterministic"  # "deterministic" (MSE) or "gaussian" (log-likelihood)
    hidden: tuple[int, ...] = (256, 256)  # policy MLP widths
    lr: float = 1e-3  # Adam learning rate (d3rlpy BC default)
    batch_size: int = 256  # minibatch size
    normalize_obs: bool = True  # standardize observations with dataset statistics
    reward_scaling: str = "none"  # rewards are unused by BC


@flax.struct.dataclass
class State:
    policy: TrainState
    tf: Transforms
    step: jnp.ndarray


def _policy_module(cfg: Config, act_dim: int):
    if cfg.variant == "deterministic":
        return DeterministicPolicy(cfg.hidden, act_dim)
    if cfg.variant == "gaussian":
        return GaussianPolicy(cfg.hidden, act_dim)
    raise ValueError(f"variant must be 'deterministic' or 'gaussian', got {cfg.variant!r}")


def init(cfg: Config, spec: Spec, key: jax.Array) -> State:
    module = _policy_module(cfg, spec.act_dim)
    obs = jnp.zeros((1, spec.obs_dim))
    policy = make_model(module, key, (obs,), adam(cfg.lr))
    return State(policy=policy, tf=spec.transforms, step=jnp.zeros((), jnp.int32))


def mse_loss(params, apply_fn, batch: Batch) -> tuple[jnp.ndarray, Metrics]:
    pred = apply_fn(params, batch.obs)
    loss = jnp.mean((pred - batch.act) ** 2)
    return loss, {"bc_loss": loss}


def nll_loss(params, apply_fn, batch: Batch) -> tuple[jnp.ndarray, Metrics]:
    mean, log_std = apply_fn(params, batch.obs)
    loss = -jnp.mean(gaussian_log_prob(batch.act, mean, log_std))
    return loss, {"bc_loss": loss, "log_std": jnp.mean(log_std)}


def update(cfg: Config, state: State, batch: Batch, key: jax.Array) -> tuple[State, Metrics]:
    del key  # BC is deterministic given the batch
    loss_fn = mse_loss if cfg.variant == "deterministic" else nll_loss
    policy, metrics = gradient_step(state.policy, loss_fn, state.policy.apply_fn, batch)
    return state.replace(policy=policy, step=state.step + 1), metrics


def act(cfg: Config, state: State, obs: jnp.ndarray, key: jax.Array, deterministic: bool = True):
    out = state.policy.apply_fn(state.policy.params, state.tf.obs(obs))
    if cfg.variant == "deterministic":
        unit = out
    else:
        mean, log_std = out
        noise = jax.random.normal(key, mean.shape) * jnp.exp(log_std)
        unit = mean if deterministic else jnp.clip(mean + noise, -1.0, 1.0)
    return state.tf.action_to_env(unit)
