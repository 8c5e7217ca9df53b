"""One instance process: load the model, prepare it with the backend, warm up, then time each iteration.

Started by the launcher (``python -m fleetbench_payload instance --spec SPEC``) under numactl (or with its
affinity set), with its allocator and OpenMP preloaded. It runs one stream, or with weight sharing one
stream per core group, all sharing the one prepared model. It writes its figures to ``spec.result_path``.
"""

from __future__ import annotations

import importlib
import json
import math
import os
import resource
import sys
import threading
import time
import traceback
from collections import Counter
from pathlib import Path
from types import ModuleType
from typing import Any

import torch

from fleetbench_payload import isa_check, model_loader
from fleetbench_payload.backend_api import PrepareContext, pick
from fleetbench_payload.calibration import Calibration, reference_file
from fleetbench_payload.dataset import read_sst2
from fleetbench_payload.errors import CaseError, one_line, stage
from fleetbench_payload.fileio import write_json_atomic
from fleetbench_payload.log import Log
from fleetbench_payload.spec import InstanceSpec

VERIFY_ITERATIONS = 2
BACKENDS = {"ipex": "fleetbench_payload.ipex_backend", "inductor": "fleetbench_payload.inductor_backend"}


class ProcessBarrier:
    """The launcher's barrier: say ready on a pipe, wait for ``go`` on stdin."""

    def __init__(self, ready_fd: int) -> None:
        self.ready_fd = ready_fd

    def wait(self) -> None:
        os.write(self.ready_fd, b"ready\n")
        line = sys.stdin.buffer.readline()
        if line.strip() != b"go":
            raise CaseError("stopped before the timed phase: another instance failed")


def main(spec_path: Path) -> int:
    spec = InstanceSpec.load(spec_path)
    log = Log(Path(spec.log_path), spec.log_prefix)
    barrier = ProcessBarrier(int(spec.extra["ready_fd"])) if spec.barrier else None
    try:
        result = run(spec, log, barrier)
    except CaseError as exc:
        if exc.__cause__ is not None:
            log.raw("".join(traceback.format_exception(exc.__cause__)))
        result = {**exc.details, "index": spec.index, "error": exc.reason}
    except BaseException as exc:
        log.raw(traceback.format_exc())
        result = {"index": spec.index, "error": f"payload error: {one_line(exc)}"}
    write_json_atomic(Path(spec.result_path), result)
    return 0


def load_backend(name: str) -> ModuleType:
    if name not in BACKENDS:
        raise CaseError(f"backend {name} is not implemented (implemented: {', '.join(BACKENDS)})")
    with stage(f"loading the {name} backend"):
        return importlib.import_module(BACKENDS[name])


class Inputs:
    """The dev set tokenized once, served in batches that cycle through it."""

    def __init__(self, spec: InstanceSpec, tokenizer: Any) -> None:
        self.spec = spec
        self.tokenizer = tokenizer
        dev = read_sst2(Path(spec.dev_tsv))
        self.n = len(dev.sentences)
        self.sha256 = dev.sha256
        with stage("tokenization"):
            self.input_ids, self.attention_mask = self.encode(dev.sentences)
        self.labels = torch.tensor(dev.labels)
        self.offsets = torch.arange(spec.batch_size)

    def encode(self, sentences: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
        encoded = self.tokenizer(sentences, padding="max_length", truncation=True,
                                 max_length=self.spec.max_seq_length, return_tensors="pt")
        return encoded["input_ids"], encoded["attention_mask"]

    def batch(self, k: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Batch k of the dev sentences in order, cycling; a short last batch is filled from the start."""
        rows = (self.offsets + k * self.spec.batch_size) % self.n
        return self.input_ids[rows], self.attention_mask[rows]


def count_correct(out: Any, k: int, inputs: Inputs, label_of: torch.Tensor) -> int:
    bs = inputs.spec.batch_size
    real = min(bs, inputs.n - k * bs)  # predictions of filler rows are dropped
    logits = out[0] if isinstance(out, (tuple, list)) else out
    predicted = label_of[logits[:real].float().argmax(-1)]
    return int((predicted == inputs.labels[k * bs:k * bs + real]).sum())


def fp32_reference(spec: InstanceSpec, model: torch.nn.Module, inputs: Inputs, label_of: torch.Tensor,
                   log: Log) -> dict[str, Any]:
    """The fp32 accuracy of this model (eager transformers, fp32) on the same dev set and max_seq_length,
    from the host cache or measured now (one extra pass) and cached."""
    path = reference_file(Path(spec.cache_dir), model_files=spec.model_files, dev_sha256=inputs.sha256,
                          max_seq_length=spec.max_seq_length, lock_sha256=spec.lock_sha256)
    if path.is_file():
        try:
            doc = json.loads(path.read_text(encoding="utf-8"))
            log.info(f"fp32 reference accuracy {doc['accuracy']:.2f}% from the cache ({path})")
            return {**doc, "cached": True, "cache_file": str(path)}
        except (OSError, ValueError, KeyError) as exc:
            log.info(f"ignoring an unreadable fp32 reference in the cache ({exc}); measuring it again")
    log.info("measuring the fp32 reference accuracy (eager fp32) for the accuracy guard")
    correct = 0
    with stage("fp32 reference accuracy pass"), torch.inference_mode():
        for k in range(math.ceil(inputs.n / spec.batch_size)):
            correct += count_correct(model(*inputs.batch(k)), k, inputs, label_of)
    doc = {"accuracy": 100 * correct / inputs.n, "correct": correct, "evaluated": inputs.n}
    path.parent.mkdir(parents=True, exist_ok=True)
    write_json_atomic(path, doc)
    log.info(f"fp32 reference accuracy {doc['accuracy']:.2f}% (cached in {path})")
    return {**doc, "cached": False, "cache_file": str(path)}


def verify_isa(backend: ModuleType, runnable: Any, inputs: Inputs, spec: InstanceSpec, log: Log) -> dict[str, Any]:
    """A short pass with oneDNN (and MKL) verbose on; which ISA the kernels used, and the verdict."""
    with stage("ISA verification pass"), torch.no_grad(), isa_check.captured_stdout() as text:
        with backend.verbose():
            for k in range(VERIFY_ITERATIONS):
                runnable(*inputs.batch(k))
    summary = isa_check.parse(text[0] if text else "")
    ok, verdict = isa_check.judge(spec.precision, summary, spec.host_lacks_isa)
    summary.update(iterations=VERIFY_ITERATIONS, passed=ok, verdict=verdict)
    log.info(f"ISA check ({VERIFY_ITERATIONS} iterations, oneDNN verbose): {verdict}")
    return summary


def thread_affinity() -> dict[str, int]:
    """How many threads of this process may run on each CPU set (from /proc), e.g. {"0": 3, "1": 2}."""
    sets: Counter[str] = Counter()
    for tid in os.listdir("/proc/self/task"):
        try:
            with open(f"/proc/self/task/{tid}/status", encoding="utf-8") as f:
                for line in f:
                    if line.startswith("Cpus_allowed_list:"):
                        sets[line.split(":", 1)[1].strip()] += 1
        except OSError:
            continue
    return dict(sets)


def loaded_libraries() -> list[str]:
    """Allocator and OpenMP libraries mapped into this process (proves what LD_PRELOAD really did)."""
    names = ("jemalloc", "tcmalloc", "libiomp5", "libgomp")
    found: set[str] = set()
    try:
        with open("/proc/self/maps", encoding="utf-8") as f:
            for line in f:
                path = line.split()[-1] if len(line.split()) >= 6 else ""
                if any(name in path for name in names):
                    found.add(os.path.basename(path))
    except OSError:
        pass
    return sorted(found)


class Stream:
    """One stream: its cores, warm-up, optional ISA check, the barrier, then the timed iterations."""

    def __init__(self, spec: InstanceSpec, position: int, runnable: Any, inputs: Inputs, label_of: torch.Tensor,
                 log: Log) -> None:
        self.spec, self.position, self.runnable, self.inputs, self.label_of = spec, position, runnable, inputs, label_of
        self.cpus = spec.streams[position]
        self.index = spec.first_stream + position
        self.log = log
        self.result: dict[str, Any] | None = None
        self.error: BaseException | None = None
        self.observed_cpus: list[int] = []

    def run(self, barrier: Any, before_barrier: Any = None) -> None:
        spec, inputs = self.spec, self.inputs
        accuracy = spec.mode == "accuracy"
        iterations = math.ceil(inputs.n / spec.batch_size) if accuracy else spec.steps
        first = 0 if accuracy else spec.warmup_steps  # throughput/latency continue the cycle after warm-up
        minimum = 0 if accuracy else spec.min_duration_s
        times: list[float] = []
        correct = 0
        self.observed_cpus = sorted(os.sched_getaffinity(0))
        with torch.no_grad():
            with stage("warm-up"):
                for k in range(spec.warmup_steps):
                    self.runnable(*inputs.batch(k))
                    self.progress("warmup", k + 1, spec.warmup_steps)
            if before_barrier is not None:
                before_barrier()
            if barrier is not None:
                barrier.wait()
            with stage("timed run"):
                start = time.perf_counter()  # CLOCK_MONOTONIC on Linux: comparable across instance processes
                k = 0
                while k < iterations or time.perf_counter() - start < minimum:
                    batch = inputs.batch(first + k)
                    t0 = time.perf_counter()
                    out = self.runnable(*batch)
                    times.append(time.perf_counter() - t0)
                    if accuracy:
                        correct += count_correct(out, k, inputs, self.label_of)
                    k += 1
                    self.progress("eval batch" if accuracy else "step", k, iterations)
                end = time.perf_counter()
        self.result = {"index": self.index, "cpus": self.cpus, "observed_cpus": self.observed_cpus,
                       "iteration_s": times, "samples_timed": inputs.n if accuracy else len(times) * spec.batch_size,
                       "window": [start, end], "correct": correct if accuracy else None,
                       "evaluated": inputs.n if accuracy else None}

    def progress(self, what: str, done: int, total: int) -> None:
        """Progress lines (and progress.json) up to ``total``; min_duration_s iterations past it are not logged."""
        if done <= total:
            self.log.progress(f"stream {self.index}: {what}" if len(self.spec.streams) > 1 else what, done, total)


def run(spec: InstanceSpec, log: Log, process_barrier: ProcessBarrier | None = None) -> dict[str, Any]:
    os.sched_setaffinity(0, spec.cpus)  # numactl did it already where it exists; harmless then
    threads = len(spec.streams[0])
    torch.set_num_threads(threads)
    backend = load_backend(spec.backend)
    prepare = pick(backend.NAME, backend.PRECISIONS, spec.precision)
    with stage("model load"):
        model, tokenizer, label_of = model_loader.load(Path(spec.model_folder), spec.use_safetensors)
    inputs = Inputs(spec, tokenizer)

    reference = None
    if spec.accuracy_reference:
        reference = fp32_reference(spec, model, inputs, label_of, log)
    calibration = None
    if spec.precision.endswith("_int8"):
        train = read_sst2(Path(spec.train_tsv))
        calibration = Calibration.plan(Path(spec.cache_dir), backend=spec.backend, precision=spec.precision,
                                       max_seq_length=spec.max_seq_length, model_files=spec.model_files,
                                       lock_sha256=spec.lock_sha256, train_sentences=train.sentences,
                                       train_sha256=train.sha256)
    ctx = PrepareContext(precision=spec.precision, batch_size=spec.batch_size, log=log, encode=inputs.encode,
                         calibration=calibration)
    streams_text = f"{len(spec.streams)} streams sharing one model, " if len(spec.streams) > 1 else ""
    log.info(f"preparing {spec.precision} with {spec.backend} on CPUs {spec.cpus} ({streams_text}{threads} threads "
             f"each), batch {spec.batch_size}, seq {spec.max_seq_length}")
    started = time.perf_counter()
    runnable, execution = prepare(model, inputs.batch(0), ctx)
    execution["prepare_s"] = round(time.perf_counter() - started, 3)
    execution.update(isa_caps=backend.isa_levels(), threads=threads)

    verification: dict[str, Any] = {}

    def verify() -> None:
        if spec.verify_isa and spec.index == 0:
            verification.update(verify_isa(backend, runnable, inputs, spec, log))
            if not verification["passed"]:
                raise CaseError(f"ISA check failed: {verification['verdict']}",
                                details={"isa_verification": dict(verification), "execution": dict(execution)})

    streams = [Stream(spec, i, runnable, inputs, label_of, log) for i in range(len(spec.streams))]
    affinity: dict[str, int] = {}
    if len(streams) == 1:
        streams[0].run(process_barrier, verify)
        pinning = "the instance process's affinity"
        affinity.update(thread_affinity())
    else:
        pinning = _run_streams(streams, backend, process_barrier, verify, affinity)
    execution.update(weight_sharing=len(streams) > 1, streams=len(streams), stream_pinning=pinning,
                     ipex_imported="intel_extension_for_pytorch" in sys.modules)
    return {
        "index": spec.index,
        "streams": [s.result for s in streams],
        "execution": execution,
        "versions": {"torch": torch.__version__, "ipex": backend.version()},
        "accuracy_reference": reference,
        "isa_verification": verification or None,
        "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "thread_affinity": affinity,
        "loaded_libraries": loaded_libraries(),
    }


def _run_streams(streams: list[Stream], backend: ModuleType, process_barrier: ProcessBarrier | None,
                 verify: Any, affinity: dict[str, int]) -> str:
    """Weight sharing: one thread per stream, each pinned to its own cores before its first parallel region,
    all reaching the timed phase together (then the other processes', if any). The threads' affinity is read
    while every stream (and its OpenMP team) is still alive, after the timed phase."""
    barrier = threading.Barrier(len(streams), action=process_barrier.wait if process_barrier else None)
    done = threading.Barrier(len(streams), action=lambda: affinity.update(thread_affinity()))
    described: list[str] = []

    def body(stream: Stream) -> None:
        try:
            os.sched_setaffinity(0, stream.cpus)  # this thread only; its OpenMP team inherits it
            torch.set_num_threads(len(stream.cpus))
            pin, how = backend.stream_pinning(stream.cpus)
            described.append(how)
            with pin:
                stream.run(barrier, verify if stream.position == 0 else None)
            done.wait()
        except BaseException as exc:
            stream.error = exc
            barrier.abort()
            done.abort()

    threads = [threading.Thread(target=body, args=(s,), name=f"fleetbench-stream-{s.index}") for s in streams]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    errors = [s.error for s in streams if s.error is not None and not isinstance(s.error, threading.BrokenBarrierError)]
    if errors:
        raise errors[0]
    if any(s.error is not None for s in streams):
        raise CaseError("a stream stopped before the timed phase")
    return described[0] if described else ""
