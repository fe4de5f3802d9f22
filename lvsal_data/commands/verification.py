"""``lvsal verify``: run each decoding on the same samples and test the fixes against greedy.

Every decoding goes through the collector (so each leaves a trace dataset under
``OUT/traces/<decoding>``) with the same settings; ``analysis.verification`` compares them.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from ..config import CollectConfig
from ..yesno import RULES
from .options import Command

DEFAULT_DECODINGS = ("greedy", "sgrs", "locore", "sgrs+locore")


@dataclass
class VerifyConfig(CollectConfig):
    """A collection run per decoding, plus how they are compared."""

    out: str = field(default="", metadata={"help": "output folder (metrics.json, report.md, plots, traces)",
                                           "required": True})
    decodings: list[str] = field(default_factory=lambda: list(DEFAULT_DECODINGS), metadata={
        "help": "comma-separated decodings; greedy is the baseline"})
    pope_rule: str = field(default="reference", metadata={
        "help": "how yes/no answers are read: POPE's own rule, or the first word only", "choices": lambda: list(RULES)})

    def collect_config(self, decoding: str) -> CollectConfig:
        """The collector's config of one decoding's run."""
        folder = Path(self.out) / "traces" / decoding.replace("+", "_")
        values = {f.name: getattr(self, f.name) for f in fields(CollectConfig)}
        return CollectConfig(**{**values, "decoding": decoding, "out": str(folder)})


@dataclass
class VerifyResult:
    metrics: dict[str, Any]
    out: Path
    folders: dict[str, Path] = field(default_factory=dict)


def verify(cfg: VerifyConfig, lvlm: Any = None, progress: bool = True) -> VerifyResult:
    """Run each decoding through the collector and write metrics.json, report.md and plots.

    A non-empty ``cfg.out`` is refused unless ``cfg.resume``; resuming runs the collector's own
    check that each decoding's traces were made with the same settings (it refuses a mismatch),
    so old traces are never reported under a new header.
    """
    from analysis import plots
    from analysis.verification import compare, report_markdown, samples_by_decoding

    from ..collect import collect
    from ..errors import InputError
    from ..io import atomic_write_text
    from ..models import load_lvlm
    from ..registry import DECODINGS
    from ..store import check_output_folder, open_traces

    if "greedy" not in cfg.decodings:
        raise InputError("--decodings must include greedy (the baseline of the comparison)")
    for name in cfg.decodings:
        DECODINGS[name]  # an unknown name lists the valid ones
    from ..validation import validate_collect

    out = Path(cfg.out)
    validate_collect(cfg.collect_config("greedy"), lvlm)  # every option, before anything is written
    check_output_folder(out, cfg.resume)  # before the model loads: refusing must be quick
    if lvlm is None:
        lvlm = load_lvlm(cfg.model, device=cfg.device, dtype=cfg.dtype, revision=cfg.revision,
                         trust_remote_code=cfg.trust_remote_code)
    from ..config import load_calibration

    calibration = load_calibration(cfg.calibration) if cfg.calibration else None  # read once, for every decoding
    folders = {}
    for step, name in enumerate(cfg.decodings, start=1):
        run = cfg.collect_config(name)
        # resuming a finished decoding checks it and writes nothing new
        collect(run, lvlm=lvlm, progress=progress, calibration=calibration,
                desc=f"verify {step}/{len(cfg.decodings)}: {name}")
        folders[name] = Path(run.out)
    metrics = compare(samples_by_decoding(folders), random_state=cfg.seed, pope_rule=cfg.pope_rule)
    manifests = {k: open_traces(v).manifest for k, v in folders.items()}
    meta = {"model": cfg.model, "data": cfg.data, "max_new_tokens": manifests["greedy"]["max_new_tokens"],
            "seed": cfg.seed, "protocol": manifests["greedy"].get("protocol"), "decodings": list(cfg.decodings),
            "pope_rule": cfg.pope_rule, "traces": {k: str(v) for k, v in folders.items()},
            "decoding_params": {k: m["decoding"]["params"] for k, m in manifests.items()}}
    metrics["meta"] = meta
    atomic_write_text(out / "metrics.json", json.dumps(metrics, indent=1))
    atomic_write_text(out / "report.md", report_markdown(metrics, meta))
    decs = [d for d in metrics if d not in ("vs_greedy", "meta")]
    keys = tuple(k for k in ("chair_s", "chair_i", "recall", "pope_f1") if any(k in metrics[d] for d in decs))
    if keys:
        plots.save(plots.effects_figure(metrics, keys), out / "effects.png")
    return VerifyResult(metrics, out, folders)


def run(cfg: VerifyConfig) -> int:
    result = verify(cfg)
    print((result.out / "report.md").read_text())
    print(f"metrics, report and plots: {result.out}")
    return 0


COMMAND = Command("verify", "run each decoding on the same samples and test the fixes against greedy (CIs)",
                  VerifyConfig, run, exclude=("decoding",))
