"""Untrusted WSF logs: `fleetbench import-wsf` survives hostile benchmark_*.log files.

A log is read line by line with a size cap checked before reading, so a huge or binary log costs bounded
time and memory; a line it cannot read is listed (the first MAX_PROBLEMS of a run) and never used.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fleetbench.cli import main
from fleetbench.db import Database
from fleetbench.history import load_samples
from fleetbench.wsf_import import MAX_PROBLEMS
from tests.history.test_wsf import kpi_lines, params_dump
from tests.security.test_fuzz_results import PEAK_MIB, RSS_BOUND_MIB, SECONDS_BOUND

MIB = 1024 * 1024
GOOD = params_dump(INSTANCE_NUMBER="1") + kpi_lines(406.1, 2.41, 3.87)  # one instance, one Throughput line


def _junk(path: Path, mib: int) -> None:
    block = os.urandom(MIB)
    with path.open("wb") as fh:
        for _ in range(mib):
            fh.write(block)


# name -> (what to write into <run>/pod/benchmark_0.log, what the output must say)
HOSTILE = {
    "junk 200 MB": (lambda p: _junk(p, 200), "200 MiB, over the 64 MiB a log may have; not read"),
    "binary junk 2 MB": (lambda p: _junk(p, 2), "no usable MODE line"),
    "8 MB of unreadable KPI lines": (lambda p: p.write_text(GOOD + "Throughput: fast sentences/s\n" * 280_000),
                                     f"more (only the first {MAX_PROBLEMS} are listed)"),
    "3 MB line": (lambda p: p.write_text(GOOD + "Throughput: " + "9" * 3 * MIB + " sentences/s\n"),
                  "line over 1000 characters, not read"),
    "batch size of 5000 digits": (lambda p: p.write_text(params_dump(BATCH_SIZE="9" * 5000) + kpi_lines(1, 2, 3)),
                                  "line over 1000 characters, not read"),
    "batch size of 900 digits": (lambda p: p.write_text(params_dump(BATCH_SIZE="9" * 900) + kpi_lines(1, 2, 3)),
                                 "batch_size="),
    "invalid UTF-8 in a value": (lambda p: p.write_bytes(GOOD.replace("amx_bfloat16", "amx_\udcff").encode(
        "utf-8", "surrogateescape")), "precision='amx_\ufffd' is not allowed"),
    "NaN, Infinity, 1e999": (lambda p: p.write_text(GOOD + "Throughput: NaN sentences/s\nP50 Latency inf ms\n"
                                                    "Throughput: 1e999 sentences/s\n"),
                             "cannot read 'Throughput: 1e999"),
    "accuracy 1e999": (lambda p: p.write_text(params_dump(MODE="accuracy") + "eval_accuracy = 1e999\n"),
                       "expected a fraction 0..1"),
    "NUL bytes and escapes": (lambda p: p.write_text(GOOD.replace("MODE: throughput", "MODE: \x00\x1b[2Jthroughput")),
                              "mode='\\x00\\x1b[2Jthroughput' is not allowed"),
}

_IMPORT = PEAK_MIB + """
from fleetbench.cli import main
reset()
base, start = peak(), time.monotonic()
code = main(sys.argv[1:])
print(json.dumps({"code": code, "seconds": time.monotonic() - start, "rss_growth_mib": peak() - base}))
"""


@pytest.mark.parametrize("name", HOSTILE)
def test_a_hostile_log_is_reported_in_bounded_time_and_memory(tmp_path: Path, name: str):
    write, expected = HOSTILE[name]
    log = tmp_path / "wsf" / "run" / "pod" / "benchmark_0.log"
    log.parent.mkdir(parents=True)
    write(log)
    argv = ["import-wsf", str(tmp_path / "wsf"), "--db", str(tmp_path / "h.sqlite"), "--results-dir",
            str(tmp_path / "results")]
    proc = subprocess.run([sys.executable, "-c", _IMPORT, *argv], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, f"{name}: import-wsf crashed:\n{proc.stderr[-3000:]}"
    *output, last = proc.stdout.splitlines()
    got = json.loads(last)
    print(f"{name}: exit {got['code']} in {got['seconds']:.2f} s, +{got['rss_growth_mib']} MiB")
    assert got["code"] in (0, 1), proc.stderr
    (sample,) = _samples(tmp_path / "h.sqlite")
    assert sample.status in ("passed", "failed")
    assert expected in "\n".join([*output, sample.reason]), (output, sample.reason)
    assert len(output) <= MAX_PROBLEMS + 2 and all(len(line) < 400 for line in output)
    assert got["seconds"] < SECONDS_BOUND and got["rss_growth_mib"] < RSS_BOUND_MIB, got


def test_fifos_devices_and_link_loops_are_not_read(tmp_path: Path, capsys):
    """None of these is a log to read: reading one would hang (a FIFO) or never end (/dev/zero)."""
    run = tmp_path / "wsf" / "run"
    (run / "pod").mkdir(parents=True)
    (run / "pod" / "benchmark_0.log").write_text(GOOD)
    os.mkfifo(run / "pod" / "benchmark_1.log")
    (run / "pod" / "benchmark_2.log").symlink_to("/dev/zero")
    (run / "pod" / "loop").symlink_to(run)
    assert main(["import-wsf", str(tmp_path / "wsf"), "--db", str(tmp_path / "h.sqlite"), "--results-dir",
                 str(tmp_path / "results")]) == 0, capsys.readouterr()
    (sample,) = _samples(tmp_path / "h.sqlite")
    assert (sample.status, sample.throughput) == ("passed", 406.1)


def _samples(url: Path) -> list:
    database = Database(str(url))
    try:
        return load_samples(database)
    finally:
        database.close()


# -- fuzzing: logs made of the lines import-wsf reads, with hostile values, and junk ---------------------

NUMBERS = st.sampled_from(["1", "0", "-1", "406.1", "0.9106", "1e999", "1e-999", "NaN", "inf", "9" * 400, "1.", ".5",
                           "1e5", "0x10", "١٢٣", "", " "])
KEYS = st.sampled_from(["MODE", "PRECISION", "BATCH_SIZE", "STEPS", "WARMUP_STEPS", "MAX_SEQ_LENGTH",
                        "CORES_PER_INSTANCE", "INSTANCE_NUMBER", "WEIGHT_SHARING", "CASE_TYPE", "ONEDNN_VERBOSE",
                        "PLATFORM", "TOPOLOGY", "FUNCTION", "DATA_TYPE"])
VALUES = st.sampled_from(["throughput", "latency", "accuracy", "amx_bfloat16", "avx_fp32", "True", "False", "auto",
                          "gated", "SPR", "\x00", "../../x"]) | NUMBERS | st.text(max_size=12)
LINES = st.one_of(
    st.builds(lambda k, v: f"{k}: {v}", KEYS, VALUES),
    st.builds(lambda n: f"Throughput: {n} sentences/s", NUMBERS),
    st.builds(lambda p, n: f"{p} Latency {n} ms", st.sampled_from(["P50", "P90", "P99"]), NUMBERS),
    st.builds(lambda n: f"  eval_accuracy = {n}", NUMBERS),
    st.builds(lambda v: f"Torch_Version: {v}", VALUES),
    st.text(max_size=40),
)
LOGS = st.lists(st.lists(LINES, max_size=30).map(lambda lines: "\n".join(lines).encode("utf-8", "surrogatepass"))
                | st.binary(max_size=300), min_size=1, max_size=3)


@settings(max_examples=150, deadline=timedelta(seconds=10), derandomize=True, database=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(logs=LOGS, prefix=st.sampled_from([b"", GOOD.encode()]))
def test_any_log_is_imported_or_reported_never_raised(tmp_path_factory, logs: list[bytes], prefix: bytes):
    root = tmp_path_factory.mktemp("wsf")
    for i, data in enumerate(logs):
        path = root / "logs" / f"pod-{i}" / f"benchmark_{i}.log"
        path.parent.mkdir(parents=True)
        path.write_bytes(prefix + b"\n" + data if i == 0 else data)
    code = main(["import-wsf", str(root / "logs"), "--db", str(root / "h.sqlite"), "--results-dir",
                 str(root / "results")])
    assert code in (0, 1)
    (sample,) = _samples(root / "h.sqlite")
    assert sample.status in ("passed", "failed")
    if sample.status == "passed":
        assert sample.excluded or all(v is None or 0 <= v < float("inf")
                                      for v in (sample.throughput, sample.latency_p50, sample.accuracy))
