"""CHAIR-style mentions (a table of cases) and token labels aligned to real tokenizer offsets."""

from __future__ import annotations

import pytest

from lvsal_data import find_mentions
from lvsal_data.labels import label_tokens
from lvsal_data.vocab import COCO_CATEGORIES, SYNONYMS, pluralize, surface_forms

# (text, expected mentions in order as (surface word, category)).
CASES: list[tuple[str, list[tuple[str, str]]]] = [
    # plain names, singular and plural
    ("A dog sits on the grass.", [("dog", "dog")]),
    ("Two dogs run.", [("dogs", "dog")]),
    ("Three knives lie on a board.", [("knives", "knife"), ("board", "surfboard")]),
    ("The mice are pink.", [("mice", "mouse")]),
    ("Several buses wait.", [("buses", "bus")]),
    ("Two wine glasses and a bottle.", [("wine glasses", "wine glass"), ("bottle", "bottle")]),
    ("A pair of skis leans on a wall.", [("skis", "skis")]),
    ("Some sheep graze.", [("sheep", "sheep")]),
    ("A pair of scissors.", [("scissors", "scissors")]),
    ("Fresh broccoli on a plate.", [("broccoli", "broccoli")]),
    # synonyms
    ("A puppy chews a bone.", [("puppy", "dog")]),
    ("Two puppies play.", [("puppies", "dog")]),
    ("A kitten naps on the sofa.", [("kitten", "cat"), ("sofa", "couch")]),
    ("A man and a woman talk.", [("man", "person"), ("woman", "person")]),
    ("Children play with a ball.", [("Children", "person"), ("ball", "sports ball")]),
    ("A mug of coffee on the table.", [("mug", "cup"), ("table", "dining table")]),
    ("The fridge is open.", [("fridge", "refrigerator")]),
    ("A television shows the news.", [("television", "tv")]),
    ("He holds a smartphone.", [("smartphone", "cell phone")]),
    ("A doughnut and a cupcake.", [("doughnut", "donut"), ("cupcake", "cake")]),
    ("A motorbike is parked.", [("motorbike", "motorcycle")]),
    ("A plane flies over the ship.", [("plane", "airplane"), ("ship", "boat")]),
    ("A pony and a lamb.", [("pony", "horse"), ("lamb", "sheep")]),
    # multi-word names win over their parts
    ("A hot dog with mustard.", [("hot dog", "hot dog")]),
    ("Two hot dogs on a grill.", [("hot dogs", "hot dog")]),
    ("A teddy bear on the bed.", [("teddy bear", "teddy bear"), ("bed", "bed")]),
    ("A polar bear swims.", [("polar bear", "bear")]),
    ("A brown bear eats fish.", [("bear", "bear")]),
    ("A traffic light turns red.", [("traffic light", "traffic light")]),
    ("A fire hydrant by the road.", [("fire hydrant", "fire hydrant")]),
    ("The stop sign is bent.", [("stop sign", "stop sign")]),
    ("A tennis racket and a tennis ball.", [("tennis racket", "tennis racket"), ("tennis ball", "sports ball")]),
    ("A baseball bat and a baseball glove.", [("baseball bat", "baseball bat"), ("baseball glove", "baseball glove")]),
    ("A cell phone on the dining table.", [("cell phone", "cell phone"), ("dining table", "dining table")]),
    ("A toilet seat is up.", [("toilet seat", "toilet")]),
    ("A computer mouse next to a laptop.", [("computer mouse", "mouse"), ("laptop", "laptop")]),
    ("A hot-dog stand.", [("hot-dog", "hot dog")]),
    ("A potted plant by the window.", [("potted plant", "potted plant")]),
    # head noun wins; adjectives before mentions name nothing
    ("The dog bed is empty.", [("dog bed", "bed")]),
    ("An orange cat sleeps.", [("cat", "cat")]),
    ("An orange and an apple.", [("orange", "orange"), ("apple", "apple")]),
    ("A baby elephant follows its mother.", [("elephant", "elephant")]),
    ("A baby laughs.", [("baby", "person")]),
    # near misses and text with no object
    ("A hot tub in the garden.", []),
    ("A glass of orange juice.", []),
    ("The bus stop is crowded.", []),
    ("Dogma is not a dog.", [("dog", "dog")]),
    ("The catalogue lists carpets.", []),
    ("A beautiful sunny day at the beach.", []),
    ("", []),
    ("Snowy mountains under a blue sky.", []),
    ("He wears glasses.", []),
    # case and punctuation
    ("DOG! Cat? Horse.", [("DOG", "dog"), ("Cat", "cat"), ("Horse", "horse")]),
    ("A dog, a cat, and a bird.", [("dog", "dog"), ("cat", "cat"), ("bird", "bird")]),
]


def _spans(text: str, expected: list[tuple[str, str]]) -> list[tuple[int, int, str, str]]:
    out, cursor = [], 0
    for word, cat in expected:
        start = text.index(word, cursor)
        out.append((start, start + len(word), word, cat))
        cursor = start + len(word)
    return out


def test_at_least_forty_cases() -> None:
    assert len(CASES) >= 40


@pytest.mark.parametrize("text,expected", CASES, ids=[c[0][:30] or "empty" for c in CASES])
def test_mentions(text: str, expected: list[tuple[str, str]]) -> None:
    got = [(m.start, m.end, m.word, m.category) for m in find_mentions(text)]
    assert got == _spans(text, expected)
    assert all(text[s:e] == w for s, e, w, _ in got)


def test_every_category_and_synonym_is_found() -> None:
    for name in COCO_CATEGORIES.values():
        for word in (name, *SYNONYMS.get(name, ())):
            for form in (word, pluralize(word)):
                cats = [m.category for m in find_mentions(f"I see {form} here.")]
                assert cats == [name], (form, cats)


def test_no_phrase_names_two_categories() -> None:
    assert len(surface_forms()) > 300  # builds without the collision error


def test_pluralize() -> None:
    assert [pluralize(w) for w in ("dog", "knife", "puppy", "bus", "wine glass", "person", "toy")] == [
        "dogs", "knives", "puppies", "buses", "wine glasses", "persons", "toys"]


# --- token labels on real tokenizer offsets -------------------------------------------------------

def _bpe_tokenizer():
    from lvsal_data.organism.build import build_tokenizer

    corpus = ["A dog and a frisbee on the grass.", "Two puppies and a hot dog.", "yes no Yes No"] * 20
    return build_tokenizer(corpus, vocab_size=300)


def _wordpiece_like_tokenizer():
    """A Qwen2-style byte-level BPE with a different merge table and a prefix space."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=True)
    tok.decoder = decoders.ByteLevel()
    tok.train_from_iterator(["teddy bears and hot dogs"] * 5, trainers.BpeTrainer(
        vocab_size=270, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False))
    return PreTrainedTokenizerFast(tokenizer_object=tok)


@pytest.mark.parametrize("make", [_bpe_tokenizer, _wordpiece_like_tokenizer])
def test_token_labels_follow_mentions(make) -> None:
    tok = make()
    text = " Two puppies and a hot dog near a teddy bear."
    enc = tok(text, return_offsets_mapping=True, add_special_tokens=False)
    labels = label_tokens(enc["offset_mapping"], text, ground_truth={"dog"})
    pieces = [text[a:b] for a, b in enc["offset_mapping"]]
    by_cat: dict[str, list[int]] = {}
    for k, lab in enumerate(labels):
        if lab.object:
            by_cat.setdefault(lab.object, []).append(k)
    assert set(by_cat) == {"dog", "hot dog", "teddy bear"}
    assert "".join(pieces[k] for k in by_cat["dog"]).strip() == "puppies"
    assert "".join(pieces[k] for k in by_cat["hot dog"]).strip() == "hot dog"
    for cat, ks in by_cat.items():
        assert [labels[k].mention_start for k in ks] == [True] + [False] * (len(ks) - 1)
        assert {labels[k].label for k in ks} == {"correct" if cat == "dog" else "hallucinated"}
    assert all(lab.label == "none" for lab in labels if lab.object is None)
