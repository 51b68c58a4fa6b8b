"""`estimate`: every off-policy estimator of one policy on one dataset, with bootstrap CIs."""

from __future__ import annotations

import functools
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import jax
import jax.numpy as jnp
import numpy as np

from offrl import core, dynamics
from offrl.data.dataset import Dataset
from offrl.data.transforms import Transforms, make_transforms, unit_log_jacobian
from offrl.errors import ConfigError, DataError
from offrl.ope import behavior, bootstrap, dr, fqe, importance, model_based
from offrl.ope.config import (
    ESTIMATORS,
    IMPORTANCE,
    MODEL,
    MODEL_BASED,
    OPEConfig,
    check_config,
    check_estimators,
)
from offrl.ope.episodes import Trajectories, apply_batched

ActFn = Callable[[jnp.ndarray], jnp.ndarray]  # raw obs (B, obs_dim) -> env actions
LogProbFn = Callable[[jnp.ndarray, jnp.ndarray], jnp.ndarray]  # (raw obs, unit act) -> (B,)
DEFAULT_CONFIG = OPEConfig()
MAX_WPDIS_CELLS = 200_000_000  # episodes × horizon of WPDIS's dense table


@dataclass(frozen=True)
class _Data:
    """The dataset as the estimators use it."""

    dataset: Dataset
    tf: Transforms
    batch: core.Batch  # normalized obs, unit actions / indices (core.to_device)
    traj: Trajectories

    @property
    def discrete(self) -> bool:
        return self.dataset.discrete


def estimate(
    act_fn: ActFn,
    dataset: Dataset,
    estimators: Sequence[str] | str = ESTIMATORS,
    discount: float = 0.99,
    key: jax.Array | int = 0,
    behavior_log_probs: np.ndarray | None = None,
    config: OPEConfig = DEFAULT_CONFIG,
    *,
    action_low: np.ndarray | None = None,
    action_high: np.ndarray | None = None,
    target_log_prob_fn: LogProbFn | None = None,
    behavior_label: str = "logged",
    dynamics_model: tuple | None = None,
) -> dict[str, dict]:
    """Off-policy estimates of the discounted return Σ_t γ^t r_t of the policy `act_fn` from
    the dataset's initial states (episode starts), in the dataset's reward units.

    act_fn: pure, jittable, batched: raw observations (B, obs_dim) -> actions in environment
        units (B, act_dim), or (B,) int action indices for discrete data; e.g.
        `lambda obs: algo.act(cfg, state, obs, jax.random.key(0), True)`.
    estimators: names from ESTIMATORS ("fqe", "is", "pdis", "wis", "wpdis", "dr"), or "all".
    behavior_log_probs: (N,) log μ(a_t|s_t) of the logged actions (D4RL's
        infos/action_log_probs), continuous ones as densities in environment units; None:
        a behaviour model is fitted (docs/ope.md) and the results say "behavior": "fitted".
        `behavior_label` names the source of a given array ("fitted" when it came from
        `fit_behavior_log_probs`).
    action_low, action_high: the bounds act_fn's actions live in (default: the dataset's
        bounds); they map actions to [-1, 1].
    target_log_prob_fn: log π(a|s) of the policy's own stochastic form, (raw obs, unit
        actions or indices) -> (B,); None: the truncated Gaussian (std config.target_std)
        around act_fn's action, or ε-greedy (config.target_epsilon) for discrete data.
    dynamics_model: (offrl.dynamics.Dynamics, info) for "mb", from `fit_dynamics`: fit once
        per dataset, value many policies; None: fitted here (or loaded, config.mb_model).

    Returns {name: {"value", "ci": [lo, hi], "std_error", "discount", "confidence",
    "episodes", ...}} with per-estimator diagnostics (ESS, behaviour source, FQE loss).
    """
    names = check_estimators(estimators)
    if dataset.discrete and names == ESTIMATORS:  # "all": every estimator that applies
        names = tuple(n for n in names if n not in MODEL_BASED)
    check_config(config)
    if not 0.0 < discount <= 1.0:
        raise ConfigError(f"discount must be in (0, 1], got {discount}")
    data = _prepare(dataset, action_low, action_high, config)
    key = jax.random.key(key) if isinstance(key, int) else key
    k_fqe, k_behavior, k_boot, k_model = jax.random.split(key, 4)
    _check_act_fn(act_fn, data.dataset)
    pi_obs = _policy_actions(act_fn, data, data.dataset.observations, config.eval_batch)
    comps, infos = {}, {}
    if any(n in MODEL for n in names):
        model = _fit_fqe(data, act_fn, pi_obs, discount, config, k_fqe)
        if "fqe" in names:
            comps["fqe"], infos["fqe"] = (importance.mean_stat, {"v": model.v_start}), model.info
    if any(n in IMPORTANCE for n in names):
        log_w, info = _weights(
            data, pi_obs, target_log_prob_fn, behavior_log_probs, behavior_label, config, k_behavior
        )
        comps |= _importance(data, log_w, names, discount)
        infos |= {n: info for n in IMPORTANCE if n in names}
        if "dr" in names:
            custom = target_log_prob_fn is not None
            comps["dr"] = (dr.dr_stat, _dr(data, model, log_w, discount, config, custom))
            infos["dr"] = info | model.info
    if any(n in MODEL_BASED for n in names):
        comps["mb"], infos["mb"] = _model_based(
            data, act_fn, discount, config, k_model, dynamics_model
        )
    results = _summaries({n: comps[n] for n in names}, infos, k_boot, discount, data, config)
    return results


def fit_dynamics(dataset: Dataset, config: OPEConfig = DEFAULT_CONFIG, key: jax.Array | int = 0):
    """(model, info) for `estimate(..., dynamics_model=)`: the model of config.mb_model, or
    one fitted to `dataset` (config.mb_epochs)."""
    if dataset.discrete:
        raise ConfigError("mb: model-based OPE needs continuous actions (a dynamics ensemble)")
    key = jax.random.key(key) if isinstance(key, int) else key
    return dynamics.fit_or_load(dataset, config.mb_model, config.mb_epochs, key)


def _model_based(data: _Data, act_fn, discount: float, config: OPEConfig, key, given):
    k_fit, k_roll = jax.random.split(key)
    model, info = given if given is not None else fit_dynamics(data.dataset, config, k_fit)
    horizon = config.mb_horizon or data.traj.horizon
    starts = jnp.asarray(data.dataset.observations[np.asarray(data.traj.starts)], jnp.float32)
    limits = model_based.bounds(data.dataset)
    values, clipped = model_based.rollout_values(
        model, act_fn, data.tf, starts, k_roll, limits, horizon, discount, config.mb_rollouts
    )
    info = info | {"horizon": horizon, "rollouts": config.mb_rollouts}
    return (importance.mean_stat, {"v": values}), info | {"clipped_fraction": float(clipped)}


# --------------------------------------------------------------------------- inputs


def _prepare(dataset: Dataset, low, high, config: OPEConfig) -> _Data:
    if len(dataset) == 0:
        raise DataError(f"{dataset.name or 'dataset'}: empty; OPE needs at least one episode")
    if not dataset.discrete:
        dataset = dataset.replace(
            action_low=dataset.action_low if low is None else np.asarray(low, np.float32),
            action_high=dataset.action_high if high is None else np.asarray(high, np.float32),
        )
    tf = make_transforms(dataset, normalize_obs=config.normalize_obs)
    return _Data(dataset, tf, core.to_device(dataset, tf), Trajectories.from_dataset(dataset))


def _check_act_fn(act_fn: ActFn, ds: Dataset) -> None:
    """act_fn's output for two observations: its shape and, for discrete data, an int dtype."""
    try:
        out = jax.eval_shape(act_fn, jax.ShapeDtypeStruct((2, ds.obs_dim), jnp.float32))
    except (TypeError, ValueError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ConfigError(f"act_fn fails on ({ds.obs_dim},)-observations: {first}") from None
    shape = tuple(getattr(out, "shape", ()))
    if ds.discrete:
        if shape not in ((2,), (2, 1)) or not jnp.issubdtype(out.dtype, jnp.integer):
            raise ConfigError(
                f"act_fn returned {out.dtype}{list(shape)} for 2 observations; discrete data "
                f"needs (2,) int action indices in 0..{ds.num_actions - 1}"
            )
    elif shape != (2, ds.act_dim):
        raise ConfigError(
            f"act_fn returned shape {shape} for 2 observations; expected (2, {ds.act_dim})"
        )


@functools.partial(jax.jit, static_argnames=("act_fn", "discrete", "rows"))
def _unit_actions(act_fn: ActFn, tf: Transforms, obs, discrete: bool, rows: int):
    """Raw observations -> π(s) as the nets see it: unit actions clipped to [-1, 1], or
    int32 indices; in blocks of `rows`. Compiled once per act_fn and shape."""

    def unit(o):
        act = act_fn(o)
        if discrete:
            return jnp.reshape(act, (o.shape[0],)).astype(jnp.int32)
        return jnp.clip(tf.action_to_unit(act), -1.0, 1.0)

    return apply_batched(unit, obs, batch=rows)


def _policy_actions(act_fn: ActFn, data: _Data, obs: np.ndarray, rows: int) -> jnp.ndarray:
    """π(s) for every row of obs, checked: indices in range, or finite actions."""
    ds = data.dataset
    pi = _unit_actions(act_fn, data.tf, jnp.asarray(obs, jnp.float32), ds.discrete, rows)
    host = np.asarray(pi)
    if ds.discrete and not np.all((host >= 0) & (host < ds.num_actions)):
        raise ConfigError(f"act_fn returned action indices outside 0..{ds.num_actions - 1}")
    if not ds.discrete and not np.all(np.isfinite(host)):
        raise ConfigError("act_fn returned NaN/inf actions")
    return pi


# --------------------------------------------------------------------------- FQE and DR


@functools.partial(jax.jit, static_argnames=("cfg", "rows"))
def _q_values(state: fqe.FQEState, cfg: fqe.FQEConfig, obs, act, rows: int, rows_of=None):
    """Q̂(s, a) per row (of the rows `rows_of` when given)."""
    if rows_of is not None:
        obs, act = obs[rows_of], act[rows_of]
    return apply_batched(lambda o, a: fqe.values(state, cfg, o, a), obs, act, batch=rows)


@functools.partial(jax.jit, static_argnames=("cfg", "epsilon", "rows"))
def _expected_q(state, cfg: fqe.FQEConfig, obs, greedy, epsilon: float, rows: int, rows_of=None):
    """E_{a~π_ε} Q̂(s, a) per row (of the rows `rows_of` when given)."""
    if rows_of is not None:
        obs, greedy = obs[rows_of], greedy[rows_of]
    fn = lambda o, g: fqe.expected_values(state, cfg, o, g, epsilon)  # noqa: E731
    return apply_batched(fn, obs, greedy, batch=rows)


@dataclass(frozen=True)
class _Model:
    state: fqe.FQEState
    cfg: fqe.FQEConfig
    pi_obs: jnp.ndarray  # π(s_t)
    pi_next: jnp.ndarray  # π(s'_t)
    v_start: jnp.ndarray  # Q̂(s_0, π(s_0)) per episode
    info: dict


def _fit_fqe(data: _Data, act_fn, pi_obs, discount: float, config: OPEConfig, key) -> _Model:
    ds, batch, rows = data.dataset, data.batch, config.eval_batch
    pi_next = _policy_actions(act_fn, data, ds.next_observations, rows)
    cfg = fqe.FQEConfig(
        discount=discount,
        num_actions=ds.num_actions,
        hidden=tuple(config.fqe_hidden),
        num_critics=config.fqe_critics,
        target=config.fqe_target,
        lr=config.fqe_lr,
        tau=config.fqe_tau,
        batch_size=config.fqe_batch_size,
    )
    fit_data = batch.replace(extra={"next_pi": pi_next})
    state, metrics = fqe.fit(cfg, fit_data, key, config.fqe_steps, config.chunk_size)
    starts = data.traj.starts
    v_start = _q_values(state, cfg, batch.obs, pi_obs, rows, starts)
    info = {"fqe_steps": config.fqe_steps} | {k: v for k, v in metrics.items()}
    return _Model(state, cfg, pi_obs, pi_next, v_start, info)


def _dr(data: _Data, model: _Model, log_w, discount: float, config: OPEConfig, custom: bool):
    """DR's per-episode components, V̂ = E_{π_ε} Q̂ for discrete data (exact), else
    Q̂(s, π(s)) (the mean action of the Gaussian target; error O(σ²))."""
    batch, rows, starts = data.batch, config.eval_batch, data.traj.starts
    q_taken = _q_values(model.state, model.cfg, batch.obs, batch.act, rows)
    if data.discrete and not custom:
        eps = config.target_epsilon
        v_next = _expected_q(model.state, model.cfg, batch.next_obs, model.pi_next, eps, rows)
        v_start = _expected_q(model.state, model.cfg, batch.obs, model.pi_obs, eps, rows, starts)
    else:
        v_next = _q_values(model.state, model.cfg, batch.next_obs, model.pi_next, rows)
        v_start = model.v_start
    return _dr_components(data.traj, log_w, q_taken, v_next, v_start, discount)


_dr_components = jax.jit(dr.components, static_argnames=("discount",))


# --------------------------------------------------------------------------- importance weights


def _weights(data: _Data, pi_obs, target_fn, behavior_lp, label, config: OPEConfig, key):
    """(log w_t per transition, the IS diagnostics)."""
    ds, batch, rows = data.dataset, data.batch, config.eval_batch
    if target_fn is None:
        target_lp = _target_lp(batch.act, pi_obs, ds.discrete, config, ds.num_actions)
        target = (
            f"epsilon_greedy(epsilon={config.target_epsilon})"
            if ds.discrete
            else f"truncated_gaussian(std={config.target_std})"
        )
    else:
        raw = jnp.asarray(ds.observations, jnp.float32)
        target_lp, target = _given_target_lp(target_fn, raw, batch.act, rows), "target_log_prob_fn"
    mu_lp, info = _behavior(data, behavior_lp, label, config, key)
    log_w, diag = jax.device_get(_log_weights(data.traj, target_lp, mu_lp, config.max_weight))
    if not diag.pop("ok"):
        raise DataError("OPE: NaN importance weights; check behavior_log_probs and the target")
    diag = {k: float(v) for k, v in diag.items()}
    return jnp.asarray(log_w), info | {"target": target, **diag, "max_weight": config.max_weight}


_target_lp = jax.jit(behavior.target_log_probs, static_argnames=("discrete", "cfg", "num_actions"))


@functools.partial(jax.jit, static_argnames=("fn", "rows"))
def _given_target_lp(fn: LogProbFn, obs, act, rows: int) -> jnp.ndarray:
    return jnp.reshape(apply_batched(fn, obs, act, batch=rows), (obs.shape[0],))


@functools.partial(jax.jit, static_argnames=("max_weight",))
def _log_weights(traj: Trajectories, target_lp, mu_lp, max_weight: float | None):
    """log w_t, and diagnostics: ESS of the trajectory weights, the fraction of clipped
    steps, whether any weight is NaN."""
    log_w, clipped = importance.log_weights(traj, target_lp - mu_lp, max_weight)
    return log_w, {
        "ess": importance.effective_sample_size(jnp.exp(log_w[traj.ends])),
        "clipped_fraction": jnp.mean(clipped),
        "ok": jnp.all(jnp.isfinite(log_w) | (log_w < 0)),
    }


def _behavior(data: _Data, given, label: str, config: OPEConfig, key) -> tuple[jnp.ndarray, dict]:
    """log μ(a_t|s_t) in unit-action space: the given (logged) values, or a fitted model's."""
    ds = data.dataset
    if given is None:
        log_probs, nll = _fitted_unit_log_probs(data, config, key)
        return log_probs, {"behavior": "fitted", "behavior_nll": nll}
    arr = np.asarray(given, np.float64)
    if arr.shape not in ((len(ds),), (len(ds), 1)) or not np.all(np.isfinite(arr)):
        raise DataError(
            f"behavior_log_probs: expected ({len(ds)},) finite log-probabilities, got "
            f"shape {arr.shape}" + ("" if np.all(np.isfinite(arr)) else " with NaN/inf")
        )
    if not ds.discrete:  # environment units -> unit actions
        arr = arr + unit_log_jacobian(data.tf.act_low, data.tf.act_high)
    return jnp.asarray(arr.reshape(-1), jnp.float32), {"behavior": label}


def _fitted_unit_log_probs(data: _Data, config: OPEConfig, key) -> tuple[jnp.ndarray, float]:
    model, metrics = behavior.fit_behavior(data.batch, data.dataset.num_actions, config, key)
    log_probs = _model_lp(model, data.batch.obs, data.batch.act, data.discrete, config.eval_batch)
    return log_probs, metrics.get("behavior_nll", float("nan"))


@functools.partial(jax.jit, static_argnames=("discrete", "rows"))
def _model_lp(model, obs, act, discrete: bool, rows: int) -> jnp.ndarray:
    fn = lambda o, a: behavior.log_prob(model, model.params, o, a, discrete)  # noqa: E731
    return apply_batched(fn, obs, act, batch=rows)


def fit_behavior_log_probs(
    dataset: Dataset,
    config: OPEConfig = DEFAULT_CONFIG,
    key: jax.Array | int = 0,
    *,
    action_low: np.ndarray | None = None,
    action_high: np.ndarray | None = None,
) -> tuple[np.ndarray, dict]:
    """log μ(a_t|s_t) of a behaviour model fitted to `dataset`, (N,), in environment units
    (the convention of `estimate`'s behavior_log_probs), and {"behavior_nll": ...}. Fit once,
    pass the array to every later `estimate` (with behavior_label="fitted")."""
    check_config(config)
    data = _prepare(dataset, action_low, action_high, config)
    key = jax.random.key(key) if isinstance(key, int) else key
    log_probs, nll = _fitted_unit_log_probs(data, config, key)
    log_probs = np.asarray(log_probs, np.float64)
    if not data.discrete:
        log_probs = log_probs - unit_log_jacobian(data.tf.act_low, data.tf.act_high)
    return log_probs.astype(np.float32), {"behavior_nll": nll}


# --------------------------------------------------------------------------- estimators


_components = jax.jit(importance.components, static_argnames=("discount",))
_stepwise = jax.jit(importance.stepwise_components, static_argnames=("discount",))
_STATS = {"is": importance.is_stat, "pdis": importance.pdis_stat, "wis": importance.wis_stat}


def _importance(data: _Data, log_w, names: tuple[str, ...], discount: float) -> dict:
    """name -> (stat, components) for the IS family."""
    out = {}
    if any(n in _STATS for n in names):
        comp = _components(data.traj, log_w, discount)
        out = {n: (stat, comp) for n, stat in _STATS.items() if n in names}
    if "wpdis" in names:
        cells = data.traj.num_episodes * data.traj.horizon
        if cells > MAX_WPDIS_CELLS:
            raise ConfigError(
                f"wpdis needs an episodes × horizon table of {cells:,} cells (limit "
                f"{MAX_WPDIS_CELLS:,}); leave wpdis out"
            )
        out["wpdis"] = (importance.wpdis_stat, _stepwise(data.traj, log_w, discount))
    return out


def _summaries(comps: dict, infos: dict, key, discount: float, data: _Data, cfg: OPEConfig):
    """name -> result dict, every estimator bootstrapped on the same resamples."""
    names = tuple(comps)
    stats = tuple(comps[n][0] for n in names)
    parts = tuple(comps[n][1] for n in names)
    out = bootstrap.summarize(stats, parts, key, cfg.num_bootstrap, cfg.confidence)
    common = {"discount": discount, "confidence": cfg.confidence}
    common["episodes"] = data.traj.num_episodes
    bounds = value_range(data.dataset.rewards, discount, data.traj.horizon)
    common["value_range"] = list(bounds)
    results = {}
    for name, s in zip(names, jax.device_get(out)):
        results[name] = (
            {
                "value": float(s["value"]),
                "ci": [float(s["lo"]), float(s["hi"])],
                "std_error": float(s["std_error"]),
            }
            | common
            | infos[name]
        )
        warning = range_warning(results[name]["value"], bounds)
        if warning is not None:
            results[name]["warning"] = warning
    return results


def range_warning(value: float, bounds: tuple[float, float]) -> str | None:
    """What to say of an estimate outside `value_range`, else None."""
    if bounds[0] <= value <= bounds[1]:
        return None
    return (
        f"{value:.4g} is outside [{bounds[0]:.4g}, {bounds[1]:.4g}], the values the data's "
        "rewards allow: the estimate extrapolates (coverage)"
    )


def value_range(rewards: np.ndarray, discount: float, horizon: int) -> tuple[float, float]:
    """The discounted returns a policy can have with rewards in the data's [r_min, r_max]:
    from r_min · S (r_min < 0; else r_min, a one-step episode) to r_max · S (r_max > 0; else
    r_max), S = Σ_t γ^t = 1 / (1 − γ) (FQE bootstraps through timeouts: no horizon), or H
    steps at γ = 1. An estimate outside it cannot be any policy's value."""
    steps = float(horizon) if discount == 1.0 else 1.0 / (1.0 - discount)
    lo, hi = float(np.min(rewards)), float(np.max(rewards))
    return (lo * steps if lo < 0 else lo), (hi * steps if hi > 0 else hi)


def format_results(results: dict[str, dict], as_json: bool = False) -> str:
    """JSON (every field), or one line per estimator: name, value, interval, diagnostics."""
    if as_json:
        return json.dumps(results)
    lines = []
    for name, r in results.items():
        lo, hi = r["ci"]
        pct = round(100 * r["confidence"])
        line = f"{name:<6} {r['value']:12.4f}   {pct}% CI [{lo:.4f}, {hi:.4f}]"
        if "ess" in r:
            line += f"   ESS {r['ess']:.1f} of {r['episodes']}, behaviour {r['behavior']}"
        if "warning" in r:
            line += f"   warning: {r['warning']}"
        lines.append(line)
    return "\n".join(lines)
