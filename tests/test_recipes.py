"""Dataset recipes: collection, publishing behaviour runs, every kind, caching, the CLI."""

from __future__ import annotations

import json
import shutil
import warnings
from pathlib import Path

import numpy as np
import pytest

from offrl import recipes
from offrl.behavior import online
from offrl.behavior.online import BehaviorConfig, train_behavior
from offrl.cli import main
from offrl.envs.registry import D4RL_REFERENCE_RETURNS, reference_scores
from offrl.errors import ConfigError, DataError
from offrl.recipes import agents
from offrl.recipes.collect import collect
from offrl.recipes.publish import _finished_run, publish

LENGTH = 200  # Pendulum-v1's time limit


def test_collect_returns_exactly_the_requested_rows_episode_by_episode():
    policy = recipes.uniform_policy("Pendulum-v1")
    out = collect("Pendulum-v1", policy, 1_050, seed=3, num_envs=4)
    assert len(out["rewards"]) == 1_050
    ends = np.flatnonzero(out["timeouts"] | out["terminals"])
    # Five whole episodes, then the sixth cut after 50 rows and marked as a timeout.
    np.testing.assert_array_equal(ends, [199, 399, 599, 799, 999, 1049])
    inside = np.setdiff1d(np.arange(1_049), ends)
    np.testing.assert_array_equal(out["next_observations"][inside], out["observations"][inside + 1])
    again = collect("Pendulum-v1", policy, 1_050, seed=3, num_envs=4)
    for key in out:
        np.testing.assert_array_equal(out[key], again[key])


def test_committed_pendulum_recipes_are_listed_with_measured_references():
    assert {f"pendulum-{k}" for k in recipes.D4RL_KINDS} <= set(recipes.names())
    low, high = recipes.reference_returns("pendulum")
    assert recipes.env_reference_scores("Pendulum-v1") == (low, high)
    assert recipes.references("pendulum")["random"] == low  # not a D4RL task: measured
    assert recipes.references("hopper")["expert"] == D4RL_REFERENCE_RETURNS["Hopper"][1]
    assert low < -1000 and high > -200  # random swings, the expert balances
    entry = recipes.manifest()["pendulum"]
    assert entry["random_return"]["episodes"] >= 100 and entry["expert_return"]["episodes"] >= 100
    assert reference_scores("Hopper-v5") == D4RL_REFERENCE_RETURNS["Hopper"]


def test_generation_is_deterministic_and_carries_its_references():
    a = recipes.generate("pendulum-medium")
    b = recipes.generate("pendulum-medium")
    for column in ("observations", "actions", "rewards", "timeouts", "behavior_log_probs"):
        np.testing.assert_array_equal(getattr(a, column), getattr(b, column))
    # The replay, re-run from the committed configuration: the published buffer bit for bit
    # on the publishing machine (another CPU may differ in the last bits: then a warning).
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        replay = recipes.generate("pendulum-medium-replay")
    published = recipes.manifest()["pendulum"]["agents"]["sac"]["replay"]
    assert len(replay) == published["until"] and replay.env_id == "Pendulum-v1"
    assert np.isfinite(replay.behavior_log_probs).all()  # uniform, then SAC's samples
    assert (a.ref_min_score, a.ref_max_score) == recipes.reference_returns("pendulum")


def test_unknown_recipe_names_the_known_ones():
    with pytest.raises(DataError, match="KIND one of random"):
        recipes.split_name("pendulum-legendary")


def test_imperfect_noise_has_the_bcq_papers_statistics():
    zero = lambda obs, rng: np.zeros((len(obs), 1))  # noqa: E731
    noisy = recipes.imperfect(zero, "Pendulum-v1")  # actions in [-2, 2]: half range 2
    act = noisy(np.zeros((200_000, 3)), np.random.default_rng(0))
    # 70%: N(0, (0.3 * 2)²), 30%: U(-2, 2) with variance 4² / 12.
    expected_var = 0.7 * (0.3 * 2) ** 2 + 0.3 * 16 / 12
    assert abs(act.var() - expected_var) < 0.01 and abs(act.mean()) < 0.01


@pytest.fixture(scope="module")
def published(tmp_path_factory):
    """Tiny SAC and DDPG Pendulum runs published into a temporary policy directory."""
    root = tmp_path_factory.mktemp("publish")
    base = dict(
        env_id="Pendulum-v1",
        steps=800,
        start_steps=200,
        snapshot_every=200,
        checkpoint_every=800,
        eval_episodes=2,
    )
    small = {"hidden": (16, 16), "batch_size": 32}
    runs = {
        "sac": BehaviorConfig(**base, algo_config=small),
        "ddpg-noise0.5": BehaviorConfig(
            **base, algo="ddpg", algo_config=small | {"expl_noise": 0.5}
        ),
        "ddpg-noise0.1": BehaviorConfig(
            **base, algo="ddpg", algo_config=small | {"expl_noise": 0.1}
        ),
    }
    for role, bc in runs.items():
        train_behavior(bc, root / role, progress=False)
    return root


@pytest.fixture
def tiny_recipes(published, tmp_path, monkeypatch):
    monkeypatch.setattr(agents, "POLICY_DIR", tmp_path / "policies")
    monkeypatch.setenv("OFFRL_HOME", str(tmp_path / "home"))  # tiny datasets stay out of the cache
    monkeypatch.setitem(recipes.ENVS, "pendulum", recipes.EnvRecipe("pendulum", "Pendulum-v1", 600))
    recipes.manifest.cache_clear()
    yield {
        role: publish(published / role, "pendulum", role, episodes=3, select_episodes=2)
        for role in ("sac", "ddpg-noise0.5", "ddpg-noise0.1")
    }
    recipes.manifest.cache_clear()


def test_publish_records_every_policy_and_enables_every_kind(tiny_recipes):
    sac = tiny_recipes["sac"]
    assert sac["snapshots"]["medium"]["step"] < sac["snapshots"]["expert"]["step"]
    assert sac["replay"]["until"] == sac["snapshots"]["medium"]["step"]
    published = {p.name for p in (agents.POLICY_DIR / "pendulum" / "sac").iterdir()}
    assert published == {Path(s["file"]).name for s in sac["snapshots"].values()}
    ddpg = tiny_recipes["ddpg-noise0.1"]
    assert ddpg["snapshots"]["expert"]["deterministic"] and ddpg["replay"]["until"] == 800
    assert set(recipes.kinds_of("pendulum")) == set(recipes.D4RL_KINDS + recipes.BCQ_KINDS)
    for name in recipes.names():
        ds = recipes.generate(name)
        expected = {"final-buffer": 800, "concurrent": 800, "medium-expert": 1200}
        kind = name.removeprefix("pendulum-")
        size = sac["replay"]["until"] if kind == "medium-replay" else expected.get(kind, 600)
        assert len(ds) == size, name
        assert np.all(np.abs(ds.actions) <= 2.0), name


def test_the_replay_kinds_are_the_agents_own_buffers_with_their_log_probabilities(
    tiny_recipes, published
):
    sac = tiny_recipes["sac"]
    until = sac["replay"]["until"]
    made_again = recipes.generate("pendulum-medium-replay")  # training re-run to `until`
    read = recipes.generate("pendulum-medium-replay", replay_run=published / "sac")
    assert made_again.metadata["parts"][0]["matches_published_replay"]
    buffer = online.read_buffer(published / "sac")
    np.testing.assert_array_equal(read.observations, buffer["obs"][:until])
    np.testing.assert_allclose(read.actions, 2.0 * buffer["act"][:until], atol=1e-6)  # ±2
    np.testing.assert_array_equal(made_again.actions, read.actions)
    assert read.timeouts[-1] or read.terminals[-1]  # the episode cut at `until` ends there
    # Uniform first steps: density 1/4 on [-2, 2]; SAC's samples: their own log-densities.
    logp = read.behavior_log_probs
    np.testing.assert_allclose(logp[:200], np.log(0.25), rtol=1e-6)
    np.testing.assert_allclose(logp[200:], buffer["logp"][200:until] - np.log(2.0), rtol=1e-5)
    ddpg = recipes.generate("pendulum-final-buffer")
    lp = ddpg.behavior_log_probs  # DDPG's clipped noise has no density: NaN rows
    assert np.isfinite(lp[:200]).all() and np.isnan(lp[200:]).all()
    with pytest.raises(ConfigError, match="not the published"):
        recipes.generate("pendulum-medium-replay", replay_run=published / "ddpg-noise0.5")


def test_sampling_recipes_log_the_density_of_every_action(tiny_recipes):
    from offrl.nets.policies import tanh_gaussian_log_prob

    random = recipes.generate("pendulum-random")
    np.testing.assert_allclose(random.behavior_log_probs, np.log(0.25), rtol=1e-6)
    expert = recipes.generate("pendulum-expert")
    snap = tiny_recipes["sac"]["snapshots"]["expert"]
    config = json.dumps(tiny_recipes["sac"]["algo_config"], sort_keys=True)
    algo, cfg, state = agents.agent_template("sac", config, 3, 1)
    state = online.load_actor(agents.POLICY_DIR / snap["file"], state)
    mean, log_std = state.actor.apply_fn(state.actor.params, expert.observations[:500])
    again = tanh_gaussian_log_prob(expert.actions[:500] / 2.0, mean, log_std) - np.log(2.0)
    np.testing.assert_allclose(expert.behavior_log_probs[:500], again, rtol=1e-3, atol=1e-3)
    assert recipes.generate("pendulum-imitation").behavior_log_probs is None  # deterministic


def test_a_buffer_becomes_dataset_columns_in_environment_units():
    buffer = {
        "obs": np.arange(6, dtype=np.float32).reshape(3, 2),
        "act": np.array([[-1.0], [0.0], [1.0]], np.float32),
        "rew": np.ones(3, np.float32),
        "next_obs": np.arange(2, 8, dtype=np.float32).reshape(3, 2),
        "done": np.array([1.0, 0.0, 0.0], np.float32),
        "timeout": np.zeros(3, np.float32),
        "logp": np.array([0.5, np.nan, 0.5], np.float32),
    }
    cols = online.buffer_dataset(buffer, 2, np.array([0.0]), np.array([4.0]))
    np.testing.assert_array_equal(cols["actions"], [[0.0], [2.0]])
    np.testing.assert_array_equal(cols["terminals"], [True, False])
    np.testing.assert_array_equal(cols["timeouts"], [False, True])  # cut at row 2
    np.testing.assert_allclose(cols["behavior_log_probs"], [0.5 - np.log(2.0), np.nan])
    with pytest.raises(ConfigError, match="holds 3 transitions, not 4"):
        online.buffer_dataset(buffer, 4, np.array([0.0]), np.array([4.0]))


def test_publish_refuses_unfinished_runs_and_bad_settings(published, tmp_path):
    with pytest.raises(ConfigError, match="not a run directory"):
        publish(tmp_path, "pendulum")
    with pytest.raises(ConfigError, match="candidates must be at least 1"):
        publish(published / "sac", "pendulum", candidates=0)
    unfinished = tmp_path / "run"
    unfinished.mkdir()
    (unfinished / "config.json").write_text((published / "sac" / "config.json").read_text())
    with pytest.raises(ConfigError, match="has not finished"):
        publish(unfinished, "pendulum")


def test_publish_chooses_among_the_snapshots_a_packed_run_kept(published, tmp_path):
    # A packed run keeps some snapshot files (offrl behavior pack --snapshots): publishing
    # measures and picks among the snapshots whose files are there.
    run = tmp_path / "run"
    shutil.copytree(published / "sac", run)
    for step in (200, 600):
        (run / "snapshots" / f"step_{step:07d}.msgpack").unlink()
    _, snapshots = _finished_run(run, "pendulum", "sac")
    assert [s["step"] for s in snapshots] == [400, 800]


def test_load_caches_in_minari_layout_and_ignores_partial_writes(tiny_recipes):
    name = "pendulum-imitation"
    partial = recipes.cache_path(name).parent / f".{name}.abc.tmp" / "data"
    partial.mkdir(parents=True)
    assert not recipes.is_cached(name)
    ds = recipes.load(name)
    assert recipes.is_cached(name)
    assert (recipes.cache_path(name) / "data" / "metadata.json").exists()
    again = recipes.load(name)
    np.testing.assert_array_equal(ds.observations, again.observations)
    described = recipes.describe(name)
    assert described["cached"] and described["episodes"] == 3


def test_load_reads_the_flat_copy_and_remakes_a_stale_one(tiny_recipes):
    from offrl.data import io

    name = "pendulum-expert"
    first = recipes.load(name)  # from the Minari files; writes the flat copy
    copy = recipes.cache_path(name) / recipes.COLUMNS_FILE
    assert first.metadata["format"] == "minari" and copy.is_file()
    again = recipes.load(name)
    assert again.metadata["format"] == "npz" and again.name == name
    for key in ("observations", "actions", "rewards", "next_observations", "terminals"):
        np.testing.assert_array_equal(getattr(first, key), getattr(again, key))
    assert (again.env_id, again.ref_min_score) == (first.env_id, first.ref_min_score)
    # A copy that does not carry the current fingerprint is not used, and is replaced.
    stale = again.replace(metadata=again.metadata | {"fingerprint": "other"})
    io.write_npz(stale, copy, overwrite=True)
    assert recipes.load(name).metadata["format"] == "minari"
    assert io.read_npz(copy).metadata["fingerprint"] == recipes.fingerprint(name)


def test_minari_loads_a_cached_recipe(tiny_recipes, monkeypatch):
    minari = pytest.importorskip("minari")
    ds = recipes.load("pendulum-expert")
    monkeypatch.setenv("MINARI_DATASETS_PATH", str(recipes.minari_root()))
    loaded = minari.load_dataset("offrl/pendulum-expert-v0")
    assert loaded.total_steps == len(ds) == 600
    assert loaded.env_spec.id == "Pendulum-v1"
    low, high = recipes.reference_returns("pendulum")
    np.testing.assert_allclose(minari.get_normalized_score(loaded, np.array([high])), [1.0])


def test_a_cache_made_from_other_policies_is_remade(tiny_recipes, monkeypatch):
    name = "pendulum-random"
    recipes.load(name)
    assert recipes.is_cached(name)
    changed = recipes.EnvRecipe("pendulum", "Pendulum-v1", 400)  # another size: another recipe
    monkeypatch.setitem(recipes.ENVS, "pendulum", changed)
    assert not recipes.is_cached(name)
    assert len(recipes.load(name)) == 400 and recipes.is_cached(name)


def test_data_cli_make_list_and_errors(tiny_recipes, capsys):
    assert main(["data", "make", "pendulum-random"]) == 0
    assert "made in" in capsys.readouterr().out
    assert main(["data", "make", "pendulum-random"]) == 0
    assert "already cached" in capsys.readouterr().out
    assert main(["data", "list"]) == 0
    listing = capsys.readouterr().out
    for name in recipes.names():
        assert name in listing
    assert main(["data", "make", "pendulum-random", "pendulum-nope"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("offrl: error: pendulum-nope") and "\n" not in err


def test_publishing_another_agent_keeps_a_kinds_fingerprint(monkeypatch):
    """A D4RL kind is made from the SAC agent alone: a DDPG agent published beside it must not
    invalidate its cache (it did: every hopper dataset was regenerated)."""
    entry = recipes.manifest()["hopper"]
    sac_only = entry | {"agents": {"sac": entry["agents"]["sac"]}}
    ddpg = {"name": "ddpg-noise0.5", "replay": {"until": 1, "sha256": "x"}}
    both = entry | {"agents": {"sac": entry["agents"]["sac"], "ddpg-noise0.5": ddpg}}
    monkeypatch.setattr(recipes, "manifest", lambda: {"hopper": sac_only})
    before = recipes.fingerprint("hopper-medium")
    monkeypatch.setattr(recipes, "manifest", lambda: {"hopper": both})
    assert recipes.fingerprint("hopper-medium") == before
    assert recipes.fingerprint("hopper-final-buffer") != before
