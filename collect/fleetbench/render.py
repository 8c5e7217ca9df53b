"""Render a :class:`~fleetbench.summary.Summary`: terminal tables, the WSF Key KPI block, kpi.csv, report.md.

The Key KPI block keeps the reference workload's shape (``*Throughput (samples/sec): ...``) so its users'
scripts still read it. Its numbers are the payload's, never derived here: throughput is the case's
throughput summed over its instances (as the reference sums its instance lines), latencies are the
measured percentiles, accuracy is percent correct. The reference prints one block for one case on one
host; a fleet run prints one block per passed host x case, each preceded by ``##HOST``/``##CASE``/
``##PLATFORM``/``##PRECISION`` lines saying whose it is. Nothing is summed across hosts: hosts differ in
platform and configuration, so a fleet total would compare nothing; the per-platform tables are the
comparison. When no case passed the block says so instead of printing numbers.
"""

from __future__ import annotations

import csv
import html
import io
from collections.abc import Sequence
from pathlib import Path

from jinja2 import Environment, FileSystemLoader, StrictUndefined
from markupsafe import Markup

from fleetbench.summary import COLUMNS, Row, Summary

NM_NOTE = "n/m: random-weights model, accuracy not meaningful"
FLAG_NOTE = "(!): accuracy guard: more than 1 point below fp32 on the same model"
MISMATCH_TITLE = "isa_mismatch: ran with require_isa=false on hosts lacking the precision's ISA (never compared)"
MISMATCH_HEADERS = ("platform", "host", "case", "precision", "missing ISA", "throughput (samples/s)",
                    "latency p50 (ms)", "accuracy (%)", "status")
RULE = "#" + "=" * 48
TEMPLATES = Path(__file__).parent / "templates"
TEXT_HEADERS = ("platform", "host", "case", "precision", "throughput (samples/s)", "latency p50 (ms)",
                "latency p99 (ms)", "accuracy (%)", "status")
NUMERIC = frozenset({4, 5, 6, 7})


def fmt_number(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def fmt_accuracy(row: Row) -> str:
    if row.accuracy is None:
        return "-"
    return fmt_number(row.accuracy) + ("" if row.accuracy_meaningful else " (n/m)") + (" (!)" if row.accuracy_flag
                                                                                     else "")


def fmt_status(row: Row) -> str:
    return f"{row.status}: {row.reason}" if row.status != "passed" and row.reason else row.status


def fmt_counts(summary: Summary) -> str:
    return ", ".join(f"{n} {status}" for status, n in summary.counts.items() if n) or "no cases"


def text_table(headers: Sequence[str], rows: Sequence[Sequence[str]], right: frozenset[int]) -> str:
    widths = [max([len(headers[i]), *(len(row[i]) for row in rows)]) for i in range(len(headers))]

    def line(cells: Sequence[str]) -> str:
        pairs = enumerate(zip(cells, widths, strict=True))
        padded = (cell.rjust(w) if i in right else cell.ljust(w) for i, (cell, w) in pairs)
        return "  ".join(padded).rstrip()

    return "\n".join([line(headers), line(["-" * w for w in widths]), *(line(row) for row in rows)])


def _text_cells(row: Row) -> list[str]:
    return [row.platform, row.host, row.case, row.precision or "-", fmt_number(row.throughput),
            fmt_number(row.latency_p50_ms), fmt_number(row.latency_p99_ms), fmt_accuracy(row), fmt_status(row)]


def platform_tables(summary: Summary) -> str:
    """One table per platform, then the isa_mismatch rows apart."""
    parts = [f"== {platform} ==\n" + text_table(TEXT_HEADERS, [_text_cells(r) for r in rows], NUMERIC)
             for platform, rows in summary.platforms()]
    mismatches = summary.isa_mismatches()
    if mismatches:
        cells = [[r.platform, r.host, r.case, r.precision or "-", r.isa_mismatch or "-", fmt_number(r.throughput),
                  fmt_number(r.latency_p50_ms), fmt_accuracy(r), fmt_status(r)] for r in mismatches]
        parts.append(f"== {MISMATCH_TITLE} ==\n" + text_table(MISMATCH_HEADERS, cells, frozenset({5, 6, 7})))
    return "\n\n".join(parts)


def _kpi_lines(row: Row) -> list[str]:
    lines = [f"*Throughput (samples/sec): {fmt_number(row.throughput)}"] if row.throughput is not None else []
    if row.latency_p50_ms is not None:
        lines.append(f"*P50 Latency (ms): {fmt_number(row.latency_p50_ms)}")
    if row.latency_p99_ms is not None:
        lines.append(f"*P99 Latency (ms): {fmt_number(row.latency_p99_ms)}")
    if row.accuracy is not None:
        lines.append(f"*Accuracy (%): {fmt_accuracy(row)}")
    return lines


def wsf_block(summary: Summary) -> str:
    """The reference's Key KPI block: one per passed host x case (in table order), or one saying none passed."""
    header = [RULE, "#Key KPI", RULE]
    passed = [row for _, rows in summary.platforms() for row in rows if row.status == "passed"]  # no isa_mismatch
    if not passed:
        return "\n".join([*header, "#No case passed: no KPI to report."])
    return "\n\n".join(
        "\n".join([f"##HOST: {row.host}", f"##CASE: {row.case}", f"##PLATFORM: {row.platform}",
                   f"##PRECISION: {row.precision}", *header, *_kpi_lines(row)])
        for row in passed
    )


def render_text(summary: Summary) -> str:
    """What ``fleetbench report`` prints: verdict, tables per platform, footnote, Key KPI blocks."""
    parts = [f"fleetbench run {summary.run_id}: {summary.status} ({fmt_counts(summary)})"]
    if summary.rows:
        parts.append(platform_tables(summary))
    if summary.has_unmeaningful_accuracy:
        parts.append(NM_NOTE)
    if summary.has_accuracy_flags:
        parts.append(FLAG_NOTE)
    parts.append(wsf_block(summary))
    return "\n\n".join(parts) + "\n"


def _csv_value(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return str(value).lower()
    return str(value)


def render_csv(summary: Summary) -> str:
    """kpi.csv: one line per host x case, the summary's row fields, prefixed with the run id."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["run_id", *COLUMNS])
    for row in summary.rows:
        writer.writerow([summary.run_id, *(_csv_value(getattr(row, name)) for name in COLUMNS)])
    return out.getvalue()


def md_cell(text: str | None) -> Markup:
    """Untrusted text as one Markdown table cell: HTML escaped, pipes escaped (text is already one line)."""
    escaped = html.escape(text or "-", quote=False).replace("|", "\\|")
    return Markup(escaped)  # noqa: S704 - escaped on the line above; quotes need no escaping in Markdown


def environment() -> Environment:
    env = Environment(loader=FileSystemLoader(TEMPLATES), autoescape=True, undefined=StrictUndefined,
                      trim_blocks=True, lstrip_blocks=True, keep_trailing_newline=True)
    env.filters.update(cell=md_cell, num=fmt_number, accuracy=fmt_accuracy)
    return env


def render_markdown(summary: Summary) -> str:
    """report.md, from templates/report.md.j2."""
    template = environment().get_template("report.md.j2")
    return template.render(summary=summary, counts=fmt_counts(summary), nm_note=NM_NOTE, flag_note=FLAG_NOTE,
                           mismatch_title=MISMATCH_TITLE, wsf=wsf_block(summary))
