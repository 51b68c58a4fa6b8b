"""Dataset validation: one-line errors naming the file, the field and the problem.

`validate` checks, in this order: every column is a numeric array of the right
dimensionality (observations, next_observations and actions 2-D (N, d); rewards, terminals
and timeouts 1-D); all columns have the same length; the dataset is not empty; observations
and next_observations have the same width; no NaN/inf anywhere (and no value beyond the
float32 range); terminals and timeouts hold only 0/1; the action bounds, when set, are
finite (act_dim,) vectors with low <= high and contain every action; the reference scores,
when set, are finite and distinct. Nothing is coerced silently: the one opt-in repair is
`clip_actions=True`, which clips actions into the bounds and records how many values it
changed in metadata["clipped_actions"]. Episodes of length one are legal.

Discrete data (`num_actions` n > 0): actions are one column of action indices; every value
must be an integer in 0..n-1 (an error names the first bad row; clipping does not apply) and
the dataset has no action bounds.

The result has float32 columns, bool terminals/timeouts and float32 bounds; discrete actions
are int64.
"""

from __future__ import annotations

import numpy as np

from offrl.data.dataset import Dataset
from offrl.errors import DataError

_TWO_D = {
    "observations": "(N, obs_dim)",
    "next_observations": "(N, obs_dim)",
    "actions": "(N, act_dim)",
}
_ONE_D = ("rewards", "terminals", "timeouts")
_ORDER = ("observations", "actions", "rewards", "next_observations", "terminals", "timeouts")


def validate(dataset: Dataset, source: str, clip_actions: bool = False) -> Dataset:
    """Check `dataset` and return it with canonical dtypes (possibly with clipped actions).

    `source` names where the data came from (a file path); it starts every error message.
    Raises DataError with a single line "<source>: field '<name>': <problem>".
    """
    src = " ".join(str(source).split())

    def fail(field: str, problem: str) -> DataError:
        return DataError(" ".join(f"{src}: field '{field}': {problem}".split()))

    raw: dict[str, np.ndarray] = {}
    for name in _ORDER:
        value = getattr(dataset, name)
        if value is None:
            raise fail(name, "missing")
        arr = np.asarray(value)
        if arr.dtype.kind not in "biuf":
            raise fail(name, f"dtype {arr.dtype} is not numeric")
        want = 2 if name in _TWO_D else 1
        if arr.ndim != want:
            shape = _TWO_D.get(name, "(N,)")
            hint = ""
            if name == "actions" and arr.ndim == 1 and not dataset.num_actions:
                hint = "; for discrete actions, give num_actions (the number of actions)"
            raise fail(name, f"expected {want}-D {shape}, got shape {arr.shape}{hint}")
        raw[name] = arr

    n = raw["observations"].shape[0]
    for name in _ORDER[1:]:
        if raw[name].shape[0] != n:
            raise fail(name, f"length {raw[name].shape[0]} != {n}, the length of 'observations'")
    if n == 0:
        raise fail("observations", "empty dataset (0 transitions)")
    width = raw["observations"].shape[1]
    if raw["next_observations"].shape[1] != width:
        raise fail(
            "next_observations",
            f"width {raw['next_observations'].shape[1]} != {width}, the width of 'observations'",
        )
    if width == 0:
        raise fail("observations", "zero-width observations (shape (N, 0))")
    if raw["actions"].shape[1] == 0:
        raise fail("actions", "zero-width actions (shape (N, 0))")

    num_actions = _num_actions(dataset.num_actions, fail)
    cols: dict[str, np.ndarray] = {}
    for name in ("observations", "actions", "rewards", "next_observations"):
        if name == "actions" and num_actions:
            cols[name] = _action_indices(raw[name], num_actions, fail)
        else:
            cols[name] = _finite_float32(raw[name], name, fail)
    for name in ("terminals", "timeouts"):
        cols[name] = _boolean(raw[name], name, fail)
    if num_actions:
        for name in ("action_low", "action_high"):
            if getattr(dataset, name) is not None:
                raise fail(name, f"discrete data (num_actions={num_actions}) has no action bounds")

    act_dim = cols["actions"].shape[1]
    bounds = {}
    for name in ("action_low", "action_high"):
        value = getattr(dataset, name)
        if value is None:
            bounds[name] = None
            continue
        arr = np.asarray(value)
        if arr.dtype.kind not in "biuf":
            raise fail(name, f"dtype {arr.dtype} is not numeric")
        if arr.shape != (act_dim,):
            raise fail(name, f"shape {arr.shape} does not match the actions' ({act_dim},)")
        bounds[name] = _finite_float32(arr, name, fail)
    low, high = bounds["action_low"], bounds["action_high"]
    if low is not None and high is not None and np.any(low > high):
        j = int(np.argmax(low > high))
        raise fail("action_low", f"low {low[j]:g} > high {high[j]:g} at column {j}")

    metadata = dataset.metadata
    acts = cols["actions"]
    below = acts < low if low is not None else np.zeros_like(acts, bool)
    above = acts > high if high is not None else np.zeros_like(acts, bool)
    outside = below | above
    count = int(outside.sum())
    if count:
        if not clip_actions:
            lo = low if low is not None else np.full(act_dim, -np.inf, np.float32)
            hi = high if high is not None else np.full(act_dim, np.inf, np.float32)
            excess = np.maximum(lo - acts, acts - hi)
            i, j = np.unravel_index(int(np.argmax(excess)), acts.shape)
            raise fail(
                "actions",
                f"{count} values outside the action bounds (worst {acts[i, j]:g} at index {i}, "
                f"column {j}, bounds [{lo[j]:g}, {hi[j]:g}]); "
                "pass --clip-actions (clip_actions=True) to clip them",
            )
        cols["actions"] = np.clip(acts, low, high).astype(np.float32)
        metadata = {**metadata, "clipped_actions": count}

    refs = {}
    for name in ("ref_min_score", "ref_max_score"):
        value = getattr(dataset, name)
        if value is None:
            refs[name] = None
            continue
        try:
            refs[name] = float(value)
        except (TypeError, ValueError):
            raise fail(name, f"not a number: {value!r}") from None
        if not np.isfinite(refs[name]):
            raise fail(name, f"not finite: {refs[name]}")
    if refs["ref_min_score"] is not None and refs["ref_min_score"] == refs["ref_max_score"]:
        raise fail("ref_max_score", "equals ref_min_score, so normalized scores are undefined")

    return dataset.replace(**cols, **bounds, **refs, metadata=metadata, num_actions=num_actions)


def _num_actions(value, fail) -> int:
    """0 (continuous) or the n of a Discrete action space."""
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < 0:
        raise fail("num_actions", f"expected a non-negative integer, got {value!r}")
    return int(value)


def _action_indices(arr: np.ndarray, n: int, fail) -> np.ndarray:
    """Discrete actions: one column of integers in 0..n-1, as int64."""
    if arr.shape[1] != 1:
        raise fail(
            "actions",
            f"discrete data (num_actions={n}) holds one column of action indices, "
            f"got shape {arr.shape}",
        )
    values = arr[:, 0]
    with np.errstate(invalid="ignore"):
        whole = np.isfinite(values) & (values == np.round(values))
    bad = ~whole | (values < 0) | (values >= n)
    if bad.any():
        i = int(np.argmax(bad))
        value = values[i].item()
        why = "not an integer" if not whole[i] else "negative" if value < 0 else f">= {n}"
        raise fail(
            "actions",
            f"{int(bad.sum())} values are not action indices 0..{n - 1} (first at index {i}: "
            f"{value!r}, {why}); --clip-actions does not apply to discrete actions",
        )
    return values.astype(np.int64)[:, None]


def _finite_float32(arr: np.ndarray, name: str, fail) -> np.ndarray:
    """`arr` as float32, refused where a value is NaN/inf or beyond float32's range. Data
    already float32 is returned as it is, not copied (a 1M x 600 column is 2.4 GB)."""
    if arr.dtype.kind == "f":
        _refuse_non_finite(arr, name, fail, "NaN/inf values")
    if arr.dtype == np.float32:
        return arr
    with np.errstate(over="ignore", invalid="ignore"):
        out = arr.astype(np.float32)
    _refuse_non_finite(out, name, fail, "values beyond the float32 range")
    return out


def _refuse_non_finite(arr: np.ndarray, name: str, fail, what: str, rows: int = 16_384) -> None:
    """DataError naming the count and the first place of non-finite values, checked in
    blocks of rows so that no full-size mask is made."""
    count, first = 0, None
    for start in range(0, max(len(arr), 1), rows):
        bad = ~np.isfinite(arr[start : start + rows])
        found = int(bad.sum())
        if found and first is None:
            first = _where(bad, offset=start)
        count += found
    if count:
        raise fail(name, f"{count} {what} (first at {first})")


def _boolean(arr: np.ndarray, name: str, fail) -> np.ndarray:
    if arr.dtype.kind == "b":
        return arr.astype(bool, copy=False)
    bad = ~((arr == 0) | (arr == 1))
    if bad.any():
        first = int(np.argmax(bad))
        value = arr[first].item()
        raise fail(
            name, f"{int(bad.sum())} values other than 0/1 (first at index {first}: {value!r})"
        )
    return arr.astype(bool)


def _where(mask: np.ndarray, offset: int = 0) -> str:
    flat = int(np.argmax(mask))
    if mask.ndim == 1:
        return f"index {flat + offset}"
    i, j = np.unravel_index(flat, mask.shape)[:2]
    return f"index {i + offset}, column {j}"
