"""The ``adcreative`` console script: a demo against the built-in emulator, and the emulator itself.

Built on the public SDK only.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

__all__ = ["main"]


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="adcreative", description="The AdCreative.ai API from the command line (adcreative-async)."
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    demo = commands.add_parser(
        "demo",
        help="run a full flow against a built-in emulator (no credentials needed)",
        description="Generate ad creatives, remove a background, edit two creatives and download "
        "every result, against an emulator started in this process.",
    )
    demo.add_argument(
        "-o", "--output", default="adcreative-demo", help="directory for the results (default: %(default)s)"
    )
    demo.add_argument(
        "--task-duration",
        type=float,
        default=1.5,
        help="emulated seconds per task, jittered (default: %(default)s)",
    )
    commands.add_parser(
        "emulator",
        help="serve the emulator for other programs (same as python -m adcreative_async.testing)",
        add_help=False,
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the console script; returns the process exit code."""
    args_list = list(sys.argv[1:] if argv is None else argv)
    if args_list[:1] == ["emulator"]:
        from ..testing import main as emulator_main

        return emulator_main(args_list[1:])
    args = _parser().parse_args(args_list)
    if args.command == "demo":
        from ._demo import run_demo

        return run_demo(args.output, task_duration=args.task_duration)
    return 2  # pragma: no cover - argparse refuses unknown commands
