"""Turn per-iteration times of each instance into the KPIs (stdlib only)."""

from __future__ import annotations

from typing import Any


def percentile(values: list[float], q: float) -> float:
    """Linear interpolation between closest ranks (numpy's default)."""
    ordered = sorted(values)
    pos = (len(ordered) - 1) * q / 100
    lo = int(pos)
    hi = min(lo + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (pos - lo)


def latency_ms(seconds: list[float]) -> dict[str, float]:
    ms = [s * 1000 for s in seconds]
    return {"mean": sum(ms) / len(ms), "p50": percentile(ms, 50), "p90": percentile(ms, 90),
            "p99": percentile(ms, 99), "p999": percentile(ms, 99.9)}


def summarize(results: list[dict[str, Any]]) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The kpi object and the per-instance records.

    Each instance's throughput is its samples timed / the sum of its iteration times; the KPI throughput is
    their sum (the instances run concurrently). ``overlap`` is the share of the whole timed window during
    which every instance was in its timed phase.
    """
    instances = []
    for r in sorted(results, key=lambda r: r["index"]):
        measured = sum(r["iteration_s"])
        start, end = r["window"]
        instances.append({
            "index": r["index"], "cpus": r["cpus"], "throughput": r["samples_timed"] / measured,
            "samples_timed": r["samples_timed"], "time_measured_s": measured,
            "iterations_timed": len(r["iteration_s"]), "wall_s": end - start,
            "latency_ms": latency_ms(r["iteration_s"]),
        })
    starts = [r["window"][0] for r in results]
    ends = [r["window"][1] for r in results]
    wall = max(ends) - min(starts)
    kpi = {
        "throughput": sum(i["throughput"] for i in instances),
        "latency_ms": latency_ms([s for r in results for s in r["iteration_s"]]),
        "samples_timed": sum(i["samples_timed"] for i in instances),
        "time_measured_s": max(i["time_measured_s"] for i in instances),
        "iterations_timed": sum(i["iterations_timed"] for i in instances),
        "wall_s": wall,
        "overlap": max(0.0, min(ends) - max(starts)) / wall if wall > 0 else 1.0,
    }
    return kpi, instances
