"""AWR: Advantage-Weighted Regression.

Paper: Peng, Kumar, Zhang & Levine, "Advantage-Weighted Regression: Simple and Scalable
Off-Policy Reinforcement Learning", arXiv 1910.00177, 2019. Reference code:
github.com/xbpeng/awr (learning/awr_agent.py, learning/rl_agent.py, awr_configs.py).

AWR is two supervised regressions. A state value V(s) regresses onto a return estimate
R̂(s, a) of the data's behaviour; the policy regresses onto the data's actions, each
weighted by the exponentiated advantage R̂ - V(s). Nothing is ever evaluated at an action
outside the dataset.

Value (the network predicts V / c, c = 1 / (1 - γ), the reference's value normalizer):
    "mc" (TD(λ) with λ = 1):  R̂ = R_t = Σ_{k>=0} γ^k r_{t+k}  (to the end of the episode)
    "td" (TD(λ) with λ = 0):  R̂ = r + γ (1 - d) V̄(s')        (V̄ a Polyak target of V)
    L_V = ½ E[ ((R̂ - V(s)) / c)² ]
Actor (π(·|s) = N(μ(s), σ² I), μ an MLP with a linear output, σ = `action_std` fixed):
    A   = R_t - V(s)                          ("mc")
    A   = r + γ (1 - d) V(s') - V(s)          ("td"; the online V after its step)
    Â   = (A - mean_B A) / (std_B A + 1e-5)   (`normalize_adv`; the batch's mean and std)
    w   = min(exp(Â / β), ω_max)              (a constant: stop-gradient)
    L_b = ½ E[ Σ_j (max(μ_j(s) - 1, 0)² + min(μ_j(s) + 1, 0)²) ]
    L_π = -E[ w log π(a | s) ] + κ L_b
        with κ = `bound_loss_weight`: the reference's penalty on a mean outside the action
        bounds [-1, 1] (the mean is not squashed).
The logged `q_mean` is the mean of R̂, AWR's estimate of Q at the data's actions
(AWR has no Q network).

Update order per step, both on the same minibatch: one V step (on the old V), then one
π step (its advantages use the new V); with "td", then V̄ <- τ V + (1 - τ) V̄.
Acting: the mean μ(s) clipped to [-1, 1] (deterministic), or μ(s) + σ ε clipped to
[-1, 1]; then mapped to the environment's bounds.

Defaults: read from the reference code (awr_agent.py's signature and awr_configs.py, its
per-environment Gym settings; the paper's text names the same ingredients: a fixed β,
weight clipping, TD(λ) value targets, SGD with momentum): β = 1.0, ω_max = 20, γ = 0.99,
SGD with momentum 0.9 at step sizes 1e-2 (value) and 5e-5 (policy), batch 256, 128-64 ReLU
MLPs for both nets, fixed action std 0.2 in the [-1, 1] action units (the agent's default
and Ant/Humanoid's), and the reference's per-environment settings as TASK_DEFAULTS: σ 0.4 on
HalfCheetah, Hopper and Walker2d, policy step 1e-4 on Hopper and 2.5e-5 on Walker2d (a
fresh run on their data takes them; with σ fixed, -log π scales as 1/σ², so 0.2 there would
make the policy's step 4× the reference's), the mean's last layer
initialized uniformly in ±0.01, action-bound penalty weight 10, observations standardized
(the reference keeps a running mean/std of the states), advantages standardized before the
exponential (the reference's `_calc_adv`), value targets divided by c = 1 / (1 - γ) and a ½
on the squared error (the reference's `val_norm` and critic loss), raw rewards.
Deviations:
- Return estimate. The reference computes TD(λ) returns, λ = 0.95, over whole paths with the
  current V before each round of value and of policy steps. An update here sees single
  sampled transitions, not paths, so general λ is impossible: `baseline` offers the two ends,
  "mc" (λ = 1, the default: the Monte-Carlo return-to-go, precomputed once per transition by
  `extra_columns`) and "td" (λ = 0, one-step bootstrap from a Polyak target V).
- Timeouts under "mc": the return-to-go is summed to the episode's cut with no bootstrap
  beyond it (the reference, at λ = 1, would add γ^(T-t) V(s_T) on time-limit ends). Every
  return is discounted, so this only biases the last ~1/(1 - γ) steps of each cut episode.
  "td" bootstraps through timeouts and stops at terminals.
- Schedule. The reference alternates 200 value steps (critic_steps in awr_configs.py) and
  1000 policy steps per iteration, each round on targets/advantages fixed at its start. Here
  one update is one value step then one policy step on the same batch, with targets and
  advantages of the moment; the step sizes are the reference's per-step values.
- Advantage normalization uses the minibatch's mean and std (the reference: the whole
  replay buffer's, once per iteration). `normalize_adv=False` gives the paper's plain
  exp(A / β), where β then carries the units of the (scaled) rewards.
- Sampling: uniform minibatches with replacement (the reference shuffles epochs).
- Initialization: flax's default (LeCun-normal) hidden layers and value head; the
  reference uses Xavier-uniform. The mean head is uniform ±0.01 as in the reference.
- `optimizer="adam"` (with the same learning-rate fields) is offered as an option; it is
  not in the paper.
- The return column is computed from the transformed rewards tf.reward(r) that the batches
  carry, so R_t, r and V share their units under any `reward_scaling`.
- The reference is an online agent (a 50k-transition FIFO replay buffer refilled every
  iteration); the paper's static-dataset experiments train it on a fixed buffer, which is
  the setting here.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass

import flax.linen as nn
import flax.struct
import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax.training.train_state import TrainState

from offrl.core import (
    Batch,
    Metrics,
    Spec,
    adam,
    exp_weights,
    gradient_step,
    make_model,
    mc_returns,
    polyak,
)
from offrl.data.dataset import Dataset
from offrl.data.transforms import Transforms
from offrl.nets import ValueNet
from offrl.nets.policies import gaussian_log_prob

ADV_EPS = 1e-5  # the reference's ADV_EPS in the advantages' standardization
BASELINES = ("mc", "td")
OPTIMIZERS = ("sgd", "adam")


@dataclass(frozen=True)
class Config:
    baseline: str = "mc"  # "mc": V on the Monte-Carlo return (λ = 1); "td": V on r + γV̄(s')
    beta: float = 1.0  # β, temperature of the weights exp(A / β)
    max_weight: float = 20.0  # ω_max, clip of the weights
    normalize_adv: bool = True  # standardize A over the minibatch before exp (reference)
    # MARWIL's normalization instead (the `marwil` preset): Â = A / c, c² a running mean of
    # A², c² <- c² + rate (mean_B A² - c²) after every step, from `adv_norm_init`.
    running_adv_norm: bool = False
    adv_norm_rate: float = 1e-8  # RLlib's moving_average_sqd_adv_norm_update_rate
    adv_norm_init: float = 100.0  # RLlib's moving_average_sqd_adv_norm_start
    discount: float = 0.99  # γ (also sets the value normalizer c = 1 / (1 - γ))
    tau: float = 0.005  # Polyak rate of the target V (baseline="td" only)
    action_std: float = 0.2  # σ of the Gaussian policy, fixed (not learned)
    bound_loss_weight: float = 10.0  # κ, penalty on a policy mean outside [-1, 1]
    init_output_scale: float = 0.01  # the mean head's weights start uniform in ±this
    optimizer: str = "sgd"  # "sgd" (with momentum, the paper) or "adam"
    momentum: float = 0.9  # SGD momentum for both nets (ignored by adam)
    actor_lr: float = 5e-5  # policy step size
    value_lr: float = 1e-2  # value step size
    hidden: tuple[int, ...] = (128, 64)  # policy and value MLP widths (ReLU)
    batch_size: int = 256
    normalize_obs: bool = True  # standardize observations with the dataset's mean/std
    reward_scaling: str = "none"  # the reference uses raw rewards


# The reference's per-environment settings that differ from the Config's (awr_configs.py:
# action_std and actor_stepsize; every other field there is the same for all its MuJoCo
# tasks, and Ant's and Humanoid's are the Config's). With a fixed σ, -log π scales as 1/σ²,
# so σ and the step size set the policy's step together.
TASK_DEFAULTS = {
    "halfcheetah": {"action_std": 0.4},
    "hopper": {"action_std": 0.4, "actor_lr": 1e-4},
    "walker2d": {"action_std": 0.4, "actor_lr": 2.5e-5},
}


def check_config(cfg: Config) -> None:
    """ValueError for a config AWR cannot run."""
    if cfg.baseline not in BASELINES:
        raise ValueError(f"baseline must be 'mc' or 'td', got {cfg.baseline!r}")
    if cfg.optimizer not in OPTIMIZERS:
        raise ValueError(f"optimizer must be 'sgd' or 'adam', got {cfg.optimizer!r}")
    if not cfg.beta > 0:
        raise ValueError(f"beta must be > 0, got {cfg.beta}")
    if not cfg.action_std > 0:
        raise ValueError(f"action_std must be > 0, got {cfg.action_std}")
    if not 0 <= cfg.discount < 1:
        raise ValueError(f"discount must be in [0, 1), got {cfg.discount}")
    if cfg.running_adv_norm and cfg.normalize_adv:
        raise ValueError("normalize_adv and running_adv_norm are two normalizations: pick one")
    if cfg.running_adv_norm and not (0 < cfg.adv_norm_rate <= 1 and cfg.adv_norm_init > 0):
        raise ValueError("adv_norm_rate must be in (0, 1] and adv_norm_init > 0")


class FixedStdPolicy(nn.Module):
    """μ(s) = linear(MLP(s)), the mean of a Gaussian whose std the Config fixes. The mean is
    not squashed (the bound penalty keeps it in [-1, 1]); its weights start small."""

    hidden: Sequence[int]
    act_dim: int
    init_output_scale: float = 0.01

    @nn.compact
    def __call__(self, obs: jnp.ndarray) -> jnp.ndarray:
        x = obs
        for width in self.hidden:
            x = nn.relu(nn.Dense(width)(x))
        s = self.init_output_scale
        kernel_init = lambda key, shape, dtype=jnp.float32: jax.random.uniform(  # noqa: E731
            key, shape, dtype, -s, s
        )
        return nn.Dense(self.act_dim, kernel_init=kernel_init)(x)


@flax.struct.dataclass
class State:
    actor: TrainState  # μ(s)
    value: TrainState  # V(s) / c
    target_value: dict  # V̄, Polyak average of V (read by baseline="td" only)
    adv_sq_norm: jnp.ndarray  # () c², the running mean of A² (running_adv_norm only)
    tf: Transforms
    step: jnp.ndarray


@functools.cache
def _sgd(lr: float, momentum: float) -> optax.GradientTransformation:
    """SGD with (heavy-ball) momentum, cached like core.adam so equal configs share it."""
    return optax.sgd(lr, momentum=momentum)


def _optimizer(cfg: Config, lr: float) -> optax.GradientTransformation:
    return _sgd(lr, cfg.momentum) if cfg.optimizer == "sgd" else adam(lr)


def init(cfg: Config, spec: Spec, key: jax.Array) -> State:
    check_config(cfg)
    k_actor, k_value = jax.random.split(key)
    obs = jnp.zeros((1, spec.obs_dim))
    policy = FixedStdPolicy(cfg.hidden, spec.act_dim, cfg.init_output_scale)
    actor = make_model(policy, k_actor, (obs,), _optimizer(cfg, cfg.actor_lr))
    value = make_model(ValueNet(cfg.hidden), k_value, (obs,), _optimizer(cfg, cfg.value_lr))
    return State(
        actor=actor,
        value=value,
        target_value=value.params,
        adv_sq_norm=jnp.asarray(cfg.adv_norm_init, jnp.float32),
        tf=spec.transforms,
        step=jnp.zeros((), jnp.int32),
    )


def extra_columns(cfg: Config, dataset: Dataset, tf: Transforms) -> dict[str, np.ndarray]:
    """baseline="mc": the discounted return-to-go of every transition, R_t = Σ_k γ^k r_{t+k}
    to the end of its episode, from the TRANSFORMED rewards tf.reward(r) that the batches
    carry (so R_t and batch.rew share their units). Timeouts end the sum (no bootstrap)."""
    check_config(cfg)
    if cfg.baseline != "mc":
        return {}
    return {"return": mc_returns(dataset, tf, cfg.discount)}


def value_scale(cfg: Config) -> float:
    """c = 1 / (1 - γ): V = c · net(s), the reference's fixed value normalizer."""
    return 1.0 / (1.0 - cfg.discount)


def values(state: State, params, obs: jnp.ndarray, cfg: Config) -> jnp.ndarray:
    """V(s) in reward units."""
    return value_scale(cfg) * state.value.apply_fn(params, obs)


def return_estimate(state: State, batch: Batch, cfg: Config, v_params) -> jnp.ndarray:
    """R̂: the MC return (baseline "mc") or r + γ (1 - d) V(s') with V from `v_params`."""
    if cfg.baseline == "mc":
        if "return" not in batch.extra:  # a trace-time check: the columns are static
            raise KeyError(
                "AWR (baseline='mc') reads batch.extra['return']: build the device data with "
                "core.algorithm_data(awr, cfg, dataset, tf), not core.to_device"
            )
        return batch.extra["return"]
    next_v = values(state, v_params, batch.next_obs, cfg)
    return batch.rew + cfg.discount * (1.0 - batch.done) * next_v


def awr_weights(
    adv: jnp.ndarray, cfg: Config, adv_sq_norm: jnp.ndarray | float = 1.0
) -> jnp.ndarray:
    """w = min(exp(Â / β), ω_max), Â the advantages standardized over the batch when
    `normalize_adv`, divided by c = sqrt(adv_sq_norm) when `running_adv_norm` (MARWIL);
    a constant in the gradient."""
    if cfg.normalize_adv:
        adv = (adv - adv.mean()) / (adv.std() + ADV_EPS)
    if cfg.running_adv_norm:
        adv = adv / (jnp.sqrt(adv_sq_norm) + 1e-8)  # RLlib's 1e-8
    return exp_weights(adv / cfg.beta, cfg.max_weight)


def bound_loss(mean: jnp.ndarray) -> jnp.ndarray:
    """½ E[Σ_j violation_j²], the distance of μ(s) outside [-1, 1] (the reference's)."""
    violation = jnp.minimum(mean + 1.0, 0.0) ** 2 + jnp.maximum(mean - 1.0, 0.0) ** 2
    return 0.5 * jnp.mean(jnp.sum(violation, axis=-1))


def value_loss(params, state: State, batch: Batch, cfg: Config) -> tuple[jnp.ndarray, Metrics]:
    target = jax.lax.stop_gradient(return_estimate(state, batch, cfg, state.target_value))
    v = values(state, params, batch.obs, cfg)
    loss = 0.5 * jnp.mean(((target - v) / value_scale(cfg)) ** 2)
    return loss, {"value_loss": loss, "v_mean": v.mean(), "q_mean": target.mean()}


def weighted_log_likelihood(log_prob: jnp.ndarray, weights: jnp.ndarray) -> jnp.ndarray:
    """-E[w log π(a|s)]."""
    return -jnp.mean(weights * log_prob)


def actor_loss(params, state: State, batch: Batch, cfg: Config) -> tuple[jnp.ndarray, Metrics]:
    v_params = state.value.params  # the value as updated in this step
    adv = return_estimate(state, batch, cfg, v_params) - values(state, v_params, batch.obs, cfg)
    weights = awr_weights(adv, cfg, state.adv_sq_norm)
    mean = state.actor.apply_fn(params, batch.obs)
    log_std = jnp.full_like(mean, jnp.log(cfg.action_std))
    log_prob = gaussian_log_prob(batch.act, mean, log_std)
    awr = weighted_log_likelihood(log_prob, weights)
    bound = bound_loss(mean)
    loss = awr + cfg.bound_loss_weight * bound
    return loss, {
        "actor_loss": loss,
        "bound_loss": bound,
        "adv_mean": adv.mean(),
        "adv_std": adv.std(),
        "adv_sq_mean": jnp.mean(adv**2),
        "weight_mean": weights.mean(),
        "weight_max": weights.max(),
        "weight_clipped_frac": jnp.mean(weights >= cfg.max_weight),
    }


def update(cfg: Config, state: State, batch: Batch, key: jax.Array) -> tuple[State, Metrics]:
    del key  # an AWR step samples nothing
    value, m_v = gradient_step(state.value, value_loss, state, batch, cfg)  # V first
    state = state.replace(value=value)
    actor, m_pi = gradient_step(state.actor, actor_loss, state, batch, cfg)  # A from new V
    state = state.replace(actor=actor, step=state.step + 1)
    if cfg.running_adv_norm:  # c² moves towards this batch's mean A², after its use
        c2 = state.adv_sq_norm
        state = state.replace(adv_sq_norm=c2 + cfg.adv_norm_rate * (m_pi["adv_sq_mean"] - c2))
    if cfg.baseline == "td":  # a static choice: the config is a compile-time constant
        state = state.replace(target_value=polyak(state.target_value, value.params, cfg.tau))
    return state, m_v | m_pi


def act(cfg: Config, state: State, obs: jnp.ndarray, key: jax.Array, deterministic: bool = True):
    mean = state.actor.apply_fn(state.actor.params, state.tf.obs(obs))
    if deterministic:
        unit = jnp.clip(mean, -1.0, 1.0)
    else:
        noise = cfg.action_std * jax.random.normal(key, mean.shape)
        unit = jnp.clip(mean + noise, -1.0, 1.0)
    return state.tf.action_to_env(unit)
