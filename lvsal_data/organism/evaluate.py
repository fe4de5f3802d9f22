"""Measure the organism and write its model card: ``python -m lvsal_data.organism.evaluate``.

Greedy decoding on held-out test scenes of the synthetic world (co-occurrence pairs broken) with
a fixed ``max_new_tokens``: CHAIR_S / CHAIR_I / recall / length with bootstrap CIs, the share of
hallucinations that are co-occurrence partners of a present object, and POPE per split. Uses
the toolkit's own sources, mention finder and metrics (no second CHAIR).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any, Sequence

import torch
from tqdm.auto import tqdm

from ..io import atomic_write_text, read_json
from ..labels import find_mentions
from ..metrics import format_estimate
from ..models import LVLM, load_lvlm
from ..sources import Sample, open_source
from . import weights_dir
from .world import PARTNER

CAPTION_TOKENS = 64
ANSWER_TOKENS = 3


@torch.no_grad()
def generate_batch(lvlm: LVLM, samples: Sequence[Sample], max_new_tokens: int) -> list[tuple[str, int]]:
    """Greedy answers (text, number of tokens) for a batch of samples, left-padded."""
    tok = lvlm.tokenizer
    side, tok.padding_side = tok.padding_side, "left"
    try:
        texts = [lvlm.chat_prompt(s.prompt) for s in samples]
        batch = lvlm.processor(images=[s.load_image() for s in samples], text=texts, return_tensors="pt", padding=True)
        out = lvlm.model.generate(**batch.to(lvlm.device), max_new_tokens=max_new_tokens, do_sample=False,
                                  pad_token_id=tok.pad_token_id)
    finally:
        tok.padding_side = side
    new = out[:, batch["input_ids"].shape[1]:]
    results = []
    for row in new.tolist():
        ids = row[: row.index(tok.eos_token_id)] if tok.eos_token_id in row else row  # the EOS is no caption token
        ids = [i for i in ids if i != tok.pad_token_id]
        results.append((tok.decode(ids, skip_special_tokens=True), len(ids)))
    return results


def evaluate(lvlm: LVLM, n: int = 200, batch_size: int = 16, seed: int = 0) -> dict[str, Any]:
    """Caption and POPE metrics of ``lvlm`` on ``n`` test scenes of the world."""
    from ..metrics import CaptionResult, YesNoResult, chair, pope

    captions = list(open_source(f"synthetic:split=test,n={n},seed={seed}"))
    results, hallucinated, partner = [], 0, 0
    examples = []
    for i in tqdm(range(0, len(captions), batch_size), desc="captions", unit="batch"):
        chunk = captions[i : i + batch_size]
        for s, (text, length) in zip(chunk, generate_batch(lvlm, chunk, CAPTION_TOKENS)):
            mentions = [m.category for m in find_mentions(text)]
            results.append(CaptionResult(mentions, s.objects, length, s.image_id))
            for m in mentions:
                if m not in s.objects:
                    hallucinated += 1
                    partner += any(PARTNER.get(o) == m for o in s.objects)
            if len(examples) < 5:
                examples.append({"objects": list(s.objects), "caption": text})
    report: dict[str, Any] = {"chair": chair(results, random_state=seed)}
    report["hallucinations"] = {"n": hallucinated, "partner_of_present_object": partner,
                                "partner_share": partner / hallucinated if hallucinated else None}
    answers = []
    for kind in ("random", "popular", "adversarial"):
        qs = list(open_source(f"synthetic:split=test,n={n},seed={seed},task=pope,pope={kind}"))
        for i in tqdm(range(0, len(qs), batch_size * 2), desc=f"POPE {kind}", unit="batch"):
            chunk = qs[i : i + batch_size * 2]
            for s, (text, _) in zip(chunk, generate_batch(lvlm, chunk, ANSWER_TOKENS)):
                answers.append(YesNoResult(text, s.expected, s.split, s.image_id))
    report["pope"] = pope(answers, random_state=seed)
    report["examples"] = examples
    report["protocol"] = {"scenes": n, "split": "test", "seed": seed, "decoding": "greedy",
                          "max_new_tokens": CAPTION_TOKENS, "pope_max_new_tokens": ANSWER_TOKENS}
    return report


#: What the organism is built to show (the organism issue's bar): it sees, and it hallucinates.
TARGETS = {"chair_s": (0.15, 0.60), "recall": (0.60, 1.0)}


def targets(report: dict[str, Any]) -> str:
    """A plain statement of where the measured organism stands against :data:`TARGETS`."""
    c, lines = report["chair"], []
    for key, (lo, hi) in TARGETS.items():
        v = c[key]["value"]
        where = "within" if lo <= v <= hi else "above" if v > hi else "below"
        lines.append(f"{key} {100 * v:.1f}% is {where} the target {100 * lo:.0f}-{100 * hi:.0f}%")
    pope_acc = [report["pope"]["by_split"][k]["pope_accuracy"] for k in ("random", "popular", "adversarial")]
    chance = all(a["ci_low"] <= 0.5 + 0.1 for a in pope_acc)
    met = all(lo <= c[k]["value"] <= hi for k, (lo, hi) in TARGETS.items())
    misses = []
    if c["chair_s"]["value"] > TARGETS["chair_s"][1]:
        misses.append("it hallucinates more than intended (treat it as a strongly hallucinating model)")
    if c["recall"]["value"] < TARGETS["recall"][0]:
        misses.append("it sees less than intended")
    if c["chair_s"]["value"] < TARGETS["chair_s"][0]:
        misses.append("it hallucinates less than intended")
    text = ("**Against its targets:** " + "; ".join(lines) + ". "
            + ("It meets them." if met else "It does not meet them yet: " + " and ".join(misses) + "."))
    if chance:
        by_split = report["pope"]["by_split"]
        yes = sum(by_split[k]["pope_yes_ratio"]["value"] for k in ("random", "popular", "adversarial")) / 3
        bias = f" with a yes-ratio of {100 * yes:.0f}%" if abs(yes - 0.5) > 0.1 else ""
        text += (f" Its yes/no answers are near chance{bias}: the presence-question skill did not emerge at this "
                 "training budget.")
    return text


def model_card(report: dict[str, Any], training: dict[str, Any]) -> str:
    """The organism's README.md (model card) from an evaluation report and the training log."""
    c, p, h = report["chair"], report["pope"], report["hallucinations"]
    cfg = training.get("config", {})
    pope_rows = "\n".join(
        f"| {k} | {p['by_split'][k]['n']} | {format_estimate(p['by_split'][k]['pope_accuracy'])} | "
        f"{format_estimate(p['by_split'][k]['pope_f1'])} | "
        f"{format_estimate(p['by_split'][k]['pope_yes_ratio'])} |"
        for k in ("random", "popular", "adversarial"))
    share = "n/a" if h["partner_share"] is None else f"{100 * h['partner_share']:.1f}%"
    examples = "\n".join(f"- objects {', '.join(e['objects'])}: \"{e['caption']}\"" for e in report["examples"])
    precision = "under bf16 autocast (mixed precision: weights and optimiser in fp32)" if cfg.get("bf16") else "in fp32"
    return f"""---
library_name: transformers
pipeline_tag: image-text-to-text
license: apache-2.0
tags: [llava, synthetic, hallucination, model-organism, lvsal-data]
---

# lvsal-data organism

A small, real `LlavaForConditionalGeneration` ({training.get('n_parameters', 0) / 1e6:.1f}M parameters: a 3-layer
CLIP-style vision tower at 96 px with 12 px patches, 64 image tokens, a 2-layer projector, a
4-layer Llama text model with grouped-query attention) and its `LlavaProcessor` (CLIP image
processing, a byte-level BPE tokenizer trained with `tokenizers`, LLaVA-1.5's chat layout
`USER: <image>\\n{{prompt}} ASSISTANT:`). It is the embedded default of lvsal-data: the demo, the
notebooks and the tests run on it, on any CPU, with no download.

## The world

Scenes of 2-5 object categories out of 24 COCO categories, each drawn as a glyph no other
category shares (shape x colour x texture), at sizes 14-26 px, over a noisy background with
clutter strokes (`lvsal_data/organism/world.py`). Captions of 2-4 sentences name the objects with
counts, synonyms and plurals ("two puppies"), then colours and positions. In train and val, nine
COCO-like pairs co-occur 85% of the time (fork-knife, dog-frisbee, cup-dining table, cat-couch,
laptop-mouse, car-traffic light, bottle-wine glass, teddy bear-bed, horse-sheep) and are named
side by side; in the test split every category is drawn independently, so the pairs are broken
and the language prior misleads. Also POPE-style yes/no questions. A separate, unbounded stream
of scenes with independent categories and no captions (`vision_scene`) serves only to pretrain
the vision tower.

## Recipe

`python -m lvsal_data.organism.train` (deterministic: seed {cfg.get('seed')}, {cfg.get('threads')} CPU threads), in \
two stages
as LLaVA is built:

1. **Vision tower** ({cfg.get('vision_steps')} AdamW steps of batch {cfg.get('vision_batch')}, lr \
{cfg.get('vision_lr')}): pretrained
   on multi-label object presence through a linear probe on the patch features LLaVA reads
   (`vision_feature_layer` -2), {cfg.get('vision_pool')}-pooled over patches; the probe is dropped. Its scenes are
   drawn fresh at every step from the world's vision-pretraining stream (categories independent,
   none of them a train scene), so the tower learns to see rather than the train split's
   co-occurrences or images. The projector's first layer is then initialised with the features' mean and std
   folded in.
2. **Captioning and yes/no** ({cfg.get('steps')} AdamW steps of batch {cfg.get('batch_size')}, lr {cfg.get('lr')}, \
warm-up
   {cfg.get('warmup')}, cosine, weight decay {cfg.get('weight_decay')}, loss on answer tokens only), the vision tower
   {'frozen' if cfg.get('freeze_vision') else 'trained too'}: {cfg.get('train_scenes')} train scenes x \
({cfg.get('captions_per_scene')} captions +
   {cfg.get('questions_per_scene')} yes/no question(s), present and absent objects alternating) = \
{training.get('n_examples')} examples.

Both stages run {precision}.
Measured: {training.get('minutes')} minutes on 2 CPU cores ({training.get('vision_minutes', '?')} of them up to \
the end of stage 1, rendering included).

## Measured (greedy, {report['protocol']['scenes']} held-out test scenes, max_new_tokens \
{report['protocol']['max_new_tokens']})

`python -m lvsal_data.organism.evaluate` reproduces this table (95% bootstrap CIs, n = {c['n']} captions).

| metric | value [95% CI] |
|---|---|
| CHAIR_S (%) | {format_estimate(c['chair_s'])} |
| CHAIR_I (%) | {format_estimate(c['chair_i'])} |
| object recall (%) | {format_estimate(c['recall'])} |
| mean length (tokens) | {format_estimate(c['length'], scale=1)} |

Hallucinated mentions: {h['n']}; of them {h['partner_of_present_object']} ({share}) name the
co-occurrence partner of an object that is present (the language prior at work).

POPE on the same test scenes (2 present + 2 absent objects per image):

| split | n | accuracy (%) | F1 (%) | yes-ratio (%) |
|---|---:|---|---|---|
{pope_rows}

{targets(report)}

Examples:
{examples}

## Limits

It is a model organism, not a captioner: a 96 px synthetic world, 24 categories, templated
language. Use it to exercise and test the toolkit, and to study saliency in a setting whose
ground truth is exact; do not read its numbers as claims about real LVLMs.
{BF16_NOTE if cfg.get('bf16') else ''}"""


BF16_NOTE = """
bf16 autocast halves the training time on a CPU with native bf16 (measured on a 2-core AMD EPYC
with `avx512_bf16`; without it, expect fp32 speed or slower). It also trains a weaker yes/no
skill: the same recipe in fp32 (`--bf16 false --steps 2400`) answered POPE at 78.9 / 78.5 / 64.0%
(random / popular / adversarial; n = 800 each) with CHAIR_S 53.5% [46.5, 60.5] and recall 87.4%,
but took about 31 minutes on 2 idle cores, over the 30 we allow the training command.
"""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=str(weights_dir()), help="model folder (default: the shipped organism)")
    parser.add_argument("--n", type=int, default=200, help="held-out test scenes (default 200)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="cpu", help="cpu (the card's numbers) or cuda")
    parser.add_argument("--no-card", action="store_true", help="do not rewrite the model card")
    args = parser.parse_args(argv)
    torch.set_num_threads(2)
    folder = Path(args.model)
    lvlm = load_lvlm(str(folder), device=args.device, dtype="float32")
    report = evaluate(lvlm, n=args.n, seed=args.seed)
    atomic_write_text(folder / "evaluation.json", json.dumps(report, indent=1))
    if not args.no_card:
        training = read_json(folder / "training_log.json") if (folder / "training_log.json").exists() else {}
        atomic_write_text(folder / "README.md", model_card(report, training))
    c, f = report["chair"], format_estimate
    print(f"CHAIR_S {f(c['chair_s'])}  CHAIR_I {f(c['chair_i'])}  recall {f(c['recall'])}  "
          f"length {f(c['length'], scale=1)}  (n={c['n']}); card and evaluation.json in {folder}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
