"""Decision Transformer (DT).

Paper: Chen, Lu, Rajeswaran, Lee, Grover, Laskin, Abbeel, Srinivas & Mordatch, "Decision
Transformer: Reinforcement Learning via Sequence Modeling", NeurIPS 2021. Reference code:
github.com/kzl/decision-transformer (gym/) and CORL's single-file algorithms/offline/dt.py
(Tarasov et al. 2022), whose settings are the defaults here.

DT treats offline RL as sequence modelling. A window of K consecutive steps of an episode,
with R̂_t = Σ_{k>=t} r_k the (undiscounted) return-to-go,
    τ = (R̂_1, s_1, a_1, R̂_2, s_2, a_2, ..., R̂_K, s_K, a_K),
is fed to a causal (GPT) transformer as 3K tokens (offrl.nets.transformer: one linear
embedding per modality plus a learned embedding of the step's timestep within its episode,
LayerNorm, dropout, pre-LayerNorm blocks), and a tanh head reads the action off every state
token: â_t = tanh(W h(s_t)), where h(s_t) sees R̂_≤t, s_≤t, a_<t only.
Loss, on windows right-padded past their episode's end (m_t = 1 on real steps):
    L(θ) = Σ_{b,t} m_bt ||â_bt - a_bt||² / (|A| Σ_{b,t} m_bt)       masked MSE
Inputs: observations standardized with the dataset's mean/std; returns-to-go multiplied by
`rtg_scale` (0.001: R̂ / 1000, as both references); actions in [-1, 1].

Update order: one AdamW step per update on cfg.batch_size windows of cfg.context steps
(core.sample_windows: a uniformly drawn start row, so episodes in proportion to their length),
dropout on, gradients clipped to global norm `clip_grad`, the learning rate warmed up
linearly: lr_i = lr · min((i + 1) / warmup_steps, 1) at update i (PyTorch's LambdaLR).

Acting (act_carry / act_step): each environment carries its last K (R̂, s, a, t) and its
current R̂. The episode starts at R̂_0 = target; each step first subtracts the reward the
previous action earned, R̂_t = R̂_{t-1} - r_{t-1} (in the model's units: rtg_scale · the
transformed reward; the reward handed in at t = 0 is ignored), appends (R̂_t, s_t, t),
predicts a_t at the new state token and writes it into the window. The window has a fixed
size K: steps t < K fill position t (right-padded: by causality the padding after position
t cannot change the output there), after that it shifts left by one each step. The target is
`target_return` in environment reward units, or, when that is None, the best episode return in
the training data, set by `pretrain` (once, on a fresh run) and kept in the State, so a
loaded checkpoint acts as training did. `act` is the action at an episode's first step.

Defaults: CORL's DT locomotion config, which match the original gym/experiment.py's defaults
(and seq_trainer.py's clip): K = 20, 3 layers, 1 head, embedding 128, dropout 0.1 on
embeddings, attention weights and residuals, AdamW lr 1e-4, weight decay 1e-4 (on every
parameter, as both references: torch AdamW over model.parameters()), betas (0.9, 0.999),
warm-up over 10k updates, batch 64, global-norm gradient clip 0.25, tanh action head,
return-to-go scale 0.001, timestep table of 1000 rows (episode_len / max_ep_len).
Deviations:
- `hidden` gives the embedding width and the depth in one field: one entry per transformer
  block, all equal (the default (128, 128, 128) is 3 blocks of 128), so the Config shares
  the `hidden` field of offrl's other algorithms.
- The loss is averaged over real steps (the original DT: action_preds[mask > 0]); CORL
  averages over all B·K·|A| entries, padding included, so its windows cut by an episode's
  end weigh a little less (≈2% of windows for K = 20 and 1000-step episodes).
- No key-padding mask: windows are right-padded, so causality alone keeps padding out of
  every real step's output (CORL passes a key-padding mask as well; the outputs at real
  steps are the same). Padded steps carry timestep 0 and zeros.
- The timestep table has `max_timestep` rows and timesteps are clamped to its last one
  (the original DT's max_ep_len and its clamp); CORL's table has episode_len + K rows for
  its padded steps' timesteps, and its rollouts stop after episode_len steps.
- Acting uses a fixed window of K positions, right-padded until it fills; CORL feeds the
  growing history unpadded until it reaches K steps (the same outputs, by causality).
- The default target is the best training episode's return; CORL and the original DT
  evaluate fixed per-task targets (hopper 3600, walker2d 5000, halfcheetah 12000 or 6000):
  pass `target_return` to use one.
- Observations are standardized with std + 1e-3 (offrl's transforms; the references add
  1e-6). Actions are mapped to [-1, 1] (the identity on the locomotion tasks).
- `deterministic=False` acts as `deterministic=True`: DT's policy has no noise to sample
  (both references evaluate with dropout off).
- GELU (exact) in the MLP, as CORL; the original DT's gym config uses ReLU.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import flax.struct
import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax.training.train_state import TrainState

from offrl.core import Metrics, Spec, Window, make_model
from offrl.data.dataset import Dataset
from offrl.data.transforms import Transforms
from offrl.nets.transformer import DecisionTransformer

__all__ = [
    "Carry",
    "Config",
    "State",
    "act",
    "act_carry",
    "act_step",
    "action_loss",
    "batch_kind",
    "init",
    "optimizer",
    "pretrain",
    "update",
    "warmup_schedule",
]

batch_kind = "trajectories"  # update receives a core.Window of sub-trajectories


@dataclass(frozen=True)
class Config:
    context: int = 20  # K, steps per window (CORL seq_len, DT's K)
    # One entry per transformer block, all equal: the embedding width (CORL: 3 × 128).
    hidden: tuple[int, ...] = (128, 128, 128)
    num_heads: int = 1  # attention heads per block
    embedding_dropout: float = 0.1  # dropout on the token embeddings (after their LayerNorm)
    attention_dropout: float = 0.1  # dropout on the attention weights
    residual_dropout: float = 0.1  # dropout on the attention and MLP outputs
    max_timestep: int = 1000  # rows of the timestep embedding; later steps are clamped
    lr: float = 1e-4  # AdamW peak learning rate
    weight_decay: float = 1e-4  # AdamW's decoupled weight decay (every parameter)
    betas: tuple[float, float] = (0.9, 0.999)  # Adam's (β₁, β₂)
    warmup_steps: int = 10_000  # linear warm-up of the learning rate; 0: none
    clip_grad: float = 0.25  # global-norm gradient clip; 0: none
    batch_size: int = 64  # windows per update
    rtg_scale: float = 0.001  # multiplies the return-to-go inputs (R̂ / 1000)
    target_return: float | None = None  # R̂_0 to act on, env reward units; None: the best
    # episode return in the data
    normalize_obs: bool = True  # standardize observations with the dataset's mean/std
    reward_scaling: str = "none"  # transform of the rewards the returns-to-go sum


@flax.struct.dataclass
class State:
    model: TrainState
    tf: Transforms
    # () R̂_0 acting starts from, in the units of the transformed rewards (what Window.rtg
    # sums): cfg.target_return · tf.reward_scale, or the best episode's (pretrain).
    target_return: jnp.ndarray
    step: jnp.ndarray


def check(cfg: Config) -> None:
    if not cfg.hidden or len(set(cfg.hidden)) != 1:
        raise ValueError(
            f"hidden must be one width per transformer block, all equal, got {cfg.hidden}"
        )
    if cfg.hidden[0] % cfg.num_heads:
        raise ValueError(f"width {cfg.hidden[0]} is not divisible by num_heads {cfg.num_heads}")
    if cfg.context < 1 or cfg.max_timestep < 1:
        raise ValueError(
            f"context and max_timestep must be >= 1, got {cfg.context}, {cfg.max_timestep}"
        )
    if cfg.warmup_steps < 0 or cfg.clip_grad < 0:
        raise ValueError("warmup_steps and clip_grad must be >= 0")


def warmup_schedule(lr: float, warmup_steps: int):
    """lr · min((i + 1) / warmup_steps, 1) at update i (CORL's LambdaLR); lr when 0."""
    if warmup_steps == 0:
        return lambda count: jnp.asarray(lr, jnp.float32)
    return lambda count: lr * jnp.minimum((count + 1) / warmup_steps, 1.0)


@functools.cache
def optimizer(
    lr: float, weight_decay: float, betas: tuple, warmup_steps: int, clip_grad: float
) -> optax.GradientTransformation:
    """Global-norm clip, then AdamW on the warmed-up rate. Cached, as core.adam: states made
    with the same settings share one optimizer, so compiled updates are reused."""
    adamw = optax.adamw(
        warmup_schedule(lr, warmup_steps),
        b1=betas[0],
        b2=betas[1],
        eps=1e-8,
        weight_decay=weight_decay,
    )
    return optax.chain(optax.clip_by_global_norm(clip_grad), adamw) if clip_grad > 0 else adamw


def model_module(cfg: Config, act_dim: int) -> DecisionTransformer:
    return DecisionTransformer(
        act_dim=act_dim,
        dim=cfg.hidden[0],
        num_layers=len(cfg.hidden),
        num_heads=cfg.num_heads,
        max_timestep=cfg.max_timestep,
        embedding_dropout=cfg.embedding_dropout,
        attention_dropout=cfg.attention_dropout,
        residual_dropout=cfg.residual_dropout,
    )


def init(cfg: Config, spec: Spec, key: jax.Array) -> State:
    check(cfg)
    k = cfg.context
    inputs = (
        jnp.zeros((1, k, spec.obs_dim)),
        jnp.zeros((1, k, spec.act_dim)),
        jnp.zeros((1, k)),
        jnp.zeros((1, k), jnp.int32),
    )
    tx = optimizer(cfg.lr, cfg.weight_decay, tuple(cfg.betas), cfg.warmup_steps, cfg.clip_grad)
    model = make_model(model_module(cfg, spec.act_dim), key, inputs, tx)
    given = 0.0 if cfg.target_return is None else cfg.target_return
    target = jnp.asarray(given * spec.transforms.reward_scale, jnp.float32)
    return State(
        model=model, tf=spec.transforms, target_return=target, step=jnp.zeros((), jnp.int32)
    )


def pretrain(cfg: Config, state: State, dataset: Dataset, key: jax.Array) -> tuple[State, dict]:
    """The target return: cfg.target_return, or (None) the best episode return in the data."""
    del key
    rewards = np.asarray(state.tf.reward(jnp.asarray(dataset.rewards, jnp.float32)), np.float64)
    returns = np.add.reduceat(rewards, dataset.episode_starts)  # transformed-reward units
    best = float(returns.max())
    scale = float(state.tf.reward_scale)
    target = best if cfg.target_return is None else cfg.target_return * scale
    state = state.replace(target_return=jnp.asarray(target, jnp.float32))
    # Reported in environment reward units, as cfg.target_return is given.
    return state, {"best_return": best / scale, "target_return": target / scale}


# --------------------------------------------------------------------------- loss


def action_loss(
    params, state: State, batch: Window, cfg: Config, key: jax.Array
) -> tuple[jnp.ndarray, Metrics]:
    """Masked MSE of the predicted actions at the real steps, dropout on."""
    pred = state.model.apply_fn(
        params,
        batch.obs,
        batch.act,
        cfg.rtg_scale * batch.rtg,
        batch.timestep,
        deterministic=False,
        rngs={"dropout": key},
    )
    squared = jnp.sum((pred - batch.act) ** 2, axis=-1) * batch.mask  # (B, K)
    loss = jnp.sum(squared) / (jnp.maximum(jnp.sum(batch.mask), 1.0) * batch.act.shape[-1])
    return loss, {"action_loss": loss, "real_fraction": jnp.mean(batch.mask)}


def update(cfg: Config, state: State, batch: Window, key: jax.Array) -> tuple[State, Metrics]:
    grads, metrics = jax.grad(action_loss, has_aux=True)(state.model.params, state, batch, cfg, key)
    schedule = warmup_schedule(cfg.lr, cfg.warmup_steps)
    metrics = metrics | {
        "grad_norm": optax.tree.norm(grads),  # before clipping
        "learning_rate": schedule(state.model.step),  # the rate of this update
    }
    model = state.model.apply_gradients(grads=grads)
    return state.replace(model=model, step=state.step + 1), metrics


# --------------------------------------------------------------------------- acting


@flax.struct.dataclass
class Carry:
    """What n episodes remember: the window of their last K steps (right-padded until full)
    and where they are. Returns-to-go are in the model's units (rtg_scale · transformed)."""

    obs: jnp.ndarray  # (n, K, obs_dim) standardized observations
    act: jnp.ndarray  # (n, K, act_dim) actions in [-1, 1]; 0 at the newest and padded steps
    rtg: jnp.ndarray  # (n, K) returns-to-go
    timestep: jnp.ndarray  # (n, K) int32
    t: jnp.ndarray  # (n,) int32: steps taken, the timestep of the next observation
    rtg_now: jnp.ndarray  # (n,) the return-to-go after the last reward observed


def act_carry(cfg: Config, state: State, n: int) -> Carry:
    """n episodes at their start: empty windows, R̂_0 = the target."""
    k, obs_dim = cfg.context, state.tf.obs_mean.shape[0]
    act_dim = state.tf.act_low.shape[0]
    return Carry(
        obs=jnp.zeros((n, k, obs_dim), jnp.float32),
        act=jnp.zeros((n, k, act_dim), jnp.float32),
        rtg=jnp.zeros((n, k), jnp.float32),
        timestep=jnp.zeros((n, k), jnp.int32),
        t=jnp.zeros((n,), jnp.int32),
        rtg_now=jnp.full((n,), cfg.rtg_scale * state.target_return, jnp.float32),
    )


def _rows(flags: jnp.ndarray, like: jnp.ndarray) -> jnp.ndarray:
    """(n,) or (n, K) flags broadcast against a window `like` (n, K, ...)."""
    return flags.reshape(flags.shape + (1,) * (like.ndim - flags.ndim))


def act_step(
    cfg: Config,
    state: State,
    carry: Carry,
    obs: jnp.ndarray,
    reward: jnp.ndarray,
    key: jax.Array,
    deterministic: bool = True,
) -> tuple[jnp.ndarray, Carry]:
    """Subtract the reward the previous action earned from R̂, append (R̂, s, t) to the
    window, predict the action at the new state token, write it into the window. The
    policy is deterministic: `key` and `deterministic` change nothing."""
    del key, deterministic
    k = cfg.context
    earned = jnp.where(carry.t > 0, state.tf.reward(reward), 0.0)  # no action before t = 0
    rtg_now = carry.rtg_now - cfg.rtg_scale * earned
    full = carry.t >= k  # the oldest step leaves the window
    pos = jnp.minimum(carry.t, k - 1)  # where step t goes
    here = jax.nn.one_hot(pos, k, dtype=jnp.bool_)  # (n, K)

    def put(window: jnp.ndarray, value: jnp.ndarray) -> jnp.ndarray:
        shifted = jnp.where(_rows(full, window), jnp.roll(window, -1, axis=1), window)
        return jnp.where(_rows(here, window), value[:, None], shifted)

    obs_w = put(carry.obs, state.tf.obs(obs))
    act_w = put(carry.act, jnp.zeros_like(carry.act[:, 0]))  # a_t is not known yet
    rtg_w = put(carry.rtg, rtg_now)
    time_w = put(carry.timestep, carry.t)
    pred = state.model.apply_fn(state.model.params, obs_w, act_w, rtg_w, time_w)
    unit = jnp.take_along_axis(pred, pos[:, None, None], axis=1)[:, 0]  # (n, act_dim)
    act_w = jnp.where(_rows(here, act_w), unit[:, None], act_w)
    new = Carry(obs=obs_w, act=act_w, rtg=rtg_w, timestep=time_w, t=carry.t + 1, rtg_now=rtg_now)
    return state.tf.action_to_env(unit), new


def act(cfg: Config, state: State, obs: jnp.ndarray, key: jax.Array, deterministic: bool = True):
    """The action at an episode's first step: conditioned on the target return."""
    carry = act_carry(cfg, state, obs.shape[0])
    reward = jnp.zeros((obs.shape[0],), jnp.float32)
    return act_step(cfg, state, carry, obs, reward, key, deterministic)[0]
