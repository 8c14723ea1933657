"""Repository-wide pytest settings.

With SEARCHREC_REQUIRE_SERVICES=1 (set by .ci/run) a skipped test fails the session: in CI every
server the tests talk to must be there, and a skip would hide that it was not. Tests marked `gpu` are
the exception: CI machines have no GPU, and those tests run where one is (the device check).
"""

from __future__ import annotations

import os

import pytest

_skipped: list[str] = []


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    if report.skipped and not hasattr(report, "wasxfail") and "gpu" not in report.keywords:
        _skipped.append(report.nodeid)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    if os.environ.get("SEARCHREC_REQUIRE_SERVICES") == "1" and _skipped:
        reporter = session.config.pluginmanager.get_plugin("terminalreporter")
        if reporter is not None:
            reporter.write_line(
                f"SEARCHREC_REQUIRE_SERVICES=1 and {len(_skipped)} test(s) skipped:", red=True
            )
            for nodeid in _skipped:
                reporter.write_line(f"  {nodeid}", red=True)
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
