"""Datasets: the Dataset type, readers/writers, validation and the built-in datasets."""

from __future__ import annotations

from pathlib import Path

from offrl.data.dataset import Dataset
from offrl.errors import DataError

__all__ = ["Dataset", "load_dataset"]


def load_dataset(source: str | Path, clip_actions: bool = False) -> Dataset:
    """A built-in dataset by name (made locally on first use) or a file/directory path:
    a Minari dataset directory, a D4RL-layout .hdf5 file, or an .npz file."""
    from offrl.data import builtin, io

    if str(source) in builtin.NAMES:
        return builtin.load(str(source))
    try:
        return io.read(source, clip_actions=clip_actions)
    except DataError as exc:
        if Path(source).exists():
            raise
        raise DataError(f"{exc}; built-in datasets: {', '.join(builtin.NAMES)}") from None
