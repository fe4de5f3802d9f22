"""Calibrate SGRS for a model from its traces.

1. **Target layers.** For each traced layer l, a token's post-image saliency s_l (the mean of
   Shat over the instruction and output columns, i.e. Eq. 6 restricted to layer l) separates
   hallucinated from correct mention starts with some AUROC (low saliency = hallucinated). The
   target band is the contiguous band, as wide as the default floor(6L/32)..floor(8L/32), with
   the best mean AUROC.
2. **W and alpha.** SGRS rejects a token when its saliency < alpha x mean(saliency of the last W
   accepted tokens). Simulated on the traces (every traced token was accepted), the grid point
   that catches the most hallucinated mention starts while rejecting at most ``max_false_rejection``
   of the correct mention starts wins (ties: the smaller alpha, then the smaller W).
3. **Held-out rates.** Both choices are made on one part of the data and the rule's catch and
   false-rejection rates reported on another: by default a seeded half of the images
   (``holdout``) is set aside before anything is chosen; with ``eval_traces`` the rule is tuned on
   all of ``traces`` and measured there. The rates come with bootstrap CIs over images; the
   result says which data they were measured on (``evaluated_on``). The tuning-set rates, which
   meet the bound by construction, are kept under ``tuning``.

The result is the JSON that ``--calibration`` feeds to SGRS.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np
import pandas as pd
from sklearn.metrics import roc_auc_score

from lvsal_data.errors import InputError
from lvsal_data.layers import default_target_layers
from lvsal_data.store import Traces

from lvsal_data.stats import bootstrap

COLUMNS = ["sample_id", "image_id", "decoding", "position", "label", "mention_start", "sal_instruction",
           "sal_output", "len_instruction", "len_output"]
WINDOWS = (1, 2, 3, 5, 8)
ALPHAS = tuple(np.round(np.arange(0.0, 1.51, 0.02), 2))


@dataclass
class Sequences:
    """Per-layer post-image saliency of every traced token, grouped into answers."""

    post_image: np.ndarray  # (tokens, layers)
    starts: np.ndarray  # index of each answer's first token
    is_hallucinated: np.ndarray  # mention start labelled hallucinated
    is_correct: np.ndarray  # mention start labelled correct
    is_clean: np.ndarray  # any token not labelled hallucinated
    layers: list[int]
    image_id: np.ndarray  # of each token

    def subset(self, keep_images: set[Any]) -> "Sequences":
        """The answers whose image is in ``keep_images``."""
        keep = np.isin(self.image_id, list(keep_images))  # an answer's tokens share its image: whole answers
        starts = np.flatnonzero(np.isin(np.flatnonzero(keep), self.starts))
        return Sequences(self.post_image[keep], starts, self.is_hallucinated[keep],
                         self.is_correct[keep], self.is_clean[keep], self.layers, self.image_id[keep])


def load_sequences(traces: Traces) -> Sequences:
    """Read the columns calibration needs, shard by shard, in answer order."""
    parts = [t.to_pandas() for t in traces.iter_shards("tokens", columns=COLUMNS)]
    df = pd.concat(parts, ignore_index=True).sort_values(["decoding", "sample_id", "position"], kind="stable")
    instr = np.stack(df["sal_instruction"].to_numpy()).astype(float)
    out = np.nan_to_num(np.stack(df["sal_output"].to_numpy()).astype(float), nan=0.0)
    li = df["len_instruction"].to_numpy(float)[:, None]
    lo = df["len_output"].to_numpy(float)[:, None]
    post = (instr * li + out * lo) / (li + lo)
    keys = (df["decoding"] + "\0" + df["sample_id"]).to_numpy()
    starts = np.flatnonzero(np.r_[True, keys[1:] != keys[:-1]])
    start = df["mention_start"].to_numpy(bool)
    label = df["label"].to_numpy()
    return Sequences(post, starts, start & (label == "hallucinated"), start & (label == "correct"),
                     label != "hallucinated", traces.layers, df["image_id"].astype(str).to_numpy())


def layer_separation(seq: Sequences) -> list[float]:
    """Per-layer AUROC of low post-image saliency for hallucinated vs correct mention starts."""
    mask = seq.is_hallucinated | seq.is_correct
    y = seq.is_hallucinated[mask].astype(int)
    if y.min() == y.max():
        return [float("nan")] * len(seq.layers)
    return [float(roc_auc_score(y, -seq.post_image[mask, l])) for l in range(len(seq.layers))]


def best_band(auroc: Sequence[float], width: int) -> list[int]:
    """Indices of the contiguous band of ``width`` layers with the best mean AUROC."""
    a = np.nan_to_num(np.asarray(auroc, float), nan=0.5)
    width = max(1, min(width, len(a)))
    means = [a[i : i + width].mean() for i in range(len(a) - width + 1)]
    i = int(np.argmax(means))
    return list(range(i, i + width))


def rejections(scores: np.ndarray, starts: np.ndarray, window: int, alpha: float) -> np.ndarray:
    """SGRS's rule on traced answers: token t is rejected iff it has history and
    scores[t] < alpha x mean(scores of the previous ``window`` tokens of its answer)."""
    out = np.zeros(len(scores), dtype=bool)
    bounds = list(starts) + [len(scores)]
    for a, b in zip(bounds[:-1], bounds[1:]):
        s = scores[a:b]
        csum = np.r_[0.0, np.cumsum(s)]
        for t in range(1, len(s)):
            lo = max(0, t - window)
            out[a + t] = s[t] < alpha * (csum[t] - csum[lo]) / (t - lo)
    return out


def rates(rejected: np.ndarray, seq: Sequences) -> dict[str, float]:
    def share(mask: np.ndarray) -> float:
        return float(rejected[mask].mean()) if mask.any() else float("nan")

    return {"catch_rate": share(seq.is_hallucinated), "false_rejection_rate": share(seq.is_correct),
            "false_rejection_rate_all_tokens": share(seq.is_clean)}


def rate_intervals(rejected: np.ndarray, seq: Sequences, resamples: int = 1000,
                   random_state: int = 0) -> dict[str, dict[str, float]]:
    """:func:`rates` with percentile-bootstrap CIs over images."""

    def statistic(idx: np.ndarray) -> dict[str, float]:
        def share(mask: np.ndarray) -> float:
            sel = mask[idx]
            return float(rejected[idx][sel].mean()) if sel.any() else float("nan")

        return {"catch_rate": share(seq.is_hallucinated), "false_rejection_rate": share(seq.is_correct),
                "false_rejection_rate_all_tokens": share(seq.is_clean)}

    return bootstrap(statistic, len(rejected), groups=seq.image_id, resamples=resamples, random_state=random_state)


def split_images(seq: Sequences, holdout: float, seed: int) -> tuple[Sequences, Sequences]:
    """(tuning, held-out): a seeded ``holdout`` share of the images set aside."""
    images = np.unique(seq.image_id)
    if len(images) < 2:
        raise InputError(f"calibration needs at least 2 images to hold some out, got {len(images)}")
    n_held = min(len(images) - 1, max(1, int(round(holdout * len(images)))))
    held = set(np.random.default_rng(seed).permutation(images)[:n_held].tolist())
    return seq.subset(set(images.tolist()) - held), seq.subset(held)


def _counts(seq: Sequences, what: str) -> tuple[int, int]:
    n_h, n_c = int(seq.is_hallucinated.sum()), int(seq.is_correct.sum())
    if n_h == 0 or n_c == 0:
        raise InputError(f"calibration needs hallucinated and correct mention starts in the {what} "
                         f"(got {n_h} and {n_c}); collect more samples")
    return n_h, n_c


def calibrate(traces: Traces, max_false_rejection: float = 0.05, windows: Sequence[int] = WINDOWS,
              alphas: Sequence[float] = ALPHAS, *, eval_traces: Traces | None = None, holdout: float = 0.5,
              seed: int = 0) -> dict[str, Any]:
    """Choose target layers, W and alpha for SGRS from a trace dataset, and measure the rule on
    data it was not chosen on (see the module doc).

    Args:
        traces: Greedy traces of the model.
        max_false_rejection: Largest share of correct mention starts the rule may reject
            (on the tuning data).
        windows, alphas: The grid.
        eval_traces: Traces to measure the rule on (default: a held-out share of ``traces``' images).
        holdout: Share of images set aside when ``eval_traces`` is not given.
        seed: Seed of that split.
    """
    if not 0 <= max_false_rejection <= 1:
        raise InputError(f"max_false_rejection must be in [0, 1], got {max_false_rejection}")
    seq = load_sequences(traces)
    if eval_traces is None:
        if not 0 < holdout < 1:
            raise InputError(f"holdout must be in (0, 1), got {holdout}")
        tune, held = split_images(seq, holdout, seed)
        evaluated_on = {"data": "held-out images", "traces": str(traces.root), "holdout": holdout, "seed": seed,
                        "images": int(len(np.unique(held.image_id)))}
    else:
        tune, held = seq, load_sequences(eval_traces)
        if held.layers != seq.layers:
            raise InputError(f"{eval_traces.root} traced layers {held.layers}, {traces.root} traced {seq.layers}")
        evaluated_on = {"data": "eval traces", "traces": str(eval_traces.root),
                        "images": int(len(np.unique(held.image_id)))}
    n_h, n_c = _counts(tune, "tuning data")
    h_h, h_c = _counts(held, "held-out data")
    auroc = layer_separation(tune)
    width = len(default_target_layers(traces.manifest["model"]["num_layers"]))
    band = best_band(auroc, width)
    scores = tune.post_image[:, band].mean(axis=1)
    best: tuple[float, float, int, dict[str, float]] | None = None
    for window in windows:
        for alpha in alphas:
            r = rates(rejections(scores, tune.starts, window, float(alpha)), tune)
            if r["false_rejection_rate"] <= max_false_rejection:
                key = (r["catch_rate"], -float(alpha), -window)
                if best is None or key > (best[0], -best[1], -best[2]):
                    best = (r["catch_rate"], float(alpha), window, r)
    if best is None:  # alpha = 0 never rejects, so only an empty grid gets here
        raise ValueError("empty calibration grid: pass at least one window and one alpha")
    _, alpha, window, tuned = best
    held_rejected = rejections(held.post_image[:, band].mean(axis=1), held.starts, window, alpha)
    measured = rate_intervals(held_rejected, held, random_state=seed)
    return {
        "model": traces.manifest["model"]["id"], "alpha": alpha, "window": window,
        "target_layers": [seq.layers[i] for i in band],
        **{k: v["value"] for k, v in measured.items()},
        "intervals": measured,
        "evaluated_on": evaluated_on,
        "n": {"hallucinated_mention_starts": h_h, "correct_mention_starts": h_c,
              "tokens": int(len(held.image_id)), "answers": int(len(held.starts))},
        "tuning": {**tuned, "n": {"hallucinated_mention_starts": n_h, "correct_mention_starts": n_c,
                                  "tokens": int(len(scores)), "answers": int(len(tune.starts))}},
        "max_false_rejection": max_false_rejection,
        "layer_auroc": {str(l): a for l, a in zip(seq.layers, auroc)},
        "traces": str(traces.root),
    }


def tradeoff(traces: Traces, calibration: dict[str, Any], alphas: Sequence[float] = ALPHAS) -> pd.DataFrame:
    """Catch and false-rejection rates along alpha, at a calibration's window and target layers."""
    seq = load_sequences(traces)
    band = [seq.layers.index(l) for l in calibration["target_layers"]]
    scores = seq.post_image[:, band].mean(axis=1)
    window = int(calibration["window"])
    return pd.DataFrame([{"alpha": float(a), **rates(rejections(scores, seq.starts, window, float(a)), seq)}
                         for a in alphas])


def evaluate_rule(traces: Traces, calibration: dict[str, Any]) -> dict[str, float]:
    """Catch and false-rejection rates of a calibration's rule on (held-out) traces."""
    seq = load_sequences(traces)
    band = [seq.layers.index(l) for l in calibration["target_layers"]]
    scores = seq.post_image[:, band].mean(axis=1)
    return rates(rejections(scores, seq.starts, int(calibration["window"]), float(calibration["alpha"])), seq)
