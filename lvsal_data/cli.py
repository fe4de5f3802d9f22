"""The ``lvsal`` command line: the user's door. Subcommand names are stable (see the README).

Every command prints where its output is; a user error is one line (no traceback), exit 2.
The subcommands live in :mod:`lvsal_data.commands`; plugins (``lvsal_data.plugins`` entry points,
``$LVSAL_PLUGINS``) are imported first, so what they register is usable here.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from typing import Sequence

from . import __version__
from .commands import COMMANDS
from .commands.options import add_config_arguments, config_from_args
from .errors import LvsalError
from .registry import load_plugins


#: intra-op threads on CPU when the user sets none: one generated token is a handful of small
#: matrix products, too small for threads to pay, and on a shared machine extra threads only
#: wait for cores (measured on the organism, README "Speed on a shared machine").
DEFAULT_CPU_THREADS = 1


def set_cpu_threads(threads: int | None) -> int | None:
    """Set torch's intra-op threads on CPU: ``threads`` (``--threads``) if given; else leave
    an ``OMP_NUM_THREADS`` the user set; else :data:`DEFAULT_CPU_THREADS`.

    Returns:
        The thread count set, or None when the user's ``OMP_NUM_THREADS`` stands.
    """
    if threads is None and os.environ.get("OMP_NUM_THREADS"):
        return None
    import torch

    threads = DEFAULT_CPU_THREADS if threads is None else threads
    torch.set_num_threads(threads)
    return threads


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number >= 1, got {text!r}")
    return value


def _os_error(err: OSError) -> str:
    """An OSError as one line naming the file."""
    where = f" {err.filename}" if err.filename else ""
    return f"{err.strerror or err}:{where}" if where else str(err)


def _hub_error(err: BaseException) -> str | None:
    """A Hugging Face Hub / network failure (requests, httpx, huggingface_hub) as one line;
    None when it is not one."""
    module = type(err).__module__.split(".")[0]
    text = str(err).strip()
    if module in ("requests", "httpx", "urllib3", "huggingface_hub") or "couldn't connect" in text.lower():
        return ("cannot reach the Hugging Face Hub (offline?) and the files are not in the local cache: "
                f"{text.splitlines()[0] if text else type(err).__name__}; connect, or use a local folder")
    return None


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
        p.add_argument("--threads", type=_positive_int, default=None,
                       help=f"CPU threads of torch (default: $OMP_NUM_THREADS if set, else {DEFAULT_CPU_THREADS}: "
                            "one token's step is too small for more to pay)")
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
    cfg = config_from_args(args._command.config, args)
    prefix = f"lvsal {args.command}: error:"
    try:
        set_cpu_threads(args.threads)
        return args._command.run(cfg)
    except LvsalError as err:
        print(f"{prefix} {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        hint = ""
        if getattr(cfg, "out", None) and hasattr(cfg, "resume"):
            hint = f"; rerun the same command with --resume to continue in {cfg.out}"
        elif args.command == "demo":
            hint = "; rerun the same command: the demo continues where it stopped"
        print(f"lvsal {args.command}: interrupted{hint}", file=sys.stderr)
        return 130
    except OSError as err:  # a file or folder the command could not read or write, or the network
        print(f"{prefix} {_hub_error(err) or _os_error(err)}", file=sys.stderr)
        return 2
    except Exception as err:  # the Hub's client raises its own types (httpx); anything else is a bug
        line = _hub_error(err)
        if line is None:
            raise
        print(f"{prefix} {line}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
