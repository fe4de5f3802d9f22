"""``lvsal demo``: the whole pipeline on the embedded default, from traces to a verified finding.

1. Collect greedy traces of the organism (hidden states kept) on two disjoint sets of held-out
   scenes of its world: an *analysis* set (world seed 1) and an *evaluation* set (world seed 0,
   the model card's); and on training-split scenes, where its co-occurrence priors hold.
2. Fit hallucination detectors on the analysis traces (every feature set ranked, CV grouped by
   image); fit them on the training-split traces and score the analysis traces (transfer from
   train to test scenes, co-occurrence pairs broken).
3. Calibrate SGRS on the analysis traces.
4. Verify greedy / sgrs / locore / sgrs+locore / guided on the evaluation scenes, SGRS calibrated
   and the guided decoding steered by the analysis detector; score the evaluation traces with it.
5. Measure the paper's pattern; write ``report.md``, ``metrics.json`` and the plots.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from ..errors import InputError
from ..io import atomic_write_bytes, atomic_write_text
from ..metrics import format_estimate
from .options import Command

IN_PROGRESS = ".demo-in-progress"
#: Dimensions the demo keeps of the organism's hidden states (projected from its width of 256).
HIDDEN_DIM = 32


@dataclass
class DemoConfig:
    out: str = field(default="lvsal-demo", metadata={"help": "output folder"})
    scenes: int = field(default=100, metadata={"help": "scenes per set"})
    max_new_tokens: int = field(default=48, metadata={"help": "answer length cap"})
    seed: int = field(default=0, metadata={"help": "seed of folds, bootstraps and sampling decodings"})


def _fmt(e: dict[str, float], scale: float = 100) -> str:
    return format_estimate(e, scale=scale, digits=1 if scale == 100 else 3)  # percentages to 0.1, scores to 0.001


def _start(out: Path) -> None:
    """Claim the output folder: empty, or a demo that did not finish (it resumes)."""
    if out.exists() and any(out.iterdir()) and not (out / IN_PROGRESS).exists():
        raise InputError(f"demo output folder {out} is not empty (a finished demo?); pass another --out "
                         "(make demo OUT=DIR) or remove it")
    out.mkdir(parents=True, exist_ok=True)
    (out / IN_PROGRESS).touch()


def run_demo(cfg: DemoConfig, log: Callable[[str], Any] = print) -> dict[str, Any]:
    """The whole pipeline on the organism (see the module doc); returns what metrics.json holds."""
    from analysis.detectors import score_traces
    from analysis.detectors import ranking_metrics

    from ..collect import collect
    from ..config import CollectConfig
    from ..models import load_lvlm
    from .calibrate import calibrate_to_file
    from .fit_detector import fit_detectors
    from .verification import DEFAULT_DECODINGS, VerifyConfig, verify

    out = Path(cfg.out)
    _start(out)
    started = time.time()
    lvlm = load_lvlm("organism", device="cpu")
    analysis_spec = f"synthetic:split=test,n={cfg.scenes},seed=1"
    eval_spec = f"synthetic:split=test,n={cfg.scenes},seed=0"

    train_spec = f"synthetic:split=train,n={cfg.scenes},seed=1"
    features = {"lookback_heads": True, "hidden_states": True, "hidden_dim": HIDDEN_DIM}
    log(f"[1/5] collecting greedy traces of the organism on {cfg.scenes} held-out and {cfg.scenes} training "
        "scenes ...")
    traces_dir, train_dir = out / "traces" / "analysis", out / "traces" / "train"
    for spec, folder in ((analysis_spec, traces_dir), (train_spec, train_dir)):
        collect(CollectConfig(data=spec, out=str(folder), max_new_tokens=cfg.max_new_tokens, seed=cfg.seed,
                              resume=folder.exists(), **features), lvlm=lvlm)

    log("[2/5] fitting hallucination detectors (grouped cross-validation; train -> test transfer) ...")
    det_report = fit_detectors(traces_dir, out / "detectors", features="all", random_state=cfg.seed)
    transfer = fit_detectors(train_dir, out / "detectors-train", features="all", random_state=cfg.seed,
                             eval_traces=traces_dir)

    log("[3/5] calibrating SGRS ...")
    cal = calibrate_to_file(traces_dir, out / "calibration.json")

    log(f"[4/5] verifying greedy / sgrs / locore / sgrs+locore / guided on {cfg.scenes} other scenes ...")
    ver = verify(VerifyConfig(data=eval_spec, out=str(out / "verification"), max_new_tokens=cfg.max_new_tokens,
                              seed=cfg.seed, calibration=str(out / "calibration.json"),
                              decodings=[*DEFAULT_DECODINGS, "guided"],
                              detector=str(out / "detectors" / "detector.json"),
                              resume=(out / "verification").exists(), **features), lvlm=lvlm)
    scored = score_traces(out / "detectors" / "detector.json", ver.folders["greedy"])
    held_out = ranking_metrics((scored["label"] == "hallucinated").to_numpy(int), scored["p_hallucinated"].to_numpy(),
                               scored["image_id"].to_numpy(), random_state=cfg.seed)

    log("[5/5] measuring the paper's pattern and writing the report ...")
    metrics = {
        "verification": ver.metrics,
        "detectors": {k: v for k, v in det_report.items() if k != "meta"},
        "detector_held_out": held_out,
        "detector_transfer": {k: v for k, v in transfer["transfer"].items() if k != "eval_traces"},
        "detectors_train": {k: v for k, v in transfer.items() if k not in ("meta", "transfer")},
        "calibration": cal,
        "pattern": _pattern(traces_dir, out, cfg.seed),
        "meta": {"analysis_data": analysis_spec, "evaluation_data": eval_spec, "train_data": train_spec,
                 "max_new_tokens": cfg.max_new_tokens,
                 "seed": cfg.seed, "minutes": round((time.time() - started) / 60, 1)},
    }
    for source in (out / "detectors" / "roc.png", out / "verification" / "effects.png"):
        atomic_write_bytes(out / source.name, source.read_bytes())
    atomic_write_text(out / "metrics.json", json.dumps(metrics, indent=1, default=float))
    atomic_write_text(out / "report.md", demo_report(metrics, (out / "verification" / "report.md").read_text()))
    (out / IN_PROGRESS).unlink()
    return metrics


def _pattern(traces_dir: Path, out: Path, seed: int) -> dict[str, Any]:
    """The paper's Table 4 and Fig. 8b on the analysis traces, with their plots."""
    from analysis import plots
    from analysis.pattern import label_difference, mention_scores, rate_by_decile, saliency_by_label

    from ..store import open_traces

    scores = mention_scores(open_traces(traces_dir))
    deciles = rate_by_decile(scores)
    plots.save(plots.decile_figure(deciles), out / "deciles.png")
    plots.save(plots.label_figure(scores), out / "saliency_by_label.png")
    return {"by_label": saliency_by_label(scores),
            "difference": {stat: label_difference(scores, stat, random_state=seed)
                           for stat in ("saliency", "sal_last")},
            "deciles": deciles.to_dict(orient="records")}


def _verdict(d: dict[str, float]) -> str:
    """What the saliency difference (hallucinated - correct) says about the paper's finding."""
    if d["ci_high"] < 0:
        return "lower before a hallucination, as the paper finds"
    if d["ci_low"] > 0:
        return "higher before a hallucination, the opposite of the paper's finding"
    return ("not measurably different before a hallucination (the interval contains zero): this model does not "
            "show the paper's drop")


def _pattern_tables(pattern: dict[str, Any]) -> tuple[str, str, str]:
    """Section 1's rows: saliency by label with the difference, the reading, the decile rows."""
    pat, diff = pattern["by_label"], pattern["difference"]

    def by_label(stat: str) -> str:
        c, h = pat[stat]["correct"], pat[stat]["hallucinated"]
        return (f"| {stat} | {c['mean']:.3f} ± {c['sd']:.3f} (n={c['n']}) | {h['mean']:.3f} ± {h['sd']:.3f} "
                f"(n={h['n']}) | {format_estimate(diff[stat], scale=1, digits=4, signed=True)} |")

    lab = "\n".join(by_label(stat) for stat in ("saliency", "sal_last"))
    d = diff["saliency"]
    reading = (f"On this model the Eq. 6 saliency of a mention start is {_verdict(d)}; "
               f"difference {format_estimate(d, scale=1, digits=4, signed=True)} over {d['n_images']} images.")
    dec = "\n".join(f"| {r['decile']} | {r['low']:.3f}-{r['high']:.3f} | {r['n']} | "
                    f"{format_estimate({**r, 'value': r['rate']})} |" for r in pattern["deciles"])
    return lab, reading, dec


def demo_report(m: dict[str, Any], verification_md: str) -> str:
    """report.md: the paper's pattern, the detectors, SGRS's calibration, then ``verification_md``."""
    det, cal, h = m["detectors"], m["calibration"], m["detector_held_out"]
    lab, reading, dec = _pattern_tables(m["pattern"])
    ranked = det["ranking"]
    rows = "\n".join(f"| {det[k]['rank']} | {k} | {_fmt(det[k]['auroc'], 1)} | {_fmt(det[k]['auprc'], 1)} | "
                     f"{det[k]['n_features']} | {det[k]['n_pos']} | {det[k]['n_neg']} |" for k in ranked)
    moved, source = m["detector_transfer"], m["detectors_train"]
    transfer_rows = "\n".join(f"| {k} | {_fmt(source[k]['auroc'], 1)} | {_fmt(t['auroc'], 1)} | "
                              f"{format_estimate(t['drop'], digits=3, scale=1, signed=True)} | {t['n_pos']} | "
                              f"{t['n_neg']} |" for k, t in moved.items())
    catch, false_rejection = _fmt(cal["intervals"]["catch_rate"]), _fmt(cal["intervals"]["false_rejection_rate"])
    n_cal = cal["n"]
    title, _, rest = verification_md.partition("\n")
    if title.startswith("# "):  # the verification report's own title becomes section 4's
        verification_md = "## 4. Do the fixes reduce hallucination?\n" + rest
    return f"""# lvsal demo: the organism, its saliency, and the paper's two fixes

Everything here was measured by `lvsal demo` on the shipped organism (a small LLaVA trained on a
synthetic world whose ground truth is exact). Analysis traces: `{m['meta']['analysis_data']}`;
evaluation: `{m['meta']['evaluation_data']}`; greedy, max_new_tokens {m['meta']['max_new_tokens']}.
All intervals are 95% bootstrap intervals. Run time: {m['meta']['minutes']} minutes.

## 1. Does saliency drop before a hallucination? (the paper's Table 4 and Fig. 8b)

Saliency of object-mention starts, mean ± sd:

| statistic | correct | hallucinated | hallucinated - correct [95% CI, resampling images] |
|---|---|---|---|
{lab}

{reading}

Hallucination rate of mention starts per decile of the Eq. 6 saliency (1 = lowest):

| decile | saliency range | n | hallucinated (%) |
|---|---|---:|---|
{dec}

![deciles](deciles.png) ![by label](saliency_by_label.png)

## 2. How well do trace features detect hallucinations?

Detectors (scaler + logistic regression) on mention starts, 5-fold CV grouped by image, ranked
by AUROC (`hidden`: the residual stream of the target layers, projected to {HIDDEN_DIM} dimensions;
`image_attention`: entropy, peak and top-10 mass of the attention over the image):

| rank | features | AUROC | AUPRC | features used | hallucinated | correct |
|---:|---|---|---|---:|---:|---:|
{rows}

The detector on all features, fitted on the analysis traces and applied to the evaluation
scenes' greedy traces: AUROC {_fmt(h['auroc'], 1)} (n_pos={h['n_pos']}, n_neg={h['n_neg']}).

Transfer: each set's detector fitted on training-split scenes (`{m['meta']['train_data']}`, where
the world's co-occurrence pairs hold) and scored on the analysis scenes (pairs broken). The drop
is the cross-validated AUROC on the training scenes minus the AUROC on the test scenes (positive:
the detector loses accuracy when the scenes change); counts are the test scenes':

| features | CV AUROC, train scenes | AUROC, test scenes | drop [95% CI] | hallucinated | correct |
|---|---|---|---|---:|---:|
{transfer_rows}

![ROC](roc.png)

## 3. SGRS calibrated for this model

Target layers {cal['target_layers']}, W = {cal['window']}, alpha = {cal['alpha']}, chosen on half of the analysis
images; on the other {cal['evaluated_on']['images']} images the rule catches
{catch}% of {n_cal['hallucinated_mention_starts']} hallucinated mention starts and rejects
{false_rejection}% of {n_cal['correct_mention_starts']} correct ones (bound on the tuning
half {100 * cal['max_false_rejection']:.0f}%; {100 * cal['false_rejection_rate_all_tokens']:.1f}% of all \
non-hallucinated tokens).

{verification_md}
![effects](effects.png)
"""


def run(cfg: DemoConfig) -> int:
    from analysis.verification import verdict

    m = run_demo(cfg)
    v, pat = m["verification"], m["pattern"]["by_label"]["saliency"]
    g, d, a = v["greedy"]["chair_s"], m["pattern"]["difference"]["saliency"], m["detectors"]["all"]["auroc"]
    print(f"\nsaliency of mention starts: correct {pat['correct']['mean']:.3f} vs hallucinated "
          f"{pat['hallucinated']['mean']:.3f} (difference {format_estimate(d, scale=1, digits=4, signed=True)}); "
          f"detector AUROC (all features) {_fmt(a, 1)}; greedy CHAIR_S {_fmt(g)}%")
    for name, diff in v.get("vs_greedy", {}).items():
        c = diff["chair_s"]
        print(f"{name}: CHAIR_S {format_estimate(c, signed=True)} points vs greedy ({verdict(c, 'chair_s')})")
    print(f"report: {cfg.out}/report.md (metrics.json, plots and trace datasets beside it)")
    return 0


COMMAND = Command("demo", "the whole pipeline on the embedded default (organism + synthetic world)", DemoConfig, run)
