"""Model-based OPE: the policy's discounted return in rollouts of a learned dynamics ensemble.

The model is offrl.dynamics' ensemble (the one MOPO, MOReL and COMBO use), fitted to the
logged data or loaded from `offrl model train`'s directory (`mb_model`). From every episode's
initial state s_0 the deterministic policy is rolled out `mb_rollouts` times for H steps
(`mb_horizon`; default the data's longest episode): each step a random elite samples
(s_{t+1}, r_t) and the rollout stops at the model's terminals (the environment's termination
function, where known). The episode's value is the mean over its rollouts of Σ_t γ^t r̂_t;
the estimate is the mean over episodes, bootstrapped like the others.

Deviation, to keep long rollouts finite: every sampled state is clipped to the data's range
of observations widened by 10% of its span each side, and every reward to the data's range of
rewards. A model that drifts out of the data is thus bounded, not trusted; the result says
how often states were clipped (`clipped_fraction`).
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

from offrl import dynamics
from offrl.data.dataset import Dataset
from offrl.data.transforms import Transforms

MARGIN = 0.1  # of the observations' span, each side


def bounds(dataset: Dataset) -> tuple[jnp.ndarray, ...]:
    """(obs low, obs high, reward low, reward high) the rollouts are clipped to."""
    obs = np.concatenate([dataset.observations, dataset.next_observations])
    lo, hi = obs.min(axis=0), obs.max(axis=0)
    pad = MARGIN * (hi - lo)
    r = dataset.rewards
    return tuple(jnp.asarray(v, jnp.float32) for v in (lo - pad, hi + pad, r.min(), r.max()))


@functools.partial(jax.jit, static_argnames=("act_fn", "horizon", "discount", "rollouts"))
def rollout_values(
    model: dynamics.Dynamics,
    act_fn,
    tf: Transforms,
    start_obs: jnp.ndarray,
    key: jax.Array,
    limits: tuple[jnp.ndarray, ...],
    horizon: int,
    discount: float,
    rollouts: int,
) -> tuple[jnp.ndarray, jnp.ndarray]:
    """Per initial state, the mean over `rollouts` of Σ_{t<H} γ^t r̂_t until a model
    terminal, (E,); and the fraction of steps whose state was clipped."""
    obs_lo, obs_hi, r_lo, r_hi = limits
    obs = jnp.repeat(start_obs, rollouts, axis=0)

    def body(carry, k):
        obs, alive, value, weight, clipped = carry
        act = jnp.clip(tf.action_to_unit(act_fn(obs)), -1.0, 1.0)
        nxt, rew, terminal, _ = dynamics.step(model, k, obs, act)
        bounded = jnp.clip(nxt, obs_lo, obs_hi)
        clipped = clipped + jnp.sum(alive & jnp.any(bounded != nxt, axis=-1))
        value = value + alive * weight * jnp.clip(rew, r_lo, r_hi)
        return (bounded, alive & ~terminal, value, weight * discount, clipped), jnp.sum(alive)

    n = obs.shape[0]
    init = (obs, jnp.ones(n, bool), jnp.zeros(n), jnp.ones(()), jnp.zeros(()))
    (_, _, value, _, clipped), alive_steps = jax.lax.scan(
        body, init, jax.random.split(key, horizon)
    )
    per_start = value.reshape(start_obs.shape[0], rollouts).mean(axis=1)
    return per_start, clipped / jnp.maximum(jnp.sum(alive_steps), 1)
