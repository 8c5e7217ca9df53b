"""Every Intel Extension for PyTorch call of the payload (the IPEX 2.8 API), one function per precision.

tests/payload checks each ``ipex.*`` call below (function names and keyword arguments) against the installed
IPEX, and the methods IPEX adds to a prepared int8 model (``PREPARED_MODEL_METHODS``), so an API change in a
new IPEX shows up as a failing test here rather than as a failed case on a Xeon.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from functools import partial
from pathlib import Path
from typing import Any

import intel_extension_for_pytorch as ipex
import torch
from torch.ao.quantization import MinMaxObserver, PerChannelMinMaxObserver, QConfig, QConfigMapping

from fleetbench_payload import cpuinfo
from fleetbench_payload.backend_api import PrepareContext, Prepared, Preparer
from fleetbench_payload.errors import CaseError, stage

NAME = "ipex"
# Methods IPEX attaches to the model ipex.quantization.prepare returns, with the keyword arguments used here.
PREPARED_MODEL_METHODS = {"save_qconf_summary": ("qconf_summary",), "load_qconf_summary": ("qconf_summary",)}
QCONF_SUMMARY = "qconf_summary.json"


def _trace_and_freeze(model: torch.nn.Module, example: tuple[torch.Tensor, ...],
                      bf16: bool = False) -> torch.jit.ScriptModule:
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
        with stage("jit trace"):
            traced = torch.jit.trace(model, example, strict=False)
        with stage("jit freeze"):
            traced = torch.jit.freeze(traced)
    return traced


def _runner(traced: torch.jit.ScriptModule, bf16: bool) -> Callable[..., Any]:
    if not bf16:
        return traced

    def run(*inputs: torch.Tensor) -> Any:  # the reference calls the bf16 graph under CPU autocast too
        with torch.autocast("cpu", dtype=torch.bfloat16):
            return traced(*inputs)

    return run


def avx_fp32(model: torch.nn.Module, example: tuple[torch.Tensor, ...], ctx: PrepareContext) -> Prepared:
    """fp32 as the reference runs it (ipex.optimize(O1), then a frozen TorchScript trace). On Intel the fp32
    linear layers stay on MKL, as in the reference; elsewhere MKL does not use AVX-512, so IPEX's
    auto_kernel_selection moves them to oneDNN's kernels (measured 1.4-1.6x faster on AMD, 3-7% slower on
    Intel: docs/payload.md). bf16, bf32 and int8 use oneDNN anyway."""
    use_onednn = cpuinfo.detect()["platform"]["vendor"] != "Intel"
    with torch.no_grad(), stage("ipex.optimize"):
        model = ipex.optimize(model.eval(), dtype=torch.float32, level="O1", auto_kernel_selection=use_onednn)
    return _trace_and_freeze(model, example), {
        "backend": NAME, "dtype": "float32",
        "path": f"ipex.optimize(dtype=float32, level=O1, auto_kernel_selection={use_onednn}) + "
                "torch.jit.trace(strict=False) + torch.jit.freeze"}


def amx_bfloat16(model: torch.nn.Module, example: tuple[torch.Tensor, ...], ctx: PrepareContext) -> Prepared:
    """bf16: ipex.optimize(dtype=bfloat16) and a trace under CPU bf16 autocast, as the reference."""
    with torch.no_grad(), stage("ipex.optimize"):
        model = ipex.optimize(model.eval(), dtype=torch.bfloat16, level="O1")
    traced = _trace_and_freeze(model, example, bf16=True)
    return _runner(traced, bf16=True), {
        "backend": NAME, "dtype": "bfloat16",
        "path": "ipex.optimize(dtype=bfloat16, level=O1) + torch.autocast(cpu, bfloat16) + torch.jit.trace + "
                "torch.jit.freeze"}


def amx_bfloat32(model: torch.nn.Module, example: tuple[torch.Tensor, ...], ctx: PrepareContext) -> Prepared:
    """bf32: fp32 weights, oneDNN allowed to do the fp32 math in bf16 (ipex.set_fp32_math_mode(BF32))."""
    with stage("ipex.set_fp32_math_mode"):
        ipex.set_fp32_math_mode(mode=ipex.FP32MathMode.BF32, device="cpu")
    with torch.no_grad(), stage("ipex.optimize"):
        model = ipex.optimize(model.eval(), dtype=torch.float32, level="O1")
    return _trace_and_freeze(model, example), {
        "backend": NAME, "dtype": "float32 (bf16 math)", "bf32_knob": "ipex.set_fp32_math_mode(FP32MathMode.BF32)",
        "path": "ipex.set_fp32_math_mode(BF32) + ipex.optimize(dtype=float32, level=O1) + torch.jit.trace + "
                "torch.jit.freeze"}


def static_qconfig() -> QConfigMapping:
    """The reference's static int8 recipe: MinMax per-tensor affine quint8 activations, per-channel symmetric
    qint8 weights."""
    return QConfigMapping().set_global(QConfig(
        activation=MinMaxObserver.with_args(qscheme=torch.per_tensor_affine, dtype=torch.quint8),
        weight=PerChannelMinMaxObserver.with_args(dtype=torch.qint8, qscheme=torch.per_channel_symmetric)))


def _calibrated(model: torch.nn.Module, example: tuple[torch.Tensor, ...], ctx: PrepareContext) -> tuple[Any, bool]:
    """The model prepared for ``example``'s shape with the calibration loaded from the cache; calibrated
    (on a model prepared for the calibration batch) and cached first when the cache has none."""
    calibration = ctx.calibration
    if calibration is None:
        raise CaseError(f"{ctx.precision} needs a calibration plan")

    def calibrate(tmp: Path) -> dict[str, Any]:
        batches = list(calibration.batches())
        with stage("ipex.quantization.prepare (calibration)"):
            observed = ipex.quantization.prepare(model, static_qconfig(), example_inputs=ctx.encode(batches[0]),
                                                 inplace=False)
        with stage("int8 calibration"):
            for sentences in batches:
                observed(*ctx.encode(sentences))
        with stage("ipex save_qconf_summary"):
            observed.save_qconf_summary(qconf_summary=str(tmp))
        return {}

    summary, cached = calibration.ensure(QCONF_SUMMARY, ctx.log, calibrate)
    with stage("ipex.quantization.prepare"):
        prepared = ipex.quantization.prepare(model, static_qconfig(), example_inputs=example, inplace=False)
    with stage("ipex load_qconf_summary"):
        prepared.load_qconf_summary(qconf_summary=str(summary))
    return prepared, cached


def _int8(model: torch.nn.Module, example: tuple[torch.Tensor, ...], ctx: PrepareContext, bf16: bool) -> Prepared:
    assert ctx.calibration is not None
    started = time.perf_counter()
    with torch.no_grad():
        prepared, cached = _calibrated(model.eval(), example, ctx)
        seconds = time.perf_counter() - started
        with stage("ipex.quantization.convert"):
            converted = ipex.quantization.convert(prepared)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            with stage("jit trace"):
                traced = torch.jit.trace(converted, example, strict=False)
            quantized = str(traced.inlined_graph).count("aten::quantize_per_tensor")
            if quantized == 0:
                raise CaseError(f"{ctx.precision}: the traced IPEX int8 model holds no quantize op: nothing was "
                                "quantized")
            with stage("jit freeze"):
                traced = torch.jit.freeze(traced)
    mixed = " under torch.autocast(cpu, bfloat16) (int8 mixed with bf16)" if bf16 else ""
    return _runner(traced, bf16), {
        "backend": NAME, "dtype": "int8 + bfloat16" if bf16 else "int8",
        "path": "ipex.quantization.prepare(static: MinMax per-tensor quint8 act, per-channel symmetric qint8 "
                "weights) + calibration + ipex.quantization.convert + torch.jit.trace" + mixed + " + torch.jit.freeze",
        "calibration": ctx.calibration.describe(cached, seconds), "quantize_ops": quantized}


PRECISIONS: dict[str, Preparer] = {
    "avx_fp32": avx_fp32, "amx_bfloat16": amx_bfloat16, "amx_bfloat32": amx_bfloat32,
    "avx_int8": partial(_int8, bf16=False), "amx_int8": partial(_int8, bf16=True)}


@contextmanager
def verbose() -> Iterator[None]:
    """oneDNN verbose output of IPEX's and torch's oneDNN (and MKL's) while the block runs."""
    with ipex.verbose(ipex.VERBOSE_ON), torch.backends.mkl.verbose(torch.backends.mkl.VERBOSE_ON):
        yield


def stream_pinning(cpus: list[int]) -> tuple[AbstractContextManager[Any], str]:
    """How a weight-sharing stream thread binds its OpenMP threads to its cores. IPEX's documented way is a
    CPUPool per stream; its runtime extension only works with Intel OpenMP loaded. Without it the stream's
    thread is pinned with sched_setaffinity and GNU OpenMP starts its team with that affinity."""
    if ipex.cpu.runtime.is_runtime_ext_enabled():
        return ipex.cpu.runtime.pin(ipex.cpu.runtime.CPUPool(core_ids=cpus)), "ipex.cpu.runtime.pin(CPUPool(core_ids))"
    return nullcontext(), ("sched_setaffinity per stream thread (ipex.cpu.runtime needs Intel OpenMP, which is not "
                           "loaded)")


def isa_levels() -> dict[str, str]:
    """The oneDNN cap asked for and the ISA levels IPEX and oneDNN actually use in this process."""
    return {"ONEDNN_MAX_CPU_ISA": os.environ.get("ONEDNN_MAX_CPU_ISA", "unset"),
            "ipex_isa": str(ipex._C._get_current_isa_level()),
            "onednn_isa": str(ipex._C._get_current_onednn_isa_level()),
            "aten_cpu_capability": torch.backends.cpu.get_cpu_capability()}


def version() -> str:
    return str(ipex.__version__)
