"""``lvsal calibrate``: choose SGRS's target layers, W and alpha for a model from its traces."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .options import Command


@dataclass
class CalibrateConfig:
    traces: str = field(default="", metadata={"help": "trace dataset folder (greedy traces of the model)",
                                              "required": True})
    out: str = field(default="", metadata={"help": "output JSON file (feed it to --calibration)", "required": True})
    max_false_rejection: float = field(default=0.05, metadata={
        "help": "largest share of correct mention starts SGRS may reject"})
    eval_traces: str | None = field(default=None, metadata={
        "help": "traces to measure the rule on (default: a held-out share of --traces' images)"})
    holdout: float = field(default=0.5, metadata={
        "help": "share of images held out to measure the rule when --eval-traces is not given"})
    seed: int = field(default=0, metadata={"help": "seed of the held-out split"})


def calibrate_to_file(traces_dir: str | Path, out: str | Path, max_false_rejection: float = 0.05,
                      eval_traces: str | Path | None = None, holdout: float = 0.5, seed: int = 0) -> dict[str, Any]:
    """:func:`analysis.calibrate` on a trace folder, written to ``out`` (atomically)."""
    from analysis.calibration import calibrate

    from ..io import atomic_write_text
    from ..store import open_traces

    held = open_traces(eval_traces) if eval_traces is not None else None
    result = calibrate(open_traces(traces_dir), max_false_rejection=max_false_rejection, eval_traces=held,
                       holdout=holdout, seed=seed)
    atomic_write_text(Path(out), json.dumps(result, indent=1))
    return result


def run(cfg: CalibrateConfig) -> int:
    from ..metrics import format_estimate

    r = calibrate_to_file(cfg.traces, cfg.out, cfg.max_false_rejection, cfg.eval_traces, cfg.holdout, cfg.seed)
    ci, where = r["intervals"], r["evaluated_on"]
    print(f"alpha {r['alpha']}, W {r['window']}, target layers {r['target_layers']}; on {where['data']} "
          f"({where['images']} images of {where['traces']}) the rule catches {format_estimate(ci['catch_rate'])}% "
          f"of {r['n']['hallucinated_mention_starts']} hallucinated mention starts and rejects "
          f"{format_estimate(ci['false_rejection_rate'])}% of {r['n']['correct_mention_starts']} correct ones")
    print(f"calibration: {cfg.out}")
    return 0


COMMAND = Command("calibrate", "choose SGRS's target layers, W and alpha for a model from its traces",
                  CalibrateConfig, run)
