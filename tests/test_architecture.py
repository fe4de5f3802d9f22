"""The house: imports run one way (collecting below, analysis on top, commands above both), the
analysis layer never loads torch, and every registry can be extended from outside the package."""

from __future__ import annotations

import ast
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

#: Lowest first. A module may import its own layer and the ones below, never one above.
LAYERS: list[tuple[str, tuple[str, ...]]] = [
    ("base (no torch: metrics, statistics, schema, store, configs, cards)",
     ("lvsal_data", "lvsal_data.errors", "lvsal_data.io", "lvsal_data.registry", "lvsal_data.vocab",
      "lvsal_data.labels", "lvsal_data.yesno", "lvsal_data.prompts", "lvsal_data.stats", "lvsal_data.metrics",
      "lvsal_data.schema", "lvsal_data.store", "lvsal_data.layers", "lvsal_data.config", "lvsal_data.families",
      "lvsal_data.hub", "lvsal_data.features", "lvsal_data.scoring", "lvsal_data.typing")),
    ("collecting (models, saliency, decoding, sources, the collector, the organism)", ("lvsal_data.",)),
    ("analysis (reads trace datasets)", ("analysis",)),
    ("commands", ("lvsal_data.commands", "lvsal_data.cli")),
]


def layer_of(module: str) -> int:
    """The layer of the most specific rule that matches: an exact name, a package with its
    submodules (``name``), or any module below a prefix (``name.``)."""
    best, length = -1, -1
    for k, (_, names) in enumerate(LAYERS):
        for name in names:
            if name.endswith("."):
                hit = module.startswith(name)
            else:
                hit = module == name or (module.startswith(name + ".") and name != "lvsal_data")
            if hit and len(name) > length:
                best, length = k, len(name)
    return best


def package_modules() -> dict[str, Path]:
    out = {}
    for top in ("lvsal_data", "analysis"):
        for path in (ROOT / top).rglob("*.py"):
            parts = path.relative_to(ROOT).with_suffix("").parts
            out[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return out


def imported(module: str, path: Path) -> set[str]:
    """Every project module ``path`` imports, at any depth of its code (function-level included)."""
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    names = set()
    tree = ast.parse(path.read_text())
    for node in ast.walk(tree):  # static-typing imports do not run
        if isinstance(node, ast.If) and getattr(node.test, "id", None) == "TYPE_CHECKING":
            node.body = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parent = package.split(".")
                parent = parent[: len(parent) - node.level + 1]
                base = ".".join([*parent, base]) if base else ".".join(parent)
            names.add(base)
            names |= {f"{base}.{a.name}" for a in node.names}
    modules = package_modules()
    return {n for n in names if n in modules}


def test_every_module_has_a_layer() -> None:
    assert all(layer_of(m) >= 0 for m in package_modules()), [m for m in package_modules() if layer_of(m) < 0]


def test_imports_run_one_way() -> None:
    upward = []
    for module, path in sorted(package_modules().items()):
        for target in sorted(imported(module, path)):
            if layer_of(target) > layer_of(module):
                upward.append(f"{module} ({LAYERS[layer_of(module)][0].split(' (')[0]}) imports {target} "
                              f"({LAYERS[layer_of(target)][0].split(' (')[0]})")
    assert not upward, "\n".join(upward)


def test_the_layer_test_catches_a_pipe_upward(tmp_path: Path) -> None:
    """The check itself: a function-level import of analysis inside the collector is found."""
    fake = tmp_path / "collect.py"
    fake.write_text("def f():\n    from analysis.metrics import chair\n    from .store import open_traces\n")
    found = imported("lvsal_data.collect", fake)
    assert "lvsal_data.store" in found
    assert layer_of("analysis.detectors") > layer_of("lvsal_data.collect") > layer_of("lvsal_data.store")


def _modules_after(code: str) -> set[str]:
    out = subprocess.run([sys.executable, "-c", f"{code}\nimport sys; print(' '.join(sorted(sys.modules)))"],
                         capture_output=True, text=True, check=True, cwd=ROOT)
    return set(out.stdout.split())


@pytest.mark.parametrize("code", [
    "import analysis; analysis.HallucinationDetector; analysis.calibrate; analysis.chair; analysis.FEATURE_SETS",
    "import analysis.features, analysis.pattern, analysis.plots, analysis.verification",
    "import lvsal_data.store, lvsal_data.metrics, lvsal_data.hub, lvsal_data.config",
    "from lvsal_data.cli import build_parser; build_parser()",
])
def test_analysis_and_the_command_line_load_no_torch(code: str) -> None:
    assert "torch" not in _modules_after(code)


PLUGIN = textwrap.dedent('''
    """A user's package that adds a decoding and a source to lvsal-data."""
    from lvsal_data.decoding import Greedy
    from lvsal_data.registry import DECODINGS, SOURCES
    from lvsal_data.sources.synthetic import SyntheticSource


    @DECODINGS.register("second-choice")
    class SecondChoice(Greedy):
        """Always the second most likely token."""

        def propose(self, logits):
            return logits.topk(2).indices[1:]


    class FirstScenes(SyntheticSource):
        name = "first-scenes"

        def __init__(self, arg=None, n="2"):
            super().__init__(None, n=n)


    SOURCES.register("first-scenes")(FirstScenes)
''')


def test_a_decoding_and_a_source_registered_from_outside(tmp_path: Path) -> None:
    """A module outside the package registers a decoding and a source; LVSAL_PLUGINS makes the
    command line import it, and `lvsal collect` runs both."""
    (tmp_path / "my_plugin.py").write_text(PLUGIN)
    env = {**os.environ, "LVSAL_PLUGINS": "my_plugin", "LVSAL_CACHE": str(tmp_path / "cache"),
           "PYTHONPATH": os.pathsep.join([str(tmp_path), str(ROOT), os.environ.get("PYTHONPATH", "")]),
           "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "lvsal_data.cli", "collect", "--decoding", "second-choice", "--data", "first-scenes",
           "--max-new-tokens", "3", "--out", str(tmp_path / "t")]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    sys.path.insert(0, str(ROOT))
    from lvsal_data.store import open_traces

    m = open_traces(tmp_path / "t").manifest
    assert m["decoding"]["name"] == "second-choice" and m["rows"]["samples"] == 2
    bad = subprocess.run([*cmd[:5], "nope"], env=env, capture_output=True, text=True)
    assert bad.returncode == 2 and "second-choice" in bad.stderr  # the plugin's name is among the choices
    missing = subprocess.run([sys.executable, "-m", "lvsal_data.cli", "--help"], capture_output=True, text=True,
                             env={**env, "LVSAL_PLUGINS": "no_such_plugin"})
    assert missing.returncode == 2 and missing.stderr.strip() == (
        "lvsal: error: $LVSAL_PLUGINS names 'no_such_plugin', which cannot be imported: "
        "No module named 'no_such_plugin'")


def test_registries_refuse_collisions_and_list_names() -> None:
    from lvsal_data.errors import LvsalError, UnknownNameError
    from lvsal_data.families import FAMILIES, Family
    from lvsal_data.registry import DECODINGS, SOURCES

    for registry, builtin in ((DECODINGS, "greedy"), (SOURCES, "coco"), (FAMILIES, "llava")):
        with pytest.raises(LvsalError, match="already registered"):
            registry.register(builtin)(object())
    FAMILIES.register("test_vlm")(Family("TestVLM"))
    try:
        assert "test_vlm" in FAMILIES.names() and FAMILIES["test_vlm"].name == "TestVLM"
    finally:
        FAMILIES.unregister("test_vlm")
    with pytest.raises(UnknownNameError, match="valid: .*llava"):
        FAMILIES["test_vlm"]
