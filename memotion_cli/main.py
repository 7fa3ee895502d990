"""The `memotion` command line: one entry point, a subcommand per job, dispatched to its half.

Heavy imports (torch, open_clip, onnxruntime, FastAPI) happen inside each subcommand's handler, so
`memotion --help` is instant and `memotion serve` never imports the training code.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from memotion.cli_args import run_handler
from memotion_cli import demo
from service import cli as service_cli
from training import cli as training_cli

DESCRIPTION = """\
memotion reads a meme (image + the text printed on it) and says how it feels:
  Task A  sentiment: negative / neutral / positive
  Task B  emotions present: humorous, sarcastic, offensive, motivational
  Task C  their intensity: humour NF/F/VF/H, sarcasm NS/LS/VS/ES, offense NO/S/VO/HO, motivation NM/M

Typical flow:  make-synthetic-data -> train -> export -> serve -> classify.
`memotion demo` runs all of it end to end with tiny models on synthetic memes."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="memotion", description=DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    demo.register(commands)
    training_cli.register(commands)
    service_cli.register(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    return run_handler(build_parser().parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
