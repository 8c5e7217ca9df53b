"""Where instances run (cores, NUMA nodes) and the environment they run with."""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from typing import Any

from fleetbench_payload.errors import CaseError

# The reference (WSF set_env_pt.sh) caps oneDNN below AVX-512 BF16 and AMX for avx_* precisions, so an
# avx_fp32/avx_int8 number on an AMX host measures the AVX-512 (VNNI) kernels the precision names. For amx_*
# precisions it leaves the cap unset, which lets oneDNN use the best ISA present (AMX).
AVX_ISA_CAP = "AVX512_CORE_VNNI"

RECORDED_PREFIXES = ("OMP_", "KMP_", "GOMP_", "MKL_", "ONEDNN_", "DNNL_", "ATEN_", "LD_PRELOAD", "MALLOC_CONF",
                     "HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "TORCHINDUCTOR_")

# Where the allocators and Intel OpenMP are looked for (the reference preloads jemalloc and Intel OpenMP).
LIB_DIRS = ("/usr/lib/x86_64-linux-gnu", "/usr/lib64", "/usr/lib", "/usr/local/lib", "/lib/x86_64-linux-gnu")
ALLOCATORS = (("jemalloc", ("libjemalloc.so.2", "libjemalloc.so")),
              ("tcmalloc", ("libtcmalloc.so.4", "libtcmalloc.so", "libtcmalloc_minimal.so.4")))
# The reference's jemalloc settings (Intel's launcher and WSF set_env): few, large, long-lived arenas.
JEMALLOC_CONF = "oversize_threshold:1,background_thread:true,metadata_thp:auto,dirty_decay_ms:9000000000," \
                "muzzy_decay_ms:9000000000"
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


@dataclass(frozen=True)
class Runtime:
    """The libraries and tools an instance process starts with; what was not found is None, with why."""

    allocator: str | None = None  # "jemalloc" or "tcmalloc"
    allocator_path: str | None = None
    intel_openmp: str | None = None
    numactl: str | None = None
    notes: tuple[str, ...] = ()

    def preload(self) -> list[str]:
        return [p for p in (self.allocator_path, self.intel_openmp) if p]

    def describe(self) -> dict[str, Any]:
        return {"allocator": self.allocator, "allocator_path": self.allocator_path,
                "intel_openmp": self.intel_openmp, "numactl": self.numactl, "notes": list(self.notes)}


def _first_file(names: tuple[str, ...], dirs: tuple[str, ...]) -> str | None:
    for folder in dirs:
        for name in names:
            path = os.path.join(folder, name)
            if os.path.isfile(path):
                return path
    return None


def find_intel_openmp(prefix: str = sys.prefix) -> str | None:
    """libiomp5.so from the stack (the intel-openmp wheel puts it in <venv>/lib) or the system."""
    wheels = glob.glob(os.path.join(prefix, "lib", "python3*", "site-packages", "*", "lib"))
    here = [os.path.join(prefix, "lib"), *sorted(wheels)]
    return _first_file(("libiomp5.so",), (*here, *LIB_DIRS, "/opt/intel/oneapi/compiler/latest/lib"))


def find_runtime(cpus: list[int], nodes: list[int]) -> Runtime:
    """Look for jemalloc/tcmalloc, Intel OpenMP and a working numactl (tried with the instance's own binding)."""
    notes = []
    allocator = allocator_path = None
    for name, files in ALLOCATORS:
        allocator_path = _first_file(files, LIB_DIRS)
        if allocator_path:
            allocator = name
            break
    if not allocator:
        notes.append(f"no jemalloc or tcmalloc found in {', '.join(LIB_DIRS)}: glibc malloc")
    iomp = find_intel_openmp()
    if not iomp:
        notes.append("Intel OpenMP (libiomp5.so) not found in the stack or the system: torch's GNU OpenMP")
    numactl = shutil.which("numactl")
    if numactl:
        probe = subprocess.run([numactl, *numactl_args(cpus, nodes), "true"], capture_output=True, text=True,
                               timeout=30, check=False)
        if probe.returncode != 0:
            notes.append(f"numactl does not work here ({probe.stderr.strip()[:200]}): sched_setaffinity instead, "
                         "no memory binding")
            numactl = None
    else:
        notes.append("numactl not installed: cores pinned with sched_setaffinity, no memory binding")
    return Runtime(allocator, allocator_path, iomp, numactl, tuple(notes))


def numactl_args(cpus: list[int], nodes: list[int]) -> list[str]:
    return [f"--physcpubind={','.join(map(str, cpus))}", f"--membind={','.join(map(str, nodes))}"]


def nodes_of(cpus: list[int], host: dict[str, Any]) -> list[int]:
    """The NUMA nodes holding ``cpus`` (node 0 when the host reports none)."""
    found = {node["id"] for node in host.get("numa_nodes", []) if set(cpus) & set(node["cpus"])}
    return sorted(found) or [0]


def environment(precision: str, threads: int, onednn_verbose: int,
                runtime: Runtime | None = None) -> dict[str, str | None]:
    """Variables to set (None: unset) before torch is imported; OpenMP and oneDNN read them at load time."""
    env: dict[str, str | None] = {
        "OMP_NUM_THREADS": str(threads),
        "ONEDNN_MAX_CPU_ISA": AVX_ISA_CAP if precision.startswith("avx_") else None,
        "ONEDNN_VERBOSE": str(onednn_verbose) if onednn_verbose else None,
        "HF_HUB_OFFLINE": "1",  # everything is local; never reach the network
        "TRANSFORMERS_OFFLINE": "1",
        "TOKENIZERS_PARALLELISM": "false",
    }
    if runtime is not None and runtime.preload():
        given = [p for p in os.environ.get("LD_PRELOAD", "").replace(":", " ").split() if p]
        env["LD_PRELOAD"] = ":".join(runtime.preload() + [p for p in given if p not in runtime.preload()])
        if runtime.allocator == "jemalloc":
            env["MALLOC_CONF"] = os.environ.get("MALLOC_CONF", JEMALLOC_CONF)
    # The KMP_* knobs only mean something to Intel OpenMP.
    if "libiomp5" in (env.get("LD_PRELOAD") or os.environ.get("LD_PRELOAD", "")):
        env["KMP_BLOCKTIME"] = os.environ.get("KMP_BLOCKTIME", "1")
        env["KMP_AFFINITY"] = os.environ.get("KMP_AFFINITY", "granularity=fine,compact,1,0")
    return env


def apply(env: dict[str, str | None]) -> None:
    for name, value in env.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value


def recorded_environment(environ: dict[str, str] | None = None) -> dict[str, str]:
    """The variables that shape performance (of ``environ``, default this process's), never anything secret."""
    return {name: value for name, value in sorted((os.environ if environ is None else environ).items())
            if name.startswith(RECORDED_PREFIXES) and not any(word in name for word in _SECRET_WORDS)}
