"""Object mentions in generated text (CHAIR-style) and per-token hallucination labels.

:func:`find_mentions` finds the COCO objects a caption names: synonyms, plurals and multi-word
names (the longest phrase wins, so a *hot dog* is not a *dog* and a *teddy bear* not a
*bear*), with near misses that name nothing (*hot tub*, *orange juice*). :func:`label_tokens`
maps mention character spans onto tokenizer offsets and labels every answer token.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache
from typing import Collection, Sequence

from .vocab import surface_forms

#: Words that act as adjectives when the next word starts a mention ("an orange cat",
#: "a baby elephant"): then they name nothing themselves.
ADJECTIVES_BEFORE_MENTION = frozenset({"orange", "baby"})
_WORD = re.compile(r"[A-Za-z]+")
_MAX_WORDS = 3
LABELS = ("correct", "hallucinated", "none")


@dataclass(frozen=True)
class Mention:
    """One object mention: ``text[start:end] == word``; ``category`` is the COCO name."""

    start: int
    end: int
    word: str
    category: str


@lru_cache(maxsize=1)
def _forms() -> dict[str, str | None]:
    return surface_forms()


def _phrase_at(words: list[re.Match], i: int) -> tuple[int, str | None] | None:
    """Longest known phrase starting at word i: (number of words, category or None)."""
    forms = _forms()
    for n in range(min(_MAX_WORDS, len(words) - i), 0, -1):
        phrase = " ".join(w.group().lower() for w in words[i : i + n])
        if phrase in forms:
            return n, forms[phrase]
        if n > 1:  # "hot-dog", "teddybear": also try the words glued together
            glued = "".join(w.group().lower() for w in words[i : i + n])
            if glued in forms:
                return n, forms[glued]
    return None


def find_mentions(text: str) -> list[Mention]:
    """Object mentions in ``text``, in order.

    Args:
        text: A caption or answer.

    Returns:
        Non-overlapping :class:`Mention` objects.

    Example:
        >>> [(m.word, m.category) for m in find_mentions("Two puppies chase a hot dog near a teddy bear.")]
        [('puppies', 'dog'), ('hot dog', 'hot dog'), ('teddy bear', 'teddy bear')]
    """
    words = list(_WORD.finditer(text))
    mentions: list[Mention] = []
    i = 0
    while i < len(words):
        found = _phrase_at(words, i)
        if found is None:
            i += 1
            continue
        n, category = found
        if n == 1 and words[i].group().lower() in ADJECTIVES_BEFORE_MENTION and i + 1 < len(words):
            nxt = _phrase_at(words, i + 1)
            if nxt is not None and nxt[1] is not None:
                i += 1
                continue
        if category is not None:
            start, end = words[i].start(), words[i + n - 1].end()
            mentions.append(Mention(start, end, text[start:end], category))
        i += n
    return mentions


def mentioned_categories(text: str) -> set[str]:
    """The set of COCO categories ``text`` names."""
    return {m.category for m in find_mentions(text)}


@dataclass(frozen=True)
class TokenLabel:
    """Label of one answer token."""

    object: str | None  # canonical category of the mention the token belongs to
    label: str  # "correct" | "hallucinated" | "none"
    mention_start: bool  # first token of a mention
    word: str  # the mention's surface word ("" for tokens outside mentions)


def label_tokens(
    offsets: Sequence[tuple[int, int]], text: str, ground_truth: Collection[str]
) -> list[TokenLabel]:
    """Label caption tokens from their character offsets in ``text``.

    A token belongs to a mention when its character span overlaps the mention's span;
    the first such token is the mention start. Mentions of a category in ``ground_truth``
    are ``correct``, others ``hallucinated``; tokens outside mentions are ``none``.

    Args:
        offsets: ``(start, end)`` character offsets of each token in ``text``.
        text: The decoded answer.
        ground_truth: Categories present in the image.
    """
    truth = set(ground_truth)
    labels = [TokenLabel(None, "none", False, "")] * len(offsets)
    for m in find_mentions(text):
        first = True
        for k, (a, b) in enumerate(offsets):
            if b > m.start and a < m.end and b > a:
                kind = "correct" if m.category in truth else "hallucinated"
                labels[k] = TokenLabel(m.category, kind, first, m.word)
                first = False
    return labels


def parse_yes_no(text: str) -> str | None:
    """``"yes"`` / ``"no"`` from an answer's first word (POPE's rule), else None."""
    m = _WORD.search(text)
    if m is None:
        return None
    word = m.group().lower()
    return word if word in ("yes", "no") else None


def label_yes_no(
    offsets: Sequence[tuple[int, int]], text: str, expected: str, category: str
) -> list[TokenLabel]:
    """Label a yes/no answer: the token carrying the answer word gets the label.

    A "yes" to an absent object is ``hallucinated``; a correct answer is ``correct``;
    a wrong "no" (a miss, not a hallucination) and unparseable answers are ``none``.
    """
    labels = [TokenLabel(None, "none", False, "")] * len(offsets)
    m = _WORD.search(text)
    answer = parse_yes_no(text)
    if m is None or answer is None:
        return labels
    kind = "correct" if answer == expected else ("hallucinated" if answer == "yes" else "none")
    for k, (a, b) in enumerate(offsets):
        if b > m.start() and a < m.end() and b > a:
            labels[k] = TokenLabel(category, kind, True, m.group())
            break
    return labels
