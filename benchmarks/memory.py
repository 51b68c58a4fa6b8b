"""Peak memory of `offrl train` against the bytes of the dataset it trains on (issue 20).

Writes a synthetic dataset of N transitions with D-float observations (chained episodes of
1000 steps, 6-D actions) as a D4RL-layout HDF5 file and as a Minari directory, then runs
`offrl train bc` on each in a fresh process with no environment (evaluation off-policy on
held-out episodes, FQE cut to a few updates: the point is the data's footprint, not the
estimate) and reads the child's peak resident set size from the kernel (ru_maxrss).

The dataset's bytes count every array a run needs: observations, next observations,
actions, rewards, terminals and timeouts. Goal of issue 20: peak RSS <= 1.5x those bytes.
A fresh Python process with jax and offrl imported is measured the same way and printed, so
the interpreter's own share is visible.

    python benchmarks/memory.py                      # 250k x 600 (1.2 GB of observations)
    python benchmarks/memory.py --transitions 1000000 --obs-dim 600   # the issue's size
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from offrl.data import Dataset, io

EPISODE = 1000
ACT_DIM = 6


def synthetic(n: int, obs_dim: int, seed: int = 0) -> Dataset:
    """Chained episodes (next_obs is the next row within an episode), cut by timeouts."""
    rng = np.random.default_rng(seed)
    obs = rng.standard_normal((n + 1, obs_dim), dtype=np.float32)
    timeouts = np.zeros(n, bool)
    timeouts[EPISODE - 1 :: EPISODE] = True
    return Dataset(
        observations=obs[:-1],
        actions=rng.uniform(-1, 1, size=(n, ACT_DIM)).astype(np.float32),
        rewards=rng.standard_normal(n, dtype=np.float32),
        next_observations=obs[1:],
        terminals=np.zeros(n, bool),
        timeouts=timeouts,
        name="memory-bench",
    )


def array_bytes(ds: Dataset) -> int:
    arrays = (ds.observations, ds.next_observations, ds.actions, ds.rewards)
    return sum(a.nbytes for a in arrays) + ds.terminals.nbytes + ds.timeouts.nbytes


def peak_rss_of(cmd: list[str]) -> tuple[int, float]:
    """(peak RSS in bytes, wall seconds) of `cmd` run to completion in a child process: the
    kernel's ru_maxrss of that child alone (os.wait4), in KiB on Linux."""
    start = time.perf_counter()
    child = subprocess.Popen(cmd, stdout=subprocess.DEVNULL)
    _, status, usage = os.wait4(child.pid, 0)
    child.returncode = os.waitstatus_to_exitcode(status)
    if child.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)}: exit status {child.returncode}")
    return usage.ru_maxrss * 1024, time.perf_counter() - start


def train_cmd(dataset: Path, out: Path, steps: int) -> list[str]:
    return [
        sys.executable, "-m", "offrl.cli", "train", "bc", "--dataset", str(dataset),
        "--steps", str(steps), "--out", str(out), "--eval-every", str(steps),
        "--chunk-size", str(steps), "--no-progress", "--set", "hidden=64,64",
        "--ope-set", "fqe_steps=10", "--ope-set", "num_bootstrap=10",
        "--ope-set", "fqe_hidden=8,8",
    ]  # fmt: skip


def write_sources(root: Path, n: int, obs_dim: int) -> int:
    """The D4RL file and the Minari directory; returns the dataset's array bytes."""
    ds = synthetic(n, obs_dim)
    io.write_d4rl(ds, root / "memory-bench.hdf5")
    io.write_minari(ds, root / "minari", dataset_id="offrl/memory-bench-v0")
    return array_bytes(ds)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--transitions", type=int, default=250_000)
    p.add_argument("--obs-dim", type=int, default=600)
    p.add_argument("--steps", type=int, default=200, help="BC updates per run")
    p.add_argument("--dir", type=Path, help="where to write the data (default: a temp dir)")
    p.add_argument("--write-only", type=Path, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.write_only:  # in a child, so that the measuring process never holds the data
        print(write_sources(args.write_only, args.transitions, args.obs_dim))
        return 0

    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        root = Path(tmp)
        sizes = ["--transitions", str(args.transitions), "--obs-dim", str(args.obs_dim)]
        written = subprocess.run(
            [sys.executable, __file__, *sizes, "--write-only", str(root)],
            check=True,
            capture_output=True,
            text=True,
        )
        need = int(written.stdout.split()[-1])
        print(
            f"dataset: {args.transitions:,} x {args.obs_dim} float32 observations; arrays "
            f"{need / 2**30:.2f} GiB (observations, next observations, actions, rewards, flags)"
        )
        base, _ = peak_rss_of([sys.executable, "-c", "import jax, offrl.training"])
        print(f"python + jax + offrl imported: peak RSS {base / 2**30:.2f} GiB")
        print("| source | peak RSS GiB | / dataset bytes | goal | wall s |")
        print("|---|---:|---:|---:|---:|")
        sources = (("D4RL HDF5", root / "memory-bench.hdf5"), ("Minari directory", root / "minari"))
        for i, (label, path) in enumerate(sources):
            peak, wall = peak_rss_of(train_cmd(path, root / f"run-{i}", args.steps))
            print(f"| {label} | {peak / 2**30:.2f} | {peak / need:.2f}x | 1.5x | {wall:.0f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
