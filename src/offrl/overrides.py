"""Settings given as KEY=VALUE (the CLI's `--set`) applied to a frozen config dataclass.

One reader for every config (algorithms, OPE, the dynamics model): an unknown field or an
unreadable value is a one-line ConfigError naming it; values typed as the field's default.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from offrl.errors import ConfigError


def parse_overrides(pairs: list[str]) -> dict[str, str]:
    """["a=1", "b=x"] -> {"a": "1", "b": "x"}."""
    out = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise ConfigError(f"--set {pair!r}: expected key=value")
        out[key.strip()] = value.strip()
    return out


def replace_fields(cls: type, overrides: dict[str, Any], what: str = "config", where: str = ""):
    """cls() with the overridden fields. `what` names the config in errors ("OPE config"),
    `where` says whose it is (" for iql")."""
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(overrides) - set(fields))
    if unknown:
        raise ConfigError(
            f"unknown {what} field(s) {', '.join(unknown)}{where}; valid: {', '.join(fields)}"
        )
    defaults = cls()
    values = {
        k: coerce(k, getattr(defaults, k), v, str(fields[k].type), what)
        for k, v in overrides.items()
    }
    return dataclasses.replace(defaults, **values)


def coerce(name: str, default: Any, value: Any, annotation: str = "", what: str = "config") -> Any:
    """An override (a CLI string, or a Python value) as the field's type. A field whose
    default is None (`float | None`) takes "none" or a value of its other type; a tuple
    field takes "64,64" (ints, or floats where the default holds floats)."""
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
            kind = float if any(isinstance(v, float) for v in default) else int
            return tuple(kind(v) for v in value.strip("()[] ").split(",") if v.strip())
        return value
    except ValueError:
        kind = type(default).__name__
        raise ConfigError(f"{what} field {name!r}: cannot read {value!r} as {kind}") from None
