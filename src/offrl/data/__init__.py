"""Datasets: the Dataset type, readers/writers, validation and the dataset recipes."""

from __future__ import annotations

from pathlib import Path

from offrl.data.dataset import Dataset
from offrl.errors import DataError

__all__ = ["Dataset", "load_dataset"]


def load_dataset(source: str | Path, clip_actions: bool = False) -> Dataset:
    """A recipe by name, e.g. "hopper-medium" (made locally on first use), or a path:
    a Minari dataset directory, a D4RL-layout .hdf5 file, or an .npz file."""
    from offrl.data import io, recipes

    if str(source) in recipes.names():
        return recipes.load(str(source))
    try:
        return io.read(source, clip_actions=clip_actions)
    except DataError as exc:
        if Path(source).exists():
            raise
        raise DataError(f"{exc}; {recipes.names_hint()}") from None
