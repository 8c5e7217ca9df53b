"""Robust statistics for noisy benchmark series: noise, change points, and the verdicts built on them.

A series is one KPI of one host (or platform) x case x precision x batch size x stack, one value per run,
oldest first. Levels are medians (an outlier does not move them); the noise is estimated from run-to-run
differences (von Neumann's estimator: a level shift changes one difference, not the spread of all of
them); a change must be both large (``MIN_EFFECT``) and clear of the noise (``MIN_SCORE`` standard
errors). The defaults were chosen by simulation (scripts/bench_history.py) and are documented in
docs/results.md.
"""

from __future__ import annotations

import itertools
import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass

MIN_EFFECT = 0.05  # relative change below which nothing is reported
MIN_SCORE = 4.5  # standard errors a change of level must clear (the search looks at every split)
COMPARE_SCORE = 3.0  # standard errors between two single runs for `compare` (one look, no search)
NOISE_FLOOR = 0.01  # relative run-to-run noise never assumed below this
DEFAULT_NOISE = 0.02  # relative noise assumed while a series is too short to measure it
MIN_SEGMENT = 3  # fewest runs between two change points (the newest level may be shorter)
MIN_HISTORY = 5  # earlier runs needed before the newest one is judged
TRUSTED_HISTORY = 10  # earlier runs from which the measured noise is trusted even when below DEFAULT_NOISE
WINDOW = 30  # runs a check looks back over
RECENT = 15  # a change that started more runs ago than this is old news, not reported again
ACCURACY_DROP = 0.5  # accuracy points (about 4 of SST-2 dev's 872 sentences): a drop this large always regresses


def median(values: Sequence[float]) -> float:
    return statistics.median(values)


def noise(values: Sequence[float]) -> float:
    """Relative standard deviation of run-to-run noise: RMS of successive differences / sqrt(2), over the level.

    An outlier inflates it (the check gets more cautious, never more eager); a level shift barely does.
    """
    level = abs(median(values)) if values else 0.0
    if len(values) < MIN_HISTORY or level == 0:
        return DEFAULT_NOISE
    mean_square = statistics.fmean([(b - a) ** 2 for a, b in itertools.pairwise(values)])
    return max(NOISE_FLOOR, math.sqrt(mean_square / 2) / level)


def _median_variance(n: int) -> float:
    """Variance of the median of n values, in units of the values' variance (pi/2n for n > 2)."""
    return 1 / n if n <= 2 else math.pi / 2 / n


def standard_error(n_before: int, n_after: int, sigma: float) -> float:
    """Relative standard error of the difference of two medians of n_before and n_after runs."""
    return sigma * math.sqrt(_median_variance(n_before) + _median_variance(n_after))


def band(history: Sequence[float]) -> float:
    """Relative change between two single runs that is beyond noise, given the history of the series."""
    return max(MIN_EFFECT, COMPARE_SCORE * standard_error(1, 1, noise(history)))


def _best_split(seg: Sequence[float], sigma: float, min_after: int, min_effect: float) -> int | None:
    """Where in seg a new level starts, if anywhere.

    The split is placed where the means of the two sides differ most, weighted by sqrt(n_l n_r / n) (the
    CUSUM statistic, which pins a step to the run it happened); whether it is a change is then judged on
    the medians of the two sides, so an outlier can place a candidate but never make it a change.
    """
    n, total = len(seg), math.fsum(seg)
    prefix = list(itertools.accumulate(seg))

    def cusum(k: int) -> float:
        return abs(prefix[k - 1] / k - (total - prefix[k - 1]) / (n - k)) * math.sqrt(k * (n - k))

    k = max(range(MIN_SEGMENT, n - min_after + 1), key=cusum)
    before, after = median(seg[:k]), median(seg[k:])
    if before == 0:
        return None
    change = after / before - 1
    clear = abs(change) >= min_effect and abs(change) >= MIN_SCORE * standard_error(k, n - k, sigma)
    return k if clear else None


def _segment(values: Sequence[float], lo: int, hi: int, sigma: float, min_effect: float, tail: bool,
             out: list[int]) -> None:
    min_after = 1 if tail else MIN_SEGMENT
    if hi - lo < MIN_SEGMENT + min_after:
        return
    split = _best_split(values[lo:hi], sigma, min_after, min_effect)
    if split is None:
        return
    out.append(lo + split)
    _segment(values, lo, lo + split, sigma, min_effect, False, out)
    _segment(values, lo + split, hi, sigma, min_effect, tail, out)


def change_points(values: Sequence[float], min_effect: float = MIN_EFFECT, sigma: float | None = None) -> list[int]:
    """Indices where a new level starts, oldest first (binary segmentation on medians), judged against the
    noise `sigma` (default: measured on `values`).

    Inner segments span at least MIN_SEGMENT runs, so a lone outlier is not a change; the newest segment
    may be a single run, so a clear drop is seen the night it happens.
    """
    out: list[int] = []
    _segment(values, 0, len(values), noise(values) if sigma is None else sigma, min_effect, True, out)
    return sorted(out)


@dataclass(frozen=True)
class Verdict:
    kind: str  # "regression", "improvement", "stable" or "insufficient" (too little history)
    before: float | None  # the baseline level
    after: float  # the newest level (the newest value for accuracy)
    change: float | None  # relative change (accuracy: points)
    since: int | None  # index in the series where the new level starts


def judge(values: Sequence[float], higher_is_better: bool, window: int = WINDOW, recent: int = RECENT,
          min_effect: float = MIN_EFFECT) -> Verdict:
    """The newest value of a performance series against its history."""
    series = list(values[-window:])
    offset = len(values) - len(series)
    if len(series) - 1 < MIN_HISTORY:
        return Verdict("insufficient", None, series[-1], None, None)
    # The noise comes from the runs before the newest: in a short history, the step being judged would
    # otherwise dominate the noise estimate and hide itself (6 equal nights then a 67% drop: "stable"). A
    # few runs measure it poorly (often too low), so below TRUSTED_HISTORY it is at least DEFAULT_NOISE.
    sigma = noise(series[:-1])
    if len(series) - 1 < TRUSTED_HISTORY:
        sigma = max(sigma, DEFAULT_NOISE)
    points = change_points(series, min_effect, sigma=sigma)
    if not points or points[-1] < len(series) - recent:
        start = points[-1] if points else 0
        return Verdict("stable", median(series[start:-1]), series[-1], None, None)
    latest = points[-1]
    before = median(series[points[-2] if len(points) > 1 else 0:latest])
    after = median(series[latest:])
    change = after / before - 1
    kind = "improvement" if (change > 0) == higher_is_better else "regression"
    return Verdict(kind, before, after, change, offset + latest)


def judge_accuracy(values: Sequence[float], window: int = WINDOW, drop: float = ACCURACY_DROP) -> Verdict:
    """The newest accuracy against the median of the earlier ones: any drop of `drop` points regresses."""
    history, newest = list(values[-window - 1:-1]), values[-1]
    if not history:
        return Verdict("insufficient", None, newest, None, None)
    before = median(history)
    change = newest - before
    kind = "regression" if change <= -drop else "improvement" if change >= drop else "stable"
    return Verdict(kind, before, newest, change, len(values) - 1 if kind != "stable" else None)
