"""CRR: critic regularized regression.

Paper: Wang, Novikov, Żołna, Springenberg, Reed, Shahriari, Siegel, Merel, Gulcehre, Heess &
de Freitas, "Critic Regularized Regression", NeurIPS 2020 (arXiv:2006.15134). Reference
code: google-deepmind/acme, acme/agents/jax/crr/ (learning.py, losses.py, networks.py,
config.py); d3rlpy's CRR (d3rlpy/algos/qlearning/torch/crr_impl.py) read for comparison.

CRR is AWAC's recipe with a filter f on the advantage: the actor fits the dataset's
actions by maximum likelihood, each weighted by f, so actions the critic rates below the
policy's own are imitated less (exp) or not at all (binary). Critic and actor are the
networks of offrl.algos.awac; the differences are the filters, the advantage estimate and
target networks for both actor and critic, copied every N steps.

Critic (scalar Q by default; a' from the *target* actor π'):
    a' ~ π'(·|s'),   y = r + γ (1 - d) min_i Q'_i(s', a')     (no min with one critic)
    L_Q = Σ_i E[(Q_i(s, a) - y)²]
Advantage (a_j ~ π(·|s), j = 1..m, m = `num_action_samples`; the critic after its step):
    "mean":  A(s, a) = Q(s, a) - (1/m) Σ_j Q(s, a_j)
    "max":   A(s, a) = Q(s, a) - max_j Q(s, a_j)
Filter (held constant in the gradient):
    "exp":     f = min(exp(A / β), w_max)
    "binary":  f = 1[A > 0]              (A = 0 gives 0)
Actor:
    L_π = -E[f log π(a|s)],   π(·|s) = N(tanh(MLP(s)), σ²)  (awac.Policy; samples clipped
                                                             to [-1, 1])
Targets: every `target_update_period` updates, π' ← τ π + (1 - τ) π' and the same for Q';
τ = 1 is the paper's and Acme's hard copy.

Update order per step (one minibatch): critic step (a' from the target actor); actor step,
advantages from the critic just updated and the actor as it is; step + 1; when
step % target_update_period == 0, both targets move. d3rlpy steps in this order; Acme
computes both losses from the pre-step networks and steps them together (its actor weights
come from the critic one step older).

Defaults: the paper and Acme: β = 1, exp clipped at 20 (Acme's ratio_upper_bound, d3rlpy's
max_weight), m = 4, "exp" with "mean" (Acme's policy_loss_coeff_advantage_exp, d3rlpy's
defaults), Adam 3e-4 for both networks, γ = 0.99, hard target copies every 100 updates,
256-256 MLPs for actor and critic (Acme's make_networks), one scalar critic (Acme and
d3rlpy). Batch 256: neither the paper's setting (RL Unplugged) nor a reference default
(d3rlpy uses 100); it is the usual D4RL batch and AWAC's CORL default.
Deviations:
- Critic. The paper's critic is distributional (a categorical return distribution, as in
  D4PG); Acme's CRR uses a scalar critic with a squared TD error, and so does this one
  (`num_critics` = 1; 2 gives twin critics with the min in the target and the advantage).
  The TD loss has no ½ (Acme has one): a constant factor.
- Policy. Acme's policy is a tanh-squashed Normal with a state-dependent scale; this one is
  AWAC's (reference rlkit) Gaussian with a tanh mean and a state-independent log σ in
  [-6, 0], whose log-likelihood of the data's actions needs no atanh. Sampled actions are
  clipped to [-1, 1] (d3rlpy clamps its target action the same way).
- Acting: the mean (deterministic) or a clipped Gaussian sample. The paper's critic-weighted
  policy at test time (resampling m actions by softmax of Q) is not implemented.
- Initialization: flax defaults (LeCun-normal); Acme uses fan-in variance scaling, uniform.
- Actions are mapped to [-1, 1] by the transforms.
"""

from __future__ import annotations

from dataclasses import dataclass

import flax.struct
import jax
import jax.numpy as jnp
from flax.training.train_state import TrainState

from offrl.algos import awac
from offrl.algos.awac import check_choice, check_networks, check_positive
from offrl.core import Batch, Metrics, Spec, exp_weights, gradient_step, polyak
from offrl.data.transforms import Transforms
from offrl.nets.policies import gaussian_log_prob

FILTERS = ("exp", "binary")
ADVANTAGES = ("mean", "max")


@dataclass(frozen=True)
class Config:
    filter: str = "exp"  # f: "exp" min(exp(A/β), max_weight), or "binary" 1[A > 0]
    advantage: str = "mean"  # baseline of A over the m policy samples: "mean" or "max"
    num_action_samples: int = 4  # m, actions a_j ~ π(·|s) per state in the baseline
    beta: float = 1.0  # β, temperature of the exp filter (in reward units)
    max_weight: float = 20.0  # clip of exp(A / β)
    num_critics: int = 1  # 1: Acme's scalar critic; 2: twin critics with a min
    discount: float = 0.99  # γ
    target_update_period: int = 100  # targets of actor and critic move every this many updates
    tau: float = 1.0  # their Polyak rate then; 1.0 = a hard copy (the paper's, Acme's)
    actor_lr: float = 3e-4
    critic_lr: float = 3e-4
    actor_weight_decay: float = 0.0  # L2 on the actor's parameters (Acme: none)
    hidden: tuple[int, ...] = (256, 256)  # critic MLP widths (and the actor's if actor_hidden=())
    actor_hidden: tuple[int, ...] = ()  # actor MLP widths; () = hidden
    log_std_min: float = -6.0  # log σ = min + (max - min) · sigmoid(θ), as in awac.Policy
    log_std_max: float = 0.0
    batch_size: int = 256
    normalize_obs: bool = False  # Acme feeds raw observations
    reward_scaling: str = "none"

    def __post_init__(self):
        check_choice("crr", "filter", self.filter, FILTERS)
        check_choice("crr", "advantage", self.advantage, ADVANTAGES)
        check_positive(
            "crr",
            beta=self.beta,
            num_action_samples=self.num_action_samples,
            target_update_period=self.target_update_period,
        )
        check_networks("crr", self)


@flax.struct.dataclass
class State:
    actor: TrainState
    critic: TrainState  # QEnsemble: outputs (num_critics, ...batch)
    target_actor: dict
    target_critic: dict
    tf: Transforms
    step: jnp.ndarray


def init(cfg: Config, spec: Spec, key: jax.Array) -> State:
    """AWAC's actor and critic, plus a target actor."""
    s = awac.init(cfg, spec, key)
    return State(
        actor=s.actor,
        critic=s.critic,
        target_actor=s.actor.params,
        target_critic=s.target_critic,
        tf=s.tf,
        step=s.step,
    )


def advantage(q: jnp.ndarray, q_pi: jnp.ndarray, kind: str) -> jnp.ndarray:
    """A = Q(s, a) - baseline, the baseline the mean or the max over the m samples (axis 0)
    of q_pi (m, B); q (B,)."""
    baseline = q_pi.mean(axis=0) if kind == "mean" else q_pi.max(axis=0)
    return q - baseline


def filter_weights(adv: jnp.ndarray, cfg: Config) -> jnp.ndarray:
    """f(A), held constant in the actor's gradient."""
    if cfg.filter == "binary":
        return jax.lax.stop_gradient((adv > 0).astype(adv.dtype))
    return exp_weights(adv / cfg.beta, cfg.max_weight)


critic_loss = awac.critic_loss  # TD onto the actor passed in: here the target actor


def actor_loss(params, state: State, batch: Batch, cfg: Config, key: jax.Array):
    mean, log_std = state.actor.apply_fn(params, batch.obs)
    q, q_pi = awac.data_and_policy_q(state, batch, (mean, log_std), key, cfg.num_action_samples)
    adv = advantage(q, q_pi, cfg.advantage)
    weights = filter_weights(adv, cfg)
    loss = awac.weighted_nll(weights, gaussian_log_prob(batch.act, mean, log_std))
    return loss, awac.actor_metrics(loss, adv, weights, log_std)


def periodic_polyak(target, online, tau: float, step: jnp.ndarray, period: int):
    """target ← τ online + (1 - τ) target when step % period == 0, else unchanged."""
    due = step % period == 0
    moved = polyak(target, online, tau)
    return jax.tree_util.tree_map(lambda new, old: jnp.where(due, new, old), moved, target)


def update(cfg: Config, state: State, batch: Batch, key: jax.Array) -> tuple[State, Metrics]:
    k_critic, k_actor = jax.random.split(key)
    # 1. critic: TD onto the target actor's next actions
    critic, m_critic = gradient_step(
        state.critic, critic_loss, state, batch, cfg, k_critic, state.target_actor
    )
    state = state.replace(critic=critic)
    # 2. actor: filtered likelihood, advantages from the critic just updated
    actor, m_actor = gradient_step(state.actor, actor_loss, state, batch, cfg, k_actor)
    step = state.step + 1
    # 3. targets, every target_update_period updates
    move = lambda target, online: periodic_polyak(  # noqa: E731
        target, online, cfg.tau, step, cfg.target_update_period
    )
    state = state.replace(
        actor=actor,
        target_actor=move(state.target_actor, actor.params),
        target_critic=move(state.target_critic, critic.params),
        step=step,
    )
    return state, m_critic | m_actor


act = awac.act  # the mean, or a clipped Gaussian sample
