"""``python -m fleetbench_payload run --case CASE.json --out DIR``, ``selfcheck``, ``cpuinfo`` (and ``instance``,
which the launcher starts)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m fleetbench_payload")
    commands = parser.add_subparsers(dest="command", required=True)
    run = commands.add_parser("run", help="run one case and write OUT/result.json and OUT/payload.log")
    run.add_argument("--case", type=Path, required=True, help="CASE.json written by the benchmark role")
    run.add_argument("--out", type=Path, required=True, help="folder for result.json and payload.log")
    run.add_argument("--dry-run", action="store_true", help="touch no model or torch; write a skipped result")
    commands.add_parser("cpuinfo", help="print this host's platform, ISA and topology as JSON")
    instance = commands.add_parser("instance", help="(internal) one instance process, started by run")
    instance.add_argument("--spec", type=Path, required=True)
    check = commands.add_parser("selfcheck", help="run every precision x backend for a few iterations and print "
                                "what ran (status, execution path, ISA verified, reason)")
    check.add_argument("--dataset-dir", type=Path, required=True, help="folder with SST-2 dev.tsv and train.tsv")
    check.add_argument("--model-dir", type=Path, help="model folder (default: the full-size synthetic model, built "
                       "once into the cache)")
    check.add_argument("--cache-dir", type=Path, default=Path.home() / ".cache" / "fleetbench" / "selfcheck")
    check.add_argument("--out", type=Path, help="keep each case's result.json and payload.log here")
    check.add_argument("--precisions", default="avx_fp32,avx_int8,amx_bfloat16,amx_bfloat32,amx_int8")
    check.add_argument("--backends", default="ipex,inductor")
    check.add_argument("--steps", type=int, default=3)
    check.add_argument("--batch-size", type=int, default=1)
    check.add_argument("--max-seq-length", type=int, default=128)
    check.add_argument("--require-isa", choices=("true", "false"), default="true",
                       help="false: run precisions whose ISA this host lacks too (marked isa_mismatch)")
    check.add_argument("--json", action="store_true", help="print the rows as JSON too")
    args = parser.parse_args(argv)
    if args.command == "cpuinfo":
        from fleetbench_payload import cpuinfo

        print(json.dumps(cpuinfo.detect(), sort_keys=True))
        return 0
    if args.command == "instance":
        from fleetbench_payload import instance as instance_process

        return instance_process.main(args.spec)
    if args.command == "selfcheck":
        from fleetbench_payload import selfcheck

        return selfcheck.main(args)
    from fleetbench_payload import case

    return case.run(args.case, args.out, args.dry_run)
