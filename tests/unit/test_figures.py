"""What the pages draw (app/figures.py): the stored details drawn as figures, and only the errors
that mean "nothing to show here" turned into nothing shown."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import timm
from zoorank_app.figures import job_figures, thumbnails

from zoorank.zoo.load import parameter_count


def test_job_figures_draw_the_stored_betti_curves():
    """betti_decay stores, per tap, the Betti sum at each threshold of its grid: one chart per
    model, up to 6 taps from first to last, the text alternative listing the stored points."""
    grid = [0.0, 0.25, 0.5, 0.75]
    taps = [{"depth": d, "curve": [10.0 - i, 8.0 - i, 5.0, 1.0 + i]} for i, d in enumerate(range(1, 9))]
    details = {"taps": taps, "curve_thresholds": grid, "omega": [1.0] * 8}
    results = [SimpleNamespace(model="m", score="betti_decay", value=0.1, details=details)]
    figures = job_figures(results)
    svg = figures["betti_curves"]["m"]
    assert "Betti curves of m</title>" in svg and "threshold η" in svg
    assert svg.count("<polyline") == 6  # 8 taps, 6 drawn, first and last among them
    assert "tap 1 (depth 1.00): (0.00, 10.000), (0.25, 8.000), (0.50, 5.000), (0.75, 1.000)" in svg
    assert "tap 8 (depth 8.00): (0.00, 3.000)" in svg
    broken = {**details, "taps": [{"depth": 1, "curve": [1.0]}]}  # curve and grid disagree: not drawn
    assert "betti_curves" not in job_figures(
        [SimpleNamespace(model="m", score="betti_decay", value=0.1, details=broken)]
    )


def test_thumbnails_of_a_dataset_missing_here_are_none(tmp_path):
    settings = SimpleNamespace(upload_dir=tmp_path)
    assert thumbnails(settings, "upload:" + "0" * 32) == []  # its folder is gone
    assert len(thumbnails(settings, "builtin:digits", per_class=1)) == 10


def test_an_unexpected_error_reading_thumbnails_is_not_swallowed(tmp_path, monkeypatch):
    def broken(*args, **kwargs):
        raise RuntimeError("a bug, not a missing dataset")

    monkeypatch.setattr("zoorank.data.load_dataset", broken)
    with pytest.raises(RuntimeError, match="a bug"):
        thumbnails(SimpleNamespace(upload_dir=tmp_path / "other"), "builtin:digits")


def test_parameter_count_is_none_for_an_architecture_timm_does_not_know(monkeypatch):
    assert parameter_count("no_such_architecture_in_timm") is None
    assert parameter_count("test_vit") == sum(
        p.numel() for p in timm.create_model("test_vit", pretrained=False).parameters()
    )


def test_an_unexpected_error_building_a_model_is_not_swallowed(monkeypatch):
    def broken(*args, **kwargs):
        raise RuntimeError("out of memory")

    parameter_count.cache_clear()  # built before: counted again
    monkeypatch.setattr(timm, "create_model", broken)
    with pytest.raises(RuntimeError, match="out of memory"):
        parameter_count("test_convnext")
