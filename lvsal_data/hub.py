"""Dataset cards rendered from ``data_cards/`` and publishing to the Hugging Face Hub."""

from __future__ import annotations

import json
import os
import re
import shutil
import sys
import tempfile
from importlib import resources
from pathlib import Path
from typing import Any

from .errors import LvsalError
from .io import atomic_write_text
from .metrics import format_estimate
from .schema import SAMPLES, features, tokens_schema
from .store import META, Traces, open_traces

TEMPLATE = "trace_dataset.md"
UNKNOWN = "_unknown_"


class PublishError(LvsalError):
    """Publishing failed (no token, offline, bad repo id...)."""


def template_text() -> str:
    return resources.files("data_cards").joinpath(TEMPLATE).read_text(encoding="utf-8")


#: an absolute POSIX path inside a string (up to a space, quote, comma or closing bracket)
_ABS_PATH = re.compile(r"(?<![\w.~<>-])/(?:[^\s'\",:;()\[\]{}]+)")


def _local_roots(manifest: dict[str, Any], extra: tuple[str, ...] = (), dataset: str | None = None
                 ) -> list[tuple[str, str]]:
    """(local prefix, its public stand-in), longest first: the data's folders, the trace
    dataset's own folder, the virtual environment, the working folder and the home folder."""
    pairs = [(str(v), "<data>") for k, v in manifest.get("source", {}).items()
             if k in ("root", "path", "images") and isinstance(v, str) and v]
    pairs += [(r, "<data>") for r in extra] + ([(dataset, "<dataset>")] if dataset else [])
    pairs += [(sys.prefix, "<venv>"), (os.getcwd(), "."), (str(Path.home()), "~")]
    return sorted({(a.rstrip("/"), b) for a, b in pairs if a and a.rstrip("/")}, key=lambda p: -len(p[0]))


def redact(value: Any, roots: list[str] | tuple[str, ...] = (), manifest: dict[str, Any] | None = None,
           dataset: str | os.PathLike | None = None) -> Any:
    """``value`` (a manifest, or any JSON value) with nothing of the user's machine in it: the
    data folders (the manifest's source root / path / images, and ``roots``) become ``<data>``,
    the trace dataset's folder ``<dataset>``, the virtual environment ``<venv>``, the working
    folder ``.``, the home folder ``~``, and any other absolute path keeps only its last component.

    Example:
        >>> redact({"reason": "image not found: /srv/me/coco/val2014/1.jpg"}, roots=["/srv/me/coco"])
        {'reason': 'image not found: <data>/val2014/1.jpg'}
    """
    pairs = _local_roots(manifest if manifest is not None else value if isinstance(value, dict) else {},
                         tuple(roots), str(dataset) if dataset is not None else None)

    def text(s: str) -> str:
        for local, public in pairs:
            s = re.sub(r"(?<![\w.\-/])" + re.escape(local) + r"(?![\w.\-])", public, s)
        return _ABS_PATH.sub(lambda m: ".../" + m.group(0).rstrip("/").rsplit("/", 1)[-1], s)

    if isinstance(value, str):
        return text(value)
    if isinstance(value, dict):
        return {k: redact(v, roots, manifest if manifest is not None else value, dataset) for k, v in value.items()}
    if isinstance(value, list):
        return [redact(v, roots, manifest, dataset) for v in value]
    return value


def headline_metrics(traces: Traces) -> dict[str, Any]:
    """CHAIR (captions) and POPE (yes/no) of the dataset's samples table, with CIs."""
    from .metrics import caption_results, chair, pope, yesno_results

    df = traces.pandas("samples")
    out: dict[str, Any] = {}
    caps = df[df["task"] == "caption"]
    if len(caps):
        out["chair"] = chair(caption_results(caps))
    yn = df[df["task"] == "yesno"]
    if len(yn):
        out["pope"] = pope(yesno_results(yn))
    return out


def metrics_table(metrics: dict[str, Any]) -> str:
    rows = ["| metric | value [95% CI] | n |", "|---|---|---:|"]
    for key, name, pct in (("chair_s", "CHAIR_S (%)", True), ("chair_i", "CHAIR_I (%)", True),
                           ("recall", "object recall (%)", True), ("length", "mean length (tokens)", False)):
        if "chair" in metrics:
            estimate = format_estimate(metrics["chair"][key], scale=100 if pct else 1)
            rows.append(f"| {name} | {estimate} | {metrics['chair']['n']} |")
    for key, name in (("pope_accuracy", "POPE accuracy (%)"), ("pope_f1", "POPE F1 (%)"),
                      ("pope_yes_ratio", "POPE yes-ratio (%)")):
        if "pope" in metrics:
            rows.append(f"| {name} | {format_estimate(metrics['pope'][key])} | {metrics['pope']['n']} |")
    return "\n".join(rows) if len(rows) > 2 else "No captions or yes/no answers in this dataset."


def protocol_line(protocol: dict[str, Any] | None) -> tuple[str, str]:
    """The card's protocol and system-prompt lines from a manifest's ``protocol`` entry."""
    if not protocol:
        return UNKNOWN, UNKNOWN
    details = [f"{k.replace('_', ' ')} {v!r}" if isinstance(v, str) else f"{k.replace('_', ' ')} {v}"
               for k, v in protocol.items() if k not in ("name", "system_prompt", "chat_template_example")]
    system = protocol.get("system_prompt")
    example = protocol.get("chat_template_example")
    return (f"{protocol.get('name', UNKNOWN)} ({', '.join(details)})",
            (f"`{system}`" if system else "none") + (f"; each prompt reads `{example!r}`" if example else ""))


def render_card(traces: Traces, repo_id: str | None = None, license: str = "other", limitations: str = "") -> str:
    """The dataset card (README.md) of a trace dataset: YAML configs and features, provenance,
    headline metrics with CIs, how to load it. Unknown fields stay visibly unknown."""
    import datasets
    from huggingface_hub import DatasetCard, DatasetCardData

    m = redact(traces.manifest, dataset=traces.root)  # nothing of the user's machine in a card
    cols = set(traces.arrow("tokens").schema.names) if traces.paths("tokens") else set()
    tok_schema = tokens_schema("rows" in cols, "lookback" in cols, "hidden" in cols, "p_hallucinated" in cols)
    info = [
        {"config_name": name, **datasets.DatasetInfo(features=features(schema))._to_yaml_dict()}
        for name, schema in (("tokens", tok_schema), ("samples", SAMPLES))
    ]
    data = DatasetCardData(
        license=license, pretty_name=f"lvsal traces: {m['model']['id']} on {m['source']['spec']}",
        tags=["lvsal-data", "saliency", "hallucination", "vision-language"],
        configs=[{"config_name": "tokens", "data_files": "data/tokens/*.parquet"},
                 {"config_name": "samples", "data_files": "data/samples/*.parquet"}],
        dataset_info=info,
    )
    metrics = headline_metrics(traces)
    protocol, system_prompt = protocol_line(m.get("protocol"))
    card = DatasetCard.from_template(
        data, template_str=template_text(),
        pretty_name=data.pretty_name, repo_id=repo_id or UNKNOWN, model_id=m["model"]["id"],
        model_revision=m["model"].get("revision"), model_class=m["model"]["class"],
        num_layers=m["model"]["num_layers"], dtype=m["model"]["dtype"], source_spec=m["source"]["spec"],
        source_name=m["source"].get("name", UNKNOWN), protocol=protocol, system_prompt=system_prompt,
        decoding=m["decoding"]["name"],
        decoding_params=", ".join(f"{k}={v}" for k, v in m["decoding"]["params"].items()),
        max_new_tokens=m["max_new_tokens"], seed=m["seed"], layers=m["layers"], target_layers=m["target_layers"],
        n_samples=m["rows"]["samples"], n_tokens=m["rows"]["tokens"], n_skipped=len(m["skipped"]),
        schema_version=m["schema_version"], metrics_table=metrics_table(metrics),
        has_rows="rows" in cols, has_lookback="lookback" in cols, has_hidden="hidden" in cols,
        has_p="p_hallucinated" in cols, limitations=limitations,
        family_note=family_note(m["model"].get("model_type")),
    )
    return str(card)


def family_note(model_type: str | None) -> str | None:
    """The card note of a model family (:attr:`~lvsal_data.families.Family.card_note`), if any."""
    from .families import FAMILIES

    return FAMILIES[model_type].card_note if model_type in FAMILIES else None


def redact_manifest(root: str | os.PathLike) -> Path:
    """Rewrite ``root/manifest.json`` with :func:`redact` (for a dataset shipped as it is, like
    the notebooks' one); returns its path."""
    traces = open_traces(root)
    path = traces.root / "manifest.json"
    atomic_write_text(path, json.dumps(redact(traces.manifest, dataset=traces.root), indent=1))
    return path


def write_card(root: Path, **kwargs: Any) -> Path:
    from .io import atomic_write_text

    path = Path(root) / "README.md"
    atomic_write_text(path, render_card(open_traces(root), **kwargs))
    return path


def repo_folder(traces_dir: Path, out: Path, repo_id: str | None = None, **card: Any) -> Path:
    """Write exactly the Hub repository's content to ``out``: card, manifest (its local paths
    redacted), data. Everything is staged beside ``out`` and renamed into place, so a failure
    leaves no half-written folder to block a retry."""
    traces = open_traces(traces_dir)
    out = Path(out)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise PublishError(f"folder {out} is not empty; choose an empty --folder")
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent))
    try:
        for table in ("tokens", "samples"):
            for p in traces.paths(table):  # each checked against its sha256
                dest = staging / p.relative_to(traces.root)
                dest.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(p, dest)
        manifest = redact(traces.manifest, dataset=traces.root)
        atomic_write_text(staging / "manifest.json", json.dumps(manifest, indent=1))
        atomic_write_text(staging / "README.md", render_card(traces, repo_id=repo_id, **card))
        os.chmod(staging, 0o777 & ~_umask())  # mkdtemp makes 0700; give it a plain folder's mode
        if out.exists():
            out.rmdir()  # empty (checked above)
        staging.rename(out)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return out


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def publish(traces_dir: Path, repo_id: str, folder: Path | None = None, private: bool = False, **card: Any) -> str:
    """Publish a trace dataset: to ``folder`` (offline) or to the Hub (token from ``HF_TOKEN``).

    Returns:
        Where it went (the folder, or the dataset's URL).
    """
    if folder is not None:
        return str(repo_folder(Path(traces_dir), Path(folder), repo_id=repo_id, **card))
    from huggingface_hub import HfApi
    from huggingface_hub.errors import HfHubHTTPError

    token = os.environ.get("HF_TOKEN")
    if not token:
        raise PublishError("no Hugging Face token: set HF_TOKEN, or write the repo folder with --folder DIR")
    with tempfile.TemporaryDirectory() as tmp:
        staged = repo_folder(Path(traces_dir), Path(tmp) / "repo", repo_id=repo_id, **card)
        api = HfApi(token=token)
        try:
            api.create_repo(repo_id, repo_type="dataset", private=private, exist_ok=True)
            info = api.upload_folder(folder_path=str(staged), repo_id=repo_id, repo_type="dataset",
                                     commit_message="Upload lvsal trace dataset")
        except (HfHubHTTPError, OSError, ValueError) as err:
            raise PublishError(f"could not publish to {repo_id}: {err} (offline? use --folder DIR)") from None
    return str(getattr(info, "commit_url", f"https://huggingface.co/datasets/{repo_id}"))


__all__ = ["PublishError", "publish", "redact", "redact_manifest", "render_card", "repo_folder", "write_card", "META"]
