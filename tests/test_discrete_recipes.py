"""Discrete recipes: publishing a DQN run, every kind, the per-episode ε of the noisy snapshot,
the regenerated replay, the cache, the CLI, and the MinAtar environments."""

from __future__ import annotations

import importlib.util
import json
import sys

import gymnasium as gym
import numpy as np
import pytest

import offrl.envs  # noqa: F401  (registers the MinAtar ids)
from offrl import recipes
from offrl.behavior import online_dqn
from offrl.behavior.online import read_jsonl
from offrl.behavior.online_dqn import DQNBehaviorConfig, read_replay, train_dqn_behavior
from offrl.cli import main
from offrl.errors import ConfigError, DataError, OffrlError
from offrl.recipes import agents, discrete
from offrl.recipes.collect import collect
from offrl.recipes.publish_dqn import publish_dqn

SIZE = 400  # transitions of the single-policy kinds in these tests


def tiny_run(env_id: str, out, steps: int = 500) -> None:
    bc = DQNBehaviorConfig(
        env_id,
        steps=steps,
        start_steps=100,
        epsilon_decay_steps=200,
        update_every=50,
        snapshot_every=100,
        checkpoint_every=steps,
        eval_episodes=2,
        algo_config={"hidden": (16, 16), "batch_size": 32},
    )
    train_dqn_behavior(bc, out, progress=False)


@pytest.fixture(scope="module")
def cartpole_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("cartpole") / "run"
    tiny_run("CartPole-v1", out)
    return out


@pytest.fixture
def tiny_recipes(tmp_path, monkeypatch):
    """A temporary policy directory and cache; small single-policy kinds."""
    monkeypatch.setattr(agents, "POLICY_DIR", tmp_path / "policies")
    monkeypatch.setenv("OFFRL_HOME", str(tmp_path / "home"))
    for slug in ("cartpole", "breakout"):
        env = recipes.ENVS[slug]
        monkeypatch.setitem(recipes.ENVS, slug, recipes.EnvRecipe(slug, env.env_id, SIZE))
    recipes.manifest.cache_clear()
    yield tmp_path
    recipes.manifest.cache_clear()


@pytest.fixture
def cartpole(cartpole_run, tiny_recipes):
    return publish_dqn(cartpole_run, "cartpole", episodes=3)


def test_publish_records_references_snapshots_and_replay(cartpole, cartpole_run):
    agent = cartpole["agents"]["dqn"]
    snaps = read_jsonl(cartpole_run / "snapshots.jsonl")
    best = max(s["return_mean"] for s in snaps)
    expert, noisy = agent["snapshots"]["expert"], agent["snapshots"]["noisy-snapshot"]
    assert next(s for s in snaps if s["step"] == expert["step"])["return_mean"] == best
    assert noisy["step"] <= expert["step"]
    # The mixture's mean: 20% of the episodes at ε = 0.001, 80% at ε = 0.2.
    low, high = noisy["return"]["mean"], noisy["return_epsilon0.2"]["mean"]
    assert noisy["mixed_return_mean"] == pytest.approx(0.2 * low + 0.8 * high)
    summary = json.loads((cartpole_run / "summary.json").read_text())
    assert agent["replay"]["steps"] == 500 and agent["replay"]["sha256"] == summary["replay_sha256"]
    assert agent["num_actions"] == 2 and agent["obs_dim"] == 4
    assert cartpole["expert_return"] == expert["return"]
    assert (agents.POLICY_DIR / expert["file"]).is_file()
    assert recipes.kinds_of("cartpole") == ("random", "noisy-snapshot", "replay", "expert")


def test_every_kind_has_its_size_discrete_actions_and_references(cartpole):
    low, high = cartpole["random_return"]["mean"], cartpole["expert_return"]["mean"]
    made = {}
    for kind in recipes.DISCRETE_KINDS:
        ds = made[kind] = recipes.generate(f"cartpole-{kind}")
        assert len(ds) == (500 if kind == "replay" else SIZE), kind
        assert ds.num_actions == 2 and ds.actions.shape == (len(ds), 1), kind
        assert ds.actions.dtype == np.int64 and set(np.unique(ds.actions)) <= {0, 1}, kind
        assert (ds.ref_min_score, ds.ref_max_score) == (low, high), kind
        assert ds.action_low is None and ds.env_id == "CartPole-v1", kind
    again = recipes.generate("cartpole-noisy-snapshot")  # generation is a function of the seed
    for column in discrete.REPLAY_COLUMNS:
        np.testing.assert_array_equal(
            getattr(again, column), getattr(made["noisy-snapshot"], column), err_msg=column
        )


def test_noisy_snapshot_epsilon_is_drawn_per_episode(cartpole, monkeypatch):
    """With a policy that always pushes left (action 0), a right push (action 1) is an ε
    draw that chose the other action: probability ε/2 per step."""
    always_left = lambda obs, rng: np.zeros(len(obs), np.int64)  # noqa: E731
    monkeypatch.setattr(discrete, "greedy_policy", lambda agent, path: always_left)
    monkeypatch.setitem(
        recipes.ENVS, "cartpole", recipes.EnvRecipe("cartpole", "CartPole-v1", 20_000)
    )
    ds = recipes.generate("cartpole-noisy-snapshot")
    meta = ds.metadata["parts"][0]
    seed = recipes.KIND_SEEDS["noisy-snapshot"]
    # By hand: episode k is low-noise when a generator seeded (seed, 5, k) draws below 0.2.
    by_hand = [
        k for k in range(ds.num_episodes) if np.random.default_rng([seed, 5, k]).random() < 0.2
    ]
    assert meta["low_noise_episodes"] == by_hand
    assert abs(len(by_hand) / ds.num_episodes - 0.2) < 0.04  # ~2,000 episodes
    episode = np.repeat(np.arange(ds.num_episodes), ds.episode_lengths())
    low = np.isin(episode, by_hand)
    right = ds.actions[:, 0] == 1
    assert abs(right[~low].mean() - 0.2 / 2) < 0.01  # ε = 0.2 episodes: 10% right pushes
    assert right[low].mean() < 0.005  # ε = 0.001 episodes: 0.05% expected


def test_replay_recipe_is_the_logged_replay_made_again(cartpole, cartpole_run, monkeypatch):
    ds = recipes.generate("cartpole-replay")
    logged = read_replay(cartpole_run)
    for column in discrete.REPLAY_COLUMNS:
        np.testing.assert_array_equal(getattr(ds, column), logged[column], err_msg=column)
    assert ds.metadata["parts"][0]["matches_published_replay"]
    # A replay that differs from the published digest is flagged, not refused.
    agent = recipes.manifest()["cartpole"]["agents"]["dqn"]
    monkeypatch.setitem(agent["replay"], "sha256", "0" * 64)
    monkeypatch.setattr(online_dqn, "replay_of", lambda bc: logged)  # no second training run
    with pytest.warns(UserWarning, match="differs from the published one"):
        ds = recipes.generate("cartpole-replay")
    assert not ds.metadata["parts"][0]["matches_published_replay"]


def test_replay_recipe_reads_the_published_run_directory(cartpole, cartpole_run, monkeypatch):
    made_again = recipes.generate("cartpole-replay")
    monkeypatch.setattr(online_dqn, "replay_of", None)  # reading must not train again
    read = recipes.generate("cartpole-replay", replay_run=cartpole_run)
    for column in discrete.REPLAY_COLUMNS:
        np.testing.assert_array_equal(getattr(read, column), getattr(made_again, column))
    assert read.metadata["parts"][0]["matches_published_replay"]
    # Another run's directory is refused, naming it; so is a replay run for another kind.
    agent = recipes.manifest()["cartpole"]["agents"]["dqn"]
    monkeypatch.setitem(agent["replay"], "sha256", "0" * 64)
    with pytest.raises(ConfigError, match=f"{cartpole_run}: its replay .* is not the published"):
        recipes.generate("cartpole-replay", replay_run=cartpole_run)
    with pytest.raises(ConfigError, match="cartpole-expert: a replay run directory"):
        recipes.generate("cartpole-expert", replay_run=cartpole_run)


def test_cached_discrete_recipe_loads_in_minari(cartpole, monkeypatch):
    minari = pytest.importorskip("minari")
    ds = recipes.load("cartpole-expert")
    again = recipes.load("cartpole-expert")  # from the flat copy
    assert again.metadata["format"] == "npz" and again.num_actions == 2
    np.testing.assert_array_equal(ds.actions, again.actions)
    monkeypatch.setenv("MINARI_DATASETS_PATH", str(recipes.minari_root()))
    loaded = minari.load_dataset("offrl/cartpole-expert-v0")
    assert loaded.action_space == gym.spaces.Discrete(2) and loaded.total_steps == SIZE


def test_data_cli_lists_and_makes_discrete_recipes(cartpole, capsys):
    assert main(["data", "list"]) == 0
    listing = capsys.readouterr().out
    for kind in recipes.DISCRETE_KINDS:
        assert f"cartpole-{kind}" in listing
    assert "noise-free" in listing and "training replay: " in listing
    assert main(["data", "make", "cartpole-random"]) == 0
    assert "made in" in capsys.readouterr().out
    assert main(["data", "make", "cartpole-medium"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("offrl: error: cartpole-medium") and "noisy-snapshot" in err
    assert "\n" not in err


def test_publish_errors_name_the_problem(cartpole_run, tiny_recipes, tmp_path):
    with pytest.raises(ConfigError, match="'moon': choose one of"):
        publish_dqn(cartpole_run, "moon")
    with pytest.raises(ConfigError, match="trained in CartPole-v1, not Acrobot-v1"):
        publish_dqn(cartpole_run, "acrobot")
    with pytest.raises(ConfigError, match="noisy_fraction must be in"):
        publish_dqn(cartpole_run, "cartpole", noisy_fraction=1.0)
    with pytest.raises(ConfigError, match="not a run directory"):
        publish_dqn(tmp_path, "cartpole")
    (tmp_path / "nosnap").mkdir()
    (tmp_path / "nosnap" / "config.json").write_text(json.dumps({"env_id": "CartPole-v1"}))
    with pytest.raises(ConfigError, match="no snapshots"):
        publish_dqn(tmp_path / "nosnap", "cartpole")


def test_per_episode_epsilon_needs_discrete_actions():
    with pytest.raises(OffrlError, match="Discrete action space"):
        collect("Pendulum-v1", lambda o, r: np.zeros((len(o), 1)), 10, 0, 1, None, lambda k: 0.1)


def test_unknown_discrete_kind_names_the_known_ones(cartpole):
    with pytest.raises(DataError, match="KIND one of .*noisy-snapshot, replay"):
        recipes.split_name("cartpole-imitation")


# --------------------------------------------------------------------------- MinAtar

needs_minatar = pytest.mark.skipif(
    importlib.util.find_spec("minatar") is None, reason="pip install 'offrl[minatar]'"
)


def paddle(obs: np.ndarray) -> int:
    """Breakout's paddle column: channel 0 of row 9 (flat index (9·10 + x)·4 + 0)."""
    return int(np.flatnonzero(obs.reshape(10, 10, 4)[9, :, 0])[0])


@needs_minatar
def test_minatar_observations_are_flat_grids_and_seeded():
    env = gym.make("offrl/MinAtarBreakout-v0")
    obs, _ = env.reset(seed=3)
    assert obs.shape == (400,) and obs.dtype == np.float32 and set(np.unique(obs)) <= {0.0, 1.0}
    np.testing.assert_array_equal(obs.reshape(10, 10, 4), env.unwrapped.game.state())
    assert obs[(9 * 10 + 4) * 4] == 1.0 and paddle(obs) == 4  # the paddle starts at x = 4
    assert env.action_space == gym.spaces.Discrete(3) and env.spec.max_episode_steps == 10_000
    assert env.unwrapped.game.sticky_action_prob == 0.1  # MinAtar's default
    first = [env.reset(seed=7)[0]] + [env.step(i % 3)[0] for i in range(20)]
    second = [env.reset(seed=7)[0]] + [env.step(i % 3)[0] for i in range(20)]
    np.testing.assert_array_equal(first, second)
    invaders = gym.make("offrl/MinAtarSpaceInvaders-v0")
    assert invaders.reset(seed=0)[0].shape == (600,)
    assert invaders.action_space == gym.spaces.Discrete(4)


@needs_minatar
def test_sticky_actions_repeat_the_last_action_and_reset_clears_it():
    from offrl.envs.minatar import MinAtarEnv

    free = MinAtarEnv("breakout", sticky_action_prob=0.0)
    assert paddle(free.reset(seed=0)[0]) == 4
    assert paddle(free.step(1)[0]) == 3  # left
    stuck = MinAtarEnv("breakout", sticky_action_prob=1.0)
    stuck.reset(seed=0)
    assert paddle(stuck.step(2)[0]) == 4  # right ignored: the previous action (no-op) sticks
    free.step(1)  # left again: paddle at 2, last action "left"
    free.game.sticky_action_prob = 1.0
    assert paddle(free.reset(seed=0)[0]) == 4
    assert paddle(free.step(2)[0]) == 4  # after a reset the no-op sticks, not the old "left"


@needs_minatar
def test_minatar_errors_are_one_line(monkeypatch):
    from offrl.envs.minatar import MinAtarEnv

    env = MinAtarEnv("breakout")
    env.reset(seed=0)
    with pytest.raises(OffrlError, match=r"action 3 outside Discrete\(3\)"):
        env.step(3)
    with pytest.raises(OffrlError, match="sticky_action_prob must be in"):
        MinAtarEnv("breakout", sticky_action_prob=1.5)
    monkeypatch.setitem(sys.modules, "minatar", None)
    with pytest.raises(OffrlError, match="pip install 'offrl\\[minatar\\]'"):
        MinAtarEnv("breakout")


@needs_minatar
def test_minatar_recipes_from_a_tiny_agent(tiny_recipes):
    run = tiny_recipes / "breakout-run"
    tiny_run("offrl/MinAtarBreakout-v0", run, steps=300)
    entry = publish_dqn(run, "breakout", episodes=3)
    assert entry["agents"]["dqn"]["num_actions"] == 3
    for kind in recipes.DISCRETE_KINDS:
        ds = recipes.generate(f"breakout-{kind}")
        assert len(ds) == (300 if kind == "replay" else SIZE), kind
        assert ds.observations.shape[1] == 400 and ds.num_actions == 3, kind
        assert set(np.unique(ds.actions)) <= {0, 1, 2}, kind
