"""Reading yes/no answers (POPE) and labelling the token that carries the answer.

The reference rule, :data:`REFERENCE` (the default), is POPE's ``evaluate.py`` (Li et al., 2023),
which LLaVA's ``eval_pope.py`` applies too: keep the first sentence (the text before the first
"."), drop commas, split on spaces; the answer is "no" when those words contain ``No``, ``no`` or
``not``, and "yes" otherwise. Every answer gets a reading: "There is a dog." is yes, "NO." is yes
(``NO`` is none of the three words), "Yes, but it is not a dog" is no, an empty answer is yes.
Published POPE numbers follow this rule, so ours do by default.

The strict reading, :data:`STRICT`, takes the answer's first word when it is "yes" or "no" (any
case) and leaves every other answer unparsed (None). The POPE report always counts the answers
the strict reading cannot parse (``n_unparsed``), whichever rule scores them.

Example:
    >>> [parse_yes_no(a) for a in ("There is a dog.", "NO.", "Yes, but it is not a dog", "no")]
    ['yes', 'yes', 'no', 'no']
    >>> parse_yes_no("There is a dog.", STRICT) is None
    True
"""

from __future__ import annotations

import re
from typing import Sequence

from .errors import InputError
from .labels import TokenLabel

REFERENCE = "reference"
STRICT = "strict"
RULES = (REFERENCE, STRICT)

#: The words that make the reference rule read "no" (case-sensitive, as POPE's script).
NO_WORDS = frozenset({"No", "no", "not"})
_WORD = re.compile(r"[A-Za-z]+")
_SPACE_SEPARATED = re.compile(r"[^ ]+")


def _first_sentence(text: str) -> str:
    return text.split(".")[0]


def reference_words(text: str) -> list[str]:
    """The words POPE's rule looks at: first sentence, commas dropped, split on single spaces."""
    return _first_sentence(text).replace(",", "").split(" ")


def parse_yes_no(text: str, rule: str = REFERENCE) -> str | None:
    """Read a yes/no answer.

    Args:
        text: The model's answer.
        rule: :data:`REFERENCE` (POPE's rule, never None) or :data:`STRICT` (first word only).

    Returns:
        ``"yes"``, ``"no"``, or None when the strict reading finds neither.

    Raises:
        InputError: An unknown rule.
    """
    if rule == REFERENCE:
        return "no" if NO_WORDS.intersection(reference_words(text)) else "yes"
    if rule == STRICT:
        m = _WORD.search(text)
        word = m.group().lower() if m else ""
        return word if word in ("yes", "no") else None
    raise InputError(f"unknown yes/no rule {rule!r}; valid: {', '.join(RULES)}")


def deciding_span(text: str) -> tuple[int, int] | None:
    """Character span of the word that decides the reference reading: the first ``No``/``no``/
    ``not`` of the first sentence for a "no"; for a "yes", its first "yes" word, else the answer's
    first word. None for an answer without words."""
    sentence = _first_sentence(text)
    words = list(_SPACE_SEPARATED.finditer(sentence))
    for m in words:
        if m.group().replace(",", "") in NO_WORDS:
            return m.start(), m.end()
    for m in words:
        w = _WORD.search(m.group())
        if w and w.group().lower() == "yes":
            return m.start() + w.start(), m.start() + w.end()
    first = _WORD.search(text)
    return (first.start(), first.end()) if first else None


def label_yes_no(offsets: Sequence[tuple[int, int]], text: str, expected: str, category: str) -> list[TokenLabel]:
    """Label a yes/no answer: the first token of the deciding word (:func:`deciding_span`) gets the label.

    A "yes" to an absent object is ``hallucinated``; a correct answer is ``correct``; a wrong
    "no" (a miss, not a hallucination) is ``none``; every other token is ``none``.
    """
    labels = [TokenLabel(None, "none", False, "")] * len(offsets)
    span = deciding_span(text)
    if span is None:
        return labels
    answer = parse_yes_no(text)
    kind = "correct" if answer == expected else ("hallucinated" if answer == "yes" else "none")
    for k, (a, b) in enumerate(offsets):
        if b > span[0] and a < span[1] and b > a:
            labels[k] = TokenLabel(category, kind, True, text[span[0]:span[1]])
            break
    return labels


__all__ = ["NO_WORDS", "REFERENCE", "RULES", "STRICT", "deciding_span", "label_yes_no", "parse_yes_no",
           "reference_words"]
