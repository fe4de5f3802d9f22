"""Seaborn figures for reports and notebooks (each returns the matplotlib Figure)."""

from __future__ import annotations

from typing import Any, Mapping

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns
from lvsal_data.metrics import format_estimate
from sklearn.metrics import roc_curve


def roc_figure(curves: Mapping[str, tuple[np.ndarray, np.ndarray, dict[str, Any]]]) -> plt.Figure:
    """ROC curves: feature set -> (y, scores, metrics with auroc)."""
    fig, ax = plt.subplots(figsize=(4.8, 4.4))
    for name, (y, scores, m) in curves.items():
        ok = np.isfinite(scores)
        if len(np.unique(y[ok])) < 2:
            continue
        fpr, tpr, _ = roc_curve(y[ok], scores[ok])
        a = m["auroc"]
        ax.plot(fpr, tpr, label=f"{name}: {format_estimate(a, scale=1, digits=2)}")
    ax.plot([0, 1], [0, 1], ls="--", c="grey", lw=1)
    ax.set(xlabel="false positive rate", ylabel="true positive rate", title="Hallucination detectors (AUROC)")
    ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    return fig


def decile_figure(deciles: pd.DataFrame, stat: str = "saliency") -> plt.Figure:
    """Hallucination rate per saliency decile with Wilson intervals (the paper's Fig. 8b)."""
    fig, ax = plt.subplots(figsize=(5.2, 3.6))
    sns.barplot(data=deciles, x="decile", y="rate", color="#4c72b0", ax=ax)
    ax.errorbar(np.arange(len(deciles)), deciles["rate"], yerr=[deciles["rate"] - deciles["ci_low"],
                deciles["ci_high"] - deciles["rate"]], fmt="none", c="black", lw=1, capsize=2)
    ax.set(xlabel=f"{stat} decile (1 = lowest)", ylabel="hallucination rate", ylim=(0, 1),
           title="Hallucination rate of mention starts by saliency")
    fig.tight_layout()
    return fig


def label_figure(scores: pd.DataFrame) -> plt.Figure:
    """Saliency of correct vs hallucinated mention starts (the paper's Table 4, as a plot): one
    panel per statistic on its own scale, so ``sal_last``'s outliers cannot squash the main
    statistic's boxes."""
    stats = [s for s in ("saliency", "sal_last") if s in scores]
    fig, axes = plt.subplots(1, len(stats), figsize=(3.0 * len(stats) + 0.6, 3.6), squeeze=False)
    for ax, stat in zip(axes[0], stats):
        sns.boxplot(data=scores, x="label", y=stat, hue="label", order=["correct", "hallucinated"],
                    hue_order=["correct", "hallucinated"], ax=ax, fliersize=1, legend=False)
        ax.set(title=stat, xlabel="", ylabel=f"{stat} of the mention start")
    fig.suptitle("Saliency of mention starts")
    fig.tight_layout()
    return fig


#: panel titles as the report names the metrics
METRIC_NAMES = {"chair_s": "CHAIR_S", "chair_i": "CHAIR_I", "recall": "object recall", "length": "length",
                "pope_accuracy": "POPE accuracy", "pope_precision": "POPE precision", "pope_recall": "POPE recall",
                "pope_f1": "POPE F1", "pope_yes_ratio": "POPE yes-ratio"}


def effects_figure(metrics: Mapping[str, Any], keys: tuple[str, ...]) -> plt.Figure:
    """Each decoding's metrics with 95% CIs, one panel per metric: titled as the report names it,
    with its better direction, percentages in % as the report prints them."""
    from .verification import HIGHER_IS_BETTER, LOWER_IS_BETTER

    decodings = [d for d in metrics if d not in ("vs_greedy", "meta")]
    fig, axes = plt.subplots(1, len(keys), figsize=(3.2 * len(keys), 3.6), squeeze=False)
    for ax, key in zip(axes[0], keys):
        scale, unit = (1, "tokens") if key == "length" else (100, "%")
        vals = [metrics[d][key] for d in decodings]
        y = [scale * v["value"] for v in vals]
        err = [[scale * (v["value"] - v["ci_low"]) for v in vals], [scale * (v["ci_high"] - v["value"]) for v in vals]]
        ax.bar(decodings, y, color=sns.color_palette("deep", len(decodings)))
        ax.errorbar(range(len(decodings)), y, yerr=err, fmt="none", c="black", capsize=3)
        direction = ("lower is better" if key in LOWER_IS_BETTER else "higher is better" if key in HIGHER_IS_BETTER
                     else "no better direction")
        name = METRIC_NAMES.get(key, key)
        ax.set_title(f"{name}\n({direction})", fontsize=10)
        ax.set_ylabel(f"{name} ({unit}, 95% CI)")
        ax.tick_params(axis="x", rotation=30)
    fig.tight_layout()
    return fig


def tradeoff_figure(curve: pd.DataFrame, chosen: Mapping[str, Any]) -> plt.Figure:
    """SGRS's rule along alpha: share of hallucinated vs correct mention starts it rejects."""
    fig, ax = plt.subplots(figsize=(4.8, 4.2))
    ax.plot(curve["false_rejection_rate"], curve["catch_rate"], marker=".", lw=1)
    ax.scatter([chosen["false_rejection_rate"]], [chosen["catch_rate"]], c="crimson", zorder=3,
               label=f"calibrated: alpha={chosen['alpha']}, W={chosen['window']}")
    ax.axvline(chosen.get("max_false_rejection", 0.05), ls="--", c="grey", lw=1, label="false-rejection bound")
    ax.set(xlabel="correct mention starts rejected", ylabel="hallucinated mention starts caught",
           title="SGRS rule: catch vs false rejection")
    ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    return fig


def saliency_map_figure(rows: np.ndarray, labels: list[str], title: str = "") -> plt.Figure:
    """A query x key saliency map over text columns (the paper's Fig. 2 in kind)."""
    fig, ax = plt.subplots(figsize=(6, 4.5))
    sns.heatmap(rows, cmap="viridis", ax=ax, cbar_kws={"label": "Shat (layer mean)"})
    ax.set(xlabel="key (text columns)", ylabel="generated token", title=title)
    ax.set_yticks(np.arange(len(labels)) + 0.5)
    ax.set_yticklabels(labels, fontsize=6, rotation=0)
    fig.tight_layout()
    return fig


def save(fig: plt.Figure, path: Any) -> None:
    fig.savefig(path, dpi=130)
    plt.close(fig)
