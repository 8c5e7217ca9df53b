"""The result schema (version 1): every shape the payload writes validates; a missing required field is named;
old records keep loading when the schema gains a field."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from jsonschema import Draft202012Validator

from fleetbench import results
from fleetbench.cli import main
from fleetbench.db import Database
from fleetbench.history import load_samples
from fleetbench.results import Expected, load_result, result_schema
from tests.conftest import REPO
from tests.history.synth import Rec, result_doc

RUN = "20250101T020000Z-000000"


def write(tmp_path: Path, doc: dict[str, Any]) -> Path:
    path = tmp_path / "result.json"
    path.write_text(json.dumps(doc))
    return path


def check(tmp_path: Path, doc: dict[str, Any]) -> results.Record:
    expected = Expected(RUN, doc.get("host", "h"), doc.get("case", "inference-throughput"))
    return load_result(write(tmp_path, doc), expected)


SHAPES = {
    "passed throughput": Rec("h", "SPR"),
    "passed latency": Rec("h", "SPR", case="inference-latency-gated", p50=1.9, p99=2.4),
    "passed accuracy": Rec("h", "EMR", case="inference-accuracy", batch_size=100, accuracy=91.06),
    "passed accuracy, random weights": Rec("h", "EMR", case="inference-accuracy", accuracy=50.3, meaningful=False),
    "skipped for a missing ISA": Rec("h", "ICX", status="skipped", reason="precision amx_int8 needs amx_int8"),
    "failed": Rec("h", "SPR", status="failed", reason="payload error: RuntimeError: oneDNN"),
    "timeout": Rec("h", "SPR", status="timeout", reason="terminated by SIGTERM"),
}


@pytest.mark.parametrize("name", SHAPES)
def test_every_shape_the_payload_writes_validates(tmp_path, name):
    rec = SHAPES[name]
    doc = result_doc(RUN, rec)
    Draft202012Validator(result_schema()).validate(doc)
    record = check(tmp_path, doc)
    assert (record.status, record.rejected) == (rec.status, False)


def _precision_this_host_lacks() -> str | None:
    sys.path.insert(0, str(REPO / "payload"))
    from fleetbench_payload import cpuinfo  # stdlib only

    isa = cpuinfo.detect()["platform"]["isa"]
    return next((p for p in cpuinfo.PRECISION_ISA if cpuinfo.missing_isa(p, isa)), None)


@pytest.mark.parametrize("mode", ["dry-run", "isa"])
def test_result_files_written_by_the_real_payload_validate(tmp_path, mode):
    """The payload itself (no torch needed on these paths) writes result.json; the controller accepts it.
    `isa`: the gate's skip where this host lacks a precision's ISA; on a host with every ISA, the case file
    (which names no core layout) fails in the payload instead, a failed record that must validate too."""
    lacking = _precision_this_host_lacks()
    case = {"run_id": RUN, "host": "h", "case": "inference-throughput",
            "params": {"mode": "throughput", "precision": lacking or "amx_int8", "steps": 2, "warmup_steps": 1,
                       "batch_size": 1, "max_seq_length": 16}}
    (tmp_path / "CASE.json").write_text(json.dumps(case))
    extra = ["--dry-run"] if mode == "dry-run" else []
    proc = subprocess.run([sys.executable, "-m", "fleetbench_payload", "run", "--case", str(tmp_path / "CASE.json"),
                           "--out", str(tmp_path / "out"), *extra], cwd=REPO / "payload", capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    doc = json.loads((tmp_path / "out" / "result.json").read_text())
    Draft202012Validator(result_schema()).validate(doc)
    record = load_result(tmp_path / "out" / "result.json", Expected(RUN, "h", "inference-throughput"))
    assert record.rejected is False
    if mode == "dry-run":
        assert (record.status, doc["reason"]) == ("skipped", "dry run")
    elif lacking:
        assert record.status == "skipped" and doc["reason"].startswith(f"precision {lacking} needs "), doc["reason"]
    else:
        assert record.status == "failed" and doc["reason"].startswith("payload error: "), doc["reason"]


@pytest.mark.parametrize(("path", "name"), [(("params",), "params"), (("params", "precision"), "precision"),
                                            (("schema_version",), "schema_version"), (("status",), "status")])
def test_a_record_missing_a_required_field_is_rejected_naming_it(tmp_path, path, name):
    doc = result_doc(RUN, Rec("h", "SPR"))
    target = doc
    for key in path[:-1]:
        target = target[key]
    del target[path[-1]]
    record = check(tmp_path, doc)
    assert (record.status, record.rejected, record.result) == ("failed", True, None)
    assert f"'{name}' is a required property" in record.reason


@pytest.fixture
def schema_with_a_new_field(monkeypatch):
    """The schema as a later version would have it: a new optional field."""
    grown = json.loads(json.dumps(result_schema()))
    grown["properties"]["host_tuning"] = {"type": "object", "properties": {"governor": {"type": "string"}}}
    results.result_schema.cache_clear()
    results._validator.cache_clear()
    monkeypatch.setattr(results, "result_schema", lambda: grown)
    yield
    results._validator.cache_clear()


def test_old_records_keep_loading_when_the_schema_gains_a_field(tmp_path, schema_with_a_new_field):
    old = result_doc(RUN, Rec("h", "SPR"))  # written before the field existed
    assert check(tmp_path, old).status == "passed"
    new = {**old, "host_tuning": {"governor": "performance"}}
    assert check(tmp_path, new).status == "passed"


def test_records_with_fields_this_version_does_not_know_still_load_and_keep_them(nightly, tmp_path):
    doc = {"isa_mismatch": None, "host_tuning": {"governor": "performance", "turbo": True}}
    run_dir = nightly(0, [Rec("h", "SPR", doc=doc)])
    url = str(tmp_path / "h.sqlite")
    assert main(["ingest", "--db", url, str(run_dir)]) == 0
    database = Database(url)
    (sample,) = load_samples(database)
    (stored,) = database.rows("SELECT doc FROM records")
    database.close()
    assert sample.included and json.loads(stored[0])["host_tuning"] == {"governor": "performance", "turbo": True}


def test_the_documentation_lists_every_field_of_the_schema():
    text = (REPO / "docs" / "results.md").read_text()
    schema = result_schema()

    def names(node: dict[str, Any], prefix: str = "") -> list[str]:
        out = []
        for key, sub in node.get("properties", {}).items():
            out.append(prefix + key)
            out += names(sub, f"{prefix}{key}.")
            out += names(sub.get("items", {}), f"{prefix}{key}[].")
        return out

    missing = [n for n in names(schema) if f"`{n}`" not in text]
    assert missing == []
