"""The ``lvsal`` command line: the user's door. Subcommand names are stable (DESIGN.md).

Every command prints where its output is; a user error is one line (no traceback), exit 2.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass, fields
from typing import Callable, Sequence

from . import __version__
from .errors import LvsalError
from .registry import Registry

Run = Callable[[argparse.Namespace], int]
AddArguments = Callable[[argparse.ArgumentParser], None]


@dataclass(frozen=True)
class Command:
    help: str
    add_arguments: AddArguments
    run: Run


COMMANDS: Registry[Command] = Registry("command")


def command(name: str, help: str, add_arguments: AddArguments) -> Callable[[Run], Run]:
    """Register ``run`` as subcommand ``name``; ``add_arguments`` declares its options."""

    def bind(run: Run) -> Run:
        COMMANDS.register(name)(Command(help, add_arguments, run))
        return run

    return bind


def int_list(text: str) -> list[int]:
    """Parse ``6,7,8`` (or ``6-8``) into a list of ints."""
    try:
        if "-" in text and "," not in text:
            lo, hi = (int(x) for x in text.split("-"))
            return list(range(lo, hi + 1))
        return [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected integers like 6,7,8 or 6-8, got {text!r}") from None


def add_config_arguments(parser: argparse.ArgumentParser, cls: type, choices: dict[str, list[str]] | None = None) -> None:
    """Add one option per field of the dataclass ``cls`` (its metadata gives help and choices)."""
    own = set(getattr(cls, "__annotations__", {}))
    for f in sorted(fields(cls), key=lambda f: f.name not in own):  # the command's own options first
        flag = "--" + f.name.replace("_", "-")
        help_text = f.metadata.get("help", "")
        default = f.default
        kind = str(f.type)
        if "bool" in kind:
            parser.add_argument(flag, action="store_true", help=help_text)
            continue
        shown = help_text if "default" in help_text else f"{help_text} (default: {default})"
        kwargs: dict = {"default": default, "help": shown}
        if "list[int]" in kind:
            kwargs["type"] = int_list
        elif "float" in kind:
            kwargs["type"] = float
        elif "int" in kind:
            kwargs["type"] = int
        if "choices" in f.metadata and choices:
            kwargs["choices"] = choices[f.metadata["choices"]]
        parser.add_argument(flag, **kwargs)


def _add_collect(parser: argparse.ArgumentParser) -> None:
    from .collect import CollectConfig
    from .decoding import DECODINGS

    add_config_arguments(parser, CollectConfig, {"decodings": DECODINGS.names()})


@command("collect", "run an LVLM over an annotated set and write a trace dataset (Parquet)", _add_collect)
def _collect(args: argparse.Namespace) -> int:
    from .collect import CollectConfig, collect

    cfg = CollectConfig(**{f.name: getattr(args, f.name) for f in fields(CollectConfig)})
    summary = collect(cfg)
    m = summary.manifest
    if m is None:  # not rank 0
        return 0
    total_bytes = sum(e["bytes"] for e in m["shards"]["tokens"])
    tokens = m["rows"]["tokens"]
    print(f"collected {m['rows']['samples']} samples, {tokens} tokens ({tokens / max(summary.seconds, 1e-9):.1f} "
          f"tokens/s), {len(m['skipped'])} skipped; {total_bytes / max(tokens, 1):.0f} bytes/token on disk")
    from .hub import headline_metrics
    from .store import open_traces

    metrics = headline_metrics(open_traces(cfg.out))
    if "chair" in metrics:
        c = metrics["chair"]
        print(f"CHAIR_S {100 * c['chair_s']['value']:.1f}% [{100 * c['chair_s']['ci_low']:.1f}, "
              f"{100 * c['chair_s']['ci_high']:.1f}], CHAIR_I {100 * c['chair_i']['value']:.1f}% "
              f"[{100 * c['chair_i']['ci_low']:.1f}, {100 * c['chair_i']['ci_high']:.1f}] (n={c['n']})")
    if "pope" in metrics:
        p = metrics["pope"]
        print(f"POPE accuracy {100 * p['pope_accuracy']['value']:.1f}% [{100 * p['pope_accuracy']['ci_low']:.1f}, "
              f"{100 * p['pope_accuracy']['ci_high']:.1f}] (n={p['n']})")
    print(f"trace dataset: {cfg.out}")
    return 0


def _add_publish(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--traces", required=True, help="trace dataset folder written by lvsal collect")
    parser.add_argument("--repo-id", required=True, help="Hub dataset id, e.g. user/llava-chair-traces")
    parser.add_argument("--folder", default=None, help="write the repo folder here instead of uploading (offline)")
    parser.add_argument("--private", action="store_true", help="create a private Hub dataset")
    parser.add_argument("--license", default="other", help="license of the dataset card (default: other)")


@command("publish", "render the dataset card and upload a trace dataset to the Hub (or write its folder)", _add_publish)
def _publish(args: argparse.Namespace) -> int:
    from .hub import publish

    where = publish(args.traces, args.repo_id, folder=args.folder, private=args.private, license=args.license)
    print(f"published {args.traces} -> {where}")
    return 0


def _add_demo(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", default="lvsal-demo", help="output folder (default: lvsal-demo)")


@command("demo", "the whole pipeline on the embedded default (organism + synthetic world)", _add_demo)
def _demo(args: argparse.Namespace) -> int:
    print("lvsal demo: not yet available (it lands with the demo issue); `make test` runs the suite.")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="lvsal",
        description="Gradient-aware saliency traces of LVLM generations, labelled for hallucination.",
    )
    parser.add_argument("--version", action="version", version=f"lvsal-data {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMANDS:
        cmd = COMMANDS[name]
        p = sub.add_parser(name, help=cmd.help, description=cmd.help)
        cmd.add_arguments(p)
        p.set_defaults(_run=cmd.run)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not hasattr(args, "_run"):
        parser.print_help()
        return 0
    try:
        return args._run(args)
    except LvsalError as err:
        print(f"lvsal {args.command}: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"lvsal {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
