"""The 80 COCO object categories (real COCO ids) and the words that name them.

In the spirit of CHAIR (Rohrbach et al., 2018): each category has synonyms; plurals are derived;
multi-word names win over their parts (a *hot dog* is not a *dog*, a *teddy bear* not a
*bear*); a few compound phrases name no category at all (a *hot tub* holds no *tub*... there is
no tub category, but a *dog bed* is a bed, not a dog: the head noun wins). The synonym lists are
ours; they are data, not code, and can be extended.
"""

from __future__ import annotations

#: COCO id -> canonical category name (COCO 2014/2017 instances).
COCO_CATEGORIES: dict[int, str] = {
    1: "person", 2: "bicycle", 3: "car", 4: "motorcycle", 5: "airplane", 6: "bus", 7: "train",
    8: "truck", 9: "boat", 10: "traffic light", 11: "fire hydrant", 13: "stop sign",
    14: "parking meter", 15: "bench", 16: "bird", 17: "cat", 18: "dog", 19: "horse", 20: "sheep",
    21: "cow", 22: "elephant", 23: "bear", 24: "zebra", 25: "giraffe", 27: "backpack",
    28: "umbrella", 31: "handbag", 32: "tie", 33: "suitcase", 34: "frisbee", 35: "skis",
    36: "snowboard", 37: "sports ball", 38: "kite", 39: "baseball bat", 40: "baseball glove",
    41: "skateboard", 42: "surfboard", 43: "tennis racket", 44: "bottle", 46: "wine glass",
    47: "cup", 48: "fork", 49: "knife", 50: "spoon", 51: "bowl", 52: "banana", 53: "apple",
    54: "sandwich", 55: "orange", 56: "broccoli", 57: "carrot", 58: "hot dog", 59: "pizza",
    60: "donut", 61: "cake", 62: "chair", 63: "couch", 64: "potted plant", 65: "bed",
    67: "dining table", 70: "toilet", 72: "tv", 73: "laptop", 74: "mouse", 75: "remote",
    76: "keyboard", 77: "cell phone", 78: "microwave", 79: "oven", 80: "toaster", 81: "sink",
    82: "refrigerator", 84: "book", 85: "clock", 86: "vase", 87: "scissors", 88: "teddy bear",
    89: "hair drier", 90: "toothbrush",
}

CATEGORY_IDS: dict[str, int] = {name: cid for cid, name in COCO_CATEGORIES.items()}

#: Canonical name -> extra singular words / phrases that name it (the name itself is implied).
SYNONYMS: dict[str, tuple[str, ...]] = {
    "person": ("man", "woman", "boy", "girl", "child", "kid", "people", "guy", "lady", "player",
               "skier", "surfer", "skateboarder", "snowboarder", "rider", "baby", "toddler",
               "adult", "pedestrian", "worker", "chef", "gentleman", "teenager", "human"),
    "bicycle": ("bike", "cycle", "bicycles"),
    "car": ("automobile", "sedan", "taxi", "cab", "van", "suv", "jeep"),
    "motorcycle": ("motorbike", "motor bike", "scooter", "moped", "motor cycle", "dirt bike"),
    "airplane": ("plane", "jet", "aircraft", "airliner", "aeroplane", "jetliner"),
    "bus": ("trolley", "minibus", "double decker", "school bus"),
    "train": ("locomotive", "tram", "subway", "railcar", "freight train"),
    "truck": ("pickup", "lorry", "fire truck", "pickup truck"),
    "boat": ("ship", "sailboat", "canoe", "kayak", "yacht", "ferry", "rowboat", "vessel"),
    "traffic light": ("stoplight", "traffic signal", "stop light", "street light"),
    "fire hydrant": ("hydrant",),
    "stop sign": (),
    "parking meter": ("meter",),
    "bench": ("park bench",),
    "bird": ("pigeon", "seagull", "gull", "duck", "goose", "parrot", "sparrow", "eagle",
             "swan", "owl", "crow", "chicken", "hen", "rooster"),
    "cat": ("kitten", "kitty", "tabby"),
    "dog": ("puppy", "pup", "doggy", "hound", "terrier", "retriever", "poodle"),
    "horse": ("pony", "foal", "stallion", "mare", "colt"),
    "sheep": ("lamb", "ram", "ewe"),
    "cow": ("cattle", "bull", "calf", "ox", "oxen", "cows"),
    "elephant": (),
    "bear": ("grizzly", "polar bear", "cub"),
    "zebra": (),
    "giraffe": (),
    "backpack": ("knapsack", "rucksack", "back pack"),
    "umbrella": ("parasol",),
    "handbag": ("purse", "hand bag", "pocketbook", "clutch"),
    "tie": ("necktie", "bow tie", "neck tie"),
    "suitcase": ("luggage", "suit case", "baggage"),
    "frisbee": ("flying disc", "flying disk", "frisbees"),
    "skis": ("ski",),
    "snowboard": ("snow board",),
    "sports ball": ("ball", "football", "soccer ball", "baseball", "basketball", "tennis ball",
                    "volleyball", "softball"),
    "kite": (),
    "baseball bat": ("bat",),
    "baseball glove": ("glove", "mitt", "baseball mitt"),
    "skateboard": ("skate board",),
    "surfboard": ("surf board", "board"),
    "tennis racket": ("racket", "racquet", "tennis racquet"),
    "bottle": ("flask",),
    "wine glass": ("wineglass", "goblet", "champagne glass"),
    "cup": ("mug", "teacup", "coffee cup", "tea cup"),
    "fork": (),
    "knife": ("blade", "butter knife", "steak knife"),
    "spoon": ("teaspoon", "tablespoon", "ladle"),
    "bowl": ("dish",),
    "banana": (),
    "apple": (),
    "sandwich": ("burger", "hamburger", "sub", "panini", "wrap"),
    "orange": ("tangerine", "clementine", "mandarin"),
    "broccoli": (),
    "carrot": (),
    "hot dog": ("hotdog", "frankfurter", "wiener"),
    "pizza": (),
    "donut": ("doughnut",),
    "cake": ("cupcake", "cheesecake"),
    "chair": ("stool", "armchair", "seat"),
    "couch": ("sofa", "loveseat", "settee"),
    "potted plant": ("houseplant", "house plant", "flowerpot", "flower pot", "plant", "potted plants"),
    "bed": (),
    "dining table": ("table", "dinner table", "desk", "kitchen table"),
    "toilet": ("urinal", "commode", "toilet seat"),
    "tv": ("television", "tv set", "monitor", "flat screen", "screen"),
    "laptop": ("notebook computer", "computer", "macbook"),
    "mouse": ("computer mouse",),
    "remote": ("remote control", "controller", "clicker"),
    "keyboard": (),
    "cell phone": ("phone", "cellphone", "smartphone", "mobile phone", "iphone", "telephone"),
    "microwave": ("microwave oven",),
    "oven": ("stove", "stovetop"),
    "toaster": (),
    "sink": ("basin",),
    "refrigerator": ("fridge", "freezer"),
    "book": ("novel", "textbook"),
    "clock": ("alarm clock", "wall clock"),
    "vase": (),
    "scissors": ("shears",),
    "teddy bear": ("teddy", "teddybear", "stuffed bear", "stuffed animal"),
    "hair drier": ("hair dryer", "blow dryer", "hairdryer", "blowdryer"),
    "toothbrush": ("tooth brush",),
}

#: Phrases that contain a category word but name no category (near misses), or whose head
#: noun is another category. Value None = no object; a string = that category.
SPECIAL_PHRASES: dict[str, str | None] = {
    "hot tub": None,
    "dog bed": "bed",
    "cat bed": "bed",
    "table cloth": None,
    "tablecloth": None,
    "table top": "dining table",
    "bus stop": None,
    "train station": None,
    "train tracks": None,
    "train track": None,
    "car park": None,
    "orange juice": None,
    "apple juice": None,
    "cake stand": None,
    "bird cage": None,
    "birdcage": None,
    "horse drawn": None,
    "mouse pad": None,
    "bear claw": None,
    "teddy bears": "teddy bear",
    "hot dogs": "hot dog",
    "tie dye": None,
    "glove box": None,
    "knife block": None,
    "cell tower": None,
    "remote controls": "remote",
    "side table": "dining table",
    "coffee table": "dining table",
    "stop signs": "stop sign",
}

#: Words that are never the head of a mention even though a synonym matches them as adjectives
#: in CHAIR's sense; colours are the main case ("an orange cat" is a cat).
ADJECTIVAL_USES: dict[str, frozenset[str]] = {
    "orange": frozenset({"cat", "dog", "shirt", "jacket", "sky", "light", "color", "colored", "and"}),
}

_IRREGULAR_PLURALS: dict[str, str] = {
    "person": "persons", "man": "men", "woman": "women", "child": "children", "mouse": "mice",
    "knife": "knives", "sheep": "sheep", "ox": "oxen", "goose": "geese", "calf": "calves",
    "skis": "skis", "scissors": "scissors", "shears": "shears", "people": "people",
    "cattle": "cattle", "luggage": "luggage", "baggage": "baggage", "broccoli": "broccoli",
    "bus": "buses", "glass": "glasses", "bench": "benches", "sandwich": "sandwiches",
    "couch": "couches", "dish": "dishes", "ski": "skis", "wolf": "wolves", "leaf": "leaves",
    "shelf": "shelves", "sub": "subs", "cows": "cows", "bicycles": "bicycles",
    "frisbees": "frisbees", "potted plants": "potted plants", "hotdog": "hotdogs",
    "hot dog": "hot dogs", "teddy": "teddies", "puppy": "puppies", "kitty": "kitties",
    "pony": "ponies", "lady": "ladies", "baby": "babies", "doggy": "doggies", "pup": "pups",
    "tv": "tvs", "suv": "suvs", "ferry": "ferries", "trolley": "trolleys", "box": "boxes",
}


def pluralize(phrase: str) -> str:
    """English plural of a (possibly multi-word) noun phrase: the last word is inflected.

    Example:
        >>> pluralize("wine glass"), pluralize("knife"), pluralize("puppy"), pluralize("bus")
        ('wine glasses', 'knives', 'puppies', 'buses')
    """
    if phrase in _IRREGULAR_PLURALS:
        return _IRREGULAR_PLURALS[phrase]
    *head, last = phrase.split(" ")
    if last in _IRREGULAR_PLURALS:
        plural = _IRREGULAR_PLURALS[last]
    elif last.endswith(("s", "x", "z", "ch", "sh")):
        plural = last + "es"
    elif last.endswith("y") and last[-2:-1] not in "aeiou":
        plural = last[:-1] + "ies"
    else:
        plural = last + "s"
    return " ".join([*head, plural])


def surface_forms() -> dict[str, str | None]:
    """Every phrase (lower case, singular and plural) -> canonical category (or None)."""
    table: dict[str, str | None] = {}
    for name in COCO_CATEGORIES.values():
        for word in (name, *SYNONYMS.get(name, ())):
            for form in (word, pluralize(word)):
                if table.get(form, name) != name:
                    raise ValueError(f"{form!r} names both {table[form]!r} and {name!r}")
                table[form] = name
    for phrase, category in SPECIAL_PHRASES.items():
        table[phrase] = category
    return table
