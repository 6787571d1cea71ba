"""Hand-built SVG charts for the pages: lines, box plots and scatter plots with axes, labels, a
legend and a text alternative (``<title>``/``<desc>`` and ``role="img"``). Nothing is loaded
from anywhere; values are escaped."""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from html import escape

import numpy as np

PALETTE = ["#4a7ab5", "#d1762f", "#3f9b5b", "#b53f4a", "#7b5ab5", "#8c6d31", "#c4579b", "#5f5f5f"]
WIDTH, HEIGHT = 720, 320
LEFT, RIGHT, TOP, BOTTOM = 64, 230, 16, 48


def _ticks(low: float, high: float, count: int = 5) -> list[float]:
    if not (math.isfinite(low) and math.isfinite(high)) or high <= low:
        return [low]
    step = 10 ** math.floor(math.log10((high - low) / count))
    for factor in (1, 2, 5, 10):
        if (high - low) / (step * factor) <= count:
            step *= factor
            break
    first = math.ceil(low / step) * step
    return [round(first + i * step, 10) for i in range(int((high - first) / step) + 1)]


def integer_ticks(low: float, high: float, count: int = 5) -> list[float]:
    """The whole-number ticks of ``_ticks`` (for counts such as epochs)."""
    return [t for t in _ticks(low, high, count) if float(t).is_integer()]


Scale = Callable[[float], float]


def _scale(low: float, high: float, start: float, stop: float) -> Scale:
    span = (high - low) or 1.0
    return lambda v: start + (v - low) / span * (stop - start)


def _line(x1: float, y1: float, x2: float, y2: float, stroke: str = "#555", extra: str = "") -> str:
    return f'<line x1="{x1:.1f}" y1="{y1:.1f}" x2="{x2:.1f}" y2="{y2:.1f}" stroke="{stroke}"{extra}/>'


def _frame(
    title: str,
    desc: str,
    x_label: str,
    y_label: str,
    x_range: tuple[float, float],
    y_range: tuple[float, float],
    legend: Sequence[str],
    *,
    x_ticks: bool | Sequence[float] = True,
) -> tuple[list[str], Scale, Scale]:
    sx = _scale(*x_range, LEFT, WIDTH - RIGHT)
    sy = _scale(*y_range, HEIGHT - BOTTOM, TOP)
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {WIDTH} {HEIGHT}" width="{WIDTH}" '
        f'height="{HEIGHT}" role="img" aria-labelledby="t d" class="chart">',
        f"<title>{escape(title)}</title><desc>{escape(desc)}</desc>",
        _line(LEFT, HEIGHT - BOTTOM, WIDTH - RIGHT, HEIGHT - BOTTOM),
        _line(LEFT, TOP, LEFT, HEIGHT - BOTTOM),
    ]
    ticks = (_ticks(*x_range) if x_ticks else []) if isinstance(x_ticks, bool) else list(x_ticks)
    for t in ticks:
        x = sx(t)
        parts.append(_line(x, HEIGHT - BOTTOM, x, HEIGHT - BOTTOM + 4))
        parts.append(
            f'<text x="{x:.1f}" y="{HEIGHT - BOTTOM + 16}" font-size="11" text-anchor="middle">{t:g}</text>'
        )
    for t in _ticks(*y_range):
        y = sy(t)
        parts.append(_line(LEFT - 4, y, LEFT, y))
        parts.append(f'<text x="{LEFT - 6}" y="{y + 4:.1f}" font-size="11" text-anchor="end">{t:g}</text>')
    parts.append(
        f'<text x="{(LEFT + WIDTH - RIGHT) / 2}" y="{HEIGHT - 8}" font-size="12" text-anchor="middle">'
        f"{escape(x_label)}</text>"
    )
    parts.append(
        f'<text x="14" y="{(TOP + HEIGHT - BOTTOM) / 2}" font-size="12" text-anchor="middle" '
        f'transform="rotate(-90 14 {(TOP + HEIGHT - BOTTOM) / 2})">{escape(y_label)}</text>'
    )
    for i, name in enumerate(legend):
        y = TOP + 8 + 16 * i
        colour = PALETTE[i % len(PALETTE)]
        parts.append(f'<rect x="{WIDTH - RIGHT + 12}" y="{y - 8}" width="10" height="10" fill="{colour}"/>')
        parts.append(f'<text x="{WIDTH - RIGHT + 26}" y="{y + 1}" font-size="11">{escape(name)}</text>')
    return parts, sx, sy


def _range(values: Sequence[float], pad: float = 0.05) -> tuple[float, float]:
    finite = [v for v in values if math.isfinite(v)]
    if not finite:
        return 0.0, 1.0
    low, high = min(finite), max(finite)
    margin = (high - low) * pad or 0.5
    return low - margin, high + margin


def _segments(points: Sequence[tuple[float, float | None]]) -> list[list[tuple[float, float]]]:
    """The runs of a series between its missing (None or not finite) values."""
    runs: list[list[tuple[float, float]]] = [[]]
    for x, y in points:
        if y is None or not math.isfinite(y):
            if runs[-1]:
                runs.append([])
        else:
            runs[-1].append((x, y))
    return [run for run in runs if run]


def line_chart(
    series: Mapping[str, Sequence[tuple[float, float | None]]],
    *,
    title: str,
    x_label: str,
    y_label: str,
    x_range: tuple[float, float] | None = None,
    y_range: tuple[float, float] | None = None,
    x_ticks: bool | Sequence[float] = True,
    marks: Sequence[tuple[float, str]] = (),
) -> str:
    """One polyline with markers per series (``name -> [(x, y), ...]``), each series in its own
    ``<g class="series" data-series="name">`` and named in the legend; a point whose ``y`` is
    None (or not finite) breaks its line there. ``marks``: vertical dashed lines at ``x`` with a
    short label (e.g. where a schedule's stages end). ``x_range``/``y_range`` fix the axes
    (default: the data's, padded); ``x_ticks``: the tick values, or whether to draw them."""
    drawn = {name: [(x, y) for run in _segments(points) for x, y in run] for name, points in series.items()}
    xs = [x for points in series.values() for x, _ in points] + [x for x, _ in marks]
    ys = [y for points in drawn.values() for _, y in points]
    desc = "; ".join(
        f"{name}: " + ", ".join(f"({x:.2f}, {'missing' if y is None else f'{y:.3f}'})" for x, y in points)
        for name, points in series.items()
    )
    if marks:
        desc += "; dashed lines at " + ", ".join(f"{label} (x = {x:g})" for x, label in marks)
    parts, sx, sy = _frame(
        title,
        desc,
        x_label,
        y_label,
        x_range or _range(xs, 0.02),
        y_range or _range(ys),
        list(series),
        x_ticks=x_ticks,
    )
    for x, label in marks:
        parts.append(
            _line(sx(x), TOP, sx(x), HEIGHT - BOTTOM, "#888", ' stroke-dasharray="5 4" class="mark"')
        )
        parts.append(
            f'<text x="{sx(x) - 3:.1f}" y="{TOP + 10}" font-size="10" fill="#666" text-anchor="end">'
            f"{escape(label)}</text>"
        )
    for i, (name, points) in enumerate(series.items()):
        colour = PALETTE[i % len(PALETTE)]
        parts.append(f'<g class="series" data-series="{escape(name)}">')
        for run in _segments(points):
            path = " ".join(f"{sx(x):.1f},{sy(y):.1f}" for x, y in run)
            parts.append(f'<polyline points="{path}" fill="none" stroke="{colour}" stroke-width="1.8"/>')
            parts += [f'<circle cx="{sx(x):.1f}" cy="{sy(y):.1f}" r="2.5" fill="{colour}"/>' for x, y in run]
        parts.append("</g>")
    return "".join(parts) + "</svg>"


def box_chart(samples: Mapping[str, Sequence[float]], *, title: str, y_label: str) -> str:
    """One box per name: quartiles, median, whiskers at the 5th and 95th percentiles."""
    names = list(samples)
    stats = {n: np.percentile(np.asarray(samples[n], dtype=float), [5, 25, 50, 75, 95]) for n in names}
    desc = "; ".join(
        f"{n}: median {s[2]:.3f}, quartiles {s[1]:.3f} to {s[3]:.3f}, 5-95% {s[0]:.3f} to {s[4]:.3f}"
        for n, s in stats.items()
    )
    values = [v for s in stats.values() for v in s]
    parts, _, sy = _frame(
        title, desc, "model", y_label, (0, len(names)), _range(values), names, x_ticks=False
    )
    band = (WIDTH - RIGHT - LEFT) / max(1, len(names))
    for i, name in enumerate(names):
        low, q1, median, q3, high = stats[name]
        centre = LEFT + band * (i + 0.5)
        half = min(24.0, band * 0.3)
        colour = PALETTE[i % len(PALETTE)]
        parts.append(_line(centre, sy(low), centre, sy(high)))
        parts.append(
            f'<rect x="{centre - half:.1f}" y="{sy(q3):.1f}" width="{2 * half:.1f}" '
            f'height="{max(1.0, sy(q1) - sy(q3)):.1f}" fill="{colour}" fill-opacity="0.6" stroke="#333"/>'
        )
        parts.append(
            f'<line x1="{centre - half:.1f}" y1="{sy(median):.1f}" x2="{centre + half:.1f}" '
            f'y2="{sy(median):.1f}" stroke="#111" stroke-width="2"/>'
        )
        # the model's name under its box (short: the legend on the right has it whole)
        label = escape(name if len(name) <= 14 else name[:13] + "…")
        parts.append(
            f'<text class="box-label" x="{centre:.1f}" y="{HEIGHT - BOTTOM + 14:.1f}" font-size="10"'
            f' text-anchor="middle">{label}</text>'
        )
    zero = sy(0.0)
    if TOP <= zero <= HEIGHT - BOTTOM:
        parts.append(_line(LEFT, zero, WIDTH - RIGHT, zero, "#b00", ' stroke-dasharray="4 3"'))
    return "".join(parts) + "</svg>"


def scatter_chart(
    series: Mapping[str, Sequence[tuple[float, float]]], *, title: str, x_label: str, y_label: str
) -> str:
    """Points per series (``name -> [(x, y), ...]``)."""
    xs = [x for points in series.values() for x, _ in points]
    ys = [y for points in series.values() for _, y in points]
    desc = f"{len(xs)} points in {len(series)} series: " + ", ".join(
        f"{name} ({len(points)})" for name, points in series.items()
    )
    parts, sx, sy = _frame(title, desc, x_label, y_label, _range(xs), _range(ys), list(series))
    for i, points in enumerate(series.values()):
        colour = PALETTE[i % len(PALETTE)]
        parts += [
            f'<circle cx="{sx(x):.1f}" cy="{sy(y):.1f}" r="2" fill="{colour}" fill-opacity="0.6"/>'
            for x, y in points
        ]
    return "".join(parts) + "</svg>"
