"""`python -m core <command>`: a thin entry point.

Each command lives in `core/commands/<name>.py` with `register(subparsers)` that adds its parser
and sets `func(args) -> int` (the exit status). Commands import their heavy dependencies lazily so
that `--help` stays fast.
"""

from __future__ import annotations

import argparse
import importlib
import pkgutil
import sys

import core.commands
from core.commands import guarded


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m core", description="NeuroGrade command line")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for info in sorted(pkgutil.iter_modules(core.commands.__path__), key=lambda m: m.name):
        module = importlib.import_module(f"core.commands.{info.name}")
        module.register(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help(sys.stderr)
        return 2
    # every command: a full, read-only or missing home, or an unusable database, is one line on
    # stderr and exit status 1, never a traceback (a command may also guard itself)
    return int(guarded(args.func)(args) or 0)
