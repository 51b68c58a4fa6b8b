"""The test runner's own safety net (tests/xdist_crash.py): a worker that dies mid-test costs
one rerun of that test, and the session ends; under plain pytest-xdist 3.8 it hung."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

TESTS_DIR = Path(__file__).parent

# As in tests/conftest.py: the plugin, and a test module per xdist group.
CONFTEST = """
import pytest
from xdist_crash import *  # noqa: F403

def pytest_collection_modifyitems(items):
    for item in items:
        item.add_marker(pytest.mark.xdist_group(item.path.name))
"""

# Two groups of tests; `test_dies` kills its worker as a segfault would, `times` times.
SUITE = """
import os, signal
from pathlib import Path

import pytest

MARK = Path(__file__).with_name("deaths")

@pytest.mark.parametrize("i", range(4))
def test_before(i):
    pass

def test_dies():
    deaths = int(MARK.read_text()) if MARK.exists() else 0
    if deaths < {times}:
        MARK.write_text(str(deaths + 1))
        os.kill(os.getpid(), signal.SIGSEGV)

@pytest.mark.parametrize("i", range(3))
def test_after(i):
    pass
"""


def run_suite(tmp_path: Path, times: int) -> subprocess.CompletedProcess:
    (tmp_path / "conftest.py").write_text(CONFTEST)
    (tmp_path / "test_a.py").write_text(SUITE.format(times=times))
    (tmp_path / "test_b.py").write_text("def test_other():\n    pass\n")
    env = {**os.environ, "PYTHONPATH": str(TESTS_DIR)}
    command = [sys.executable, "-m", "pytest", "-n", "2", "--dist", "loadgroup", "-p"]
    command += ["no:cacheprovider", "-p", "no:faulthandler", "-q", str(tmp_path)]
    return subprocess.run(
        command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300
    )


@pytest.mark.parametrize(
    "times, returncode, summary, line",
    [
        (1, 0, "9 passed, 1 rerun", "RERUN test_a.py::test_dies"),
        (2, 1, "1 failed, 8 passed, 1 rerun", "crashed while running 'test_a.py::test_dies'"),
    ],
    ids=["crashes-once-rerun-passes", "crashes-twice-fails"],
)
def test_a_crashed_test_is_run_once_more_and_the_session_ends(
    tmp_path, times, returncode, summary, line
):
    result = run_suite(tmp_path, times)
    out = result.stdout + result.stderr
    assert result.returncode == returncode, out
    assert summary in out and line in out, out
