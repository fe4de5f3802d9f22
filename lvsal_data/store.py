"""The trace dataset on disk: sharded, atomic, resumable, multi-rank; and its reader.

Layout::

    README.md                 dataset card (configs tokens / samples)
    manifest.json             provenance + the merged shard list (written by finalize)
    data/tokens/*.parquet     one row per generated token
    data/samples/*.parquet    one row per (sample, decoding)
    .lvsal/config.json        the run's configuration (resume checks it)
    .lvsal/rank-R-of-W.json   each rank's registry of finished shards and skips

A shard is written to a temporary file and renamed (atomic), then registered in its rank's
registry (atomic rewrite). A run killed at any moment resumes from the registry: a shard on
disk but not registered is recomputed and overwritten, so nothing is lost or duplicated.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterator

import pyarrow as pa
import pyarrow.parquet as pq

from .errors import LvsalError
from .io import atomic_path, atomic_write_text, read_json
from .schema import SAMPLES, SCHEMA_VERSION, shard_schema

META = ".lvsal"


class StoreError(LvsalError):
    """The output folder is in a state the run cannot use (the message says how to fix it)."""


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def check_output_folder(root: str | Path, resume: bool) -> None:
    """Refuse a non-empty output folder unless resuming (cheap: run it before loading a model)."""
    root = Path(root)
    if not resume and root.exists() and any(root.iterdir()):
        raise StoreError(f"output folder {root} is not empty; pass --resume to continue the run "
                         "there, or choose another --out")


def _is_float(t: pa.DataType) -> bool:
    while pa.types.is_list(t):
        t = t.value_type
    return pa.types.is_floating(t)


def _dictionary_columns(schema: pa.Schema) -> list[str]:
    """Dictionary-encode ids and strings, not floats: float values rarely repeat, and a dictionary
    page that overflows costs about a third more bytes per saliency column."""
    return [f.name for f in schema if not _is_float(f.type)]


def write_parquet_atomic(table: pa.Table, path: Path) -> dict[str, Any]:
    """Write ``table`` to ``path`` atomically; returns its shard record (path, rows, sha256)."""
    with atomic_path(path) as tmp:
        pq.write_table(table, tmp, compression="zstd", use_dictionary=_dictionary_columns(table.schema))
    return {"rows": table.num_rows, "sha256": sha256(path), "bytes": path.stat().st_size}


@dataclass
class ShardWriter:
    """One rank's writer into a trace dataset folder.

    Args:
        root: The dataset folder.
        config: The run's configuration (JSON-serialisable); resume refuses a different one.
        tokens_schema: Arrow schema of the tokens table (with the run's optional columns).
        resume: Continue a run in a non-empty folder.
        rank: This process's rank.
        world_size: Number of ranks.
    """

    root: Path
    config: dict[str, Any]
    tokens_schema: pa.Schema
    resume: bool = False
    rank: int = 0
    world_size: int = 1
    _registry: dict[str, Any] = field(default_factory=dict, init=False)

    def __post_init__(self) -> None:
        self.root = Path(self.root)

    # -- set-up ---------------------------------------------------------------------------------
    def prepare(self) -> None:
        """Rank 0's check of the folder: empty (or resuming the same run); writes the config."""
        meta = self.root / META
        cfg_path = meta / "config.json"
        if self.root.exists() and any(self.root.iterdir()):
            check_output_folder(self.root, self.resume)
            if not cfg_path.exists():
                raise StoreError(f"{self.root} holds no lvsal run to resume ({cfg_path} missing); choose an "
                                 "empty --out")
            old = read_json(cfg_path, "run configuration", StoreError)
            diff = sorted(k for k in set(old) | set(self.config) if old.get(k) != self.config.get(k)
                          and k not in ("resume",))
            if diff:
                raise StoreError(f"cannot resume {self.root}: settings differ from the original run in "
                                 f"{', '.join(diff)}; rerun with the same settings or choose another --out")
        else:
            atomic_write_text(cfg_path, json.dumps(self.config, indent=1, sort_keys=True))

    def open(self) -> None:
        """Load this rank's registry (empty on a fresh run)."""
        path = self._registry_path()
        fresh = {"shards": {}, "skipped": []}
        self._registry = read_json(path, "shard registry", StoreError) if path.exists() else fresh

    def _registry_path(self) -> Path:
        return self.root / META / f"rank-{self.rank}-of-{self.world_size}.json"

    # -- shards ---------------------------------------------------------------------------------
    def shard_name(self, index: int) -> str:
        return f"r{self.rank:03d}-of-{self.world_size:03d}-{index:05d}.parquet"

    def is_done(self, index: int) -> bool:
        return str(index) in self._registry["shards"]

    def provenance(self) -> dict[str, Any]:
        """What each shard records about the run in its metadata (see :func:`schema.shard_schema`)."""
        c = self.config
        return {"model": {"id": c.get("model"), "revision": c.get("revision")},
                "decoding": {"name": c.get("decoding"), "params": c.get("decoding_params")},
                "data": c.get("data"), "seed": c.get("seed")}

    def write_shard(self, index: int, tokens: list[dict[str, Any]], samples: list[dict[str, Any]],
                    skipped: list[dict[str, str]]) -> None:
        """Write shard ``index`` (both tables, each schema carrying its Features and the run's
        provenance) and register it with its skips."""
        name = self.shard_name(index)
        record: dict[str, Any] = {"skipped": skipped}
        for kind, rows, table_schema in (("tokens", tokens, self.tokens_schema), ("samples", samples, SAMPLES)):
            schema = shard_schema(table_schema, self.provenance())
            path = self.root / "data" / kind / name
            rec = write_parquet_atomic(pa.Table.from_pylist(rows, schema=schema), path)
            record[kind] = {"path": f"data/{kind}/{name}", **rec}
        self._registry["shards"][str(index)] = record
        atomic_write_text(self._registry_path(), json.dumps(self._registry, indent=1))


def merge_manifest(root: Path, extra: dict[str, Any]) -> dict[str, Any]:
    """Merge every rank's registry into ``manifest.json`` (atomic) and return it.

    Checks that each registered shard exists with its recorded checksum.
    """
    root = Path(root)
    config = read_json(root / META / "config.json", "run configuration", StoreError)
    shards: dict[str, list[dict[str, Any]]] = {"tokens": [], "samples": []}
    skipped: list[dict[str, str]] = []
    for reg_path in sorted((root / META).glob("rank-*-of-*.json")):
        reg = read_json(reg_path, "shard registry", StoreError)
        for _, rec in sorted(reg["shards"].items(), key=lambda kv: int(kv[0])):
            for kind in ("tokens", "samples"):
                entry = rec[kind]
                path = root / entry["path"]
                if not path.exists() or sha256(path) != entry["sha256"]:
                    raise StoreError(f"shard {path} is missing or does not match its checksum; rerun with --resume")
                shards[kind].append(entry)
            skipped += rec["skipped"]
    for kind in shards:
        shards[kind].sort(key=lambda e: e["path"])
    manifest = {
        "schema_version": SCHEMA_VERSION,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "config": config,
        **extra,
        "rows": {k: sum(e["rows"] for e in v) for k, v in shards.items()},
        "skipped": sorted(skipped, key=lambda s: s["sample_id"]),
        "shards": shards,
    }
    atomic_write_text(root / "manifest.json", json.dumps(manifest, indent=1))
    return manifest


@dataclass
class Traces:
    """A trace dataset folder opened for reading (pandas, Arrow, or streaming by shard)."""

    root: Path
    manifest: dict[str, Any]

    def paths(self, table: str) -> list[Path]:
        if table not in ("tokens", "samples"):
            raise ValueError(f"table must be tokens or samples, got {table!r}")
        return [self.root / e["path"] for e in self.manifest["shards"][table]]

    def arrow(self, table: str, columns: list[str] | None = None) -> pa.Table:
        paths = self.paths(table)
        if not paths:
            schema = SAMPLES if table == "samples" else None
            return schema.empty_table() if schema is not None else pa.table({})
        return pa.concat_tables([pq.read_table(p, columns=columns) for p in paths])

    def pandas(self, table: str, columns: list[str] | None = None) -> Any:
        return self.arrow(table, columns).to_pandas()

    def iter_shards(self, table: str, columns: list[str] | None = None) -> Iterator[pa.Table]:
        """Stream one shard at a time (never the whole dataset in memory)."""
        for p in self.paths(table):
            yield pq.read_table(p, columns=columns)

    @property
    def layers(self) -> list[int]:
        return list(self.manifest["layers"])

    @property
    def target_layers(self) -> list[int]:
        return list(self.manifest["target_layers"])


def open_traces(root: str | os.PathLike) -> Traces:
    """Open a trace dataset folder written by ``lvsal collect``.

    Raises:
        StoreError: No manifest (the run did not finish: rerun it with ``--resume``).
    """
    root = Path(root)
    path = root / "manifest.json"
    if not path.exists():
        hint = " (a run is in progress or was killed: rerun it with --resume)" if (root / META).exists() else ""
        raise StoreError(f"no trace dataset at {root}: {path} not found{hint}")
    return Traces(root, read_json(path, "trace dataset manifest", StoreError))
