"""The `memotion` command: a thin entry point over both halves' subcommands, and the end-to-end demo.

It sits on top of everything: the training half registers its subcommands (training/cli.py), the
gateway half its own (service/cli.py), and ``demo`` drives both. Nothing below imports it.
"""
