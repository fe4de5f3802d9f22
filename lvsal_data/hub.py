"""Dataset cards rendered from ``data_cards/`` and publishing to the Hugging Face Hub."""

from __future__ import annotations

import json
import os
import shutil
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

    m = traces.manifest
    cols = set(traces.arrow("tokens").schema.names) if traces.paths("tokens") else set()
    tok_schema = tokens_schema("rows" in cols, "lookback" in cols)
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
        has_rows="rows" in cols, has_lookback="lookback" in cols, limitations=limitations,
    )
    return str(card)


def write_card(root: Path, **kwargs: Any) -> Path:
    from .io import atomic_write_text

    path = Path(root) / "README.md"
    atomic_write_text(path, render_card(open_traces(root), **kwargs))
    return path


def repo_folder(traces_dir: Path, out: Path, repo_id: str | None = None, **card: Any) -> Path:
    """Write exactly the Hub repository's content to ``out``: card, manifest, data."""
    traces = open_traces(traces_dir)
    out = Path(out)
    if out.exists() and any(out.iterdir()):
        raise PublishError(f"folder {out} is not empty; choose an empty --folder")
    out.mkdir(parents=True, exist_ok=True)
    for table in ("tokens", "samples"):
        for p in traces.paths(table):
            dest = out / p.relative_to(traces.root)
            dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(p, dest)
    atomic_write_text(out / "manifest.json", json.dumps(traces.manifest, indent=1))
    atomic_write_text(out / "README.md", render_card(traces, repo_id=repo_id, **card))
    return out


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
    import tempfile

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


__all__ = ["PublishError", "publish", "render_card", "repo_folder", "write_card", "META"]
