"""Dataset readers and writers: Minari directories, D4RL-layout HDF5 files and .npz files.

Every reader is file I/O only: it returns a `Dataset` as stored (raising `DataError` for a
missing field or an unreadable file) and leaves the checks to `validate`. `read(path)` picks
the reader from what the path is and validates the result; use it unless you need the raw
columns. Every writer validates its input first (nothing invalid is written), writes to a
hidden temporary name in the target directory and renames it into place, and refuses to
replace an existing dataset unless `overwrite=True`.

Formats
-------
Minari (the layout `minari` 0.5.x writes and reads, hdf5 storage only). A dataset with id
  "<namespace>/<name>-v<N>" lives in <root>/<namespace>/<name>-v<N>/, where <root> is
  $MINARI_DATASETS_PATH (default ~/.minari/datasets)::

    <dataset dir>/data/metadata.json
    <dataset dir>/data/main_data.hdf5    one group episode_<i> per episode:
        observations (T+1, ...), actions (T, ...), rewards (T,), terminations (T,),
        truncations (T,), infos/ ; attrs id, total_steps

  `metadata.json` sits in `data/`, next to `main_data.hdf5`. Minari's loader needs
  `dataset_id`, `minari_version` (one minari supports), `total_episodes`, `total_steps`,
  `data_format` ("hdf5"), and either `observation_space` + `action_space` (spaces serialized
  as JSON strings) or an `env_spec` it can `gym.make`. Optional keys we read or write:
  `env_spec` / `eval_env_spec` (EnvSpec JSON; we take the env id from it), `ref_min_score`,
  `ref_max_score`, `jpeg_encoding`, `dataset_size`, `algorithm_name`, `description`,
  `author`; and our own `offrl` key (name, env id, Dataset.metadata). Transitions come from
  the shift inside each episode: next_observations[t] = observations[t + 1];
  terminations -> terminals, truncations -> timeouts. Box spaces of any shape are flattened
  to one row per step, Dict/Tuple observations are concatenated leaf by leaf (in the order
  of the serialized space), Discrete values become one column. JPEG-encoded images and text
  are not supported. A Discrete action space Discrete(n) makes the dataset discrete
  (num_actions = n, actions the indices 0..n-1); a Discrete space with start != 0 is refused
  rather than shifted, since the policy's actions would then differ from the environment's.
  A discrete dataset is written with a Discrete(n) action space and 1-D int64 actions, the
  way minari records a Discrete space.

D4RL (the flat HDF5 layout of d4rl's `get_dataset`): datasets `observations`, `actions`,
  `rewards`, `terminals`, `timeouts`, optional `next_observations`, optional `metadata/*`
  (attributes of the `metadata` group and scalar datasets under it; we store name, env_id,
  ref scores, action bounds, `num_actions` and a JSON copy of Dataset.metadata there as
  attributes; a `num_actions` attribute at the top level is read too). When
  `next_observations` is absent it is derived within each episode as observations[i + 1].
  A transition that ends an episode without a terminal has no successor and is dropped, as
  d4rl's `qlearning_dataset` does; unlike d4rl we then mark the transition before it as a
  timeout, so the episode still ends there and bootstraps from a real next observation.
  A terminal transition is kept (its reward matters) with next_observations[i] =
  observations[i] as a placeholder: a terminal never bootstraps, so the value is not used by
  the TD targets (d4rl uses the next episode's first observation there instead).

.npz: the same flat keys, plus optional `name`, `env_id` (0-d string arrays), `action_low`,
  `action_high`, `ref_min_score`, `ref_max_score`, `num_actions` and `metadata_json`. Read
  with allow_pickle=False.

Discrete data in the flat formats: `num_actions` (n > 0) marks it; `actions` may be (N, 1) or
(N,) integers. A flat file that does not store num_actions (e.g. a discrete D4RL-layout file
written elsewhere) is read as discrete when the caller passes `num_actions=n` to `read`.
The flat columns are checked as stored, before anything is derived from them: numeric,
observations/next_observations/actions 2-D (actions 1-D only when discrete), the others 1-D,
and every column one row per observation ("x.hdf5: field 'actions': 400 rows, but field
'observations' has 500").

Behaviour log-probabilities (optional): log pi_b(a_i | s_i) of each logged action, for
off-policy evaluation; `Dataset.behavior_log_probs`, (N,) float32 or None. Stored as
`infos/action_log_probs` (D4RL's name): a 1-D dataset in D4RL files, a key of that name in
.npz files, and per episode in Minari (`episode_<i>/infos/action_log_probs`, written with T
rows, one per action; T + 1 rows, as minari's DataCollector records infos with the reset's
first, are read as the last T). NaN marks a row without one (Dataset.concatenate of parts
with and without them; `Dataset.complete_log_probs` is then None); no value may be +-inf (a
logged action had positive probability), and none > 0 for discrete actions (a probability is
at most 1). In Minari, either every episode has the field or none.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from offrl.atomic import atomic_path
from offrl.data.dataset import COLUMNS, Dataset
from offrl.data.validate import validate
from offrl.errors import DataError

__all__ = [
    "ACCEPTED_FORMS",
    "LOG_PROBS_KEY",
    "MINARI_FORMAT_VERSION",
    "check_log_probs",
    "default_dataset_id",
    "derive_next_observations",
    "minari_root",
    "read",
    "read_d4rl",
    "read_minari",
    "read_npz",
    "validated",
    "write",
    "write_d4rl",
    "write_minari",
    "write_npz",
]

ACCEPTED_FORMS = (
    "a Minari dataset directory (holding data/main_data.hdf5), a Minari dataset id under "
    "$MINARI_DATASETS_PATH, a D4RL-layout .hdf5/.h5 file, or a .npz file"
)
# The minari_version we write into metadata.json: minari refuses versions it does not list
# in `minari.supported_dataset_versions`, and every 0.5.x release from 0.5.0 on lists this one
# only from 0.5.4; offrl's test extra pins minari>=0.5.4.
MINARI_FORMAT_VERSION = "0.5.4"
_HDF5_SUFFIXES = (".hdf5", ".h5")
_REQUIRED = ("observations", "actions", "rewards", "terminals", "timeouts")
_EPISODE_FIELDS = ("observations", "actions", "rewards", "terminations", "truncations")
_DATASET_ID_RE = re.compile(r"^(?:[-_\w][-_\w/]*[-_\w]+/)?[-_\w]+?-v\d+$")
# Keys of Dataset.metadata that describe where a dataset was read from; not written back.
_TRANSIENT_META = ("format", "source")
# The optional per-step column of behaviour log-probabilities, and its name in the files.
LOG_PROBS = "behavior_log_probs"
LOG_PROBS_KEY = "infos/action_log_probs"
# The dimensionality of each flat column as stored (actions may be 1-D when discrete).
_FLAT_NDIM = {
    "observations": 2,
    "next_observations": 2,
    "actions": 2,
    "rewards": 1,
    "terminals": 1,
    "timeouts": 1,
    LOG_PROBS: 1,
}


# --------------------------------------------------------------------------- dispatch


def read(
    path: str | os.PathLike, clip_actions: bool = False, num_actions: int | None = None
) -> Dataset:
    """Read and validate a dataset from a Minari directory, a .hdf5/.h5 file or a .npz file.

    A string that is not an existing path but looks like a Minari dataset id
    ("namespace/name-v0") is looked up under `minari_root()`. `num_actions` marks a flat
    file (D4RL, npz) that does not store it as discrete with that many actions.
    """
    p = Path(path)
    if not p.exists():
        if not _DATASET_ID_RE.match(str(path)):
            raise DataError(f"{path}: no such file or directory")
        p = minari_root() / str(path)
        if not p.is_dir():
            raise DataError(
                f"{path}: no such file or directory, nor a Minari dataset under {minari_root()}"
            )
    if p.name == "main_data.hdf5" and (p.parent / "metadata.json").is_file():
        p = p.parent
    if p.is_dir():
        if _minari_data_dir(p) is None and not (p / "data" / "metadata.json").is_file():
            raise DataError(
                f"{path}: directory is not a Minari dataset (no data/main_data.hdf5); "
                f"expected {ACCEPTED_FORMS}"
            )
        dataset = read_minari(p)
    elif p.suffix.lower() in _HDF5_SUFFIXES:
        dataset = read_d4rl(p, num_actions)
    elif p.suffix.lower() == ".npz":
        dataset = read_npz(p, num_actions)
    else:
        raise DataError(f"{path}: unrecognized dataset format; expected {ACCEPTED_FORMS}")
    return validated(dataset, str(path), clip_actions=clip_actions)


def validated(dataset: Dataset, source: str, clip_actions: bool = False) -> Dataset:
    """`validate`, and the behaviour log-probabilities checked and cast to float32."""
    ds = validate(dataset, source, clip_actions=clip_actions)
    values = ds.behavior_log_probs
    if values is None:
        return ds
    return ds.replace(**{LOG_PROBS: check_log_probs(values, len(ds), ds.discrete, source)})


def check_log_probs(values: Any, n: int, discrete: bool, src: str) -> np.ndarray:
    """Behaviour log-probabilities: n values, NaN (not logged) or finite (<= 0 when
    discrete), as float32."""
    arr = np.asarray(values)
    where = f"{src}: field '{LOG_PROBS_KEY}'"
    if arr.dtype.kind not in "biuf":
        raise DataError(f"{where}: dtype {arr.dtype} is not numeric")
    if arr.shape != (n,):
        raise DataError(f"{where}: expected shape ({n},), one per transition, got {arr.shape}")
    with np.errstate(over="ignore", invalid="ignore"):
        out = arr.astype(np.float32)
    bad = np.isinf(out)
    if bad.any():
        raise DataError(
            f"{where}: {int(bad.sum())} infinite values (first at index {int(np.argmax(bad))}); "
            "a logged action has a finite log-probability (NaN: not logged)"
        )
    if discrete and np.any(out > 0):
        i = int(np.argmax(out > 0))
        raise DataError(
            f"{where}: {int((out > 0).sum())} values > 0 (first at index {i}: {out[i]:g}); "
            "the log of a probability is <= 0"
        )
    return out


def write(
    dataset: Dataset,
    path: str | os.PathLike,
    overwrite: bool = False,
    dataset_id: str | None = None,
) -> Path:
    """Write by the path's form: .npz -> npz, .hdf5/.h5 -> D4RL layout, else a Minari
    dataset directory (see `write_minari`). Returns the written file or directory."""
    p = Path(path)
    if p.suffix.lower() == ".npz":
        return write_npz(dataset, p, overwrite=overwrite)
    if p.suffix.lower() in _HDF5_SUFFIXES:
        return write_d4rl(dataset, p, overwrite=overwrite)
    return write_minari(dataset, p, dataset_id=dataset_id, overwrite=overwrite)


def minari_root() -> Path:
    """The Minari datasets root: $MINARI_DATASETS_PATH, else ~/.minari/datasets."""
    env = os.environ.get("MINARI_DATASETS_PATH")
    return Path(env) if env else Path.home() / ".minari" / "datasets"


def default_dataset_id(name: str) -> str:
    """A Minari id for a dataset name: "offrl/<name>-v0", keeping a namespace or a -vN."""
    clean = re.sub(r"[^-\w/]+", "_", name.strip().strip("/")) or "dataset"
    clean = re.sub(r"/+", "/", clean)
    if "/" not in clean:
        clean = f"offrl/{clean}"
    if not re.search(r"-v\d+$", clean):
        clean = f"{clean}-v0"
    return clean


# --------------------------------------------------------------------------- Minari


def read_minari(path: str | os.PathLike) -> Dataset:
    """Read a Minari dataset directory (the one holding data/), or its data/ directory."""
    root = Path(path)
    data_dir = _minari_data_dir(root)
    meta_file = (data_dir or root / "data") / "metadata.json"
    if not meta_file.is_file():
        raise DataError(f"{meta_file}: missing; a Minari dataset keeps its metadata.json in data/")
    try:
        meta = json.loads(meta_file.read_text())
    except (OSError, ValueError) as e:
        raise DataError(f"{meta_file}: not readable as JSON ({_one_line(e)})") from None
    if not isinstance(meta, dict):
        raise DataError(f"{meta_file}: expected a JSON object")
    fmt = meta.get("data_format", "hdf5")
    if fmt != "hdf5" or data_dir is None:
        raise DataError(
            f"{meta_file}: field 'data_format': {fmt!r} storage is not supported "
            "(only hdf5, with data/main_data.hdf5)"
        )
    obs_space = _space_dict(meta, "observation_space", meta_file)
    act_space = _space_dict(meta, "action_space", meta_file)
    num_actions = _discrete_actions(act_space, meta_file)

    h5_path = data_dir / "main_data.hdf5"
    cols: dict[str, list[np.ndarray]] = {c: [] for c in COLUMNS if c not in _OBS_COLUMNS}
    log_probs: list[np.ndarray | None] = []
    with _open_h5(h5_path) as f:
        names = _episode_names(f, meta, h5_path)
        observations = _EpisodeRows(sum(_steps_hint(f[ep]) for ep in names))
        for ep in names:
            group = f[ep]
            if not isinstance(group, h5py.Group):
                raise DataError(f"{h5_path}: {ep}: expected a group, found a dataset")
            for key in _EPISODE_FIELDS:
                if key not in group:
                    raise DataError(f"{h5_path}: {ep}: field '{key}': missing")
            src = f"{h5_path}: {ep}"
            obs = _read_space(group["observations"], obs_space, f"{src}: field 'observations'")
            act = _read_space(group["actions"], act_space, f"{src}: field 'actions'")
            rew = _read_1d(group["rewards"], f"{src}: field 'rewards'")
            term = _read_1d(group["terminations"], f"{src}: field 'terminations'")
            trunc = _read_1d(group["truncations"], f"{src}: field 'truncations'")
            steps = act.shape[0]
            if obs.shape[0] != steps + 1:
                raise DataError(
                    f"{src}: field 'observations': {obs.shape[0]} rows, expected {steps + 1} "
                    f"(one more than the {steps} actions)"
                )
            for key, arr in (("rewards", rew), ("terminations", term), ("truncations", trunc)):
                if arr.shape[0] != steps:
                    raise DataError(
                        f"{src}: field '{key}': {arr.shape[0]} rows, expected {steps} "
                        "(one per action)"
                    )
            observations.add(obs, f"{src}: field 'observations'")
            cols["actions"].append(act)
            cols["rewards"].append(rew)
            cols["terminals"].append(term)
            cols["timeouts"].append(trunc)
            log_probs.append(_episode_log_probs(group, steps, src))
    if not names:
        raise DataError(f"{h5_path}: no episodes (expected groups episode_0, episode_1, ...)")
    arrays = {c: np.concatenate(v) for c, v in cols.items()} | observations.columns()
    arrays[LOG_PROBS] = _joined_log_probs(log_probs, names, h5_path)

    offrl_meta = meta.get("offrl") if isinstance(meta.get("offrl"), dict) else {}
    low, high = _space_bounds(act_space)
    dataset_id = str(meta.get("dataset_id", root.name))
    metadata: dict[str, Any] = dict(offrl_meta.get("metadata") or {})
    for key in ("dataset_id", "minari_version", "algorithm_name", "description", "author"):
        if key in meta:
            metadata[key] = meta[key]
    if obs_space is not None and obs_space.get("type") in ("Dict", "Tuple"):
        metadata["observation_layout"] = _space_layout(obs_space)
    metadata |= {"format": "minari", "source": str(root)}
    return Dataset(
        **arrays,
        name=str(offrl_meta.get("name") or dataset_id),
        env_id=_env_id(meta) or offrl_meta.get("env_id"),
        action_low=low,
        action_high=high,
        ref_min_score=_opt_float(meta.get("ref_min_score"), f"{meta_file}: field 'ref_min_score'"),
        ref_max_score=_opt_float(meta.get("ref_max_score"), f"{meta_file}: field 'ref_max_score'"),
        metadata=metadata,
        num_actions=num_actions,
    )


_OBS_COLUMNS = ("observations", "next_observations")


def _steps_hint(group) -> int:
    """An episode's transitions as its rewards' length says, without reading them (0 where
    that is not a 1-D dataset: the episode's own checks then report it)."""
    rewards = group.get("rewards") if isinstance(group, h5py.Group) else None
    return int(rewards.shape[0]) if isinstance(rewards, h5py.Dataset) and rewards.ndim else 0


class _EpisodeRows:
    """observations and next_observations of a Minari file, written episode by episode into
    arrays of the final size (issue 20: lists of episodes then np.concatenate held every
    observation twice)."""

    def __init__(self, total: int):
        self.total, self.at = total, 0
        self.obs: np.ndarray | None = None
        self.next: np.ndarray | None = None

    def add(self, episode_obs: np.ndarray, src: str) -> None:
        """An episode's T + 1 observations: rows 0..T-1 and 1..T."""
        steps = episode_obs.shape[0] - 1
        if self.obs is None:
            shape = (self.total, *episode_obs.shape[1:])
            self.obs = np.empty(shape, episode_obs.dtype)
            self.next = np.empty(shape, episode_obs.dtype)
        if episode_obs.shape[1:] != self.obs.shape[1:]:
            raise DataError(
                f"{src}: shape {episode_obs.shape[1:]} per row, the first episode's is "
                f"{self.obs.shape[1:]}"
            )
        if self.at + steps > self.total:  # the rewards' lengths were checked: cannot happen
            raise DataError(f"{src}: more rows than the episodes' rewards announce")
        if episode_obs.dtype != self.obs.dtype:  # as np.concatenate would: a common dtype
            common = np.result_type(self.obs.dtype, episode_obs.dtype)
            self.obs, self.next = self.obs.astype(common), self.next.astype(common)
        self.obs[self.at : self.at + steps] = episode_obs[:-1]
        self.next[self.at : self.at + steps] = episode_obs[1:]
        self.at += steps

    def columns(self) -> dict[str, np.ndarray]:
        return {"observations": self.obs[: self.at], "next_observations": self.next[: self.at]}


def write_minari(
    dataset: Dataset,
    path: str | os.PathLike,
    dataset_id: str | None = None,
    overwrite: bool = False,
) -> Path:
    """Write `dataset` as a Minari dataset directory `path` (path/data/...) with id `dataset_id`.

    `minari.load_dataset(dataset_id)` finds it when path is <root>/<dataset_id> and
    MINARI_DATASETS_PATH=<root>; `read(path)` reads it wherever it is. The default id is
    `default_dataset_id(dataset.name)` ("offrl/<name>-v0"). Minari keeps T+1 observations
    per episode, so next_observations[i] must equal observations[i + 1] inside every
    episode (exactly); a dataset whose transitions do not chain is refused. An unbounded
    or unknown action space is written as Box(-inf, inf) and read back as no bounds.
    Returns the dataset directory.
    """
    dataset_id = dataset_id or default_dataset_id(dataset.name)
    if not _DATASET_ID_RE.match(dataset_id):
        raise DataError(
            f"{dataset_id}: not a Minari dataset id; expected (namespace/)name-v<N> using "
            "letters, digits, '-' and '_' (a namespace has 2 or more characters)"
        )
    target = Path(path)
    ds = validated(dataset, str(target))
    _check_chained(ds, str(target))
    if target.exists() and not overwrite:
        raise DataError(f"{target}: already exists; pass overwrite=True to replace it")

    starts, ends = ds.episode_starts, ds.episode_ends
    log_probs = ds.behavior_log_probs
    meta: dict[str, Any] = {
        "dataset_id": dataset_id,
        "minari_version": MINARI_FORMAT_VERSION,
        "total_episodes": int(len(starts)),
        "total_steps": len(ds),
        "data_format": "hdf5",
        "jpeg_encoding": False,
        "observation_space": _box_json(np.full(ds.obs_dim, -np.inf), np.full(ds.obs_dim, np.inf)),
        "action_space": _action_space_json(ds),
        "algorithm_name": str(ds.metadata.get("algorithm_name", "offrl")),
        "description": f"Written by offrl from dataset {ds.name!r}.",
        "offrl": {
            "name": ds.name,
            "env_id": ds.env_id,
            "metadata": _storable_metadata(ds.metadata),
        },
    }
    if ds.env_id:
        meta["env_spec"] = _env_spec_json(ds.env_id)
    if ds.ref_min_score is not None:
        meta["ref_min_score"] = float(ds.ref_min_score)
    if ds.ref_max_score is not None:
        meta["ref_max_score"] = float(ds.ref_max_score)

    target.parent.mkdir(parents=True, exist_ok=True)
    _write_namespace_metadata(target, dataset_id)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent))
    try:
        data_dir = tmp / "data"
        data_dir.mkdir()
        with h5py.File(data_dir / "main_data.hdf5", "w", track_order=True) as f:
            for i, (s, e) in enumerate(zip(starts, ends, strict=True)):
                g = f.create_group(f"episode_{i}")
                g.attrs["id"] = i
                g.attrs["total_steps"] = int(e - s + 1)
                obs = np.concatenate([ds.observations[s : e + 1], ds.next_observations[e : e + 1]])
                g.create_dataset("observations", data=obs)
                actions = ds.actions[s : e + 1]
                # minari records a Discrete action as a scalar per step: a 1-D column.
                g.create_dataset("actions", data=actions[:, 0] if ds.discrete else actions)
                g.create_dataset("rewards", data=ds.rewards[s : e + 1])
                g.create_dataset("terminations", data=ds.terminals[s : e + 1])
                g.create_dataset("truncations", data=ds.timeouts[s : e + 1])
                infos = g.create_group("infos")
                if log_probs is not None:
                    infos.create_dataset("action_log_probs", data=log_probs[s : e + 1])
        meta["dataset_size"] = round((data_dir / "main_data.hdf5").stat().st_size / 1e6, 1)
        (data_dir / "metadata.json").write_text(json.dumps(meta))
        _replace_dir(tmp, target, overwrite)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return target


# --------------------------------------------------------------------------- D4RL


def read_d4rl(path: str | os.PathLike, num_actions: int | None = None) -> Dataset:
    """Read a D4RL-layout HDF5 file (flat datasets observations, actions, ...); see `read`
    for `num_actions`."""
    p = Path(path)
    with _open_h5(p) as f:
        for key in _REQUIRED:
            if key not in f:
                raise DataError(f"{p}: field '{key}': missing")
            if not isinstance(f[key], h5py.Dataset):
                raise DataError(f"{p}: field '{key}': expected a dataset, found a group")
        cols = {key: f[key][()] for key in _REQUIRED}
        if "next_observations" in f:
            cols["next_observations"] = f["next_observations"][()]
        if LOG_PROBS_KEY in f:
            node = f[LOG_PROBS_KEY]
            if not isinstance(node, h5py.Dataset):
                raise DataError(f"{p}: field '{LOG_PROBS_KEY}': expected a dataset, found a group")
            cols[LOG_PROBS] = node[()]
        stored = dict(f.attrs)
        if isinstance(f.get("metadata"), h5py.Group):
            group = f["metadata"]
            stored |= dict(group.attrs)
            for key, node in group.items():
                if isinstance(node, h5py.Dataset) and node.shape == ():
                    stored.setdefault(key, node[()])
    stored = {k: _plain(v) for k, v in stored.items()}
    return _from_flat(cols, stored, p, "d4rl", num_actions)


def write_d4rl(dataset: Dataset, path: str | os.PathLike, overwrite: bool = False) -> Path:
    """Write the D4RL flat layout, next_observations included, metadata as metadata/ attrs."""
    p = Path(path)
    ds = validated(dataset, str(p))
    with _atomic_file(p, overwrite) as tmp, h5py.File(tmp, "w") as f:
        for key in COLUMNS:
            f.create_dataset(key, data=getattr(ds, key))
        if ds.behavior_log_probs is not None:
            f.create_dataset(LOG_PROBS_KEY, data=ds.behavior_log_probs)
        attrs = f.create_group("metadata").attrs
        for key, value in _scalar_fields(ds).items():
            attrs[key] = value
    return p


# --------------------------------------------------------------------------- npz


def read_npz(path: str | os.PathLike, num_actions: int | None = None) -> Dataset:
    """Read a .npz holding the flat columns and optional name/env_id/bounds/ref scores/
    num_actions; see `read` for `num_actions`."""
    p = Path(path)
    try:
        npz = np.load(p, allow_pickle=False)
    except (OSError, ValueError) as e:
        raise DataError(f"{p}: not a readable .npz file ({_one_line(e)})") from None
    if not isinstance(npz, np.lib.npyio.NpzFile):
        raise DataError(f"{p}: a single .npy array, not a .npz archive of named arrays")
    with npz:
        cols: dict[str, np.ndarray] = {}
        stored: dict[str, Any] = {}
        for key in (*_REQUIRED, "next_observations", LOG_PROBS_KEY, *_SCALAR_KEYS):
            if key not in npz.files:
                if key in _REQUIRED:
                    raise DataError(f"{p}: field '{key}': missing")
                continue
            try:
                value = npz[key]
            except ValueError as e:  # object arrays need pickle, which we never allow
                raise DataError(f"{p}: field '{key}': {_one_line(e)}") from None
            if key in COLUMNS:
                cols[key] = value
            elif key == LOG_PROBS_KEY:
                cols[LOG_PROBS] = value
            else:
                stored[key] = value.tolist() if value.ndim else value.item()
    return _from_flat(cols, stored, p, "npz", num_actions)


def write_npz(dataset: Dataset, path: str | os.PathLike, overwrite: bool = False) -> Path:
    """Write the flat columns and the scalar fields as named arrays (uncompressed)."""
    p = Path(path)
    ds = validated(dataset, str(p))
    arrays = {key: getattr(ds, key) for key in COLUMNS}
    if ds.behavior_log_probs is not None:
        arrays[LOG_PROBS_KEY] = ds.behavior_log_probs
    arrays |= {k: np.asarray(v) for k, v in _scalar_fields(ds).items()}
    with _atomic_file(p, overwrite) as tmp, open(tmp, "wb") as fh:
        np.savez(fh, **arrays)
    return p


# --------------------------------------------------------------------------- helpers

_SCALAR_KEYS = (
    "name",
    "env_id",
    "action_low",
    "action_high",
    "ref_min_score",
    "ref_max_score",
    "num_actions",
    "metadata_json",
)


def _scalar_fields(ds: Dataset) -> dict[str, Any]:
    """The non-column fields in the form the flat formats store them."""
    out: dict[str, Any] = {
        "name": ds.name,
        "metadata_json": json.dumps(_storable_metadata(ds.metadata)),
    }
    if ds.env_id is not None:
        out["env_id"] = ds.env_id
    for key in ("action_low", "action_high"):
        if getattr(ds, key) is not None:
            out[key] = np.asarray(getattr(ds, key), np.float32)
    for key in ("ref_min_score", "ref_max_score"):
        if getattr(ds, key) is not None:
            out[key] = float(getattr(ds, key))
    if ds.discrete:
        out["num_actions"] = ds.num_actions
    return out


def _from_flat(
    cols: dict, stored: dict, p: Path, fmt: str, num_actions: int | None = None
) -> Dataset:
    """Build a Dataset from flat columns and stored scalars (D4RL and npz)."""
    metadata: dict[str, Any] = {}
    raw_meta = stored.pop("metadata_json", None) or stored.pop("offrl_metadata", None)
    if raw_meta:
        try:
            metadata = dict(json.loads(raw_meta))
        except (TypeError, ValueError):
            raise DataError(f"{p}: field 'metadata_json': not a JSON object") from None
    known = {"name", "env_id", "action_low", "action_high", "ref_min_score", "ref_max_score"}
    known.add("num_actions")
    n = _flat_num_actions(stored.get("num_actions"), num_actions, p)
    _check_flat(cols, p, discrete=n > 0)
    actions = np.asarray(cols["actions"])
    if n and actions.ndim == 1:  # discrete actions as a flat column of indices
        cols = cols | {"actions": actions[:, None]}
    for key, value in stored.items():  # d4rl's own metadata/* entries (algorithm, ...)
        if key not in known:
            metadata.setdefault(key, value)
    if "next_observations" not in cols:
        cols, dropped = derive_next_observations(cols, p)
        metadata |= {"next_observations": "derived", "dropped_transitions": dropped}
    metadata |= {"format": fmt, "source": str(p)}
    bounds = {}
    for key in ("action_low", "action_high"):
        value = stored.get(key)
        bounds[key] = None if value is None else np.atleast_1d(np.asarray(value))
    log_probs = cols.pop(LOG_PROBS, None)
    return Dataset(
        **cols,
        behavior_log_probs=log_probs,
        name=str(stored.get("name") or p.stem),
        env_id=str(stored["env_id"]) if stored.get("env_id") else None,
        ref_min_score=_opt_float(stored.get("ref_min_score"), f"{p}: field 'ref_min_score'"),
        ref_max_score=_opt_float(stored.get("ref_max_score"), f"{p}: field 'ref_max_score'"),
        metadata=metadata,
        num_actions=n,
        **bounds,
    )


def _check_flat(cols: dict, p: Path, discrete: bool) -> None:
    """Every flat column numeric, of its dimensionality and with one row per transition, as
    stored (before next observations are derived, which drops rows)."""
    for key, value in cols.items():
        arr, name = np.asarray(value), _flat_name(key)
        if arr.dtype.kind not in "biuf":
            raise DataError(f"{p}: field '{name}': dtype {arr.dtype} is not numeric")
        want = 1 if key == "actions" and discrete and arr.ndim == 1 else _FLAT_NDIM[key]
        if arr.ndim != want:
            raise DataError(f"{p}: field '{name}': {_ndim_problem(key, want, arr.shape)}")
    n = np.asarray(cols["observations"]).shape[0]
    for key, value in cols.items():
        rows = np.asarray(value).shape[0]
        if rows != n:
            raise DataError(
                f"{p}: field '{_flat_name(key)}': {rows} rows, but field 'observations' has {n} "
                "(every column has one row per transition)"
            )


def _flat_name(key: str) -> str:
    return LOG_PROBS_KEY if key == LOG_PROBS else key


def _ndim_problem(key: str, want: int, shape: tuple) -> str:
    layout = {"observations": "(N, obs_dim)", "next_observations": "(N, obs_dim)"}
    layout["actions"] = "(N, act_dim)"
    problem = f"expected {want}-D {layout.get(key, '(N,)')}, got shape {shape}"
    if key == "actions" and len(shape) == 1:
        problem += "; for discrete actions, give num_actions (the number of actions)"
    return problem


def _flat_num_actions(stored: Any, given: int | None, p: Path) -> int:
    """num_actions of a flat file: the stored value, else the caller's, else 0 (continuous)."""
    value = stored if stored is not None else given
    if value is None:
        return 0
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        or not float(value).is_integer()
    ):
        raise DataError(f"{p}: field 'num_actions': not an integer: {value!r}")
    if given is not None and int(given) != int(value):
        raise DataError(
            f"{p}: field 'num_actions': the file stores {int(value)}, but {given} was given"
        )
    return int(value)


def derive_next_observations(cols: dict, p: Path) -> tuple[dict, int]:
    """next_observations[i] = observations[i + 1] inside episodes; see the module docstring."""
    obs = np.asarray(cols["observations"])
    terminals, timeouts = np.asarray(cols["terminals"]), np.asarray(cols["timeouts"])
    n = obs.shape[0] if obs.ndim else 0
    if n == 0 or not all(_flags_ok(a, n) for a in (terminals, timeouts)):
        # Leave the problem for validate to report with the usual message.
        return cols | {"next_observations": obs.copy()}, 0
    terminals, timeouts = terminals.astype(bool), timeouts.astype(bool)
    end = terminals | timeouts
    end[-1] = True
    drop = end & ~terminals
    nxt = np.empty_like(obs)
    nxt[:-1] = obs[1:]
    nxt[terminals] = obs[terminals]  # placeholder: a terminal never bootstraps
    # The transition before a dropped one now ends its episode by a time limit, and its
    # next observation (the dropped one's observation) is real.
    before = np.flatnonzero(drop) - 1
    before = before[(before >= 0) & ~end[np.maximum(before, 0)]]
    timeouts[before] = True
    keep = ~drop
    out = {key: np.asarray(value)[keep] for key, value in cols.items()}
    out["timeouts"] = timeouts[keep]
    out["next_observations"] = nxt[keep]
    return out, int(drop.sum())


def _flags_ok(flags: np.ndarray, n: int) -> bool:
    """A 1-D 0/1 column of length n (anything else is validate's to report)."""
    if flags.shape != (n,) or flags.dtype.kind not in "biuf":
        return False
    return flags.dtype.kind == "b" or bool(np.all((flags == 0) | (flags == 1)))


def _check_chained(ds: Dataset, source: str) -> None:
    inside = np.ones(len(ds), bool)
    inside[ds.episode_ends] = False
    idx = np.flatnonzero(inside)
    bad = np.any(ds.next_observations[idx] != ds.observations[idx + 1], axis=1)
    if bad.any():
        raise DataError(
            f"{source}: field 'next_observations': {int(bad.sum())} transitions inside an "
            f"episode whose next observation is not the following observation (first at "
            f"index {int(idx[bad][0])}); Minari stores one observation sequence per episode"
        )


def _minari_data_dir(p: Path) -> Path | None:
    """The directory holding main_data.hdf5 for a Minari dataset dir (or its data/ dir)."""
    if (p / "data" / "main_data.hdf5").is_file():
        return p / "data"
    if (p / "main_data.hdf5").is_file() and (p / "metadata.json").is_file():
        return p
    return None


def _episode_names(f: h5py.File, meta: dict, h5_path: Path) -> list[str]:
    total = meta.get("total_episodes")
    if isinstance(total, int):
        names = [f"episode_{i}" for i in range(total)]
        for name in names:
            if name not in f:
                raise DataError(f"{h5_path}: {name}: missing (metadata.json says {total} episodes)")
        return names
    found = [k for k in f if re.fullmatch(r"episode_\d+", k)]
    return sorted(found, key=lambda k: int(k.split("_")[1]))


def _space_dict(meta: dict, key: str, meta_file: Path) -> dict | None:
    raw = meta.get(key)
    if raw is None:
        return None
    try:
        space = json.loads(raw) if isinstance(raw, str) else raw
    except ValueError:
        raise DataError(f"{meta_file}: field '{key}': not a serialized space") from None
    if not isinstance(space, dict) or "type" not in space:
        raise DataError(f"{meta_file}: field '{key}': not a serialized space")
    return space


def _read_space(node: h5py.Group | h5py.Dataset, space: dict | None, src: str) -> np.ndarray:
    """One row per step: Box flattened, Discrete as one column, Dict/Tuple concatenated."""
    if isinstance(node, h5py.Group):
        kind = (space or {}).get("type")
        subspaces = (space or {}).get("subspaces")
        if kind == "Tuple" or (kind is None and "_index_0" in node):
            keys = [f"_index_{i}" for i in range(len(node))]
            subs = list(subspaces) if isinstance(subspaces, list) else [None] * len(keys)
        else:
            keys = list(subspaces) if isinstance(subspaces, dict) else sorted(node)
            subs = (
                [subspaces[k] for k in keys] if isinstance(subspaces, dict) else [None] * len(keys)
            )
        parts = []
        for key, sub in zip(keys, subs, strict=True):
            if key not in node:
                raise DataError(f"{src}: missing sub-field '{key}'")
            parts.append(_read_space(node[key], sub, f"{src}/{key}"))
        if not parts:
            raise DataError(f"{src}: empty group")
        rows = {part.shape[0] for part in parts}
        if len(rows) != 1:
            raise DataError(f"{src}: sub-fields have different lengths {sorted(rows)}")
        return np.concatenate(parts, axis=1)
    arr = node[()]
    if arr.dtype.kind not in "biuf":
        raise DataError(
            f"{src}: dtype {arr.dtype} is not supported (JPEG-encoded images and text are not)"
        )
    if arr.ndim == 0:
        raise DataError(f"{src}: a scalar, expected one row per step")
    return arr.reshape(arr.shape[0], -1)


def _read_1d(node: h5py.Group | h5py.Dataset, src: str) -> np.ndarray:
    if not isinstance(node, h5py.Dataset):
        raise DataError(f"{src}: expected a dataset, found a group")
    arr = node[()]
    if arr.ndim != 1:
        raise DataError(f"{src}: expected 1-D, got shape {arr.shape}")
    return arr


def _episode_log_probs(group: h5py.Group, steps: int, src: str) -> np.ndarray | None:
    """An episode's infos/action_log_probs: T rows, or minari's T + 1 (the reset's first)."""
    infos = group.get("infos")
    if not isinstance(infos, h5py.Group) or "action_log_probs" not in infos:
        return None
    where = f"{src}: field '{LOG_PROBS_KEY}'"
    arr = _read_1d(infos["action_log_probs"], where)
    if arr.shape[0] == steps + 1:
        return arr[1:]
    if arr.shape[0] != steps:
        raise DataError(
            f"{where}: {arr.shape[0]} rows, expected {steps} (one per action) or {steps + 1} "
            "(minari's infos, the reset's first)"
        )
    return arr


def _joined_log_probs(parts: list[np.ndarray | None], names: list[str], h5: Path) -> Any:
    """The episodes' log-probabilities as one column; every episode has them, or none."""
    missing = [name for name, part in zip(names, parts) if part is None]
    if len(missing) == len(parts):
        return None
    if missing:
        raise DataError(
            f"{h5}: {missing[0]}: field '{LOG_PROBS_KEY}': missing, while "
            f"{len(parts) - len(missing)} other episodes have it (every episode has it, or none)"
        )
    return np.concatenate(parts)


def _space_layout(space: dict) -> list:
    kind = space.get("type")
    subs = space.get("subspaces")
    if kind == "Dict" and isinstance(subs, dict):
        return [[k, _space_layout(v)] for k, v in subs.items()]
    if kind == "Tuple" and isinstance(subs, list):
        return [_space_layout(v) for v in subs]
    return space.get("shape", [1])


def _discrete_actions(space: dict | None, meta_file: Path) -> int:
    """n of a serialized Discrete(n) action space; 0 for any other space."""
    if not space or space.get("type") != "Discrete":
        return 0
    try:
        start, n = int(space.get("start", 0)), int(space["n"])
    except (KeyError, TypeError, ValueError):
        raise DataError(f"{meta_file}: field 'action_space': a Discrete space needs n") from None
    if start != 0:
        raise DataError(
            f"{meta_file}: field 'action_space': Discrete({n}, start={start}) is not supported; "
            "offrl stores discrete actions as indices 0..n-1 (start 0)"
        )
    return n


def _action_space_json(ds: Dataset) -> str:
    """Discrete(n) for discrete data, else a Box of the bounds (unbounded when unknown)."""
    if ds.discrete:
        return json.dumps({"type": "Discrete", "dtype": "int64", "start": 0, "n": ds.num_actions})
    low = ds.action_low if ds.action_low is not None else np.full(ds.act_dim, -np.inf)
    high = ds.action_high if ds.action_high is not None else np.full(ds.act_dim, np.inf)
    return _box_json(low, high)


def _space_bounds(space: dict | None) -> tuple[np.ndarray | None, np.ndarray | None]:
    """Action bounds of a serialized Box (None if any is infinite); none for other spaces
    (a Discrete space is described by num_actions instead)."""
    if not space:
        return None, None
    if space.get("type") == "Box":
        try:
            low = np.asarray(space["low"], np.float64).reshape(-1)
            high = np.asarray(space["high"], np.float64).reshape(-1)
        except (KeyError, TypeError, ValueError):
            return None, None
        if np.all(np.isfinite(low)) and np.all(np.isfinite(high)):
            return low, high
        return None, None
    return None, None


def _env_id(meta: dict) -> str | None:
    for key in ("env_spec", "eval_env_spec"):
        raw = meta.get(key)
        if not raw:
            continue
        try:
            spec = json.loads(raw) if isinstance(raw, str) else raw
        except ValueError:
            continue
        if isinstance(spec, dict) and spec.get("id"):
            return str(spec["id"])
    return None


def _env_spec_json(env_id: str) -> str:
    """EnvSpec JSON for env_id: gymnasium's registered spec, else one naming only the id."""
    import gymnasium as gym
    from gymnasium.envs.registration import EnvSpec

    try:
        return gym.spec(env_id).to_json()
    except Exception:  # not registered here, or kwargs that do not serialize
        return EnvSpec(id=env_id).to_json()


def _box_json(low: np.ndarray, high: np.ndarray) -> str:
    """A Box space serialized the way minari.serialization.serialize_space writes it."""
    low = np.asarray(low, np.float32).reshape(-1)
    high = np.asarray(high, np.float32).reshape(-1)
    return json.dumps(
        {
            "type": "Box",
            "dtype": "float32",
            "shape": [int(low.shape[0])],
            "low": low.tolist(),
            "high": high.tolist(),
        }
    )


def _write_namespace_metadata(target: Path, dataset_id: str) -> None:
    """When target is <root>/<dataset_id>, mark its namespace directories the way
    minari.create_namespace does (namespace_metadata.json), unless already marked."""
    id_parts = tuple(dataset_id.split("/"))
    if len(id_parts) < 2 or target.parts[-len(id_parts) :] != id_parts:
        return
    here = target.parent
    for _ in id_parts[:-1]:
        marker = here / "namespace_metadata.json"
        if not marker.exists():
            marker.write_text("{}")
        here = here.parent


def _replace_dir(tmp: Path, target: Path, overwrite: bool) -> None:
    if not target.exists():
        try:
            os.rename(tmp, target)
        except OSError as e:
            raise DataError(f"{target}: cannot create ({_one_line(e)})") from None
        return
    if not overwrite:
        raise DataError(f"{target}: already exists; pass overwrite=True to replace it")
    trash = Path(tempfile.mkdtemp(prefix=f".{target.name}.old.", dir=target.parent))
    os.rename(target, trash / target.name)
    try:
        os.rename(tmp, target)
    except OSError as e:
        os.rename(trash / target.name, target)  # put the old dataset back
        shutil.rmtree(trash, ignore_errors=True)
        raise DataError(f"{target}: cannot replace ({_one_line(e)})") from None
    shutil.rmtree(trash, ignore_errors=True)


@contextlib.contextmanager
def _atomic_file(final: Path, overwrite: bool) -> Iterator[Path]:
    """`atomic_path`, after refusing to replace an existing dataset unless asked."""
    if final.is_dir():
        raise DataError(f"{final}: is a directory")
    if final.exists() and not overwrite:
        raise DataError(f"{final}: already exists; pass overwrite=True to replace it")
    with atomic_path(final) as tmp:
        yield tmp


@contextlib.contextmanager
def _open_h5(p: Path) -> Iterator[h5py.File]:
    if not p.is_file():
        raise DataError(f"{p}: no such file")
    try:
        f = h5py.File(p, "r")
    except OSError as e:
        raise DataError(f"{p}: not a readable HDF5 file ({_one_line(e)})") from None
    with f:
        yield f


def _storable_metadata(meta: dict) -> dict:
    """Dataset.metadata as JSON-safe values, without the where-was-it-read-from keys."""
    keep = {k: v for k, v in meta.items() if k not in _TRANSIENT_META}
    return json.loads(json.dumps(keep, default=_json_default))


def _json_default(value: Any) -> Any:
    if isinstance(value, np.generic | np.ndarray):
        return value.tolist()
    if isinstance(value, set | tuple):
        return list(value)
    return str(value)


def _plain(value: Any) -> Any:
    """HDF5 attribute values as plain Python (str for bytes, lists for arrays)."""
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    if isinstance(value, np.ndarray):
        if value.dtype.kind in "SO":
            return [_plain(v) for v in value.tolist()]
        return value.tolist() if value.ndim else value.item()
    if isinstance(value, np.generic):
        return value.item()
    return value


def _opt_float(value: Any, src: str) -> float | None:
    if value is None:
        return None
    try:
        return float(value)
    except (TypeError, ValueError):
        raise DataError(f"{src}: not a number: {value!r}") from None


def _one_line(e: BaseException) -> str:
    return " ".join(str(e).split())
