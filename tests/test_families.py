"""The family table: every registered family has a tiny builder (so the parametrised suite
checks it against brute force), our attention reproduces each family's own, and image markers
named by token string belong to the image span."""

from __future__ import annotations

import pytest
import torch

from lvsal_data import find_spans
from lvsal_data.decoding import locore
from lvsal_data.attention import attention_modules
from lvsal_data.errors import UnsupportedModelError
from lvsal_data.families import FAMILIES, family_of, self_attention_layers
from lvsal_data.models import image_marker_ids, image_token_id
from lvsal_data.testing import TinyLVLM
from lvsal_data.tracing import default_layers


def test_every_family_has_a_builder(tiny_models: dict[str, TinyLVLM]) -> None:
    """A family added to the table without a tiny builder would go unchecked: fail instead."""
    missing = sorted(set(FAMILIES.names()) - {tiny.family for tiny in tiny_models.values()})
    assert not missing, f"families without a builder in lvsal_data.testing.BUILDERS: {missing}"


def test_every_builder_is_a_registered_family(tiny: TinyLVLM) -> None:
    assert tiny.family in FAMILIES
    assert tiny.model.config.model_type == tiny.family


def test_layers_with_self_attention_come_from_the_config(tiny: TinyLVLM) -> None:
    """The traced layers (modules with self-attention) are the config's: every layer less the
    linear-attention / convolution layers of hybrids (``layer_types``) and Llama 3.2 Vision's
    cross-attention layers; the default target layers are among them."""
    config = tiny.model.config
    layers = self_attention_layers(config)
    assert layers == sorted(attention_modules(tiny.model))
    traced, target = default_layers(tiny.model)
    assert traced == layers and target and set(target) <= set(layers)
    if tiny.family in ("qwen3_5", "lfm2_vl", "mllama"):  # the families where some layers have none
        assert len(layers) < config.get_text_config().num_hidden_layers


def test_llama_vision_sees_the_image_through_its_cross_attention_mask(tiny_models: dict[str, TinyLVLM]) -> None:
    """Guards the Llama 3.2 Vision checks (trace == generate, rows == brute force): the image reaches
    the answer only through the cross-attention layers, gated by ``cross_attention_mask``."""
    tiny = tiny_models["mllama"]
    inputs, spans = tiny.inputs(n_answer=2)
    assert spans.image[1] - spans.image[0] == 1  # the <|image|> token alone
    with torch.no_grad():
        base = tiny.model(**inputs).logits
        other = tiny.model(**dict(inputs, pixel_values=inputs["pixel_values"].flip(-1))).logits
        blind = tiny.model(**dict(inputs, cross_attention_mask=torch.zeros_like(inputs["cross_attention_mask"]))).logits
    assert (base - other).abs().max() > 1e-3 and (base - blind).abs().max() > 1e-3


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


def test_phi4_multimodal_is_refused_with_its_reason() -> None:
    """Refused in one line that says why, before any weights load (load_lvlm checks the config first)."""
    from transformers import Phi4MultimodalConfig

    with pytest.raises(UnsupportedModelError, match="Phi-4-multimodal is not supported: .*torchvision") as err:
        family_of(Phi4MultimodalConfig())
    assert "\n" not in str(err.value)
