"""Shared fixtures: an isolated OFFRL_HOME for the dataset recipes, small synthetic data, and
one JAX compilation cache for the session.

The environment is set here, before anything imports JAX, and is inherited by everything
the session starts: pytest-xdist workers, Ray workers, CLI subprocesses. So recipe datasets
are made once per session (recipes.load serializes concurrent makers with a file lock), and
a program compiled by one test, worker or subprocess is read back, not compiled again, by
the next one that builds the same program (tests build many identical chunks: the same
algorithm at the same tiny size, trained again with another seed or after a resume).
"""

from __future__ import annotations

import os
import tempfile

# Built-in datasets are cached once per test session, outside the user's cache.
os.environ.setdefault("OFFRL_HOME", tempfile.mkdtemp(prefix="offrl-test-home-"))
os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")
if os.environ.get("OFFRL_TEST_JAX_CACHE", "1") != "0":
    os.environ.setdefault(
        "JAX_COMPILATION_CACHE_DIR", tempfile.mkdtemp(prefix="offrl-test-jax-cache-")
    )
    # Cache every program, however quick to compile: most of the suite's time is compiling.
    os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0")
    os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES", "-1")
