"""The organism's parts: a byte-level BPE tokenizer, a LLaVA processor and a small LLaVA config.

All real transformers / tokenizers classes; the shipped folder loads with
``AutoModelForImageTextToText.from_pretrained`` and ``AutoProcessor.from_pretrained``.
"""

from __future__ import annotations

from typing import Any, Iterable

from ..prompts import LLAVA_CHAT_TEMPLATE
from .world import IMAGE_SIZE

PATCH_SIZE = 12
N_IMAGE_TOKENS = (IMAGE_SIZE // PATCH_SIZE) ** 2  # 64
SPECIAL_TOKENS = ["<pad>", "<s>", "</s>", "<unk>", "<image>"]
VOCAB_SIZE = 640


def build_tokenizer(corpus: Iterable[str], vocab_size: int = VOCAB_SIZE) -> Any:
    """Train a byte-level BPE on ``corpus`` and wrap it as a fast HF tokenizer."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE(unk_token=None))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=SPECIAL_TOKENS,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator(corpus, trainer)
    return PreTrainedTokenizerFast(
        tokenizer_object=tok, bos_token="<s>", eos_token="</s>", unk_token="<unk>", pad_token="<pad>",
        extra_special_tokens={"image_token": "<image>"}, model_max_length=512, padding_side="right",
    )


def build_processor(tokenizer: Any, image_size: int = IMAGE_SIZE, patch_size: int = PATCH_SIZE) -> Any:
    """A ``LlavaProcessor``: CLIP-style image processing (the organism's 96 px by default) and
    LLaVA-1.5's chat layout. The tiny test models' processor is this one at their image size."""
    from transformers import LlavaProcessor
    from transformers.models.clip.image_processing_pil_clip import CLIPImageProcessorPil

    images = CLIPImageProcessorPil(size={"shortest_edge": image_size},
                                   crop_size={"height": image_size, "width": image_size})
    return LlavaProcessor(image_processor=images, tokenizer=tokenizer, patch_size=patch_size,
                          vision_feature_select_strategy="default", chat_template=LLAVA_CHAT_TEMPLATE,
                          num_additional_image_tokens=1)


def build_model(tokenizer: Any, seed: int = 0) -> Any:
    """A freshly initialised small ``LlavaForConditionalGeneration`` (about 3.6M parameters)."""
    import torch
    from transformers import CLIPVisionConfig, LlamaConfig, LlavaConfig, LlavaForConditionalGeneration

    torch.manual_seed(seed)
    vision = CLIPVisionConfig(hidden_size=128, intermediate_size=512, num_hidden_layers=3, num_attention_heads=4,
                              image_size=IMAGE_SIZE, patch_size=PATCH_SIZE, projection_dim=128)
    text = LlamaConfig(vocab_size=len(tokenizer), hidden_size=256, intermediate_size=704, num_hidden_layers=4,
                       num_attention_heads=8, num_key_value_heads=4, max_position_embeddings=512,
                       pad_token_id=tokenizer.pad_token_id, bos_token_id=tokenizer.bos_token_id,
                       eos_token_id=tokenizer.eos_token_id, tie_word_embeddings=True)
    config = LlavaConfig(vision_config=vision, text_config=text,
                         image_token_index=tokenizer.convert_tokens_to_ids("<image>"),
                         image_seq_length=N_IMAGE_TOKENS, vision_feature_layer=-2,
                         vision_feature_select_strategy="default", tie_word_embeddings=True)
    config._attn_implementation = "eager"
    model = LlavaForConditionalGeneration(config)
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    return model
