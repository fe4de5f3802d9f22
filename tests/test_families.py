"""The family table: every registered family has a tiny builder (so the parametrised suite
checks it against brute force), our attention reproduces each family's own, and image markers
named by token string belong to the image span."""

from __future__ import annotations

import pytest
import torch

from lvsal_data import find_spans
from lvsal_data.decoding import locore
from lvsal_data.families import FAMILIES
from lvsal_data.models import image_marker_ids, image_token_id
from lvsal_data.testing import TinyLVLM


def test_every_family_has_a_builder(tiny_models: dict[str, TinyLVLM]) -> None:
    """A family added to the table without a tiny builder would go unchecked: fail instead."""
    missing = sorted(set(FAMILIES.names()) - {tiny.family for tiny in tiny_models.values()})
    assert not missing, f"families without a builder in lvsal_data.testing.BUILDERS: {missing}"


def test_every_builder_is_a_registered_family(tiny: TinyLVLM) -> None:
    assert tiny.family in FAMILIES
    assert tiny.model.config.model_type == tiny.family


def test_locore_beta_zero_is_exactly_the_base_model(tiny: TinyLVLM) -> None:
    """Our registered eager attention, with nothing to change, is the family's own: the same
    logits and attention weights bitwise, the same greedy tokens."""
    inputs, spans = tiny.inputs(n_answer=4)
    with torch.no_grad():
        base = tiny.model(**inputs, output_attentions=True)
        with locore(tiny.model, spans.answer_start, beta=0.0):
            ours = tiny.model(**inputs, output_attentions=True)
    assert torch.equal(base.logits, ours.logits)
    assert all(torch.equal(a, b) for a, b in zip(base.attentions, ours.attentions))
    prompt, spans = tiny.inputs(n_answer=0)
    plain = tiny.model.generate(**prompt, max_new_tokens=6, do_sample=False)
    with locore(tiny.model, spans.answer_start, beta=0.0):
        same = tiny.model.generate(**prompt, max_new_tokens=6, do_sample=False)
    assert torch.equal(plain, same)


def _tokenizer(vocab: dict[str, int]):
    from tokenizers import Tokenizer, models
    from transformers import PreTrainedTokenizerFast

    return PreTrainedTokenizerFast(tokenizer_object=Tokenizer(models.WordLevel(vocab, unk_token="w0")))


@pytest.mark.parametrize("family, layout", [
    # Idefics3 / SmolVLM, a 2-tile split image: tile headers, a newline between rows, the global view
    ("idefics3", ("<fake_token_around_image> <row_1_col_1> I I <fake_token_around_image> <row_1_col_2> I I \\n "
                  "<fake_token_around_image> <global-img> I I <fake_token_around_image>")),
    ("smolvlm", "<fake_token_around_image> <global-img> I I I <fake_token_around_image>"),
    # Pixtral: each row of image tokens ends in [IMG_BREAK], the last in [IMG_END]
    ("mistral3", "I I [IMG_BREAK] I I [IMG_END]"),
])
def test_image_markers_by_token_string_belong_to_the_image(tiny_models: dict[str, TinyLVLM], family: str,
                                                           layout: str) -> None:
    cfg = tiny_models[family].model.config
    img = image_token_id(cfg)
    words = ["<fake_token_around_image>", "<row_1_col_1>", "<row_1_col_2>", "\\n", "<global-img>",
             "[IMG_BREAK]", "[IMG_END]"]
    vocab = {f"w{i}": i for i in range(img)} | {"I": img} | {w: img + 1 + k for k, w in enumerate(words)}
    tokens = layout.split()
    ids = torch.tensor([[5, 6] + [vocab[t] for t in tokens] + [9, 10]])
    spans = find_spans(ids, cfg, markers=image_marker_ids(cfg, _tokenizer(vocab)))
    end = 2 + len(tokens)
    assert spans.system == (0, 2) and spans.image == (2, end) and spans.instruction == (end, ids.shape[1])
