"""Chart geometry for the HTML report: values in, SVG coordinates out. The template draws the elements."""

from __future__ import annotations

import math
import zlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from fleetbench.params import PRECISIONS

WIDTH, HEIGHT = 600, 280
LEFT, RIGHT, TOP, BOTTOM = 70, 150, 14, 62  # plot area margins (the legend sits on the right)
PALETTE = ("#1f77b4", "#ff7f0e", "#2ca02c", "#9467bd", "#8c564b", "#e377c2", "#17becf", "#bcbd22", "#7f7f7f")
KNOWN_PLATFORMS = ("SPR", "EMR", "ICX", "GNR", "CLX", "Genoa")
MAX_MARKERS = 150  # points per line drawn as dots; longer lines are drawn as the line alone


@dataclass(frozen=True)
class Tick:
    pos: float
    label: str
    second_line: str = ""  # the time under a trend chart's date


@dataclass(frozen=True)
class Bar:
    x: float
    y: float
    width: float
    height: float
    color: str
    title: str
    whisker: float | None = None  # y of a second value drawn above the bar (latency p99)


@dataclass(frozen=True)
class Mark:
    x: float
    y: float
    title: str


@dataclass(frozen=True)
class Line:
    name: str
    color: str
    points: str  # SVG polyline points
    marks: tuple[Mark, ...]
    changes: tuple[Mark, ...]  # where a change point starts a new level


@dataclass(frozen=True)
class Chart:
    title: str
    unit: str
    x_ticks: tuple[Tick, ...]
    y_ticks: tuple[Tick, ...]
    legend: tuple[tuple[str, str], ...]  # (name, color)
    bars: tuple[Bar, ...] = ()
    lines: tuple[Line, ...] = ()
    width: int = WIDTH
    height: int = HEIGHT
    left: int = LEFT
    right: int = WIDTH - RIGHT
    top: int = TOP
    bottom: int = HEIGHT - BOTTOM

    @property
    def data_points(self) -> int:
        return len(self.bars) + sum(len(line.marks) for line in self.lines)


def nice_ticks(high: float, count: int = 5) -> list[float]:
    """0 .. a round number >= high, in about `count` round steps."""
    if high <= 0:
        return [0.0, 1.0]
    raw = high / count
    magnitude = 10 ** math.floor(math.log10(raw))
    step = next(m * magnitude for m in (1, 2, 2.5, 5, 10) if m * magnitude >= raw)
    return [i * step for i in range(math.ceil(high / step - 1e-9) + 1)]


def _label(value: float) -> str:
    return f"{value:g}" if abs(value) < 1e5 else f"{value:.3g}"


def _y_axis(high: float) -> tuple[tuple[Tick, ...], float]:
    ticks = nice_ticks(high)
    scale = (HEIGHT - BOTTOM - TOP) / ticks[-1]
    return tuple(Tick(round(HEIGHT - BOTTOM - t * scale, 1), _label(t)) for t in ticks), scale


def color(name: str) -> str:
    """The same colour for a platform (or precision) in every chart."""
    for known in (KNOWN_PLATFORMS, PRECISIONS):
        if name in known:
            return PALETTE[known.index(name)]
    return PALETTE[zlib.crc32(name.encode()) % len(PALETTE)]


def bar_chart(title: str, unit: str, values: Mapping[str, Mapping[str, tuple[float, float | None]]],
              series: Sequence[str]) -> Chart:
    """Grouped bars: values[category][series] = (value, optional whisker value)."""
    high = max(max(v, w or 0) for group in values.values() for v, w in group.values())
    y_ticks, scale = _y_axis(high)
    slot = (WIDTH - RIGHT - LEFT) / max(len(values), 1)
    width = slot * 0.8 / max(len(series), 1)
    bars, x_ticks = [], []
    for i, (category, group) in enumerate(values.items()):
        x0 = LEFT + i * slot + slot * 0.1
        x_ticks.append(Tick(round(LEFT + (i + 0.5) * slot, 1), category))
        for j, name in enumerate(s for s in series if s in group):
            value, whisker = group[name]
            tip = f"{category} {name}: {value:.2f} {unit}" + (f" (p99 {whisker:.2f})" if whisker is not None else "")
            bars.append(Bar(round(x0 + j * width, 1), round(HEIGHT - BOTTOM - value * scale, 1), round(width * 0.9, 1),
                            round(value * scale, 1), color(name), tip,
                            None if whisker is None else round(HEIGHT - BOTTOM - whisker * scale, 1)))
    legend = tuple((name, color(name)) for name in series)
    return Chart(title, unit, tuple(x_ticks), y_ticks, legend, bars=tuple(bars))


def time_labels(times: Sequence[str]) -> list[tuple[str, str]]:
    """Run start times (``2025-01-31T02:00:00Z``) as (date, time) axis labels: the time is shown when runs
    share a day (nightly runs may be several a day), to the second when they share a minute."""
    for digits in (0, 5, 8):
        labels = [(t[:10], t[11:11 + digits]) for t in times]
        if len(set(labels)) == len(set(times)):
            return labels
    return [(t[:10], t[11:]) for t in times]


def trend_chart(title: str, unit: str, runs: Sequence[tuple[str, str]],
                lines: Mapping[str, Sequence[tuple[int, float]]], changes: Mapping[str, Sequence[int]]) -> Chart:
    """Lines over runs: runs = [(run_id, started_at)] in order; lines[name] = [(run index, value)];
    changes[name] = run indices where a new level starts."""
    high = max(v for points in lines.values() for _, v in points)
    y_ticks, scale = _y_axis(high)
    step = (WIDTH - RIGHT - LEFT) / max(len(runs) - 1, 1)

    def x(i: int) -> float:
        return round(LEFT + i * step, 1)

    def y(v: float) -> float:
        return round(HEIGHT - BOTTOM - v * scale, 1)

    drawn = []
    for name, points in lines.items():
        value_at = dict(points)
        marks = tuple(Mark(x(i), y(v), f"{name} {runs[i][0]} ({runs[i][1]}): {v:.2f} {unit}") for i, v in points)
        moved = tuple(Mark(x(i), y(value_at[i]), f"{name}: new level from run {runs[i][0]}") for i in changes[name])
        drawn.append(Line(name, color(name), " ".join(f"{m.x},{m.y}" for m in marks),
                          marks if len(marks) <= MAX_MARKERS else (), moved))
    every = max(1, math.ceil(len(runs) / 6))
    labels = time_labels([started for _, started in runs])
    x_ticks = tuple(Tick(x(i), *labels[i]) for i in range(0, len(runs), every))
    legend = tuple((name, color(name)) for name in lines)
    return Chart(title, unit, x_ticks, y_ticks, legend, lines=tuple(drawn))
