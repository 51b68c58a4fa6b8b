"""The fused update loop of the models OPE fits (FQE's critics, the behaviour model)."""

from __future__ import annotations

import functools
from collections.abc import Callable
from types import SimpleNamespace
from typing import Any

import jax
import jax.numpy as jnp

from offrl import core
from offrl.core import Batch
from offrl.errors import DivergenceError


@functools.lru_cache(maxsize=32)
def _chunk(update_fn: Callable, cfg: Any, num_steps: int):
    """core.make_update_chunk for an update function, compiled once per (fn, cfg, steps)."""
    return core.make_update_chunk(SimpleNamespace(update=update_fn), cfg, num_steps)


def run_updates(
    update_fn: Callable,
    cfg: Any,
    state: Any,
    data: Batch,
    key: jax.Array,
    steps: int,
    chunk_size: int,
) -> tuple[Any, dict[str, float]]:
    """`steps` calls of update_fn(cfg, state, batch, key) in chunks fused by
    core.make_update_chunk (the training loop's sampling and key schedule); one device sync
    at the end. Raises DivergenceError when a parameter became NaN/inf."""
    metrics, done, finite = None, 0, jnp.asarray(True)
    while done < steps:
        n = min(chunk_size, steps - done)
        state, metrics, finite = _chunk(update_fn, cfg, n)(state, data, key)
        done += n
    if not bool(finite):
        raise DivergenceError("OPE: a fitted model's parameters became NaN/inf; lower the lr")
    return state, core.chunk_metrics(metrics) if metrics is not None else {}
