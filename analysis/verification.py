"""Verify whether SGRS / LocoRE reduce hallucination, with confidence intervals.

Every decoding runs on the same samples with the same ``max_new_tokens`` (through the
collector, so each leaves a trace dataset); CHAIR (captions) and POPE (yes/no) come with
bootstrap CIs, and each fix is compared with greedy by a paired bootstrap over the shared
samples (difference, CI, two-sided p-value). Nothing is tuned here: the report says "no
significant effect" wherever the interval of the difference contains zero.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Sequence

import pandas as pd

from lvsal_data.io import atomic_write_text
from lvsal_data.store import open_traces

from lvsal_data.yesno import REFERENCE

from .metrics import (CHAIR_METRICS, POPE_METRICS, caption_results, chair, chair_arrays, chair_statistic, image_groups,
                      pope, pope_arrays, pope_statistic, yesno_results)
from .stats import paired_difference

LOWER_IS_BETTER = {"chair_s", "chair_i"}


def samples_by_decoding(folders: dict[str, Path]) -> dict[str, pd.DataFrame]:
    """Each decoding's samples table, restricted to the samples every decoding has, in one order."""
    tables = {name: open_traces(f).pandas("samples").set_index("sample_id") for name, f in folders.items()}
    common = sorted(set.intersection(*(set(t.index) for t in tables.values())))
    return {name: t.loc[common].reset_index() for name, t in tables.items()}


def compare(tables: dict[str, pd.DataFrame], baseline: str = "greedy", resamples: int = 1000,
            random_state: int = 0, pope_rule: str = REFERENCE) -> dict[str, Any]:
    """metrics.json's content: decoding -> metric -> {value, ci_low, ci_high}, n; and vs_greedy.

    Every bootstrap resamples images; the paired one resamples the same images for a fix and
    its baseline (the tables hold the same samples in the same order)."""
    out: dict[str, Any] = {}
    stats = {}
    for name, df in tables.items():
        caps, yn = df[df["task"] == "caption"], df[df["task"] == "yesno"]
        entry: dict[str, Any] = {"n": int(len(df))}
        if len(caps):
            results = caption_results(caps)
            entry.update({k: v for k, v in chair(results, resamples=resamples, random_state=random_state).items()
                          if k in CHAIR_METRICS})
            stats.setdefault(name, {})["caption"] = (chair_statistic(chair_arrays(results)), image_groups(results))
        if len(yn):
            answers = yesno_results(yn)
            p = pope(answers, rule=pope_rule, resamples=resamples, random_state=random_state)
            entry.update({k: v for k, v in p.items() if k in POPE_METRICS})
            entry.update({k: p[k] for k in ("n_unparsed", "n_images", "rule")})
            if "by_split" in p:
                entry["pope_by_split"] = p["by_split"]
            stats.setdefault(name, {})["yesno"] = (pope_statistic(pope_arrays(answers, pope_rule)), image_groups(answers))
        rates = df["sgrs_rejection_rate"].dropna()
        if len(rates):
            entry["sgrs_rejection_rate"] = float(rates.mean())
            entry["sgrs_fallback_rate"] = float(df["sgrs_fallback_rate"].dropna().mean())
        out[name] = entry
    if baseline in stats:
        out["vs_greedy"] = {}
        for name in stats:
            if name == baseline:
                continue
            diff: dict[str, Any] = {}
            for task, (stat, groups) in stats[name].items():
                base_stat, _ = stats[baseline][task]
                n = len(tables[name][tables[name]["task"] == task])
                diff.update(paired_difference(stat, base_stat, n, groups=groups, resamples=resamples,
                                              random_state=random_state))
            out["vs_greedy"][name] = diff
    return out


def reading(metrics: dict[str, Any], keys: Sequence[str]) -> list[str]:
    """Plain-words sentences about each fix's effect against greedy."""
    lines = []
    for name, diffs in metrics.get("vs_greedy", {}).items():
        for key in keys:
            if key not in diffs:
                continue
            d = diffs[key]
            scale, unit = (1, " tokens") if key == "length" else (100, " points")
            span = f"{scale * d['value']:+.1f}{unit} [{scale * d['ci_low']:+.1f}, {scale * d['ci_high']:+.1f}], p = {d['p_value']:.3f}"
            if d["ci_low"] <= 0 <= d["ci_high"]:
                verdict = "no significant effect"
            else:
                better = (d["value"] < 0) == (key in LOWER_IS_BETTER)
                verdict = "significantly " + ("better" if better else "worse") if key not in ("length",) else \
                    "significantly " + ("shorter" if d["value"] < 0 else "longer")
            lines.append(f"- **{name}** vs greedy, {key}: {span}: {verdict}.")
    return lines


def report_markdown(metrics: dict[str, Any], meta: dict[str, Any]) -> str:
    decodings = [d for d in metrics if d not in ("vs_greedy", "meta")]
    keys = [k for k in (*CHAIR_METRICS, *POPE_METRICS) if any(k in metrics[d] for d in decodings)]
    head = "| decoding | n | " + " | ".join(keys) + " |"
    rule = "|---|---:|" + "---|" * len(keys)
    rows = []
    for d in decodings:
        cells = []
        for k in keys:
            e = metrics[d].get(k)
            s = 1 if k == "length" else 100
            cells.append("" if e is None else f"{s * e['value']:.1f} [{s * e['ci_low']:.1f}, {s * e['ci_high']:.1f}]")
        rows.append(f"| {d} | {metrics[d]['n']} | " + " | ".join(cells) + " |")
    words = reading(metrics, keys)
    sgrs = [f"- {d}: SGRS rejected a candidate at {100 * metrics[d]['sgrs_rejection_rate']:.1f}% of steps and fell "
            f"back at {100 * metrics[d]['sgrs_fallback_rate']:.1f}%." for d in decodings if "sgrs_rejection_rate" in metrics[d]]
    params = meta.get("decoding_params", {})
    sampled = [d for d in decodings if params.get(d, {}).get("deterministic") is False]
    if sampled:
        sgrs.append(f"- {', '.join(sampled)} draw(s) from the top-K as the paper does, so the difference to greedy "
                    "includes sampling itself, not only the rejections; `--sgrs-deterministic` (candidates in "
                    "probability order) isolates the rejections.")
    return "\n".join([
        "# Verification of SGRS / LocoRE", "",
        f"Model `{meta['model']}`, data `{meta['data']}`, max_new_tokens {meta['max_new_tokens']}, seed {meta['seed']}; "
        f"every decoding on the same {metrics[decodings[0]]['n']} samples. Rates in %, length in tokens; "
        "95% bootstrap intervals over samples.", "",
        head, rule, *rows, "",
        "## Reading (paired bootstrap against greedy)", "",
        *(words or ["- Only one decoding: nothing to compare."]), "",
        *sgrs, "",
        "An interval that contains zero means the data cannot tell the fix from greedy decoding.", "",
    ])


@dataclass
class VerifyResult:
    metrics: dict[str, Any]
    out: Path
    folders: dict[str, Path] = field(default_factory=dict)


def verify(model: str, data: str, out: str | Path, decodings: Sequence[str] = ("greedy", "sgrs", "locore", "sgrs+locore"),
           limit: int | None = None, seed: int = 0, max_new_tokens: int | None = None, options: Any = None,
           lvlm: Any = None, resume: bool = False, progress: bool = True, device: str | None = None,
           dtype: str | None = None, lookback_heads: bool = False, system_prompt: str | None = None) -> VerifyResult:
    """Run each decoding through the collector and write metrics.json, report.md and plots.

    A non-empty ``out`` is refused unless ``resume``; resuming runs the collector's own check
    that each decoding's traces were made with the same settings (it refuses a mismatch), so
    old traces are never reported under a new header. ``lookback_heads`` keeps the per-head
    attention columns in the traces (for detectors fitted on traces that have them)."""
    from lvsal_data.collect import CollectConfig, collect
    from lvsal_data.decoding import DecodingOptions
    from lvsal_data.errors import InputError
    from lvsal_data.models import load_lvlm
    from lvsal_data.store import check_output_folder

    from . import plots

    if "greedy" not in decodings:
        raise InputError("--decodings must include greedy (the baseline of the comparison)")
    out = Path(out)
    check_output_folder(out, resume)  # before the model loads: refusing must be quick
    options = options or DecodingOptions()
    if lvlm is None:
        lvlm = load_lvlm(model, device=device, dtype=dtype)
    folders = {}
    for name in decodings:
        folder = out / "traces" / name.replace("+", "_")
        cfg = CollectConfig(**{**asdict(options), "model": model, "data": data, "out": str(folder), "decoding": name,
                               "limit": limit, "max_new_tokens": max_new_tokens, "seed": seed,
                               "resume": resume, "device": device, "dtype": dtype, "system_prompt": system_prompt,
                               "lookback_heads": lookback_heads})
        collect(cfg, lvlm=lvlm, progress=progress)  # resuming a finished decoding checks it and writes nothing new
        folders[name] = folder
    metrics = compare(samples_by_decoding(folders), random_state=seed)
    manifests = {k: open_traces(v).manifest for k, v in folders.items()}
    meta = {"model": model, "data": data, "max_new_tokens": manifests["greedy"]["max_new_tokens"], "seed": seed,
            "protocol": manifests["greedy"].get("protocol"), "decodings": list(decodings),
            "traces": {k: str(v) for k, v in folders.items()},
            "decoding_params": {k: m["decoding"]["params"] for k, m in manifests.items()}}
    metrics["meta"] = meta
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out / "metrics.json", json.dumps(metrics, indent=1))
    atomic_write_text(out / "report.md", report_markdown(metrics, meta))
    decs = [d for d in metrics if d not in ("vs_greedy", "meta")]
    keys = tuple(k for k in ("chair_s", "chair_i", "recall", "pope_f1") if any(k in metrics[d] for d in decs))
    if keys:
        plots.save(plots.effects_figure(metrics, keys), out / "effects.png")
    return VerifyResult(metrics, out, folders)
