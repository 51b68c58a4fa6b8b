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
    pretrain(cfg, state, dataset, key) -> (State, info)     parts fitted before the loop
                                             (MOPO's dynamics ensemble); called once on a
                                             fresh run, never on resume; `info` is logged
    extra_columns(cfg, dataset, tf) -> {name: (N,) array}   per-transition columns the
                                             updates read from batch.extra (AWR's returns)
    action_kind = "continuous" | "discrete"  the action spaces the algorithm handles
                                             (absent: "continuous"). Continuous: batch.act
                                             (B, act_dim) in [-1, 1], `act` returns (B,
                                             act_dim) env actions. Discrete: spec.num_actions
                                             = n, batch.act (B,) int32 indices, `act` returns
                                             (B,) int32 env actions in [0, n). The training
                                             loop refuses data of the other kind.
    select_rows(cfg, dataset) -> (rows, info)   the sorted row indices the updates sample
                                             from (filtered BC's best episodes); the
                                             transforms are fitted to them; `info` is logged
    batch_kind = "transitions" | "trajectories" what `update` receives (absent:
                                             "transitions"): a core.Batch, or a core.Window
                                             of cfg.batch_size sub-trajectories of
                                             cfg.context steps (the Decision Transformer)
Stateful acting (a policy of the history, not of the state alone), both or neither:
    act_carry(cfg, state, n) -> carry        the memory of n episodes at their start
    act_step(cfg, state, carry, obs, reward, key, deterministic=True) -> (actions, carry)
                                             `reward` (n,): what the previous action earned
                                             (0 at the start). `act` is then the action at an
                                             episode's first step.
Per-task defaults:
    TASK_DEFAULTS = {key: {field: value}}    the Config fields the reference sets per task;
                                             key an environment family ("hopper" for
                                             Hopper-v5) or a dataset name without its
                                             version ("hopper-medium-replay"). A fresh run
                                             applies them under the user's overrides
                                             (`task_defaults`, below); placed after Config.
"""

from __future__ import annotations

import importlib
import re
from pathlib import Path
from types import ModuleType
from typing import Any

from offrl.errors import ConfigError
from offrl.overrides import parse_overrides, replace_fields

__all__ = [
    "NAMES",
    "action_kind",
    "get",
    "get_algo",
    "make_algo_config",
    "parse_overrides",
    "stateful",
    "task_defaults",
]

NAMES = (
    "bc",
    "filtered_bc",
    "bail",
    "rcbc",
    "dt",
    "td3_bc",
    "rebrac",
    "iql",
    "cql",
    "cal_ql",
    "bcq",
    "bear",
    "brac",
    "awr",
    "awac",
    "crr",
    "mopo",
    "morel",
    "combo",
    "sac",
    "sac_n",
    "edac",
    "td3",
    "ddpg",
    "d4pg",
    "dqn",
    "ddqn",
    "bc_discrete",
    "filtered_bc_discrete",
    "qrdqn",
    "c51",
    "rem",
    "ensemble_dqn",
    "fqi",
    "bcq_discrete",
    "cql_discrete",
    "spibb",
    "marwil",
)
# Presets: a name that is another algorithm's module with its own paper's defaults, not a
# second file (the settings differ, the method does not). name: (module, Config fields).
PRESETS: dict[str, tuple[str, dict[str, Any]]] = {
    # MARWIL (Wang et al. 2018) is AWR with Monte-Carlo advantages normalized by a running
    # mean of A² (RLlib's marwil settings), Adam and no bound penalty: see docs/algos/marwil.md.
    "marwil": (
        "awr",
        {
            "baseline": "mc",
            "normalize_adv": False,
            "running_adv_norm": True,
            "beta": 1.0,
            "optimizer": "adam",
            "actor_lr": 1e-4,
            "value_lr": 1e-4,
            "bound_loss_weight": 0.0,
            "hidden": (256, 256),
        },
    ),
    # SAC-N (An et al. 2021) is EDAC without its diversity term: N critics and their minimum.
    "sac_n": ("edac", {"eta": 0.0}),
}
ACTION_KINDS = ("continuous", "discrete")


def get(name: str) -> ModuleType:
    if name not in NAMES:
        raise KeyError(f"unknown algorithm {name!r}; choose one of: {', '.join(NAMES)}")
    return importlib.import_module(f"offrl.algos.{PRESETS.get(name, (name,))[0]}")


def stateful(algo: ModuleType) -> bool:
    """Whether the algorithm acts on its history (act_carry / act_step), not on s alone."""
    return hasattr(algo, "act_step")


def action_kind(algo: ModuleType) -> str:
    """ "continuous" or "discrete": the actions `algo` trains on and returns."""
    kind = getattr(algo, "action_kind", "continuous")
    if kind not in ACTION_KINDS:
        raise ValueError(f"{algo.__name__}.action_kind must be one of {ACTION_KINDS}, got {kind!r}")
    return kind


# --------------------------------------------------------------------------- configs


def task_key(name: str) -> str:
    """A dataset's or an environment's name as TASK_DEFAULTS keys it: lower case, no folder,
    namespace, file suffix or version ("ALE/Breakout-v5" -> "breakout",
    "data/hopper-medium-v2.hdf5" -> "hopper-medium")."""
    stem = Path(name.split("/")[-1]).name.lower()
    stem = re.sub(r"\.(hdf5|h5|parquet|csv|npz)$", "", stem)
    return re.sub(r"-v\d+$", "", stem)


def task_defaults(algo_name: str, dataset_name: str, env_id: str | None) -> dict[str, Any]:
    """The Config fields `algo_name`'s reference sets for this task (TASK_DEFAULTS): the
    environment family's entry, then the dataset's on top. A preset takes its module's
    TASK_DEFAULTS_<NAME> (its own paper's), and none where the module has no such table."""
    attr = f"TASK_DEFAULTS_{algo_name.upper()}" if algo_name in PRESETS else "TASK_DEFAULTS"
    table = getattr(get_algo(algo_name), attr, {})
    keys = ([task_key(env_id)] if env_id else []) + [task_key(dataset_name)]
    found: dict[str, Any] = {}
    for key in keys:
        found |= table.get(key, {})
    return found


def make_algo_config(algo_name: str, overrides: dict[str, Any]):
    """The algorithm's Config: its preset's fields (if it is one), then `overrides`."""
    preset = PRESETS.get(algo_name, ("", {}))[1]
    config = get_algo(algo_name).Config
    return replace_fields(config, preset | dict(overrides), where=f" for {algo_name}")


def get_algo(name: str):
    try:
        return get(name)
    except KeyError as exc:
        raise ConfigError(exc.args[0]) from None
