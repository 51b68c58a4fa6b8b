"""Datasets: the format only: the Dataset type, readers/writers, validation, transforms.

It imports nothing above it; recipe names ("hopper-medium") are resolved one layer up, by
`offrl.recipes.load_dataset`.
"""

from __future__ import annotations

from offrl.data.dataset import Dataset

__all__ = ["Dataset"]
