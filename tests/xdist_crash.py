"""A pytest-xdist plugin: a worker that crashes costs one rerun of its test, never a hang.

Why: a worker can die in native code. One such crash is known and avoided (JAX's persistent
compilation cache, off in tests: see tests/conftest.py); this plugin is the net for any
other. Without it, pytest-xdist 3.8.0 may hang after a crash under `--dist loadgroup`
(CI sat until its time limit on 2026-12-07): `LoadScopeScheduling.remove_node` puts the dead
worker's *completed* groups back on the queue as empty work units, and a replacement worker
given one last test waits forever for a second (pytest-dev/pytest-xdist#1323, #1327, #1378;
fixed on their main, not released).

This scheduler is `LoadGroupScheduling` with those two faults fixed, and the test a worker
died on is run once more (it is not the test that is wrong: the crash is in native code that
any test may reach). It is reported `RERUN`, with the worker's death, and the session ends in
a summary line naming it; a second crash of the same test fails it.
"""

from __future__ import annotations

from xdist.scheduler import LoadGroupScheduling

RERUNS_AFTER_A_CRASH = 1


class CrashTolerantGroupScheduling(LoadGroupScheduling):
    """`--dist loadgroup`, surviving a worker's crash (see the module docstring)."""

    def __init__(self, config, log=None) -> None:
        super().__init__(config, log)
        self.crashes: dict[str, int] = {}

    def remove_node(self, node) -> str | None:
        workload = self.assigned_work.pop(node)
        unfinished = {
            group: dict(unit) for group, unit in workload.items() if not all(unit.values())
        }
        if not unfinished:
            return None
        group, crashed = next(
            (group, nodeid)
            for group, unit in unfinished.items()
            for nodeid, done in unit.items()
            if not done
        )
        self.crashes[crashed] = self.crashes.get(crashed, 0) + 1
        if not self.will_rerun(crashed):
            unfinished[group][crashed] = True  # reported failed by xdist; not run again
        for group, unit in unfinished.items():
            if not all(unit.values()):  # only work still to do goes back on the queue
                self.workqueue[group] = unit
        for other in self.assigned_work:
            self._reschedule(other)
        return crashed

    def will_rerun(self, nodeid: str) -> bool:
        return self.crashes.get(nodeid, 0) <= RERUNS_AFTER_A_CRASH

    def _reschedule(self, node) -> None:
        # A worker runs a test once it knows the next one, or that there is none. So a
        # worker (a replacement above all) is given work until it holds more than two tests
        # (xdist's own threshold) or the queue is empty, and is then told that no more will come.
        if node.shutting_down:
            return
        while self.workqueue and self._pending_of(self.assigned_work[node]) <= 2:
            self._assign_work_unit(node)
        if not self.workqueue:
            node.shutdown()


def pytest_xdist_make_scheduler(config, log):
    if config.getvalue("dist") == "loadgroup":
        return CrashTolerantGroupScheduling(config, log)
    return None


def pytest_handlecrashitem(crashitem, report, sched) -> None:
    if isinstance(sched, CrashTolerantGroupScheduling) and sched.will_rerun(crashitem):
        report.outcome = "rerun"
        report.longrepr = f"{report.longrepr}; run again"


def pytest_report_teststatus(report):
    if report.outcome == "rerun":
        return "rerun", "R", ("RERUN", {"yellow": True})
    return None


def pytest_terminal_summary(terminalreporter) -> None:
    for report in terminalreporter.stats.get("rerun", []):
        terminalreporter.write_line(f"RERUN {report.nodeid}: {report.longrepr}", yellow=True)
