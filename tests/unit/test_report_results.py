"""fleetbench.results: untrusted result files become checked records, never crashes, never numbers."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from jsonschema import Draft202012Validator

from fleetbench.results import (
    MAX_BYTES,
    NO_CASE,
    Expected,
    RunError,
    load_records,
    load_result,
    load_run,
    result_schema,
)

CASE = "inference-throughput"


@pytest.fixture
def folder(make_run):
    return make_run({"h1": [CASE]})


def expected(folder, host: str = "h1", case: str = CASE, **params: Any) -> Expected:
    return Expected(folder.run_id, host, case, params)


def test_the_realistic_fixture_is_valid(folder):
    Draft202012Validator(result_schema()).validate(folder.doc("h1"))


def test_good_result_passes_with_its_numbers(folder):
    path = folder.write_result("h1")
    record = load_result(path, expected(folder, precision="amx_bfloat16"))
    assert (record.status, record.reason) == ("passed", "")
    assert record.result is not None and record.result["kpi"]["throughput"] == 812.345


def test_skipped_and_failed_results_keep_their_reason(folder):
    reason = "precision amx_bfloat16 needs AMX; this host has no amx_bf16"
    path = folder.write_result("h1", status="skipped", reason=reason, kpi=None)
    assert (load_result(path, expected(folder)).status, load_result(path, expected(folder)).reason) == (
        "skipped", reason)


def test_reason_from_a_host_is_flattened_to_one_safe_line(folder):
    path = folder.write_result("h1", status="failed", reason="boom\n\x1b[31mred\x1b[0m\u202egnp.\ttail", kpi=None)
    record = load_result(path, expected(folder))
    assert record.status == "failed"
    assert record.reason == "boom [31mred [0m gnp. tail"


def _doc_bytes(folder, mode: str = "throughput", **top: Any) -> bytes:
    """h1's good result with top-level fields replaced."""
    return json.dumps({**folder.doc("h1", mode=mode), **top}, indent=1).encode()


def _without(key: str):
    def build(folder) -> bytes:
        doc = folder.doc("h1")
        del doc[key]
        return json.dumps(doc).encode()
    return build


def _kpi(**kpi: Any):
    def build(folder) -> bytes:
        doc = folder.doc("h1")
        doc["kpi"].update(kpi)
        return json.dumps(doc).encode()
    return build


BAD_FILES = {
    "truncated": (lambda f: _doc_bytes(f)[:300], "result.json is truncated (ends at line"),
    "invalid JSON": (lambda f: b'{"status": "passed",, }', "result.json is not valid JSON: Expecting"),
    "empty": (lambda f: b"  \n", "result.json is empty"),
    "missing status": (_without("status"), "result.json invalid: 'status' is a required property"),
    "NaN": (lambda f: _doc_bytes(f).replace(b"812.345", b"NaN"), "result.json is not valid JSON: NaN is not allowed"),
    "Infinity": (lambda f: _doc_bytes(f).replace(b"812.345", b"-Infinity"), "-Infinity is not allowed"),
    "overflowing number": (lambda f: _doc_bytes(f).replace(b"812.345", b"1e999"), "number 1e999 is out of range"),
    "huge file": (lambda f: _doc_bytes(f) + b" " * MAX_BYTES, "result.json too large (over 4 MiB)"),
    "invalid UTF-8": (lambda f: _doc_bytes(f, reason="caf\u00e9").replace(b"\\u00e9", b"\xe9"),
                      "result.json is not valid UTF-8 (byte 0xe9 at offset"),
    "duplicate key": (lambda f: _doc_bytes(f).replace(b'"status": "passed"', b'"status": "failed", "status": "passed"'),
                      "result.json is not valid JSON: duplicate key 'status'"),
    "lone surrogate": (lambda f: _doc_bytes(f, reason="\\ud800").replace(b"\\\\ud800", b"\\ud800"), "lone surrogate"),
    "deep nesting": (lambda f: b"[" * 100_000, "result.json is nested too deeply"),
    "not an object": (lambda f: b"[1, 2]", "result.json invalid: [1, 2] is not of type 'object'"),
    "wrong type": (_kpi(throughput="fast"), "result.json invalid at kpi.throughput: 'fast' is not of type"),
    "negative number": (_kpi(throughput=-1), "result.json invalid at kpi.throughput: -1 is less than the minimum of 0"),
    "wrong schema version": (lambda f: _doc_bytes(f, schema_version=2), "result.json invalid at schema_version"),
    "other host": (lambda f: _doc_bytes(f, host="h2"), "result.json is for host 'h2', not 'h1'"),
    "other case": (lambda f: _doc_bytes(f, case="inference-latency"),
                   "result.json is for case 'inference-latency', not 'inference-throughput'"),
    "other run": (lambda f: _doc_bytes(f, run_id="old-run"), "result.json is for run_id 'old-run', not"),
    "passed without kpi": (lambda f: _doc_bytes(f, kpi=None), "result.json passed without kpi"),
    "passed without headline": (_kpi(throughput=None), "result.json passed without kpi.throughput (mode throughput)"),
    "percentiles out of order": (_kpi(latency_ms={"p50": 5.0, "p99": 1.0}), "percentiles are out of order"),
    "mode not the case's": (lambda f: _doc_bytes(f, mode="latency"),
                            "result.json ran mode 'latency', but the case is 'inference-throughput'"),
    "skipped without reason": (lambda f: _doc_bytes(f, status="skipped", reason=" ", kpi=None),
                               "result.json says skipped without a reason"),
}


@pytest.mark.parametrize("name", BAD_FILES)
def test_bad_result_fails_with_a_reason_naming_the_problem(folder, name):
    build, reason = BAD_FILES[name]
    path = folder.write_raw("h1", CASE, build(folder))
    record = load_result(path, expected(folder))
    assert record.status == "failed"
    assert reason in record.reason
    assert record.result is None
    assert "\n" not in record.reason and len(record.reason) <= 300


def test_result_of_another_precision_than_asked_fails(folder):
    path = folder.write_result("h1", params={**folder.doc("h1")["params"], "precision": "avx_fp32"})
    record = load_result(path, expected(folder, precision="amx_bfloat16"))
    assert record.reason == "result.json ran precision 'avx_fp32', but the run asked for 'amx_bfloat16'"


def test_missing_result_fails(folder):
    record = load_result(folder.path / "hosts" / "h1" / CASE / "result.json", expected(folder))
    assert (record.status, record.reason) == ("failed", "result.json missing")


def test_a_directory_or_fifo_is_not_a_result(folder):
    path = folder.host_dir("h1") / CASE / "result.json"
    path.mkdir(parents=True)
    assert load_result(path, expected(folder)).reason == "result.json is not a regular file"
    path.rmdir()
    os.mkfifo(path)
    assert load_result(path, expected(folder)).reason == "result.json is not a regular file"


def test_missing_result_takes_the_host_status(make_run):
    folder = make_run({"h1": [CASE, "inference-latency"], "h2": [CASE]})
    folder.write_status("h1", "unreachable", "Failed to connect to the host via ssh: timed out")
    folder.write_status("h2", "failed", "apt: no\ninstallation candidate", step="Provision the payload stack")
    folder.write_result("h1", CASE)
    records = load_records(folder.path, load_run(folder.path))
    assert [(r.host, r.case, r.status, r.reason) for r in records] == [
        ("h1", CASE, "passed", ""),
        ("h1", "inference-latency", "unreachable", "Failed to connect to the host via ssh: timed out"),
        ("h2", CASE, "failed", "Provision the payload stack: apt: no installation candidate"),
    ]


def test_invalid_status_json_fails_the_host(folder):
    (folder.host_dir("h1") / "status.json").write_text('{"status": "exploded", "reason": "x"}')
    [record] = load_records(folder.path, load_run(folder.path))
    assert record.status == "failed"
    assert record.reason.startswith("status.json invalid at status: 'exploded' is not one of")


def test_host_without_cases_is_reported_not_dropped(make_run):
    folder = make_run({"h1": []})
    [record] = load_records(folder.path, load_run(folder.path))
    assert (record.case, record.status, record.reason) == (NO_CASE, "failed", "run.json names no case for this host")


def test_results_are_found_through_host_dirs(make_run):
    folder = make_run({"web/01": [CASE]}, host_dirs={"web/01": "web_01"})
    folder.write_result("web/01")
    [record] = load_records(folder.path, load_run(folder.path))
    assert (record.host, record.status) == ("web/01", "passed")


@pytest.mark.parametrize(("content", "message"), [
    (None, "run.json missing"),
    ('{"run_id": "r", "hosts": ["h1"]}', "run.json invalid: 'cases' is a required property"),
    ('{"run_id": "r", "hosts": [], "cases": {}, "host_dirs": {"h": ".."}}', "run.json invalid at host_dirs.h"),
    ("{not json", "run.json is not valid JSON"),
])
def test_unusable_run_json_is_a_run_error(tmp_path, content, message):
    if content is not None:
        (tmp_path / "run.json").write_text(content)
    with pytest.raises(RunError, match=message):
        load_run(tmp_path)


def test_missing_run_folder_is_a_run_error(tmp_path):
    with pytest.raises(RunError, match="no run folder at"):
        load_run(tmp_path / "nope")


def _check_never_passes(folder, data: bytes) -> None:
    path = folder.write_raw("h1", CASE, data)
    record = load_result(path, expected(folder))
    assert record.status == "failed"
    assert record.reason.startswith("result.json")
    assert record.result is None


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.binary(max_size=2048))
def test_random_bytes_never_crash_and_always_fail(folder, data: bytes):
    _check_never_passes(folder, data)


JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=20,
)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(value=JSON_VALUES)
def test_random_json_never_crashes_and_always_fails(folder, value: Any):
    _check_never_passes(folder, json.dumps(value).encode())


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(cut=st.integers(min_value=0), flip=st.integers(min_value=0, max_value=255))
def test_damaged_good_results_never_crash(folder, cut: int, flip: int):
    data = bytearray(_doc_bytes(folder))
    data[cut % len(data)] ^= flip or 1
    path = folder.write_raw("h1", CASE, bytes(data))
    record = load_result(path, expected(folder))
    assert record.status in ("passed", "failed")
    assert (record.result is None) == (record.status == "failed")


def test_result_schema_is_the_payload_contract():
    assert Path(result_schema()["$id"]).name == "result-1.json"
