"""A KV cache layer that grows in chunks: a step writes its new keys / values into spare room.

transformers' ``DynamicLayer.update`` stores ``torch.cat([past, new])``: every one-token step
copies the whole cache of every layer, which at batch 16 was a tenth of a traced step on the
LLaVA-1.5-shaped benchmark. :func:`append` gives the same result (the same values, the same
shapes, the same sliding-window bookkeeping) from a buffer with room for :data:`CHUNK` more
tokens: the new rows are copied into the room and the layer's keys / values become views of
the buffer, so the whole cache is copied once per :data:`CHUNK` steps instead of every step.

Rows already written are never overwritten: a full buffer is replaced by a larger one, and a
cache changed from outside (``reorder_cache`` when finished samples leave the batch, ``crop``,
``reset``) is noticed (its tensors are no longer the views :func:`append` stored) and copied
into a fresh buffer. The saliency engine uses it on its fast path only, where the cache holds
detached tensors (:func:`lvsal_data.saliency._prepare_cache`); the tests check its steps equal
the ``torch.cat`` ones (``tests/test_saliency.py``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

#: Tokens of spare room a buffer gets when it is (re)allocated.
CHUNK = 256
_ROOM = "_lvsal_room"


@dataclass
class _Room:
    keys: Tensor  # (batch, kv heads, capacity, head dim)
    values: Tensor
    end: int  # rows written
    stored: tuple[Tensor, Tensor]  # the views last stored on the layer (to notice outside changes)


def supports(layer: Any) -> bool:
    """Whether :func:`append` can stand in for ``layer``'s own ``update``: a plain or sliding-window
    dynamic layer (not recording its past for a later crop)."""
    from transformers.cache_utils import DynamicLayer, DynamicSlidingWindowLayer

    if type(layer) is DynamicLayer:
        return True
    return type(layer) is DynamicSlidingWindowLayer and not layer.record_past


def _room(layer: Any, extra: int) -> _Room:
    """The layer's buffer with room for ``extra`` more rows (a new one if it has none, if it is
    full, or if the layer's tensors were replaced since the last :func:`append`)."""
    room: _Room | None = getattr(layer, _ROOM, None)
    keys, values = layer.keys, layer.values
    if room is not None and room.stored[0] is keys and room.stored[1] is values \
            and room.end + extra <= room.keys.shape[-2]:
        return room
    setattr(layer, _ROOM, None)  # an old buffer the layer no longer views is freed before the new one is made
    n = keys.shape[-2]
    shape = (*keys.shape[:-2], n + extra + CHUNK, keys.shape[-1])
    room = _Room(keys.new_empty(shape), values.new_empty((*shape[:-1], values.shape[-1])), n, (keys, values))
    room.keys[..., :n, :] = keys
    room.values[..., :n, :] = values
    setattr(layer, _ROOM, room)
    return room


def append(layer: Any, key_states: Tensor, value_states: Tensor) -> tuple[Tensor, Tensor]:
    """``type(layer).update(layer, key_states, value_states)`` for a layer :func:`supports`,
    without copying the past: the same returned keys / values and stored state, as views.

    Args:
        layer: An initialised ``DynamicLayer`` or ``DynamicSlidingWindowLayer``.
        key_states: ``(batch, kv heads, new, head dim)`` detached keys of the new tokens.
        value_states: Their values.

    Returns:
        The keys and values the attention reads: the whole cache for a full-attention layer, the
        last ``sliding_window - 1`` cached tokens and the new ones for a sliding-window layer.
    """
    if key_states.requires_grad or value_states.requires_grad:
        raise ValueError("kvcache.append stores detached keys / values only")
    if not layer.is_initialized or layer.keys.numel() == 0:
        return type(layer).update(layer, key_states, value_states)
    new = key_states.shape[-2]
    room = _room(layer, new)
    start = room.end - layer.keys.shape[-2]
    room.keys[..., room.end : room.end + new, :] = key_states
    room.values[..., room.end : room.end + new, :] = value_states
    room.end += new
    keys, values = room.keys[..., start : room.end, :], room.values[..., start : room.end, :]
    if getattr(layer, "is_sliding", False):  # DynamicSlidingWindowLayer.update's bookkeeping
        layer.cumulative_length += new
        layer.keys = keys[:, :, -layer.sliding_window + 1 :, :]
        layer.values = values[:, :, -layer.sliding_window + 1 :, :]
    else:
        layer.keys, layer.values = keys, values
    room.stored = (layer.keys, layer.values)
    return keys, values


__all__ = ["CHUNK", "append", "supports"]
