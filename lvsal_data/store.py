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
import logging
import os
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterator

import pyarrow as pa
import pyarrow.parquet as pq

from .errors import LvsalError
from .io import atomic_path, atomic_write_text
from .schema import SAMPLES, SCHEMA_VERSION, shard_schema

META = ".lvsal"
log = logging.getLogger(__name__)


class StoreError(LvsalError):
    """The output folder is in a state the run cannot use (the message says how to fix it)."""


def _intact(path: Path, digest: str) -> bool:
    return path.is_file() and sha256(path) == digest


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def check_output_folder(root: str | Path, resume: bool) -> None:
    """Refuse a non-empty output folder unless resuming, and one that is a file or cannot be
    written (cheap: run it before loading a model)."""
    root = Path(root)
    if root.exists() and not root.is_dir():
        raise StoreError(f"--out {root} is a file, not a folder; choose another --out")
    if not resume and root.exists() and any(root.iterdir()):
        raise StoreError(f"output folder {root} is not empty; pass --resume to continue the run "
                         "there, or choose another --out")
    try:
        root.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise StoreError(f"cannot create --out {root}: {err.strerror or err}; choose a writable folder") from None
    if not os.access(root, os.W_OK | os.X_OK):
        raise StoreError(f"--out {root} is not writable; choose a writable folder")


def _read_state(path: Path) -> Any:
    """A state file under ``.lvsal/``; a corrupt one is a :class:`StoreError` naming it."""
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise StoreError(f"corrupt state file {path} ({err}); the run cannot be resumed from it: "
                         "choose another --out") from None


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
            old = _read_state(cfg_path)
            diff = sorted(k for k in set(old) | set(self.config) if old.get(k) != self.config.get(k)
                          and k not in ("resume",))
            if diff:
                raise StoreError(f"cannot resume {self.root}: settings differ from the original run in "
                                 f"{', '.join(diff)}; rerun with the same settings or choose another --out")
        else:
            atomic_write_text(cfg_path, json.dumps(self.config, indent=1, sort_keys=True))

    def open(self) -> None:
        """Load this rank's registry (empty on a fresh run). A registered shard whose file is
        missing or fails its checksum is dropped, so it is collected again (and the log says so);
        so is every shard of a registry that cannot be read."""
        path = self._registry_path()
        self._registry = {"shards": {}, "skipped": []}
        if not path.exists():
            return
        try:
            registry = json.loads(path.read_text(encoding="utf-8"))
            shards = dict(registry["shards"])
        except (json.JSONDecodeError, UnicodeDecodeError, KeyError, TypeError) as err:
            log.warning("state file %s is corrupt (%s): collecting all of its shards again", path, err)
            return
        for index, rec in shards.items():
            try:
                bad = next((self.root / rec[k]["path"] for k in ("tokens", "samples")
                            if not _intact(self.root / rec[k]["path"], rec[k]["sha256"])), None)
            except (KeyError, TypeError):  # a hand-edited entry: its shard is collected again too
                bad = f"{index} of {path}"
            if bad is not None:
                log.warning("shard %s is missing or fails its checksum: collecting it again", bad)
                continue
            self._registry["shards"][index] = rec

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
    config = _read_state(root / META / "config.json")
    shards: dict[str, list[dict[str, Any]]] = {"tokens": [], "samples": []}
    skipped: list[dict[str, str]] = []
    for reg_path in sorted((root / META).glob("rank-*-of-*.json")):
        reg = _read_state(reg_path)
        for _, rec in sorted(reg["shards"].items(), key=lambda kv: int(kv[0])):
            for kind in ("tokens", "samples"):
                entry = rec[kind]
                path = root / entry["path"]
                if not _intact(path, entry["sha256"]):  # rerunning with --resume collects it again
                    raise StoreError(f"shard {path} is missing or does not match its checksum; rerun with --resume "
                                     "to collect it again")
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
    _verified: set[str] = field(default_factory=set, init=False, repr=False)

    def paths(self, table: str) -> list[Path]:
        """The table's shard files, each checked against the manifest's sha256 (once per file).

        Raises:
            StoreError: A shard is missing or is not the file the manifest recorded.
        """
        if table not in ("tokens", "samples"):
            raise ValueError(f"table must be tokens or samples, got {table!r}")
        paths = []
        for entry in self.manifest["shards"][table]:
            path = self.root / entry["path"]
            if entry["path"] not in self._verified:
                if not path.is_file():
                    raise StoreError(f"shard {path} listed in {self.root / 'manifest.json'} is missing")
                if sha256(path) != entry["sha256"]:
                    raise StoreError(f"shard {path} does not match its checksum in {self.root / 'manifest.json'} "
                                     "(changed or truncated since it was written); collect the dataset again")
                self._verified.add(entry["path"])
            paths.append(path)
        return paths

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
    try:
        manifest = json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise StoreError(f"malformed JSON in {path} at line {err.lineno}, column {err.colno}") from None
    _check_manifest(manifest, path)
    return Traces(root, manifest)


#: what readers take from a manifest
MANIFEST_KEYS = ("schema_version", "model", "layers", "target_layers", "source", "decoding", "max_new_tokens",
                 "seed", "rows", "skipped", "shards")


def _check_manifest(manifest: Any, path: Path) -> None:
    """Refuse a manifest without the keys readers use, naming the file and the keys."""
    if not isinstance(manifest, dict):
        raise StoreError(f"{path} is not an lvsal manifest (a JSON {type(manifest).__name__}, expected an object)")
    missing = [k for k in MANIFEST_KEYS if k not in manifest]
    shards = manifest.get("shards")
    if not missing and not (isinstance(shards, dict) and all(
            isinstance(shards.get(t), list) and all(isinstance(e, dict) and {"path", "sha256", "rows"} <= set(e)
                                                     for e in shards[t]) for t in ("tokens", "samples"))):
        missing = ["shards.tokens / shards.samples entries with path, sha256 and rows"]
    if missing:
        raise StoreError(f"{path} is not an lvsal manifest: missing {', '.join(missing)}")
