"""Shared fixtures. Everything runs offline (ZOORANK_OFFLINE): timm must not wait on the hub."""

from __future__ import annotations

import pytest

from tests.skip_policy import pytest_make_collect_report, pytest_runtest_makereport  # noqa: F401
from zoorank.settings import enter_offline_by_default

enter_offline_by_default()  # the tests' entry point, before anything imports timm


@pytest.fixture(scope="session")
def small_options():
    """Ranking settings small enough for unit tests on a 2-core CPU."""
    from zoorank.rank import RankOptions

    return RankOptions(samples_per_class=10, input_size=32, tap_images_per_class=2, batch_size=50)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Integration and browser tests are slow too: `pytest -m "not slow"` is the quick loop
    (unit tests of a few seconds at most); `make test` runs everything."""
    for item in items:
        if item.get_closest_marker("integration") or item.get_closest_marker("e2e"):
            item.add_marker(pytest.mark.slow)
