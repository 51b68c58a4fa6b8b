"""Log tables in and out: Parquet or CSV files of logged steps, one row per step.

For data from a real system, with no simulator: `read_table` reads a table whose rows are
steps (one column per observation / action dimension) into a Dataset, `import_table` writes
it as a Minari dataset directory (`io.write_minari`), and `export_table` writes any Dataset
back as such a table. pyarrow reads and writes both formats, picked by the file's suffix
(.parquet / .pq or .csv).

Reading
-------
Column specs (`obs`, `act`, `next_obs`): a comma-separated list of names or fnmatch globs
  ("obs_*"), or a list of them. A glob's matches are in natural order (obs_2 before obs_10),
  listed names in the order given. A spec that matches nothing, a missing column or a column
  named twice is an error.
Values: integer, float, decimal or bool columns; no nulls, no NaN/inf, nothing beyond the
  float32 range. A list column is refused (give one column per dimension). `terminal` and
  `timeout` columns hold bool or 0/1 integers.
Episodes: the rows with one value of the `episode` column (integers, strings, ...) are one
  episode, wherever they are in the file: rows of an episode need not be contiguous; they are
  gathered, and episodes keep the order of their first rows. Inside an episode, rows are
  ordered by `step` when given (an integer, float or timestamp column; only the order counts,
  gaps are fine, a step twice in one episode is an error), else kept in file order.
Episode ends: an episode ends at its last row, and at every terminal or timeout flag before
  it (the flag splits it, as in D4RL's flat files). An end that is not a terminal is a
  timeout, the Dataset knowing no third way for an episode to stop: without a timeout column,
  an episode that ends without a terminal was cut. Only the table's very last row keeps the
  file's timeout value (the Dataset ends an episode there either way), so that
  `read_table(export_table(ds))` gives ds back.
Next observations: from the `next_obs` columns when given. Where one is not the next row's
  observation inside an episode, the episode is split there, the transition ending it by a
  timeout (Minari keeps one observation sequence per episode; metadata["split_episodes"]
  counts the splits). Without `next_obs` columns they are derived as in D4RL files (see io):
  next_obs[t] = obs[t + 1] inside each episode; an episode's last row has no next observation
  and is dropped unless it is a terminal, the row before it then ending the episode by a
  timeout; a terminal row is kept (its reward counts) with its own observation as next
  observation, a placeholder that no target uses (a terminal never bootstraps).
  metadata["dropped_transitions"] counts the dropped rows.
Actions: one integer or bool column is discrete, num_actions = max + 1 unless given (or
  stored by `export_table` in a Parquet file); anything else is continuous. `discrete=True`
  or `False` forces the kind, `num_actions=n` implies discrete.
Behaviour log-probabilities: the `behavior_log_prob` column, log pi_b(a_t | s_t) of each
  logged action, goes to Dataset.behavior_log_probs (written by io as
  infos/action_log_probs) for off-policy evaluation. A null or NaN there marks a step whose
  log-probability was not logged (as Dataset.concatenate marks them); inf is an error.
metadata["table_columns"] records which column gave what.

Errors are one line: "<file>: column '<name>': <problem>", rows counted from 0 in file order.

Writing
-------
`export_table` writes the columns obs_0.., act_0.., reward, episode (0, 1, ... in the
dataset's order), step (0, 1, ... inside each episode), terminal, timeout, next_obs_0.. and,
when the dataset has them, behavior_log_prob. A Parquet file also keeps the dataset's name,
env id, num_actions and reference scores in its schema metadata (key "offrl"), which
`read_table` uses when not told otherwise; a CSV file holds the columns only.
"""

from __future__ import annotations

import fnmatch
import json
import os
import re
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from offrl.data import io
from offrl.data.dataset import Dataset
from offrl.errors import DataError

__all__ = [
    "FORMATS",
    "describe_import",
    "export_table",
    "import_table",
    "read_table",
    "table_format",
    "to_arrow",
]

FORMATS = {".parquet": "parquet", ".pq": "parquet", ".csv": "csv"}
Spec = str | Sequence[str]
_F32_MAX = float(np.finfo(np.float32).max)
_META_KEY = b"offrl"
_STORED = ("name", "env_id", "num_actions", "ref_min_score", "ref_max_score")
# pyarrow's CSV null spellings but the NaN ones: a "nan" is then a NaN value, not a gap.
_CSV_NULLS = ["", "#N/A", "#N/A N/A", "#NA", "-1.#IND", "1.#IND", "N/A", "NA", "NULL", "n/a"]
_CSV_NULLS += ["null"]


@dataclass(frozen=True)
class _Columns:
    """The table's columns for each role (parameter names of `read_table`)."""

    obs: list[str]
    act: list[str]
    reward: str
    episode: str
    next_obs: list[str] | None = None
    terminal: str | None = None
    timeout: str | None = None
    step: str | None = None
    behavior_log_prob: str | None = None

    def names(self) -> list[str]:
        out: list[str] = []
        for value in asdict(self).values():
            for name in [value] if isinstance(value, str) else value or []:
                if name not in out:
                    out.append(name)
        return out

    def floats(self) -> list[str]:
        """Columns read as float64 from CSV (so a late "1.5" cannot break integer inference)."""
        singles = [self.reward, self.behavior_log_prob]
        return [*self.obs, *(self.next_obs or []), *(c for c in singles if c)]


# --------------------------------------------------------------------------- public API


def import_table(
    file: str | os.PathLike,
    obs: Spec,
    act: Spec,
    reward: str,
    episode: str,
    *,
    out: str | os.PathLike,
    terminal: str | None = None,
    timeout: str | None = None,
    next_obs: Spec | None = None,
    behavior_log_prob: str | None = None,
    step: str | None = None,
    num_actions: int | None = None,
    discrete: bool | None = None,
    env_id: str | None = None,
    name: str | None = None,
    dataset_id: str | None = None,
    overwrite: bool = False,
) -> Path:
    """Read a Parquet/CSV log table (see `read_table`) and write it as the Minari dataset
    directory `out` (id `dataset_id`, default "offrl/<name>-v0"). Returns `out`."""
    ds = read_table(
        file,
        obs,
        act,
        reward,
        episode,
        terminal=terminal,
        timeout=timeout,
        next_obs=next_obs,
        behavior_log_prob=behavior_log_prob,
        step=step,
        num_actions=num_actions,
        discrete=discrete,
        env_id=env_id,
        name=name,
    )
    return io.write_minari(ds, out, dataset_id=dataset_id, overwrite=overwrite)


def read_table(
    file: str | os.PathLike,
    obs: Spec,
    act: Spec,
    reward: str,
    episode: str,
    *,
    terminal: str | None = None,
    timeout: str | None = None,
    next_obs: Spec | None = None,
    behavior_log_prob: str | None = None,
    step: str | None = None,
    num_actions: int | None = None,
    discrete: bool | None = None,
    env_id: str | None = None,
    name: str | None = None,
) -> Dataset:
    """A validated Dataset from a Parquet or CSV table of logged steps (module docstring)."""
    p = Path(file)
    fmt = table_format(p)
    schema = _schema(p, fmt)
    cols = _Columns(
        obs=_expand(obs, schema.names, "obs", p),
        act=_expand(act, schema.names, "act", p),
        reward=_single(reward, schema.names, "reward", p),
        episode=_single(episode, schema.names, "episode", p),
        next_obs=None if next_obs is None else _expand(next_obs, schema.names, "next_obs", p),
        terminal=_single(terminal, schema.names, "terminal", p),
        timeout=_single(timeout, schema.names, "timeout", p),
        step=_single(step, schema.names, "step", p),
        behavior_log_prob=_single(behavior_log_prob, schema.names, "behavior_log_prob", p),
    )
    _check_widths(cols, p)
    stored = _stored_fields(schema, p)
    table = _read(p, fmt, cols, continuous=discrete is False or len(cols.act) > 1)
    if table.num_rows == 0:
        raise DataError(f"{p}: no rows")
    order, codes = _row_order(table, cols, p)
    actions, n = _actions(table, cols.act, p, num_actions, discrete, stored.get("num_actions"))
    columns = _transitions(table, cols, p, order, codes, actions)
    metadata = columns.pop("metadata")
    ds = Dataset(
        **columns,
        name=name or str(stored.get("name") or p.stem),
        env_id=env_id or stored.get("env_id"),
        ref_min_score=stored.get("ref_min_score"),
        ref_max_score=stored.get("ref_max_score"),
        metadata=metadata,
        num_actions=n,
    )
    return io.validated(ds, str(p))


def export_table(
    dataset: Dataset,
    path: str | os.PathLike,
    format: str | None = None,
    overwrite: bool = False,
) -> Path:
    """Write `dataset` as a Parquet or CSV table (`format`, default from the suffix), one row
    per transition; atomic, and an existing file is replaced only with `overwrite=True`."""
    p = Path(path)
    fmt = format or table_format(p)
    if fmt not in ("parquet", "csv"):
        raise DataError(f"{fmt!r}: unknown table format; expected parquet or csv")
    ds = io.validated(dataset, str(p))
    table = to_arrow(ds)
    with io._atomic_file(p, overwrite) as tmp:
        if fmt == "parquet":
            stored = json.dumps({key: getattr(ds, key) for key in _STORED})
            pq.write_table(table.replace_schema_metadata({_META_KEY: stored}), tmp)
        else:
            pacsv.write_csv(table, tmp)
    return p


def describe_import(ds: Dataset) -> str:
    """One line on what `read_table` made of a table, for the command line."""
    kind = f"{ds.num_actions} discrete actions" if ds.discrete else f"{ds.act_dim}-D actions"
    line = f"{len(ds)} transitions in {ds.num_episodes} episodes, {ds.obs_dim}-D obs, {kind}"
    notes = []
    if ds.metadata.get("dropped_transitions"):
        notes.append(
            f"{ds.metadata['dropped_transitions']} last rows of episodes dropped (no next "
            "observation; give next_obs columns to keep them)"
        )
    if ds.metadata.get("split_episodes"):
        notes.append(
            f"{ds.metadata['split_episodes']} episodes split where next_obs is not the next "
            "row's obs"
        )
    if ds.behavior_log_probs is not None:
        notes.append("behaviour log-probabilities kept")
    return "; ".join([line, *notes])


def to_arrow(ds: Dataset) -> pa.Table:
    """The dataset as an Arrow table with the columns `export_table` writes."""
    lengths = ds.episode_lengths()
    episode = np.repeat(np.arange(len(lengths)), lengths)
    cols: dict[str, Any] = _numbered("obs", ds.observations)
    cols |= _numbered("act", ds.actions)
    cols |= {
        "reward": ds.rewards,
        "episode": episode,
        "step": np.arange(len(ds)) - np.repeat(ds.episode_starts, lengths),
        "terminal": ds.terminals,
        "timeout": ds.timeouts,
    }
    cols |= _numbered("next_obs", ds.next_observations)
    log_probs = ds.behavior_log_probs
    if log_probs is not None:
        cols["behavior_log_prob"] = log_probs
    return pa.table(cols)


def table_format(path: str | os.PathLike) -> str:
    """ "parquet" or "csv", from the file's suffix."""
    fmt = FORMATS.get(Path(path).suffix.lower())
    if fmt is None:
        raise DataError(f"{path}: unrecognized table format; expected a .parquet, .pq or .csv file")
    return fmt


# --------------------------------------------------------------------------- columns


def _expand(spec: Spec, names: list[str], role: str, p: Path) -> list[str]:
    """Column names for a spec: names and globs, each glob's matches in natural order."""
    items = spec.split(",") if isinstance(spec, str) else list(spec)
    items = [item.strip() for item in items if item.strip()]
    if not items:
        raise DataError(f"{p}: {role}: no columns given")
    out: list[str] = []
    for item in items:
        if any(ch in item for ch in "*?["):
            found = sorted((n for n in names if fnmatch.fnmatchcase(n, item)), key=_natural)
            if not found:
                raise DataError(f"{p}: {role} {item!r}: matches no column ({_listing(names)})")
        else:
            found = [_single(item, names, role, p)]
        for col in found:
            if col in out:
                raise DataError(f"{p}: column '{col}' ({role}): named twice")
            out.append(col)
    return out


def _single(col: str | None, names: list[str], role: str, p: Path) -> str | None:
    if col is None:
        return None
    if col not in names:
        raise DataError(f"{p}: column '{col}' ({role}): not in the file ({_listing(names)})")
    if names.count(col) > 1:
        raise DataError(f"{p}: column '{col}' ({role}): the file has {names.count(col)} of them")
    return col


def _natural(name: str) -> list:
    """obs_2 before obs_10: digit runs compare as numbers."""
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", name)]


def _listing(names: list[str]) -> str:
    shown = ", ".join(names[:8])
    return f"the file has {shown}" + (f", ... ({len(names)} columns)" if len(names) > 8 else "")


def _check_widths(cols: _Columns, p: Path) -> None:
    if cols.next_obs is not None and len(cols.next_obs) != len(cols.obs):
        raise DataError(
            f"{p}: next_obs: {len(cols.next_obs)} columns ({cols.next_obs[0]}, ...), but obs has "
            f"{len(cols.obs)}"
        )


# --------------------------------------------------------------------------- reading


def _schema(p: Path, fmt: str) -> pa.Schema:
    if not p.is_file():
        raise DataError(f"{p}: no such file")
    try:
        if fmt == "parquet":
            return pq.read_schema(p)
        with pacsv.open_csv(p) as reader:
            return reader.schema
    except (pa.ArrowException, OSError) as e:
        raise DataError(f"{p}: not a readable {fmt} file ({io._one_line(e)})") from None


def _read(p: Path, fmt: str, cols: _Columns, continuous: bool) -> pa.Table:
    """The needed columns only; CSV value columns as float64 (actions too if continuous)."""
    try:
        if fmt == "parquet":
            return pq.read_table(p, columns=cols.names())
        floats = cols.floats() + (cols.act if continuous else [])
        options = pacsv.ConvertOptions(
            include_columns=cols.names(),
            column_types=dict.fromkeys(floats, pa.float64()),
            null_values=_CSV_NULLS,
            strings_can_be_null=True,  # an empty episode id is missing, not ""
        )
        return pacsv.read_csv(p, convert_options=options)
    except (pa.ArrowException, OSError) as e:
        raise _read_error(e, p, fmt) from None


def _read_error(e: BaseException, p: Path, fmt: str) -> DataError:
    """pyarrow's "In CSV column #3: <problem>" as "<file>: column '<name>': <problem>"."""
    message = io._one_line(e)
    match = re.search(r"In CSV column #(\d+): ", message)
    if fmt == "csv" and match:
        header = _schema(p, fmt).names
        index = int(match.group(1))
        if index < len(header):
            return DataError(f"{p}: column '{header[index]}': {message[match.end() :]}")
    return DataError(f"{p}: not a readable {fmt} file ({message})")


def _stored_fields(schema: pa.Schema, p: Path) -> dict[str, Any]:
    """What `export_table` kept in a Parquet file's schema metadata."""
    raw = (schema.metadata or {}).get(_META_KEY)
    if raw is None:
        return {}
    try:
        stored = json.loads(raw)
    except ValueError:
        raise DataError(f"{p}: schema metadata 'offrl': not JSON") from None
    return {k: stored[k] for k in _STORED if isinstance(stored, dict) and stored.get(k) is not None}


def _values(table: pa.Table, col: str, p: Path) -> np.ndarray:
    """A numeric column as numpy: no nulls, floats finite and within the float32 range."""
    arr = _column(table, col, p)
    if pa.types.is_decimal(arr.type):
        arr = arr.cast(pa.float64())
    if not (pa.types.is_integer(arr.type) or pa.types.is_floating(arr.type)):
        if not pa.types.is_boolean(arr.type):
            raise DataError(f"{p}: column '{col}': type {arr.type} is not numeric")
    values = arr.to_numpy()
    if values.dtype.kind == "f":
        _check_floats(values, col, p)
    return values


def _column(table: pa.Table, col: str, p: Path) -> pa.ChunkedArray:
    """A column with no nulls, not a list."""
    arr = table.column(col)
    if pa.types.is_list(arr.type) or pa.types.is_large_list(arr.type):
        raise DataError(f"{p}: column '{col}': a list column; give one column per dimension")
    if pa.types.is_fixed_size_list(arr.type) or pa.types.is_struct(arr.type):
        raise DataError(f"{p}: column '{col}': a nested column; give one column per dimension")
    if arr.null_count:
        first = int(np.argmax(arr.is_null().to_numpy(zero_copy_only=False)))
        raise DataError(
            f"{p}: column '{col}': {arr.null_count} missing (null) values (first at row {first})"
        )
    return arr


def _check_floats(values: np.ndarray, col: str, p: Path) -> None:
    bad = ~np.isfinite(values)
    if bad.any():
        raise DataError(
            f"{p}: column '{col}': {int(bad.sum())} NaN/inf values (first at row "
            f"{int(np.argmax(bad))})"
        )
    big = np.abs(values) > _F32_MAX
    if big.any():
        raise DataError(
            f"{p}: column '{col}': {int(big.sum())} values beyond the float32 range (first at "
            f"row {int(np.argmax(big))})"
        )


def _flags(table: pa.Table, col: str | None, p: Path) -> np.ndarray:
    """A terminal/timeout column as bool: bool or 0/1 integers (all False when absent)."""
    if col is None:
        return np.zeros(table.num_rows, bool)
    arr = _column(table, col, p)
    if pa.types.is_boolean(arr.type):
        return arr.to_numpy()
    if not pa.types.is_integer(arr.type):
        raise DataError(f"{p}: column '{col}': type {arr.type}; expected bool or 0/1 integers")
    values = arr.to_numpy()
    bad = (values != 0) & (values != 1)
    if bad.any():
        i = int(np.argmax(bad))
        raise DataError(
            f"{p}: column '{col}': {int(bad.sum())} values other than 0/1 (first at row {i}: "
            f"{values[i]})"
        )
    return values.astype(bool)


# --------------------------------------------------------------------------- episodes


def _row_order(table: pa.Table, cols: _Columns, p: Path) -> tuple[np.ndarray, np.ndarray]:
    """Row indices episode by episode (first-appearance order), by step or file order inside
    each; and each row's episode number (0, 1, ... in that order), in file order."""
    col = _column(table, cols.episode, p)
    if pa.types.is_dictionary(col.type):  # e.g. a pandas categorical: codes in its own order
        col = col.cast(col.type.value_type)
    ids = col.combine_chunks().dictionary_encode()  # codes in order of first appearance
    codes = ids.indices.to_numpy(zero_copy_only=False).astype(np.int64)
    if cols.step is None:
        return np.argsort(codes, kind="stable"), codes
    steps = _steps(table, cols.step, p)
    order = np.lexsort((steps, codes))
    c, s = codes[order], steps[order]
    twice = (c[1:] == c[:-1]) & (s[1:] == s[:-1])
    if twice.any():
        i = int(np.argmax(twice))
        label = ids.dictionary[int(c[i])].as_py()
        raise DataError(
            f"{p}: column '{cols.step}': step {s[i].item()!r} twice in episode {label!r} "
            f"(rows {int(order[i])} and {int(order[i + 1])})"
        )
    return order, codes


def _steps(table: pa.Table, col: str, p: Path) -> np.ndarray:
    arr = _column(table, col, p)
    if pa.types.is_timestamp(arr.type) or pa.types.is_duration(arr.type):
        arr = arr.cast(pa.int64())
    if not (pa.types.is_integer(arr.type) or pa.types.is_floating(arr.type)):
        raise DataError(
            f"{p}: column '{col}': type {arr.type}; a step is an integer, float or timestamp"
        )
    values = arr.to_numpy()
    if values.dtype.kind == "f" and not np.all(np.isfinite(values)):
        bad = ~np.isfinite(values)
        raise DataError(
            f"{p}: column '{col}': {int(bad.sum())} NaN/inf values (first at row "
            f"{int(np.argmax(bad))})"
        )
    return values


def _actions(
    table: pa.Table,
    names: list[str],
    p: Path,
    num_actions: int | None,
    discrete: bool | None,
    stored_n: int | None,
) -> tuple[np.ndarray, int]:
    """Actions in file order and num_actions (0: continuous); see the module docstring."""
    if num_actions is not None and discrete is False:
        raise DataError(f"{p}: act: num_actions={num_actions} given with discrete=False")
    values = [_values(table, col, p) for col in names]
    integral = len(values) == 1 and values[0].dtype.kind in "biu"
    if discrete is None:
        discrete = num_actions is not None or integral
    if not discrete:
        return np.column_stack(values).astype(np.float32), 0
    if len(names) != 1:
        raise DataError(
            f"{p}: act: discrete actions are one column of action indices, got {len(names)} "
            f"({', '.join(names)})"
        )
    indices = _indices(values[0], names[0], p)
    n = num_actions if num_actions is not None else stored_n or int(indices.max()) + 1
    if indices.max() >= n:
        i = int(np.argmax(indices >= n))
        raise DataError(
            f"{p}: column '{names[0]}': {int((indices >= n).sum())} action indices >= "
            f"num_actions {n} (first at row {i}: {indices[i]})"
        )
    return indices[:, None], int(n)


def _indices(values: np.ndarray, col: str, p: Path) -> np.ndarray:
    bad = (values < 0) | (values != np.round(values))
    if bad.any():
        i = int(np.argmax(bad))
        raise DataError(
            f"{p}: column '{col}': {int(bad.sum())} values are not action indices 0, 1, ... "
            f"(first at row {i}: {values[i].item()!r})"
        )
    return values.astype(np.int64)


def _transitions(
    table: pa.Table,
    cols: _Columns,
    p: Path,
    order: np.ndarray,
    codes: np.ndarray,
    actions: np.ndarray,
) -> dict[str, Any]:
    """The Dataset's columns (and metadata) in episode order, with ends and next obs."""
    out: dict[str, Any] = {
        "observations": _stack(table, cols.obs, p)[order],
        "actions": actions[order],
        "rewards": _values(table, cols.reward, p).astype(np.float32)[order],
    }
    if cols.behavior_log_prob:
        out[io.LOG_PROBS] = _log_probs(table, cols.behavior_log_prob, p, actions.dtype.kind)[order]
    terminals = _flags(table, cols.terminal, p)[order]
    timeouts = _flags(table, cols.timeout, p)[order]
    out["terminals"], out["timeouts"] = terminals, _ends(codes[order], terminals, timeouts)
    meta: dict[str, Any] = {"format": table_format(p), "source": str(p)}
    meta["table_columns"] = {k: v for k, v in asdict(cols).items() if v is not None}
    if cols.next_obs is None:
        out, dropped = io.derive_next_observations(out, p)
        meta |= {"next_observations": "derived", "dropped_transitions": dropped}
        if not len(out["rewards"]):
            raise DataError(
                f"{p}: no transitions left: no episode has a next observation for any row "
                "(every one is a single row that is not a terminal); give next_obs columns"
            )
    else:
        out["next_observations"] = _stack(table, cols.next_obs, p)[order]
        out["timeouts"], split = _split_unchained(out)
        meta |= {"next_observations": "columns", "split_episodes": split}
    return out | {"metadata": meta}


def _log_probs(table: pa.Table, col: str, p: Path, action_kind: str) -> np.ndarray:
    """log pi_b(a|s): NaN (null or NaN: not logged) or finite, and <= 0 for discrete actions
    (a probability is at most 1)."""
    arr = table.column(col)
    if not (pa.types.is_floating(arr.type) or pa.types.is_integer(arr.type)):
        raise DataError(f"{p}: column '{col}': type {arr.type} is not numeric")
    values = arr.cast(pa.float64()).fill_null(float("nan")).to_numpy()
    _check_floats(np.where(np.isnan(values), 0.0, values), col, p)  # inf, beyond float32
    if action_kind == "i" and np.any(values > 0):
        i = int(np.argmax(values > 0))
        raise DataError(
            f"{p}: column '{col}': {int((values > 0).sum())} values > 0 (first at row {i}: "
            f"{values[i]:g}); the log of a probability is <= 0"
        )
    return values


def _stack(table: pa.Table, names: list[str], p: Path) -> np.ndarray:
    return np.column_stack([_values(table, c, p) for c in names]).astype(np.float32)


def _ends(codes: np.ndarray, terminals: np.ndarray, timeouts: np.ndarray) -> np.ndarray:
    """Timeouts with every episode's last row that is not a terminal marked (but the table's
    very last row, where the Dataset ends an episode anyway, as the file says)."""
    last = np.r_[codes[1:] != codes[:-1], True]
    out = timeouts | (last & ~terminals)
    out[-1] = timeouts[-1]
    return out


def _split_unchained(cols: dict[str, np.ndarray]) -> tuple[np.ndarray, int]:
    """End an episode by a timeout wherever next_obs is not the next row's obs inside it."""
    timeouts = cols["timeouts"].copy()
    end = cols["terminals"] | timeouts
    end[-1] = True
    inside = np.flatnonzero(~end)
    obs, nxt = cols["observations"], cols["next_observations"]
    breaks = inside[np.any(nxt[inside] != obs[inside + 1], axis=1)]
    timeouts[breaks] = True
    return timeouts, int(breaks.size)


def _numbered(prefix: str, values: np.ndarray) -> dict[str, np.ndarray]:
    return {f"{prefix}_{j}": values[:, j] for j in range(values.shape[1])}
