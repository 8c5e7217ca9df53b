"""Every Intel Extension for PyTorch call of the payload: one function per precision."""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

import intel_extension_for_pytorch as ipex
import torch

from fleetbench_payload.errors import CaseError, stage

Prepared = tuple[Callable[..., Any], dict[str, Any]]


def avx_fp32(model: torch.nn.Module, example: tuple[torch.Tensor, ...]) -> Prepared:
    """fp32 as the reference runs it: ipex.optimize(O1), then a frozen TorchScript trace."""
    with torch.no_grad():
        with stage("ipex.optimize"):
            model = ipex.optimize(model.eval(), dtype=torch.float32, level="O1")
        with stage("jit trace"):
            traced = torch.jit.trace(model, example, strict=False)
        with stage("jit freeze"):
            traced = torch.jit.freeze(traced)
    return traced, {"backend": "ipex", "path": "ipex.optimize(level=O1) + torch.jit.trace(strict=False) + "
                    "torch.jit.freeze", "dtype": "float32"}


PRECISIONS: dict[str, Callable[[torch.nn.Module, tuple[torch.Tensor, ...]], Prepared]] = {"avx_fp32": avx_fp32}


def preparer(precision: str) -> Callable[[torch.nn.Module, tuple[torch.Tensor, ...]], Prepared]:
    if precision not in PRECISIONS:
        raise CaseError(f"precision {precision} is not implemented yet in the ipex backend "
                        f"(implemented: {', '.join(PRECISIONS)})")
    return PRECISIONS[precision]


def isa_levels() -> dict[str, str]:
    """The oneDNN cap asked for and the ISA levels IPEX and oneDNN actually use in this process."""
    return {"ONEDNN_MAX_CPU_ISA": os.environ.get("ONEDNN_MAX_CPU_ISA", "unset"),
            "ipex_isa": str(ipex._C._get_current_isa_level()),
            "onednn_isa": str(ipex._C._get_current_onednn_isa_level()),
            "aten_cpu_capability": torch.backends.cpu.get_cpu_capability()}


def version() -> str:
    return str(ipex.__version__)
