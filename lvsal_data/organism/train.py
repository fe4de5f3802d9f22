"""Train the organism: ``python -m lvsal_data.organism.train [--out DIR]``.

Deterministic (seeded data, order and initialisation; 2 CPU threads) and about 20 minutes on
2 CPU cores. Trains a small LLaVA on the synthetic world's train split: two captions and two
yes/no questions (one present, one absent object) per scene, loss on the answer tokens only.
Writes the model (safetensors), the processor, ``training_log.json`` and leaves the model card
to :mod:`lvsal_data.organism.evaluate`.
"""

from __future__ import annotations

import argparse
import json
import math
import random
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from tqdm.auto import tqdm

from . import weights_dir
from .build import N_IMAGE_TOKENS, build_model, build_processor, build_tokenizer
from .world import CAPTION_PROMPT, CATEGORIES, make_scene

YESNO_SUFFIX = " Please just answer yes or no."


@dataclass
class TrainConfig:
    """The recipe; written into ``training_log.json``."""

    train_scenes: int = 6000
    steps: int = 1600
    batch_size: int = 32
    lr: float = 1.5e-3
    warmup: int = 100
    weight_decay: float = 0.01
    seed: int = 0
    threads: int = 2


def yesno_prompt(category: str) -> str:
    article = "an" if category[0] in "aeiou" else "a"
    return f"Is there {article} {category} in the image?{YESNO_SUFFIX}"


def build_examples(n_scenes: int, seed: int) -> tuple[list, list[tuple[int, str, str]]]:
    """Scenes and (scene index, prompt, answer) examples of the train split."""
    rng = random.Random(f"train-examples/{seed}")
    scenes = [make_scene("train", i, seed) for i in range(n_scenes)]
    examples = []
    for k, scene in enumerate(scenes):
        for text in scene.captions:
            examples.append((k, CAPTION_PROMPT, text))
        present = scene.categories
        absent = [c for c in CATEGORIES if c not in present]
        examples.append((k, yesno_prompt(rng.choice(present)), "Yes"))
        examples.append((k, yesno_prompt(rng.choice(absent)), "No"))
    return scenes, examples


def epoch_batches(examples: list, batch_size: int, gen: torch.Generator) -> list[list[int]]:
    """One epoch of batches, each of one kind (captions or yes/no: less padding), in random order."""
    kinds: dict[bool, list[int]] = {True: [], False: []}
    for i, (_, prompt, _) in enumerate(examples):
        kinds[prompt == CAPTION_PROMPT].append(i)
    batches = []
    for idx in kinds.values():
        perm = [idx[j] for j in torch.randperm(len(idx), generator=gen).tolist()]
        batches += [perm[k : k + batch_size] for k in range(0, len(perm) - batch_size + 1, batch_size)]
    return [batches[j] for j in torch.randperm(len(batches), generator=gen).tolist()]


def encode(tokenizer, prompt: str, answer: str) -> tuple[list[int], list[int]]:
    """Token ids and labels (-100 on the prompt) in the processor's exact layout."""
    chat = f"USER: {'<image>' * N_IMAGE_TOKENS}\n{prompt} ASSISTANT:"
    p = tokenizer(chat, add_special_tokens=False)["input_ids"]
    a = tokenizer(" " + answer, add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]
    return p + a, [-100] * len(p) + a


def train(out: Path, cfg: TrainConfig) -> Path:
    torch.manual_seed(cfg.seed)
    torch.set_num_threads(cfg.threads)
    torch.use_deterministic_algorithms(True, warn_only=True)
    started = time.time()
    scenes, examples = build_examples(cfg.train_scenes, cfg.seed)
    corpus = [e[2] for e in examples] + [e[1] for e in examples] + ["USER: ASSISTANT:"]
    tokenizer = build_tokenizer(corpus)
    processor = build_processor(tokenizer)
    model = build_model(tokenizer, cfg.seed)
    model.train()

    print(f"rendering {len(scenes)} scenes ...", file=sys.stderr)
    pixels = torch.cat([processor.image_processor([s.render() for s in scenes[i : i + 500]],
                                                  return_tensors="pt")["pixel_values"]
                        for i in range(0, len(scenes), 500)])
    encoded = [encode(tokenizer, p, a) for _, p, a in examples]

    decay = [p for n, p in model.named_parameters() if p.dim() >= 2]
    no_decay = [p for n, p in model.named_parameters() if p.dim() < 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": cfg.weight_decay},
                             {"params": no_decay, "weight_decay": 0.0}], lr=cfg.lr, betas=(0.9, 0.98))
    schedule = lambda s: min(1.0, (s + 1) / cfg.warmup) * 0.5 * (1 + math.cos(math.pi * min(1.0, s / cfg.steps)))  # noqa: E731
    sched = torch.optim.lr_scheduler.LambdaLR(opt, schedule)
    gen = torch.Generator().manual_seed(cfg.seed)
    batches: list[list[int]] = []
    log = []
    pad = tokenizer.pad_token_id
    bar = tqdm(range(cfg.steps), desc="training organism", unit="step")
    for step in bar:
        if not batches:
            batches = epoch_batches(examples, cfg.batch_size, gen)
        batch = batches.pop()
        width = max(len(encoded[i][0]) for i in batch)
        ids = torch.full((len(batch), width), pad)
        labels = torch.full((len(batch), width), -100)
        mask = torch.zeros((len(batch), width), dtype=torch.long)
        for r, i in enumerate(batch):
            x, y = encoded[i]
            ids[r, : len(x)], labels[r, : len(y)], mask[r, : len(x)] = torch.tensor(x), torch.tensor(y), 1
        px = pixels[[examples[i][0] for i in batch]]
        loss = model(input_ids=ids, attention_mask=mask, pixel_values=px, labels=labels).loss
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        log.append(round(loss.item(), 5))
        if step % 20 == 0:
            bar.set_postfix(loss=f"{sum(log[-20:]) / len(log[-20:]):.3f}")

    model.eval()
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out, safe_serialization=True)
    processor.save_pretrained(out)
    minutes = (time.time() - started) / 60
    (out / "training_log.json").write_text(json.dumps(
        {"config": asdict(cfg), "minutes": round(minutes, 1), "n_examples": len(examples),
         "n_parameters": sum(p.numel() for p in model.parameters()), "loss": log[::10]}, indent=1))
    print(f"trained in {minutes:.1f} min; final loss {sum(log[-50:]) / 50:.3f}; weights in {out}")
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=weights_dir(), help="output folder (default: the shipped weights)")
    for name, value in asdict(TrainConfig()).items():
        parser.add_argument(f"--{name.replace('_', '-')}", type=type(value), default=value)
    args = parser.parse_args(argv)
    cfg = TrainConfig(**{k: getattr(args, k) for k in asdict(TrainConfig())})
    train(args.out, cfg)
    return 0


if __name__ == "__main__":
    sys.exit(main())
