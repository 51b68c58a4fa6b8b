"""Algorithm registry.

Every algorithm is a module with the same small protocol (see ../shared/DESIGN.md):

    Config                                   frozen dataclass; every field documented. Fields
                                             the training loop reads: batch_size,
                                             normalize_obs, reward_scaling.
    State                                    flax.struct pytree: params, optimizer states,
                                             targets, transforms `tf`, and `step` (int32,
                                             +1 per update; the loop derives keys from it)
    init(cfg, spec, key) -> State
    update(cfg, state, batch, key) -> (State, metrics)    pure; jit- and scan-able
    act(cfg, state, obs, key, deterministic=True) -> env actions   pure; batched
Optional:
    extra_columns(cfg, dataset, tf) -> {name: (N,) array}   per-transition columns the
                                             updates read from batch.extra (AWR's returns)
    action_kind = "continuous" | "discrete"  the action spaces the algorithm handles
                                             (absent: "continuous"). Continuous: batch.act
                                             (B, act_dim) in [-1, 1], `act` returns (B,
                                             act_dim) env actions. Discrete: spec.num_actions
                                             = n, batch.act (B,) int32 indices, `act` returns
                                             (B,) int32 env actions in [0, n). The training
                                             loop refuses data of the other kind.
"""

from __future__ import annotations

import dataclasses
import importlib
from types import ModuleType
from typing import Any

from offrl.errors import ConfigError

NAMES = (
    "bc",
    "td3_bc",
    "iql",
    "cql",
    "bcq",
    "bear",
    "brac",
    "awr",
    "awac",
    "crr",
    "sac",
    "td3",
    "ddpg",
    "dqn",
    "ddqn",
    "bc_discrete",
    "qrdqn",
    "rem",
    "ensemble_dqn",
    "fqi",
    "bcq_discrete",
    "cql_discrete",
    "spibb",
)
ACTION_KINDS = ("continuous", "discrete")


def get(name: str) -> ModuleType:
    if name not in NAMES:
        raise KeyError(f"unknown algorithm {name!r}; choose one of: {', '.join(NAMES)}")
    return importlib.import_module(f"offrl.algos.{name}")


def action_kind(algo: ModuleType) -> str:
    """ "continuous" or "discrete": the actions `algo` trains on and returns."""
    kind = getattr(algo, "action_kind", "continuous")
    if kind not in ACTION_KINDS:
        raise ValueError(f"{algo.__name__}.action_kind must be one of {ACTION_KINDS}, got {kind!r}")
    return kind


# --------------------------------------------------------------------------- configs


def parse_overrides(pairs: list[str]) -> dict[str, str]:
    out = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise ConfigError(f"--set {pair!r}: expected key=value")
        out[key.strip()] = value.strip()
    return out


def _coerce(name: str, default: Any, value: Any, annotation: str = "") -> Any:
    """Convert an override (a string from the CLI, or a Python value) to the field's type.
    A field whose default is None (`float | None`) takes "none" or a value of its other type."""
    if not isinstance(value, str):
        return tuple(value) if isinstance(default, tuple) else value
    if default is None:
        if value.lower() == "none":
            return None
        other = next((t for t in ("float", "int", "bool") if t in annotation.split(" | ")), None)
        default = {"float": 0.0, "int": 0, "bool": False}.get(other, "")
    try:
        if isinstance(default, bool):
            if value.lower() not in ("true", "false", "1", "0"):
                raise ValueError
            return value.lower() in ("true", "1")
        if isinstance(default, int):
            return int(value)
        if isinstance(default, float):
            return float(value)
        if isinstance(default, tuple):
            return tuple(int(v) for v in value.strip("()[] ").split(",") if v.strip())
        return value
    except ValueError:
        kind = type(default).__name__
        raise ConfigError(f"config field {name!r}: cannot read {value!r} as {kind}") from None


def make_algo_config(algo_name: str, overrides: dict[str, Any]):
    algo = get_algo(algo_name)
    fields = {f.name: f for f in dataclasses.fields(algo.Config)}
    unknown = sorted(set(overrides) - set(fields))
    if unknown:
        raise ConfigError(
            f"unknown config field(s) {', '.join(unknown)} for {algo_name}; "
            f"valid: {', '.join(fields)}"
        )
    defaults = algo.Config()
    values = {
        k: _coerce(k, getattr(defaults, k), v, str(fields[k].type)) for k, v in overrides.items()
    }
    return algo.Config(**values)


def get_algo(name: str):
    try:
        return get(name)
    except KeyError as exc:
        raise ConfigError(exc.args[0]) from None
