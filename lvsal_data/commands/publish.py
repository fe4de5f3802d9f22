"""``lvsal publish``: render the dataset card and upload a trace dataset (or write its repo folder)."""

from __future__ import annotations

from dataclasses import dataclass, field

from .options import Command


@dataclass
class PublishConfig:
    traces: str = field(default="", metadata={
        "help": "trace dataset folder written by lvsal collect", "required": True})
    repo_id: str = field(default="", metadata={
        "help": "Hub dataset id, e.g. user/llava-chair-traces", "required": True})
    folder: str | None = field(default=None, metadata={
        "help": "write the repo folder here instead of uploading (offline)"})
    private: bool = field(default=False, metadata={"help": "create a private Hub dataset"})
    license: str = field(default="other", metadata={"help": "license of the dataset card"})


def run(cfg: PublishConfig) -> int:
    from ..hub import publish

    where = publish(cfg.traces, cfg.repo_id, folder=cfg.folder, private=cfg.private, license=cfg.license)
    print(f"published {cfg.traces} -> {where}")
    return 0


COMMAND = Command("publish", "render the dataset card and upload a trace dataset to the Hub (or write its folder)",
                  PublishConfig, run)
