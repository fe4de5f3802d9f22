"""Our CHAIR decisions against the reference script's (OPERA's ``chair.py``) on adversarial
LVLM-style captions.

``data/chair_reference_cases.jsonl`` holds, per caption, its ground truth and the reference's
output: mention categories in order (duplicates kept), hallucinated set, CHAIR_S flag
(``data/README.md`` says how it was made). A caption tagged ``deliberate`` differs on purpose: it
names its rows of the README table (section "CHAIR and POPE against the reference scripts") and
carries our expected mentions (``ours``) instead.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from pathlib import Path

import pytest

from lvsal_data import find_mentions

DATA = Path(__file__).parent / "data" / "chair_reference_cases.jsonl"
README = Path(__file__).parents[1] / "README.md"
CASES: list[dict] = [json.loads(line) for line in DATA.read_text().splitlines()]
AGREED = [c for c in CASES if "deliberate" not in c]
DELIBERATE = [c for c in CASES if "deliberate" in c]

#: The kinds of caption in the set (issue 15, section 1) and how many of each at least.
CLASSES = {
    "sport": 10,  # a sport's name as a modifier ("baseball cap")
    "broad": 20,  # single words the reference does not count ("board", "screen door")
    "double": 10,  # one object, one mention ("flat screen tv", "laptop computer")
    "hyphen": 10,  # hyphenated compounds ("man-made", "hot-dog")
    "qualifier": 10,  # "adult giraffes", "baby animal", "passenger jet"
    "toilet": 5,  # "the seat of the toilet"
    "orange": 5,  # "orange" as a colour
    "phrase": 5,  # near misses ("bus stop")
    "lemma": 10,  # verb forms and plurals the reference's lemmatizer misreads
    "plural": 3,
    "punct": 3,  # no phrase across punctuation
    "extra": 10,  # names only we count
    "plain": 20,
    "long": 40,  # "Please describe this image in detail." answers
    "short": 20,
}


def _mentions(case: dict) -> list[str]:
    return [m.category for m in find_mentions(case["caption"])]


def _ids(cases: list[dict]) -> list[str]:
    return [f"{c['id']}-{c['class']}" for c in cases]


@pytest.mark.parametrize("case", AGREED, ids=_ids(AGREED))
def test_same_decisions_as_the_reference(case: dict) -> None:
    ours, ref = _mentions(case), case["reference"]
    hallucinated = {m for m in ours if m not in case["ground_truth"]}
    assert ours == ref["mentions"], case["caption"]
    assert hallucinated == set(ref["hallucinated"])
    assert bool(hallucinated) == ref["chair_s"]


@pytest.mark.parametrize("case", DELIBERATE, ids=_ids(DELIBERATE))
def test_deliberate_differences_give_our_output(case: dict) -> None:
    ours = _mentions(case)
    assert ours == case["ours"], case["caption"]
    assert ours != case["reference"]["mentions"], "differs no more: drop the deliberate tag"


def test_every_deliberate_difference_is_a_readme_row() -> None:
    section = README.read_text().split("## CHAIR and POPE against the reference scripts")[1]
    rows = set(re.findall(r"^\| `([a-z-]+)` \|", section.split("\n## ")[0], re.MULTILINE))
    tagged = {row for c in DELIBERATE for row in c["deliberate"]}
    assert tagged == rows, (tagged - rows, rows - tagged)


def test_the_caption_set_covers_every_class() -> None:
    counts = Counter(c["class"] for c in CASES)
    assert {k: counts[k] for k in CLASSES if counts[k] < CLASSES[k]} == {}
    assert len(CASES) >= 150 and len({c["caption"] for c in CASES}) == len(CASES)
    assert len(AGREED) >= 0.7 * len(CASES)
    for c in CASES:
        ref = c["reference"]
        assert set(ref["hallucinated"]) == {m for m in ref["mentions"] if m not in c["ground_truth"]}
        assert ref["chair_s"] == bool(ref["hallucinated"])


def agreement(cases: list[dict]) -> dict[str, float]:
    """Per caption, the share (%) where our mention set, hallucinated set and CHAIR_S flag are the
    reference's (the README's agreement table)."""
    same = Counter()
    for c in cases:
        ours = _mentions(c)
        hallucinated = {m for m in ours if m not in c["ground_truth"]}
        ref = c["reference"]
        same["mention set"] += set(ours) == set(ref["mentions"])
        same["hallucinated set"] += hallucinated == set(ref["hallucinated"])
        same["CHAIR_S flag"] += bool(hallucinated) == ref["chair_s"]
    return {k: round(100 * same[k] / len(cases), 1) for k in ("mention set", "hallucinated set", "CHAIR_S flag")}


def test_readme_agreement_figures_are_what_the_captions_give() -> None:
    """The README's "now" row is recomputed from the caption set, so the figures cannot go stale."""
    section = README.read_text().split("## CHAIR and POPE against the reference scripts")[1]
    row = re.search(r"^\| now \| ([\d.]+)% \| ([\d.]+)% \| ([\d.]+)% \|", section, re.MULTILINE)
    assert row, "the README's agreement table has no 'now' row"
    assert [float(v) for v in row.groups()] == list(agreement(CASES).values())
