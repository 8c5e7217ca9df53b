"""CPU platform, ISA and topology detection.

Standard library only and Python 3.8 compatible: Ansible runs this file as a plain script on each host
before the stack venv exists (``python3 cpuinfo.py`` prints one JSON object). The payload imports it too.
``python3 cpuinfo.py FILE`` parses a saved /proc/cpuinfo or lscpu dump instead of this host.
"""

from __future__ import annotations

import json
import os
import platform as _platform
import re
import sys
from collections.abc import Iterable
from typing import Any

CAPABILITIES = ("avx2", "avx512f", "avx512_vnni", "avx512_bf16", "amx_tile", "amx_bf16", "amx_int8")

# The ISA each precision needs. amx_int8 mixes int8 with bf16, so it needs amx_bf16 as well.
PRECISION_ISA = {
    "avx_fp32": ("avx2",),
    "avx_int8": ("avx512_vnni",),
    "amx_bfloat16": ("amx_tile", "amx_bf16"),
    "amx_bfloat32": ("amx_tile", "amx_bf16"),
    "amx_int8": ("amx_tile", "amx_int8", "amx_bf16"),
}

VENDORS = {"GenuineIntel": "Intel", "AuthenticAMD": "AMD"}

# Intel family 6 models. Model 85 is split by stepping below.
_INTEL_MODELS = {106: "ICX", 108: "ICX", 143: "SPR", 207: "EMR", 173: "GNR", 174: "GNR", 175: "SRF"}
_INTEL_85 = {4: "SKX", 5: "CLX", 6: "CLX", 7: "CLX", 10: "CPX", 11: "CPX"}
# AMD (family, first model, last model): name.
_AMD_RANGES = (
    (25, 0x00, 0x0F, "Milan"),
    (25, 0x10, 0x1F, "Genoa"),
    (25, 0xA0, 0xAF, "Bergamo"),
    (26, 0x00, 0x1F, "Turin"),
)

# /proc/cpuinfo and lscpu spell the same fields differently; both map to these names.
_KEYS = {
    "vendor_id": "vendor_id", "vendor id": "vendor_id",
    "cpu family": "family",
    "model": "model",
    "model name": "model_name",
    "stepping": "stepping",
    "flags": "flags",
    "microcode": "microcode",
}


def parse(text: str) -> dict[str, Any]:
    """Parse /proc/cpuinfo or lscpu text. Only the first value of each field counts (first CPU block)."""
    raw: dict[str, str] = {}
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        name = _KEYS.get(key.strip().lower())
        if sep and name and name not in raw:
            raw[name] = value.strip()
    vendor = raw.get("vendor_id", "")
    family, model, stepping = (_to_int(raw.get(k)) for k in ("family", "model", "stepping"))
    return {
        "name": platform_name(vendor, family, model, stepping),
        "vendor": VENDORS.get(vendor, vendor or "unknown"),
        "family": family,
        "model": model,
        "stepping": stepping,
        "model_name": raw.get("model_name", ""),
        "isa": capabilities(raw.get("flags", "").split()),
        "microcode": raw.get("microcode", ""),
    }


def _to_int(value: str | None) -> int | None:
    if value is None:
        return None
    try:
        return int(value, 0)
    except ValueError:
        return None


def platform_name(vendor_id: str, family: int | None, model: int | None, stepping: int | None) -> str:
    """Name the platform from vendor/family/model numbers; model name strings can be generic or garbage."""
    vendor = VENDORS.get(vendor_id, vendor_id or "unknown")
    if vendor_id == "GenuineIntel" and family == 6 and model is not None:
        if model == 85 and stepping in _INTEL_85:
            return _INTEL_85[stepping]
        if model in _INTEL_MODELS:
            return _INTEL_MODELS[model]
    if vendor_id == "AuthenticAMD" and model is not None:
        for fam, first, last, name in _AMD_RANGES:
            if family == fam and first <= model <= last:
                return name
    return f"{vendor} family {family} model {model}"


def capabilities(flags: Iterable[str]) -> dict[str, bool]:
    have = set(flags)
    return {cap: cap in have for cap in CAPABILITIES}


def missing_isa(precision: str, isa: dict[str, bool]) -> list[str]:
    """The flags ``precision`` needs that the host lacks (empty when it can run). ``isa``: from capabilities()."""
    if precision not in PRECISION_ISA:
        raise ValueError(f"unknown precision {precision!r}; known: {', '.join(PRECISION_ISA)}")
    return [flag for flag in PRECISION_ISA[precision] if not isa.get(flag, False)]


def parse_cpulist(text: str) -> list[int]:
    """Expand a kernel CPU list such as ``0-3,8,10-11``."""
    cpus: list[int] = []
    for part in text.strip().split(","):
        if not part:
            continue
        lo, _, hi = part.partition("-")
        cpus.extend(range(int(lo), int(hi or lo) + 1))
    return cpus


def _read(path: str) -> str | None:
    try:
        with open(path, encoding="utf-8") as f:
            return f.read()
    except OSError:
        return None


def topology(sysfs: str = "/sys/devices/system") -> dict[str, Any]:
    """Logical CPUs, physical cores, sockets and NUMA nodes of this host, from sysfs.

    Each node lists its ``cpus`` and its ``cores``: one logical CPU (the lowest) per physical core.
    Without sysfs topology every logical CPU counts as a core; without NUMA info there is one node.
    """
    online = _read(sysfs + "/cpu/online")
    cpus = parse_cpulist(online) if online else list(range(os.cpu_count() or 1))
    core_of: dict[int, tuple[int, int]] = {}
    for cpu in cpus:
        base = f"{sysfs}/cpu/cpu{cpu}/topology/"
        package, core = _read(base + "physical_package_id"), _read(base + "core_id")
        core_of[cpu] = (int(package), int(core)) if package and core else (0, cpu)
    first_cpu: dict[tuple[int, int], int] = {}
    for cpu in cpus:
        first_cpu.setdefault(core_of[cpu], cpu)
    primary = set(first_cpu.values())

    nodes = []
    node_ids = []
    try:
        node_ids = sorted(int(m.group(1)) for m in map(re.compile(r"node(\d+)$").match, os.listdir(sysfs + "/node"))
                          if m)
    except OSError:
        pass
    for node in node_ids:
        listed = _read(f"{sysfs}/node/node{node}/cpulist")
        node_cpus = [c for c in parse_cpulist(listed) if c in core_of] if listed else []
        if node_cpus:  # memory-only nodes (CXL, HBM) have no CPUs
            nodes.append({"id": node, "cpus": node_cpus, "cores": [c for c in node_cpus if c in primary]})
    if not nodes:
        nodes = [{"id": 0, "cpus": cpus, "cores": sorted(primary)}]
    return {
        "logical_cpus": len(cpus),
        "physical_cores": len(primary),
        "sockets": len({package for package, _ in core_of.values()}),
        "numa_nodes": nodes,
    }


def meminfo(text: str) -> dict[str, int]:
    out = {}
    for key, field in (("MemTotal", "mem_total_kb"), ("MemAvailable", "mem_available_kb")):
        match = re.search(rf"^{key}:\s+(\d+)\s*kB", text, re.MULTILINE)
        if match:
            out[field] = int(match.group(1))
    return out


def detect() -> dict[str, Any]:
    """Everything about this host: ``platform`` (the result schema's platform object) and ``host``."""
    cpu = parse(_read("/proc/cpuinfo") or "")
    host: dict[str, Any] = topology()
    host.update(meminfo(_read("/proc/meminfo") or ""))
    host["kernel"] = _platform.release()
    host["microcode"] = cpu.pop("microcode")
    return {"platform": cpu, "host": host}


def main(argv: list[str]) -> int:
    if len(argv) > 1:
        with open(argv[1], encoding="utf-8") as f:
            doc: dict[str, Any] = parse(f.read())
    else:
        doc = detect()
    print(json.dumps(doc, sort_keys=True))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
