"""Object mentions in generated text (CHAIR-style) and per-token hallucination labels.

:func:`find_mentions` finds the COCO objects a caption names, deciding as the reference CHAIR
script does (see :mod:`lvsal_data.vocab`): its words, synonyms and plurals; multi-word names,
the longest phrase winning (a *hot dog* is not a *dog*, a *laptop computer* one laptop); near
misses that name nothing (*hot tub*); qualifiers (a *baby elephant* is no person). A hyphenated
compound is one word (*man-made*, *dog-friendly* name nothing) unless it spells a name
(*hot-dog*). :func:`label_tokens` maps mention character spans onto tokenizer offsets and labels
every answer token.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from functools import lru_cache
from itertools import pairwise

from .vocab import ADJECTIVAL_USES, DROPPED_WITH, QUALIFIERS, pluralize, surface_forms

#: A word: letters, or a hyphenated compound of them ("man-made", "bird's-eye", "hot-dogs").
_WORD = re.compile(r"[A-Za-z]+(?:(?:'[A-Za-z]+)?-[A-Za-z]+)+|[A-Za-z]+")


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


@lru_cache(maxsize=1)
def _max_words() -> int:
    return max(len(phrase.split(" ")) for phrase in _forms())


@lru_cache(maxsize=1)
def _adjectival() -> dict[str, frozenset[str]]:
    return {w: frozenset(nxt) | {pluralize(n) for n in nxt} for w, nxt in ADJECTIVAL_USES.items()}


def _key(word: str) -> str:
    """The word as the phrase table spells it: a compound that spells a name ("hot-dog",
    "teddy-bear") becomes that name; any other compound stays one word that names nothing."""
    word = word.lower()
    if "-" in word:
        for joined in (word.replace("-", " "), word.replace("-", "")):
            if _forms().get(joined) is not None:
                return joined
    return word


def _phrase_at(keys: list[str], spaced: list[bool], i: int) -> tuple[int, str | None] | None:
    """Longest known phrase starting at word i, its words apart by spaces only (no phrase
    crosses punctuation): (number of words, category or None)."""
    longest = 1
    while longest < _max_words() and i + longest < len(keys) and spaced[i + longest - 1]:
        longest += 1
    forms = _forms()
    for n in range(longest, 0, -1):
        phrase = " ".join(keys[i : i + n])
        if phrase in forms:
            return n, forms[phrase]
    return None


def _qualifies(keys: list[str], spaced: list[bool], i: int) -> bool:
    """Whether word i only qualifies the next word ("baby" in "baby elephant", "orange" in
    "orange shirt") and so names nothing itself (vocab.QUALIFIERS, vocab.ADJECTIVAL_USES)."""
    if keys[i] not in QUALIFIERS or i + 1 >= len(keys) or not spaced[i]:
        return False
    if keys[i + 1] in _adjectival().get(keys[i], ()):
        return True
    qualified = QUALIFIERS[keys[i]]
    nxt = _phrase_at(keys, spaced, i + 1)
    return nxt is not None and nxt[1] is not None and (qualified is None or nxt[1] in qualified)


def _drop_cancelled(mentions: list[Mention]) -> list[Mention]:
    """Drop the mentions that a later word cancels (vocab.DROPPED_WITH: the seat of a toilet)."""
    said = {w for m in mentions for w in re.split(r"[\s-]+", m.word.lower())}
    for word, cancel in DROPPED_WITH.items():
        if said & {cancel, pluralize(cancel)}:
            mentions = [m for m in mentions if m.word.lower() not in (word, pluralize(word))]
    return mentions


def find_mentions(text: str) -> list[Mention]:
    """Object mentions in ``text``, in order.

    Args:
        text: A caption or answer.

    Returns:
        Non-overlapping :class:`Mention` objects.

    Example:
        >>> text = "Two puppies chase a hot dog near a teddy bear."
        >>> [(m.word, m.category) for m in find_mentions(text)]
        [('puppies', 'dog'), ('hot dog', 'hot dog'), ('teddy bear', 'teddy bear')]
        >>> [m.category for m in find_mentions("A man-made pond, a baby elephant, a baseball cap.")]
        ['elephant']
    """
    words = list(_WORD.finditer(text))
    keys = [_key(w.group()) for w in words]
    spaced = [text[a.end() : b.start()].isspace() for a, b in pairwise(words)]
    mentions: list[Mention] = []
    i = 0
    while i < len(words):
        found = _phrase_at(keys, spaced, i)
        if found is None:
            i += 1
            continue
        n, category = found
        if n == 1 and _qualifies(keys, spaced, i):
            i += 1
            continue
        if category is not None:
            start, end = words[i].start(), words[i + n - 1].end()
            mentions.append(Mention(start, end, text[start:end], category))
        i += n
    return _drop_cancelled(mentions)


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
