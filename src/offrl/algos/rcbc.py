"""Return-conditioned behaviour cloning (RvS-R).

Paper: Emmons, Eysenbach, Kostrikov & Levine, "RvS: What is Essential for Offline RL via
Supervised Learning?", ICLR 2022 (RvS-R: reinforcement learning via supervised learning,
conditioned on reward). The lecture's recipe for return-conditioned policies: condition on
a desired return R₀, then decrement it by each reward.

Policy: an MLP on the standardized state and the standardized outcome ω,
    a = π_θ(s, ω),  inputs [(s - μ_s) / σ_s, (ω - μ_ω) / σ_ω],  tanh output.
Outcome ω_t of step t of an episode whose rows are t = 0 … T-1 (`conditioning`):
    "average" (RvS-R):  ω_t = (1 / (T - t)) Σ_{k=t}^{T-1} r_k    the average reward-to-go
    "rtg":              ω_t = Σ_{k=t}^{T-1} r_k                  the return-to-go (DT's)
Loss, on dataset triples (s, a, ω):
    L(θ) = E[ ||π_θ(s, ω) - a||² ] / |A|
Update order: one policy step per update.
Acting, conditioned on a target ω* (`target`; None: the best ω_0 of the data's episodes,
i.e. the best episode's average reward, or its return):
    "average": ω = ω* at every step (the average a good episode keeps);
    "rtg":     ω_0 = ω*, then ω_{t+1} = ω_t - r_t (the reward each action earned).
So acting carries ω per environment (act_carry / act_step); `act` is the first step's.

Statistics μ_ω, σ_ω and the default target are set from the training data by `pretrain`
(once, before the first update) and kept in the state, so a loaded checkpoint acts as
training did. Rewards in ω are raw, as the environment pays them at evaluation.

Defaults: two hidden layers of 1024 ReLU units and Adam 1e-3 as RvS's MLPs; batch 256 as
offrl's other algorithms; "average" conditioning as RvS-R on the locomotion tasks.
Deviations:
- The loss is the mean squared error of a deterministic tanh policy (the maximum likelihood
  of a Gaussian of fixed variance); RvS fits a Gaussian's likelihood.
- ω is standardized by its dataset mean and std (RvS feeds it raw), so one learning rate
  suits returns of any size.
- An episode cut by a timeout is averaged over the steps it has: no bootstrap beyond it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import flax.linen as nn
import flax.struct
import jax
import jax.numpy as jnp
import numpy as np
from flax.training.train_state import TrainState

from offrl.core import Batch, Metrics, Spec, adam, gradient_step, make_model
from offrl.data.dataset import Dataset
from offrl.data.transforms import Transforms
from offrl.nets import MLP

__all__ = [
    "Config",
    "State",
    "act",
    "act_carry",
    "act_step",
    "extra_columns",
    "init",
    "mse_loss",
    "outcomes",
    "pretrain",
    "update",
]

CONDITIONINGS = ("average", "rtg")


@dataclass(frozen=True)
class Config:
    conditioning: str = "average"  # ω: "average" reward-to-go (RvS-R) or "rtg" (its sum)
    target: float | None = None  # ω* to act on; None: the best ω_0 among the data's episodes
    hidden: tuple[int, ...] = (1024, 1024)  # policy MLP widths (RvS)
    lr: float = 1e-3  # Adam learning rate (RvS)
    batch_size: int = 256
    normalize_obs: bool = True  # standardize observations with the dataset's mean/std
    reward_scaling: str = "none"  # ω is built from raw rewards either way


@flax.struct.dataclass
class State:
    policy: TrainState
    tf: Transforms
    omega_mean: jnp.ndarray  # () μ_ω of the training data's outcomes
    omega_std: jnp.ndarray  # () σ_ω
    target: jnp.ndarray  # () ω* that acting starts from
    step: jnp.ndarray


class ConditionedPolicy(nn.Module):
    """a = tanh(MLP([s, ω])): s (B, obs_dim) and ω (B,), both standardized."""

    hidden: Sequence[int]
    act_dim: int

    @nn.compact
    def __call__(self, obs: jnp.ndarray, omega: jnp.ndarray) -> jnp.ndarray:
        x = jnp.concatenate([obs, omega[:, None]], axis=-1)
        return jnp.tanh(MLP(self.hidden, self.act_dim)(x))


def check(cfg: Config) -> None:
    if cfg.conditioning not in CONDITIONINGS:
        raise ValueError(f"conditioning must be one of {CONDITIONINGS}, got {cfg.conditioning!r}")


def init(cfg: Config, spec: Spec, key: jax.Array) -> State:
    check(cfg)
    module = ConditionedPolicy(cfg.hidden, spec.act_dim)
    policy = make_model(module, key, (jnp.zeros((1, spec.obs_dim)), jnp.zeros(1)), adam(cfg.lr))
    one = lambda v: jnp.asarray(v, jnp.float32)  # noqa: E731
    target = one(0.0 if cfg.target is None else cfg.target)
    return State(policy, spec.transforms, one(0.0), one(1.0), target, jnp.zeros((), jnp.int32))


def outcomes(dataset: Dataset, conditioning: str) -> np.ndarray:
    """ω_t of every row (float64): its episode's return-to-go from t, or that divided by the
    T - t steps left in the episode."""
    rtg = dataset.returns_to_go(1.0)
    if conditioning == "rtg":
        return rtg
    ends = np.repeat(dataset.episode_ends, dataset.episode_lengths())
    return rtg / (ends - np.arange(len(dataset)) + 1)


def extra_columns(cfg: Config, dataset: Dataset, tf: Transforms) -> dict[str, np.ndarray]:
    del tf  # ω is built from raw rewards: those the environment pays at evaluation
    return {"omega": outcomes(dataset, cfg.conditioning).astype(np.float32)}


def pretrain(cfg: Config, state: State, dataset: Dataset, key: jax.Array) -> tuple[State, dict]:
    """μ_ω, σ_ω of the training data, and the default target: the best episode's ω_0."""
    del key
    omega = outcomes(dataset, cfg.conditioning)
    best = float(omega[dataset.episode_starts].max())
    target = best if cfg.target is None else cfg.target
    mean, std = float(omega.mean()), float(omega.std()) + 1e-6
    f32 = lambda v: jnp.asarray(v, jnp.float32)  # noqa: E731
    state = state.replace(omega_mean=f32(mean), omega_std=f32(std), target=f32(target))
    return state, {"omega_mean": mean, "omega_std": std, "best_omega": best, "target": target}


# --------------------------------------------------------------------------- loss


def mse_loss(params, state: State, batch: Batch) -> tuple[jnp.ndarray, Metrics]:
    omega = (batch.extra["omega"] - state.omega_mean) / state.omega_std
    pred = state.policy.apply_fn(params, batch.obs, omega)
    loss = jnp.mean((pred - batch.act) ** 2)
    return loss, {"bc_loss": loss, "omega_mean": batch.extra["omega"].mean()}


def update(cfg: Config, state: State, batch: Batch, key: jax.Array) -> tuple[State, Metrics]:
    del key  # deterministic given the batch
    policy, metrics = gradient_step(state.policy, mse_loss, state, batch)
    return state.replace(policy=policy, step=state.step + 1), metrics


# --------------------------------------------------------------------------- acting


def act_carry(cfg: Config, state: State, n: int) -> jnp.ndarray:
    """ω of n episodes at their start: the target."""
    return jnp.full((n,), state.target, jnp.float32)


def act_step(
    cfg: Config,
    state: State,
    carry: jnp.ndarray,
    obs: jnp.ndarray,
    reward: jnp.ndarray,
    key: jax.Array,
    deterministic: bool = True,
) -> tuple[jnp.ndarray, jnp.ndarray]:
    """Decrement ω by the reward the last action earned ("rtg"; "average" keeps ω*), then
    act on (s, ω). Deterministic either way: the policy has no noise to sample."""
    del key, deterministic
    omega = carry - reward if cfg.conditioning == "rtg" else carry
    standardized = (omega - state.omega_mean) / state.omega_std
    unit = state.policy.apply_fn(state.policy.params, state.tf.obs(obs), standardized)
    return state.tf.action_to_env(unit), omega


def act(cfg: Config, state: State, obs: jnp.ndarray, key: jax.Array, deterministic: bool = True):
    """The action at an episode's first step: conditioned on the target."""
    carry = act_carry(cfg, state, obs.shape[0])
    return act_step(cfg, state, carry, obs, jnp.zeros_like(carry), key, deterministic)[0]
