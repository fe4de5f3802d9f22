"""The growing KV cache layer (:mod:`lvsal_data.kvcache`) is transformers' ``torch.cat`` cache
without the copies: the same returned keys / values, stored state and lengths at every step."""

from __future__ import annotations

import pytest
import torch
from transformers.cache_utils import DynamicLayer, DynamicSlidingWindowLayer

from lvsal_data import kvcache


def _layer(window: int | None) -> DynamicLayer:
    return DynamicLayer() if window is None else DynamicSlidingWindowLayer(sliding_window=window)


@pytest.mark.parametrize("window", [None, 5, 2, 40])
def test_append_equals_update(monkeypatch, window: int | None) -> None:
    """Through buffer replacements (a chunk of 3), a batch row leaving (``reorder_cache``), a crop
    and a reset, :func:`kvcache.append` returns and stores what ``update`` does, and never
    overwrites a row it handed out before."""
    monkeypatch.setattr(kvcache, "CHUNK", 3)
    ours, ref = _layer(window), _layer(window)
    g = torch.Generator().manual_seed(0)
    prompt = torch.randn(3, 2, 7, 4, generator=g), torch.randn(3, 2, 7, 4, generator=g)
    kvcache.append(ours, *prompt)  # uninitialised: the layer's own update
    ref.update(*prompt)
    handed: list[tuple[torch.Tensor, torch.Tensor]] = []
    buffers = set()
    for step in range(14):
        if step == 5:  # a finished sample leaves the batch
            for layer in (ours, ref):
                layer.reorder_cache(torch.tensor([2, 0]))
        if step == 9 and window is None:
            for layer in (ours, ref):
                layer.crop(-2)
        if step == 11:
            for layer in (ours, ref):
                layer.reset()
        batch = ref.keys.shape[0] if ref.keys is not None else 2
        new = torch.randn(batch, 2, 1, 4, generator=g), torch.randn(batch, 2, 1, 4, generator=g)
        got, want = kvcache.append(ours, *new), ref.update(*new)
        for a, b in zip(got, want):
            assert torch.equal(a, b)
        assert torch.equal(ours.keys, ref.keys) and torch.equal(ours.values, ref.values)
        assert ours.get_seq_length() == ref.get_seq_length()
        assert ours.get_mask_sizes(1) == ref.get_mask_sizes(1)
        handed.append((got[0], got[0].clone()))
        room = getattr(ours, kvcache._ROOM, None)
        if room is not None:
            buffers.add(room.keys.data_ptr())
    assert len(buffers) >= 3  # the buffer was replaced several times
    assert all(torch.equal(view, copy) for view, copy in handed)  # rows handed out were never overwritten


def test_append_refuses_a_graph() -> None:
    layer = DynamicLayer()
    layer.update(torch.zeros(1, 1, 2, 4), torch.zeros(1, 1, 2, 4))
    with pytest.raises(ValueError, match="detached"):
        kvcache.append(layer, torch.zeros(1, 1, 1, 4, requires_grad=True), torch.zeros(1, 1, 1, 4))


def test_supports_only_the_layers_it_reproduces() -> None:
    assert kvcache.supports(DynamicLayer())
    assert kvcache.supports(DynamicSlidingWindowLayer(sliding_window=4))
    recording = DynamicSlidingWindowLayer(sliding_window=4)
    recording.activate_past_recording()
    assert not kvcache.supports(recording)

    class Other(DynamicLayer):
        pass

    assert not kvcache.supports(Other())
