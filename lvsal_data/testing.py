"""Tiny random LVLMs built from configs in-process (no downloads), for tests and benchmarks.

Each builder returns a :class:`TinyLVLM`: a real transformers model of the family, eager
attention, and a function that builds batch-1 inputs of the real layout
(system text, image placeholder run, instruction text, answer) without a processor.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any, Callable, Sequence

import torch

from .models import Spans, image_only, shift_spans
from .organism.build import build_processor

VOCAB = 96


@dataclass
class TinyLVLM:
    """A tiny model plus an input builder of the real token layout."""

    model: Any
    family: str
    n_image_tokens: int
    _pixels: Callable[[torch.Generator], dict[str, torch.Tensor]]

    @property
    def image_token_id(self) -> int:
        cfg = self.model.config
        return int(getattr(cfg, "image_token_id", None) or cfg.image_token_index)

    def inputs(
        self, n_system: int = 4, n_instruction: int = 5, n_answer: int = 6, seed: int = 0, pad: int = 0
    ) -> tuple[dict[str, torch.Tensor], Spans]:
        """Random prompt + answer inputs and their spans (answer_start = spans.answer_start);
        ``pad`` left-pads them (pad token 0, attention mask 0) as a batch would."""
        gen = torch.Generator().manual_seed(seed)
        text = lambda n: torch.randint(3, VOCAB - 8, (n,), generator=gen)  # noqa: E731
        img = torch.full((self.n_image_tokens,), self.image_token_id)
        padding = torch.zeros(pad, dtype=torch.long)
        ids = torch.cat([padding, text(n_system), img, text(n_instruction), text(n_answer)])[None]
        start, end = pad + n_system, pad + n_system + self.n_image_tokens
        spans = Spans(system=(pad, start), image=(start, end), instruction=(end, end + n_instruction))
        mask = torch.ones_like(ids)
        mask[:, :pad] = 0
        batch = {"input_ids": ids, "attention_mask": mask, **self._pixels(gen)}
        if self.family in _MM_TOKEN_TYPES:
            batch["mm_token_type_ids"] = (ids == self.image_token_id).int()
        if self.family in _TOKEN_TYPES:
            batch["token_type_ids"] = (ids == self.image_token_id).long()
        if self.family in _PREFIX_LM:  # 0: the bidirectional prefix (the prompt), 1: the causal answer
            batch["token_type_ids"] = (torch.arange(ids.shape[1]) >= ids.shape[1] - n_answer).long()[None]
        if self.family in _CROSS_ATTENTION:  # (batch, seq, images, tiles): tokens from the image's on see its tile
            batch["cross_attention_mask"] = (torch.arange(ids.shape[1]) >= start).long()[None, :, None, None]
        dtype = next(self.model.parameters()).dtype
        batch = {k: (v.to(dtype) if v.is_floating_point() else v) for k, v in batch.items()}
        return batch, spans

    def with_answer(self, inputs: dict[str, torch.Tensor], tokens: Sequence[int]) -> dict[str, torch.Tensor]:
        """Batch-1 ``inputs`` followed by the answer ``tokens``, each per-token input extended as
        the family marks answer text (teacher forcing)."""
        n = len(tokens)
        out = dict(inputs, input_ids=torch.cat([inputs["input_ids"], torch.tensor([list(tokens)])], dim=1))
        fill = {"attention_mask": 1, "mm_token_type_ids": 0, "token_type_ids": int(self.family in _PREFIX_LM),
                "cross_attention_mask": 1}
        for key, value in fill.items():
            if key in inputs:
                shape = (1, n, *inputs[key].shape[2:])
                out[key] = torch.cat([inputs[key], torch.full(shape, value, dtype=inputs[key].dtype)], dim=1)
        return out


#: Families whose M-RoPE reads which tokens are image ones from ``mm_token_type_ids`` (1: image).
_MM_TOKEN_TYPES = ("qwen2_vl", "qwen2_5_vl", "qwen3_vl", "qwen3_5")
#: Families whose text sees the image through cross-attention, per token by ``cross_attention_mask``.
_CROSS_ATTENTION = ("mllama",)
#: Families whose mask reads image blocks (attended bidirectionally) from ``token_type_ids``.
_TOKEN_TYPES = ("gemma3",)
#: Families whose prompt is a bidirectional prefix, told apart from the answer by ``token_type_ids``.
_PREFIX_LM = ("paligemma",)

#: Inputs with one entry per token (``(batch, seq, ...)``): left-padded when prompts are stacked.
_PER_TOKEN = ("input_ids", "attention_mask", "mm_token_type_ids", "token_type_ids", "cross_attention_mask")


def stack_inputs(samples: Sequence[tuple[dict[str, torch.Tensor], Spans]]
                 ) -> tuple[dict[str, torch.Tensor], list[Spans]]:
    """Batch-1 inputs of several prompts as one left-padded batch, as a processor with
    ``padding_side="left"`` builds it: per-token inputs padded on the left (pad id 0, mask 0),
    per-image inputs (pixel values, image grids) concatenated, spans shifted by each padding."""
    width = max(int(inputs["input_ids"].shape[1]) for inputs, _ in samples)
    batch: dict[str, list[torch.Tensor]] = {}
    spans: list[Spans] = []
    for inputs, s in samples:
        pad = width - int(inputs["input_ids"].shape[1])
        for key, value in inputs.items():
            if key in _PER_TOKEN:  # padded along dimension 1
                value = torch.nn.functional.pad(value, (0, 0) * (value.dim() - 2) + (pad, 0))
            batch.setdefault(key, []).append(value)
        spans.append(shift_spans(s, pad))
    return {key: torch.cat(values, dim=0) for key, values in batch.items()}, spans


def with_grid(tiny: TinyLVLM, grid: tuple[int, int]) -> TinyLVLM:
    """The same tiny Qwen2-VL model fed images of another ``(h, w)`` patch grid (another number
    of image tokens, so another prompt length)."""
    if tiny.family != "qwen2_vl":
        raise ValueError(f"with_grid is for qwen2_vl, not {tiny.family}")
    return replace(tiny, n_image_tokens=grid[0] * grid[1] // 4, _pixels=_qwen_pixels(*grid))


def _qwen_pixels(h: int, w: int, patch: int = 14) -> Callable[[torch.Generator], dict[str, torch.Tensor]]:
    patch_dim = 3 * 2 * patch * patch

    def pixels(g: torch.Generator) -> dict[str, torch.Tensor]:
        return {"pixel_values": torch.randn(h * w, patch_dim, generator=g), "image_grid_thw": torch.tensor([[1, h, w]])}

    return pixels


def _finish(model: Any) -> Any:
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)  # the engine must not rely on parameter gradients
    return model


def _text(**overrides: Any) -> dict[str, Any]:
    cfg = dict(vocab_size=VOCAB, hidden_size=64, intermediate_size=128, num_hidden_layers=4,
               num_attention_heads=4, num_key_value_heads=4, max_position_embeddings=4096,
               pad_token_id=0, bos_token_id=1, eos_token_id=2)
    cfg.update(overrides)
    return cfg


def tiny_llava(
    *, kv_heads: int = 4, layers: int = 4, hidden: int = 64, heads: int = 4,
    image_size: int = 28, patch_size: int = 14, seed: int = 0,
) -> TinyLVLM:
    """A tiny ``LlavaForConditionalGeneration`` (CLIP vision tower, Llama text model).

    ``kv_heads < heads`` gives grouped-query attention; ``image_size=336, patch_size=14`` gives
    LLaVA-1.5's 576 image tokens.
    """
    from transformers import CLIPVisionConfig, LlamaConfig, LlavaConfig, LlavaForConditionalGeneration

    torch.manual_seed(seed)
    vision = CLIPVisionConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                              num_attention_heads=4, image_size=image_size, patch_size=patch_size,
                              projection_dim=32)
    text = LlamaConfig(**_text(num_key_value_heads=kv_heads, num_hidden_layers=layers,
                               hidden_size=hidden, num_attention_heads=heads, intermediate_size=2 * hidden))
    config = LlavaConfig(vision_config=vision, text_config=text, image_token_index=VOCAB - 1,
                         image_seq_length=(image_size // patch_size) ** 2)
    config._attn_implementation = "eager"
    model = _finish(LlavaForConditionalGeneration(config))
    model.config._attn_implementation = "eager"
    n_img = (image_size // patch_size) ** 2
    pixels = lambda g: {"pixel_values": torch.randn(1, 3, image_size, image_size, generator=g)}  # noqa: E731
    return TinyLVLM(model, "llava", n_img, pixels)


def tiny_qwen2_vl(*, seed: int = 0, grid: tuple[int, int] = (4, 4)) -> TinyLVLM:
    """A tiny ``Qwen2VLForConditionalGeneration`` (M-RoPE, GQA) with a (1, h, w) image grid."""
    from transformers import Qwen2VLConfig, Qwen2VLForConditionalGeneration

    vision = dict(depth=2, embed_dim=32, hidden_size=64, num_heads=4, patch_size=14,
                  spatial_merge_size=2, temporal_patch_size=2, in_channels=3)
    return _qwen_vl("qwen2_vl", Qwen2VLConfig, Qwen2VLForConditionalGeneration, _MROPE, vision, seed, grid)


def tiny_qwen2_5_vl(*, seed: int = 0) -> TinyLVLM:
    """A tiny ``Qwen2_5_VLForConditionalGeneration`` (M-RoPE, GQA; windowed vision attention) with a
    (1, 4, 4) image grid."""
    from transformers import Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration

    vision = dict(depth=2, hidden_size=32, intermediate_size=64, num_heads=4, out_hidden_size=64, patch_size=14,
                  spatial_merge_size=2, temporal_patch_size=2, window_size=56, fullatt_block_indexes=[1])
    return _qwen_vl("qwen2_5_vl", Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration, _MROPE, vision, seed)


#: The text side of the tiny Qwen-VL models: GQA and M-RoPE.
_MROPE = dict(num_key_value_heads=2, rope_parameters={"rope_type": "default", "mrope_section": [2, 3, 3],
                                                      "rope_theta": 10000.0})


def _qwen_vl(family: str, config_class: Any, model_class: Any, text: dict[str, Any], vision: dict[str, Any],
             seed: int, grid: tuple[int, int] = (4, 4)) -> TinyLVLM:
    """A tiny Qwen-VL-style model (Qwen2-VL, Qwen2.5-VL, Qwen3-VL) fed one image of a (1, h, w)
    patch grid; the vision, start and end tokens take the top of the vocabulary."""
    torch.manual_seed(seed)
    config = config_class(text_config=_text(**text), vision_config=vision, image_token_id=VOCAB - 1,
                          video_token_id=VOCAB - 2, vision_start_token_id=VOCAB - 3, vision_end_token_id=VOCAB - 4)
    config._attn_implementation = "eager"
    model = _finish(model_class(config))
    h, w = grid
    return TinyLVLM(model, family, h * w // 4, _qwen_pixels(h, w, patch=vision["patch_size"]))


def tiny_llava_next(*, seed: int = 0) -> TinyLVLM:
    """A tiny ``LlavaNextForConditionalGeneration`` (CLIP tower, Llama text model): one anyres grid
    point of the image size, so an image is its base view plus one tile, unpadded with a newline
    token per row."""
    from transformers import LlavaNextConfig, LlavaNextForConditionalGeneration

    vision = dict(model_type="clip_vision_model", projection_dim=32)
    return _anyres("llava_next", LlavaNextConfig, LlavaNextForConditionalGeneration, vision,
                   dict(_text(), model_type="llama"), seed)


def _anyres(family: str, config_class: Any, model_class: Any, vision: dict[str, Any], text: dict[str, Any],
            seed: int, **extra: Any) -> TinyLVLM:
    """A tiny AnyRes model (LLaVA-NeXT, LLaVA-OneVision): a 28 px tower with one grid point, so an
    image is its base view plus one tile."""
    torch.manual_seed(seed)
    size = 28
    vision = dict(vision, hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
                  image_size=size, patch_size=14)
    config = config_class(vision_config=vision, text_config=text, image_token_index=VOCAB - 1,
                          image_grid_pinpoints=[[size, size]], **extra)
    config._attn_implementation = "eager"
    model = _finish(model_class(config))
    pixels = lambda g: {"pixel_values": torch.randn(1, 2, 3, size, size, generator=g),  # noqa: E731
                        "image_sizes": torch.tensor([[size, size]])}
    return TinyLVLM(model, family, _count_image_tokens(model, pixels), pixels)


def tiny_internvl(*, seed: int = 0) -> TinyLVLM:
    """A tiny ``InternVLForConditionalGeneration`` (InternViT-style tower, Qwen2 text model, GQA)."""
    from transformers import InternVLConfig, InternVLForConditionalGeneration

    torch.manual_seed(seed)
    vision = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64,
                  image_size=[56, 56], patch_size=[14, 14])
    text = dict(_text(num_key_value_heads=2), model_type="qwen2")
    config = InternVLConfig(vision_config=vision, text_config=text, image_token_id=VOCAB - 1,
                            image_seq_length=4, downsample_ratio=0.5)
    config._attn_implementation = "eager"
    model = _finish(InternVLForConditionalGeneration(config))
    pixels = lambda g: {"pixel_values": torch.randn(1, 3, 56, 56, generator=g)}  # noqa: E731
    return TinyLVLM(model, "internvl", 4, pixels)


def tiny_llava_onevision(*, seed: int = 0) -> TinyLVLM:
    """A tiny ``LlavaOnevisionForConditionalGeneration`` (SigLIP tower, Qwen2 text model, GQA): one
    anyres grid point of the image size, so an image is its base view plus one tile, unpadded with
    a newline token per row (10 image tokens)."""
    from transformers import LlavaOnevisionConfig, LlavaOnevisionForConditionalGeneration

    return _anyres("llava_onevision", LlavaOnevisionConfig, LlavaOnevisionForConditionalGeneration,
                   dict(model_type="siglip_vision_model"), dict(_text(num_key_value_heads=2), model_type="qwen2"),
                   seed, video_token_index=VOCAB - 2)


def tiny_qwen3_vl(*, seed: int = 1) -> TinyLVLM:
    """A tiny ``Qwen3VLForConditionalGeneration`` (interleaved M-RoPE, q/k norms, DeepStack visual
    features added in the first text layers) with a (1, 4, 4) image grid. Seed 1: seed 0 greedily repeats
    one token, which would make trace == generate a weak check."""
    from transformers import Qwen3VLConfig, Qwen3VLForConditionalGeneration

    text = dict(num_key_value_heads=2, head_dim=16,
                rope_parameters={"rope_type": "default", "mrope_section": [2, 3, 3], "mrope_interleaved": True,
                                 "rope_theta": 10000.0})
    vision = dict(depth=2, hidden_size=32, intermediate_size=64, num_heads=4, patch_size=16, spatial_merge_size=2,
                  temporal_patch_size=2, out_hidden_size=64, num_position_embeddings=16, deepstack_visual_indexes=[0])
    return _qwen_vl("qwen3_vl", Qwen3VLConfig, Qwen3VLForConditionalGeneration, text, vision, seed)


def _tiny_idefics(family: str, seed: int) -> TinyLVLM:
    """A tiny Idefics3 / SmolVLM (SigLIP-style tower, pixel shuffle by 2, Llama text model): one
    32 x 32 image of 8-pixel patches is 16 patches, 4 image tokens."""
    import transformers

    prefix = {"idefics3": "Idefics3", "smolvlm": "SmolVLM"}[family]
    torch.manual_seed(seed)
    vision = getattr(transformers, f"{prefix}VisionConfig")(hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                                                           num_attention_heads=4, image_size=32, patch_size=8)
    text = dict(_text(), model_type="llama")
    config = getattr(transformers, f"{prefix}Config")(vision_config=vision, text_config=text,
                                                      image_token_id=VOCAB - 1, scale_factor=2)
    config._attn_implementation = "eager"
    model = _finish(getattr(transformers, f"{prefix}ForConditionalGeneration")(config))
    pixels = lambda g: {"pixel_values": torch.randn(1, 1, 3, 32, 32, generator=g)}  # noqa: E731
    return TinyLVLM(model, family, 4, pixels)


def tiny_idefics3(*, seed: int = 0) -> TinyLVLM:
    """A tiny ``Idefics3ForConditionalGeneration``."""
    return _tiny_idefics("idefics3", seed)


def tiny_smolvlm(*, seed: int = 0) -> TinyLVLM:
    """A tiny ``SmolVLMForConditionalGeneration``."""
    return _tiny_idefics("smolvlm", seed)


def tiny_mistral3(*, seed: int = 0) -> TinyLVLM:
    """A tiny ``Mistral3ForConditionalGeneration`` (Pixtral tower with 2-D RoPE, patch merger by 2,
    Mistral text model, GQA): a 32 x 32 image of 8-pixel patches is 4 image tokens."""
    from transformers import Mistral3Config, Mistral3ForConditionalGeneration

    torch.manual_seed(seed)
    vision = dict(model_type="pixtral", hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                  num_attention_heads=4, head_dim=8, image_size=32, patch_size=8)
    config = Mistral3Config(vision_config=vision, text_config=dict(_text(num_key_value_heads=2), model_type="mistral"),
                            image_token_index=VOCAB - 1, spatial_merge_size=2, tie_word_embeddings=False)
    config._attn_implementation = "eager"
    model = _finish(Mistral3ForConditionalGeneration(config))
    pixels = lambda g: {"pixel_values": torch.randn(1, 3, 32, 32, generator=g),  # noqa: E731
                        "image_sizes": torch.tensor([[32, 32]])}
    return TinyLVLM(model, "mistral3", 4, pixels)


def tiny_gemma3(*, seed: int = 3) -> TinyLVLM:
    """A tiny ``Gemma3ForConditionalGeneration`` (SigLIP tower pooled to 4 tokens, Gemma 3 text model):
    sliding-window layers (window 6, shorter than every prompt) alternate with full ones, the
    image block is read bidirectionally (``token_type_ids``), and attention logits are soft-capped
    (Gemma 2's feature, which Gemma 3's attention also runs when configured) so that our
    attention function must reproduce it. Seed 3: lower seeds greedily repeat one token."""
    from transformers import Gemma3Config, Gemma3ForConditionalGeneration

    torch.manual_seed(seed)
    vision = dict(model_type="siglip_vision_model", hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                  num_attention_heads=4, image_size=28, patch_size=7)
    text = dict(_text(num_key_value_heads=2, head_dim=16, query_pre_attn_scalar=16, sliding_window=6,
                      layer_types=["sliding_attention", "full_attention"] * 2, attn_logit_softcapping=2.0),
                model_type="gemma3_text")
    config = Gemma3Config(text_config=text, vision_config=vision, mm_tokens_per_image=4, image_token_index=VOCAB - 1,
                          boi_token_index=VOCAB - 2, eoi_token_index=VOCAB - 3)
    config._attn_implementation = "eager"
    model = _finish(Gemma3ForConditionalGeneration(config))
    pixels = lambda g: {"pixel_values": torch.randn(1, 3, 28, 28, generator=g)}  # noqa: E731
    return TinyLVLM(model, "gemma3", 4, pixels)


def tiny_paligemma(*, seed: int = 2) -> TinyLVLM:
    """A tiny PaliGemma 2 (``PaliGemmaForConditionalGeneration``: SigLIP tower, Gemma 2 text model
    with attention soft-capping): the prompt is a bidirectional prefix (``token_type_ids`` 0), the
    answer causal (1). Seed 2: lower seeds greedily repeat one token."""
    from transformers import PaliGemmaConfig, PaliGemmaForConditionalGeneration

    torch.manual_seed(seed)
    vision = dict(model_type="siglip_vision_model", hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                  num_attention_heads=4, image_size=28, patch_size=14, projection_dim=64)
    text = dict(_text(num_key_value_heads=2, head_dim=16, query_pre_attn_scalar=16, attn_logit_softcapping=2.0,
                      final_logit_softcapping=None), model_type="gemma2")
    config = PaliGemmaConfig(text_config=text, vision_config=vision, image_token_index=VOCAB - 1, projection_dim=64)
    config._attn_implementation = "eager"
    model = _finish(PaliGemmaForConditionalGeneration(config))
    pixels = lambda g: {"pixel_values": torch.randn(1, 3, 28, 28, generator=g)}  # noqa: E731
    return TinyLVLM(model, "paligemma", 4, pixels)


def tiny_mllama(*, seed: int = 3) -> TinyLVLM:
    """A tiny Llama 3.2 Vision (``MllamaForConditionalGeneration``): 5 text layers, of which 1 and 3
    cross-attend to the image tiles (their tanh gates opened, which training does and the init does not,
    so the image reaches the answer), the others self-attend; one 28 x 28 tile. In the sequence the image
    is the one ``<|image|>`` token; ``cross_attention_mask`` lets the tokens from it on see the tile.
    Seed 3: lower seeds greedily repeat one token."""
    from transformers import MllamaConfig, MllamaForConditionalGeneration

    torch.manual_seed(seed)
    vision = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_global_layers=1, attention_heads=4,
                  image_size=28, patch_size=14, max_num_tiles=1, supported_aspect_ratios=[[1, 1]],
                  intermediate_layers_indices=[0], vision_output_dim=64)
    text = dict(_text(num_key_value_heads=2, num_hidden_layers=5, cross_attention_layers=[1, 3]),
                model_type="mllama_text_model")
    config = MllamaConfig(vision_config=vision, text_config=text, image_token_index=VOCAB - 1)
    config._attn_implementation = "eager"
    model = MllamaForConditionalGeneration(config)
    with torch.no_grad():
        for layer in model.model.language_model.layers:
            if hasattr(layer, "cross_attn"):
                layer.cross_attn_attn_gate.fill_(1.0)
                layer.cross_attn_mlp_gate.fill_(1.0)
    pixels = lambda g: {"pixel_values": torch.randn(1, 1, 1, 3, 28, 28, generator=g),  # noqa: E731
                        "aspect_ratio_ids": torch.tensor([[1]]),
                        "aspect_ratio_mask": torch.ones(1, 1, 1, dtype=torch.long)}
    return TinyLVLM(_finish(model), "mllama", 1, pixels)


def tiny_qwen3_5(*, seed: int = 1) -> TinyLVLM:
    """A tiny Qwen3.5 (``Qwen3_5ForConditionalGeneration``), a hybrid: layers 0 and 2 are Gated DeltaNet
    linear attention (a recurrent state and a convolution state, no attention rows), 1 and 3 full
    attention (gated, q / k norms, partial interleaved M-RoPE); a (1, 4, 4) image grid."""
    from transformers import Qwen3_5Config, Qwen3_5ForConditionalGeneration

    text = dict(num_key_value_heads=2, head_dim=16, layer_types=["linear_attention", "full_attention"] * 2,
                linear_conv_kernel_dim=4, linear_key_head_dim=8, linear_value_head_dim=8, linear_num_key_heads=2,
                linear_num_value_heads=4,
                rope_parameters={"rope_type": "default", "mrope_section": [2, 1, 1], "mrope_interleaved": True,
                                 "rope_theta": 10000.0, "partial_rotary_factor": 0.5})
    vision = dict(depth=2, hidden_size=32, intermediate_size=64, num_heads=4, patch_size=16, spatial_merge_size=2,
                  temporal_patch_size=2, out_hidden_size=64, num_position_embeddings=16)
    return _qwen_vl("qwen3_5", Qwen3_5Config, Qwen3_5ForConditionalGeneration, text, vision, seed)


def tiny_lfm2_vl(*, seed: int = 1) -> TinyLVLM:
    """A tiny LFM2-VL (``Lfm2VlForConditionalGeneration``: SigLIP2 NaFlex tower, pixel unshuffle by 2, LFM2
    text model with tied embeddings), a hybrid: layers 0 and 2 are gated short convolutions (a
    convolution state, no attention rows), 1 and 3 attention; one 4 x 4 grid of 8-pixel patches is 4
    image tokens. Initialised at std 0.1: at 0.02 the tied embeddings make every seed repeat the last
    prompt token."""
    from transformers import Lfm2VlConfig, Lfm2VlForConditionalGeneration

    torch.manual_seed(seed)
    vision = dict(model_type="siglip2_vision_model", hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                  num_attention_heads=4, patch_size=8, num_patches=16)
    text = dict(_text(num_key_value_heads=2, layer_types=["conv", "full_attention"] * 2, conv_L_cache=3,
                      block_auto_adjust_ff_dim=False, initializer_range=0.1), model_type="lfm2")
    config = Lfm2VlConfig(vision_config=vision, text_config=text, image_token_id=VOCAB - 1, projector_hidden_size=64,
                          downsample_factor=2)
    config._attn_implementation = "eager"
    model = _finish(Lfm2VlForConditionalGeneration(config))
    pixels = lambda g: {"pixel_values": torch.randn(1, 16, 3 * 8 * 8, generator=g),  # noqa: E731
                        "spatial_shapes": torch.tensor([[4, 4]]),
                        "pixel_attention_mask": torch.ones(1, 16, dtype=torch.long)}
    return TinyLVLM(model, "lfm2_vl", 4, pixels)


def _count_image_tokens(model: Any, pixels: Callable[[torch.Generator], dict[str, torch.Tensor]]) -> int:
    """How many image features (so placeholder tokens) the model makes of one image."""
    with torch.no_grad():
        features = model.model.get_image_features(**pixels(torch.Generator().manual_seed(0)))
    features = getattr(features, "pooler_output", features)
    return sum(int(f.shape[0]) for f in features)


BUILDERS: dict[str, Callable[..., TinyLVLM]] = {
    "llava": tiny_llava,
    "llava_gqa": lambda **kw: tiny_llava(kv_heads=2, **kw),
    "qwen2_vl": tiny_qwen2_vl,
    "internvl": tiny_internvl,
    "qwen2_5_vl": tiny_qwen2_5_vl,
    "llava_next": tiny_llava_next,
    "llava_onevision": tiny_llava_onevision,
    "qwen3_vl": tiny_qwen3_vl,
    "idefics3": tiny_idefics3,
    "smolvlm": tiny_smolvlm,
    "mistral3": tiny_mistral3,
    "gemma3": tiny_gemma3,
    "paligemma": tiny_paligemma,
    "mllama": tiny_mllama,
    "qwen3_5": tiny_qwen3_5,
    "lfm2_vl": tiny_lfm2_vl,
}


def tiny_llava_processor(words: list[str], image_size: int = 28, patch_size: int = 14) -> Any:
    """A real ``LlavaProcessor`` over a word-level ``tokenizers`` vocabulary (for tests).

    The vocabulary is ``<pad> <s> </s> <unk> USER : ASSISTANT <image>`` followed by ``words``;
    pair it with :func:`tiny_llava` built with the same image size (its vocab must be large
    enough, and its image_token_index set to the ``<image>`` id, 7).
    """
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    specials = ["<pad>", "<s>", "</s>", "<unk>", "USER", ":", "ASSISTANT", "<image>"]
    vocab = {w: i for i, w in enumerate(specials + [w for w in words if w not in specials])}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.WhitespaceSplit(), pre_tokenizers.Punctuation()])
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<s>", eos_token="</s>", unk_token="<unk>",
                                   pad_token="<pad>", extra_special_tokens={"image_token": "<image>"})
    return build_processor(fast, image_size=image_size, patch_size=patch_size)


def _word_tokenizer(words: list[str], specials: dict[str, int], **named: str) -> Any:
    """A word-level fast tokenizer: ``specials`` at the given ids (the tiny config's), matched whole
    and never split, ``words`` at the free ids below :data:`VOCAB`; ``named`` become the tokenizer's
    named special tokens (``image_token="<image>"``...)."""
    from tokenizers import AddedToken, Regex, Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    base = {"<pad>": 0, "<s>": 1, "</s>": 2} | specials
    free = iter(i for i in range(VOCAB) if i not in base.values())
    vocab = base | {w: next(free) for w in dict.fromkeys(words) if w not in base}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="<pad>"))
    # <special> tokens, words and punctuation are pieces even unspaced (a reloaded tokenizer that a
    # processor grew, PaliGemma's, no longer matches its added tokens first)
    pieces = pre_tokenizers.Split(Regex(r"<[^<>\s]+>|\[[A-Z_]+\]|\w+|[^\w\s]"), behavior="isolated")
    tok.pre_tokenizer = pre_tokenizers.Sequence([pieces, pre_tokenizers.WhitespaceSplit()])
    tok.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in base])
    return PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<s>", eos_token="</s>", pad_token="<pad>",
                                   unk_token="<pad>", extra_special_tokens=named)


#: A ChatML template with the image placeholder ``{image}`` (Qwen2-VL's and InternVL's layout).
_CHATML = ("{% for m in messages %}<|im_start|> {{ m['role'] }} {% for c in m['content'] %}"
           "{% if c['type'] == 'image' %}{image} {% else %}{{ c['text'] }} {% endif %}{% endfor %}<|im_end|> "
           "{% endfor %}{% if add_generation_prompt %}<|im_start|> assistant {% endif %}")
_CHATML_TOKENS = {"<|im_start|>": VOCAB - 10, "<|im_end|>": VOCAB - 11, "user": VOCAB - 12, "assistant": VOCAB - 13,
                  "system": VOCAB - 14}


def tiny_qwen2_vl_processor(words: list[str], *, video: bool = True) -> Any:
    """A real ``Qwen2VLProcessor`` for :func:`tiny_qwen2_vl` (its token ids), PIL image backend: any
    image becomes a 56 x 56 one, a (1, 4, 4) grid, 4 image tokens. ``video=False`` leaves out the
    video processor (which needs torchvision)."""
    from transformers import Qwen2VLProcessor
    from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import Qwen2VLImageProcessorPil

    specials = {"<|image_pad|>": VOCAB - 1, "<|video_pad|>": VOCAB - 2, "<|vision_start|>": VOCAB - 3,
                "<|vision_end|>": VOCAB - 4} | _CHATML_TOKENS
    tokenizer = _word_tokenizer(words, specials, image_token="<|image_pad|>", video_token="<|video_pad|>",
                                vision_bos_token="<|vision_start|>", vision_eos_token="<|vision_end|>")
    images = Qwen2VLImageProcessorPil(size={"shortest_edge": 56 * 56, "longest_edge": 56 * 56})
    template = _CHATML.replace("{image}", "<|vision_start|> <|image_pad|> <|vision_end|>")
    if not video:
        return image_only(Qwen2VLProcessor)(image_processor=images, tokenizer=tokenizer, chat_template=template)
    from transformers.models.qwen2_vl.video_processing_qwen2_vl import Qwen2VLVideoProcessor

    return Qwen2VLProcessor(image_processor=images, tokenizer=tokenizer, video_processor=Qwen2VLVideoProcessor(),
                            chat_template=template)


def tiny_internvl_processor(words: list[str], *, video: bool = True) -> Any:
    """A real ``InternVLProcessor`` for :func:`tiny_internvl`: any image becomes one 56 x 56 tile,
    ``<img>`` + 4 ``<IMG_CONTEXT>`` + ``</img>``. ``video=False`` leaves out the video processor."""
    from transformers import InternVLProcessor
    from transformers.models.got_ocr2.image_processing_pil_got_ocr2 import GotOcr2ImageProcessorPil

    specials = {"<IMG_CONTEXT>": VOCAB - 1, "<img>": VOCAB - 2, "</img>": VOCAB - 3, "<video>": VOCAB - 4}
    specials |= _CHATML_TOKENS
    tokenizer = _word_tokenizer(words, specials, start_image_token="<img>", end_image_token="</img>",
                                context_image_token="<IMG_CONTEXT>", video_token="<video>")
    images = GotOcr2ImageProcessorPil(size={"height": 56, "width": 56}, max_patches=1)  # one tile, no thumbnail
    template = _CHATML.replace("{image}", "<IMG_CONTEXT>")
    if not video:
        return image_only(InternVLProcessor)(image_processor=images, tokenizer=tokenizer, image_seq_length=4,
                                             chat_template=template)
    from transformers.models.internvl.video_processing_internvl import InternVLVideoProcessor

    return InternVLProcessor(image_processor=images, tokenizer=tokenizer, video_processor=InternVLVideoProcessor(),
                             image_seq_length=4, chat_template=template)


def tiny_smolvlm_processor(words: list[str], *, video: bool = True) -> Any:
    """A real ``SmolVLMProcessor`` for :func:`tiny_smolvlm` (needs ``num2words``): any image becomes
    one 32 x 32 view, ``<fake_token_around_image> <global-img>`` + 4 ``<image>`` +
    ``<fake_token_around_image>``. ``video=False`` leaves out the video processor."""
    from transformers import SmolVLMProcessor
    from transformers.models.smolvlm.image_processing_pil_smolvlm import SmolVLMImageProcessorPil

    specials = {"<image>": VOCAB - 1, "<fake_token_around_image>": VOCAB - 2, "<global-img>": VOCAB - 3,
                "<end_of_utterance>": VOCAB - 4, "<video>": VOCAB - 5, "User": VOCAB - 6, "Assistant": VOCAB - 7}
    tokenizer = _word_tokenizer(words, specials, image_token="<image>", fake_image_token="<fake_token_around_image>",
                                global_image_token="<global-img>", end_of_utterance_token="<end_of_utterance>",
                                video_token="<video>")
    images = SmolVLMImageProcessorPil(size={"longest_edge": 32}, max_image_size={"longest_edge": 32},
                                      do_image_splitting=False)
    template = ("{% for m in messages %}{{ m['role'] | capitalize }} : {% for c in m['content'] %}"
                "{% if c['type'] == 'image' %}<image> {% else %}{{ c['text'] }} {% endif %}{% endfor %}"
                "<end_of_utterance> {% endfor %}{% if add_generation_prompt %}Assistant : {% endif %}")
    if not video:
        return image_only(SmolVLMProcessor)(image_processor=images, tokenizer=tokenizer, video_processor=None,
                                            image_seq_len=4, chat_template=template)
    from transformers.models.smolvlm.video_processing_smolvlm import SmolVLMVideoProcessor

    return SmolVLMProcessor(image_processor=images, tokenizer=tokenizer, video_processor=SmolVLMVideoProcessor(),
                            image_seq_len=4, chat_template=template)


def tiny_paligemma_processor(words: list[str]) -> Any:
    """A real ``PaliGemmaProcessor`` for :func:`tiny_paligemma` (no chat template, as on the Hub):
    ``<image>`` x 4, ``<s>``, the prompt, a newline."""
    from transformers import PaliGemmaProcessor
    from transformers.models.siglip.image_processing_pil_siglip import SiglipImageProcessorPil

    tokenizer = _word_tokenizer(words, {"<image>": VOCAB - 1}, image_token="<image>")
    images = SiglipImageProcessorPil(size={"height": 28, "width": 28})
    images.image_seq_length = 4
    return PaliGemmaProcessor(image_processor=images, tokenizer=tokenizer)


def write_logit_detector(path: Any, coef: Sequence[float] = (1.0, 0.0), intercept: float = 0.0) -> Any:
    """Write a detector file (``lvsal fit-detector``'s format) on the ``logit`` features
    (log-probability, entropy) with the given weights and a unit scaler, for tests of the
    guided decoding and of online scoring. Returns ``path``.

    With the default weights its probability rises with the token's log-probability, so the
    guided decoding prefers the least likely eligible candidate: a decoding that visibly differs
    from greedy.
    """
    import json
    from pathlib import Path

    from .scoring import FORMAT

    doc = {"format": FORMAT, "feature_set": "logit", "feature_names": ["logprob", "entropy"],
           "params": {"model": "logistic", "C": 1.0, "max_iter": 1000, "class_weight": "balanced", "random_state": 0},
           "classes": [0, 1], "scaler": {"mean": [0.0, 0.0], "scale": [1.0, 1.0], "var": [1.0, 1.0],
                                         "n_samples_seen": 2},
           "logistic": {"coef": [list(coef)], "intercept": [intercept]}, "meta": {}}
    Path(path).write_text(json.dumps(doc))
    return path
