import json
import warnings

import h5py
import numpy as np
import pytest

from offrl.data import io
from offrl.data.dataset import COLUMNS, Dataset
from offrl.errors import DataError

# Episodes: 4 steps ending in a terminal, 1 step cut by a timeout, 3 steps cut by a
# timeout, 5 steps left unfinished at the end of the data.
LENGTHS = (4, 1, 3, 5)
ENDS = ("terminal", "timeout", "timeout", None)


def make_dataset(env_id="Pendulum-v1") -> Dataset:
    rng = np.random.default_rng(0)
    parts = {c: [] for c in COLUMNS}
    for length, end in zip(LENGTHS, ENDS, strict=True):
        obs = rng.normal(size=(length + 1, 3)).astype(np.float32)
        parts["observations"].append(obs[:-1])
        parts["next_observations"].append(obs[1:])
        parts["actions"].append(rng.uniform(-2, 2, size=(length, 1)).astype(np.float32))
        parts["rewards"].append(rng.normal(size=length).astype(np.float32))
        flag = np.zeros(length, bool)
        parts["terminals"].append(flag if end != "terminal" else np.r_[flag[:-1], True])
        parts["timeouts"].append(flag if end != "timeout" else np.r_[flag[:-1], True])
    return Dataset(
        **{c: np.concatenate(v) for c, v in parts.items()},
        name="pendulum-test",
        env_id=env_id,
        action_low=np.array([-2.0], np.float32),
        action_high=np.array([2.0], np.float32),
        ref_min_score=-1200.0,
        ref_max_score=-150.0,
        metadata={"policy": "random"},
    )


def assert_same(a: Dataset, b: Dataset) -> None:
    for c in COLUMNS:
        np.testing.assert_array_equal(getattr(a, c), getattr(b, c), err_msg=c)
    np.testing.assert_array_equal(a.episode_starts, b.episode_starts)
    np.testing.assert_array_equal(a.episode_ends, b.episode_ends)
    assert a.env_id == b.env_id
    np.testing.assert_array_equal(a.action_low, b.action_low)
    np.testing.assert_array_equal(a.action_high, b.action_high)
    assert (a.ref_min_score, a.ref_max_score) == (b.ref_min_score, b.ref_max_score)


def write_any(fmt, ds, tmp_path, **kw):
    if fmt == "npz":
        return io.write_npz(ds, tmp_path / "d.npz", **kw)
    if fmt == "d4rl":
        return io.write_d4rl(ds, tmp_path / "d.hdf5", **kw)
    return io.write_minari(ds, tmp_path / "offrl" / "pendulum-test-v0", **kw)


def one_line_error(fn, *args, **kw) -> str:
    with pytest.raises(DataError) as info:
        fn(*args, **kw)
    msg = str(info.value)
    assert "\n" not in msg, msg
    return msg


@pytest.mark.parametrize("fmt", ["npz", "d4rl", "minari"])
def test_round_trip(fmt, tmp_path):
    ds = make_dataset()
    path = write_any(fmt, ds, tmp_path)
    back = io.read(path)
    assert_same(ds, back)
    assert back.name == "pendulum-test"
    assert back.metadata["policy"] == "random"
    assert back.metadata["format"] == fmt
    assert back.episode_lengths().tolist() == list(LENGTHS)
    assert back.observations.dtype == np.float32 and back.terminals.dtype == bool
    # no temporary files left behind
    assert not [p for p in path.parent.iterdir() if p.name.startswith(".")]


@pytest.mark.parametrize("fmt", ["npz", "d4rl", "minari"])
def test_round_trip_without_optional_fields(fmt, tmp_path):
    ds = make_dataset(env_id=None).replace(
        action_low=None, action_high=None, ref_min_score=None, ref_max_score=None
    )
    back = io.read(write_any(fmt, ds, tmp_path))
    assert_same(ds, back)
    assert back.action_low is None and back.env_id is None


@pytest.mark.parametrize("fmt", ["npz", "d4rl", "minari"])
def test_never_overwrites_silently(fmt, tmp_path):
    ds = make_dataset()
    path = write_any(fmt, ds, tmp_path)
    msg = one_line_error(write_any, fmt, ds, tmp_path)
    assert str(path) in msg and "overwrite=True" in msg
    changed = ds.replace(rewards=ds.rewards + 1)
    write_any(fmt, changed, tmp_path, overwrite=True)
    np.testing.assert_array_equal(io.read(path).rewards, changed.rewards)
    assert not [p for p in path.parent.iterdir() if p.name.startswith(".")]


def test_writers_refuse_invalid_data(tmp_path):
    ds = make_dataset()
    bad = ds.replace(rewards=np.where(np.arange(len(ds)) == 2, np.nan, ds.rewards))
    msg = one_line_error(io.write_npz, bad, tmp_path / "bad.npz")
    assert "bad.npz" in msg and "'rewards'" in msg
    assert not list(tmp_path.iterdir())


def test_minari_written_dataset_loads_in_minari(tmp_path, monkeypatch):
    minari = pytest.importorskip("minari")
    ds = make_dataset()
    target = io.write_minari(ds, tmp_path / "offrl" / "pendulum-test-v0", "offrl/pendulum-test-v0")
    assert (tmp_path / "offrl" / "namespace_metadata.json").is_file()
    meta = json.loads((target / "data" / "metadata.json").read_text())
    assert meta["dataset_id"] == "offrl/pendulum-test-v0"
    monkeypatch.setenv("MINARI_DATASETS_PATH", str(tmp_path))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no "misconfigured dataset" warnings either
        assert "offrl/pendulum-test-v0" in minari.list_local_datasets()
    loaded = minari.load_dataset("offrl/pendulum-test-v0")
    assert loaded.total_episodes == len(LENGTHS)
    assert loaded.total_steps == len(ds)
    assert loaded.env_spec.id == "Pendulum-v1"
    np.testing.assert_array_equal(loaded.action_space.low, [-2.0])
    assert loaded.observation_space.shape == (3,)
    for ep, s, e in zip(loaded.iterate_episodes(), ds.episode_starts, ds.episode_ends, strict=True):
        expected_obs = np.concatenate([ds.observations[s : e + 1], ds.next_observations[e:][:1]])
        np.testing.assert_array_equal(ep.observations, expected_obs)
        np.testing.assert_array_equal(ep.actions, ds.actions[s : e + 1])
        np.testing.assert_array_equal(ep.rewards, ds.rewards[s : e + 1])
        np.testing.assert_array_equal(ep.terminations, ds.terminals[s : e + 1])
        np.testing.assert_array_equal(ep.truncations, ds.timeouts[s : e + 1])
    score = minari.get_normalized_score(loaded, np.array([-150.0]))
    np.testing.assert_allclose(score, [1.0])
    # a Minari dataset id resolves under MINARI_DATASETS_PATH
    assert_same(ds, io.read("offrl/pendulum-test-v0"))


def test_reads_dataset_written_by_minari(tmp_path, monkeypatch):
    minari = pytest.importorskip("minari")
    gym = pytest.importorskip("gymnasium")
    monkeypatch.setenv("MINARI_DATASETS_PATH", str(tmp_path))
    env = minari.DataCollector(gym.make("Pendulum-v1", max_episode_steps=6))
    env.action_space.seed(0)
    for seed, steps in enumerate((6, 6, 3)):
        env.reset(seed=seed)
        for _ in range(steps):
            _, _, term, trunc, _ = env.step(env.action_space.sample())
            if term or trunc:
                break
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # minari warns about missing author etc.
        created = env.create_dataset(
            dataset_id="pend/random-v0",
            algorithm_name="random",
            ref_min_score=-1000.0,
            ref_max_score=-100.0,
        )
    env.close()

    ds = io.read(tmp_path / "pend" / "random-v0")
    assert ds.env_id == "Pendulum-v1"
    np.testing.assert_array_equal(ds.action_low, [-2.0])
    np.testing.assert_array_equal(ds.action_high, [2.0])
    assert (ds.ref_min_score, ds.ref_max_score) == (-1000.0, -100.0)
    assert ds.name == "pend/random-v0"
    assert len(ds) == created.total_steps == 15
    assert ds.episode_lengths().tolist() == [6, 6, 3]
    # DataCollector marks the unfinished last episode as truncated when it writes
    assert ds.timeouts.sum() == 3 and not ds.terminals.any()
    for ep, s, e in zip(
        created.iterate_episodes(), ds.episode_starts, ds.episode_ends, strict=True
    ):
        np.testing.assert_array_equal(ds.observations[s : e + 1], ep.observations[:-1])
        np.testing.assert_array_equal(ds.next_observations[s : e + 1], ep.observations[1:])
        np.testing.assert_array_equal(ds.actions[s : e + 1], ep.actions)
        np.testing.assert_allclose(ds.rewards[s : e + 1], ep.rewards, rtol=1e-6)
    # the data/ directory itself is accepted too
    assert len(io.read_minari(tmp_path / "pend" / "random-v0" / "data")) == 15


def test_minari_dict_observations_are_concatenated(tmp_path):
    target = io.write_minari(make_dataset(), tmp_path / "dict")
    h5 = target / "data" / "main_data.hdf5"
    with h5py.File(h5, "a") as f:
        for i in range(len(LENGTHS)):
            g = f[f"episode_{i}"]
            obs = g["observations"][()]
            del g["observations"]
            g.create_dataset("observations/b", data=obs[:, 1:])
            g.create_dataset("observations/a", data=obs[:, :1])
    meta_file = target / "data" / "metadata.json"
    meta = json.loads(meta_file.read_text())
    box = lambda n: {"type": "Box", "dtype": "float32", "shape": [n], "low": [0] * n}  # noqa: E731
    meta["observation_space"] = json.dumps(
        {"type": "Dict", "subspaces": {"b": box(2), "a": box(1)}}
    )
    meta_file.write_text(json.dumps(meta))
    ds = io.read(target)
    ref = make_dataset()
    np.testing.assert_array_equal(ds.observations[:, :2], ref.observations[:, 1:])
    np.testing.assert_array_equal(ds.observations[:, 2], ref.observations[:, 0])
    assert ds.metadata["observation_layout"] == [["b", [2]], ["a", [1]]]


def test_minari_write_refuses_unchained_transitions(tmp_path):
    ds = make_dataset()
    nxt = ds.next_observations.copy()
    nxt[1] += 1.0  # inside the first episode
    msg = one_line_error(io.write_minari, ds.replace(next_observations=nxt), tmp_path / "ab")
    assert "'next_observations'" in msg and "index 1" in msg
    assert not list(tmp_path.iterdir())


def test_minari_bad_ids_and_default_id(tmp_path):
    msg = one_line_error(io.write_minari, make_dataset(), tmp_path / "x", "no-version")
    assert "no-version" in msg
    assert io.default_dataset_id("pendulum test") == "offrl/pendulum_test-v0"
    assert io.default_dataset_id("hopper-medium-v2") == "offrl/hopper-medium-v2"
    assert io.default_dataset_id("D4RL/door/human-v2") == "D4RL/door/human-v2"
    assert io.default_dataset_id("") == "offrl/dataset-v0"
    path = io.write_minari(make_dataset(), tmp_path / "plain")
    meta = json.loads((path / "data" / "metadata.json").read_text())
    assert meta["dataset_id"] == "offrl/pendulum-test-v0"
    assert not (tmp_path / "namespace_metadata.json").exists()


def test_minari_errors(tmp_path):
    target = io.write_minari(make_dataset(), tmp_path / "err")
    with h5py.File(target / "data" / "main_data.hdf5", "a") as f:
        del f["episode_2/rewards"]
    msg = one_line_error(io.read, target)
    assert "main_data.hdf5" in msg and "episode_2" in msg and "'rewards'" in msg
    with h5py.File(target / "data" / "main_data.hdf5", "a") as f:
        f["episode_2/rewards"] = np.zeros(3)
        obs = f["episode_1/observations"][()]
        del f["episode_1/observations"]
        f["episode_1/observations"] = obs[:1]
    msg = one_line_error(io.read, target)
    assert "episode_1" in msg and "'observations'" in msg and "expected 2" in msg
    with h5py.File(target / "data" / "main_data.hdf5", "a") as f:  # right rows, too wide
        del f["episode_1/observations"]
        f["episode_1/observations"] = np.zeros((obs.shape[0], obs.shape[1] + 1), np.float32)
    msg = one_line_error(io.read, target)
    assert "episode_1" in msg and "'observations'" in msg
    (target / "data" / "metadata.json").unlink()
    msg = one_line_error(io.read_minari, target)
    assert "metadata.json" in msg


def write_d4rl_by_hand(path, obs, terminals, timeouts, **extra):
    n = len(terminals)
    with h5py.File(path, "w") as f:
        f["observations"] = obs
        f["actions"] = np.zeros((n, 1), np.float32)
        f["rewards"] = np.arange(n, dtype=np.float32)
        f["terminals"] = np.asarray(terminals, bool)
        f["timeouts"] = np.asarray(timeouts, bool)
        for key, value in extra.items():
            f[key] = value


def test_d4rl_without_next_observations(tmp_path):
    # episodes: [0 1 2T] [3 4t] [5t] [6 7 8] (T terminal, t timeout, last unfinished)
    obs = np.arange(9, dtype=np.float32)[:, None] * np.ones((1, 2), np.float32)
    terminals = [0, 0, 1, 0, 0, 0, 0, 0, 0]
    timeouts = [0, 0, 0, 0, 1, 1, 0, 0, 0]
    path = tmp_path / "d4rl.hdf5"
    write_d4rl_by_hand(path, obs, terminals, timeouts, **{"metadata/algorithm": "SAC"})
    ds = io.read(path)
    # timeout-ended transitions (4, 5) and the final one (8) are dropped, as d4rl's
    # qlearning_dataset does; the transitions before them end their episodes by timeout.
    assert ds.rewards.tolist() == [0, 1, 2, 3, 6, 7]
    np.testing.assert_array_equal(ds.next_observations[:, 0], [1, 2, 2, 4, 7, 8])
    assert ds.terminals.tolist() == [False, False, True, False, False, False]
    assert ds.timeouts.tolist() == [False, False, False, True, False, True]
    assert ds.episode_lengths().tolist() == [3, 1, 2]
    assert ds.metadata["dropped_transitions"] == 3
    assert ds.metadata["algorithm"] == "SAC"
    assert ds.name == "d4rl" and ds.env_id is None


def test_d4rl_missing_key_and_not_hdf5(tmp_path):
    path = tmp_path / "broken.hdf5"
    with h5py.File(path, "w") as f:
        f["observations"] = np.zeros((3, 2))
        f["actions"] = np.zeros((3, 1))
    msg = one_line_error(io.read, path)
    assert "broken.hdf5" in msg and "field 'rewards': missing" in msg
    junk = tmp_path / "junk.h5"
    junk.write_text("not hdf5")
    assert "junk.h5" in one_line_error(io.read, junk)


def test_d4rl_validation_errors_name_the_file(tmp_path):
    path = tmp_path / "data.hdf5"
    obs = np.zeros((30, 2), np.float32)
    rewards = np.zeros(30)
    rewards[[17, 20, 29]] = np.nan
    write_d4rl_by_hand(path, obs, np.zeros(30), np.zeros(30), next_observations=obs)
    with h5py.File(path, "a") as f:
        f["rewards"][...] = rewards
    msg = one_line_error(io.read, path)
    assert msg == f"{path}: field 'rewards': 3 NaN/inf values (first at index 17)"


def test_npz_missing_key_and_pickle(tmp_path):
    ds = make_dataset()
    path = tmp_path / "x.npz"
    arrays = {c: getattr(ds, c) for c in COLUMNS if c != "timeouts"}
    np.savez(path, **arrays)
    msg = one_line_error(io.read, path)
    assert "x.npz" in msg and "field 'timeouts': missing" in msg
    np.savez(path, **arrays, timeouts=np.array([object()] * len(ds), dtype=object))
    msg = one_line_error(io.read, path)
    assert "x.npz" in msg and "'timeouts'" in msg


def test_npz_without_next_observations_is_derived(tmp_path):
    ds = make_dataset()
    path = tmp_path / "nonext.npz"
    np.savez(path, **{c: getattr(ds, c) for c in COLUMNS if c != "next_observations"})
    back = io.read(path)
    # terminal (ep 0) kept, the timeouts of eps 1-2 and the unfinished end dropped
    assert len(back) == len(ds) - 3
    assert back.metadata["next_observations"] == "derived"


def test_clip_actions_on_read(tmp_path):
    ds = make_dataset()
    path = io.write_npz(ds, tmp_path / "c.npz")
    with np.load(path) as npz:
        arrays = dict(npz)
    arrays["actions"][3, 0] = 2.5
    np.savez(path, **arrays)
    msg = one_line_error(io.read, path)
    assert "c.npz" in msg and "'actions'" in msg and "1 values outside" in msg
    clipped = io.read(path, clip_actions=True)
    assert clipped.actions[3, 0] == 2.0 and clipped.metadata["clipped_actions"] == 1


def test_read_dispatch_errors(tmp_path):
    msg = one_line_error(io.read, tmp_path / "nope.npz")
    assert "nope.npz" in msg and "no such file" in msg
    other = tmp_path / "data.csv"
    other.write_text("1,2,3")
    msg = one_line_error(io.read, other)
    assert "data.csv" in msg and ".npz" in msg and "Minari" in msg
    (tmp_path / "empty_dir").mkdir()
    msg = one_line_error(io.read, tmp_path / "empty_dir")
    assert "empty_dir" in msg and "not a Minari dataset" in msg


def test_generic_write_dispatches(tmp_path):
    ds = make_dataset()
    assert io.write(ds, tmp_path / "a.npz").suffix == ".npz"
    assert io.write(ds, tmp_path / "a.h5").suffix == ".h5"
    target = io.write(ds, tmp_path / "dir", dataset_id="xx/y-v1")
    assert (target / "data" / "main_data.hdf5").is_file()
    for path in (tmp_path / "a.npz", tmp_path / "a.h5", target):
        assert_same(ds, io.read(path))


def test_minari_unregistered_env_id(tmp_path, monkeypatch):
    minari = pytest.importorskip("minari")
    ds = make_dataset(env_id="NotRegistered-v3")
    target = io.write_minari(ds, tmp_path / "ns" / "unreg-v0", "ns/unreg-v0")
    assert io.read(target).env_id == "NotRegistered-v3"
    # pointing at data/main_data.hdf5 itself reads the Minari dataset
    assert_same(ds, io.read(target / "data" / "main_data.hdf5"))
    monkeypatch.setenv("MINARI_DATASETS_PATH", str(tmp_path))
    assert minari.load_dataset("ns/unreg-v0").env_spec.id == "NotRegistered-v3"


def test_flat_files_with_bad_flags_and_npy(tmp_path):
    path = tmp_path / "flags.hdf5"
    obs = np.zeros((6, 2), np.float32)
    write_d4rl_by_hand(path, obs, np.zeros(6), np.zeros(6))
    with h5py.File(path, "a") as f:
        del f["timeouts"]
        f["timeouts"] = np.array([0, 0, 2, 0, 0, 1])
    msg = one_line_error(io.read, path)
    assert "flags.hdf5" in msg and "field 'timeouts'" in msg and "other than 0/1" in msg
    npy = tmp_path / "single.npz"
    with open(npy, "wb") as fh:
        np.save(fh, np.zeros(3))
    assert "single.npz" in one_line_error(io.read, npy)
    assert "no such file" in one_line_error(io.read, "nothere/missing-v0")


# --------------------------------------------------------------------------- flat shapes


def flat_columns(n=500, obs_dim=3, act_dim=2) -> dict:
    return dict(
        observations=np.zeros((n, obs_dim), np.float32),
        actions=np.zeros((n, act_dim), np.float32),
        rewards=np.zeros(n, np.float32),
        terminals=np.zeros(n, bool),
        timeouts=np.zeros(n, bool),
    )


def write_flat(fmt, path, cols, **attrs):
    if fmt == "npz":
        np.savez(path, **cols, **{k: np.asarray(v) for k, v in attrs.items()})
        return path
    with h5py.File(path, "w") as f:
        for key, value in cols.items():
            f[key] = value
        for key, value in attrs.items():
            f.attrs[key] = value
    return path


BAD_SHAPES = [
    (
        {"actions": np.zeros((400, 2))},
        "field 'actions': 400 rows, but field 'observations' has 500",
    ),
    ({"rewards": np.zeros(499)}, "field 'rewards': 499 rows, but field 'observations' has 500"),
    ({"terminals": np.zeros(501, bool)}, "field 'terminals': 501 rows"),
    ({"next_observations": np.zeros((400, 3))}, "field 'next_observations': 400 rows"),
    (
        {"observations": np.zeros(500)},
        "field 'observations': expected 2-D (N, obs_dim), got shape (500,)",
    ),
    (
        {"actions": np.zeros(500)},
        "field 'actions': expected 2-D (N, act_dim), got shape (500,); for discrete",
    ),
    (
        {"actions": np.zeros((500, 2, 2))},
        "field 'actions': expected 2-D (N, act_dim), got shape (500, 2, 2)",
    ),
    ({"rewards": np.zeros((500, 1))}, "field 'rewards': expected 1-D (N,), got shape (500, 1)"),
    (
        {"observations": np.float32(1.0)},
        "field 'observations': expected 2-D (N, obs_dim), got shape ()",
    ),
    ({"observations": np.array([b"x"] * 500)}, "field 'observations': dtype |S1 is not numeric"),
]


@pytest.mark.parametrize("fmt", ["d4rl", "npz"])
@pytest.mark.parametrize("change, expected", BAD_SHAPES)
def test_flat_files_with_bad_shapes_are_one_line_errors(fmt, change, expected, tmp_path):
    # e.g. a D4RL file with 400 actions against 500 observations was a raw IndexError
    path = tmp_path / ("x.hdf5" if fmt == "d4rl" else "x.npz")
    write_flat(fmt, path, flat_columns() | change)
    assert one_line_error(io.read, path).startswith(f"{path}: {expected}")


@pytest.mark.parametrize("fmt", ["d4rl", "npz"])
def test_flat_discrete_actions_may_be_one_dimensional(fmt, tmp_path):
    cols = flat_columns(n=6) | {"actions": np.array([0, 1, 2, 0, 1, 2])}
    path = write_flat(fmt, tmp_path / ("d.hdf5" if fmt == "d4rl" else "d.npz"), cols)
    ds = io.read(path, num_actions=3)
    assert ds.actions.shape == (5, 1) and ds.num_actions == 3  # the unfinished end dropped
    short = cols | {"actions": np.array([0, 1, 2, 0])}
    write_flat(fmt, path, short)
    msg = one_line_error(io.read, path, num_actions=3)
    assert msg.endswith(
        "field 'actions': 4 rows, but field 'observations' has 6 "
        "(every column has one row per transition)"
    )


# --------------------------------------------------------------------------- log-probs


def with_log_probs(ds: Dataset) -> Dataset:
    return ds.replace(behavior_log_probs=-np.linspace(0.1, 2.0, len(ds)).astype(np.float32))


@pytest.mark.parametrize("fmt", ["npz", "d4rl", "minari"])
def test_behavior_log_probs_round_trip(fmt, tmp_path, monkeypatch):
    ds = with_log_probs(make_dataset())
    path = write_any(fmt, ds, tmp_path)
    back = io.read(path)
    assert_same(ds, back)
    assert back.behavior_log_probs.dtype == np.float32
    np.testing.assert_array_equal(back.behavior_log_probs, ds.behavior_log_probs)
    # without them, there are none
    plain = write_any(fmt, make_dataset(), tmp_path, overwrite=True)
    assert io.read(plain).behavior_log_probs is None


def test_behavior_log_probs_in_the_files(tmp_path, monkeypatch):
    ds = with_log_probs(make_dataset())
    with h5py.File(io.write_d4rl(ds, tmp_path / "d.hdf5"), "r") as f:
        np.testing.assert_array_equal(f["infos/action_log_probs"][()], ds.behavior_log_probs)
    with np.load(io.write_npz(ds, tmp_path / "d.npz")) as npz:
        np.testing.assert_array_equal(npz["infos/action_log_probs"], ds.behavior_log_probs)
    target = io.write_minari(ds, tmp_path / "m")
    with h5py.File(target / "data" / "main_data.hdf5", "r") as f:
        got = np.concatenate([f[f"episode_{i}/infos/action_log_probs"][()] for i in range(4)])
    np.testing.assert_array_equal(got, ds.behavior_log_probs)


def test_minari_log_probs_as_datacollector_infos_and_errors(tmp_path, monkeypatch):
    ds = with_log_probs(make_dataset())
    target = io.write_minari(ds, tmp_path / "m")
    h5 = target / "data" / "main_data.hdf5"
    with h5py.File(h5, "a") as f:  # T + 1 rows, the reset's info first, as minari records
        g = f["episode_1/infos"]
        values = g["action_log_probs"][()]
        del g["action_log_probs"]
        g["action_log_probs"] = np.r_[np.float32(0.0), values]
    np.testing.assert_array_equal(io.read(target).behavior_log_probs, ds.behavior_log_probs)
    with h5py.File(h5, "a") as f:
        del f["episode_2/infos/action_log_probs"]
    msg = one_line_error(io.read, target)
    assert "main_data.hdf5: episode_2: field 'infos/action_log_probs': missing" in msg
    with h5py.File(h5, "a") as f:
        f["episode_2/infos/action_log_probs"] = np.zeros(7)
    msg = one_line_error(io.read, target)
    assert "episode_2: field 'infos/action_log_probs': 7 rows, expected 3" in msg


def test_bad_behavior_log_probs(tmp_path, monkeypatch):
    ds = with_log_probs(make_dataset())
    bad = ds.behavior_log_probs.copy()
    bad[5] = -np.inf
    msg = one_line_error(io.write_npz, ds.replace(behavior_log_probs=bad), tmp_path / "x.npz")
    assert msg.startswith(f"{tmp_path / 'x.npz'}: field 'infos/action_log_probs': 1 infinite")
    cols = flat_columns(n=6) | {"infos/action_log_probs": np.zeros(5)}
    path = write_flat("npz", tmp_path / "short.npz", cols)
    msg = one_line_error(io.read, path)
    assert (
        "short.npz: field 'infos/action_log_probs': 5 rows, but field 'observations' has 6" in msg
    )
    discrete = cols | {"actions": np.zeros(6, int), "infos/action_log_probs": np.full(6, 0.5)}
    path = write_flat("npz", tmp_path / "prob.npz", discrete, num_actions=2)
    msg = one_line_error(io.read, path)
    assert "prob.npz: field 'infos/action_log_probs': 5 values > 0" in msg


def test_minari_loads_a_dataset_with_log_probs(tmp_path, monkeypatch):
    minari = pytest.importorskip("minari")
    ds = with_log_probs(make_dataset())
    io.write_minari(ds, tmp_path / "offrl" / "logp-v0", "offrl/logp-v0")
    monkeypatch.setenv("MINARI_DATASETS_PATH", str(tmp_path))
    loaded = minari.load_dataset("offrl/logp-v0")
    episodes = list(loaded.iterate_episodes())
    got = np.concatenate([ep.infos["action_log_probs"] for ep in episodes])
    np.testing.assert_array_equal(got, ds.behavior_log_probs)


@pytest.mark.parametrize("fmt", ["npz", "d4rl", "minari"])
def test_partly_logged_log_probs_round_trip(fmt, tmp_path, monkeypatch):
    # Dataset.concatenate of parts with and without log-probs marks the missing rows NaN
    ds = with_log_probs(make_dataset())
    partial = ds.behavior_log_probs.copy()
    partial[:4] = np.nan  # the first episode was not logged
    back = io.read(write_any(fmt, ds.replace(behavior_log_probs=partial), tmp_path))
    np.testing.assert_array_equal(back.behavior_log_probs, partial)
