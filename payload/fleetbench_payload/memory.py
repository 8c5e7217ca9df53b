"""How much memory a case needs, estimated before anything loads, so a case that cannot fit fails early.

Per instance process::

    runtime  RUNTIME_MIB                      python + torch + IPEX + transformers + tokenizer + dev set
    weights  WEIGHT_COPIES x weight file size  the loaded model, the prepared copy (ipex.optimize / quantized
                                               / frozen constants) and a transient copy while tracing,
                                               compiling or converting
    compile  COMPILE_MIB (inductor only)       the compile workers torch.compile starts
    streams  streams x activations            per stream (one unless weight sharing), see below

    activations = batch x seq x (ACT_PER_TOKEN_HIDDEN x dim + 2 x hidden_dim) x 4 bytes
                  + batch x heads x seq x seq x 2 x 4 bytes           (attention scores and probabilities)

The total over processes is compared with MemAvailable. The reference asks for about 2 GB per core; this
estimate is about 2 GiB per *process* for DistilBERT-base at batch 1, which is what is really held.
Standard library only.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

RUNTIME_MIB = 1024
COMPILE_MIB = 512
WEIGHT_COPIES = 3
ACT_PER_TOKEN_HIDDEN = 16
MIB = 1024 * 1024


def estimate(model_folder: Path, *, backend: str, batch_size: int, max_seq_length: int, processes: int,
             streams_per_process: int) -> dict[str, Any]:
    config = json.loads((model_folder / "config.json").read_text(encoding="utf-8"))
    dim = int(config.get("dim", config.get("hidden_size", 768)))
    hidden = int(config.get("hidden_dim", config.get("intermediate_size", 4 * dim)))
    heads = int(config.get("n_heads", config.get("num_attention_heads", 12)))
    weights = sum(p.stat().st_size for p in model_folder.iterdir()
                  if p.is_file() and p.suffix in (".safetensors", ".bin"))
    activations = (batch_size * max_seq_length * (ACT_PER_TOKEN_HIDDEN * dim + 2 * hidden) * 4
                   + batch_size * heads * max_seq_length * max_seq_length * 2 * 4)
    per_process = (RUNTIME_MIB * MIB + (COMPILE_MIB * MIB if backend == "inductor" else 0)
                   + WEIGHT_COPIES * weights + streams_per_process * activations)
    return {"estimate_mib": round(processes * per_process / MIB), "per_process_mib": round(per_process / MIB),
            "processes": processes, "streams_per_process": streams_per_process,
            "weights_mib": round(weights / MIB, 1), "activations_mib_per_stream": round(activations / MIB, 1),
            "formula": f"processes x (runtime {RUNTIME_MIB} MiB"
                       + (f" + compile {COMPILE_MIB} MiB" if backend == "inductor" else "")
                       + f" + {WEIGHT_COPIES} x weights + streams x activations)"}
