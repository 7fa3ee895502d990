"""argparse value types shared by every half's subcommands (no project imports)."""

from __future__ import annotations

import argparse
import sys


def positive_int(text: str) -> int:
    value = int(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text}")
    return value


def floats(text: str) -> tuple[float, ...]:
    try:
        return tuple(float(v) for v in text.split(",") if v.strip())
    except ValueError as err:
        raise argparse.ArgumentTypeError(f"expected comma-separated numbers, got {text!r}") from err


def names(text: str) -> list[str]:
    """A comma-separated list of names, blanks dropped."""
    return [name.strip() for name in text.split(",") if name.strip()]


def run_handler(args: argparse.Namespace) -> int:
    """Run the subcommand's handler; bad paths, bad data and unusable repositories end in one
    clear line on stderr and exit status 2, not a traceback."""
    try:
        return int(args.handler(args))
    except (FileNotFoundError, ValueError, RuntimeError) as err:
        print(f"memotion {args.command}: error: {err}", file=sys.stderr)
        return 2
