"""CHAIR-style mentions (a table of cases, properties of the vocab rules) and token labels aligned
to real tokenizer offsets. tests/test_chair_reference.py checks the reference's decisions at scale."""

from __future__ import annotations

import pytest

from lvsal_data import find_mentions
from lvsal_data.labels import label_tokens
from lvsal_data.vocab import (
    ADJECTIVAL_USES,
    COCO_CATEGORIES,
    QUALIFIERS,
    SYNONYMS,
    pluralize,
    surface_forms,
)

# (text, expected mentions in order as (surface word, category)), decided as the reference CHAIR
# script decides unless a comment names the README row of a deliberate difference.
CASES: list[tuple[str, list[tuple[str, str]]]] = [
    # plain names, singular and plural
    ("A dog sits on the grass.", [("dog", "dog")]),
    ("Two dogs run.", [("dogs", "dog")]),
    ("Three knives lie on a board.", [("knives", "knife")]),
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
    ("A laptop computer on a desk.", [("laptop computer", "laptop"), ("desk", "dining table")]),
    ("A computer mouse next to a laptop.", [("computer mouse", "mouse"), ("laptop", "laptop")]),  # head-noun
    ("A hot-dog stand.", [("hot-dog", "hot dog")]),  # hyphen-names
    ("A potted plant by the window.", [("potted plant", "potted plant")]),
    # head noun wins; adjectives before mentions name nothing
    ("The dog bed is empty.", [("dog bed", "bed")]),  # head-noun
    ("An orange cat sleeps.", [("cat", "cat")]),  # orange-colour
    ("A man in an orange shirt.", [("man", "person")]),  # orange-colour
    ("An orange and an apple.", [("orange", "orange"), ("apple", "apple")]),
    ("A baby elephant follows its mother.", [("elephant", "elephant"), ("mother", "person")]),
    ("A baby laughs.", [("baby", "person")]),
    # qualifiers: "baby" / "adult" before an animal, "passenger" before a jet or train
    ("Two adult giraffes graze.", [("giraffes", "giraffe")]),
    ("A baby animal peeks out.", []),
    ("Adults and a baby.", [("Adults", "person"), ("baby", "person")]),
    ("A passenger jet and a passenger.", [("jet", "airplane"), ("passenger", "person")]),
    # the seat of a toilet is no chair; other seats are
    ("A toilet with the seat up.", [("toilet", "toilet")]),
    ("Two seats face the toilets.", [("toilets", "toilet")]),
    ("A seat by the table.", [("seat", "chair"), ("table", "dining table")]),
    # a sport's name is no ball; the reference's list decides which words are objects at all
    ("A man in a baseball cap.", [("man", "person")]),
    ("Players chase the ball on a basketball court.", [("Players", "person"), ("ball", "sports ball")]),
    ("A football stadium.", []),
    # words the reference does not have name nothing
    ("A dog at the screen door.", [("dog", "dog")]),
    ("A satellite dish on the roof.", []),
    ("A worker in gloves.", [("worker", "person")]),
    ("The blades of a wind turbine.", []),
    ("A sandwich in plastic wrap.", [("sandwich", "sandwich")]),
    ("Plants near a power plant.", []),
    ("A subway sandwich and fried chicken.", [("sandwich", "sandwich")]),
    ("A bat in a cave.", []),
    # one object, one mention
    ("A flat screen tv.", [("tv", "tv")]),
    ("A double decker bus.", [("bus", "bus")]),
    ("A grizzly bear.", [("bear", "bear")]),
    # a hyphenated compound is one word, which names nothing unless it spells a name
    ("A man-made lake.", []),
    ("A dog-friendly cafe.", []),
    ("A carrot-colored cake.", [("cake", "cake")]),
    ("A bird's-eye view of cars.", [("cars", "car")]),
    ("A dog-eared book.", [("book", "book")]),
    ("Two hot-dogs and a teddy-bear.", [("hot-dogs", "hot dog"), ("teddy-bear", "teddy bear")]),  # hyphen-names
    ("The dog's bowl.", [("dog", "dog"), ("bowl", "bowl")]),
    # a phrase never spans punctuation
    ("It is hot. Dogs rest.", [("Dogs", "dog")]),
    ("The toy is called Teddy. Bears roam.", [("Teddy", "teddy bear"), ("Bears", "bear")]),  # extra-names
    # verbs are no objects; plurals are
    ("A woman is seated.", [("woman", "person")]),  # verb-forms
    ("People skiing.", [("People", "person")]),  # verb-forms
    ("Two men by the parking meters.", [("men", "person"), ("parking meters", "parking meter")]),  # plurals
    # near misses and text with no object
    ("A hot tub in the garden.", []),
    ("A glass of orange juice.", []),  # near-miss
    ("The bus stop is crowded.", []),  # near-miss
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


def test_at_least_eighty_cases() -> None:
    assert len(CASES) >= 80


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


def test_qualifiers_name_nothing_before_what_they_qualify() -> None:
    for word, categories in QUALIFIERS.items():
        for name in categories or COCO_CATEGORIES.values():
            for form in (name, *SYNONYMS[name]):
                cats = [m.category for m in find_mentions(f"I see a {word} {form} here.")]
                assert cats == [name], (word, form, cats)
        for after in ADJECTIVAL_USES.get(word, ()):
            for form in (after, pluralize(after)):
                cats = [m.category for m in find_mentions(f"I see a {word} {form} here.")]
                assert cats == [], (word, form, cats)


def test_hyphenated_compounds_are_one_word() -> None:
    for phrase, category in surface_forms().items():
        if category is None:
            continue
        if " " in phrase:  # a name spelt with hyphens is that name, one mention
            text = f"I see a {phrase.replace(' ', '-')} here."
            assert [(m.word, m.category) for m in find_mentions(text)] == [(phrase.replace(" ", "-"), category)]
        else:  # an object word inside a compound names nothing
            assert find_mentions(f"A {phrase}-friendly and {phrase}-shaped place.") == [], phrase


def test_phrases_never_span_punctuation() -> None:
    for phrase in surface_forms():
        if " " in phrase:
            for sep in (". ", ", ", " - "):
                text = phrase.replace(" ", sep)
                assert all(sep.strip() not in m.word for m in find_mentions(text)), text


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
