"""The prompts of the protocols papers report, in one place.

- CHAIR (OPERA's protocol): :data:`CAPTION_PROMPT`, 500 seeded COCO val2014 images,
  ``max_new_tokens`` 512 (see :mod:`lvsal_data.sources.coco`).
- POPE (LLaVA's protocol): the question plus :data:`POPE_SUFFIX`.
- System prompts: each family's standard one (:data:`VICUNA_SYSTEM_PROMPT` for LLaVA-1.5, whose
  35 system tokens the paper counts as Sys_L), chosen per model by :func:`resolve_system_prompt`.
"""

from __future__ import annotations

CAPTION_PROMPT = "Please describe this image in detail."
POPE_SUFFIX = " Please just answer yes or no."

#: LLaVA-1.5's conversation template (``vicuna_v1``) opens with this system prompt; OPERA and the
#: paper evaluate LLaVA-1.5 with it (the paper's Sys_L = 35 tokens).
VICUNA_SYSTEM_PROMPT = ("A chat between a curious human and an artificial intelligence assistant. "
                        "The assistant gives helpful, detailed, and polite answers to the human's questions.")

#: ``--system-prompt`` values that mean "no system message".
NO_SYSTEM_PROMPT = ("", "none")

#: LLaVA-1.5's chat layout as llava-hf's template renders it: an optional system text followed by
#: a space, then ``USER: <image>\n{prompt} ASSISTANT:``. The organism and the tiny test models use it.
LLAVA_CHAT_TEMPLATE = (
    "{% for m in messages %}{% if m['role'] == 'system' %}{% for c in m['content'] %}{{ c['text'] }}{% endfor %} "
    "{% elif m['role'] == 'user' %}USER: "
    "{% for c in m['content'] %}{% if c['type'] == 'image' %}<image>\n{% else %}{{ c['text'] }}{% endif %}"
    "{% endfor %} {% else %}ASSISTANT: {% for c in m['content'] %}{{ c['text'] }}{% endfor %}</s>{% endif %}"
    "{% endfor %}{% if add_generation_prompt %}ASSISTANT:{% endif %}"
)


def resolve_system_prompt(option: str | None, standard: str | None) -> str | None:
    """The system prompt of a run: ``option`` None means the model's ``standard`` one; ``""`` or
    ``"none"`` means none; anything else is the prompt itself.

    Example:
        >>> resolve_system_prompt(None, VICUNA_SYSTEM_PROMPT) == VICUNA_SYSTEM_PROMPT
        True
        >>> resolve_system_prompt("none", VICUNA_SYSTEM_PROMPT) is None
        True
    """
    if option is None:
        return standard
    return None if option.strip().lower() in NO_SYSTEM_PROMPT else option


__all__ = ["CAPTION_PROMPT", "LLAVA_CHAT_TEMPLATE", "NO_SYSTEM_PROMPT", "POPE_SUFFIX", "VICUNA_SYSTEM_PROMPT",
           "resolve_system_prompt"]
