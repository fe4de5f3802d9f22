"""Real processors for the tiny models of :mod:`lvsal_data.testing`, one per family (for tests).

Each is the family's own transformers processor class, over a word-level tokenizer that puts the
family's special tokens at the tiny config's ids, with an image processor sized so that any image
becomes the features the tiny model expects, and a chat template of the family's layout. Saved
next to a tiny model with ``save_pretrained``, the folder loads with :func:`~lvsal_data.load_lvlm`
and runs the real collector end to end.

:data:`PROCESSORS` maps a family to its builder; :data:`NEEDS_TORCHVISION` names the families
whose processor transformers ships only with torchvision image processing (none built here).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

from .prompts import LLAVA_CHAT_TEMPLATE
from .testing import (
    _CHATML,
    _CHATML_TOKENS,
    BUILDERS,
    VOCAB,
    _word_tokenizer,
    image_only,
    tiny_internvl_processor,
    tiny_paligemma_processor,
    tiny_qwen2_vl_processor,
    tiny_smolvlm_processor,
)

#: Families whose processor needs torchvision in transformers 5.25 (Pixtral's, LFM2-VL's image processors
#: exist only as torchvision ones): without it ``load_lvlm`` refuses them in one line. family ->
#: (processor class, image processor class).
NEEDS_TORCHVISION = {"mistral3": ("PixtralProcessor", "PixtralImageProcessor"),
                     "lfm2_vl": ("Lfm2VlProcessor", "Lfm2VlImageProcessor")}

#: Words of the LLaVA layout, given ids so that they are not unknown.
_LLAVA_WORDS = ["USER", ":", "ASSISTANT"]


def _llava_tokenizer(words: list[str]) -> Any:
    return _word_tokenizer(_LLAVA_WORDS + words, {"<image>": VOCAB - 1}, image_token="<image>")


def tiny_llava_family_processor(words: list[str]) -> Any:
    """``LlavaProcessor`` for :func:`~lvsal_data.testing.tiny_llava`: any image is one 28 px crop, 4
    image tokens, LLaVA-1.5's chat layout."""
    from .organism.build import build_processor

    return build_processor(_llava_tokenizer(words), image_size=28, patch_size=14)


def tiny_llava_next_processor(words: list[str]) -> Any:
    """``LlavaNextProcessor`` for :func:`~lvsal_data.testing.tiny_llava_next`: AnyRes with the one grid
    point of the model (base view + one tile, unpadded to the image's aspect ratio)."""
    from transformers import LlavaNextProcessor
    from transformers.models.llava_next.image_processing_pil_llava_next import LlavaNextImageProcessorPil

    images = LlavaNextImageProcessorPil(size={"shortest_edge": 28}, crop_size={"height": 28, "width": 28},
                                        image_grid_pinpoints=[[28, 28]])
    return LlavaNextProcessor(image_processor=images, tokenizer=_llava_tokenizer(words), patch_size=14,
                              vision_feature_select_strategy="default", num_additional_image_tokens=1,
                              chat_template=LLAVA_CHAT_TEMPLATE)


def tiny_llava_onevision_processor(words: list[str]) -> Any:
    """``LlavaOnevisionProcessor`` (image-only) for :func:`~lvsal_data.testing.tiny_llava_onevision`:
    AnyRes with the model's one grid point, ChatML layout."""
    from transformers import LlavaOnevisionProcessor
    from transformers.models.llava_onevision.image_processing_pil_llava_onevision import (
        LlavaOnevisionImageProcessorPil,
    )

    specials = {"<image>": VOCAB - 1, "<video>": VOCAB - 2} | _CHATML_TOKENS
    tokenizer = _word_tokenizer(words, specials, image_token="<image>", video_token="<video>")
    images = LlavaOnevisionImageProcessorPil(size={"height": 28, "width": 28}, image_grid_pinpoints=[[28, 28]])
    return image_only(LlavaOnevisionProcessor)(image_processor=images, tokenizer=tokenizer, num_image_tokens=4,
                                               vision_feature_select_strategy="full",
                                               chat_template=_CHATML.replace("{image}", "<image>"))


#: The Qwen-VL special tokens at the ids of ``_qwen_vl``'s configs, and their names on the tokenizer.
_QWEN_SPECIALS = {"<|image_pad|>": VOCAB - 1, "<|video_pad|>": VOCAB - 2, "<|vision_start|>": VOCAB - 3,
                  "<|vision_end|>": VOCAB - 4} | _CHATML_TOKENS
_QWEN_NAMED = {"image_token": "<|image_pad|>", "video_token": "<|video_pad|>", "vision_bos_token": "<|vision_start|>",
               "vision_eos_token": "<|vision_end|>"}


def _qwen3_5_tokenizer() -> Any:
    """A character-level ``Qwen3_5Tokenizer`` (byte-level BPE without merges: letters, space, punctuation)
    with the Qwen-VL special tokens. transformers loads Qwen3.5's tokenizer as this class whatever a
    folder's config says, so a word-level tokenizer would not survive ``save_pretrained``."""
    import string

    from tokenizers import AddedToken
    from transformers.models.qwen3_5.tokenization_qwen3_5 import Qwen3_5Tokenizer

    specials = {"<pad>": 0, "<s>": 1, "</s>": 2} | _QWEN_SPECIALS
    free = iter(i for i in range(VOCAB) if i not in specials.values())
    chars = list(string.ascii_letters) + ["Ġ", ".", ",", ":", "'", "?", "!", "Ċ"]  # byte-level space, newline
    tokenizer = Qwen3_5Tokenizer(vocab=specials | {c: next(free) for c in chars}, merges=[], unk_token="<pad>",
                                 eos_token="</s>", pad_token="<pad>", extra_special_tokens=_QWEN_NAMED)
    tokenizer.add_special_tokens({"additional_special_tokens": [AddedToken(t, special=True, normalized=False)
                                                                for t in specials]})
    return tokenizer


def _qwen_processor(cls: Any, words: list[str], patch: int, tokenizer: Any = None, template: str | None = None) -> Any:
    """An image-only Qwen-VL-style processor: any image becomes a (1, 4, 4) grid of ``patch`` px patches,
    4 image tokens between the vision start and end tokens (the ids of ``_qwen_vl``'s configs)."""
    from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import Qwen2VLImageProcessorPil

    tokenizer = tokenizer or _word_tokenizer(words, _QWEN_SPECIALS, **_QWEN_NAMED)
    side = 4 * patch
    images = Qwen2VLImageProcessorPil(size={"shortest_edge": side * side, "longest_edge": side * side},
                                      patch_size=patch, merge_size=2, temporal_patch_size=2)
    template = template or _CHATML.replace("{image}", "<|vision_start|> <|image_pad|> <|vision_end|>")
    return image_only(cls)(image_processor=images, tokenizer=tokenizer, chat_template=template)


#: Qwen's own ChatML layout, unspaced (a character-level tokenizer spells every space and newline).
_QWEN_CHATML = ("{% for m in messages %}<|im_start|>{{ m['role'] }}\n{% for c in m['content'] %}"
                "{% if c['type'] == 'image' %}<|vision_start|><|image_pad|><|vision_end|>{% else %}{{ c['text'] }}"
                "{% endif %}{% endfor %}<|im_end|>\n{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n"
                "{% endif %}")


def tiny_qwen2_5_vl_processor(words: list[str]) -> Any:
    """``Qwen2_5_VLProcessor`` (image-only) for :func:`~lvsal_data.testing.tiny_qwen2_5_vl`."""
    from transformers import Qwen2_5_VLProcessor

    return _qwen_processor(Qwen2_5_VLProcessor, words, patch=14)


def tiny_qwen3_vl_processor(words: list[str]) -> Any:
    """``Qwen3VLProcessor`` (image-only) for :func:`~lvsal_data.testing.tiny_qwen3_vl`: 16 px patches."""
    from transformers import Qwen3VLProcessor

    return _qwen_processor(Qwen3VLProcessor, words, patch=16)


def tiny_qwen3_5_processor(words: list[str]) -> Any:
    """``Qwen3VLProcessor`` (image-only; Qwen3.5 uses Qwen3-VL's) for :func:`~lvsal_data.testing.tiny_qwen3_5`,
    over a character-level ``Qwen3_5Tokenizer`` (``words`` are spelt out)."""
    from transformers import Qwen3VLProcessor

    return _qwen_processor(Qwen3VLProcessor, words, patch=16, tokenizer=_qwen3_5_tokenizer(), template=_QWEN_CHATML)


def tiny_idefics3_processor(words: list[str]) -> Any:
    """``Idefics3Processor`` for :func:`~lvsal_data.testing.tiny_idefics3`: any image becomes one 32 x 32
    view, ``<fake_token_around_image> <global-img>`` + 4 ``<image>`` + ``<fake_token_around_image>``."""
    from transformers import Idefics3Processor
    from transformers.models.idefics3.image_processing_pil_idefics3 import Idefics3ImageProcessorPil

    specials = {"<image>": VOCAB - 1, "<fake_token_around_image>": VOCAB - 2, "<global-img>": VOCAB - 3,
                "<end_of_utterance>": VOCAB - 4, "User": VOCAB - 6, "Assistant": VOCAB - 7}
    tokenizer = _word_tokenizer([":"] + words, specials, image_token="<image>")
    images = Idefics3ImageProcessorPil(size={"longest_edge": 32}, max_image_size={"longest_edge": 32},
                                       do_image_splitting=False)
    template = ("{% for m in messages %}{{ m['role'] | capitalize }} : {% for c in m['content'] %}"
                "{% if c['type'] == 'image' %}<image> {% else %}{{ c['text'] }} {% endif %}{% endfor %}"
                "<end_of_utterance> {% endfor %}{% if add_generation_prompt %}Assistant : {% endif %}")
    return Idefics3Processor(image_processor=images, tokenizer=tokenizer, image_seq_len=4, chat_template=template)


def tiny_gemma3_processor(words: list[str]) -> Any:
    """``Gemma3Processor`` for :func:`~lvsal_data.testing.tiny_gemma3`: any image is one 28 px view,
    ``<start_of_image>`` + 4 ``<image_soft_token>`` + ``<end_of_image>``; the template opens with
    ``<bos>`` as Gemma's does (and the tokenizer adds one too, as Gemma's does)."""
    from tokenizers.processors import TemplateProcessing
    from transformers import Gemma3Processor
    from transformers.models.gemma3.image_processing_pil_gemma3 import Gemma3ImageProcessorPil

    specials = {"<image_soft_token>": VOCAB - 1, "<start_of_image>": VOCAB - 2, "<end_of_image>": VOCAB - 3,
                "<start_of_turn>": VOCAB - 4, "<end_of_turn>": VOCAB - 5, "user": VOCAB - 6, "model": VOCAB - 7}
    tokenizer = _word_tokenizer(words, specials, image_token="<image_soft_token>", boi_token="<start_of_image>",
                                eoi_token="<end_of_image>")
    tokenizer.backend_tokenizer.post_processor = TemplateProcessing(single="<s> $A", special_tokens=[("<s>", 1)])
    images = Gemma3ImageProcessorPil(size={"height": 28, "width": 28})
    template = ("{{ bos_token }}{% for m in messages %}<start_of_turn> {{ 'model' if m['role'] == 'assistant' else "
                "m['role'] }} {% for c in m['content'] %}{% if c['type'] == 'image' %}<start_of_image> "
                "{% else %}{{ c['text'] }} {% endif %}{% endfor %}<end_of_turn> {% endfor %}"
                "{% if add_generation_prompt %}<start_of_turn> model {% endif %}")
    return Gemma3Processor(image_processor=images, tokenizer=tokenizer, image_seq_length=4, chat_template=template)


def tiny_mllama_processor(words: list[str]) -> Any:
    """``MllamaProcessor`` for :func:`~lvsal_data.testing.tiny_mllama`: any image is one 28 px tile, the
    prompt holds one ``<|image|>`` token; the template opens with the BOS, as Llama 3.2's does (and
    the tokenizer adds one too, as Llama's does)."""
    from tokenizers.processors import TemplateProcessing
    from transformers import MllamaProcessor
    from transformers.models.mllama.image_processing_pil_mllama import MllamaImageProcessorPil

    specials = {"<|image|>": VOCAB - 1, "<|start_header_id|>": VOCAB - 2, "<|end_header_id|>": VOCAB - 3,
                "<|eot_id|>": VOCAB - 4, "user": VOCAB - 5, "assistant": VOCAB - 6, "system": VOCAB - 7}
    tokenizer = _word_tokenizer(words, specials, image_token="<|image|>")
    tokenizer.backend_tokenizer.post_processor = TemplateProcessing(single="<s> $A", special_tokens=[("<s>", 1)])
    images = MllamaImageProcessorPil(size={"height": 28, "width": 28}, max_image_tiles=1)
    template = ("{{ bos_token }}{% for m in messages %}<|start_header_id|> {{ m['role'] }} <|end_header_id|> "
                "{% for c in m['content'] %}{% if c['type'] == 'image' %}<|image|> {% else %}{{ c['text'] }} "
                "{% endif %}{% endfor %}<|eot_id|> {% endfor %}"
                "{% if add_generation_prompt %}<|start_header_id|> assistant <|end_header_id|> {% endif %}")
    return MllamaProcessor(image_processor=images, tokenizer=tokenizer, chat_template=template)


#: family -> builder of its tiny processor (from a word list).
PROCESSORS: dict[str, Callable[[list[str]], Any]] = {
    "llava": tiny_llava_family_processor,
    "llava_next": tiny_llava_next_processor,
    "llava_onevision": tiny_llava_onevision_processor,
    "qwen2_vl": lambda words: tiny_qwen2_vl_processor(words, video=False),
    "qwen2_5_vl": tiny_qwen2_5_vl_processor,
    "qwen3_vl": tiny_qwen3_vl_processor,
    "qwen3_5": tiny_qwen3_5_processor,
    "internvl": lambda words: tiny_internvl_processor(words, video=False),
    "idefics3": tiny_idefics3_processor,
    "smolvlm": lambda words: tiny_smolvlm_processor(words, video=False),
    "gemma3": tiny_gemma3_processor,
    "paligemma": tiny_paligemma_processor,
    "mllama": tiny_mllama_processor,
}


def save_tiny(family: str, folder: str | Path, words: list[str]) -> Path:
    """Save the tiny model of ``family`` and its processor with ``save_pretrained`` into ``folder``.

    A family of :data:`NEEDS_TORCHVISION` gets its tokenizer and the processor configs naming its
    processor classes instead, as a Hub folder holds them (loading them needs torchvision).
    """
    import json

    folder = Path(folder)
    BUILDERS[family]().model.save_pretrained(folder)
    if family in PROCESSORS:
        PROCESSORS[family](words).save_pretrained(folder)
    else:
        processor, images = NEEDS_TORCHVISION[family]
        _word_tokenizer(words, {}).save_pretrained(folder)
        (folder / "processor_config.json").write_text(json.dumps({"processor_class": processor}))
        (folder / "preprocessor_config.json").write_text(json.dumps({"image_processor_type": images,
                                                                      "processor_class": processor}))
    return folder


__all__ = ["NEEDS_TORCHVISION", "PROCESSORS", "save_tiny"]
