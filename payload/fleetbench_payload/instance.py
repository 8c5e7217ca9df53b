"""One benchmark instance: load the model, prepare it with the backend, warm up, then time each iteration."""

from __future__ import annotations

import math
import time
from pathlib import Path
from threading import Barrier
from typing import Any

import torch

from fleetbench_payload import ipex_backend, model_loader
from fleetbench_payload.dataset import read_sst2
from fleetbench_payload.errors import stage
from fleetbench_payload.log import Log
from fleetbench_payload.spec import InstanceSpec


def run(spec: InstanceSpec, log: Log, barrier: Barrier | None = None) -> dict[str, Any]:
    """Returns the per-iteration times and the timed window; ``barrier`` lines up the timed phase of instances."""
    torch.set_num_threads(len(spec.cpus))
    prepare = ipex_backend.preparer(spec.precision)
    dev = read_sst2(Path(spec.dev_tsv))
    with stage("model load"):
        model, tokenizer, label_of = model_loader.load(Path(spec.model_folder), spec.use_safetensors)
    with stage("tokenization"):
        encoded = tokenizer(dev.sentences, padding="max_length", truncation=True, max_length=spec.max_seq_length,
                            return_tensors="pt")
    input_ids, attention_mask = encoded["input_ids"], encoded["attention_mask"]
    labels = torch.tensor(dev.labels)
    n, bs = len(dev.sentences), spec.batch_size
    offsets = torch.arange(bs)

    def batch(k: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Batch k of the dev sentences in order, cycling; a short last batch is filled from the start."""
        rows = (offsets + k * bs) % n
        return input_ids[rows], attention_mask[rows]

    log.info(f"preparing {spec.precision} on CPUs {spec.cpus} ({torch.get_num_threads()} threads), batch {bs}, "
             f"seq {spec.max_seq_length}")
    runnable, execution = prepare(model, batch(0))
    execution.update(isa_caps=ipex_backend.isa_levels(), threads=torch.get_num_threads(), cpus=spec.cpus)

    accuracy = spec.mode == "accuracy"
    iterations = math.ceil(n / bs) if accuracy else spec.steps
    first = 0 if accuracy else spec.warmup_steps  # throughput/latency continue the cycle after warm-up
    times: list[float] = []
    correct = 0
    with torch.no_grad():
        with stage("warm-up"):
            for k in range(spec.warmup_steps):
                runnable(*batch(k))
                log.progress("warmup", k + 1, spec.warmup_steps)
        if barrier is not None:
            barrier.wait()
        with stage("timed run"):
            start = time.perf_counter()  # CLOCK_MONOTONIC on Linux: comparable across instance processes
            for k in range(iterations):
                inputs = batch(first + k)
                t0 = time.perf_counter()
                out = runnable(*inputs)
                times.append(time.perf_counter() - t0)
                if accuracy:
                    real = min(bs, n - k * bs)  # predictions of filler rows are dropped
                    logits = out[0] if isinstance(out, (tuple, list)) else out
                    predicted = label_of[logits[:real].argmax(-1)]
                    correct += int((predicted == labels[k * bs:k * bs + real]).sum())
                log.progress("eval batch" if accuracy else "step", k + 1, iterations)
            end = time.perf_counter()
    return {
        "index": spec.index,
        "cpus": spec.cpus,
        "iteration_s": times,
        "samples_timed": n if accuracy else iterations * bs,
        "window": [start, end],
        "correct": correct if accuracy else None,
        "evaluated": n if accuracy else None,
        "execution": execution,
        "versions": {"torch": torch.__version__, "ipex": ipex_backend.version()},
    }
