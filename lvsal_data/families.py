"""The LVLM families lvsal-data traces: one table, :data:`FAMILIES`, keyed by ``model_type``.

Per-family knowledge lives here and nowhere else; everything else is read from the real token
layout (never from constants such as 576 image tokens or 35 system tokens, which is how the
original release broke on other models). Register a family of your own from your package::

    from lvsal_data.families import FAMILIES, Family
    FAMILIES.register("my_vlm")(Family("MyVLM", marker_tokens=("<img>", "</img>")))

A family added here must also have a tiny builder in :mod:`lvsal_data.testing` (the suite
checks every registered family against brute force and fails for one without a builder) and a
tiny processor in :mod:`lvsal_data.tiny_processors` (for ``lvsal collect`` end to end).

Not every layer has attention rows: hybrid models (Qwen3.5's Gated DeltaNet, LFM2's short
convolutions) and Llama 3.2 Vision's cross-attention layers are left out of the traced layers,
read from the config by :func:`self_attention_layers`. Families that cannot be traced exactly and
safely are refused with their reason (:data:`REFUSED`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .errors import UnsupportedModelError
from .prompts import VICUNA_SYSTEM_PROMPT
from .registry import Registry


@dataclass(frozen=True)
class Family:
    """What the toolkit must know about one model family.

    Attributes:
        name: Human-readable family name.
        image_markers: Config attributes naming tokens that wrap the image run.
        marker_tokens: Token strings that wrap or break up the image run (looked up in the
            tokenizer). With the processor's own ``image_token_ids`` and ``image_markers``
            they make the image segment: the run from the first to the last image token,
            widened over adjacent markers.
        system_prompt: The family's standard system prompt, sent unless the user chooses
            another (``--system-prompt``); None: the chat template's own default, if any.
        prefix_lm: The prompt is read bidirectionally (PaliGemma): the engine runs it whole with
            gradients instead of prefilling all but its last token.
        card_note: What a reader of this family's trace datasets must know (rendered into the
            dataset card), e.g. Llama 3.2 Vision's one-token image segment.
    """

    name: str
    image_markers: tuple[str, ...] = ()
    marker_tokens: tuple[str, ...] = ()
    system_prompt: str | None = None
    prefix_lm: bool = False
    card_note: str | None = None


#: model_type -> :class:`Family`.
FAMILIES: Registry[Family] = Registry("model family")

_QWEN_MARKERS = ("vision_start_token_id", "vision_end_token_id")
#: Only the tokens that can open or close the whole run: the first tile's (or the global view's)
#: header and the closing wrapper; the tokens between tiles lie inside the run.
_IDEFICS_MARKERS = ("<fake_token_around_image>", "<row_1_col_1>", "<global-img>")
for _type, _family in {
    "llava": Family("LLaVA", system_prompt=VICUNA_SYSTEM_PROMPT),
    "llava_next": Family("LLaVA-NeXT"),
    "qwen2_vl": Family("Qwen2-VL", image_markers=_QWEN_MARKERS),
    "qwen2_5_vl": Family("Qwen2.5-VL", image_markers=_QWEN_MARKERS),
    "internvl": Family("InternVL", marker_tokens=("<img>", "</img>")),
    "llava_onevision": Family("LLaVA-OneVision"),
    "qwen3_vl": Family("Qwen3-VL", image_markers=_QWEN_MARKERS),
    # <fake_token_around_image><row_1_col_1 | global-img><image>... ...<image><fake_token_around_image>
    "idefics3": Family("Idefics3", marker_tokens=_IDEFICS_MARKERS),
    "smolvlm": Family("SmolVLM", marker_tokens=_IDEFICS_MARKERS),
    # Pixtral: rows of [IMG] ending in [IMG_BREAK], the last one in [IMG_END]
    "mistral3": Family("Mistral 3", marker_tokens=("[IMG_BREAK]", "[IMG_END]")),
    # <start_of_image><image>...<end_of_image>; sliding-window layers' rows sit at absolute columns
    "gemma3": Family("Gemma 3", image_markers=("boi_token_index", "eoi_token_index")),
    # PaliGemma / PaliGemma 2: <image>... <bos> prompt \n, the whole prompt a bidirectional prefix
    "paligemma": Family("PaliGemma", prefix_lm=True),
    # Llama 3.2 Vision: the image enters through cross-attention layers (over image tiles, not traced); in
    # the sequence it is the one <|image|> token, so the image segment is that one column
    "mllama": Family("Llama 3.2 Vision", card_note=(
        "Llama 3.2 Vision reads the image through cross-attention layers (over image tiles), whose rows are not "
        "traced: in the sequence the image is the one `<|image|>` token, so the image segment (`sal_image`, "
        "`att_image`, `len_image` = 1) is that token alone, and `layers` lists the self-attention layers only.")),
    # hybrids: only the full-attention layers (config.layer_types) have attention rows; the linear-attention
    # (Gated DeltaNet) and short-convolution layers carry a recurrent / convolution state instead
    "qwen3_5": Family("Qwen3.5", image_markers=_QWEN_MARKERS),
    # <|image_start|> [<|img_row_1_col_1|>] <image>... [... <|img_thumbnail|> <image>...] <|image_end|>
    "lfm2_vl": Family("LFM2-VL", marker_tokens=("<|image_start|>", "<|img_row_1_col_1|>", "<|image_end|>")),
}.items():
    FAMILIES.register(_type)(_family)


#: model_type -> why the family is refused (one line), for families users ask for that cannot be traced
#: exactly and safely with the transformers this package supports.
REFUSED: dict[str, str] = {
    "phi4_multimodal": (
        "Phi-4-multimodal is not supported: its image processor exists only with torchvision, and transformers' "
        "Phi4MultimodalModel fails every image forward once an output_attentions call has followed a plain one "
        "(the vision tower's output hooks are installed twice and its selected hidden state is lost); its "
        "language-model rows were exact on a tiny model (1.5e-7), so it can be added once that is fixed"),
}

#: ``config.layer_types`` entries of layers with self-attention (hybrids' others: "linear_attention", "conv").
SELF_ATTENTION_TYPES = frozenset({"full_attention", "sliding_attention", "chunked_attention"})


def self_attention_layers(config: Any) -> list[int]:
    """Indices of the language model's layers with self-attention, read from the config alone.

    Every layer, less a hybrid model's linear-attention / convolution layers (``layer_types``) and
    Llama 3.2 Vision's cross-attention layers (``cross_attention_layers``). The engine's traced
    layers; the tests check it against the modules of every tiny family.

    Example:
        >>> from types import SimpleNamespace as C
        >>> self_attention_layers(C(get_text_config=lambda: C(num_hidden_layers=4, cross_attention_layers=[1])))
        [0, 2, 3]
    """
    text = config.get_text_config()
    types = getattr(text, "layer_types", None) or ["full_attention"] * text.num_hidden_layers
    cross = set(getattr(text, "cross_attention_layers", None) or ())
    kinds = types[: text.num_hidden_layers]
    return [i for i, kind in enumerate(kinds) if kind in SELF_ATTENTION_TYPES and i not in cross]


def family_of(config: Any) -> Family:
    """The :class:`Family` of a model config.

    Raises:
        UnsupportedModelError: The model type is refused (:data:`REFUSED`, the message says why) or not
            registered (the message lists the supported ones).
    """
    model_type = getattr(config, "model_type", None)
    if model_type in REFUSED:
        raise UnsupportedModelError(REFUSED[model_type])
    if model_type not in FAMILIES:
        raise UnsupportedModelError(
            f"model_type {model_type!r} is not a supported LVLM family; supported: {', '.join(FAMILIES.names())}. "
            "Register a Family in lvsal_data.families.FAMILIES to support it."
        )
    return FAMILIES[model_type]


__all__ = ["FAMILIES", "Family", "REFUSED", "SELF_ATTENTION_TYPES", "family_of", "self_attention_layers"]
