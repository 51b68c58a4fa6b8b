"""`offrl bench run SPEC`: every run of a sweep as a Ray task, resumable, failure-tolerant.

Results layout (what `bench table`, `plot` and `report` read):

    RESULTS/sweep.yaml             the spec, as given
    RESULTS/sweep.json             datasets and labels in spec order, and every planned run
    RESULTS/DATASET/LABEL/seedN/   an ordinary `offrl train` run directory, plus failed.json
                                   ({"error", "traceback"}) when the run raised

Ray starts inside the command by default (on this machine's cores); `address` joins a
running cluster, whose nodes must see RESULTS and have offrl installed. Runs share nothing
but the dataset cache (made once, under a file lock). A run whose summary.json exists is
skipped; a run with a config.json but no summary (interrupted) resumes from its last
checkpoint; a failed run is recorded and tried again by the next invocation. Ctrl-C cancels
the running tasks and leaves every finished run as it was.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import sys
import traceback
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from offrl.atomic import atomic_write, atomic_write_json
from offrl.bench import FAILED_FILE, SWEEP_JSON, SWEEP_YAML
from offrl.bench.spec import RunTask, SweepSpec, dataset_dir, load_spec, plan
from offrl.training import CONFIG_FILE, SUMMARY_FILE

# One XLA thread per one-CPU task: two single-threaded runs side by side beat two that
# fight over both cores (measured ~18% more updates/s in all on this 2-core machine).
SINGLE_THREAD_XLA = "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1"


@dataclasses.dataclass(frozen=True)
class Outcome:
    dir: str
    status: str  # completed | diverged | failed | skipped
    score: float | None = None
    error: str | None = None


def default_results_dir(spec: SweepSpec) -> Path:
    return Path("runs/bench") / spec.name


def run_sweep(
    spec_path: str | Path,
    out: str | Path | None = None,
    address: str | None = None,
    num_cpus: int | None = None,
    progress: bool = True,
) -> tuple[Path, list[Outcome]]:
    """Run every run of the spec not yet completed. Returns the results directory and one
    Outcome per planned run."""
    spec = load_spec(spec_path)  # every problem is reported here, before anything runs
    results = Path(out) if out else default_results_dir(spec)
    tasks = plan(spec)
    write_sweep_files(results, spec, Path(spec_path), tasks)
    skipped = [
        Outcome(d, "skipped")
        for t in tasks
        for d in t.dirs
        if (results / d / SUMMARY_FILE).exists()
    ]
    todo = [t for t in (_unfinished(t, results) for t in tasks) if t is not None]
    if not todo:
        return results, skipped
    import ray

    _start_ray(ray, address, num_cpus)
    try:
        total = sum(len(t.seeds) for t in tasks)
        return results, skipped + _drive(ray, todo, spec, results, total, len(skipped), progress)
    finally:
        ray.shutdown()


def write_sweep_files(results: Path, spec: SweepSpec, spec_path: Path, tasks: list[RunTask]):
    runs = [
        {
            "dataset": dataset_dir(t.dataset),
            "label": t.entry.label,
            "algo": t.entry.algo,
            "seed": seed,
            "dir": d,
            "overrides": t.entry.overrides,
        }
        for t in tasks
        for seed, d in zip(t.seeds, t.dirs)
    ]
    sweep = {
        "name": spec.name,
        "datasets": [dataset_dir(d) for d in spec.datasets],
        "labels": [e.label for e in spec.algos],
        "steps": spec.steps,
        "runs": runs,
    }
    atomic_write_json(results / SWEEP_JSON, sweep)
    atomic_write(results / SWEEP_YAML, spec_path.read_bytes())


def _unfinished(task: RunTask, results: Path) -> RunTask | None:
    """The task without its completed seeds, or None when all are done."""
    seeds = tuple(
        s for s, d in zip(task.seeds, task.dirs) if not (results / d / SUMMARY_FILE).exists()
    )
    return dataclasses.replace(task, seeds=seeds) if seeds else None


def _start_ray(ray, address: str | None, num_cpus: int | None) -> None:
    import logging
    import warnings

    # Ray starts its processes with fork+exec; JAX's warning about fork does not apply.
    warnings.filterwarnings("ignore", message="os.fork", category=RuntimeWarning)
    quiet = {"include_dashboard": False, "configure_logging": False, "log_to_driver": False}
    if address:
        ray.init(address=address, logging_level=logging.WARNING, log_to_driver=False)
    else:
        cpus = num_cpus or os.cpu_count()
        ray.init(num_cpus=cpus, logging_level=logging.WARNING, **quiet)


# --------------------------------------------------------------------------- a task


def execute(task: RunTask, spec: SweepSpec, results: str, board: Any = None) -> list[dict]:
    """Train the task's runs (one seed, or all seeds in one program); never raises for a
    run's own failure: it is written to failed.json and returned as an outcome."""
    from offrl.errors import DivergenceError
    from offrl.training import train, train_seeds

    dirs = [Path(results) / d for d in task.dirs]
    for d in dirs:
        (d / FAILED_FILE).unlink(missing_ok=True)
    resume = all((d / CONFIG_FILE).exists() for d in dirs)
    kwargs = {
        "env": spec.env,
        "overrides": task.entry.overrides,
        "eval_every": spec.eval_every,
        "eval_episodes": spec.eval_episodes,
        "chunk_size": spec.chunk_size,
        "resume": resume,
        "overwrite": not resume,  # only what holds no config.json: nothing trained to keep
        "progress": False,
        "callback": (lambda p: board.report.remote(task.name, p)) if board else None,
    }
    algo, seeds = task.entry.algo, list(task.seeds)
    try:
        # A diverged run is a result, not a failure: its summary.json says "diverged".
        with contextlib.suppress(DivergenceError):
            if len(dirs) == 1:
                train(algo, task.dataset, spec.steps, seed=seeds[0], out=dirs[0], **kwargs)
            else:
                train_seeds(algo, task.dataset, spec.steps, seeds, dirs, **kwargs)
    except Exception as exc:  # noqa: BLE001 - any run's failure is recorded, the sweep goes on
        error = f"{type(exc).__name__}: {exc}".splitlines()[0]
        for d in dirs:
            record = {"error": error, "traceback": traceback.format_exc()}
            atomic_write_json(d / FAILED_FILE, record)
    return [dataclasses.asdict(_outcome(results, d)) for d in task.dirs]


def _outcome(results: str | Path, rel: str) -> Outcome:
    run = Path(results) / rel
    if (run / SUMMARY_FILE).exists():
        summary = json.loads((run / SUMMARY_FILE).read_text())
        score = summary.get("final_normalized_score")
        score = summary.get("final_return") if score is None else score  # no references
        return Outcome(rel, summary.get("status", "completed"), score)
    if (run / FAILED_FILE).exists():
        return Outcome(rel, "failed", error=json.loads((run / FAILED_FILE).read_text())["error"])
    return Outcome(rel, "failed", error="the task ended without a summary")


class _Board:
    """Ray actor the tasks report their progress to; the driver reads it once a second."""

    def __init__(self) -> None:
        self.progress: dict[str, dict] = {}

    def report(self, name: str, info: dict) -> None:
        self.progress[name] = info

    def snapshot(self) -> dict[str, dict]:
        return dict(self.progress)


# --------------------------------------------------------------------------- the driver


def _drive(ray, tasks, spec, results: Path, total: int, done: int, progress: bool):
    board = ray.remote(num_cpus=0)(_Board).remote()
    remote = ray.remote(execute)
    env = {"XLA_FLAGS": SINGLE_THREAD_XLA} if spec.resources.get("num_cpus", 1) <= 1 else {}
    options = dict(spec.resources) | {"runtime_env": {"env_vars": env}, "max_retries": 0}
    refs = {
        remote.options(**options).remote(t, spec, str(results.resolve()), board): t for t in tasks
    }
    outcomes: list[Outcome] = []
    view = _ProgressView(total, done, progress)
    try:
        while refs:
            ready, _ = ray.wait(list(refs), num_returns=1, timeout=1.0)
            for ref in ready:
                task = refs.pop(ref)
                for o in _task_outcomes(ray, ref, task, results):
                    outcomes.append(o)
                    view.finished(o)
                view.drop(task.name)
            view.update(ray.get(board.snapshot.remote()), {t.name for t in refs.values()})
    except KeyboardInterrupt:
        for ref in refs:
            ray.cancel(ref, force=True)
        view.close()
        raise
    view.close()
    return outcomes


def _task_outcomes(ray, ref, task: RunTask, results: Path) -> list[Outcome]:
    try:
        return [Outcome(**o) for o in ray.get(ref)]
    except Exception as exc:  # noqa: BLE001 - the worker itself died (killed, out of memory)
        error = f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
        for d in task.dirs:
            atomic_write_json(results / d / FAILED_FILE, {"error": error, "traceback": str(exc)})
        return [Outcome(d, "failed", error=error) for d in task.dirs]


class _ProgressView:
    """One overall bar (runs done of all, ETA) and one line per running task."""

    def __init__(self, total: int, done: int, enabled: bool):
        # Lines that redraw in place only make sense on a terminal, not in a log file.
        self.lines_enabled = enabled and sys.stderr.isatty()
        self.overall = tqdm(
            total=total, initial=done, desc="runs", unit="run", disable=not enabled, position=0
        )
        self.lines: dict[str, tqdm] = {}
        self.slots: dict[str, int] = {}  # the screen line each running task's bar holds

    def finished(self, o: Outcome) -> None:
        self.overall.update(1)
        detail = f"{o.score:.1f}" if o.score is not None else (o.error or "")
        tqdm.write(f"{o.status:>9}  {o.dir}  {detail}")

    def update(self, snapshot: dict[str, dict], running: set[str]) -> None:
        if not self.lines_enabled:
            return
        for name, info in snapshot.items():
            if name not in running:
                continue
            if name not in self.lines:
                taken = set(self.slots.values())
                self.slots[name] = slot = min(set(range(1, len(taken) + 2)) - taken)
                self.lines[name] = tqdm(
                    total=info["steps"],
                    initial=info["step"],
                    desc=name,
                    position=slot,
                    # Updates arrive a chunk at a time: tqdm's own rate would be noise.
                    bar_format="{desc}: {percentage:3.0f}%|{bar}| {n_fmt}/{total_fmt} "
                    "[{elapsed}, {postfix}]",
                    leave=False,
                )
            line = self.lines[name]
            line.update(info["step"] - line.n)
            score = info.get("score")
            line.set_postfix_str(
                f"{info['updates_per_second']:,.0f} upd/s"
                + (f", score {score:.1f}" if score is not None else ""),
                refresh=False,
            )
            line.refresh()

    def drop(self, name: str) -> None:
        self.slots.pop(name, None)
        line = self.lines.pop(name, None)
        if line is not None:
            line.close()

    def close(self) -> None:
        for name in list(self.lines):
            self.drop(name)
        self.overall.close()
