"""Shared fixtures: an isolated OFFRL_HOME for the dataset recipes, small synthetic data.

The environment is set here, before anything imports JAX, and is inherited by everything
the session starts: pytest-xdist workers, Ray workers, CLI subprocesses. So recipe datasets
are made once per session (recipes.load serializes concurrent makers with a file lock).

JAX's persistent compilation cache is off unless OFFRL_TEST_JAX_CACHE=1. It saved compiling
identical programs twice, but jaxlib 0.10.2 crashes the processes that read it: loading a
cached CPU executable (`PjRtCpuClient::LoadSerializedExecutable` -> `CpuAotLoader`) can unmap
JIT memory whose unwind tables stay registered with libgcc, and the next C++ exception in the
process walks them (SIGSEGV in libgcc_s `classify_object_over_fdes`). Found by tracing
`__register_frame`/`__deregister_frame`/`munmap` over a whole test run (65 such unmappings in
one worker, every one under that loader; none with the cache off). This killed a worker in
CI on 2026-12-07 and twice on a session's machine.
"""

from __future__ import annotations

import os
import tempfile

# A crashed xdist worker: its test is run once more, and the session never hangs.
from xdist_crash import (  # noqa: F401
    pytest_handlecrashitem,
    pytest_report_teststatus,
    pytest_terminal_summary,
    pytest_xdist_make_scheduler,
)

# Built-in datasets are cached once per test session, outside the user's cache.
os.environ.setdefault("OFFRL_HOME", tempfile.mkdtemp(prefix="offrl-test-home-"))
os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")
if os.environ.get("OFFRL_TEST_JAX_CACHE", "0") == "1":
    os.environ.setdefault(
        "JAX_COMPILATION_CACHE_DIR", tempfile.mkdtemp(prefix="offrl-test-jax-cache-")
    )
    # Cache every program, however quick to compile: most of the suite's time is compiling.
    os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0")
    os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES", "-1")


# Modules whose tests share no module-scoped fixture and are each long: spread them test by
# test over the xdist workers. Every other module stays on one worker (`--dist loadgroup`),
# so its module fixtures are built once.
SPREAD_MODULES = {"test_learning.py"}


def pytest_collection_modifyitems(config, items):
    import pytest

    for item in items:
        module = item.path.name
        group = item.nodeid if module in SPREAD_MODULES else module
        item.add_marker(pytest.mark.xdist_group(group))
