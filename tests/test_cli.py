"""The command line: stable names, one-line errors."""

from __future__ import annotations

import subprocess
import sys

import pytest

from lvsal_data.cli import main


def test_help_lists_commands(capsys: pytest.CaptureFixture[str]) -> None:
    assert main([]) == 0
    assert "demo" in capsys.readouterr().out


def test_console_script_runs() -> None:
    out = subprocess.run([sys.executable, "-m", "lvsal_data.cli", "--version"], capture_output=True, text=True)
    assert out.returncode == 0 and out.stdout.startswith("lvsal-data ")


@pytest.mark.slow
def test_demo_writes_its_report(tmp_path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    """`lvsal demo`, small: every stage runs and the report, metrics, plots and datasets land."""
    import json

    monkeypatch.setenv("LVSAL_CACHE", str(tmp_path / "cache"))
    out = tmp_path / "demo"
    assert main(["demo", "--out", str(out), "--scenes", "16", "--max-new-tokens", "24"]) == 0
    printed = capsys.readouterr().out
    assert f"report: {out}/report.md" in printed and "vs greedy" in printed
    metrics = json.loads((out / "metrics.json").read_text())
    assert set(metrics["verification"]) >= {"greedy", "sgrs", "locore", "sgrs+locore", "guided", "vs_greedy"}
    assert set(metrics["detectors"]["ranking"]) == {"saliency", "attention", "image_attention", "logit", "hidden",
                                                    "all"}
    assert set(metrics["detector_transfer"]) == set(metrics["detectors"]["ranking"])
    assert {"value", "ci_low", "ci_high"} <= set(metrics["pattern"]["difference"]["saliency"])
    for name in ("report.md", "deciles.png", "saliency_by_label.png", "roc.png", "effects.png", "calibration.json",
                 "traces/analysis/manifest.json", "traces/train/manifest.json", "detectors-train/report.json"):
        assert (out / name).exists(), name
    assert not (out / ".demo-in-progress").exists()
    assert main(["demo", "--out", str(out)]) == 2  # a finished demo folder is not overwritten
