"""Discrete actions through the whole data path: dataset -> validate -> readers/writers ->
device batch -> core helpers -> evaluation in CartPole -> training/checkpoint -> CLI."""

from __future__ import annotations

import json
import re
import warnings

import gymnasium as gym
import h5py
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers import random_dataset, random_discrete_dataset

from offrl import cli, core, training
from offrl.data import io
from offrl.data.dataset import COLUMNS, Dataset
from offrl.data.transforms import make_transforms
from offrl.data.validate import validate
from offrl.envs.registry import normalized_score, reference_scores
from offrl.envs.rollout import rollout
from offrl.errors import ConfigError, DataError, OffrlError
from offrl.evaluate import evaluate
from offrl.nets.discrete import DiscreteQNet
from offrl.policy import load_policy

# --------------------------------------------------------------------------- dataset


def small(num_actions: int = 3, **changes) -> Dataset:
    """6 transitions, actions [0, 2, 1, 1, 0, 2]; episodes [0..2] (terminal), [3..5]."""
    obs = np.arange(7, dtype=np.float32)[:, None] * np.ones((1, 2), np.float32)
    cols = dict(
        observations=obs[:-1],
        actions=np.array([[0], [2], [1], [1], [0], [2]]),
        rewards=np.arange(6, dtype=np.float32),
        next_observations=obs[1:],
        terminals=np.array([0, 0, 1, 0, 0, 0], bool),
        timeouts=np.array([0, 0, 0, 0, 0, 1], bool),
        env_id="CartPole-v1",
        num_actions=num_actions,
    )
    return Dataset(**(cols | changes))


def test_discrete_dataset_bounds_info_and_concatenate():
    ds = small()
    assert ds.discrete and not random_dataset().discrete
    low, high = ds.bounds()  # the index range
    assert low.tolist() == [0.0] and high.tolist() == [2.0]
    info = ds.info()
    assert info["num_actions"] == 3 and info["action_shape"] == [1]
    assert Dataset.concatenate([ds, ds]).num_actions == 3
    with pytest.raises(DataError, match="num_actions 0, 3"):
        Dataset.concatenate([ds, random_dataset(obs_dim=2, act_dim=1)])


# --------------------------------------------------------------------------- validate


def fails(ds: Dataset, *fragments: str) -> None:
    with pytest.raises(DataError) as info:
        validate(ds, "d.npz")
    msg = str(info.value)
    assert "\n" not in msg and msg.startswith("d.npz: field "), msg
    for fragment in fragments:
        assert fragment in msg, (fragment, msg)


def test_validate_casts_integral_actions_to_int64():
    ds = validate(small(actions=np.array([[0.0], [2.0], [1.0], [1.0], [0.0], [2.0]])), "d.npz")
    assert ds.actions.dtype == np.int64 and ds.actions.shape == (6, 1)
    assert ds.actions[:, 0].tolist() == [0, 2, 1, 1, 0, 2]
    assert ds.observations.dtype == np.float32


@pytest.mark.parametrize(
    "bad, count, first, why",
    [
        ([0, 2, 1.5, 1, 0.25, 2], 2, "index 2: 1.5", "not an integer"),
        ([0, 2, 1, -1, 0, 2], 1, "index 3: -1", "negative"),
        ([0, 3, 1, 1, 7, 2], 2, "index 1: 3", ">= 3"),
        ([0, 2, 1, 1, np.nan, 2], 1, "index 4: nan", "not an integer"),
    ],
)
def test_validate_rejects_bad_action_indices(bad, count, first, why):
    actions = np.array(bad, np.float64)[:, None]
    fails(small(actions=actions), "'actions'", f"{count} values", "0..2", first, why)


def test_validate_discrete_shape_bounds_and_num_actions():
    fails(small(actions=np.zeros((6, 2), np.int64)), "'actions'", "one column", "(6, 2)")
    fails(small(action_low=np.zeros(1)), "'action_low'", "no action bounds")
    fails(small(num_actions=-2), "'num_actions'", "non-negative integer", "-2")
    fails(small(num_actions=2.5), "'num_actions'", "2.5")
    # 1-D actions of a dataset that does not say it is discrete: the hint names num_actions
    fails(small(num_actions=0, actions=np.zeros(6)), "'actions'", "give num_actions")


# --------------------------------------------------------------------------- readers/writers


@pytest.mark.parametrize("suffix", [".npz", ".hdf5", ""])
def test_round_trip_keeps_num_actions(suffix, tmp_path):
    ds = validate(small(), "small")
    back = io.read(io.write(ds, tmp_path / f"d{suffix}"))
    assert back.num_actions == 3 and back.actions.dtype == np.int64
    for c in COLUMNS:
        np.testing.assert_array_equal(getattr(back, c), getattr(ds, c), err_msg=c)
    assert back.action_low is None and back.action_high is None


def test_minari_sees_a_discrete_space(tmp_path, monkeypatch):
    minari = pytest.importorskip("minari")
    ds = validate(small(), "small")
    io.write_minari(ds, tmp_path / "offrl" / "small-v0", "offrl/small-v0")
    meta = json.loads((tmp_path / "offrl" / "small-v0" / "data" / "metadata.json").read_text())
    assert json.loads(meta["action_space"]) == {
        "type": "Discrete",
        "dtype": "int64",
        "start": 0,
        "n": 3,
    }
    monkeypatch.setenv("MINARI_DATASETS_PATH", str(tmp_path))
    loaded = minari.load_dataset("offrl/small-v0")
    assert loaded.action_space == gym.spaces.Discrete(3)
    first, second = loaded.iterate_episodes()
    assert first.actions.tolist() == [0, 2, 1] and second.actions.tolist() == [1, 0, 2]


def test_reads_a_discrete_dataset_written_by_minari(tmp_path, monkeypatch):
    minari = pytest.importorskip("minari")
    monkeypatch.setenv("MINARI_DATASETS_PATH", str(tmp_path))
    env = minari.DataCollector(gym.make("CartPole-v1", max_episode_steps=5))
    env.action_space.seed(0)
    taken = []
    env.reset(seed=0)
    for _ in range(5):
        taken.append(int(env.action_space.sample()))
        env.step(taken[-1])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # minari warns about missing author etc.
        env.create_dataset(dataset_id="cart/random-v0", algorithm_name="random")
    env.close()
    ds = io.read(tmp_path / "cart" / "random-v0")
    assert ds.num_actions == 2 and ds.env_id == "CartPole-v1"
    assert ds.actions[:, 0].tolist() == taken[: len(ds)]


def test_minari_discrete_start_is_refused(tmp_path):
    target = io.write_minari(validate(small(), "small"), tmp_path / "d")
    meta_file = target / "data" / "metadata.json"
    meta = json.loads(meta_file.read_text())
    meta["action_space"] = json.dumps({"type": "Discrete", "dtype": "int64", "start": 1, "n": 3})
    meta_file.write_text(json.dumps(meta))
    with pytest.raises(DataError, match=r"'action_space': Discrete\(3, start=1\) is not supported"):
        io.read(target)


def test_d4rl_file_with_flat_integer_actions_and_explicit_num_actions(tmp_path):
    ds = small()
    path = tmp_path / "ext.hdf5"
    with h5py.File(path, "w") as f:  # as another tool writes it: (N,) int actions, no num_actions
        for c in COLUMNS:
            f[c] = getattr(ds, c)[:, 0] if c == "actions" else getattr(ds, c)
    with pytest.raises(DataError, match="'actions'.*give num_actions"):
        io.read(path)
    back = io.read(path, num_actions=3)
    assert back.num_actions == 3 and back.actions[:, 0].tolist() == [0, 2, 1, 1, 0, 2]
    with pytest.raises(DataError, match="'actions'.*index 1: 2"):  # action 2 with n = 2
        io.read(path, num_actions=2)
    with h5py.File(path, "a") as f:  # the attribute offrl's writer stores
        f.create_group("metadata").attrs["num_actions"] = 3
    assert io.read(path).num_actions == 3
    with pytest.raises(DataError, match="stores 3, but 4 was given"):
        io.read(path, num_actions=4)


def test_npz_num_actions_must_be_an_integer(tmp_path):
    ds = small()
    np.savez(tmp_path / "d.npz", **{c: getattr(ds, c) for c in COLUMNS}, num_actions=2.5)
    with pytest.raises(DataError, match="'num_actions': not an integer: 2.5"):
        io.read(tmp_path / "d.npz")


# --------------------------------------------------------------------------- device batch


def test_to_device_keeps_indices_and_spec_carries_num_actions():
    ds = validate(small(), "small")
    tf = make_transforms(ds, normalize_obs=True)
    batch = core.to_device(ds, tf)
    assert batch.act.dtype == jnp.int32 and batch.act.shape == (6,)
    assert batch.act.tolist() == [0, 2, 1, 1, 0, 2]  # not mapped to [-1, 1]
    assert batch.done.tolist() == [0, 0, 1, 0, 0, 0]  # the terminal, not the timeout
    spec = core.spec_from_dataset(ds, tf)
    assert spec.discrete and spec.num_actions == 3 and spec.act_dim == 1
    assert not core.spec_from_dataset(random_dataset(), tf).discrete


def test_action_values_picks_the_data_action_on_axis_1():
    q = jnp.array([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]])
    act = jnp.array([2, 0])
    assert core.action_values(q, act).tolist() == [3.0, 4.0]
    # heads or quantiles after the action axis are kept: (B, n, K) -> (B, K)
    q3 = jnp.arange(12.0).reshape(2, 3, 2)  # q3[b, a, k] = 6b + 2a + k
    assert core.action_values(q3, act).tolist() == [[4.0, 5.0], [6.0, 7.0]]


def test_td_target_broadcasts_over_trailing_axes():
    # r = [1, 2], d = [0, 1] (the second transition ends in a terminal), γ = 0.5
    batch = core.Batch(
        obs=jnp.zeros((2, 1)),
        act=jnp.zeros(2, jnp.int32),
        rew=jnp.array([1.0, 2.0]),
        next_obs=jnp.zeros((2, 1)),
        done=jnp.array([0.0, 1.0]),
    )
    # (B,): [1 + 0.5 · 7, 2]
    assert core.td_target(batch, jnp.array([7.0, 9.0]), 0.5).tolist() == [4.5, 2.0]
    # (B, N), e.g. N quantiles: row 0 is 1 + 0.5 · [10, 20, 30]; row 1 stays r = 2
    next_value = jnp.array([[10.0, 20.0, 30.0], [40.0, 50.0, 60.0]])
    y = core.td_target(batch, next_value, 0.5)
    assert y.tolist() == [[6.0, 11.0, 16.0], [2.0, 2.0, 2.0]]
    # (B, K, N): every trailing entry of row 0 is 1 + 0.5 · 4 = 3, of row 1 r = 2
    y = core.td_target(batch, jnp.full((2, 2, 3), 4.0), 0.5)
    assert y.shape == (2, 2, 3) and y[0].tolist() == [[3.0] * 3] * 2
    assert y[1].tolist() == [[2.0] * 3] * 2


def test_update_target_moves_every_period():
    online, target = {"w": jnp.array([2.0, -4.0])}, {"w": jnp.array([0.0, 4.0])}
    # period 2: unchanged after update 1; after update 2 τ = 0.25 moves a quarter of the way:
    # 0.25 · [2, -4] + 0.75 · [0, 4] = [0.5, 2]
    moved = core.update_target(online, target, jnp.asarray(1), 2, 0.25)
    assert moved["w"].tolist() == [0.0, 4.0]
    moved = core.update_target(online, target, jnp.asarray(2), 2, 0.25)
    assert moved["w"].tolist() == [0.5, 2.0]
    # τ = 1 (the default): DQN's hard copy
    assert core.update_target(online, target, jnp.asarray(4), 2)["w"].tolist() == [2.0, -4.0]


@pytest.mark.parametrize(
    "period, tau, message",
    [
        (0, 1.0, "target_update_period must be >= 1, got 0"),
        (1, 0.0, "target_tau must be in (0, 1], got 0.0"),
        (1, 1.5, "target_tau must be in (0, 1], got 1.5"),
    ],
)
def test_check_target_update_names_the_field(period, tau, message):
    with pytest.raises(ValueError, match=f"^{re.escape(message)}$"):
        core.check_target_update(period, tau)
    core.check_target_update(1000)  # DQN's default: a hard copy every 1000 updates


def test_greedy_and_epsilon_greedy():
    q = jnp.array([[0.0, 3.0, 1.0], [2.0, 2.0, -1.0]])
    assert core.greedy(q).tolist() == [1, 0]  # a tie goes to the lowest index
    assert core.greedy(q).dtype == jnp.int32
    key = jax.random.key(0)
    assert core.epsilon_greedy(key, q, 0.0).tolist() == [1, 0]
    many = jnp.tile(q[:1], (6000, 1))  # greedy action 1 of 3
    for eps in (0.5, 1.0):
        acts = np.asarray(core.epsilon_greedy(key, many, eps))
        assert acts.dtype == np.int32 and set(acts.tolist()) == {0, 1, 2}
        # P(greedy) = 1 - ε + ε/3: 2/3 for ε = 0.5, 1/3 for ε = 1; the std of a frequency
        # over 6000 draws is below 0.007, so 0.025 is > 3.5 std
        assert abs(np.mean(acts == 1) - (1 - eps + eps / 3)) < 0.025


@pytest.mark.parametrize(
    "heads, quantiles, shape",
    [(None, None, (5, 3)), (4, None, (5, 3, 4)), (None, 7, (5, 3, 7)), (4, 7, (5, 3, 4, 7))],
)
def test_discrete_q_net_layouts_share_the_torso(heads, quantiles, shape):
    net = DiscreteQNet((8,), num_actions=3, heads=heads, quantiles=quantiles)
    obs = jnp.ones((5, 2))
    params = net.init(jax.random.key(0), obs)
    assert net.apply(params, obs).shape == shape
    # one torso and one output layer of n·K·N units (the heads differ in that layer only)
    layers = params["params"]["MLP_0"]
    assert sorted(layers) == ["Dense_0", "Dense_1"]
    assert layers["Dense_1"]["kernel"].shape == (8, int(np.prod(shape[1:])))


@pytest.mark.parametrize(
    "kwargs, fragment",
    [({"num_actions": 0}, "num_actions must be >= 1"), ({"num_actions": 2, "heads": 0}, ">= 1")],
)
def test_discrete_q_net_refuses_empty_axes(kwargs, fragment):
    with pytest.raises(ValueError, match=fragment):
        DiscreteQNet((8,), **kwargs).init(jax.random.key(0), jnp.ones((1, 2)))


# --------------------------------------------------------------------------- evaluation


def lean_policy(obs: np.ndarray, rng) -> np.ndarray:
    """Push toward the pole's lean: right (1) when angle + angular velocity > 0."""
    return (obs[:, 2] + obs[:, 3] > 0).astype(np.int32)


def test_rollout_in_cartpole_matches_a_plain_gymnasium_loop():
    got = rollout("CartPole-v1", lean_policy, episodes=5, seed=3, num_envs=2)
    expected = []
    env = gym.make("CartPole-v1")
    for e in range(5):  # episode e is reset with seed + e
        obs, _ = env.reset(seed=3 + e)
        total, done = 0.0, False
        while not done:
            obs, rew, term, trunc, _ = env.step(int(lean_policy(obs[None], None)[0]))
            total, done = total + rew, term or trunc
        expected.append(total)
    env.close()
    assert got.returns.tolist() == expected
    assert got.lengths.tolist() == expected  # reward 1 per step
    assert min(expected) > 100  # the lean policy balances far longer than random (~23)


def test_evaluate_normalizes_with_the_cartpole_references():
    assert reference_scores("CartPole-v1") == (22.98, 500.0)
    result = evaluate(lean_policy, "CartPole-v1", 3, 3, *reference_scores("CartPole-v1"))
    ret = result["return_mean"]
    assert result["normalized_score"] == pytest.approx(100 * (ret - 22.98) / (500 - 22.98))
    assert normalized_score(22.98, 22.98, 500.0) == 0.0


@pytest.mark.parametrize(
    "bad, fragment",
    [
        (lambda obs, rng: np.zeros(len(obs), np.float32), "integer actions"),
        (lambda obs, rng: np.full(len(obs), 2), "returned action 2, outside [0, 1]"),
        (lambda obs, rng: np.zeros(len(obs) + 1, np.int64), "must return 2 integer actions"),
    ],
)
def test_rollout_refuses_bad_discrete_actions(bad, fragment):
    with pytest.raises(OffrlError, match=fragment.replace("[", r"\[").replace("]", r"\]")):
        rollout("CartPole-v1", bad, episodes=2, seed=0)


# --------------------------------------------------------------------------- training + CLI


@pytest.fixture(scope="module")
def discrete_npz(tmp_path_factory):
    path = tmp_path_factory.mktemp("data") / "cart.npz"
    io.write(random_discrete_dataset(n=300), path)
    return path


def test_cli_trains_dqn_and_the_run_loads_and_acts_the_same(discrete_npz, tmp_path, capsys):
    out = tmp_path / "run"
    code, stdout, err = run_cli(
        capsys, "train", "dqn", "--dataset", str(discrete_npz), "--steps", "20", "--out",
        str(out), "--set", "hidden=8,8", "--set", "batch_size=16", "--eval-every", "20",
        "--eval-episodes", "1", "--chunk-size", "20", "--no-progress",
    )  # fmt: skip
    assert code == 0, err
    assert "in CartPole-v1" in stdout
    run = json.loads((out / "config.json").read_text())
    assert (run["num_actions"], run["act_dim"], run["env_id"]) == (2, 1, "CartPole-v1")
    code, stdout, err = run_cli(capsys, "eval", str(out), "--episodes", "2")
    assert code == 0 and "(step 20) in CartPole-v1" in stdout, err
    policy = load_policy(out)
    obs = np.random.default_rng(0).normal(size=(5, 4)).astype(np.float32)
    acts = policy(obs)
    assert acts.dtype == np.int32 and acts.shape == (5,) and set(acts.tolist()) <= {0, 1}
    assert int(policy(obs[0])) == acts[0]


def test_action_kind_mismatch_is_a_config_error(discrete_npz, tmp_path):
    with pytest.raises(ConfigError, match=f"td3_bc trains on continuous.*{discrete_npz}.*Discrete"):
        training.train("td3_bc", discrete_npz, steps=5, out=tmp_path / "a", progress=False)


def run_cli(capsys, *argv: str) -> tuple[int, str, str]:
    code = cli.main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def one_line_exit_2(code: int, err: str, *fragments: str) -> None:
    assert code == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("offrl: error: "), err
    for fragment in fragments:
        assert fragment in lines[0], (fragment, lines[0])


def test_cli_refuses_the_wrong_action_kind(discrete_npz, tmp_path, capsys):
    continuous = io.write(random_dataset(n=100, obs_dim=3, act_dim=1), tmp_path / "pend.npz")
    args = ["--steps", "5", "--out", str(tmp_path / "r"), "--no-progress"]
    code, _, err = run_cli(capsys, "train", "dqn", "--dataset", str(continuous), *args)
    one_line_exit_2(code, err, "dqn trains on discrete actions", "pend.npz", "1-D Box")
    code, _, err = run_cli(capsys, "train", "bc", "--dataset", str(discrete_npz), *args)
    one_line_exit_2(code, err, "bc trains on continuous actions", "cart.npz", "Discrete(2)")


def test_cli_bad_discrete_data_is_one_line(tmp_path, capsys):
    ds = random_discrete_dataset(n=40)
    cols = {c: getattr(ds, c) for c in COLUMNS}
    cols["actions"] = cols["actions"].copy()
    cols["actions"][17] = 5
    np.savez(tmp_path / "bad.npz", **cols, num_actions=2)
    code, _, err = run_cli(capsys, "data", "info", str(tmp_path / "bad.npz"))
    one_line_exit_2(code, err, "bad.npz", "'actions'", "index 17: 5", ">= 2")


def test_cli_data_info_shows_num_actions(discrete_npz, capsys):
    code, out, _ = run_cli(capsys, "data", "info", str(discrete_npz), "--json")
    assert code == 0
    info = json.loads(out)
    assert info["num_actions"] == 2 and info["transitions"] == 300
