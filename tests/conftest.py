"""Shared fixtures: an isolated OFFRL_HOME for the dataset recipes, small synthetic data."""

from __future__ import annotations

import os
import tempfile

# Built-in datasets are cached once per test session, outside the user's cache.
os.environ.setdefault("OFFRL_HOME", tempfile.mkdtemp(prefix="offrl-test-home-"))
os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")
