"""D4PG: distributed distributional deterministic policy gradients, on a fixed dataset.

Paper: Barth-Maron, Hoffman, Budden, Dabney, Horgan, TB, Muldal, Heess & Lillicrap,
"Distributed Distributional Deterministic Policy Gradients", ICLR 2018. Used offline as the
learner of Cabi et al., "Scaling data-driven robotics with reward sketching and batch
reinforcement learning", RSS 2020. Reference code: google-deepmind/acme, agents/jax/d4pg.

DDPG with a categorical critic (C51's atoms z_k on [v_min, v_max], offrl.algos.c51) and
n-step returns. For a dataset row t, n′ = min(n, steps to the end of t's episode):
    R_t = Σ_{k<n′} γ^k r_{t+k},   γ_t = γ^{n′} (1 − d_{t+n′−1}),   s_t^n = s′_{t+n′−1}
    m   = project(p′(s_t^n, π′(s_t^n)), R_t + γ_t z)                    (target networks)
    L_Q = E[−Σ_k m_k log p_k(s_t, a_t)]
Actor, Q(s, a) = Σ_k z_k p_k(s, a), the gradient clipped as acme's dpg_loss does:
    L_π = E[½ ‖sg(π(s) + clip(∇_a Q(s, a)|_{a=π(s)}, −c, c)) − π(s)‖²]  ⇒  ∇ = −clip(∇_a Q)
Update order per step (acme's): both gradients from the same pre-step networks, both Adam
steps, then every `target_update_period` updates a hard copy of actor and critic into the
targets.
Defaults: acme's D4PG config and networks: n = 5, γ = 0.99, Adam 1e-4 for both, batch 256,
targets copied every 100 updates, dq/da clipped to [−1, 1], 51 atoms on [−150, 150],
exploration σ = 0.3 (acting online only). Networks 400-300 with layer norm (acme: critic
400-300, actor 300-200).
The n-step columns (`extra_columns`): R_t and γ_t per row, and s_t^n as a second copy of
the observations on the device (N × obs_dim floats more than one-step algorithms hold).
Deviations: acme's torso is Linear → LayerNorm → tanh then ELU layers; offrl's MLP has layer
norm after every hidden layer and ReLU. acme trains the actor on the sampled transitions'
next observations, offrl on their observations. No prioritized replay (acme's default is
uniform too). Flax's default initializers (acme: a near-zero last actor layer).
"""

from __future__ import annotations

from dataclasses import dataclass

import jax
import jax.numpy as jnp
import numpy as np

from offrl.algos.c51 import atoms, cross_entropy, project, q_values
from offrl.algos.td3 import State, actor_critic_state
from offrl.core import Batch, Metrics, Spec, gradient_step, update_target
from offrl.data.dataset import Dataset
from offrl.data.transforms import Transforms
from offrl.nets import DistributionalQNet

__all__ = ["Config", "State", "act", "actor_loss", "critic_loss", "init", "update"]


@dataclass(frozen=True)
class Config:
    n_step: int = 5  # n (acme)
    num_atoms: int = 51  # K
    v_min: float = -150.0  # the support's ends (acme's networks)
    v_max: float = 150.0
    discount: float = 0.99  # γ
    actor_lr: float = 1e-4
    critic_lr: float = 1e-4
    target_update_period: int = 100  # updates between hard copies of both targets
    dqda_clip: float = 1.0  # c; 0 turns the clip off
    sigma: float = 0.3  # exploration noise of act(deterministic=False)
    hidden: tuple[int, ...] = (400, 300)  # actor and critic MLP widths
    layer_norm: bool = True
    batch_size: int = 256
    normalize_obs: bool = False
    reward_scaling: str = "none"


def init(cfg: Config, spec: Spec, key: jax.Array) -> State:
    if cfg.n_step < 1 or cfg.num_atoms < 2 or not cfg.v_min < cfg.v_max:
        raise ValueError("need n_step >= 1, num_atoms >= 2 and v_min < v_max")
    critic_net = DistributionalQNet(cfg.hidden, cfg.num_atoms, cfg.layer_norm)
    return actor_critic_state(cfg, spec, key, critic_net)


def extra_columns(cfg: Config, dataset: Dataset, tf: Transforms) -> dict[str, np.ndarray]:
    """R_t, γ_t and s_t^n of the module docstring per row (rewards and observations in the
    units the batches carry)."""
    n, rows = len(dataset), np.arange(len(dataset))
    lengths = dataset.episode_lengths()
    end = np.repeat(dataset.episode_ends, lengths)  # each row's episode's last row
    last = np.minimum(rows + cfg.n_step - 1, end)  # row t + n′ − 1
    rewards = np.asarray(tf.reward(jnp.asarray(dataset.rewards, jnp.float32)), np.float64)
    ret = np.zeros(n)
    for k in range(cfg.n_step):
        inside = rows + k <= last
        ret[inside] += cfg.discount**k * rewards[rows[inside] + k]
    steps = last - rows + 1
    discount = cfg.discount**steps * (1.0 - dataset.terminals[last])
    next_obs = np.asarray(tf.obs(jnp.asarray(dataset.next_observations[last], jnp.float32)))
    return {"nstep_return": ret, "nstep_discount": discount, "nstep_obs": next_obs}


# --------------------------------------------------------------------------- losses


def critic_loss(params, state: State, batch: Batch, cfg: Config) -> tuple[jnp.ndarray, Metrics]:
    nxt = batch.extra["nstep_obs"]
    next_act = state.actor.apply_fn(state.target_actor, nxt)
    next_probs = jax.nn.softmax(state.critic.apply_fn(state.target_critic, nxt, next_act), axis=-1)
    ret, discount = batch.extra["nstep_return"], batch.extra["nstep_discount"]
    shifted = ret[:, None] + discount[:, None] * atoms(cfg)
    logits = state.critic.apply_fn(params, batch.obs, batch.act)
    loss = cross_entropy(project(next_probs, shifted, cfg), logits)
    return loss, {"critic_loss": loss, "q_mean": q_values(logits, cfg).mean()}


def actor_loss(params, state: State, batch: Batch, cfg: Config) -> tuple[jnp.ndarray, Metrics]:
    pi = state.actor.apply_fn(params, batch.obs)
    # Each row's Q depends on its own action only: the gradient of the sum is per row.
    logits = lambda a: state.critic.apply_fn(state.critic.params, batch.obs, a)  # noqa: E731
    dq_da = jax.grad(lambda a: q_values(logits(a), cfg).sum())(pi)
    if cfg.dqda_clip > 0:
        dq_da = jnp.clip(dq_da, -cfg.dqda_clip, cfg.dqda_clip)
    target = jax.lax.stop_gradient(pi + dq_da)
    loss = 0.5 * jnp.mean(jnp.sum((target - pi) ** 2, axis=-1))
    return loss, {"actor_loss": loss, "dq_da_norm": jnp.linalg.norm(dq_da, axis=-1).mean()}


# --------------------------------------------------------------------------- update


def update(cfg: Config, state: State, batch: Batch, key: jax.Array) -> tuple[State, Metrics]:
    del key  # deterministic given the batch
    # Both steps from the pre-step networks (acme's order): `state` is replaced after both.
    critic, m_critic = gradient_step(state.critic, critic_loss, state, batch, cfg)
    actor, m_actor = gradient_step(state.actor, actor_loss, state, batch, cfg)
    step = state.step + 1
    period = cfg.target_update_period
    new_state = state.replace(
        actor=actor,
        critic=critic,
        target_actor=update_target(actor.params, state.target_actor, step, period),
        target_critic=update_target(critic.params, state.target_critic, step, period),
        step=step,
    )
    return new_state, m_critic | m_actor


def act(cfg: Config, state: State, obs: jnp.ndarray, key: jax.Array, deterministic: bool = True):
    unit = state.actor.apply_fn(state.actor.params, state.tf.obs(obs))
    if not deterministic:  # online exploration: Gaussian noise on the deterministic action
        unit = jnp.clip(unit + cfg.sigma * jax.random.normal(key, unit.shape), -1.0, 1.0)
    return state.tf.action_to_env(unit)
