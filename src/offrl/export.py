"""ONNX export of a trained policy: one graph from raw observations to environment actions.

The graph is `algo.act(cfg, state, obs, key(0), deterministic=True)` itself, converted by
jax2onnx from the traced JAX function with every parameter closed over as a constant, so
it holds exactly what `offrl.load_policy(run_dir)(obs)` computes:

    obs (batch, obs_dim) float32, raw
      -> (obs - obs_mean) / obs_std                      the run's saved transforms
      -> the networks of `act` (Gemm + activations, argmax over candidates or actions)
      -> continuous: low + (a + 1) / 2 * (high - low)    [-1, 1] -> the env's bounds
    action: continuous (batch, act_dim) float32; discrete (batch,) int32 action indices

The batch dimension is dynamic. Two algorithms draw random numbers from the key in their
deterministic `act`: BCQ (its `num_act_samples` VAE latents per state) and BEAR (its
`act_samples` policy samples per state, unless act_samples = 0). ONNX has no generator
that reproduces JAX's, so their draws for key(0) are fixed as a constant table of
`max_batch` rows, row i being what `load_policy` draws for the i-th observation of a batch
(JAX's partitionable threefry makes row i independent of the batch size); the graph
slices the first `batch` rows. A batch larger than `max_batch` fails in the runtime. Any
other `act` that samples from the key is refused with a one-line ConfigError.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from offrl import algos
from offrl.atomic import atomic_write
from offrl.core import best_candidate, repeat_states
from offrl.errors import ConfigError
from offrl.nets import VAE, QNet, ensemble_member
from offrl.policy import Policy, load_policy

OPSET = 17  # ONNX 1.12 (2022): every op the graphs use is older; loads in older runtimes too
MIN_OPSET, MAX_OPSET = 13, 23  # the range checked for every algorithm (docs/export.md)
MAX_BATCH = 256  # rows of fixed random draws for BCQ and BEAR
INPUT, OUTPUT, NOISE, BATCH = "obs", "action", "noise", "batch"
KEY = jax.random.key(0)  # the key of load_policy
FORMATS = ("onnx",)

ActFn = Callable[..., jnp.ndarray]


# ----------------------------------------------------------------- acting with given draws


def _bcq_act(cfg: Any, state: Any, obs: jnp.ndarray, z: jnp.ndarray) -> jnp.ndarray:
    """bcq.act (deterministic) with its prior latents z (B, n, latent) given, unclipped."""
    vae: VAE = state.vae.apply_fn.__self__
    obs_n = repeat_states(state.tf.obs(obs), z.shape[1])
    z = jnp.clip(z, -vae.latent_clip, vae.latent_clip)
    sampled = state.vae.apply_fn(state.vae.params, obs_n, z, method=VAE.decode)
    candidates = state.actor.apply_fn(state.actor.params, obs_n, sampled)
    q1 = QNet(cfg.hidden).apply(ensemble_member(state.critic.params, 0), obs_n, candidates)
    return state.tf.action_to_env(best_candidate(q1, candidates))


def _bcq_draws(cfg: Any, state: Any, rows: int) -> jnp.ndarray:
    latent = state.vae.apply_fn.__self__.latent_dim
    return jax.random.normal(KEY, (rows, cfg.num_act_samples, latent))


def _bear_act(cfg: Any, state: Any, obs: jnp.ndarray, eps: jnp.ndarray) -> jnp.ndarray:
    """bear.act (deterministic, act_samples > 0) with its standard normals eps (B, n, |A|)."""
    obs = state.tf.obs(obs)
    mean, log_std = state.actor.apply_fn(state.actor.params, obs)
    n = eps.shape[1]
    obs_n, mean_n, log_std_n = (repeat_states(x, n) for x in (obs, mean, log_std))
    acts = jnp.tanh(mean_n + jnp.exp(log_std_n) * eps)
    q1 = QNet(cfg.hidden).apply(ensemble_member(state.critic.params, 0), obs_n, acts)
    return state.tf.action_to_env(best_candidate(q1, acts))


def _bear_draws(cfg: Any, state: Any, rows: int) -> jnp.ndarray:
    act_dim = state.tf.act_low.shape[0]
    return jax.random.normal(KEY, (rows, cfg.act_samples, act_dim))


# name -> (act with the draws given, the draws of key(0) for `rows` observations)
SAMPLED_ACTS: dict[str, tuple[ActFn, Callable[[Any, Any, int], jnp.ndarray]]] = {
    "bcq": (_bcq_act, _bcq_draws),
    "bear": (_bear_act, _bear_draws),
}


# ------------------------------------------------------------------------- the JAX function


def algo_name(algo: ModuleType) -> str:
    return algo.__name__.rsplit(".", 1)[-1]


def obs_dim_of(state: Any) -> int:
    return int(state.tf.obs_mean.shape[0])


def _draws_key(algo: ModuleType, cfg: Any, state: Any) -> bool:
    """Whether the deterministic `act` draws random numbers from its key."""
    probe = jax.ShapeDtypeStruct((2, obs_dim_of(state)), jnp.float32)
    jaxpr = jax.make_jaxpr(lambda obs, key: algo.act(cfg, state, obs, key, True))(probe, KEY)
    return "random_bits" in str(jaxpr)


def act_function(
    algo: ModuleType, cfg: Any, state: Any, max_batch: int = MAX_BATCH
) -> tuple[ActFn, np.ndarray | None]:
    """The deterministic act as a function of raw observations, and, for an algorithm
    that samples, the table of its draws for key(0) that the function takes second."""
    name = algo_name(algo)
    if hasattr(algo, "act_step"):
        raise ConfigError(
            f"{name}: acts on its history (a context of past steps and returns carried "
            "between calls), which one stateless ONNX graph of the observation cannot hold"
        )
    if not _draws_key(algo, cfg, state):
        return (lambda obs: algo.act(cfg, state, obs, KEY, True)), None
    if name not in SAMPLED_ACTS:
        raise ConfigError(
            f"{name}: its deterministic act draws random numbers from the key, which ONNX "
            f"cannot reproduce; export supports sampling only for {', '.join(SAMPLED_ACTS)}"
        )
    if max_batch < 1:
        raise ConfigError(f"max_batch must be >= 1, got {max_batch}")
    act, draws = SAMPLED_ACTS[name]
    table = np.asarray(draws(cfg, state, max_batch), np.float32)
    _check_draws(algo, cfg, state, act, table)
    return (lambda obs, noise: act(cfg, state, obs, noise)), table


def _check_draws(algo: ModuleType, cfg: Any, state: Any, act: ActFn, table: np.ndarray) -> None:
    """The act with the table's rows is `algo.act` with key(0), for two batch sizes."""
    rng = np.random.default_rng(0)
    for rows in sorted({1, min(3, len(table))}):
        obs = jnp.asarray(rng.normal(size=(rows, obs_dim_of(state))), jnp.float32)
        ours = act(cfg, state, obs, jnp.asarray(table[:rows]))
        theirs = algo.act(cfg, state, obs, KEY, True)
        if not np.allclose(ours, theirs, rtol=0, atol=1e-5):
            raise RuntimeError(f"export of {algo_name(algo)}: the fixed draws do not reproduce act")


# --------------------------------------------------------------------------------- ONNX graph


def _onnx_modules():
    try:
        import onnx
        from jax2onnx import to_onnx
    except ImportError:
        raise ConfigError(
            "ONNX export needs jax2onnx and onnx: pip install 'offrl[export]'"
        ) from None
    return onnx, to_onnx


def policy_to_onnx(
    algo: ModuleType,
    cfg: Any,
    state: Any,
    opset: int = OPSET,
    max_batch: int = MAX_BATCH,
    metadata: dict[str, str] | None = None,
) -> Any:
    """The deterministic policy of (algo, cfg, state) as one checked onnx.ModelProto."""
    if not MIN_OPSET <= opset <= MAX_OPSET:
        raise ConfigError(f"--opset must be in {MIN_OPSET}..{MAX_OPSET}, got {opset}")
    onnx, to_onnx = _onnx_modules()
    fn, table = act_function(algo, cfg, state, max_batch)
    specs: list[tuple] = [(BATCH, obs_dim_of(state))]
    if table is not None:
        specs.append((BATCH, *table.shape[1:]))
    model = to_onnx(
        fn,
        specs,
        model_name=f"offrl_{algo_name(algo)}",
        opset=opset,
        input_names=[INPUT, NOISE][: len(specs)],
        output_names=[OUTPUT],
    )
    if table is not None:
        _bake_table(onnx, model.graph, table)
    props = {"algo": algo_name(algo), "action_kind": algos.action_kind(algo)}
    props["obs_dim"] = str(obs_dim_of(state))
    if table is not None:
        props["max_batch"] = str(len(table))
    onnx.helper.set_model_props(model, props | (metadata or {}))
    model.producer_name = "offrl"
    onnx.checker.check_model(model, full_check=True)
    return model


def _bake_table(onnx: ModuleType, graph: Any, table: np.ndarray) -> None:
    """The graph input NOISE becomes the first `batch` rows of a constant table."""
    (noise,) = [i for i in graph.input if i.name == NOISE]
    graph.input.remove(noise)
    from_array, node = onnx.numpy_helper.from_array, onnx.helper.make_node
    zero, one = np.zeros(1, np.int64), np.ones(1, np.int64)
    graph.initializer.extend(
        [from_array(table, "noise_table"), from_array(zero, "noise_0"), from_array(one, "noise_1")]
    )
    nodes = [
        node("Shape", [INPUT], ["noise_obs_shape"]),
        node("Slice", ["noise_obs_shape", "noise_0", "noise_1"], ["noise_rows"]),
        node("Slice", ["noise_table", "noise_0", "noise_rows", "noise_0"], [NOISE]),
    ]
    for i, n in enumerate(nodes):
        graph.node.insert(i, n)


# ----------------------------------------------------------------------------- entry points


def export_onnx(
    source: str | Path | Policy,
    out_path: str | Path,
    *,
    opset: int = OPSET,
    max_batch: int = MAX_BATCH,
    overwrite: bool = False,
) -> Path:
    """Write the deterministic policy of a run directory (or a loaded Policy) to
    `out_path` as one ONNX graph, atomically. An existing file is refused unless
    `overwrite`; a bad run directory is a ConfigError. Returns the written path."""
    out = Path(out_path)
    if out.is_dir():
        raise ConfigError(f"{out}: is a directory; --out names the .onnx file to write")
    if out.exists() and not overwrite:
        raise ConfigError(f"{out}: exists (--overwrite replaces it)")
    policy = source if isinstance(source, Policy) else load_policy(source)
    meta = {"step": str(policy.step)}
    meta |= {"env_id": str(policy.run["env_id"])} if policy.run.get("env_id") else {}
    model = policy_to_onnx(policy.algo, policy.cfg, policy.state, opset, max_batch, meta)
    atomic_write(out, model.SerializeToString())
    return out


def export_main(
    run_dir: str | Path,
    out: str | Path,
    fmt: str = "onnx",
    overwrite: bool = False,
    opset: int = OPSET,
    max_batch: int = MAX_BATCH,
) -> str:
    """`offrl export RUN_DIR --format onnx --out FILE`: writes the file, returns the line
    to print. Bad input raises ConfigError (the CLI prints one line, exit status 2)."""
    if fmt not in FORMATS:
        raise ConfigError(f"--format must be one of {', '.join(FORMATS)}, got {fmt!r}")
    path = export_onnx(run_dir, out, opset=opset, max_batch=max_batch, overwrite=overwrite)
    return f"{run_dir}: policy written to {path} (ONNX opset {opset}, {INPUT!r} -> {OUTPUT!r})"
