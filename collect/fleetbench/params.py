"""Benchmark parameters: the one place that knows their names, types, choices and defaults.

Values typed with ``ansible-playbook -e`` arrive as strings; :func:`validate` coerces them, checks them
and fills the derived defaults, or raises :class:`ParamError` naming the bad value and the allowed ones.
The playbook (through the ``fleetbench_params`` action plugin) and the ``fleetbench`` CLI both call it.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

PRECISIONS = ("avx_fp32", "avx_int8", "amx_int8", "amx_bfloat16", "amx_bfloat32")
MODES = ("throughput", "latency", "accuracy")
MODEL_SOURCES = ("hub", "dir", "synthetic")
BACKENDS = ("ipex", "inductor")

DEFAULT_MODEL_ID = "distilbert-base-uncased-finetuned-sst-2-english"
# The revision the reference workload pins. Override with -e model_revision=... (see README).
DEFAULT_MODEL_REVISION = "bfdd146ea2b6807255b73527f1327ca12b6ed5c4"
DEFAULT_DATASET_URL = "https://dl.fbaipublicfiles.com/glue/data/SST-2.zip"


class ParamError(ValueError):
    """A parameter value that is not allowed; the message says which values are."""


@dataclass(frozen=True)
class Param:
    name: str
    kind: str  # "str", "int", "bool", "choice", "auto_int" (positive int or "auto")
    default: Any
    help: str
    choices: tuple[str, ...] = ()
    minimum: int | None = None
    maximum: int | None = None
    aliases: tuple[str, ...] = field(default=())


PARAMS: tuple[Param, ...] = (
    # The reference workload's parameters (WSF names, lower case).
    Param("topology", "choice", "distilbert_base", "Model topology.", ("distilbert_base",)),
    Param("function", "choice", "inference", "Workload function.", ("inference",)),
    Param("data_type", "choice", "real", "Input data: real SST-2 sentences.", ("real",)),
    Param("mode", "choice", "throughput", "What to measure.", MODES),
    Param("precision", "choice", "amx_bfloat16", "Numeric precision and the ISA it needs.", PRECISIONS),
    Param("steps", "int", 100, "Timed iterations.", minimum=1, maximum=1_000_000),
    Param("warmup_steps", "int", None, "Untimed warm-up iterations (default: steps/10).", minimum=0,
          maximum=1_000_000),
    Param("case_type", "choice", "", "Optional case suffix: gated (short) or pkm (long).", ("", "gated", "pkm")),
    Param("batch_size", "int", None, "Samples per iteration (default 1; 100 in accuracy mode).", minimum=1,
          maximum=4096),
    Param("cores_per_instance", "auto_int", "auto", "Physical cores per instance (auto: cores per NUMA node).",
          minimum=1, maximum=4096),
    Param("instance_number", "auto_int", "auto", "Instances per host (auto: one per NUMA node).", minimum=1,
          maximum=4096),
    Param("weight_sharing", "bool", None, "One weight copy for all streams (default: on in latency mode)."),
    Param("max_seq_length", "int", 128, "Tokens per sentence, padded.", minimum=8, maximum=512),
    Param("onednn_verbose", "int", 0, "oneDNN verbose level (ONEDNN_VERBOSE).", minimum=0, maximum=2),
    # fleetbench's own.
    Param("backend", "choice", "ipex", "Inference backend: ipex (IPEX 2.8) or inductor (upstream PyTorch, "
          "no IPEX import).", BACKENDS),
    Param("verify_isa", "choice", "auto", "Run a short oneDNN-verbose pass and record the ISA its kernels used "
          "(auto: on for amx_* and avx_int8).", ("auto", "true", "false")),
    Param("require_isa", "bool", True, "Skip a precision on a host without its ISA (false: run it anyway, "
          "marked isa_mismatch, never compared)."),
    Param("min_duration_s", "int", 0, "Keep iterating past steps until the timed phase lasts this long "
          "(as MLPerf does).", minimum=0, maximum=86400),
    Param("model_source", "choice", "hub", "Where the model comes from.", MODEL_SOURCES),
    Param("model_id", "str", DEFAULT_MODEL_ID, "Hugging Face Hub model id (model_source=hub)."),
    Param("model_revision", "str", DEFAULT_MODEL_REVISION, "Hub revision, a commit hash (model_source=hub)."),
    Param("model_dir", "str", "", "Local model folder on the controller (model_source=dir; implied by setting it)."),
    Param("allow_pickle_weights", "bool", False, "Accept pytorch_model.bin (pickle) when no safetensors exist."),
    Param("dataset_dir", "str", "", "Local folder with SST-2 dev.tsv and train.tsv (default: download GLUE)."),
    Param("dataset_url", "str", DEFAULT_DATASET_URL, "Where GLUE SST-2.zip is downloaded from."),
    Param("cases", "str", "", "Run the matrix cases (cases.yml) whose names match this keyword or regular "
          "expression, as ctest -R does (default: the one case named by mode and case_type)."),
    Param("list_cases", "bool", False, "List the cases each host would run, and run nothing."),
    Param("dry_run", "bool", False, "Go through every step but skip inference (the case is skipped): for "
          "measuring orchestration overhead."),
    Param("offline", "bool", False, "Hosts without network: the controller downloads the payload stack's wheels "
          "once (hash-checked) and pushes them with the model and dataset; hosts install with pip --no-index."),
    Param("case_timeout", "auto_int", "auto", "Seconds a case may run on a host before it is killed "
          "(auto: from steps, batch size and mode).", minimum=10, maximum=7 * 24 * 3600),
)
BY_NAME = {p.name: p for p in PARAMS}

_TRUE = {"true", "yes", "on", "1"}
_FALSE = {"false", "no", "off", "0"}
# Strings that reach a host: plain printable text, no control characters.
_SAFE_TEXT = re.compile(r"^[^\x00-\x1f\x7f]*$")
_REVISION = re.compile(r"^[A-Za-z0-9._/-]{1,128}$")
_MODEL_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*(/[A-Za-z0-9][A-Za-z0-9._-]*)?$")
# Jinja markers: Ansible would run a template typed with -e (lookups included) before we ever saw the value.
_TEMPLATE = re.compile(r"\{\{|\{%|\{#")


def _describe(p: Param) -> str:
    if p.choices:
        return "one of: " + ", ".join(repr(c) if c == "" else c for c in p.choices)
    if p.kind == "bool":
        return "true or false"
    if p.kind == "str":
        return f"plain text: {p.help[0].lower()}{p.help[1:].rstrip('.')}"
    lo = p.minimum if p.minimum is not None else "-inf"
    hi = p.maximum if p.maximum is not None else "inf"
    if p.kind == "auto_int":
        return f"'auto' or an integer from {lo} to {hi}"
    return f"an integer from {lo} to {hi}"


def _bad(p: Param, value: Any) -> ParamError:
    return ParamError(f"{p.name}={value!r} is not allowed: expected {_describe(p)}.")


def coerce(p: Param, value: Any) -> Any:
    """Turn one raw value (often a string from -e) into its typed form, or raise ParamError."""
    if p.kind == "bool":
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.strip().lower() in _TRUE | _FALSE:
            return value.strip().lower() in _TRUE
        raise _bad(p, value)
    if p.kind in ("int", "auto_int"):
        if p.kind == "auto_int" and isinstance(value, str) and value.strip().lower() == "auto":
            return "auto"
        if isinstance(value, bool):
            raise _bad(p, value)
        if isinstance(value, str) and re.fullmatch(r"\s*[0-9]+\s*", value):
            value = int(value)
        if not isinstance(value, int):
            raise _bad(p, value)
        if (p.minimum is not None and value < p.minimum) or (p.maximum is not None and value > p.maximum):
            raise _bad(p, value)
        return value
    if not isinstance(value, str):
        raise _bad(p, value)
    if p.kind == "choice":
        if value not in p.choices:
            hint = ""
            if value.lower() in p.choices:
                hint = f" (did you mean {value.lower()!r}? values are lower case)"
            raise ParamError(f"{p.name}={value!r} is not allowed: expected {_describe(p)}.{hint}")
        return value
    if not _SAFE_TEXT.match(value):
        raise ParamError(f"{p.name}={value!r} contains control characters.")
    return value


def find_aliases(given: dict[str, Any]) -> dict[str, Any]:
    """Map upper- or mixed-case WSF names (PRECISION=...) to parameters; conflicts are errors."""
    out: dict[str, Any] = {}
    for key, value in given.items():
        low = key.lower()
        if key == low or low not in BY_NAME:
            continue
        if low in given and given[low] != value:
            raise ParamError(f"{key}={value!r} conflicts with {low}={given[low]!r}: give the parameter once, "
                             f"in lower case ({low}=...).")
        out[low] = value
    return out


def check_typed(extra: Mapping[str, Any]) -> None:
    """Check what the user typed with -e before anything expands it: a parameter's value must be plain data
    (no Jinja), and a name that is not a parameter but close to one is a typo, not an Ansible variable."""
    for key, value in extra.items():
        low = key.lower()
        if low in BY_NAME:
            if isinstance(value, str) and _TEMPLATE.search(value):
                raise ParamError(f"{key}={value!r} contains a Jinja template: parameters are plain values and are "
                                 f"never expanded; expected {_describe(BY_NAME[low])}.")
            continue
        close = [] if low.startswith("ansible_") else difflib.get_close_matches(low, BY_NAME, n=1, cutoff=0.8)
        if close:
            raise ParamError(f"unknown parameter {key!r}; did you mean {close[0]!r}? (parameters: "
                             f"{', '.join(BY_NAME)})")


def validate(given: dict[str, Any]) -> dict[str, Any]:
    """Validate user-supplied values (unknown keys are ignored) and return the full parameter set."""
    raw = {k: v for k, v in given.items() if k in BY_NAME and v is not None}
    raw.update({k: v for k, v in find_aliases(given).items() if k not in raw})
    out: dict[str, Any] = {}
    for p in PARAMS:
        out[p.name] = coerce(p, raw[p.name]) if p.name in raw else p.default

    if out["warmup_steps"] is None:
        # Accuracy mode evaluates the dev set once; one warm-up batch is enough there.
        out["warmup_steps"] = 1 if out["mode"] == "accuracy" else max(1, out["steps"] // 10)
    if out["batch_size"] is None:
        out["batch_size"] = 100 if out["mode"] == "accuracy" else 1
    if out["mode"] == "latency" and out["batch_size"] != 1:
        raise ParamError(f"batch_size={out['batch_size']} is not allowed in latency mode: latency is measured "
                         "at batch 1 per stream; use mode=throughput for larger batches.")
    if out["weight_sharing"] is None:
        out["weight_sharing"] = out["mode"] == "latency"

    if out["model_dir"] and "model_source" not in raw:
        out["model_source"] = "dir"
    if out["model_source"] == "dir" and not out["model_dir"]:
        raise ParamError("model_source=dir needs model_dir=DIR (a folder with config.json, the weights and the "
                         "tokenizer files).")
    if out["model_dir"] and out["model_source"] != "dir":
        raise ParamError(f"model_dir is set but model_source={out['model_source']!r}: drop one of them.")
    if not _MODEL_ID.match(out["model_id"]):
        raise ParamError(f"model_id={out['model_id']!r} is not a Hub model id (owner/name).")
    if not _REVISION.match(out["model_revision"]) or ".." in out["model_revision"]:
        raise ParamError(f"model_revision={out['model_revision']!r} is not a Hub revision (a commit hash, "
                         "branch or tag).")
    if not out["dataset_url"].startswith(("https://", "http://", "file://")):
        raise ParamError(f"dataset_url={out['dataset_url']!r} must be an http(s):// or file:// URL.")
    out["case"] = case_name(out)
    if out["verify_isa"] == "auto":
        out["verify_isa"] = "true" if out["precision"].startswith("amx_") or out["precision"] == "avx_int8" else "false"
    out["verify_isa"] = out["verify_isa"] == "true"
    if out["case_timeout"] == "auto":
        out["case_timeout"] = auto_timeout(out)
    return out


# Budget for model build, tracing and start-up, plus a floor of 0.5 samples/s for the measured part:
# generous enough for a 2-core machine, tight enough that a hung case is stopped the same night.
_SETUP_S = 900
_SLOWEST_SAMPLES_PER_S = 0.5


def auto_timeout(params: dict[str, Any]) -> int:
    if params["mode"] == "accuracy":
        samples = 872
    else:
        samples = (params["steps"] + params["warmup_steps"]) * params["batch_size"]
    return int(_SETUP_S + params["min_duration_s"] + samples / _SLOWEST_SAMPLES_PER_S)


def case_name(params: dict[str, Any]) -> str:
    """Test case name as the reference's ctest names it: <function>-<mode>[-<case_type>]."""
    parts = [params["function"], params["mode"]]
    if params.get("case_type"):
        parts.append(params["case_type"])
    return "-".join(parts)
