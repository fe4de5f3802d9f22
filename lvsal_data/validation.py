"""Every option of a collection run checked before anything is written (issue 19, item 6).

:func:`validate_collect` runs first in :func:`~lvsal_data.collect.collect` (and in ``verify``
before its model loads): a bad ``--limit``, a ``--model`` that is no model or cannot be reached,
layers the model does not have and a data spec that yields no sample are each one
:class:`~lvsal_data.errors.InputError` naming the option, while ``--out`` is still untouched, so
the corrected command simply runs.
"""

from __future__ import annotations

import os
import socket
from pathlib import Path
from typing import Any, Sequence
from urllib.parse import urlparse

from .config import CollectConfig, load_calibration
from .errors import InputError


def _looks_local(name: str) -> bool:
    """A path rather than a Hub id (``user/model``): exists, or starts like a path."""
    return (Path(name).expanduser().exists() or name.startswith((".", "/", "~")) or name.count("/") > 1
            or os.sep != "/" and os.sep in name)


def hub_reachable(timeout: float = 3.0) -> bool:
    """Whether the Hub's host answers within ``timeout`` seconds (False when HF_HUB_OFFLINE is set)."""
    if os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes", "on"):
        return False
    url = urlparse(os.environ.get("HF_ENDPOINT", "https://huggingface.co"))
    try:
        with socket.create_connection((url.hostname or "huggingface.co", url.port or 443), timeout=timeout):
            return True
    except OSError:
        return False


def model_config(name: str, revision: str | None = None, trust_remote_code: bool = False) -> Any:
    """The transformers config of ``--model`` (a folder, a Hub id or ``organism``), or one clear
    line: the folder is missing, is no model, or the Hub is offline and the model not cached.

    Raises:
        InputError: Naming ``--model`` and what to do.
    """
    from transformers import AutoConfig

    from .models import _resolve

    path = _resolve(name)
    if _looks_local(path):
        folder = Path(path).expanduser()
        if not folder.is_dir():
            raise InputError(f"--model {name}: no such folder; pass a model folder, a Hub id (user/model) or organism")
        if not (folder / "config.json").is_file():
            raise InputError(f"--model {name}: {folder / 'config.json'} not found, so the folder holds no "
                             "transformers model")
        online = True
    else:
        online = hub_reachable()
    try:
        return AutoConfig.from_pretrained(path, revision=revision, trust_remote_code=trust_remote_code,
                                          local_files_only=not online)
    except OSError as err:
        if not online:
            raise InputError(f"--model {name}: the Hugging Face Hub cannot be reached (offline) and the model is "
                             "not in the local cache; connect, or pass a local model folder") from None
        raise InputError(f"--model {name}: {str(err).splitlines()[0]}") from None
    except ValueError as err:
        raise InputError(f"--model {name}: {str(err).splitlines()[0]}") from None


def check_layers(option: str, layers: Sequence[int] | None, n_layers: int, model: str) -> None:
    """Each of ``layers`` is a layer of the model (0 .. n_layers-1)."""
    if layers is None:
        return
    if not layers:
        raise InputError(f"{option}: empty list; give layers like 0,1 or 0-3")
    bad = sorted({l for l in layers if not 0 <= l < n_layers})
    if bad:
        raise InputError(f"{option} {','.join(map(str, layers))}: layer(s) {bad} out of range; --model {model} has "
                         f"{n_layers} layers (0-{n_layers - 1})")


def validate_collect(cfg: CollectConfig, lvlm: Any = None) -> None:
    """Check every option of ``cfg`` that can be checked without collecting: counts, the model,
    its layers, the calibration file and that the data yields at least one sample.

    Args:
        cfg: The run's configuration.
        lvlm: A loaded model (its config is used instead of reading ``--model``'s).

    Raises:
        InputError: The first option that does not fit, by name.
    """
    from .families import self_attention_layers
    from .layers import default_target_layers
    from .models import num_text_layers
    from .sources import open_source

    if cfg.limit is not None and cfg.limit < 0:
        raise InputError(f"--limit must be >= 0, got {cfg.limit}")
    if cfg.max_new_tokens is not None and cfg.max_new_tokens < 1:
        raise InputError(f"--max-new-tokens must be >= 1, got {cfg.max_new_tokens}")
    if cfg.shard_size < 1:
        raise InputError(f"--shard-size must be >= 1, got {cfg.shard_size}")
    config = lvlm.model.config if lvlm is not None else model_config(cfg.model, cfg.revision, cfg.trust_remote_code)
    n_layers = num_text_layers(config)
    check_layers("--layers", cfg.layers, n_layers, cfg.model)
    check_layers("--locore-layers", cfg.locore_layers, n_layers, cfg.model)
    target, option = cfg.target_layers, "--target-layers"
    if target is None and cfg.calibration:
        target, option = load_calibration(cfg.calibration).get("target_layers"), f"target_layers of {cfg.calibration}"
    check_layers(option, target, n_layers, cfg.model)
    attention = self_attention_layers(config)  # hybrids and Llama 3.2 Vision: not every layer
    without = sorted(set(cfg.layers or ()) - set(attention))
    if without:
        raise InputError(f"--layers {','.join(map(str, cfg.layers))}: layer(s) {without} of --model {cfg.model} "
                         "have no self-attention (so no saliency rows); its layers with self-attention: "
                         f"{','.join(map(str, attention))}")
    traced = list(cfg.layers) if cfg.layers is not None else attention
    outside = sorted(set(target if target is not None else default_target_layers(n_layers, attention)) - set(traced))
    if outside:
        raise InputError(f"{option if target is not None else 'the default target layers'} {outside} are not among "
                         f"the traced --layers {traced}; trace them too or choose others")
    if cfg.hidden_dim < 0:
        raise InputError(f"--hidden-dim must be >= 0 (0: no projection), got {cfg.hidden_dim}")
    if cfg.hidden_layers is not None and not cfg.hidden_states:
        raise InputError("--hidden-layers needs --hidden-states")
    check_layers("--hidden-layers", cfg.hidden_layers, n_layers, cfg.model)
    if cfg.detector:
        check_detector(cfg)
    source = open_source(cfg.data)
    available = len(source) if hasattr(source, "__len__") else sum(1 for _ in source)
    n = available if cfg.limit is None else min(cfg.limit, available)
    if n == 0:
        why = "--limit 0" if cfg.limit == 0 else f"--data {cfg.data} yields none"
        raise InputError(f"no samples to collect ({why}); nothing was written")


def check_detector(cfg: CollectConfig) -> Any:
    """Read ``--detector`` and refuse it if the run will not store the columns it reads.

    Returns:
        The :class:`~lvsal_data.scoring.LinearDetector`.
    """
    from .scoring import LinearDetector

    detector = LinearDetector.load(cfg.detector)
    needs = [(detector.reads("lookback") and not cfg.lookback_heads, "--lookback-heads"),
             (detector.reads("hidden") and not cfg.hidden_states, "--hidden-states")]
    missing = [flag for need, flag in needs if need]
    if missing:
        raise InputError(f"the detector {cfg.detector} reads features this run does not store: "
                         f"add {' and '.join(missing)}")
    return detector


__all__ = ["check_detector", "check_layers", "hub_reachable", "model_config", "validate_collect"]
