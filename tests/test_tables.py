"""Log tables (Parquet / CSV) in and out: offrl.data.tables."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pytest
from test_io import assert_same, make_dataset, one_line_error

from offrl.data import io, tables
from offrl.data.dataset import COLUMNS, Dataset

OBS_DIM = 12  # obs_0 .. obs_11: obs_10 and obs_11 sort after obs_2 only by number
# (episode, steps, ends in a terminal); rows interleaved in the file, steps out of order.
EPISODES = (("ep-a", 3, True), ("ep-b", 4, False), ("ep-c", 2, True))
FILE_ORDER = [("ep-a", 0), ("ep-b", 2), ("ep-a", 1), ("ep-b", 0), ("ep-c", 0)]
FILE_ORDER += [("ep-a", 2), ("ep-b", 3), ("ep-c", 1), ("ep-b", 1)]


def obs_value(episode: int, step: int, dim: int) -> float:
    return 1000.0 * episode + 100.0 * step + dim


def log_columns(rows=FILE_ORDER) -> dict[str, list]:
    """The log's columns by name, rows in `rows` order; obs columns in a scrambled order."""
    index = {name: i for i, (name, _, _) in enumerate(EPISODES)}
    lengths = {name: n for name, n, _ in EPISODES}
    terminal = {name: t for name, _, t in EPISODES}
    cols: dict[str, list] = {f"obs_{d}": [] for d in (10, 3, 0, 11, 2, 1, 4, 5, 6, 7, 8, 9)}
    cols |= {f"next_obs_{d}": [] for d in range(OBS_DIM)}
    for key in ("session", "t", "act_x", "act_y", "r", "done", "logp"):
        cols[key] = []
    for name, step in rows:
        e = index[name]
        for d in range(OBS_DIM):
            cols[f"obs_{d}"].append(obs_value(e, step, d))
            cols[f"next_obs_{d}"].append(obs_value(e, step + 1, d))
        cols["session"].append(name)
        cols["t"].append(step)
        cols["act_x"].append(0.1 * step)
        cols["act_y"].append(-0.1 * e)
        cols["r"].append(10.0 * e + step)
        cols["done"].append(int(terminal[name] and step == lengths[name] - 1))
        cols["logp"].append(-0.5 - 0.1 * step)
    return cols


def write(tmp_path: Path, cols: dict, fmt: str = "parquet", name: str = "log") -> Path:
    path = tmp_path / f"{name}.{fmt}"
    table = pa.table(cols)
    if fmt == "parquet":
        pq.write_table(table, path)
    else:
        pacsv.write_csv(table, path)
    return path


def read(path, **kw) -> Dataset:
    args = dict(obs="obs_*", act="act_x,act_y", reward="r", episode="session", step="t")
    return tables.read_table(path, **(args | {"terminal": "done"} | kw))


def expected_obs(episode: int, steps) -> np.ndarray:
    return np.array([[obs_value(episode, s, d) for d in range(OBS_DIM)] for s in steps])


# --------------------------------------------------------------------------- import


@pytest.mark.parametrize("fmt", ["parquet", "csv"])
def test_import_writes_a_minari_dataset(fmt, tmp_path):
    path = write(tmp_path, log_columns(), fmt)
    out = tables.import_table(
        path, "obs_*", "act_x,act_y", "r", "session", step="t", terminal="done",
        out=tmp_path / "imported", env_id="Pendulum-v1",
    )  # fmt: skip
    assert (out / "data" / "main_data.hdf5").is_file()
    ds = io.read(out)
    assert ds.env_id == "Pendulum-v1" and ds.name == "log"
    # derived next observations: ep-b's last row has none and is dropped
    assert ds.episode_lengths().tolist() == [3, 3, 2]
    assert ds.metadata["dropped_transitions"] == 1
    assert ds.metadata["table_columns"]["obs"] == [f"obs_{d}" for d in range(OBS_DIM)]
    np.testing.assert_array_equal(ds.observations[:3], expected_obs(0, [0, 1, 2]))


def test_parquet_and_csv_give_the_same_dataset(tmp_path):
    cols = log_columns()
    a = read(write(tmp_path, cols, "parquet"))
    b = read(write(tmp_path, cols, "csv"))
    assert_same(a, b)
    assert a.metadata["format"] == "parquet" and b.metadata["format"] == "csv"


def test_glob_orders_columns_by_number(tmp_path):
    path = write(tmp_path, log_columns())
    ds = read(path)
    # obs_value's last two digits are the dimension: column j is obs_j
    np.testing.assert_array_equal(ds.observations[0] % 100, np.arange(OBS_DIM))
    listed = read(path, obs="obs_10, obs_2,obs_1")  # a list keeps its order
    np.testing.assert_array_equal(listed.observations[0], [10, 2, 1])
    mixed = read(path, obs=["obs_1?", "obs_[3-4]"], act=["act_y"])  # a Python list of specs
    np.testing.assert_array_equal(mixed.observations[0], [10, 11, 3, 4])
    assert mixed.act_dim == 1


def test_steps_order_rows_and_episodes_need_not_be_contiguous(tmp_path):
    ds = read(write(tmp_path, log_columns()))
    # episodes in order of first appearance (a, b, c), rows by step inside each
    np.testing.assert_array_equal(ds.rewards, [0, 1, 2, 10, 11, 12, 20, 21])
    np.testing.assert_array_equal(ds.observations[3:6], expected_obs(1, [0, 1, 2]))
    np.testing.assert_allclose(ds.actions[3:6, 0], [0.0, 0.1, 0.2], rtol=1e-6)


def test_without_step_the_file_order_is_kept(tmp_path):
    rows = [("ep-b", 1), ("ep-a", 0), ("ep-b", 0), ("ep-a", 1), ("ep-a", 2)]
    ds = read(write(tmp_path, log_columns(rows)), step=None, next_obs="next_obs_*")
    # ep-b first (first row), its rows as in the file: step 1 before step 0
    np.testing.assert_array_equal(ds.rewards, [11, 10, 0, 1, 2])
    # ep-b's next_obs do not chain in that order: the episode is split there
    assert ds.metadata["split_episodes"] == 1
    assert ds.episode_lengths().tolist() == [1, 1, 3]


def test_derived_next_observations(tmp_path):
    ds = read(write(tmp_path, log_columns()))
    assert ds.metadata["next_observations"] == "derived"
    assert tables.describe_import(ds).startswith(
        "8 transitions in 3 episodes, 12-D obs, 2-D actions; 1 last rows of episodes dropped"
    )
    # inside an episode: the next row's obs
    np.testing.assert_array_equal(ds.next_observations[:2], expected_obs(0, [1, 2]))
    # a terminal row is kept, with its own obs as a placeholder
    np.testing.assert_array_equal(ds.next_observations[2], ds.observations[2])
    assert ds.terminals.tolist() == [0, 0, 1, 0, 0, 0, 0, 1]
    # ep-b's last row was dropped: the row before it ends the episode by a timeout,
    # and its next obs is the dropped row's obs
    assert ds.timeouts.tolist() == [0, 0, 0, 0, 0, 1, 0, 0]
    np.testing.assert_array_equal(ds.next_observations[5], expected_obs(1, [3])[0])


def test_next_obs_columns(tmp_path):
    ds = read(write(tmp_path, log_columns()), next_obs="next_obs_*")
    assert len(ds) == 9 and ds.metadata["split_episodes"] == 0
    assert ds.metadata["next_observations"] == "columns"
    np.testing.assert_array_equal(ds.next_observations[6], expected_obs(1, [4])[0])
    # ep-b ends without a terminal and there is no timeout column: it was cut
    assert ds.timeouts.tolist() == [0, 0, 0, 0, 0, 0, 1, 0, 0]
    assert ds.episode_lengths().tolist() == [3, 4, 2]


def test_flags_inside_an_episode_end_it(tmp_path):
    cols = log_columns()
    cols["cut"] = [int(name == "ep-b" and step == 1) for name, step in FILE_ORDER]
    ds = read(write(tmp_path, cols), next_obs="next_obs_*", timeout="cut")
    assert ds.episode_lengths().tolist() == [3, 2, 2, 2]
    assert ds.timeouts[4] and ds.timeouts[6]


def test_discrete_actions(tmp_path):
    cols = log_columns()
    cols["a"] = [step % 3 for _, step in FILE_ORDER]  # 0, 1, 2: three actions
    path = write(tmp_path, cols)
    ds = read(path, act="a")
    assert ds.discrete and ds.num_actions == 3 and ds.actions.dtype == np.int64
    np.testing.assert_array_equal(ds.actions[:3, 0], [0, 1, 2])
    assert read(path, act="a", num_actions=5).num_actions == 5
    continuous = read(path, act="a", discrete=False)
    assert not continuous.discrete and continuous.actions.dtype == np.float32
    two = read(path, act="a,t")  # two integer columns: continuous
    assert not two.discrete and two.act_dim == 2
    cols["a_float"] = [float(step % 3) for _, step in FILE_ORDER]
    forced = read(write(tmp_path, cols, name="floats"), act="a_float", discrete=True)
    assert forced.num_actions == 3
    np.testing.assert_array_equal(forced.actions, ds.actions)


def test_behavior_log_probs_are_carried_through(tmp_path):
    path = write(tmp_path, log_columns())
    out = tables.import_table(
        path, "obs_*", "act_x,act_y", "r", "session", step="t", terminal="done",
        behavior_log_prob="logp", out=tmp_path / "m",
    )  # fmt: skip
    ds = io.read(out)
    assert ds.behavior_log_probs.dtype == np.float32
    np.testing.assert_allclose(ds.behavior_log_probs[:4], [-0.5, -0.6, -0.7, -0.5], rtol=1e-6)
    exported = tables.export_table(ds, tmp_path / "back.parquet")
    assert "behavior_log_prob" in pq.read_schema(exported).names
    back = read(exported, obs="obs_*", act="act_*", reward="reward", episode="episode",
                step="step", terminal="terminal", timeout="timeout", next_obs="next_obs_*",
                behavior_log_prob="behavior_log_prob")  # fmt: skip
    np.testing.assert_array_equal(back.behavior_log_probs, ds.behavior_log_probs)


# --------------------------------------------------------------------------- round trip


EXPORTED = dict(
    obs="obs_*", act="act_*", reward="reward", episode="episode", step="step",
    terminal="terminal", timeout="timeout", next_obs="next_obs_*",
)  # fmt: skip


def reread(path: Path, **kw) -> Dataset:
    return tables.read_table(path, **(EXPORTED | kw))


@pytest.mark.parametrize("fmt", ["parquet", "csv"])
def test_round_trip(fmt, tmp_path):
    ds = make_dataset()  # terminal, timeouts, and an unfinished last episode
    path = tables.export_table(ds, tmp_path / f"x.{fmt}")
    back = reread(path, env_id="Pendulum-v1")
    for c in COLUMNS:
        np.testing.assert_array_equal(getattr(back, c), getattr(ds, c), err_msg=c)
    np.testing.assert_array_equal(back.episode_ends, ds.episode_ends)
    assert back.env_id == ds.env_id and back.metadata["split_episodes"] == 0
    if fmt == "parquet":  # name, env id and reference scores travel in the schema metadata
        stored = reread(path)
        assert (stored.name, stored.env_id) == (ds.name, ds.env_id)
        assert (stored.ref_min_score, stored.ref_max_score) == (-1200.0, -150.0)


def test_round_trip_discrete_with_log_probs(tmp_path):
    from helpers import random_discrete_dataset

    ds = random_discrete_dataset(n=60, num_actions=7, episode_len=20)
    ds = Dataset(
        **{f: getattr(ds, f) for f in ("env_id", "num_actions", *COLUMNS)},
        behavior_log_probs=np.full(len(ds), np.log(1 / 7), np.float32),
    )
    path = tables.export_table(ds, tmp_path / "d.parquet")
    back = reread(path, behavior_log_prob="behavior_log_prob")
    assert back.num_actions == 7  # stored, though the data may not use action 6
    for c in (*COLUMNS, "behavior_log_probs"):
        np.testing.assert_array_equal(getattr(back, c), getattr(ds, c), err_msg=c)
    csv = tables.export_table(ds, tmp_path / "d.csv")
    assert reread(csv, num_actions=7).num_actions == 7
    # a table written by export imports into Minari and reads back the same
    out = tables.import_table(csv, **EXPORTED, num_actions=7, out=tmp_path / "m")
    assert_same(io.read(out), ds.replace(action_low=None, action_high=None))


def test_export_refuses_overwrite_and_unknown_formats(tmp_path):
    ds = make_dataset()
    path = tables.export_table(ds, tmp_path / "x.csv")
    msg = one_line_error(tables.export_table, ds, path)
    assert str(path) in msg and "overwrite=True" in msg
    tables.export_table(ds, path, overwrite=True)
    assert tables.export_table(ds, tmp_path / "y.out", format="parquet").is_file()
    assert "'xlsx'" in one_line_error(tables.export_table, ds, tmp_path / "x.xlsx", "xlsx")
    assert "x.json" in one_line_error(tables.export_table, ds, tmp_path / "x.json")
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


# --------------------------------------------------------------------------- errors


def with_column(name, values):
    return lambda cols: cols | {name: values}


def set_row(name, row, value):
    def change(cols):
        column = list(cols[name])
        column[row] = value
        return cols | {name: column}

    return change


N = len(FILE_ORDER)
BAD = [
    # (change to the columns, read_table keywords, expected column, expected problem)
    (None, {"obs": "state_*"}, "obs 'state_*'", "matches no column (the file has obs_10"),
    (None, {"reward": "rew"}, "column 'rew' (reward)", "not in the file"),
    (None, {"act": "act_x,act_z"}, "column 'act_z' (act)", "not in the file"),
    (None, {"obs": "obs_1,obs_*"}, "column 'obs_1' (obs)", "named twice"),
    (None, {"next_obs": "next_obs_1?"}, "next_obs", "2 columns (next_obs_10, ...), but obs has 12"),
    (set_row("obs_3", 4, None), {}, "column 'obs_3'", "1 missing (null) values (first at row 4)"),
    (set_row("obs_11", 2, float("nan")), {}, "column 'obs_11'", "1 NaN/inf values (first at row"),
    (set_row("r", 7, float("inf")), {}, "column 'r'", "1 NaN/inf values (first at row 7)"),
    (set_row("r", 1, 1e39), {}, "column 'r'", "1 values beyond the float32 range (first at row 1)"),
    (with_column("act_y", ["x"] * N), {"act": "act_y"}, "column 'act_y'", "type string is not"),
    (with_column("r", ["x"] * N), {}, "column 'r'", ""),  # type string / invalid value 'x'
    (with_column("obs_2", [[1.0, 2.0]] * N), {}, "column 'obs_2'", "a list column"),
    (set_row("done", 3, 2), {}, "column 'done'", "1 values other than 0/1 (first at row 3: 2)"),
    (with_column("done", [0.5] * N), {}, "column 'done'", "type double; expected bool or 0/1"),
    (set_row("t", 2, 2), {}, "column 't'", "step 2 twice in episode 'ep-a' (rows 2 and 5)"),
    (set_row("session", 0, None), {}, "column 'session'", "1 missing (null) values"),
    (with_column("a", [-1] + [0] * (N - 1)), {"act": "a"}, "column 'a'", "not action indices"),
    (with_column("a", [0, 1] * 4 + [3]), {"act": "a", "num_actions": 3}, "column 'a'",
     "1 action indices >= num_actions 3 (first at row 8: 3)"),
    (None, {"act": "act_x", "discrete": True}, "column 'act_x'", "not action indices 0, 1"),
    (None, {"act": "act_*", "num_actions": 2}, "act", "discrete actions are one column"),
    (set_row("logp", 6, float("-inf")), {"behavior_log_prob": "logp"}, "column 'logp'",
     "1 NaN/inf values (first at row 6)"),
]  # fmt: skip


@pytest.mark.parametrize("fmt", ["parquet", "csv"])
@pytest.mark.parametrize("change, kw, column, problem", BAD)
def test_errors_are_one_line_naming_file_and_column(fmt, change, kw, column, problem, tmp_path):
    cols = log_columns()
    if change is not None:
        cols = change(cols)
    if fmt == "csv" and "a list column" in problem:
        pytest.skip("CSV has no list columns")
    path = write(tmp_path, cols, fmt)
    msg = one_line_error(read, path, **kw)
    assert msg.startswith(f"{path}: {column}"), msg
    assert problem in msg, msg


def test_discrete_log_probs_must_be_log_probabilities(tmp_path):
    cols = log_columns() | {"a": [0] * N, "p": [0.5] * N}
    path = write(tmp_path, cols)
    msg = one_line_error(read, path, act="a", behavior_log_prob="p")
    assert msg.startswith(f"{path}: column 'p': 9 values > 0 (first at row 0: 0.5)"), msg
    # a density's log may be > 0 for continuous actions
    assert read(path, behavior_log_prob="p").behavior_log_probs.max() == 0.5


def test_categorical_episode_ids_keep_first_appearance_order(tmp_path):
    cols = log_columns()
    names = sorted({name for name, _, _ in EPISODES}, reverse=True)  # c, b, a
    codes = pa.array([names.index(v) for v in cols["session"]], pa.int8())
    cols["session"] = pa.DictionaryArray.from_arrays(codes, pa.array(names))
    ds = read(write(tmp_path, cols))
    np.testing.assert_array_equal(ds.rewards, [0, 1, 2, 10, 11, 12, 20, 21])


def test_empty_table(tmp_path):
    cols = {k: pa.array([], pa.float64()) for k in log_columns()}
    cols["session"] = pa.array([], pa.string())
    msg = one_line_error(read, write(tmp_path, cols))
    assert msg.endswith("log.parquet: no rows")


def test_file_errors(tmp_path):
    assert "nope.parquet: no such file" in one_line_error(read, tmp_path / "nope.parquet")
    other = tmp_path / "log.json"
    other.write_text("{}")
    assert "log.json: unrecognized table format" in one_line_error(read, other)
    junk = tmp_path / "junk.parquet"
    junk.write_text("not parquet")
    assert "junk.parquet: not a readable parquet file" in one_line_error(read, junk)
    ragged = tmp_path / "ragged.csv"
    ragged.write_text(",".join(log_columns()) + "\n1,2\n")
    assert "ragged.csv: not a readable csv file" in one_line_error(read, ragged)


def test_a_late_bad_csv_value_names_its_column(tmp_path):
    cols = log_columns()
    path = write(tmp_path, cols, "csv")
    lines = path.read_text().splitlines()
    names = lines[0].replace('"', "").split(",")
    values = lines[3].split(",")
    values[names.index("obs_5")] = "n/a?"
    path.write_text("\n".join([*lines[:3], ",".join(values), *lines[4:]]) + "\n")
    msg = one_line_error(read, path)
    assert msg == f"{path}: column 'obs_5': CSV conversion error to double: invalid value 'n/a?'"


def test_nothing_left_without_next_observations(tmp_path):
    rows = [("ep-a", 0), ("ep-b", 0)]
    cols = log_columns(rows) | {"done": [0, 0]}
    msg = one_line_error(read, write(tmp_path, cols))
    assert "log.parquet: no transitions left" in msg and "next_obs" in msg


@pytest.mark.parametrize("fmt", ["parquet", "csv"])
def test_partly_logged_log_probs(fmt, tmp_path):
    # null or NaN: a step whose log-probability was not logged (Dataset.concatenate's NaN)
    cols = log_columns()
    cols["logp"] = [None if i == 0 else v for i, v in enumerate(cols["logp"])]
    cols["logp"][2] = float("nan")
    ds = read(write(tmp_path, cols, fmt), behavior_log_prob="logp", next_obs="next_obs_*")
    assert np.isnan(ds.behavior_log_probs).sum() == 2 and ds.complete_log_probs() is None
    back = reread(
        tables.export_table(ds, tmp_path / f"back.{fmt}"), behavior_log_prob="behavior_log_prob"
    )
    np.testing.assert_array_equal(back.behavior_log_probs, ds.behavior_log_probs)
