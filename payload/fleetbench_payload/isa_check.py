"""Which ISA the kernels really used: capture oneDNN (and MKL) verbose output of a short pass and read it.

oneDNN prints one line per primitive execution to the process's stdout (C stdio), e.g.::

    onednn_verbose,v1,primitive,exec,cpu,inner_product,brgemm:avx10_1_512_amx,forward_inference,...
    onednn_verbose,exec,cpu,matmul,brg_matmul:avx512_core_vnni,undef,...            (oneDNN before 3.4)

The implementation name (``brgemm:avx10_1_512_amx``) says which ISA the kernel was built for; oneDNN 3.7
(torch and IPEX 2.8) spells the SPR-level ISAs ``avx10_1_512`` (AVX-512 + FP16) and ``avx10_1_512_amx``
(older releases: ``avx512_core_fp16``, ``avx512_core_amx``). MKL prints ``MKL_VERBOSE`` lines; its header
names the code path MKL picked for this CPU (``... Intel(R) AMX ...`` on any AMX host, fp32 SGEMM included),
which is recorded but never taken as proof that an AMX kernel ran.
Standard library only: the launcher and the unit tests use the parser without torch.
"""

from __future__ import annotations

import ctypes
import os
import re
import sys
import tempfile
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

# The whole ISA token of an implementation name (``brgemm:avx10_1_512_amx`` -> ``avx10_1_512_amx``): matching
# a list of known names would read a newer, longer name as its prefix (``avx10_1_512``) and miss AMX.
_ISA = re.compile(r"(?<![a-z0-9])(?:sse41|avx[a-z0-9_]*)")
COMPUTE = frozenset({"matmul", "inner_product", "convolution", "deconvolution", "rnn"})
MAX_KEPT = 12  # implementations listed in the result



def kernel_isa(implementation: str) -> str:
    """``brgemm:avx10_1_512_amx`` -> ``avx10_1_512_amx``; ``gemm:jit`` or ``ref:any`` -> ``none``."""
    match = _ISA.search(implementation)
    return match.group(0) if match else "none"


def parse(text: str) -> dict[str, Any]:
    """Summarise verbose output: kernel counts per ISA, the ISAs of compute kernels, AMX, bf16 math, int8."""
    impls: Counter[str] = Counter()
    isa: Counter[str] = Counter()
    compute: Counter[str] = Counter()
    fpmath_bf16 = int8 = graph = 0
    mkl_calls = 0
    mkl_header = ""
    for line in text.splitlines():
        if line.startswith("MKL_VERBOSE"):
            if " Intel(R) " in line and ("oneMKL" in line or "Intel(R) MKL" in line) and not mkl_header:
                mkl_header = line[len("MKL_VERBOSE "):].strip()[:300]
            elif "(" in line:
                mkl_calls += 1
            continue
        if "onednn_verbose" not in line and "dnnl_verbose" not in line:
            continue
        fields = line.split(",")
        if "exec" not in fields:
            continue
        at = fields.index("exec")
        if "graph" in fields[:at]:
            graph += 1
            continue
        if len(fields) < at + 4:
            continue
        primitive, implementation = fields[at + 2], fields[at + 3]
        impls[f"{primitive} {implementation}"] += 1
        kind = kernel_isa(implementation)
        isa[kind] += 1
        if primitive in COMPUTE:
            compute[kind] += 1
        if "fpmath:bf16" in line:
            fpmath_bf16 += 1
        if primitive in COMPUTE and re.search(r"src(_\w+)?:[us]8", line):
            int8 += 1
    mkl_isa = None
    if mkl_header:
        for name, token in (("amx", "AMX"), ("avx512", "AVX-512"), ("avx2", "AVX2")):
            if token in mkl_header:
                mkl_isa = name
                break
    return {
        "onednn_kernels": sum(impls.values()),
        "isa_counts": dict(isa.most_common()),
        "compute_isa": dict(compute.most_common()),
        "implementations": dict(impls.most_common(MAX_KEPT)),
        "amx": any("amx" in name for name in compute),
        "fpmath_bf16": fpmath_bf16,
        "int8_kernels": int8,
        "graph_partitions": graph,
        "mkl_calls": mkl_calls,
        "mkl_isa": mkl_isa,
    }


def judge(precision: str, summary: dict[str, Any], host_lacks_isa: bool) -> tuple[bool, str]:
    """(passes, verdict). ``avx_*`` fails when an AMX kernel ran (its oneDNN cap did not hold); ``amx_*`` needs
    an AMX kernel unless the host lacks AMX and the user ran it anyway
    (require_isa=false: then the missing AMX is expected and recorded, not a failure); ``amx_bfloat32`` also
    needs kernels that did their fp32 math in bf16 (oneDNN fpmath bf16)."""
    compute = ", ".join(f"{k} x{n}" for k, n in summary["compute_isa"].items()) or "no oneDNN compute kernel"
    mkl = f"; MKL calls: {summary['mkl_calls']}" if summary["mkl_calls"] else ""
    seen = f"oneDNN compute kernels: {compute}{mkl}"
    if precision == "amx_bfloat32" and summary["fpmath_bf16"] == 0:
        return False, f"amx_bfloat32 asked for fp32 math in bf16, but no kernel ran with bf16 math ({seen})"
    if precision.startswith("avx_") and summary["amx"]:
        return False, f"{precision} caps oneDNN below AMX, but an AMX kernel ran ({seen})"
    if precision.startswith("amx_") and not summary["amx"]:
        if host_lacks_isa:
            return True, f"no AMX kernel, as expected on a host without AMX ({seen})"
        return False, f"{precision} needs AMX, but no AMX kernel ran ({seen})"
    if precision.endswith("_int8") and summary["int8_kernels"] == 0:
        return False, f"{precision} asked for int8, but no int8 oneDNN kernel ran ({seen})"
    return True, seen


@contextmanager
def captured_stdout() -> Iterator[list[str]]:
    """Redirect file descriptor 1 (where oneDNN and MKL print) into a temporary file; the text lands in the
    yielded list when the block ends. C stdio buffers are flushed on both sides of the switch."""
    libc = ctypes.CDLL(None)
    out: list[str] = []
    sys.stdout.flush()
    libc.fflush(None)
    saved = os.dup(1)
    with tempfile.TemporaryFile() as tmp:
        os.dup2(tmp.fileno(), 1)
        try:
            yield out
        finally:
            sys.stdout.flush()
            libc.fflush(None)
            os.dup2(saved, 1)
            os.close(saved)
            tmp.seek(0)
            out.append(tmp.read().decode("utf-8", "replace"))
