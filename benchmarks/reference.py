"""Naive saliency reference, the official release's way: for every token, recompute the whole
sequence (vision tower included) with gradients and backpropagate. Benchmarks only; the tests
keep their own independent brute force."""

from __future__ import annotations

from typing import Any, Mapping

import torch


def naive_token_row(model: Any, inputs: Mapping[str, Any], length: int, target: int) -> torch.Tensor:
    """Shat rows (layers, length) of ``target`` predicted after the first ``length`` tokens."""
    seq = inputs["input_ids"].shape[-1]
    cut = {k: (v[:, :length] if torch.is_tensor(v) and v.dim() == 2 and v.shape[-1] == seq else v)
           for k, v in inputs.items()}
    with torch.enable_grad():
        embeds_hook = model.get_input_embeddings().register_forward_hook(
            lambda _m, _i, out: out.detach().requires_grad_(True))
        try:
            out = model(**cut, output_attentions=True)
        finally:
            embeds_hook.remove()
        loss = -torch.log_softmax(out.logits[0, -1].float(), -1)[target]
        grads = torch.autograd.grad(loss, out.attentions)
    rows = []
    for att, grad in zip(out.attentions, grads):
        s = (att[0, :, -1].detach().float() * grad[0, :, -1].float()).abs().mean(0)
        rows.append(s / s.norm().clamp_min(1e-30))
    return torch.stack(rows)
