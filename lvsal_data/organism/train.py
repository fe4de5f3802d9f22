"""Train the organism: ``python -m lvsal_data.organism.train [--out DIR]``.

Deterministic (seeded data, order and initialisation; 2 CPU threads) and about 22 minutes on
2 CPU cores with native bf16 (it trains under bf16 autocast; ``--bf16 false`` trains in fp32,
about 1.6x slower here). Two stages, as LLaVA is built: the vision tower is pretrained on object
presence over a stream of fresh scenes (:func:`~lvsal_data.organism.world.vision_scene`), then frozen while
the projector and the language model learn the world's train split: two captions and one yes/no
question (about a present or an absent object, alternately) per scene, loss on the answer tokens
only.
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

from ..errors import InputError
from ..io import atomic_write_text, staged_folder
from ..models import parse_device
from . import weights_dir
from .build import N_IMAGE_TOKENS, build_model, build_processor, build_tokenizer
from ..prompts import CAPTION_PROMPT
from .world import CATEGORIES, make_scene, vision_scene

YESNO_SUFFIX = " Please just answer yes or no."


@dataclass
class TrainConfig:
    """The recipe; written into ``training_log.json``."""

    train_scenes: int = 6000
    steps: int = 3000
    batch_size: int = 32
    lr: float = 1e-3
    warmup: int = 100
    weight_decay: float = 0.01
    seed: int = 0
    threads: int = 2
    captions_per_scene: int = 2
    vision_steps: int = 1800
    vision_batch: int = 64
    vision_lr: float = 2e-3
    freeze_vision: bool = True  # as LLaVA keeps its pretrained CLIP frozen
    vision_pool: str = "mean"  # how the presence probe pools patch logits: mean or max
    questions_per_scene: int = 1  # alternately about a present and an absent object
    device: str = "cpu"  # the shipped weights are the CPU run's; a GPU run is faster, not bitwise equal
    bf16: bool = True  # bf16 autocast (mixed precision, fp32 weights), as LLaVA trains; half the CPU time


def mixed_precision(cfg: TrainConfig) -> torch.autocast:
    """bf16 autocast on the training device when ``cfg.bf16`` (weights and optimiser stay fp32)."""
    return torch.autocast(device_type=torch.device(cfg.device).type, dtype=torch.bfloat16, enabled=cfg.bf16)


def pretrain_vision(model, processor, cfg: TrainConfig) -> list[float]:
    """Stage 0: pretrain the vision tower on multi-label object presence, as real LVLMs start from
    a pretrained image encoder. A linear probe on the patch features of the layer LLaVA reads
    (``vision_feature_layer``), pooled over patches (``vision_pool``).
    Every step draws fresh scenes of the world's vision-pretraining stream (categories independent,
    no scene of the train split), so the tower neither memorises the training images nor learns
    their co-occurrences: it learns to see. The probe is thrown away afterwards."""
    tower = model.model.vision_tower
    layer = model.config.vision_feature_layer
    device = next(tower.parameters()).device

    def batch(start: int, size: int) -> tuple[torch.Tensor, torch.Tensor]:
        drawn = [vision_scene(start + j, cfg.seed) for j in range(size)]
        px = processor.image_processor([s.render() for s in drawn], return_tensors="pt")["pixel_values"]
        y = torch.tensor([[float(c in s.categories) for c in CATEGORIES] for s in drawn])
        return px.to(device), y.to(device)

    probe = torch.nn.Linear(tower.config.hidden_size, len(CATEGORIES)).to(device)
    # mean pooling makes the *average* patch feature say what is present, so one language-model
    # head attending evenly over the image can already read it; max pooling keeps it local.
    pool = (lambda x: x.mean(dim=1)) if cfg.vision_pool == "mean" else (lambda x: x.amax(dim=1))
    params = list(tower.parameters()) + list(probe.parameters())
    opt = torch.optim.AdamW(params, lr=cfg.vision_lr, weight_decay=0.01)
    losses = []
    bar = tqdm(range(cfg.vision_steps), desc="pretraining vision tower", unit="step")
    for step in bar:
        px, y = batch(step * cfg.vision_batch, cfg.vision_batch)
        with mixed_precision(cfg):
            hidden = tower(pixel_values=px, output_hidden_states=True).hidden_states[layer][:, 1:]
            logits = pool(probe(hidden))  # (batch, categories)
        loss = torch.nn.functional.binary_cross_entropy_with_logits(logits.float(), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        losses.append(round(loss.item(), 5))
        if step % 20 == 0:
            bar.set_postfix(loss=f"{sum(losses[-20:]) / len(losses[-20:]):.3f}")
    with torch.no_grad():  # scenes the tower has not seen: the stream's next ones
        px, y = batch(cfg.vision_steps * cfg.vision_batch, 512)
        hidden = tower(pixel_values=px, output_hidden_states=True).hidden_states[layer][:, 1:]
        acc = ((pool(probe(hidden)) > 0).float() == y).float().mean().item()
    print(f"vision tower: presence accuracy {acc:.3f} on unseen scenes", file=sys.stderr)
    return losses


@torch.no_grad()
def standardize_projector(model, pixels: torch.Tensor) -> None:
    """Fold the mean and std of the vision features into the projector's first layer, so it sees
    standardised inputs (a data-dependent initialisation: the raw features share a large common
    component that would otherwise dominate every image token)."""
    tower = model.model.vision_tower
    feats = torch.cat([tower(pixel_values=pixels[i : i + 256], output_hidden_states=True)
                       .hidden_states[model.config.vision_feature_layer][:, 1:].reshape(-1, tower.config.hidden_size)
                       for i in range(0, min(len(pixels), 1024), 256)])
    mean, std = feats.mean(0), feats.std(0).clamp_min(1e-6)
    lin = model.model.multi_modal_projector.linear_1
    lin.weight.div_(std)
    lin.bias.sub_(lin.weight @ mean)


def yesno_prompt(category: str) -> str:
    article = "an" if category[0] in "aeiou" else "a"
    return f"Is there {article} {category} in the image?{YESNO_SUFFIX}"


def build_examples(cfg: TrainConfig) -> tuple[list, list[tuple[int, str, str]]]:
    """Scenes and (scene index, prompt, answer) examples of the train split."""
    rng = random.Random(f"train-examples/{cfg.seed}")
    scenes = [make_scene("train", i, cfg.seed) for i in range(cfg.train_scenes)]
    examples = []
    for k, scene in enumerate(scenes):
        for j in range(cfg.captions_per_scene):
            examples.append((k, CAPTION_PROMPT, scene.captions[j % len(scene.captions)]))
        present = scene.categories
        absent = [c for c in CATEGORIES if c not in present]
        for j in range(cfg.questions_per_scene):
            if (k + j) % 2 == 0:
                examples.append((k, yesno_prompt(rng.choice(present)), "Yes"))
            else:
                examples.append((k, yesno_prompt(rng.choice(absent)), "No"))
    return scenes, examples


def epoch_batches(examples: list, batch_size: int, gen: torch.Generator) -> list[list[int]]:
    """One epoch of batches, each of one kind (captions or yes/no: less padding), in random order."""
    kinds: dict[bool, list[int]] = {True: [], False: []}
    for i, (_, prompt, _) in enumerate(examples):
        kinds[prompt == CAPTION_PROMPT].append(i)
    batches = []
    for idx in (v for v in kinds.values() if v):
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
    scenes, examples = build_examples(cfg)
    corpus = [" " + e[2] for e in examples] + [e[1] for e in examples] + ["USER: ASSISTANT:"]  # answers as encoded
    tokenizer = build_tokenizer(corpus)
    processor = build_processor(tokenizer)
    model = build_model(tokenizer, cfg.seed)
    model.train()

    print(f"rendering {len(scenes)} scenes ...", file=sys.stderr)
    pixels = torch.cat([processor.image_processor([s.render() for s in scenes[i : i + 500]],
                                                  return_tensors="pt")["pixel_values"]
                        for i in range(0, len(scenes), 500)]).to(cfg.device)
    model.to(cfg.device)
    encoded = [encode(tokenizer, p, a) for _, p, a in examples]
    vision_log = pretrain_vision(model, processor, cfg) if cfg.vision_steps else []
    vision_minutes = (time.time() - started) / 60
    if cfg.vision_steps:
        standardize_projector(model, pixels)
    if cfg.freeze_vision and cfg.vision_steps:
        model.model.vision_tower.requires_grad_(False)

    trainable = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    decay = [p for n, p in trainable if p.dim() >= 2]
    no_decay = [p for n, p in trainable if p.dim() < 2]
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
        px = pixels[torch.tensor([examples[i][0] for i in batch], device=pixels.device)]
        with mixed_precision(cfg):
            loss = model(input_ids=ids.to(cfg.device), attention_mask=mask.to(cfg.device), pixel_values=px,
                         labels=labels.to(cfg.device)).loss
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        log.append(round(loss.item(), 5))
        if step % 20 == 0:
            bar.set_postfix(loss=f"{sum(log[-20:]) / len(log[-20:]):.3f}")

    model.eval().to("cpu")
    save(model, processor, out)
    minutes = (time.time() - started) / 60
    atomic_write_text(out / "training_log.json", json.dumps(
        {"config": asdict(cfg), "minutes": round(minutes, 1), "vision_minutes": round(vision_minutes, 1),
         "n_examples": len(examples),
         "n_parameters": sum(p.numel() for p in model.parameters()), "vision_loss": vision_log[::10],
         "loss": log[::10]}, indent=1))
    print(f"trained in {minutes:.1f} min; final loss {sum(log[-50:]) / 50:.3f}; weights in {out}")
    return out


def save(model, processor, out: Path) -> None:
    """Write the model and processor into ``out`` (by default the shipped weights) so that a
    killed run never leaves a half-written file there (:func:`~lvsal_data.io.staged_folder`)."""
    with staged_folder(out) as staging:
        model.save_pretrained(staging, safe_serialization=True)
        processor.save_pretrained(staging)


def _flag(value: str) -> bool:
    """A boolean option's value: true/false, yes/no or 1/0; anything else is an error."""
    word = value.strip().lower()
    if word in ("1", "true", "yes"):
        return True
    if word in ("0", "false", "no"):
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got {value!r}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=weights_dir(), help="output folder (default: the shipped weights)")
    for name, value in asdict(TrainConfig()).items():
        kind = _flag if isinstance(value, bool) else type(value)
        parser.add_argument(f"--{name.replace('_', '-')}", type=kind, default=value)
    args = parser.parse_args(argv)
    cfg = TrainConfig(**{k: getattr(args, k) for k in asdict(TrainConfig())})
    try:
        parse_device(cfg.device)
    except InputError as err:
        parser.error(str(err))
    train(args.out, cfg)
    return 0


if __name__ == "__main__":
    sys.exit(main())
