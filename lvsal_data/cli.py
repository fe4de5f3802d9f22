"""The ``lvsal`` command line: the user's door. Subcommand names are stable (DESIGN.md).

Every command prints where its output is; a user error is one line (no traceback), exit 2.
"""

from __future__ import annotations

import argparse
import logging
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


def _add_fit_detector(parser: argparse.ArgumentParser) -> None:
    from analysis.features import FEATURE_SETS

    parser.add_argument("--traces", required=True, help="trace dataset folder")
    parser.add_argument("--out", required=True, help="output folder (detector.json, report.json, roc.png)")
    parser.add_argument("--features", default="all", choices=FEATURE_SETS.names(),
                        help="feature set of the saved detector (default: all); every set is cross-validated")
    parser.add_argument("--model", default="logistic", choices=["logistic", "boosting"],
                        help="detector family for the cross-validated report (the saved detector is logistic)")
    parser.add_argument("--seed", type=int, default=0)


@command("fit-detector", "fit hallucination detectors on traces (grouped CV, AUROC/AUPRC with CIs)", _add_fit_detector)
def _fit_detector(args: argparse.Namespace) -> int:
    from analysis.workflows import fit_detectors

    report = fit_detectors(args.traces, args.out, features=args.features, model=args.model, random_state=args.seed)
    for name in ("saliency", "attention", "logit", "all"):
        a = report[name]["auroc"]
        print(f"{name:>9}: AUROC {a['value']:.3f} [{a['ci_low']:.3f}, {a['ci_high']:.3f}] "
              f"(n_pos={report[name]['n_pos']}, n_neg={report[name]['n_neg']})")
    print(f"detector, report and ROC plot: {args.out}")
    return 0


def _add_calibrate(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--traces", required=True, help="trace dataset folder (greedy traces of the model)")
    parser.add_argument("--out", required=True, help="output JSON file (feed it to --calibration)")
    parser.add_argument("--max-false-rejection", type=float, default=0.05,
                        help="largest share of correct mention starts SGRS may reject (default: 0.05)")
    parser.add_argument("--eval-traces", default=None,
                        help="traces to measure the rule on (default: a held-out share of --traces' images)")
    parser.add_argument("--holdout", type=float, default=0.5,
                        help="share of images held out to measure the rule when --eval-traces is not given")
    parser.add_argument("--seed", type=int, default=0, help="seed of the held-out split")


@command("calibrate", "choose SGRS's target layers, W and alpha for a model from its traces", _add_calibrate)
def _calibrate(args: argparse.Namespace) -> int:
    from analysis.workflows import calibrate_to_file

    r = calibrate_to_file(args.traces, args.out, args.max_false_rejection, args.eval_traces, args.holdout, args.seed)
    ci, where = r["intervals"], r["evaluated_on"]
    print(f"alpha {r['alpha']}, W {r['window']}, target layers {r['target_layers']}; on {where['data']} "
          f"({where['images']} images of {where['traces']}) the rule catches {100 * r['catch_rate']:.1f}% "
          f"[{100 * ci['catch_rate']['ci_low']:.1f}, {100 * ci['catch_rate']['ci_high']:.1f}] of "
          f"{r['n']['hallucinated_mention_starts']} hallucinated mention starts and rejects "
          f"{100 * r['false_rejection_rate']:.1f}% [{100 * ci['false_rejection_rate']['ci_low']:.1f}, "
          f"{100 * ci['false_rejection_rate']['ci_high']:.1f}] of {r['n']['correct_mention_starts']} correct ones")
    print(f"calibration: {args.out}")
    return 0


def _add_verify(parser: argparse.ArgumentParser) -> None:
    from .decoding import DECODINGS, DecodingOptions

    parser.add_argument("--model", default="organism", help="local folder, Hub id, or 'organism' (default)")
    parser.add_argument("--data", default="synthetic", help="data spec (default: synthetic)")
    parser.add_argument("--out", required=True, help="output folder (metrics.json, report.md, plots, traces)")
    parser.add_argument("--decodings", default="greedy,sgrs,locore,sgrs+locore",
                        help=f"comma-separated, from {', '.join(DECODINGS.names())} (default: greedy,sgrs,locore,sgrs+locore)")
    parser.add_argument("--limit", type=int, default=None, help="at most N samples")
    parser.add_argument("--max-new-tokens", type=int, default=None,
                        help="answer length cap, the same for every decoding (default: the source protocol's)")
    parser.add_argument("--system-prompt", default=None,
                        help="system message: TEXT or 'none' (default: the model's standard one)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--resume", action="store_true", help="continue an interrupted verification")
    parser.add_argument("--device", default=None)
    parser.add_argument("--dtype", default=None)
    add_config_arguments(parser, DecodingOptions)


@command("verify", "run each decoding on the same samples and test the fixes against greedy (CIs)", _add_verify)
def _verify(args: argparse.Namespace) -> int:
    from analysis.verification import verify

    from .decoding import DECODINGS, DecodingOptions

    names = [d.strip() for d in args.decodings.split(",") if d.strip()]
    for d in names:
        DECODINGS[d]  # unknown names list the valid ones
    options = DecodingOptions(**{f.name: getattr(args, f.name) for f in fields(DecodingOptions)})
    result = verify(args.model, args.data, args.out, names, limit=args.limit, seed=args.seed,
                    max_new_tokens=args.max_new_tokens, options=options, resume=args.resume,
                    system_prompt=args.system_prompt,
                    device=args.device, dtype=args.dtype)
    print((result.out / "report.md").read_text())
    print(f"metrics, report and plots: {result.out}")
    return 0


def _add_demo(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", default="lvsal-demo", help="output folder (default: lvsal-demo)")
    parser.add_argument("--scenes", type=int, default=100, help="scenes per set (default: 100)")
    parser.add_argument("--max-new-tokens", type=int, default=48, help="answer length cap (default: 48)")
    parser.add_argument("--seed", type=int, default=0)


@command("demo", "the whole pipeline on the embedded default (organism + synthetic world)", _add_demo)
def _demo(args: argparse.Namespace) -> int:
    from .demo import DemoConfig, run_demo

    m = run_demo(DemoConfig(out=args.out, scenes=args.scenes, max_new_tokens=args.max_new_tokens, seed=args.seed))
    v, pat = m["verification"], m["pattern"]["by_label"]["saliency"]
    g, d, a = v["greedy"]["chair_s"], m["pattern"]["difference"]["saliency"], m["detectors"]["all"]["auroc"]
    print(f"\nsaliency of mention starts: correct {pat['correct']['mean']:.3f} vs hallucinated "
          f"{pat['hallucinated']['mean']:.3f} (difference {d['value']:+.4f} [{d['ci_low']:+.4f}, {d['ci_high']:+.4f}]); "
          f"detector AUROC (all features) {a['value']:.3f} [{a['ci_low']:.3f}, {a['ci_high']:.3f}]; "
          f"greedy CHAIR_S {100 * g['value']:.1f}% [{100 * g['ci_low']:.1f}, {100 * g['ci_high']:.1f}]")
    for name, d in v.get("vs_greedy", {}).items():
        c = d["chair_s"]
        verdict = ("no significant effect" if c["ci_low"] <= 0 <= c["ci_high"]
                   else "significantly fewer hallucinations" if c["value"] < 0 else "significantly more hallucinations")
        print(f"{name}: CHAIR_S {100 * c['value']:+.1f} points [{100 * c['ci_low']:+.1f}, {100 * c['ci_high']:+.1f}] "
              f"vs greedy ({verdict})")
    print(f"report: {args.out}/report.md (metrics.json, plots and trace datasets beside it)")
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
    logging.basicConfig(format=f"lvsal {args.command}: %(message)s", level=logging.WARNING)
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
