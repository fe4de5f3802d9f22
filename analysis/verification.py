"""Compare decodings run on the same samples: do SGRS / LocoRE reduce hallucination?

Reads one trace dataset per decoding (``lvsal verify``, :mod:`lvsal_data.commands.verification`,
collects them); CHAIR (captions) and POPE (yes/no) come with bootstrap CIs over images, and each
fix is compared with greedy by a paired bootstrap over the shared images (difference, CI,
two-sided p-value). Nothing is tuned here: the report says "no significant effect" wherever the
interval of the difference contains zero, and gives a metric without a better direction
(yes-ratio, length) no better or worse.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import numpy as np
import pandas as pd

from lvsal_data.metrics import (CHAIR_METRICS, POPE_METRICS, caption_results, chair, chair_arrays, chair_statistic,
                                format_estimate, image_groups, pope, pope_arrays, pope_statistic, yesno_results)
from lvsal_data.stats import paired_difference
from lvsal_data.store import open_traces
from lvsal_data.yesno import REFERENCE



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
            statistic = pope_statistic(pope_arrays(answers, pope_rule))
            stats.setdefault(name, {})["yesno"] = (statistic, image_groups(answers))
        rates = df["sgrs_rejection_rate"].dropna()
        if len(rates):
            entry["sgrs_rejection_rate"] = float(rates.mean())
            entry["sgrs_fallback_rate"] = float(df["sgrs_fallback_rate"].dropna().mean())
        guided = df["guided_intervention_rate"].dropna() if "guided_intervention_rate" in df else ()
        if len(guided):
            entry["guided_intervention_rate"] = float(guided.mean())
            entry["guided_replacement_rate"] = float(df["guided_replacement_rate"].dropna().mean())
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


#: Metrics for which a lower value is better; the others with a direction are higher-is-better.
LOWER_IS_BETTER = frozenset({"chair_s", "chair_i"})
HIGHER_IS_BETTER = frozenset({"recall", "pope_accuracy", "pope_precision", "pope_recall", "pope_f1"})


def verdict(d: dict[str, float], key: str) -> str:
    """The reading of a paired difference (fix minus greedy) of metric ``key``, in words."""
    if not all(np.isfinite([d["value"], d["ci_low"], d["ci_high"]])):
        return "undefined (too few samples to tell)"
    if d["ci_low"] <= 0 <= d["ci_high"]:
        return "no significant effect"
    if key in LOWER_IS_BETTER or key in HIGHER_IS_BETTER:
        better = (d["value"] < 0) == (key in LOWER_IS_BETTER)
        return "significantly " + ("better" if better else "worse")
    if key == "length":
        return "significantly " + ("shorter" if d["value"] < 0 else "longer")
    return "significantly " + ("lower" if d["value"] < 0 else "higher")  # a metric with no better direction


def reading(metrics: dict[str, Any], keys: Sequence[str]) -> list[str]:
    """Plain-words sentences about each fix's effect against greedy."""
    lines = []
    for name, diffs in metrics.get("vs_greedy", {}).items():
        for key in keys:
            if key not in diffs:
                continue
            d = diffs[key]
            scale, unit = (1, " tokens") if key == "length" else (100, " points")
            span = f"{format_estimate(d, scale=scale, signed=True)}{unit}, p = {d['p_value']:.3f}"
            lines.append(f"- **{name}** vs greedy, {key}: {span}: {verdict(d, key)}.")
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
            cells.append("" if e is None else format_estimate(e, scale=1 if k == "length" else 100))
        rows.append(f"| {d} | {metrics[d]['n']} | " + " | ".join(cells) + " |")
    words = reading(metrics, keys)
    sgrs = [f"- {d}: SGRS rejected a candidate at {100 * metrics[d]['sgrs_rejection_rate']:.1f}% of steps and fell "
            f"back at {100 * metrics[d]['sgrs_fallback_rate']:.1f}%."
            for d in decodings if "sgrs_rejection_rate" in metrics[d]]
    sgrs += [f"- {d}: the detector chose among the candidates at {100 * metrics[d]['guided_intervention_rate']:.1f}% "
             f"of steps and replaced the most likely token at {100 * metrics[d]['guided_replacement_rate']:.1f}%."
             for d in decodings if "guided_intervention_rate" in metrics[d]]
    params = meta.get("decoding_params", {})
    sampled = [d for d in decodings if params.get(d, {}).get("deterministic") is False]
    if sampled:
        sgrs.append(f"- {', '.join(sampled)} draw(s) from the top-K as the paper does, so the difference to greedy "
                    "includes sampling itself, not only the rejections; `--sgrs-deterministic` (candidates in "
                    "probability order) isolates the rejections.")
    return "\n".join([
        "# Verification of SGRS / LocoRE" + (" / guided" if "guided" in decodings else ""), "",
        f"Model `{meta['model']}`, data `{meta['data']}`, max_new_tokens {meta['max_new_tokens']}, "
        f"seed {meta['seed']}; "
        f"every decoding on the same {metrics[decodings[0]]['n']} samples. Rates in %, length in tokens; "
        "95% bootstrap intervals over images.", "",
        head, rule, *rows, "",
        "## Reading (paired bootstrap against greedy)", "",
        *(words or ["- Only one decoding: nothing to compare."]), "",
        *sgrs, "",
        "An interval that contains zero means the data cannot tell the fix from greedy decoding.", "",
    ])
