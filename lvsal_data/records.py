"""Turn one traced answer into rows of the trace dataset (tokens and samples tables)."""

from __future__ import annotations

import math
import re
from typing import Any, Sequence

import numpy as np

from .aggregates import summary_columns
from .labels import TokenLabel, find_mentions, label_tokens
from .models import Spans
from .sources import Sample
from .tracing import Trace
from .yesno import STRICT, label_yes_no, parse_yes_no

_WORDS = re.compile(r"\S+")


def token_offsets(tokenizer: Any, ids: Sequence[int]) -> tuple[str, list[tuple[int, int]], list[str]]:
    """Decode ``ids`` and find each token's character span in the decoded text.

    Decodes growing prefixes, so byte-level tokens that complete a character only together get
    the span of what they add (possibly empty); special tokens add nothing.

    Returns:
        (text, offsets, token strings)
    """
    offsets, pieces = [], []
    previous = ""
    for k in range(len(ids)):
        text = tokenizer.decode(list(ids[: k + 1]), skip_special_tokens=True)
        if not text.startswith(previous):  # a multi-byte character completed: re-anchor
            common = len(previous)
            while common and not text.startswith(previous[:common]):
                common -= 1
            previous = previous[:common]
        offsets.append((len(previous), len(text)))
        pieces.append(text[len(previous):])
        previous = text
    return previous, offsets, pieces


def _word_at(text: str, span: tuple[int, int]) -> str:
    a, b = span
    for m in _WORDS.finditer(text):
        if m.end() > a and m.start() < max(b, a + 1):
            return m.group()
    return ""


def _f(x: float) -> float | None:
    return None if x is None or (isinstance(x, float) and math.isnan(x)) else float(x)


def build_rows(
    sample: Sample, trace: Trace, spans: Spans, tokenizer: Any, decoding: str, seed: int,
    store_rows: bool = False, lookback: bool = False,
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Token rows and the sample row of one traced answer.

    Args:
        sample: The annotated sample.
        trace: Its traced answer.
        spans: The prompt's spans.
        tokenizer: The model's tokenizer (decodes tokens and gives character offsets).
        decoding: Name of the decoding.
        seed: The sample's seed.
        store_rows / lookback: Fill the optional columns.
    """
    text, offsets, pieces = token_offsets(tokenizer, trace.token_ids)
    tokens = token_rows(sample, trace, text, offsets, pieces, decoding, store_rows, lookback)
    return tokens, sample_row(sample, trace, spans, text, decoding, seed)


def token_rows(
    sample: Sample, trace: Trace, text: str, offsets: Sequence[tuple[int, int]], pieces: Sequence[str],
    decoding: str, store_rows: bool = False, lookback: bool = False,
) -> list[dict[str, Any]]:
    """The tokens table's rows of one answer (``text``, with each token's character span and
    decoded piece from :func:`token_offsets`), labelled against the sample's ground truth."""
    if sample.task == "yesno":
        labels: list[TokenLabel] = label_yes_no(offsets, text, sample.expected or "", sample.question_object or "")
    else:
        labels = label_tokens(offsets, text, sample.objects)
    rows = []
    for tok, lab, span, piece in zip(trace.tokens, labels, offsets, pieces):
        row: dict[str, Any] = {
            "sample_id": sample.id, "image_id": sample.image_id, "decoding": decoding,
            "position": tok.position, "token_id": tok.token_id, "token": piece,
            "word": lab.word or _word_at(text, span), "object": lab.object, "label": lab.label,
            "mention_start": lab.mention_start,
            "sgrs_tries": tok.record.get("tries"), "sgrs_rejected": tok.record.get("rejected"),
            "sgrs_fallback": tok.record.get("fallback"), "sgrs_tau": tok.record.get("tau"),
            "guided_intervened": tok.record.get("intervened"), "guided_replaced": tok.record.get("replaced"),
            "guided_p_top": tok.record.get("p_top"), "guided_p_chosen": tok.record.get("p_chosen"),
            **summary_columns(tok.summary, tok.logprob, tok.entropy, tok.hidden, lookback),
        }
        if store_rows:
            row["rows"] = tok.row.tolist() if tok.row is not None else None
        if tok.p_hallucinated is not None:
            row["p_hallucinated"] = tok.p_hallucinated
        rows.append(row)
    return rows


def sample_row(sample: Sample, trace: Trace, spans: Spans, text: str, decoding: str, seed: int) -> dict[str, Any]:
    """The samples table's row of one answer ``text``: mentions and CHAIR fields (captions),
    parsed answers (yes/no), spans and SGRS's rates."""
    mentions = [m.category for m in find_mentions(text)] if sample.task == "caption" else []
    truth = set(sample.objects)
    hallucinated = sorted({m for m in mentions if m not in truth})
    steps = [t.record for t in trace.tokens if "tries" in t.record]  # SGRS's
    guided = [t.record for t in trace.tokens if "intervened" in t.record]
    yesno = sample.task == "yesno"
    return {
        "sample_id": sample.id, "image_id": sample.image_id, "source": sample.source, "split": sample.split,
        "task": sample.task, "decoding": decoding, "prompt": sample.prompt, "answer": text,
        "n_tokens": len(trace.token_ids), "stopped_by_eos": trace.stopped_by_eos, "objects": list(sample.objects),
        "mentions": mentions, "mentioned": sorted(set(mentions)), "hallucinated": hallucinated,
        "chair_s": bool(hallucinated) if sample.task == "caption" else None,
        "n_mentions": len(mentions), "n_hallucinated_mentions": sum(m not in truth for m in mentions),
        "expected": sample.expected, "predicted": parse_yes_no(text) if yesno else None,
        "predicted_strict": parse_yes_no(text, STRICT) if yesno else None,
        "question_object": sample.question_object,
        "span_system": list(spans.system), "span_image": list(spans.image),
        "span_instruction": list(spans.instruction),
        "sgrs_rejection_rate": _f(np.mean([r.get("rejected", 0) > 0 for r in steps])) if steps else None,
        "sgrs_fallback_rate": _f(np.mean([bool(r.get("fallback")) for r in steps])) if steps else None,
        "guided_intervention_rate": _f(np.mean([r["intervened"] for r in guided])) if guided else None,
        "guided_replacement_rate": _f(np.mean([r["replaced"] for r in guided])) if guided else None,
        "seed": seed,
    }
