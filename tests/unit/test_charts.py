"""SVG charts: what a reader needs is in the picture."""

from __future__ import annotations

import re

from zoorank_app import charts


def test_box_chart_names_each_box_on_the_x_axis():
    samples = {"mobilenetv2_100": [0.1, 0.2, 0.3], "tf_efficientnet_lite0@random": [0.0, 0.05, 0.1]}
    svg = charts.box_chart(samples, title="margins", y_label="margin")
    labels = re.findall(r'<text class="box-label"[^>]*>([^<]*)</text>', svg)
    assert labels == ["mobilenetv2_1…", "tf_efficientn…"]  # the legend has the whole names
    # one label under each box, in order, centred on it
    centres = [float(x) for x in re.findall(r'<text class="box-label" x="([0-9.]+)"', svg)]
    assert len(centres) == 2 and centres[0] < centres[1]


def test_short_names_are_shown_whole_and_escaped():
    svg = charts.box_chart({"a<b": [1.0, 2.0], "c": [0.5, 1.5]}, title="t", y_label="y")
    assert re.findall(r'<text class="box-label"[^>]*>([^<]*)</text>', svg) == ["a&lt;b", "c"]
