"""Each Parquet shard says alone what it is: its ``datasets.Features`` and the run's provenance
sit in its Arrow schema metadata; the rows the collector builds have exactly the schema's columns."""

from __future__ import annotations

import json
from pathlib import Path

import datasets
import pyarrow.parquet as pq
import pytest

from lvsal_data.collect import collect
from lvsal_data.config import CollectConfig
from lvsal_data.schema import SAMPLES, SCHEMA_VERSION, shard_provenance, tokens_schema
from lvsal_data.store import ShardWriter, open_traces

WRITTEN: dict[str, list[dict]] = {"tokens": [], "samples": []}  # the rows as built, before Arrow sees them


@pytest.fixture(scope="module")
def traces(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("store") / "traces"
    write_shard = ShardWriter.write_shard

    def spy(self: ShardWriter, index: int, tokens: list[dict], samples: list[dict], skipped: list) -> None:
        WRITTEN["tokens"] += tokens
        WRITTEN["samples"] += samples
        write_shard(self, index, tokens, samples, skipped)

    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("LVSAL_CACHE", str(tmp_path_factory.mktemp("cache")))
        mp.setattr(ShardWriter, "write_shard", spy)
        collect(CollectConfig(data="synthetic:split=test,n=2", out=str(out), max_new_tokens=6, shard_size=1,
                              lookback_heads=True), progress=False)
    return out


@pytest.mark.parametrize("table", ["tokens", "samples"])
def test_one_shard_alone_carries_its_features_and_provenance(traces: Path, table: str) -> None:
    schema = tokens_schema(lookback=True) if table == "tokens" else SAMPLES
    expected = datasets.Features.from_arrow_schema(schema)
    shard = min((traces / "data" / table).glob("*.parquet"))  # read alone, without the manifest
    read = pq.read_schema(shard)
    assert read.metadata[b"huggingface"] == expected.arrow_schema.metadata[b"huggingface"]
    assert datasets.Features.from_arrow_schema(read) == expected
    assert read.remove_metadata() == schema  # nullability and types are the schema module's
    provenance = json.loads(read.metadata[b"lvsal"])
    assert provenance == shard_provenance(read)
    assert provenance["schema_version"] == SCHEMA_VERSION
    assert provenance["model"]["id"] == "organism" and provenance["decoding"]["name"] == "greedy"


def test_datasets_reads_the_shards(traces: Path) -> None:
    tokens = datasets.load_dataset(str(traces), "tokens", split="train")
    assert tokens.num_rows == open_traces(traces).manifest["rows"]["tokens"]
    assert tokens.features == datasets.Features.from_arrow_schema(tokens_schema(lookback=True))


def test_rows_have_exactly_the_schemas_columns(traces: Path) -> None:
    """Arrow would drop a column the schema lacks and fill one the rows lack with nulls: check the rows."""
    assert WRITTEN["tokens"] and WRITTEN["samples"]
    assert all(set(r) == set(tokens_schema(lookback=True).names) for r in WRITTEN["tokens"])
    assert all(set(r) == set(SAMPLES.names) for r in WRITTEN["samples"])
