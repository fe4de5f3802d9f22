"""The ``lvsal`` command line: the user's door. Subcommand names are stable (see the README).

Every command prints where its output is; a user error is one line (no traceback), exit 2.
The subcommands live in :mod:`lvsal_data.commands`; plugins (``lvsal_data.plugins`` entry points,
``$LVSAL_PLUGINS``) are imported first, so what they register is usable here.
"""

from __future__ import annotations

import argparse
import logging
import sys
from typing import Sequence

from . import __version__
from .commands import COMMANDS
from .commands.options import add_config_arguments, config_from_args
from .errors import LvsalError
from .registry import load_plugins


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="lvsal",
        description="Gradient-aware saliency traces of LVLM generations, labelled for hallucination.",
    )
    parser.add_argument("--version", action="version", version=f"lvsal-data {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMANDS.order():
        cmd = COMMANDS[name]
        p = sub.add_parser(name, help=cmd.help, description=cmd.help)
        add_config_arguments(p, cmd.config, cmd.exclude)
        p.set_defaults(_command=cmd)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    try:
        load_plugins()
    except LvsalError as err:
        print(f"lvsal: error: {err}", file=sys.stderr)
        return 2
    parser = build_parser()
    args = parser.parse_args(argv)
    if not hasattr(args, "_command"):
        parser.print_help()
        return 0
    logging.basicConfig(format=f"lvsal {args.command}: %(message)s", level=logging.WARNING)
    try:
        return args._command.run(config_from_args(args._command.config, args))
    except LvsalError as err:
        print(f"lvsal {args.command}: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"lvsal {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
