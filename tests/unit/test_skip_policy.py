"""The skip policy (tests/skip_policy.py): a skip stays a skip with its reason locally and
fails the run in CI, whichever way the test skipped; an expected failure is left alone."""

from __future__ import annotations

import pytest

pytest_plugins = ["pytester"]

SKIPPING = """
import pytest

def test_skips_in_its_body():
    pytest.skip("PostgreSQL is not running")

@pytest.mark.skipif(True, reason="chromium is not installed")
def test_skipped_by_a_mark():
    pass

@pytest.mark.xfail(reason="a known bug", strict=True)
def test_expected_failure():
    assert False

def test_passes():
    pass
"""
MODULE_LEVEL = """
import pytest

pytest.importorskip("zoorank_no_such_package", reason="zoorank_no_such_package is not installed")

def test_never_collected():
    pass
"""


@pytest.fixture
def project(pytester: pytest.Pytester) -> pytest.Pytester:
    pytester.makeconftest(
        "from tests.skip_policy import pytest_make_collect_report, pytest_runtest_makereport"
    )
    pytester.makepyfile(test_skipping=SKIPPING, test_module_level=MODULE_LEVEL)
    return pytester


def test_locally_skips_keep_their_reason(project: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ZOORANK_CI", raising=False)
    result = project.runpytest("-rsx")
    result.assert_outcomes(passed=1, skipped=3, xfailed=1)
    for reason in ("PostgreSQL is not running", "chromium is not installed", "zoorank_no_such_package"):
        result.stdout.fnmatch_lines([f"SKIPPED*{reason}*"])
    assert result.ret == pytest.ExitCode.OK


@pytest.mark.parametrize("value", ["0", ""])
def test_zero_or_empty_is_not_ci(
    project: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, value: str
) -> None:
    monkeypatch.setenv("ZOORANK_CI", value)
    project.runpytest().assert_outcomes(passed=1, skipped=3, xfailed=1)


def test_in_ci_every_skip_fails_with_its_reason(
    project: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ZOORANK_CI", "1")
    result = project.runpytest("test_skipping.py")
    result.assert_outcomes(passed=1, failed=1, errors=1, xfailed=1)  # the mark skips in setup
    for reason in ("PostgreSQL is not running", "chromium is not installed"):
        result.stdout.fnmatch_lines([f"*skipped in CI (ZOORANK_CI=1)*{reason}*"])
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    collected = project.runpytest("test_module_level.py")
    collected.stdout.fnmatch_lines(
        ["*skipped in CI (ZOORANK_CI=1)*zoorank_no_such_package is not installed*"]
    )
    assert collected.ret == pytest.ExitCode.INTERRUPTED  # a collection error stops the run
