"""Yes/no answers are read as POPE's evaluate.py (and LLaVA's eval_pope.py) reads them."""

from __future__ import annotations

import pytest

from lvsal_data.errors import InputError
from lvsal_data.yesno import REFERENCE, STRICT, deciding_span, label_yes_no, parse_yes_no

# (answer, reference reading, strict first-word reading). The reference keeps the text before the
# first ".", drops commas, splits on single spaces, and says "no" iff a word is No / no / not.
CASES: list[tuple[str, str, str | None]] = [
    ("Yes", "yes", "yes"),
    ("Yes.", "yes", "yes"),
    ("yes", "yes", "yes"),
    ("No", "no", "no"),
    ("No.", "no", "no"),
    (" No", "no", "no"),  # leading space: the split gives an empty word, then No
    ("no", "no", "no"),
    ("NO.", "yes", "no"),  # NO is none of the three words
    ("No!", "yes", "no"),  # neither is No! (only commas are dropped)
    ("Not really.", "yes", None),  # capitalised Not is not in the list
    ("not sure", "no", None),
    ("There is a dog.", "yes", None),  # no "no" word: yes
    ("There is no dog in the image.", "no", None),
    ("Yes, but it is not a dog", "no", "yes"),  # "not" in the first sentence
    ("Yes, there is a dog. It is not small.", "yes", "yes"),  # only the first sentence counts
    ("No, there is not.", "no", "no"),
    ("no,there", "yes", "no"),  # the comma is dropped: one word "nothere"
    ("Yes\nNo", "yes", "yes"),  # the split is on spaces only
    ("I cannot see one.", "yes", None),
    ("The answer is no.", "no", None),
    ("Nope", "yes", None),
    ("", "yes", None),  # an empty answer reads yes
]


@pytest.mark.parametrize("answer,reference,strict", CASES, ids=[repr(c[0]) for c in CASES])
def test_reading_follows_the_reference(answer: str, reference: str, strict: str | None) -> None:
    assert parse_yes_no(answer) == reference
    assert parse_yes_no(answer, REFERENCE) == reference
    assert parse_yes_no(answer, STRICT) == strict


def test_unknown_rule_lists_the_valid_ones() -> None:
    with pytest.raises(InputError, match="valid: reference, strict"):
        parse_yes_no("yes", "lenient")


def test_the_deciding_word_carries_the_label() -> None:
    def labelled(text: str, expected: str) -> list[tuple[str, str]]:
        offsets = [(m.start(), m.end()) for m in __import__("re").finditer(r"\S+", text)]
        return [(text[a:b], lab.label) for (a, b), lab in zip(offsets, label_yes_no(offsets, text, expected, "dog"))
                if lab.mention_start]

    assert labelled("Yes, but it is not a dog.", "no") == [("not", "correct")]
    assert labelled("There is a dog.", "no") == [("There", "hallucinated")]  # read yes: a hallucination
    assert labelled("Yes.", "yes") == [("Yes.", "correct")]
    assert labelled("No.", "yes") == [("No.", "none")]  # a miss, not a hallucination
    assert labelled("Well, yes there is.", "no") == [("yes", "hallucinated")]
    assert deciding_span("") is None and label_yes_no([], "", "no", "dog") == []
