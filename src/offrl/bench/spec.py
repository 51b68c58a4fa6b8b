"""Sweep specifications: the YAML file `offrl bench run` reads, checked before anything runs.

```yaml
name: quick                      # the results go to runs/bench/NAME unless --out says
algos:                           # a name, or a mapping with a column label and overrides
  - bc
  - {algo: iql, label: iql-b3, set: {beta: 3.0}}
datasets: [hopper-medium, halfcheetah-medium]   # recipe names or paths
seeds: [0, 1, 2]                 # or a count: 3 means 0, 1, 2
steps: 100000                    # updates per run
eval_every: 10000                # updates between evaluations (default: steps / 10)
eval_episodes: 10
set: {hidden: [256, 256]}        # overrides for every algorithm (an algorithm's own win)
resources: {num_cpus: 1}         # Ray resource hints per run (num_cpus, num_gpus, memory)
seeds_in_one_program: false      # true: one task per (algo, dataset) trains all seeds by vmap
```

Every problem — an unknown key, algorithm, dataset or config field, a value of the wrong
type — is collected, and all are reported together in one SpecError.
"""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path
from typing import Any

import yaml

from offrl.errors import ConfigError

KEYS = {
    "name",
    "algos",
    "datasets",
    "seeds",
    "steps",
    "eval_every",
    "eval_episodes",
    "chunk_size",
    "env",
    "set",
    "resources",
    "seeds_in_one_program",
}
RESOURCE_KEYS = {"num_cpus", "num_gpus", "memory"}


class SpecError(ConfigError):
    """A sweep spec with problems; the message lists them all."""


@dataclasses.dataclass(frozen=True)
class AlgoEntry:
    """One column of the results: an algorithm with its overrides, under a label."""

    label: str
    algo: str
    overrides: dict[str, str]


@dataclasses.dataclass(frozen=True)
class SweepSpec:
    name: str
    algos: tuple[AlgoEntry, ...]
    datasets: tuple[str, ...]
    seeds: tuple[int, ...]
    steps: int
    eval_every: int
    eval_episodes: int = 10
    chunk_size: int = 1_000
    env: str | None = None
    resources: dict[str, float] = dataclasses.field(default_factory=lambda: {"num_cpus": 1})
    seeds_in_one_program: bool = False


@dataclasses.dataclass(frozen=True)
class RunTask:
    """One Ray task: one (algorithm, dataset) and one seed, or all seeds when grouped."""

    dataset: str
    entry: AlgoEntry
    seeds: tuple[int, ...]

    @property
    def dirs(self) -> tuple[str, ...]:
        """Run directories relative to the results directory: DATASET/LABEL/seedN."""
        return tuple(run_dir(self.dataset, self.entry.label, s) for s in self.seeds)

    @property
    def name(self) -> str:
        seeds = ",".join(map(str, self.seeds))
        return f"{self.entry.label} on {dataset_dir(self.dataset)}, seed {seeds}"


def dataset_dir(dataset: str) -> str:
    """A dataset's directory name in the results: the recipe name, or a path's file stem."""
    stem = Path(dataset).name.removesuffix(".hdf5").removesuffix(".npz")
    return re.sub(r"[^A-Za-z0-9_.-]", "_", stem)


def run_dir(dataset: str, label: str, seed: int) -> str:
    return f"{dataset_dir(dataset)}/{label}/seed{seed}"


def plan(spec: SweepSpec) -> list[RunTask]:
    """Every task of the sweep, dataset-major (a table's rows fill in order)."""
    tasks = []
    for dataset in spec.datasets:
        for entry in spec.algos:
            if spec.seeds_in_one_program:
                tasks.append(RunTask(dataset, entry, spec.seeds))
            else:
                tasks.extend(RunTask(dataset, entry, (s,)) for s in spec.seeds)
    return tasks


# --------------------------------------------------------------------------- parsing


def load_spec(path: str | Path) -> SweepSpec:
    path = Path(path)
    try:
        raw = yaml.safe_load(path.read_text())
    except OSError as exc:
        raise SpecError(f"{path}: cannot read the spec ({exc.strerror})") from None
    except yaml.YAMLError as exc:
        where = getattr(exc, "problem_mark", None)
        line = f" at line {where.line + 1}" if where else ""
        raise SpecError(f"{path}: not valid YAML{line}") from None
    return parse_spec(raw, source=str(path), default_name=path.stem)


def parse_spec(raw: Any, source: str = "spec", default_name: str = "sweep") -> SweepSpec:
    """A SweepSpec from the YAML's mapping, or a SpecError listing every problem."""
    problems: list[str] = []
    if not isinstance(raw, dict):
        raise SpecError(f"{source}: expected a mapping of keys (name, algos, datasets, ...)")
    problems += [f"unknown key {k!r}" for k in sorted(set(raw) - KEYS, key=str)]
    for key in ("algos", "datasets", "steps"):
        if key not in raw:
            problems.append(f"missing {key!r}")
    common = _overrides(raw.get("set", {}), "set", problems)
    steps = _positive_int(raw, "steps", None, problems)
    spec_kwargs = {
        "name": str(raw.get("name", default_name)),
        "algos": tuple(_algos(raw.get("algos", []), common, problems)),
        "datasets": tuple(_datasets(raw.get("datasets", []), problems)),
        "seeds": _seeds(raw.get("seeds", [0]), problems),
        "steps": steps or 1,
        "eval_every": _positive_int(raw, "eval_every", max(1, (steps or 10) // 10), problems),
        "eval_episodes": _positive_int(raw, "eval_episodes", 10, problems),
        "chunk_size": _positive_int(raw, "chunk_size", 1_000, problems),
        "env": raw.get("env"),
        "resources": _resources(raw.get("resources", {"num_cpus": 1}), problems),
        "seeds_in_one_program": _bool(raw, "seeds_in_one_program", problems),
    }
    if problems:
        n = len(problems)
        raise SpecError(f"{source}: {n} problem{'s' * (n > 1)}: " + "; ".join(problems))
    return SweepSpec(**spec_kwargs)


def _algos(items: Any, common: dict[str, str], problems: list[str]) -> list[AlgoEntry]:
    from offrl.algos import get_algo, make_algo_config

    if not isinstance(items, list) or not items:
        problems.append("'algos' must be a non-empty list")
        return []
    entries = []
    for i, item in enumerate(items):
        where = f"algos[{i}]"
        if isinstance(item, str):
            item = {"algo": item}
        if not isinstance(item, dict) or "algo" not in item:
            problems.append(f"{where}: expected a name or a mapping with 'algo'")
            continue
        extra = set(item) - {"algo", "label", "set"}
        if extra:
            problems.append(f"{where}: unknown key(s) {', '.join(sorted(map(str, extra)))}")
        name = str(item["algo"])
        label = str(item.get("label", name))
        overrides = common | _overrides(item.get("set", {}), f"{where}.set", problems)
        try:
            get_algo(name)
            make_algo_config(name, overrides)
        except ConfigError as exc:
            problems.append(f"{where} ({label}): {exc}")
            continue
        entries.append(AlgoEntry(label, name, overrides))
    labels = [e.label for e in entries]
    for dup in sorted({x for x in labels if labels.count(x) > 1}):
        problems.append(f"algos: label {dup!r} used twice; give each entry its own 'label'")
    return entries


def _overrides(raw: Any, where: str, problems: list[str]) -> dict[str, str]:
    """Override values as the CLI's --set strings, so one coercion checks both."""
    if not isinstance(raw, dict):
        problems.append(f"{where}: expected a mapping of config fields")
        return {}

    def text(value: Any) -> str:
        if isinstance(value, list | tuple):
            return ",".join(map(str, value))
        if isinstance(value, bool):
            return str(value).lower()
        return str(value)

    return {str(k): text(v) for k, v in raw.items()}


def _datasets(items: Any, problems: list[str]) -> list[str]:
    from offrl.recipes import names, names_hint

    if not isinstance(items, list) or not items:
        problems.append("'datasets' must be a non-empty list")
        return []
    out = []
    for item in items:
        name = str(item)
        if name not in names() and not Path(name).expanduser().exists():
            problems.append(f"unknown dataset {name!r} (not a recipe, not a path); {names_hint()}")
        out.append(str(Path(name).expanduser()) if name not in names() else name)
    dirs = [dataset_dir(d) for d in out]
    for dup in sorted({d for d in dirs if dirs.count(d) > 1}):
        problems.append(f"datasets: two entries share the directory name {dup!r}")
    return out


def _seeds(raw: Any, problems: list[str]) -> tuple[int, ...]:
    if isinstance(raw, int) and not isinstance(raw, bool) and raw > 0:
        return tuple(range(raw))
    ok = isinstance(raw, list) and raw and all(type(s) is int and s >= 0 for s in raw)
    if not ok or len(set(raw)) != len(raw):
        problems.append("'seeds' must be a count or a list of distinct non-negative integers")
        return (0,)
    return tuple(raw)


def _positive_int(raw: dict, key: str, default: int | None, problems: list[str]) -> int | None:
    value = raw.get(key, default)
    if value is None:
        return None
    if type(value) is not int or value <= 0:
        problems.append(f"{key!r} must be a positive integer, not {value!r}")
        return default
    return value


def _bool(raw: dict, key: str, problems: list[str]) -> bool:
    value = raw.get(key, False)
    if not isinstance(value, bool):
        problems.append(f"{key!r} must be true or false, not {value!r}")
        return False
    return value


def _resources(raw: Any, problems: list[str]) -> dict[str, float]:
    if not isinstance(raw, dict):
        problems.append("'resources' must be a mapping, e.g. {num_cpus: 1}")
        return {"num_cpus": 1}
    bad = sorted(set(map(str, raw)) - RESOURCE_KEYS)
    if bad:
        problems.append(f"resources: unknown {', '.join(bad)}; known: {', '.join(RESOURCE_KEYS)}")
    numbers = {k: v for k, v in raw.items() if k in RESOURCE_KEYS}
    if not all(isinstance(v, int | float) and v >= 0 for v in numbers.values()):
        problems.append("resources: values must be non-negative numbers")
        return {"num_cpus": 1}
    return {"num_cpus": 1} | numbers
