"""Load any supported HF LVLM for tracing and find the token spans of its prompts.

Per-family knowledge lives in one table, :data:`lvsal_data.families.FAMILIES`; everything here
reads the real token layout.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import torch

from .attention import EAGER_COMPATIBLE
from .errors import InputError, UnsupportedModelError
from .families import family_of

#: Name that resolves to the organism shipped inside the package.
ORGANISM = "organism"


def image_token_id(config: Any) -> int:
    """The placeholder token id that the processor repeats once per image feature."""
    for name in ("image_token_id", "image_token_index"):
        value = getattr(config, name, None)
        if isinstance(value, int):
            return value
    raise UnsupportedModelError(
        f"config of model_type {getattr(config, 'model_type', '?')!r} has no image_token_id"
    )


def num_text_layers(config: Any) -> int:
    """Number of decoder layers of the language model."""
    return int(config.get_text_config().num_hidden_layers)


def image_marker_ids(config: Any, processor: Any = None) -> frozenset[int]:
    """Ids of the tokens that belong to the image segment besides the image placeholder: the
    family's marker config attributes, the processor's ``image_token_ids`` (transformers lists
    InternVL's ``<img>`` / ``</img>`` and Pixtral's break / end tokens there), and the family's
    marker token strings as the tokenizer knows them."""
    info = family_of(config)
    ids = {getattr(config, name, None) for name in info.image_markers}
    if processor is not None:
        ids.update(getattr(processor, "image_token_ids", None) or ())
        tokenizer = getattr(processor, "tokenizer", processor)
        vocab = tokenizer.get_vocab() if hasattr(tokenizer, "get_vocab") else {}
        ids.update(vocab.get(token) for token in info.marker_tokens)
    ids.discard(None)
    return frozenset(int(i) for i in ids) - {image_token_id(config)}


@dataclass(frozen=True)
class Spans:
    """Half-open column ranges ``[start, end)`` of a prompt's segments.

    ``system`` is the text before the image, ``image`` the image placeholder run,
    ``instruction`` the text after the image up to the answer; the answer starts at
    ``instruction[1]`` (``answer_start``).
    """

    system: tuple[int, int]
    image: tuple[int, int]
    instruction: tuple[int, int]

    @property
    def answer_start(self) -> int:
        return self.instruction[1]

    def as_dict(self) -> dict[str, list[int]]:
        return {"system": list(self.system), "image": list(self.image), "instruction": list(self.instruction)}


def find_spans(input_ids: torch.Tensor, config: Any, answer_start: int | None = None,
               attention_mask: torch.Tensor | None = None, markers: frozenset[int] | None = None) -> Spans:
    """Segment a prompt from its real token layout.

    Args:
        input_ids: ``(1, seq)`` or ``(seq,)`` token ids of the prompt (and optionally the answer).
        config: The model config (gives the image token id and its markers).
        answer_start: Index of the first answer token; defaults to ``seq`` (prompt only).
        attention_mask: The prompt's mask; left padding is no segment's (the system segment
            starts after it).
        markers: Ids of image marker tokens (default: :func:`image_marker_ids` of the config
            alone; :class:`LVLM` passes the processor's too).

    Returns:
        The :class:`Spans`; the image span runs from the first to the last image
        placeholder, widened by the family's image markers when they are adjacent.

    Raises:
        InputError: No image token in the prompt, or the answer starts inside the image.

    Example:
        >>> spans = find_spans(inputs["input_ids"], model.config)  # doctest: +SKIP
    """
    ids = input_ids.reshape(-1)
    seq = int(ids.numel())
    answer_start = seq if answer_start is None else int(answer_start)
    positions = (ids == image_token_id(config)).nonzero().flatten()
    if positions.numel() == 0:
        raise InputError("the prompt holds no image token; build it with LVLM.prepare(image, prompt)")
    start, end = int(positions[0]), int(positions[-1]) + 1
    markers = image_marker_ids(config) if markers is None else markers
    while start > 0 and int(ids[start - 1]) in markers:
        start -= 1
    while end < min(seq, answer_start) and int(ids[end]) in markers:
        end += 1
    if not end < answer_start <= seq:
        raise InputError(
            f"answer_start={answer_start} must lie after the image (ends at {end}) and within the "
            f"sequence (length {seq})"
        )
    pad = 0 if attention_mask is None else int(attention_mask.reshape(-1).ne(0).long().argmax())
    if pad > start:
        raise InputError(f"the attention mask hides the image (left padding of {pad} tokens, image at {start})")
    return Spans(system=(pad, start), image=(start, end), instruction=(end, answer_start))


@dataclass
class LVLM:
    """A loaded model ready for tracing: ``.model`` (eager attention), ``.processor``.

    Use :meth:`prepare` to turn an image and a prompt into model inputs and spans.
    """

    model: Any
    processor: Any
    name: str
    revision: str | None = None
    #: The system prompt sent when none is chosen: the family's standard one (the organism's: none).
    standard_system_prompt: str | None = None

    def __post_init__(self) -> None:
        self.markers = image_marker_ids(self.model.config, self.processor)

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    @property
    def dtype(self) -> torch.dtype:
        return next(self.model.parameters()).dtype

    @property
    def num_layers(self) -> int:
        return num_text_layers(self.model.config)

    @property
    def tokenizer(self) -> Any:
        return getattr(self.processor, "tokenizer", self.processor)

    def chat_prompt(self, prompt: str, system_prompt: str | None = None) -> str:
        """The prompt text in the model's own chat template, generation prompt added.

        Args:
            prompt: The user's text.
            system_prompt: A system message to open the conversation with (None: none).

        Raises:
            UnsupportedModelError: The chat template drops the system message.
        """
        if getattr(self.processor, "chat_template", None) is None:
            # PaliGemma: no template; its processor adds the image tokens and BOS to the raw prompt
            return f"{system_prompt} {prompt}" if system_prompt else prompt
        messages = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": prompt}]}]
        if system_prompt:
            messages.insert(0, {"role": "system", "content": [{"type": "text", "text": system_prompt}]})
        text = self.processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
        if system_prompt and system_prompt not in text:
            raise UnsupportedModelError(f"the chat template of {self.name} drops system messages; "
                                        "pass --system-prompt none")
        return text

    def _special_tokens(self, texts: Sequence[str]) -> dict[str, bool]:
        """Processor arguments that keep a chat template's own BOS single: a template that opens
        with it (Gemma 3, Llama 3.2 Vision) plus a tokenizer that adds one gave ``<bos><bos>``."""
        bos = getattr(self.tokenizer, "bos_token", None)
        return {"add_special_tokens": False} if bos and all(t.startswith(bos) for t in texts) else {}

    def _on_device(self, batch: Any) -> dict[str, Any]:
        """A processor's output as model inputs: tensors on the model's device, pixel values in its
        dtype, without the training labels PaliGemma's processor adds (all -100)."""
        inputs = {k: (v.to(self.device) if torch.is_tensor(v) else v) for k, v in batch.items() if k != "labels"}
        if torch.is_floating_point(inputs.get("pixel_values", torch.empty(0, dtype=torch.long))):
            inputs["pixel_values"] = inputs["pixel_values"].to(self.dtype)
        return inputs

    def prepare(self, image: Any, prompt: str, system_prompt: str | None = None) -> "Prepared":
        """Model inputs for one image and one user prompt (batch of 1) and their spans.

        Args:
            image: A PIL image (or anything the processor accepts).
            prompt: The user's text, e.g. ``"Please describe this image in detail."``.
            system_prompt: A system message before it (None: none; the collector sends
                :attr:`standard_system_prompt` unless told otherwise).

        Returns:
            :class:`Prepared` with ``.inputs`` (on the model's device) and ``.spans``.
        """
        text = self.chat_prompt(prompt, system_prompt)
        inputs = self._on_device(self.processor(images=[image], text=[text], return_tensors="pt",
                                                **self._special_tokens([text])))
        spans = find_spans(inputs["input_ids"], self.model.config, markers=self.markers)
        return Prepared(inputs=inputs, spans=spans, text=text)

    def prepare_batch(self, images: Sequence[Any], prompts: Sequence[str],
                      system_prompt: str | None = None) -> "PreparedBatch":
        """Model inputs for B images and prompts, left-padded into one batch, and each one's spans.

        The processor pads the prompts on the left (generation appends on the right) and the
        attention mask marks the padding; each sample's spans are in the padded coordinates
        (``padding[b]`` tokens to the right of its batch-1 ones).

        Args:
            images: B PIL images.
            prompts: B user prompts.
            system_prompt: A system message before every prompt (None: none).

        Returns:
            :class:`PreparedBatch` with ``.inputs`` (on the model's device), ``.spans`` and
            ``.padding``.
        """
        if len(images) != len(prompts) or not prompts:
            raise InputError(f"prepare_batch needs as many images as prompts (got {len(images)} and {len(prompts)})")
        if len(prompts) == 1:
            one = self.prepare(images[0], prompts[0], system_prompt)
            return PreparedBatch(inputs=one.inputs, spans=[one.spans], padding=[0], texts=[one.text])
        texts = [self.chat_prompt(p, system_prompt) for p in prompts]
        tokenizer = self.tokenizer
        if getattr(tokenizer, "pad_token_id", None) is None:  # padded keys are masked: any id will do
            tokenizer.pad_token = tokenizer.eos_token
        # one list of images per prompt: some processors (Gemma 3, SmolVLM) read a flat list as the
        # images of a single prompt
        batch = self.processor(images=[[image] for image in images], text=texts, return_tensors="pt",
                               padding=True, padding_side="left", **self._special_tokens(texts))
        inputs = self._on_device(batch)
        mask = inputs.get("attention_mask")
        if mask is None:
            raise UnsupportedModelError(f"the processor of {self.name} returns no attention_mask; cannot batch it")
        spans = [find_spans(inputs["input_ids"][b], self.model.config, attention_mask=mask[b], markers=self.markers)
                 for b in range(len(prompts))]
        return PreparedBatch(inputs=inputs, spans=spans, padding=[s.system[0] for s in spans], texts=texts)


@dataclass
class Prepared:
    """Model inputs for one prompt (batch of 1) with the spans of its segments."""

    inputs: dict[str, Any]
    spans: Spans
    text: str = ""


@dataclass
class PreparedBatch:
    """Model inputs for B prompts, left-padded into one batch, with each one's spans (in the
    padded coordinates) and its number of padding tokens."""

    inputs: dict[str, Any]
    spans: list[Spans]
    padding: list[int]
    texts: list[str]

    def unpadded_spans(self, b: int) -> Spans:
        """Sample ``b``'s spans as its batch-1 prompt has them."""
        return shift_spans(self.spans[b], -self.padding[b])


def shift_spans(spans: Spans, offset: int) -> Spans:
    """``spans`` moved ``offset`` columns to the right."""
    move = lambda r: (r[0] + offset, r[1] + offset)  # noqa: E731
    return Spans(system=move(spans.system), image=move(spans.image), instruction=move(spans.instruction))


def _resolve(name_or_path: str) -> str:
    if name_or_path == ORGANISM:
        from .organism import weights_dir  # imported lazily: the organism is optional at import

        return str(weights_dir())
    return name_or_path


def parse_device(device: str | torch.device | None) -> torch.device:
    """``device`` as a ``torch.device`` (default: CUDA when available), refusing a CUDA device
    this machine does not have with one clear line."""
    if device is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        parsed = torch.device(device)
    except RuntimeError:
        raise InputError(f"unknown device {device!r}; use cpu, cuda or cuda:N") from None
    if parsed.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if (parsed.index or 0) >= count:
            raise InputError(f"device {device!r} requested, but this machine has {count} CUDA device(s)")
    return parsed


def _parse_dtype(dtype: str | torch.dtype | None, device: torch.device) -> torch.dtype:
    if isinstance(dtype, torch.dtype):
        return dtype
    if dtype in (None, "auto"):
        return torch.float32 if device.type == "cpu" else torch.bfloat16
    table = {"float32": torch.float32, "fp32": torch.float32, "float16": torch.float16,
             "fp16": torch.float16, "bfloat16": torch.bfloat16, "bf16": torch.bfloat16}
    try:
        return table[dtype]
    except KeyError:
        raise InputError(f"unknown dtype {dtype!r}; choose one of {', '.join(table)}") from None


def load_lvlm(
    name_or_path: str,
    device: str | torch.device | None = None,
    dtype: str | torch.dtype | None = None,
    *,
    revision: str | None = None,
    trust_remote_code: bool = False,
) -> LVLM:
    """Load an LVLM and its processor with eager attention, ready for saliency tracing.

    Args:
        name_or_path: A local folder, a Hub id, or ``"organism"`` (the shipped model).
        device: ``"cpu"``, ``"cuda"``, ``"cuda:1"``...; default: CUDA when available.
        dtype: ``float32`` / ``float16`` / ``bfloat16``; default float32 on CPU, bfloat16 on GPU.
        revision: Hub revision to pin (recorded in trace manifests).
        trust_remote_code: Only when you trust the repository; off by default.

    Returns:
        An :class:`LVLM` in eval mode.

    Raises:
        UnsupportedModelError: The family is unknown or cannot give eager attention weights.

    Example:
        >>> lvlm = load_lvlm("organism")  # doctest: +SKIP
        >>> prepared = lvlm.prepare(image, "Please describe this image in detail.")  # doctest: +SKIP
    """
    from transformers import AutoConfig, AutoModelForImageTextToText

    device = parse_device(device)
    torch_dtype = _parse_dtype(dtype, device)
    path = _resolve(name_or_path)
    kwargs: dict[str, Any] = {"revision": revision, "trust_remote_code": trust_remote_code}
    config = AutoConfig.from_pretrained(path, **kwargs)
    family_of(config)  # fail before downloading weights
    processor = load_processor(path, config, **kwargs)  # and before loading them (a processor may need torchvision)
    try:
        model = AutoModelForImageTextToText.from_pretrained(
            path, attn_implementation="eager", dtype=torch_dtype, **kwargs
        )
    except ValueError as err:
        if "eager" in str(err) or "attn_implementation" in str(err):
            raise UnsupportedModelError(f"{name_or_path}: cannot load with eager attention ({err})") from None
        raise
    check_eager(model)
    model.to(device).eval()
    # the organism was trained without a system prompt; every other model gets its family's standard one
    standard = None if name_or_path == ORGANISM else family_of(config).system_prompt
    return LVLM(model=model, processor=processor, name=name_or_path, revision=revision,
                standard_system_prompt=standard)


def load_processor(path: str, config: Any, **kwargs: Any) -> Any:
    """The model's processor, as ``AutoProcessor`` loads it; without torchvision, its image-only part.

    Video processors (Qwen2-VL's, InternVL's, ...) need torchvision, which tracing images does
    not: without it the family's own processor class is built from its tokenizer and image
    processor alone (transformers picks the PIL image backend), so ``load_lvlm`` works on a
    plain install.

    Args:
        path: The model folder or Hub id.
        config: The model config (its ``model_type`` names the processor class).
        kwargs: ``from_pretrained`` arguments (revision, trust_remote_code).
    """
    from transformers import AutoProcessor
    from transformers.utils import is_torchvision_available

    try:
        cls = _processor_class(config)
        if cls is None or is_torchvision_available() or not any("video" in name for name in cls.get_attributes()):
            return AutoProcessor.from_pretrained(path, **kwargs)
        return image_only(cls).from_pretrained(path, **kwargs)
    except (ImportError, ValueError) as err:
        if "torchvision" not in str(err).lower():
            raise
        # Pixtral's (Mistral 3) and LFM2-VL's image processors exist only as torchvision ones
        raise UnsupportedModelError(f"{path}: the processor of model_type {config.model_type!r} needs torchvision, "
                                    "which is not installed; install the torchvision build that matches your torch"
                                    ) from None


def image_only(cls: type) -> type:
    """``cls``, a transformers processor class, without its video processor: a subclass of the same
    name whose sub-processors are the others (it loads and runs images and text as ``cls``); its
    video processor attribute is a stand-in that refuses videos."""
    kept = [name for name in cls.get_attributes() if "video" not in name]
    video = [name for name in cls.get_attributes() if "video" in name]

    def from_dict(sub: type, processor_dict: dict[str, Any], **kwargs: Any) -> Any:
        # the video processors load as None (SmolVLM's __init__ requires the argument)
        return super(sub, sub).from_dict({**processor_dict, **dict.fromkeys(video)}, **kwargs)

    namespace = {"from_dict": classmethod(from_dict), "get_attributes": classmethod(lambda _: list(kept)),
                 "__module__": cls.__module__, "__doc__": cls.__doc__}
    return type(cls.__name__, (cls,), namespace | {name: _NoVideoProcessor() for name in video})


class _NoVideoProcessor:
    """Stands in for a video processor that needs torchvision: its defaults read as unset (SmolVLM's
    chat template reads them), a video refused in one line."""

    num_frames = fps = None

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        raise UnsupportedModelError("videos need the family's video processor, which needs torchvision; "
                                    "install torchvision")


def _processor_class(config: Any) -> Any:
    """transformers' processor class of the config's model type (None: not a built-in one)."""
    from transformers.models.auto.processing_auto import PROCESSOR_MAPPING_NAMES, processor_class_from_name

    name = PROCESSOR_MAPPING_NAMES.get(getattr(config, "model_type", None))
    return processor_class_from_name(name) if name else None


def check_eager(model: Any) -> None:
    """Raise :class:`UnsupportedModelError` unless the language model runs eager attention."""
    impl = getattr(model.config.get_text_config(), "_attn_implementation", None)
    if impl not in EAGER_COMPATIBLE:
        raise UnsupportedModelError(
            f"the language model runs {impl!r} attention; saliency needs the post-softmax weights "
            "of eager attention. Load it with attn_implementation='eager' (load_lvlm does)."
        )


__all__ = ["LVLM", "Prepared", "PreparedBatch", "Spans", "shift_spans", "find_spans", "load_lvlm", "check_eager"]
