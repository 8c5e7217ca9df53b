"""Where instances run (cores, NUMA nodes) and the environment they run with."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

from fleetbench_payload.errors import CaseError

# The reference (WSF set_env_pt.sh) caps oneDNN below AVX-512 BF16 and AMX for avx_* precisions, so an
# avx_fp32/avx_int8 number on an AMX host measures the AVX-512 (VNNI) kernels the precision names. For amx_*
# precisions it leaves the cap unset, which lets oneDNN use the best ISA present (AMX).
AVX_ISA_CAP = "AVX512_CORE_VNNI"

RECORDED_PREFIXES = ("OMP_", "KMP_", "GOMP_", "MKL_", "ONEDNN_", "DNNL_", "ATEN_", "LD_PRELOAD", "MALLOC_CONF",
                     "HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")
_SECRET_WORDS = ("TOKEN", "KEY", "SECRET", "PASSWORD", "CREDENTIAL")


@dataclass(frozen=True)
class Plan:
    cores_per_instance: int
    instances: list[list[int]]  # one logical CPU per physical core, per instance
    warnings: list[str] = field(default_factory=list)


def plan(params: dict[str, Any], host: dict[str, Any], allowed: set[int]) -> Plan:
    """Split the physical cores this process may use into instances; CaseError when they don't fit."""
    nodes = [[c for c in node["cores"] if c in allowed] for node in host["numa_nodes"]]
    nodes = [cores for cores in nodes if cores]
    cores = [c for node in nodes for c in node]
    if not cores:
        raise CaseError("no usable physical cores: the CPU affinity of this process excludes them all")
    warnings = []
    per_instance = len(nodes[0]) if params["cores_per_instance"] == "auto" else params["cores_per_instance"]
    number = params["instance_number"]
    if params["mode"] == "accuracy":
        if number not in ("auto", 1):
            warnings.append(f"accuracy mode runs one instance, as the reference does; instance_number={number} "
                            "was not used")
        number = 1
    elif number == "auto":
        number = len(nodes)
    if per_instance * number > len(cores):
        per_node = ", ".join(f"{len(node)}" for node in nodes)
        raise CaseError(
            f"cores_per_instance={per_instance} x instance_number={number} needs {per_instance * number} physical "
            f"cores, but this host has {len(cores)} usable (per NUMA node: {per_node}); lower cores_per_instance "
            "or instance_number")
    instances = [cores[i * per_instance:(i + 1) * per_instance] for i in range(number)]
    return Plan(per_instance, instances, warnings)


def environment(precision: str, threads: int, onednn_verbose: int) -> dict[str, str | None]:
    """Variables to set (None: unset) before torch is imported; OpenMP and oneDNN read them at load time."""
    env: dict[str, str | None] = {
        "OMP_NUM_THREADS": str(threads),
        "ONEDNN_MAX_CPU_ISA": AVX_ISA_CAP if precision.startswith("avx_") else None,
        "ONEDNN_VERBOSE": str(onednn_verbose) if onednn_verbose else None,
        "HF_HUB_OFFLINE": "1",  # everything is local; never reach the network
        "TRANSFORMERS_OFFLINE": "1",
        "TOKENIZERS_PARALLELISM": "false",
    }
    if "libiomp5" in os.environ.get("LD_PRELOAD", ""):  # the KMP_* knobs only mean something to Intel OpenMP
        env["KMP_BLOCKTIME"] = os.environ.get("KMP_BLOCKTIME", "1")
        env["KMP_AFFINITY"] = os.environ.get("KMP_AFFINITY", "granularity=fine,compact,1,0")
    return env


def apply(env: dict[str, str | None]) -> None:
    for name, value in env.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value


def recorded_environment() -> dict[str, str]:
    """The variables that shape performance, as this process sees them (never anything secret)."""
    return {name: value for name, value in sorted(os.environ.items())
            if name.startswith(RECORDED_PREFIXES) and not any(word in name for word in _SECRET_WORDS)}
