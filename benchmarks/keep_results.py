"""Keep a sweep's finished runs in git without their checkpoints, so a new machine resumes it.

    python benchmarks/keep_results.py runs/bench/d4rl_cpu benchmarks/results/d4rl_cpu
    cp -r benchmarks/results/d4rl_cpu runs/bench/      # on the new machine: bench run skips them

Copies, for every run directory with a summary.json, its .json and .jsonl files (summary,
config, metrics), and the sweep's own sweep.json / sweep.yaml.
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path


def keep(src: Path, dst: Path) -> int:
    runs = 0
    for summary in sorted(src.rglob("summary.json")):
        run = summary.parent
        out = dst / run.relative_to(src)
        out.mkdir(parents=True, exist_ok=True)
        for f in run.iterdir():
            if f.is_file() and f.suffix in (".json", ".jsonl"):
                shutil.copy2(f, out / f.name)
        runs += 1
    for name in ("sweep.json", "sweep.yaml"):
        if runs and (src / name).exists():
            shutil.copy2(src / name, dst / name)
    return runs


if __name__ == "__main__":
    if len(sys.argv) != 3:
        raise SystemExit("usage: keep_results.py SWEEP_DIR OUT_DIR")
    src, dst = Path(sys.argv[1]), Path(sys.argv[2])
    print(f"{keep(src, dst)} finished runs kept in {dst}")
