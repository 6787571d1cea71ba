"""When a test may skip: locally, with its reason; in CI, never.

CI (``.ci/run``, which exports ``ZOORANK_CI=1``) installs every package, the browser and the
services the tests use, so a test that skips there is a broken CI machine, not a choice: a
missing PostgreSQL, Chromium or ``cripser`` would otherwise pass the run with half of the
integration matrix skipped. This one place turns every skip -- ``pytest.skip``,
``skipif`` marks, ``pytest.importorskip`` at module level -- into a failure that keeps the
skip's reason. Expected failures (``xfail``) are not skips and stay as they are.

``tests/conftest.py`` registers the two hooks below.
"""

from __future__ import annotations

import os
from collections.abc import Generator
from typing import Any

import pytest

CI_VARIABLE = "ZOORANK_CI"


def in_ci() -> bool:
    """True when ``ZOORANK_CI`` is set to anything but empty or ``0``."""
    return os.environ.get(CI_VARIABLE, "").strip() not in ("", "0")


def _reason(longrepr: Any) -> str:
    if isinstance(longrepr, tuple) and len(longrepr) == 3:  # (path, line, "Skipped: why")
        return str(longrepr[2]).removeprefix("Skipped: ")
    return str(longrepr)


def fail_skips_in_ci(report: pytest.TestReport | pytest.CollectReport) -> None:
    """Turn ``report`` from skipped into failed, keeping the reason, when CI is running."""
    if not report.skipped or hasattr(report, "wasxfail") or not in_ci():
        return
    report.outcome = "failed"
    report.longrepr = (
        f"skipped in CI ({CI_VARIABLE}={os.environ[CI_VARIABLE]}), where everything the tests "
        f"use must be there: {_reason(report.longrepr)}"
    )


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Generator[None, Any, Any]:
    report = yield
    fail_skips_in_ci(report)
    return report


@pytest.hookimpl(wrapper=True)
def pytest_make_collect_report(collector: pytest.Collector) -> Generator[None, Any, Any]:
    report = yield
    fail_skips_in_ci(report)
    return report
