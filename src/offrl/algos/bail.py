"""BAIL: Best-Action Imitation Learning (static BAIL).

Paper: Chen, Zhou, Wang & Ross, "BAIL: Best-Action Imitation Learning for Batch Deep
Reinforcement Learning", NeurIPS 2020 (Algorithm 1, static BAIL). Reference code:
github.com/lanyavik/BAIL (its `calculate_mc_gain`, `train_upper_envelope`, `L2PenaltyLoss`
and selection by the ratio G / V).

BAIL keeps the pairs whose action led to a return close to the best seen from that state,
and imitates only those. Once, before training (`select_rows`):
1. Returns G_t = Σ_{k>=t} γ^k-t r_k to the end of t's episode. An episode cut by a timeout
   is augmented (the reference's "gain"): from the episode's last state s_T, the earliest
   state s_m of the episode's first T - t + 1 steps that lies nearest to s_T (L2) stands in
   for where the episode would go on, so
       G_t <- G_t + γ^(T-t+1) (G_m - γ^(L-(T-t+1)) G_{m+L-(T-t+1)})
   with L the episode's length: the tail is the return from s_m cut to keep the horizon L
   (the subtracted term is dropped when m + L - (T-t+1) lies past the episode's end).
2. An upper envelope V_φ(s) of G, the penalty loss with K = `penalty`:
       L^K(φ) = mean_i (V_φ(s_i) - G_i)² [1(V_φ(s_i) >= G_i) + K 1(V_φ(s_i) < G_i)]
   plus λ ||φ||² (Adam's coupled weight decay, λ = `envelope_weight_decay`), trained on 80%
   of the rows (the highest return always among them) for at most `envelope_epochs` epochs,
   keeping the parameters of the best validation loss on the other 20%; training stops
   after `envelope_patience` epochs without improvement.
3. The selection: the pairs with G_i >= x V_φ(s_i), x the (1 - p) quantile of G / V over
   the data, so that the share p = `select_ratio` is kept (the paper's 25%).
Then BC on the selected pairs (offrl.algos.bc's losses):
       deterministic: L(θ) = E[ ||π_θ(s) - a||² ] / |A|;   gaussian: -E[ log N(a; μ_θ(s), σ²) ]
Update order: one policy step per update. Acting: BC's.

The run's metrics.jsonl starts with a "selection" record: rows kept, x, the envelope's
losses and epochs, the share of rows above the envelope.

Defaults: γ = 0.99, K = 1000, p = 0.25 (the paper and the reference's command line); the
envelope a 128-128 ReLU MLP, Adam at 3e-3 with weight decay 0.02, batches of 800, at most
50 epochs, 80/20 split, 4 epochs of patience (the reference's train_upper_envelope); the
policy BC's defaults (256-256, Adam 1e-3, batch 256).
Deviations:
- The envelope's inputs are standardized and its targets divided by max |G|; the selection
  ratio G / V is unchanged by that scale. The reference fits raw states and returns.
- Early stopping ends the envelope's training after `envelope_patience` epochs with no
  better validation loss and keeps the best parameters; the reference reloads the best
  parameters at that point and goes on training to its epoch budget.
- The reference marks an episode as cut when it is 1000 steps long; here the data's
  timeouts say so. Its adaptive clipping of the envelope (`--clip_ue`, off by default) is
  not offered.
- One envelope per dataset and `envelope_seed`: every seed of a sweep trains its policy
  on the same selection (the paper fits an envelope per run).
- The policy is offrl's BC (256-256, tanh) rather than the reference's BCQ-style actor.
- The ratio G / V assumes positive returns, as on the MuJoCo tasks the paper uses; the
  info record counts the rows where V <= 0.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import jax
import jax.numpy as jnp
import numpy as np
import optax

from offrl.algos import bc
from offrl.algos.bc import State, act, init, update
from offrl.data.dataset import Dataset
from offrl.nets import ValueNet

__all__ = [
    "Config",
    "State",
    "act",
    "augmented_returns",
    "envelope_loss",
    "init",
    "select_by_ratio",
    "select_rows",
    "update",
]


@dataclass(frozen=True)
class Config:
    select_ratio: float = 0.25  # p: the share of pairs kept (the paper's 25%)
    discount: float = 0.99  # γ of the Monte-Carlo returns
    augment_returns: bool = True  # extend returns cut by a timeout (the reference's "gain")
    penalty: float = 1000.0  # K: the weight of the squared error where V < G
    envelope_hidden: tuple[int, ...] = (128, 128)  # the envelope's MLP (ReLU)
    envelope_lr: float = 3e-3  # Adam
    envelope_weight_decay: float = 0.02  # λ, Adam's (coupled) weight decay
    envelope_batch_size: int = 800
    envelope_epochs: int = 50  # at most
    envelope_patience: int = 4  # epochs without a better validation loss before stopping
    validation_fraction: float = 0.2
    envelope_seed: int = 0  # the envelope's split and initialization (shared by all seeds)
    variant: str = "deterministic"  # BC's loss: "deterministic" (MSE) or "gaussian"
    hidden: tuple[int, ...] = (256, 256)  # policy MLP widths
    lr: float = 1e-3  # the policy's Adam learning rate (BC's)
    batch_size: int = 256
    normalize_obs: bool = True  # standardize observations with the selected rows' statistics
    reward_scaling: str = "none"  # returns are computed from the raw rewards


def check(cfg: Config) -> None:
    if not 0.0 < cfg.select_ratio <= 1.0:
        raise ValueError(f"select_ratio must be in (0, 1], got {cfg.select_ratio}")
    if not 0.0 < cfg.validation_fraction < 1.0:
        raise ValueError(f"validation_fraction must be in (0, 1), got {cfg.validation_fraction}")
    if cfg.penalty < 1.0:
        raise ValueError(f"penalty K must be >= 1, got {cfg.penalty}")
    if min(cfg.envelope_epochs, cfg.envelope_patience, cfg.envelope_batch_size) < 1:
        raise ValueError("envelope_epochs, envelope_patience and envelope_batch_size must be >= 1")


# --------------------------------------------------------------------------- returns


def augmented_returns(dataset: Dataset, discount: float, augment: bool = True) -> np.ndarray:
    """G_t of every row (float64), episodes cut by a timeout extended as the reference's
    `calculate_mc_gain` does (see the module docstring)."""
    g = dataset.returns_to_go(discount)
    if not augment:
        return g
    out = g.copy()
    for start, end in zip(dataset.episode_starts, dataset.episode_ends):
        if not dataset.timeouts[end]:
            continue  # ended in a terminal state: the return is complete
        length = end - start + 1
        obs = dataset.observations[start : end + 1]
        dist = np.linalg.norm(obs - obs[-1], axis=1)
        nearest = _prefix_argmin(dist)  # nearest[k]: the first argmin of dist[: k + 1]
        t = np.arange(start + 1, end + 1)  # every step but the first, as the reference
        steps = end - t + 1  # T - t + 1
        m = nearest[steps]  # among the episode's first T - t + 2 states
        rest = length - steps  # the horizon the tail may still use
        inside = m < steps  # the cut m + rest lies within the episode
        cut = np.where(inside, start + m + rest, start)
        tail = g[start + m] - np.where(inside, discount**rest * g[cut], 0.0)
        out[t] += discount**steps * tail
    return out


def _prefix_argmin(x: np.ndarray) -> np.ndarray:
    """For each k, the first index of the minimum of x[: k + 1]."""
    running = np.minimum.accumulate(x)
    new = np.concatenate([[True], x[1:] < running[:-1]])
    return np.maximum.accumulate(np.where(new, np.arange(x.size), 0))


# --------------------------------------------------------------------------- envelope


def envelope_loss(params, apply_fn, obs, returns, penalty: float):
    """mean (V - G)² [1(V >= G) + K 1(V < G)], and the share of rows with V < G."""
    v = apply_fn(params, obs)
    below = v < returns
    loss = jnp.mean(jnp.where(below, penalty, 1.0) * (v - returns) ** 2)
    return loss, {"envelope_loss": loss, "below_fraction": jnp.mean(below)}


@functools.partial(jax.jit, static_argnames=("apply_fn", "tx", "batch_size", "penalty"))
def _epoch(params, opt_state, key, obs, returns, apply_fn, tx, batch_size: int, penalty: float):
    """One pass over the training rows in shuffled batches (the remainder dropped)."""
    n = obs.shape[0] // batch_size * batch_size
    order = jax.random.permutation(key, obs.shape[0])[:n].reshape(-1, batch_size)

    def step(carry, rows):
        params, opt_state = carry
        grads, _ = jax.grad(envelope_loss, has_aux=True)(
            params, apply_fn, obs[rows], returns[rows], penalty
        )
        updates, opt_state = tx.update(grads, opt_state, params)
        return (optax.apply_updates(params, updates), opt_state), None

    (params, opt_state), _ = jax.lax.scan(step, (params, opt_state), order)
    return params, opt_state


@functools.partial(jax.jit, static_argnames=("apply_fn",))
def _values(params, apply_fn, obs):
    return apply_fn(params, obs)


def fit_envelope(cfg: Config, obs: np.ndarray, returns: np.ndarray) -> tuple:
    """(V on every row in the returns' units, info): the envelope of the module docstring."""
    rng = np.random.default_rng(cfg.envelope_seed)
    mean, std = obs.mean(axis=0), obs.std(axis=0) + 1e-3
    x = jnp.asarray((obs - mean) / std, jnp.float32)
    scale = float(max(np.abs(returns).max(), 1e-8))
    y = jnp.asarray(returns / scale, jnp.float32)
    best_row = int(np.argmax(returns))
    others = rng.permutation(np.delete(np.arange(len(returns)), best_row))
    n_val = max(1, int(round(cfg.validation_fraction * len(returns))))
    val, train = others[:n_val], np.append(others[n_val:], best_row)
    batch = min(cfg.envelope_batch_size, train.size)
    net = ValueNet(cfg.envelope_hidden)
    key = jax.random.key(cfg.envelope_seed)
    params = jax.jit(net.init)(key, x[:1])
    tx = _envelope_optimizer(cfg.envelope_lr, cfg.envelope_weight_decay)
    opt_state = tx.init(params)
    loss = jax.jit(envelope_loss, static_argnames=("apply_fn", "penalty"))
    best, best_params, stale, epochs = np.inf, params, 0, 0
    x_train, y_train, x_val, y_val = x[train], y[train], x[val], y[val]
    while epochs < cfg.envelope_epochs and stale < cfg.envelope_patience:
        key, sub = jax.random.split(key)
        params, opt_state = _epoch(
            params, opt_state, sub, x_train, y_train, net.apply, tx, batch, cfg.penalty
        )
        epochs += 1
        val_loss = float(loss(params, net.apply, x_val, y_val, cfg.penalty)[0])
        if val_loss < best:
            best, best_params, stale = val_loss, params, 0
        else:
            stale += 1
    train_loss, train_metrics = loss(best_params, net.apply, x_train, y_train, cfg.penalty)
    values = np.asarray(_values(best_params, net.apply, x), np.float64) * scale
    info = {
        "envelope_epochs": epochs,
        "envelope_train_loss": float(train_loss),
        "envelope_validation_loss": best,
        "below_envelope_fraction": float(train_metrics["below_fraction"]),
        "return_scale": scale,
    }
    return values, info


@functools.cache
def _envelope_optimizer(lr: float, weight_decay: float) -> optax.GradientTransformation:
    """Adam with torch's coupled weight decay (λ θ added to the gradient)."""
    return optax.chain(optax.add_decayed_weights(weight_decay), optax.adam(lr))


# --------------------------------------------------------------------------- selection


def select_by_ratio(returns: np.ndarray, values: np.ndarray, ratio: float) -> tuple:
    """(sorted rows with G >= x V, x): x the (1 - ratio) quantile of G / V, so that the
    share `ratio` of the rows is kept (ties at the border all kept)."""
    r = returns / np.where(np.abs(values) < 1e-12, 1e-12, values)
    count = max(1, int(np.ceil(ratio * r.size)))
    x = float(np.sort(r)[r.size - count])
    return np.flatnonzero(r >= x).astype(np.int64), x


def select_rows(cfg: Config, dataset: Dataset) -> tuple[np.ndarray, dict]:
    check(cfg)
    returns = augmented_returns(dataset, cfg.discount, cfg.augment_returns)
    values, info = fit_envelope(cfg, dataset.observations, returns)
    rows, x = select_by_ratio(returns, values, cfg.select_ratio)
    return rows, info | {
        "x": x,
        "kept_fraction": rows.size / len(dataset),
        "nonpositive_envelope_rows": int(np.sum(values <= 0)),
        "kept_return_mean": float(returns[rows].mean()),
        "return_mean": float(returns.mean()),
    }


# BC's losses, named here so that this module reads as the whole method.
mse_loss, nll_loss = bc.mse_loss, bc.nll_loss
