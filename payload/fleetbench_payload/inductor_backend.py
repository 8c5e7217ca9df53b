"""The upstream-PyTorch backend: torch.compile (Inductor) and PT2E int8. It never imports IPEX.

- avx_fp32: ``torch.compile`` with ``torch._inductor.config.freezing = True`` (weights folded as constants
  and prepacked for oneDNN/MKL).
- amx_bfloat16: the same under ``torch.autocast("cpu", bfloat16)``.
- amx_bfloat32: fp32 weights, with PyTorch's knob for bf16 math in fp32 matmuls,
  ``torch.backends.mkldnn.matmul.fp32_precision = "bf16"`` (PyTorch >= 2.9; on the pinned 2.8 the case is
  skipped before loading: its only knob reaches no linear layer). The ISA check (oneDNN verbose) records
  whether any kernel really did its math in bf16.
- avx_int8 / amx_int8: PT2E static quantization: ``torch.export`` (strict, so the quantizer can see the
  linear layers), ``prepare_pt2e`` with ``X86InductorQuantizer`` (its default config: per-tensor affine u8
  activations with histogram observers, per-channel symmetric s8 weights), calibration, ``convert_pt2e``,
  then ``torch.compile``; amx_int8 compiles and runs under bf16 autocast (int8 mixed with bf16).

torch.compile needs a C++ compiler on the host; its cache goes to ``TORCHINDUCTOR_CACHE_DIR`` (set by the
launcher under the host cache). A compile failure fails the case with the compiler's own error.
"""

from __future__ import annotations

import os
import time
import warnings
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from functools import partial
from pathlib import Path
from typing import Any

import torch
import torch._inductor.config as inductor_config

from fleetbench_payload.backend_api import PrepareContext, Prepared, Preparer
from fleetbench_payload.errors import CaseError, stage

NAME = "inductor"
OBSERVERS = "observers.pt"


def _compiled(model: torch.nn.Module, example: tuple[torch.Tensor, ...], bf16: bool) -> Callable[..., Any]:
    inductor_config.freezing = True
    with stage("torch.compile"):
        compiled = torch.compile(model, backend="inductor")

    def run(*inputs: torch.Tensor) -> Any:
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            return compiled(*inputs)

    # The first call compiles (graph capture, Inductor codegen, the C++ build): its errors fail the case here.
    with torch.no_grad(), stage("torch.compile (first call: Inductor code generation and C++ build)"):
        run(*example)
    return run


def avx_fp32(model: torch.nn.Module, example: tuple[torch.Tensor, ...], ctx: PrepareContext) -> Prepared:
    return _compiled(model.eval(), example, bf16=False), {
        "backend": NAME, "dtype": "float32", "path": "torch.compile(backend=inductor, freezing=True)"}


def amx_bfloat16(model: torch.nn.Module, example: tuple[torch.Tensor, ...], ctx: PrepareContext) -> Prepared:
    return _compiled(model.eval(), example, bf16=True), {
        "backend": NAME, "dtype": "bfloat16",
        "path": "torch.autocast(cpu, bfloat16) + torch.compile(backend=inductor, freezing=True)"}


def bf32_knob() -> str:
    """Turn on bf16 math for fp32 matmuls (PyTorch >= 2.9; the case refuses amx_bfloat32 on older ones)."""
    matmul = getattr(torch.backends.mkldnn, "matmul", None)
    if matmul is None or not hasattr(matmul, "fp32_precision"):
        raise CaseError(f"amx_bfloat32: torch {torch.__version__} has no torch.backends.mkldnn.matmul.fp32_precision")
    matmul.fp32_precision = "bf16"
    return "torch.backends.mkldnn.matmul.fp32_precision = 'bf16'"


def amx_bfloat32(model: torch.nn.Module, example: tuple[torch.Tensor, ...], ctx: PrepareContext) -> Prepared:
    with stage("bf32 setting"):
        knob = bf32_knob()
    return _compiled(model.eval(), example, bf16=False), {
        "backend": NAME, "dtype": "float32 (bf16 math)", "bf32_knob": knob,
        "path": f"{knob} + torch.compile(backend=inductor, freezing=True)"}


def _observed(model: torch.nn.Module, example: tuple[torch.Tensor, ...]) -> tuple[Any, int]:
    """The model exported for ``example``'s shape with PT2E observers inserted, and how many."""
    import torch.ao.quantization.quantizer.x86_inductor_quantizer as xiq
    from torch.ao.quantization.quantize_pt2e import prepare_pt2e

    with stage("torch.export (strict)"):
        exported = torch.export.export(model, example, strict=True).module()
    quantizer = xiq.X86InductorQuantizer()
    quantizer.set_global(xiq.get_default_x86_inductor_quantization_config())
    with stage("prepare_pt2e"):
        prepared = prepare_pt2e(exported, quantizer)
    observers = sum(isinstance(m, torch.ao.quantization.ObserverBase) for m in prepared.modules())
    if observers == 0:
        raise CaseError("X86InductorQuantizer inserted no observer into the exported graph: nothing would be "
                        "quantized")
    return prepared, observers


def _calibrated(model: torch.nn.Module, example: tuple[torch.Tensor, ...],
                ctx: PrepareContext) -> tuple[Any, int, bool]:
    """The observed model for ``example``'s shape with the observers' statistics loaded from the cache;
    calibrated (on a graph exported for the calibration batch) and cached first when the cache has none."""
    calibration = ctx.calibration
    if calibration is None:
        raise CaseError(f"{ctx.precision} needs a calibration plan")

    def calibrate(tmp: Path) -> dict[str, Any]:
        batches = list(calibration.batches())
        observed, observers = _observed(model, ctx.encode(batches[0]))
        with stage("int8 calibration"):
            for sentences in batches:
                observed(*ctx.encode(sentences))
        torch.save({k: v for k, v in observed.state_dict().items() if "activation_post_process" in k}, tmp)
        return {"observers": observers}

    path, cached = calibration.ensure(OBSERVERS, ctx.log, calibrate)
    prepared, observers = _observed(model, example)
    with stage("loading the calibration"):
        result = prepared.load_state_dict(torch.load(path, weights_only=True), strict=False)
        missing = [k for k in result.missing_keys if "activation_post_process" in k]
        if missing or result.unexpected_keys:
            raise ValueError(f"the cached observer statistics do not match this graph (missing {missing[:3]}, "
                             f"unexpected {result.unexpected_keys[:3]})")
    return prepared, observers, cached


def _int8(model: torch.nn.Module, example: tuple[torch.Tensor, ...], ctx: PrepareContext, bf16: bool) -> Prepared:
    assert ctx.calibration is not None
    started = time.perf_counter()
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=DeprecationWarning, message=".*torch.ao.quantization.*")
        from torch.ao.quantization.quantize_pt2e import convert_pt2e

        with torch.no_grad():
            prepared, observers, cached = _calibrated(model.eval(), example, ctx)
            seconds = time.perf_counter() - started
            with stage("convert_pt2e"):
                converted = convert_pt2e(prepared)
                torch.ao.quantization.move_exported_model_to_eval(converted)
            quantized = sum("quantize_per_tensor" in str(n.target) for n in converted.graph.nodes)
            if quantized == 0:
                raise CaseError(f"{ctx.precision}: convert_pt2e left no quantize op: nothing was quantized")
    mixed = "torch.autocast(cpu, bfloat16) + " if bf16 else ""
    return _compiled(converted, example, bf16), {
        "backend": NAME, "dtype": "int8 + bfloat16" if bf16 else "int8",
        "path": "torch.export(strict) + prepare_pt2e(X86InductorQuantizer default config) + calibration + "
                f"convert_pt2e + {mixed}torch.compile(backend=inductor, freezing=True)",
        "calibration": ctx.calibration.describe(cached, seconds), "quantize_ops": quantized, "observers": observers}


PRECISIONS: dict[str, Preparer] = {
    "avx_fp32": avx_fp32, "amx_bfloat16": amx_bfloat16, "amx_bfloat32": amx_bfloat32,
    "avx_int8": partial(_int8, bf16=False), "amx_int8": partial(_int8, bf16=True)}


@contextmanager
def verbose() -> Iterator[None]:
    """oneDNN and MKL verbose output of torch while the block runs."""
    with torch.backends.mkldnn.verbose(torch.backends.mkldnn.VERBOSE_ON), \
            torch.backends.mkl.verbose(torch.backends.mkl.VERBOSE_ON):
        yield


def stream_pinning(cpus: list[int]) -> tuple[AbstractContextManager[Any], str]:
    """Each weight-sharing stream thread is pinned with sched_setaffinity (by the instance) before its first
    parallel region, so the OpenMP team GNU OpenMP starts for that thread inherits the stream's cores."""
    return nullcontext(), "sched_setaffinity per stream thread (GNU OpenMP team per thread)"


def isa_levels() -> dict[str, str]:
    from torch._inductor import cpu_vec_isa

    return {"ONEDNN_MAX_CPU_ISA": os.environ.get("ONEDNN_MAX_CPU_ISA", "unset"),
            "aten_cpu_capability": torch.backends.cpu.get_cpu_capability(),
            "inductor_vec_isa": str(cpu_vec_isa.pick_vec_isa() or "none")}


def version() -> None:
    return None  # no IPEX in this backend
