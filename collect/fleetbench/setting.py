"""What a record measured beyond its case, precision and batch size: the *setting* of every series key.

Two records are the same measurement, for ``fleetbench table``, ``compare``, ``check`` and the HTML trends,
only if their case, precision, batch size *and* setting are equal. The setting holds the parameters that
change what the timed figures or the accuracy mean (docs/results.md, "What is the same measurement"):
sequence length, backend, the requested instance layout, the model, the length of the timed phase and
oneDNN's verbose logging (it writes a line per primitive inside the timed loop). Parameters that do not
change them (verify_isa: a separate untimed pass; require_isa: such records are excluded anyway; timeouts,
dataset location: the dev set is checked against GLUE's hash) are not in it.

:func:`setting_of` is the one place that computes it; ingest stores it with each record.
"""

from __future__ import annotations

import functools
import hashlib
import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, fields
from typing import Any

from fleetbench.params import BY_NAME

# A record that does not state one of these ran with its default: backend, min_duration_s and the model
# settings came after the first records (which all ran IPEX on the pinned Hub model).
_LATER = ("backend", "min_duration_s", "onednn_verbose", "model_source", "model_id", "model_revision")
_COMMIT = re.compile(r"^[0-9a-f]{40}$")
_COMMIT_IN_ID = re.compile(r"@[0-9a-f]{40}\b")  # shown as its first 12 digits
_TEXT_LIMIT = 160


@dataclass(frozen=True)
class Setting:
    max_seq_length: int | None
    backend: str | None
    instance_number: int | str | None  # as requested: an integer or "auto" (one per NUMA node)
    cores_per_instance: int | str | None
    weight_sharing: bool | None
    model: str | None  # hub: id@revision; dir: its files' digest; synthetic: its build key
    steps: int | None  # the timed phase; None in accuracy mode (one pass over the dev set)
    warmup_steps: int | None
    min_duration_s: int | None
    onednn_verbose: int | None

    def to_text(self) -> str:
        """The stored form: canonical JSON, equal for equal settings."""
        return json.dumps(asdict(self), sort_keys=True)

    @staticmethod
    def from_text(text: str) -> Setting:
        """The stored form read back (a history holds few distinct settings: parsed once each)."""
        return _parse(text)

    def sort_key(self) -> tuple[tuple[int, float, str], ...]:
        return tuple((1, 0, "") if v is None else (0, v, "") if _is_int(v) else (0, 0, str(v))
                     for v in (getattr(self, f.name) for f in fields(self)))

    def label(self, parts: Iterable[str] = ()) -> str:
        """The named parts (all when none are named), e.g. ``seq 512, inductor``."""
        names = tuple(parts) or PARTS
        return ", ".join(PART_LABELS[name](self) for name in names)


@functools.lru_cache(maxsize=4096)
def _parse(text: str) -> Setting:
    values = json.loads(text) if text else {}
    return Setting(**{f.name: values.get(f.name) for f in fields(Setting)})


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _or_unknown(value: Any) -> str:
    return "?" if value is None else str(value)


def _layout(s: Setting) -> str:
    if s.instance_number == s.cores_per_instance == "auto":
        layout = "layout auto"
    else:
        layout = f"{_or_unknown(s.instance_number)} instances x {_or_unknown(s.cores_per_instance)} cores"
    sharing = {True: ", weight sharing", False: "", None: ", weight sharing ?"}[s.weight_sharing]
    return layout + sharing


def _run_length(s: Setting) -> str:
    if s.steps is None:
        return "one pass"
    minimum = f", at least {s.min_duration_s} s" if s.min_duration_s else ""
    return f"steps {s.steps} (+{_or_unknown(s.warmup_steps)} warm-up){minimum}"


# Parts of a setting as tables show them; a part spans the fields it reads.
PART_LABELS = {
    "seq": lambda s: f"seq {_or_unknown(s.max_seq_length)}",
    "backend": lambda s: _or_unknown(s.backend),
    "layout": _layout,
    "model": lambda s: f"model {_COMMIT_IN_ID.sub(lambda m: m[0][:13], _or_unknown(s.model))}",
    "run_length": _run_length,
    "onednn_verbose": lambda s: f"onednn_verbose {_or_unknown(s.onednn_verbose)}",
}
PARTS = tuple(PART_LABELS)


def varying(settings: Iterable[Setting]) -> tuple[str, ...]:
    """The parts whose label differs between the settings (what a table must show to keep them apart)."""
    distinct = set(settings)
    return tuple(p for p in PARTS if len({PART_LABELS[p](s) for s in distinct}) > 1)


def differences(a: Setting, b: Setting) -> str:
    """How two settings differ, e.g. ``seq 128 / seq 512``."""
    return "; ".join(f"{PART_LABELS[p](a)} / {PART_LABELS[p](b)}" for p in varying((a, b)))


def _typed(value: Any, kinds: tuple[type, ...]) -> Any:
    if isinstance(value, bool) and bool not in kinds:
        return None
    if isinstance(value, str):
        return value[:_TEXT_LIMIT] if str in kinds else None
    return value if isinstance(value, kinds) else None


def _model(params: Mapping[str, Any], provenance: Mapping[str, Any]) -> str | None:
    """Hub models by id@revision (plus the files' digest when the revision is not a commit, which can move);
    a synthetic model by its build key (the payload's recipe, seed and versions); a local folder by the
    digest of its files."""
    source = _typed(provenance.get("source") or params.get("model_source"), (str,))
    files = provenance.get("files")
    digest = (hashlib.sha256(json.dumps(files, sort_keys=True).encode()).hexdigest()[:12]
              if isinstance(files, Mapping) and files else None)
    if source == "hub":
        model_id = _typed(provenance.get("id") or params.get("model_id"), (str,))
        revision = _typed(provenance.get("revision") or params.get("model_revision"), (str,))
        pinned = isinstance(revision, str) and _COMMIT.match(revision)
        return f"{model_id}@{revision}" + ("" if pinned or digest is None else f"#{digest}")
    if source is None:
        return None
    key = _typed(provenance.get("revision"), (str,)) if source == "synthetic" else digest
    return f"{source}#{key or '?'}"


def setting_of(result: Mapping[str, Any] | None, planned: Mapping[str, Any]) -> Setting:
    """The setting of one record: from its result.json's params when it has some, else what the run asked
    (`planned`, run.json's parameters of that host x case). Values of the wrong type count as unknown."""
    result = result or {}
    given = result.get("params") if isinstance(result.get("params"), Mapping) else planned
    params = {**{name: BY_NAME[name].default for name in _LATER}, **given} if given else {}
    provenance = result.get("provenance", {}).get("model") if isinstance(result.get("provenance"), Mapping) else None
    timed = params.get("mode") != "accuracy"
    return Setting(
        max_seq_length=_typed(params.get("max_seq_length"), (int,)),
        backend=_typed(params.get("backend"), (str,)),
        instance_number=_typed(params.get("instance_number"), (int, str)),
        cores_per_instance=_typed(params.get("cores_per_instance"), (int, str)),
        weight_sharing=_typed(params.get("weight_sharing"), (bool,)),
        model=_model(params, provenance if isinstance(provenance, Mapping) else {}) if params else None,
        steps=_typed(params.get("steps"), (int,)) if timed else None,
        warmup_steps=_typed(params.get("warmup_steps"), (int,)) if timed else None,
        min_duration_s=_typed(params.get("min_duration_s"), (int,)) if timed else None,
        onednn_verbose=_typed(params.get("onednn_verbose"), (int,)),
    )
