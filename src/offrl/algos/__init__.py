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
"""

from __future__ import annotations

import importlib
from types import ModuleType

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
)


def get(name: str) -> ModuleType:
    if name not in NAMES:
        raise KeyError(f"unknown algorithm {name!r}; choose one of: {', '.join(NAMES)}")
    return importlib.import_module(f"offrl.algos.{name}")
