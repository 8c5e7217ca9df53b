"""How fast the payload runs DistilBERT here, next to a plain Hugging Face baseline and this host's fp32 peak.

Run with the payload stack's python (not a test; it takes 10-20 minutes on a 2-core machine)::

    ~/.cache/fleetbench/stacks/venv-<lock>/bin/python scripts/bench_speed.py --dataset-dir ../shared/data/sst2 \\
        [--accuracy-model ~/.cache/fleetbench/tiny-<key>] [--json results/bench-speed.json]

In one invocation, on the same cores, each in a fresh process, at seq 128, batch 1 and batch 8, on the
full-size synthetic DistilBERT (random weights, real architecture; built once into the cache):

- eager: the Hugging Face baseline, ``AutoModelForSequenceClassification`` in eval mode under
  ``torch.inference_mode``, as ``run_glue.py``'s evaluation runs it (no preloads, torch's default threads);
- the payload (``python -m fleetbench_payload run``, its own launcher: numactl, jemalloc, threads = cores)
  for each backend x precision this host supports (``--include-mismatch``: the others too, marked);
- the practical fp32 peak: a 4096 x 4096 fp32 ``torch.matmul`` on the same cores, and what the same
  torch.matmul reaches on DistilBERT's own GEMM shapes (one layer at batch 8: what fp32 can hope for).

It prints samples/s, the ratio to eager at the same batch, and the fraction of the roofline the throughput
implies: roofline samples/s = peak GFLOP/s / 11.2 GFLOP per sample (DistilBERT-base at seq 128: 6 layers x
(4 x 768^2 + 2 x 768 x 3072) x 128 tokens x 2 FLOP + attention ~ 11.2 GFLOP). With --accuracy-model (the
tiny trained SST-2 model of tests/payload) it also runs inductor int8 in accuracy mode, whose accuracy guard
gives the fp32 and int8 dev accuracy of the same model. Then it checks the targets (docs/payload.md).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
PAYLOAD = REPO / "payload"
sys.path.insert(0, str(PAYLOAD))

from fleetbench_payload import cpuinfo  # noqa: E402 - the payload package lives in payload/

GFLOP_PER_SAMPLE = 11.2
SEQ = 128
BATCHES = (1, 8)
PRECISIONS = ("avx_fp32", "avx_int8", "amx_bfloat16", "amx_bfloat32", "amx_int8")
BACKENDS = ("ipex", "inductor")

WORKER = r'''
import json, math, statistics, sys, time
import torch
args = json.loads(sys.argv[1])
torch.set_num_threads(args["threads"])
if args["what"] == "matmul":
    n = 4096
    a, b = torch.randn(n, n), torch.randn(n, n)
    for _ in range(3):
        a @ b
    rates = []
    for _ in range(args["repeats"]):
        t0 = time.perf_counter()
        for _ in range(4):
            a @ b
        rates.append(4 * 2 * n ** 3 / (time.perf_counter() - t0) / 1e9)
    am, bm = a.to_mkldnn(), b.t().contiguous().to_mkldnn()  # the same GEMM through oneDNN (what IPEX uses)
    for _ in range(3):
        torch._C._nn.mkldnn_linear(am, bm)
    onednn = []
    for _ in range(args["repeats"]):
        t0 = time.perf_counter()
        for _ in range(4):
            torch._C._nn.mkldnn_linear(am, bm)
        onednn.append(4 * 2 * n ** 3 / (time.perf_counter() - t0) / 1e9)
    # The GEMMs of one DistilBERT layer at batch 8, seq 128 (M = 1024 tokens): q/k/v/out 768x768 and the FFN.
    m = 8 * 128
    shapes = [(m, 768, 768)] * 4 + [(m, 768, 3072), (m, 3072, 768)]
    mats = [(torch.randn(r, k), torch.randn(k, c)) for r, k, c in shapes]
    flop = sum(2 * r * k * c for r, k, c in shapes)
    for x, w in mats:
        x @ w
    layer = []
    for _ in range(args["repeats"]):
        t0 = time.perf_counter()
        for _ in range(4):
            for x, w in mats:
                x @ w
        layer.append(4 * flop / (time.perf_counter() - t0) / 1e9)
    print(json.dumps({"gflops": max(rates), "median_gflops": statistics.median(rates), "onednn_gflops": max(onednn),
                      "layer_gflops": max(layer)}))
    sys.exit(0)
from transformers import AutoModelForSequenceClassification, AutoTokenizer
tokenizer = AutoTokenizer.from_pretrained(args["model"], local_files_only=True)
model = AutoModelForSequenceClassification.from_pretrained(args["model"], local_files_only=True).eval()
sentences = [line.rsplit("\t", 1)[0] for line in open(args["dev"], encoding="utf-8").read().splitlines()[1:]]
bs = args["batch"]
enc = tokenizer(sentences[: bs * 16], padding="max_length", truncation=True, max_length=args["seq"],
                return_tensors="pt")
batches = [{k: v[i * bs:(i + 1) * bs] for k, v in enc.items()} for i in range(16)]
times = []
with torch.inference_mode():
    for k in range(args["warmup"]):
        model(**batches[k % 16])
    start = time.perf_counter()
    k = 0
    while k < args["steps"] or time.perf_counter() - start < args["seconds"]:
        t0 = time.perf_counter()
        model(**batches[k % 16])
        times.append(time.perf_counter() - t0)
        k += 1
print(json.dumps({"throughput": len(times) * bs / sum(times), "iterations": len(times),
                  "p50_ms": 1000 * statistics.median(times)}))
'''


def load_average() -> tuple[float, float, float]:
    return os.getloadavg()


def worker(what: str, threads: int, cpus: list[int], env: dict[str, str] | None = None, **kw: Any) -> dict[str, Any]:
    args = {"what": what, "threads": threads, **kw}
    proc = subprocess.run([sys.executable, "-c", WORKER, json.dumps(args)], capture_output=True, text=True,
                          timeout=1800, preexec_fn=lambda: os.sched_setaffinity(0, cpus), check=False,
                          env={**os.environ, **(env or {})})
    if proc.returncode != 0:
        raise RuntimeError(f"{what} worker failed: {proc.stderr[-2000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def payload_case(work: Path, name: str, params: dict[str, Any], model_dir: Path, dataset_dir: Path,
                 cache_dir: Path) -> dict[str, Any]:
    folder = work / name
    folder.mkdir(parents=True, exist_ok=True)
    full = {"topology": "distilbert_base", "function": "inference", "data_type": "real", "case_type": "",
            "cores_per_instance": "auto", "instance_number": 1, "weight_sharing": False, "onednn_verbose": 0,
            "verify_isa": False, "require_isa": True, "min_duration_s": 0, "model_source": "dir",
            "allow_pickle_weights": False, "max_seq_length": SEQ, **params}
    case = {"run_id": "bench-speed", "host": os.uname().nodename, "case": f"inference-{full['mode']}",
            "params": full, "model_dir": str(model_dir), "dataset_dir": str(dataset_dir), "cache_dir": str(cache_dir),
            "lock_sha256": None}
    (folder / "case.json").write_text(json.dumps(case), encoding="utf-8")
    started = time.monotonic()
    subprocess.run([sys.executable, "-m", "fleetbench_payload", "run", "--case", str(folder / "case.json"), "--out",
                    str(folder)], cwd=PAYLOAD, capture_output=True, text=True, timeout=3600, check=False,
                   env={**os.environ, "PYTHONPATH": str(PAYLOAD)})
    doc = json.loads((folder / "result.json").read_text(encoding="utf-8"))
    doc["_seconds"] = round(time.monotonic() - started)
    return doc


def synthetic_model(cache_dir: Path, dataset_dir: Path) -> Path:
    from fleetbench_payload import synthetic
    from fleetbench_payload.log import Log

    with tempfile.TemporaryDirectory() as tmp:
        folder, _ = synthetic.ensure(cache_dir, dataset_dir / "train.tsv", Log(Path(tmp) / "build.log"))
    return folder


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset-dir", type=Path, required=True)
    parser.add_argument("--model-dir", type=Path, help="default: the full-size synthetic model")
    parser.add_argument("--accuracy-model", type=Path, help="a trained SST-2 model for the int8 accuracy check")
    parser.add_argument("--cache-dir", type=Path, default=Path.home() / ".cache" / "fleetbench" / "bench-speed")
    parser.add_argument("--seconds", type=int, default=20, help="minimum timed seconds per measurement")
    parser.add_argument("--include-mismatch", action="store_true",
                        help="also run precisions whose ISA this host lacks (require_isa=false, marked)")
    parser.add_argument("--backends", default=",".join(BACKENDS))
    parser.add_argument("--json", type=Path, help="write every figure here")
    args = parser.parse_args()
    # The payload runs from its own folder: relative paths as typed would not resolve there.
    for name in ("dataset_dir", "model_dir", "accuracy_model", "cache_dir", "json"):
        if getattr(args, name) is not None:
            setattr(args, name, getattr(args, name).resolve())

    host = cpuinfo.detect()
    cpus = sorted(c for node in host["host"]["numa_nodes"] for c in node["cores"] if c in os.sched_getaffinity(0))
    platform = host["platform"]
    load = load_average()
    print(f"host: {platform['name']} ({platform['model_name']}), {len(cpus)} physical cores {cpus}, "
          f"ISA {', '.join(k for k, v in platform['isa'].items() if v)}")
    print(f"load average before: {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}"
          + ("  (WARNING: something else is running; figures will be low and noisy)" if load[0] > 0.5 else ""))
    model = args.model_dir or synthetic_model(args.cache_dir, args.dataset_dir)
    print(f"model: {model}")

    report: dict[str, Any] = {"host": platform, "cores": cpus, "load_before": load, "seq": SEQ, "rows": []}
    peak = worker("matmul", len(cpus), cpus, env={"ONEDNN_MAX_CPU_ISA": "AVX512_CORE_VNNI"}, repeats=8)
    report["peak"] = peak
    roofline = peak["gflops"] / GFLOP_PER_SAMPLE
    print(f"fp32 peak: 4096x4096 torch.matmul on {len(cpus)} cores: {peak['gflops']:.1f} GFLOP/s "
          f"(median {peak['median_gflops']:.1f}); the same GEMM through oneDNN (mkldnn_linear, AVX-512 capped "
          f"like avx_*): {peak['onednn_gflops']:.1f} GFLOP/s")
    print(f"DistilBERT's own GEMMs (one layer at batch 8, seq 128, torch.matmul): {peak['layer_gflops']:.1f} GFLOP/s "
          f"= {100 * peak['layer_gflops'] / peak['gflops']:.0f}% of the 4096^2 peak, i.e. "
          f"{peak['layer_gflops'] / GFLOP_PER_SAMPLE:.2f} samples/s if the model were nothing but its GEMMs")
    print(f"roofline samples/s = peak GFLOP/s / {GFLOP_PER_SAMPLE} GFLOP per sample = {peak['gflops']:.1f} / "
          f"{GFLOP_PER_SAMPLE} = {roofline:.2f} samples/s")

    eager = {}
    for bs in BATCHES:
        eager[bs] = worker("eager", len(cpus), cpus, model=str(model), dev=str(args.dataset_dir / "dev.tsv"),
                           batch=bs, seq=SEQ, warmup=3, steps=10, seconds=args.seconds)
        report["rows"].append({"path": "eager (HF, fp32)", "batch": bs, **eager[bs]})
        print(f"  eager batch {bs}: {eager[bs]['throughput']:.2f} samples/s", flush=True)

    paths = []
    for backend in args.backends.split(","):
        for precision in PRECISIONS:
            lacks = cpuinfo.missing_isa(precision, platform["isa"])
            if lacks and not args.include_mismatch:
                print(f"  skipped {backend} {precision}: host lacks {', '.join(lacks)}")
                continue
            paths.append((backend, precision, lacks))
    with tempfile.TemporaryDirectory(prefix="bench-speed-") as tmp:
        for backend, precision, lacks in paths:
            for bs in BATCHES:
                doc = payload_case(Path(tmp), f"{backend}-{precision}-{bs}",
                                   {"mode": "throughput", "precision": precision, "backend": backend,
                                    "batch_size": bs, "steps": 10, "warmup_steps": 3,
                                    "min_duration_s": args.seconds, "require_isa": not lacks}, model,
                                   args.dataset_dir, args.cache_dir)
                row: dict[str, Any] = {"path": f"{backend} {precision}", "batch": bs, "status": doc["status"],
                                       "reason": doc["reason"], "seconds": doc["_seconds"],
                                       "isa_mismatch": lacks or None}
                if doc["status"] == "passed":
                    row.update(throughput=doc["kpi"]["throughput"], p50_ms=doc["kpi"]["latency_ms"]["p50"],
                               execution=doc["execution"]["path"])
                report["rows"].append(row)
                shown = f"{row['throughput']:.2f} samples/s" if "throughput" in row else f"{doc['status']}: " \
                    f"{doc['reason'][:200]}"
                print(f"  {backend} {precision} batch {bs}: {shown}  [{doc['_seconds']}s]", flush=True)
        if args.accuracy_model:
            doc = payload_case(Path(tmp), "accuracy-inductor-int8",
                               {"mode": "accuracy", "precision": "avx_int8", "backend": "inductor",
                                "batch_size": 100, "steps": 1, "warmup_steps": 1, "require_isa": False},
                               args.accuracy_model, args.dataset_dir, args.cache_dir)
            report["accuracy"] = {"status": doc["status"], "reason": doc["reason"],
                                  "guard": doc.get("accuracy_guard")}
    report["load_after"] = load_average()

    print()
    print(f"{'path':<24} {'batch':>5} {'samples/s':>10} {'x eager':>8} {'% roofline':>10}  status")
    for row in report["rows"]:
        if "throughput" in row:
            ratio = row["throughput"] / eager[row["batch"]]["throughput"]
            frac = row["throughput"] / roofline
            row.update(ratio_to_eager=ratio, roofline_fraction=frac)
            mark = " (isa_mismatch)" if row.get("isa_mismatch") else ""
            print(f"{row['path']:<24} {row['batch']:>5} {row['throughput']:>10.2f} {ratio:>8.2f} {100 * frac:>9.1f}%"
                  f"  passed{mark}")
        else:
            print(f"{row['path']:<24} {row['batch']:>5} {'-':>10} {'-':>8} {'-':>10}  {row['status']}: "
                  f"{row['reason'][:100]}")
    print(f"\nroofline = {peak['gflops']:.1f} GFLOP/s / {GFLOP_PER_SAMPLE} GFLOP = {roofline:.2f} samples/s "
          f"(oneDNN GEMM: {peak['onednn_gflops'] / GFLOP_PER_SAMPLE:.2f} samples/s); load average after: "
          f"{report['load_after'][0]:.2f}")
    report["targets"] = targets(report, roofline)
    for line in report["targets"]:
        print(line)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report, indent=1, default=str), encoding="utf-8")
    return 0


def targets(report: dict[str, Any], roofline: float) -> list[str]:
    rows = [r for r in report["rows"] if "throughput" in r and not r.get("isa_mismatch")]

    def best(prefixes: tuple[str, ...], suffix: str, batch: int) -> dict[str, Any] | None:
        found = [r for r in rows if r["batch"] == batch and r["path"].endswith(suffix) and
                 r["path"].startswith(prefixes)]
        return max(found, key=lambda r: r["throughput"]) if found else None

    lines = ["targets:"]
    fp32 = best(("eager", "ipex", "inductor"), "fp32", 8) or best(("eager",), "fp32)", 8)
    if fp32:
        frac = fp32["throughput"] / roofline
        lines.append(f"  best fp32 at batch 8 ({fp32['path']}): {fp32['throughput']:.2f} samples/s = "
                     f"{100 * frac:.1f}% of the roofline (target >= 90%): {'met' if frac >= 0.9 else 'MISSED'}")
    for batch in BATCHES:
        int8 = best(("inductor",), "int8", batch)
        fp32_b = best(("ipex", "inductor"), "fp32", batch) or best(("eager",), "fp32)", batch)
        if int8 and fp32_b:
            ratio = int8["throughput"] / fp32_b["throughput"]
            lines.append(f"  inductor int8 at batch {batch}: {ratio:.2f}x the best fp32 ({fp32_b['path']}) "
                         f"(target >= 1.8x): {'met' if ratio >= 1.8 else 'MISSED'}")
    accuracy = report.get("accuracy")
    if accuracy and accuracy.get("guard"):
        guard = accuracy["guard"]
        lines.append(f"  inductor int8 accuracy on the tiny trained model: {guard['accuracy']:.2f}% vs fp32 "
                     f"{guard['fp32_accuracy']:.2f}% (drop {guard['drop_points']:.2f} points; target within 1): "
                     f"{'met' if guard['drop_points'] <= 1 else 'MISSED'}")
    elif accuracy:
        lines.append(f"  int8 accuracy check: {accuracy['status']}: {accuracy['reason'][:200]}")
    eager = best(("eager",), "fp32)", 1)
    paths = [r for r in rows if eager and r["batch"] == 1 and not r["path"].startswith("eager")]
    slower = [f"{r['path']} ({r['throughput']:.2f})" for r in paths if r["throughput"] < eager["throughput"]]
    if not paths:
        lines.append("  none slower than eager at batch 1: MISSED: no payload path ran")
    else:
        lines.append(f"  none slower than eager at batch 1 ({len(paths)} paths): "
                     + ("met" if not slower else "MISSED: " + ", ".join(slower)))
    failed = [f"{r['path']} batch {r['batch']}" for r in report["rows"] if r.get("status") not in (None, "passed")]
    if failed:
        lines.append(f"  did not pass ({len(failed)}): {', '.join(failed)} (see the table above)")
    return lines


if __name__ == "__main__":
    sys.exit(main())
