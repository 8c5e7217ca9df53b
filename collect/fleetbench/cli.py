"""fleetbench: DistilBERT inference benchmarks across a Xeon fleet (see README.md).

Each subcommand lives in its own module exposing `register(subparsers)`.
"""

from __future__ import annotations

import argparse
import importlib
import sys

# Module names under fleetbench/ that provide subcommands, in --help order.
COMMANDS = ("runner", "report", "list_cases", "history", "tables", "compare", "check", "htmlreport", "wsf_import")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="fleetbench", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in COMMANDS:
        importlib.import_module(f"fleetbench.{name}").register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return int(args.func(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
