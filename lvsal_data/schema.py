"""The trace dataset's schema: declared once, used for every Parquet file and every card.

Two tables (the README's "The data format"): ``tokens`` (one row per generated token) and
``samples`` (one row per sample and decoding). Per-layer columns are lists with one entry per
traced layer, in the order of the manifest's ``layers``. Bump :data:`SCHEMA_VERSION` on any change.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any, Mapping

import pyarrow as pa

if TYPE_CHECKING:
    import datasets

SCHEMA_VERSION = "1.2"
#: A query row's column segments, in the order of every per-segment column and array.
SEGMENTS: tuple[str, ...] = ("system", "image", "instruction", "output")

_f32 = pa.float32()
_f16 = pa.float16()

TOKENS = pa.schema(
    [
        pa.field("sample_id", pa.string(), nullable=False),
        pa.field("image_id", pa.string(), nullable=False),
        pa.field("decoding", pa.string(), nullable=False),
        pa.field("position", pa.int32(), nullable=False),  # 0-based in the answer
        pa.field("token_id", pa.int32(), nullable=False),
        pa.field("token", pa.string()),  # the token's decoded text
        pa.field("word", pa.string()),  # the whitespace word the token belongs to
        pa.field("object", pa.string()),  # canonical COCO category of its mention, or null
        pa.field("label", pa.string(), nullable=False),  # correct | hallucinated | none
        pa.field("mention_start", pa.bool_(), nullable=False),
        pa.field("logprob", _f32),
        pa.field("entropy", _f32),
        pa.field("saliency", _f32),  # paper Eq. 6 over the target layers
        *[pa.field(f"sal_{s}", pa.list_(_f32)) for s in SEGMENTS],  # mean Shat per layer (NaN if empty)
        *[pa.field(f"len_{s}", pa.int32()) for s in SEGMENTS],  # segment lengths
        *[pa.field(f"att_{s}", pa.list_(_f16)) for s in SEGMENTS],  # attention mass per layer, head-mean
        pa.field("sal_last", pa.list_(_f32)),  # Shat at column q (the preceding token) per layer
        # head-mean attention over the image tokens, per layer (NaN without image tokens); float16 as att_*
        pa.field("img_entropy", pa.list_(_f16)),  # entropy after renormalising over the image tokens (nats)
        pa.field("img_max", pa.list_(_f16)),  # largest share of the row on one image token
        pa.field("img_top10", pa.list_(_f16)),  # share of the row on the 10 most attended image tokens
        # SGRS step records (null for other decodings)
        pa.field("sgrs_tries", pa.int16()),
        pa.field("sgrs_rejected", pa.int16()),
        pa.field("sgrs_fallback", pa.bool_()),
        pa.field("sgrs_tau", _f32),
        # guided decoding's step records (null for other decodings)
        pa.field("guided_intervened", pa.bool_()),  # the detector chose among the eligible candidates
        pa.field("guided_replaced", pa.bool_()),  # ... and chose another than the most likely one
        pa.field("guided_p_top", _f32),  # the detector's probability of the most likely candidate
        pa.field("guided_p_chosen", _f32),  # ... and of the emitted one
    ]
)

#: Optional token columns (``--store-rows``, ``--lookback-heads``, ``--hidden-states``, ``--detector``).
ROWS_FIELD = pa.field("rows", pa.list_(_f16))  # layer-mean Shat over the text columns 0..q minus the image
LOOKBACK_FIELD = pa.field("lookback", pa.list_(pa.list_(_f16)))  # layers x heads
#: hidden layers x D: the residual stream at the query row (the output of each of the manifest's
#: ``hidden.layers``), after the manifest's fixed random projection to D dimensions.
HIDDEN_FIELD = pa.field("hidden", pa.list_(pa.list_(_f16)))
#: The hallucination probability the run's detector gave the token when it was written.
P_HALLUCINATED_FIELD = pa.field("p_hallucinated", _f32)


def tokens_schema(rows: bool = False, lookback: bool = False, hidden: bool = False,
                  p_hallucinated: bool = False) -> pa.Schema:
    """The tokens table with the optional columns a run stores, in a fixed order."""
    schema = TOKENS
    for wanted, extra in ((rows, ROWS_FIELD), (lookback, LOOKBACK_FIELD), (hidden, HIDDEN_FIELD),
                          (p_hallucinated, P_HALLUCINATED_FIELD)):
        if wanted:
            schema = schema.append(extra)
    return schema


SAMPLES = pa.schema(
    [
        pa.field("sample_id", pa.string(), nullable=False),
        pa.field("image_id", pa.string(), nullable=False),
        pa.field("source", pa.string(), nullable=False),
        pa.field("split", pa.string()),
        pa.field("task", pa.string(), nullable=False),  # caption | yesno
        pa.field("decoding", pa.string(), nullable=False),
        pa.field("prompt", pa.string(), nullable=False),
        pa.field("answer", pa.string(), nullable=False),
        pa.field("n_tokens", pa.int32(), nullable=False),
        pa.field("stopped_by_eos", pa.bool_(), nullable=False),
        pa.field("objects", pa.list_(pa.string())),  # ground truth
        pa.field("mentions", pa.list_(pa.string())),  # category of every mention, in order
        pa.field("mentioned", pa.list_(pa.string())),  # distinct, sorted
        pa.field("hallucinated", pa.list_(pa.string())),  # distinct, sorted
        pa.field("chair_s", pa.bool_()),  # at least one hallucinated object (captions)
        pa.field("n_mentions", pa.int32()),
        pa.field("n_hallucinated_mentions", pa.int32()),
        pa.field("expected", pa.string()),  # POPE: yes | no
        pa.field("predicted", pa.string()),  # POPE: yes | no, read by POPE's own rule (lvsal_data.yesno)
        pa.field("predicted_strict", pa.string()),  # POPE: yes | no | null, the answer's first word only
        pa.field("question_object", pa.string()),
        pa.field("span_system", pa.list_(pa.int32())),  # [start, end) columns
        pa.field("span_image", pa.list_(pa.int32())),
        pa.field("span_instruction", pa.list_(pa.int32())),
        pa.field("sgrs_rejection_rate", _f32),
        pa.field("sgrs_fallback_rate", _f32),
        pa.field("guided_intervention_rate", _f32),  # share of steps where the detector chose
        pa.field("guided_replacement_rate", _f32),  # share of steps that emitted another than the top token
        pa.field("seed", pa.int64(), nullable=False),
    ]
)


def features(schema: pa.Schema) -> datasets.Features:
    """The ``datasets.Features`` of an Arrow schema (for cards and ``load_dataset``)."""
    import datasets

    return datasets.Features.from_arrow_schema(schema)


def shard_schema(schema: pa.Schema, provenance: Mapping[str, Any]) -> pa.Schema:
    """``schema`` with the metadata that lets one Parquet shard say alone what it is.

    Under ``huggingface``: its ``datasets.Features``, exactly as ``Features.arrow_schema`` writes
    them (``datasets`` reads them back). Under ``lvsal``: JSON of :data:`SCHEMA_VERSION` and
    ``provenance`` (model, decoding, ...). The fields themselves, nullability included, are
    ``schema``'s.

    Example:
        >>> meta = shard_schema(SAMPLES, {"model": {"id": "organism"}}).metadata
        >>> json.loads(meta[b"lvsal"])["schema_version"] == SCHEMA_VERSION
        True
    """
    hf = features(schema).arrow_schema.metadata[b"huggingface"]
    lvsal = json.dumps({"schema_version": SCHEMA_VERSION, **provenance}, sort_keys=True)
    return schema.with_metadata({b"huggingface": hf, b"lvsal": lvsal.encode()})


def shard_provenance(schema: pa.Schema) -> dict[str, Any]:
    """What :func:`shard_schema` wrote under ``lvsal`` (empty for a shard without it)."""
    raw = (schema.metadata or {}).get(b"lvsal")
    return json.loads(raw) if raw else {}
