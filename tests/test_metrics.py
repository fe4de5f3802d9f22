"""CHAIR and POPE match hand-computed values; intervals bracket the value."""

from __future__ import annotations

import math

import numpy as np
import pytest

from analysis import CaptionResult, YesNoResult, chair, paired_difference, pope
from lvsal_data.metrics import chair_arrays, chair_statistic


CAPTIONS = [
    CaptionResult(["dog", "frisbee", "dog"], {"dog", "frisbee", "person"}, 20),  # no hallucination
    CaptionResult(["cup", "dining table", "fork"], {"cup"}, 30),  # 2 hallucinated mentions
    CaptionResult([], {"cat"}, 10),  # nothing mentioned
    CaptionResult(["knife"], {"fork", "knife"}, 40),
]


def test_chair_by_hand() -> None:
    m = chair(CAPTIONS, resamples=200)
    assert m["n"] == 4
    assert m["chair_s"]["value"] == pytest.approx(1 / 4)
    assert m["chair_i"]["value"] == pytest.approx(2 / 7)  # 2 hallucinated of 7 mentions
    assert m["recall"]["value"] == pytest.approx((2 + 1 + 0 + 1) / (3 + 1 + 1 + 2))
    assert m["length"]["value"] == pytest.approx(25.0)
    for key in ("chair_s", "chair_i", "recall", "length"):
        assert m[key]["ci_low"] <= m[key]["value"] <= m[key]["ci_high"]


def test_pope_by_hand() -> None:
    rs = [YesNoResult("Yes.", "yes", "random"), YesNoResult("yes", "no", "random"),
          YesNoResult("No, there is none.", "no", "random"), YesNoResult("NO.", "yes", "adversarial"),
          YesNoResult("Yes, there is one.", "yes", "adversarial")]
    m = pope(rs, resamples=200)
    # POPE's rule reads "NO." as yes: tp=3, fp=1, fn=0, tn=1
    assert m["pope_accuracy"]["value"] == pytest.approx(4 / 5)
    assert m["pope_precision"]["value"] == pytest.approx(3 / 4)
    assert m["pope_recall"]["value"] == pytest.approx(1.0)
    assert m["pope_f1"]["value"] == pytest.approx(2 * 0.75 / 1.75)
    assert m["pope_yes_ratio"]["value"] == pytest.approx(4 / 5)
    assert m["n"] == 5 and m["n_unparsed"] == 0 and m["rule"] == "reference"
    assert m["by_split"]["random"]["pope_accuracy"]["value"] == pytest.approx(2 / 3)
    assert m["by_split"]["adversarial"]["n"] == 2
    # the strict first-word reading: "NO." is a no, nothing unparsed here either
    strict = pope(rs, rule="strict", resamples=50)
    assert strict["pope_accuracy"]["value"] == pytest.approx(3 / 5) and strict["rule"] == "strict"
    # an answer the strict reading cannot parse is counted (and, under strict, scored as "no")
    odd = pope([*rs, YesNoResult("There is a cat.", "yes", "random")], rule="strict", resamples=50)
    assert odd["n_unparsed"] == 1 and odd["pope_yes_ratio"]["value"] == pytest.approx(3 / 6)


def test_pope_bootstrap_resamples_images_not_questions() -> None:
    """Six questions on each of four images: the answers of one image are all right or all
    wrong, so the image, not the question, is the independent unit. An interval from resampled
    questions pretends to 24 independent answers and comes out too narrow."""
    rs = [YesNoResult("yes" if img % 2 else "no", "yes", None, str(img)) for img in range(4) for _ in range(6)]
    by_image = pope(rs, resamples=400)["pope_accuracy"]
    by_question = pope([YesNoResult(r.answer, r.expected) for r in rs], resamples=400)["pope_accuracy"]
    assert by_image["value"] == by_question["value"] == 0.5
    assert by_image["ci_high"] - by_image["ci_low"] > 1.5 * (by_question["ci_high"] - by_question["ci_low"])
    assert pope(rs, resamples=10)["n_images"] == 4


def test_chair_length_leaves_out_the_end_of_sequence_token() -> None:
    import pandas as pd

    from lvsal_data.metrics import caption_results

    samples = pd.DataFrame({"mentions": [["dog"], []], "objects": [["dog"], ["cat"]], "n_tokens": [10, 8],
                            "stopped_by_eos": [True, False], "image_id": ["1", "2"]})
    assert [r.length for r in caption_results(samples)] == [9, 8]
    assert chair(caption_results(samples), resamples=10)["length"]["value"] == pytest.approx(8.5)


def test_intervals_shrink_with_more_samples() -> None:
    rng = np.random.default_rng(0)
    def caps(n):
        return [CaptionResult(["dog"] + (["cat"] if rng.random() < 0.3 else []), {"dog"}, 10) for _ in range(n)]
    small, large = chair(caps(20))["chair_s"], chair(caps(2000))["chair_s"]
    assert (large["ci_high"] - large["ci_low"]) < (small["ci_high"] - small["ci_low"])
    assert large["ci_low"] <= 0.3 <= large["ci_high"]


def test_paired_difference_detects_a_real_change() -> None:
    base = [CaptionResult(["dog", "cat"], {"dog"}, 10)] * 30 + [CaptionResult(["dog"], {"dog"}, 10)] * 30
    fixed = [CaptionResult(["dog"], {"dog"}, 10)] * 60
    a, b = chair_statistic(chair_arrays(fixed)), chair_statistic(chair_arrays(base))
    d = paired_difference(a, b, 60, resamples=300)
    assert d["chair_s"]["value"] == pytest.approx(-0.5)
    assert d["chair_s"]["ci_high"] < 0 and d["chair_s"]["p_value"] < 0.01
    same = paired_difference(b, b, 60, resamples=300)
    assert same["chair_s"]["value"] == 0 and same["chair_s"]["p_value"] == 1.0


def test_empty_input_is_refused() -> None:
    with pytest.raises(ValueError):
        chair([])
    assert math.isnan(chair([CaptionResult([], set(), 3)], resamples=10)["chair_i"]["value"])
