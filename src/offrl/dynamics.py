"""A learned dynamics ensemble: the model of model-based offline RL (MOPO, MOReL, COMBO) and
of model-based off-policy evaluation.

Model (MBPO, Janner et al. 2019; MOPO, Yu et al. 2020; OfflineRL-Kit's defaults):
- N = 7 probabilistic MLPs (4 × 200, swish; offrl.nets.dynamics) predict a Gaussian over
  the target y = (s' − s, r) from the input x = (s, a), a in [-1, 1] action units. Inputs
  and targets are standardized with the training split's mean and std; predictions are
  returned in the dataset's own units.
- Loss, per member on its own bootstrap minibatch, summed over members:
      L = mean_{batch, dims} [(μ − y)² e^{−lv} + lv]            (2 × Gaussian NLL − log 2π)
          + 0.01 (Σ max_logvar − Σ min_logvar)                     (keeps the bounds tight)
          + Σ_layers wd_l ‖W_l‖² / 2                               (per-layer weight decay)
- Held out: min(max_holdout = 1000, holdout_fraction = 10%) random transitions (OfflineRL-Kit
  holds out min(1000, 20%)). Each epoch every member draws N_train indices with replacement
  (a bootstrap, as MBPO). After it, each member's held-out MSE (standardized units, mean
  over dimensions) is measured; a member whose MSE improved by more than 1% keeps these
  parameters as its best. Training stops after `patience` = 5 epochs in which no member
  improved (or at `max_epochs`), and every member returns to its best parameters.
- Elites: the 5 members with the lowest held-out MSE. A step samples, per transition, one
  elite uniformly and a next state and reward from its Gaussian.

Termination: the known functions of the environment (`TERMINATIONS`; MBPO's and MOPO's
healthy ranges for Hopper, Walker2d and Ant, which are gymnasium v5's own conditions), and
for any other environment none: nothing is terminal in model rollouts. A dataset with
terminals from an unknown environment says so when its model is trained (`record`).

Saved as DIR/dynamics.msgpack (flax serialization of the arrays: no pickle) and
DIR/dynamics.json (settings, sizes, termination, the training record);
`offrl model train DATASET --out DIR`, `offrl model eval DIR --dataset D`.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import flax.serialization
import flax.struct
import jax
import jax.numpy as jnp
import numpy as np
import optax

from offrl.atomic import atomic_write, atomic_write_json
from offrl.core import Batch, adam
from offrl.data.dataset import Dataset
from offrl.data.transforms import make_transforms
from offrl.errors import ConfigError, DataError
from offrl.nets.dynamics import MEMBERS, GaussianEnsemble

MODEL_FILE, CONFIG_FILE = "dynamics.msgpack", "dynamics.json"
LOG_2PI = math.log(2 * math.pi)


@dataclasses.dataclass(frozen=True)
class DynamicsConfig:
    num_members: int = 7  # N; MBPO / MOPO / OfflineRL-Kit
    num_elites: int = 5
    hidden: tuple[int, ...] = (200, 200, 200, 200)
    weight_decay: tuple[float, ...] = (2.5e-5, 5e-5, 7.5e-5, 7.5e-5, 1e-4)  # per layer
    lr: float = 1e-3
    batch_size: int = 256
    holdout_fraction: float = 0.1
    max_holdout: int = 1000
    patience: int = 5  # epochs with no member improving by more than `improvement`
    improvement: float = 0.01  # relative decrease of a member's held-out MSE
    max_epochs: int = 0  # 0: until early stopping
    logvar_loss_coef: float = 0.01


def check_config(cfg: DynamicsConfig) -> None:
    checks = [
        (1 <= cfg.num_elites <= cfg.num_members, "need 1 <= num_elites <= num_members"),
        (len(cfg.weight_decay) == len(cfg.hidden) + 1, "weight_decay needs one per layer"),
        (0 < cfg.holdout_fraction < 1, "holdout_fraction must be in (0, 1)"),
        (cfg.max_holdout >= 1 and cfg.batch_size >= 1, "max_holdout, batch_size must be >= 1"),
        (cfg.patience >= 1 and cfg.max_epochs >= 0, "patience >= 1 and max_epochs >= 0"),
    ]
    for ok, message in checks:
        if not ok:
            raise ConfigError(f"dynamics config: {message}")


# --------------------------------------------------------------------------- termination


def hopper_done(next_obs: jnp.ndarray) -> jnp.ndarray:
    """Hopper-v5 ends when z <= 0.7, |angle| >= 0.2 or any other state entry leaves
    (-100, 100): obs[0] = z, obs[1] = angle."""
    z, angle = next_obs[..., 0], next_obs[..., 1]
    healthy = (
        jnp.all(jnp.abs(next_obs[..., 1:]) < 100, axis=-1) & (z > 0.7) & (jnp.abs(angle) < 0.2)
    )
    return ~(healthy & jnp.all(jnp.isfinite(next_obs), axis=-1))


def walker2d_done(next_obs: jnp.ndarray) -> jnp.ndarray:
    """Walker2d-v5 ends unless 0.8 < z < 2 and -1 < angle < 1."""
    z, angle = next_obs[..., 0], next_obs[..., 1]
    return ~((z > 0.8) & (z < 2.0) & (angle > -1.0) & (angle < 1.0))


def ant_done(next_obs: jnp.ndarray) -> jnp.ndarray:
    """Ant-v5 ends unless the torso's z (obs[0]) is in [0.2, 1] and the state is finite."""
    z = next_obs[..., 0]
    return ~((z >= 0.2) & (z <= 1.0) & jnp.all(jnp.isfinite(next_obs), axis=-1))


def never_done(next_obs: jnp.ndarray) -> jnp.ndarray:
    return jnp.zeros(next_obs.shape[:-1], bool)


TERMINATIONS: dict[str, Callable[[jnp.ndarray], jnp.ndarray]] = {
    "hopper": hopper_done,
    "walker2d": walker2d_done,
    "ant": ant_done,
    "none": never_done,
}
_ENV_TERMINATION = {"Hopper": "hopper", "Walker2d": "walker2d", "Ant": "ant"}


def termination_for(env_id: str | None) -> str:
    """The name of env_id's termination function (its id before "-v"), else "none"."""
    return _ENV_TERMINATION.get((env_id or "").split("-v")[0], "none")


# --------------------------------------------------------------------------- the model


@flax.struct.dataclass
class Dynamics:
    params: Any  # GaussianEnsemble's
    in_mean: jnp.ndarray  # (obs_dim + act_dim,)
    in_std: jnp.ndarray
    out_mean: jnp.ndarray  # (obs_dim + 1,): Δs then r
    out_std: jnp.ndarray
    elites: jnp.ndarray  # (num_elites,) int32 member indices
    module: GaussianEnsemble = flax.struct.field(pytree_node=False)
    termination: str = flax.struct.field(pytree_node=False, default="none")

    @property
    def obs_dim(self) -> int:
        return self.out_mean.shape[0] - 1

    @property
    def act_dim(self) -> int:
        return self.in_mean.shape[0] - self.obs_dim


ARRAY_FIELDS = ("params", "in_mean", "in_std", "out_mean", "out_std", "elites")  # the file's


def init(cfg: DynamicsConfig, obs_dim: int, act_dim: int, key: jax.Array, termination="none"):
    module = GaussianEnsemble(obs_dim + 1, cfg.num_members, tuple(cfg.hidden))
    params = jax.jit(module.init)(key, jnp.zeros((1, obs_dim + act_dim)))
    d_in, d_out = obs_dim + act_dim, obs_dim + 1
    return Dynamics(
        params=params,
        in_mean=jnp.zeros(d_in),
        in_std=jnp.ones(d_in),
        out_mean=jnp.zeros(d_out),
        out_std=jnp.ones(d_out),
        elites=jnp.arange(cfg.num_elites, dtype=jnp.int32),
        module=module,
        termination=termination,
    )


def predict(model: Dynamics, obs: jnp.ndarray, act: jnp.ndarray):
    """Every member's Gaussian over (s' − s, r) in dataset units: mean, std, (N, B, obs_dim + 1).
    `act` in [-1, 1] action units."""
    x = (jnp.concatenate([obs, act], axis=-1) - model.in_mean) / model.in_std
    mean, logvar = model.module.apply(model.params, x)
    return mean * model.out_std + model.out_mean, jnp.exp(0.5 * logvar) * model.out_std


def step(model: Dynamics, key: jax.Array, obs: jnp.ndarray, act: jnp.ndarray):
    """One model step per row: a random elite's sample. Returns next_obs (B, obs_dim), reward
    (B,), terminal (B,) bool, and every member's (mean, std) for penalties."""
    k_elite, k_noise = jax.random.split(key)
    mean, std = predict(model, obs, act)
    rows = jnp.arange(obs.shape[0])
    member = model.elites[jax.random.randint(k_elite, (obs.shape[0],), 0, model.elites.shape[0])]
    sample = mean[member, rows] + std[member, rows] * jax.random.normal(k_noise, mean.shape[1:])
    next_obs = obs + sample[:, :-1]
    return next_obs, sample[:, -1], TERMINATIONS[model.termination](next_obs), (mean, std)


def uncertainty(std: jnp.ndarray) -> jnp.ndarray:
    """MOPO's u(s, a) = max_i ‖σ_i(s, a)‖₂ over every member, from `predict`'s std
    (N, B, d) in dataset units: (B,)."""
    return jnp.max(jnp.linalg.norm(std, axis=-1), axis=0)


def disagreement(mean: jnp.ndarray, obs_dim: int) -> jnp.ndarray:
    """MOReL's disc(s, a) = max_{i,j} ‖μ_i(s, a) − μ_j(s, a)‖₂ over every pair of members'
    predicted next states, from `predict`'s mean (N, B, d): (B,)."""
    nxt = mean[..., :obs_dim]
    return jnp.max(jnp.linalg.norm(nxt[:, None] - nxt[None], axis=-1), axis=(0, 1))


# reward_fn(r̂, terminal, mean, std) -> (reward, terminal): how an algorithm reshapes a model
# step (MOPO's penalty, MOReL's halt); mean and std are every member's, (N, B, d).
RewardFn = Callable[[jnp.ndarray, jnp.ndarray, jnp.ndarray, jnp.ndarray], tuple]


def penalized(penalty_coef: float) -> RewardFn:
    """MOPO's r̃ = r̂ − λ u(s, a)."""
    return lambda rew, terminal, mean, std: (rew - penalty_coef * uncertainty(std), terminal)


def branched_rollout(
    model: Dynamics,
    policy_fn: Callable[[jnp.ndarray, jax.Array], jnp.ndarray],
    obs: jnp.ndarray,
    key: jax.Array,
    horizon: int,
    reward_fn: RewardFn | None = None,
) -> tuple[Batch, jnp.ndarray]:
    """`horizon` model steps from the raw states `obs` (n, obs_dim), acting with
    policy_fn(raw obs, key) -> [-1, 1] actions. Returns the n·horizon transitions (step-major;
    raw states, reward and done as `reward_fn` makes them from r̂ and the model's terminals)
    and which are valid: a rollout's rows up to and including the step that ended it."""

    def body(carry, k):
        obs, alive = carry
        k_pi, k_model = jax.random.split(k)
        act = policy_fn(obs, k_pi)
        nxt, rew, terminal, (mean, std) = step(model, k_model, obs, act)
        if reward_fn is not None:
            rew, terminal = reward_fn(rew, terminal, mean, std)
        row = Batch(obs=obs, act=act, rew=rew, next_obs=nxt, done=terminal.astype(jnp.float32))
        return (nxt, alive & ~terminal), (row, alive)

    alive = jnp.ones(obs.shape[0], bool)
    _, (rows, valid) = jax.lax.scan(body, (obs, alive), jax.random.split(key, horizon))
    flat = lambda x: x.reshape(-1, *x.shape[2:])  # noqa: E731
    return jax.tree_util.tree_map(flat, rows), flat(valid)


# --------------------------------------------------------------------------- training


def nll_loss(params, module, x, y, cfg: DynamicsConfig):
    """The training loss of the module docstring on per-member batches x (N, B, d_in),
    y (N, B, d_out), both standardized."""
    mean, logvar = module.apply(params, x)
    nll = jnp.sum(jnp.mean((mean - y) ** 2 * jnp.exp(-logvar) + logvar, axis=(1, 2)))
    p = params["params"]
    bounds = cfg.logvar_loss_coef * (jnp.sum(p["max_logvar"]) - jnp.sum(p["min_logvar"]))
    layers = p[MEMBERS]["MLP_0"]
    decay = sum(
        wd * 0.5 * jnp.sum(layers[f"Dense_{i}"]["kernel"] ** 2)
        for i, wd in enumerate(cfg.weight_decay)
    )
    return nll + bounds + decay, {"nll": nll}


def holdout_mse(params, module, x, y) -> jnp.ndarray:
    """Each member's MSE of its mean on shared rows (standardized units), (N,)."""
    mean, _ = module.apply(params, x)
    return jnp.mean((mean - y) ** 2, axis=(1, 2))


@functools.partial(jax.jit, static_argnames=("module", "cfg", "tx", "steps"))
def _epoch(params, opt_state, key, x, y, module, cfg: DynamicsConfig, tx, steps: int):
    """One bootstrap epoch: `steps` minibatches, each member its own rows."""
    n_members, size = cfg.num_members, cfg.batch_size

    def body(carry, k):
        params, opt_state = carry
        idx = jax.random.randint(k, (n_members, size), 0, x.shape[0])
        grads, m = jax.grad(nll_loss, has_aux=True)(params, module, x[idx], y[idx], cfg)
        updates, opt_state = tx.update(grads, opt_state, params)
        return (optax.apply_updates(params, updates), opt_state), m["nll"]

    (params, opt_state), nll = jax.lax.scan(body, (params, opt_state), jax.random.split(key, steps))
    return params, opt_state, nll.mean()


def _keep_best(improved: jnp.ndarray, new: Any, best: Any) -> Any:
    """Members' parameters: the new ones where `improved`, else the best so far. The shared
    log-variance bounds follow the newest parameters."""
    pick = lambda n, b: jnp.where(improved.reshape((-1,) + (1,) * (n.ndim - 1)), n, b)  # noqa: E731
    p_new, p_best = new["params"], best["params"]
    members = jax.tree_util.tree_map(pick, p_new[MEMBERS], p_best[MEMBERS])
    return {"params": dict(p_new) | {MEMBERS: members}}


def choose_elites(holdout_mse: np.ndarray, k: int) -> np.ndarray:
    """The k members of lowest held-out MSE, best first (ties: the lower index)."""
    return np.argsort(np.asarray(holdout_mse), kind="stable")[:k].astype(np.int32)


def split_holdout(n: int, cfg: DynamicsConfig, key: jax.Array) -> tuple[np.ndarray, np.ndarray]:
    """(train rows, held-out rows): min(max_holdout, holdout_fraction · n) random rows out."""
    n_out = min(cfg.max_holdout, int(cfg.holdout_fraction * n))
    if n_out < 1 or n - n_out < 1:
        raise DataError(f"{n} transitions: too few to hold out any for the dynamics model")
    perm = np.asarray(jax.random.permutation(key, n))
    return np.sort(perm[n_out:]), np.sort(perm[:n_out])


def model_arrays(dataset: Dataset) -> tuple[np.ndarray, np.ndarray]:
    """x = (s, a in [-1, 1]) and y = (s' − s, r) of every transition."""
    if dataset.discrete:
        raise ConfigError(
            f"{dataset.name or 'dataset'}: the dynamics model needs continuous actions"
        )
    tf = make_transforms(dataset, normalize_obs=False)
    unit = np.clip(np.asarray(tf.action_to_unit(jnp.asarray(dataset.actions))), -1, 1)
    x = np.concatenate([dataset.observations, unit], axis=1).astype(np.float32)
    delta = dataset.next_observations - dataset.observations
    y = np.concatenate([delta, dataset.rewards[:, None]], axis=1).astype(np.float32)
    return x, y


def _standardizer(a: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    std = a.std(axis=0)
    return a.mean(axis=0), np.where(std > 1e-8, std, 1.0).astype(np.float32)


def train(
    cfg: DynamicsConfig,
    dataset: Dataset,
    key: jax.Array | int = 0,
    progress: Callable[[dict], None] | None = None,
) -> tuple[Dynamics, dict]:
    """Fit the ensemble to the dataset; returns the model (elites chosen, best members
    restored) and the training record. `progress` is called after every epoch."""
    check_config(cfg)
    key = jax.random.key(key) if isinstance(key, int) else key
    k_split, k_init, k_train = jax.random.split(key, 3)
    x, y = model_arrays(dataset)
    train_rows, held_rows = split_holdout(len(x), cfg, k_split)
    in_mean, in_std = _standardizer(x[train_rows])
    out_mean, out_std = _standardizer(y[train_rows])
    xs, ys = (x - in_mean) / in_std, (y - out_mean) / out_std
    x_tr, y_tr = jnp.asarray(xs[train_rows]), jnp.asarray(ys[train_rows])
    x_ho, y_ho = jnp.asarray(xs[held_rows]), jnp.asarray(ys[held_rows])
    termination = termination_for(dataset.env_id)
    model = init(cfg, dataset.obs_dim, dataset.act_dim, k_init, termination)
    tx = adam(cfg.lr)  # cached: a second fit with the same settings reuses the compiled epoch
    params, opt_state = model.params, tx.init(model.params)
    best, best_mse = params, np.asarray(holdout_mse(params, model.module, x_ho, y_ho))
    steps = max(1, math.ceil(len(train_rows) / cfg.batch_size))
    epoch, stale, history = 0, 0, []
    while stale < cfg.patience and (cfg.max_epochs == 0 or epoch < cfg.max_epochs):
        k_train, k = jax.random.split(k_train)
        params, opt_state, nll = _epoch(
            params, opt_state, k, x_tr, y_tr, model.module, cfg, tx, steps
        )
        mse = np.asarray(holdout_mse(params, model.module, x_ho, y_ho))
        improved = (best_mse - mse) / np.maximum(best_mse, 1e-12) > cfg.improvement
        best = _keep_best(jnp.asarray(improved), params, best)
        best_mse = np.where(improved, mse, best_mse)
        stale = 0 if improved.any() else stale + 1
        epoch += 1
        history.append({"epoch": epoch, "train_nll": float(nll), "holdout_mse": mse.tolist()})
        if progress is not None:
            progress(history[-1])
    elites = choose_elites(best_mse, cfg.num_elites)
    model = model.replace(
        params=best,
        in_mean=jnp.asarray(in_mean),
        in_std=jnp.asarray(in_std),
        out_mean=jnp.asarray(out_mean),
        out_std=jnp.asarray(out_std),
        elites=jnp.asarray(elites),
    )
    record = {
        "epochs": epoch,
        "stopped": "early stopping" if stale >= cfg.patience else "max_epochs",
        "train_transitions": len(train_rows),
        "holdout_transitions": len(held_rows),
        "holdout_mse": best_mse.tolist(),
        "elites": elites.tolist(),
        "termination": termination,
        "history": history,
    }
    if termination == "none" and dataset.terminals.any():
        record["warning"] = (
            f"{int(dataset.terminals.sum())} terminals in the data, but no termination "
            f"function is known for {dataset.env_id or 'this environment'}: model rollouts "
            "never end"
        )
    return model, record


# --------------------------------------------------------------------------- evaluation


def evaluate(model: Dynamics, dataset: Dataset) -> dict[str, list[float]]:
    """Per output dimension (Δs_0 … Δs_{d−1}, r), over the dataset's transitions and the
    elites: MSE of the elites' mean prediction, and the Gaussian NLL (nats) of the data
    under the elites' mixture, with the constant 0.5 log 2π."""
    x, y = model_arrays(dataset)
    obs_dim = model.obs_dim
    mse, nll = np.zeros(obs_dim + 1), np.zeros(obs_dim + 1)
    for start in range(0, len(x), 8192):
        xb, yb = jnp.asarray(x[start : start + 8192]), jnp.asarray(y[start : start + 8192])
        m, s = _elite_gaussians(model, xb[:, :obs_dim], xb[:, obs_dim:])
        mse += np.asarray(jnp.sum((m.mean(0) - yb) ** 2, axis=0))
        nll += np.asarray(jnp.sum(_mixture_nll(m, s, yb), axis=0))
    return {"mse": (mse / len(x)).tolist(), "nll": (nll / len(x)).tolist()}


@jax.jit
def _elite_gaussians(model: Dynamics, obs, act):
    mean, std = predict(model, obs, act)
    return mean[model.elites], std[model.elites]


def _mixture_nll(mean, std, y) -> jnp.ndarray:
    """−log (1/E Σ_e N(y; μ_e, σ_e²)) per row and dimension, (B, d)."""
    log_p = -0.5 * (((y - mean) / std) ** 2 + 2 * jnp.log(std) + LOG_2PI)
    return -(jax.scipy.special.logsumexp(log_p, axis=0) - jnp.log(mean.shape[0]))


def output_names(obs_dim: int) -> list[str]:
    return [f"Δobs[{i}]" for i in range(obs_dim)] + ["reward"]


# --------------------------------------------------------------------------- files


def save(directory: str | Path, model: Dynamics, cfg: DynamicsConfig, meta: dict) -> None:
    directory = Path(directory)
    arrays = {f: getattr(model, f) for f in ARRAY_FIELDS}
    atomic_write(directory / MODEL_FILE, flax.serialization.to_bytes(arrays))
    sizes = {"obs_dim": model.obs_dim, "act_dim": model.act_dim}
    config = {"config": dataclasses.asdict(cfg), "termination": model.termination}
    atomic_write_json(directory / CONFIG_FILE, config | sizes | meta)


def load(directory: str | Path) -> tuple[Dynamics, dict]:
    """The model saved in `directory` and its JSON record."""
    directory = Path(directory)
    if not (directory / MODEL_FILE).exists() or not (directory / CONFIG_FILE).exists():
        raise ConfigError(
            f"{directory}: not a dynamics model (need {MODEL_FILE} and {CONFIG_FILE})"
        )
    meta = json.loads((directory / CONFIG_FILE).read_text())
    fields = {f.name for f in dataclasses.fields(DynamicsConfig)}
    raw = {k: v for k, v in meta["config"].items() if k in fields}
    cfg = DynamicsConfig(**{k: tuple(v) if isinstance(v, list) else v for k, v in raw.items()})
    template = init(cfg, meta["obs_dim"], meta["act_dim"], jax.random.key(0), meta["termination"])
    arrays = {f: getattr(template, f) for f in ARRAY_FIELDS}
    try:
        arrays = flax.serialization.from_bytes(arrays, (directory / MODEL_FILE).read_bytes())
    except Exception as exc:  # msgpack / structure errors: a corrupt or foreign file
        raise ConfigError(f"{directory / MODEL_FILE}: cannot restore the model ({exc})") from None
    return template.replace(**arrays), meta


def fit_or_load(
    dataset: Dataset, directory: str | None, max_epochs: int, key: jax.Array
) -> tuple[Dynamics, dict]:
    """The model saved in `directory` (checked against the data's sizes), else one fitted to
    the dataset with the default config for at most `max_epochs` epochs (0: until early
    stopping); and what to say about it. Model-based OPE and the model-based algorithms'
    pretrain share it."""
    if directory is not None:
        model, _ = load(directory)
        if (model.obs_dim, model.act_dim) != (dataset.obs_dim, dataset.act_dim):
            raise ConfigError(
                f"{directory}: a model of ({model.obs_dim}, {model.act_dim}) obs/act dimensions; "
                f"the data has ({dataset.obs_dim}, {dataset.act_dim})"
            )
        info = {"model": str(directory), "termination": model.termination}
    else:
        model, record = train(DynamicsConfig(max_epochs=max_epochs), dataset, key)
        elite_mse = [record["holdout_mse"][i] for i in record["elites"]]
        info = {
            "model": "fitted",
            "model_epochs": record["epochs"],
            "model_stopped": record["stopped"],
            "model_elites": record["elites"],
            "model_holdout_mse": float(np.mean(elite_mse)),
            "termination": record["termination"],
        }
        if "warning" in record:
            info["model_warning"] = record["warning"]
    expected = termination_for(dataset.env_id)
    if model.termination != expected:  # a model made for another environment's data
        info["termination_note"] = f"model says {model.termination}, data's env {expected}"
    return model, info
