"""Checkpoints: flax msgpack serialization of the state pytree, written atomically. No pickle."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import flax.serialization

from offrl.atomic import atomic_write, atomic_write_json

STATE_FILE = "state.msgpack"
META_FILE = "meta.json"


def save(directory: Path, state: Any, meta: dict) -> None:
    """The state first, then its metadata; the state alone is enough to resume."""
    atomic_write(directory / STATE_FILE, flax.serialization.to_bytes(state))
    atomic_write_json(directory / META_FILE, meta)


def exists(directory: Path) -> bool:
    return (directory / STATE_FILE).exists()


def load(directory: Path, template: Any) -> tuple[Any, dict]:
    """Restore into `template` (a state of the same structure, e.g. a fresh init)."""
    state = flax.serialization.from_bytes(template, (directory / STATE_FILE).read_bytes())
    meta_path = directory / META_FILE
    meta = json.loads(meta_path.read_text()) if meta_path.exists() else {}
    return state, meta
