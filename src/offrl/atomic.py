"""Atomic file writes: a temporary file beside the target, renamed over it on success.

A reader never sees a half-written checkpoint, summary or dataset; a failed write leaves
the old file (or none) and no temporary behind.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any


@contextlib.contextmanager
def atomic_path(final: Path) -> Iterator[Path]:
    """Yield a temporary path next to `final`; on success it is fsynced and renamed onto it."""
    final.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(dir=final.parent, prefix=f".{final.name}.", suffix=".tmp")
    os.close(fd)
    tmp = Path(name)
    os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; a result is as readable as any file
    try:
        yield tmp
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp, final)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write(path: Path, data: bytes) -> None:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def atomic_write_json(path: Path, obj: Any) -> None:
    atomic_write(path, (json.dumps(obj, indent=2) + "\n").encode())


def truncate_jsonl(path: Path, last_step: int) -> None:
    """Drop records logged after the checkpoint we resume from (they will be made again)."""
    if not path.exists():
        return
    keep = [ln for ln in path.read_text().splitlines() if json.loads(ln)["step"] <= last_step]
    atomic_write(path, "".join(ln + "\n" for ln in keep).encode())
