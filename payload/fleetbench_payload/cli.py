"""``python -m fleetbench_payload run --case CASE.json --out DIR`` (and ``cpuinfo``)."""

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
    args = parser.parse_args(argv)
    if args.command == "cpuinfo":
        from fleetbench_payload import cpuinfo

        print(json.dumps(cpuinfo.detect(), sort_keys=True))
        return 0
    from fleetbench_payload import case

    return case.run(args.case, args.out, args.dry_run)
