"""Per-task reference settings (algos.TASK_DEFAULTS): the lookup by environment family and
dataset name, and a fresh run taking them under the user's overrides (never a resumed one)."""

from __future__ import annotations

import json

import pytest

from offrl import algos, training


@pytest.mark.parametrize(
    "name, key",
    [
        ("Hopper-v5", "hopper"),
        ("HalfCheetah-v4", "halfcheetah"),
        ("ALE/Breakout-v5", "breakout"),
        ("hopper-medium-replay", "hopper-medium-replay"),
        ("data/walker2d-medium-v2.hdf5", "walker2d-medium"),
        ("offrl/hopper-medium-v0", "hopper-medium"),
    ],
)
def test_task_key_drops_folder_namespace_suffix_and_version(name, key):
    assert algos.task_key(name) == key


def test_lookup_by_environment_family_then_dataset():
    assert algos.task_defaults("awr", "hopper-medium", "Hopper-v5") == {
        "action_std": 0.4,
        "actor_lr": 1e-4,
    }
    assert algos.task_defaults("awr", "halfcheetah-expert", "HalfCheetah-v5") == {"action_std": 0.4}
    assert algos.task_defaults("awr", "pendulum-medium", "Pendulum-v1") == {}
    assert algos.task_defaults("awr", "any-name", None) == {}
    # dataset-keyed tables: MOPO's and COMBO's (h, λ) / (h, β) of OfflineRL-Kit
    assert algos.task_defaults("mopo", "hopper-medium-replay", "Hopper-v5") == {
        "rollout_length": 5,
        "penalty_coef": 2.5,
    }
    assert algos.task_defaults("combo", "logs/walker2d-medium-v2.hdf5", None) == {
        "rollout_length": 1,
        "cql_alpha": 5.0,
    }
    assert algos.task_defaults("mopo", "hopper-expert", "Hopper-v5") == {}  # not in its table


def test_presets_keep_their_own_settings():
    assert algos.task_defaults("marwil", "hopper-medium", "Hopper-v5") == {}


def test_every_task_default_is_a_field_of_its_config():
    for name in algos.NAMES:
        for key, fields in getattr(algos.get(name), "TASK_DEFAULTS", {}).items():
            algos.make_algo_config(name, fields)  # a mistyped field raises here
            assert key == algos.task_key(key), key


def _prepare(tmp_path, out_name, overrides, resume=False, task_defaults=True, steps=10):
    """training._prepare on a small D4RL-layout hopper file: config.json written, the
    algorithm's Config made, nothing trained."""
    from helpers import random_dataset

    from offrl.data import io

    path = tmp_path / "hopper-medium-replay.hdf5"
    if not path.exists():
        io.write_d4rl(random_dataset(n=100, obs_dim=11, act_dim=3), path)
    opt = training._Options(
        "Hopper-v5", 10, 1, 10, False, resume, False, 0.1, ("fqe",), {}, task_defaults
    )
    out = tmp_path / out_name
    (run,), cfg, _, _ = training._prepare("awr", str(path), steps, [0], [out], overrides, opt)
    return run, cfg, json.loads((out / "config.json").read_text())


def test_fresh_run_takes_them_under_overrides_and_records_them(tmp_path):
    run, cfg, saved = _prepare(tmp_path, "run", {"actor_lr": "3e-4"})
    assert (cfg.action_std, cfg.actor_lr) == (0.4, 3e-4)  # the user's step wins
    assert saved["task_defaults"] == {"action_std": 0.4}
    assert (saved["algo_config"]["action_std"], saved["algo_config"]["actor_lr"]) == (0.4, 3e-4)
    # config.json alone rebuilds the Config (what load_policy and resume do)
    assert algos.make_algo_config("awr", saved["algo_config"]) == cfg


def test_resumed_run_keeps_its_saved_configuration(tmp_path):
    """A run started with task defaults off is resumed with them on: nothing is added."""
    _prepare(tmp_path, "run", {}, task_defaults=False)
    run, cfg, saved = _prepare(tmp_path, "run", {}, resume=True, steps=20)
    assert saved["task_defaults"] == {}
    assert (cfg.action_std, cfg.actor_lr) == (0.2, 5e-5)


def test_no_task_defaults_keeps_the_config_defaults(tmp_path):
    _, cfg, saved = _prepare(tmp_path, "run", {}, task_defaults=False)
    assert (cfg.action_std, cfg.actor_lr) == (0.2, 5e-5)
    assert saved["task_defaults"] == {}
