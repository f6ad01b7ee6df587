"""Recipes of the text track's zoo: the tiny CLIP, the two-head judge and the text-to-image UNets.

``unlearnbench zoo train mnist-text-clip|mnist-text-judge|mnist-text-unet-base|mnist-text-unet-retrain-…``
runs one. UNet training is resumable: the full training state (weights, EMA, optimiser, LR schedule,
RNG, step) is saved every ``checkpoint_every`` steps next to the output, and a re-run of the same recipe
continues from the last checkpoint, so a multi-hour CPU run can span several sessions.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from benchmark.data.mnist import NUM_CLASSES
from benchmark.data.mnist_text import (
    COLOURS,
    HELDOUT_TEMPLATES,
    NUM_COLOURS,
    TRAIN_TEMPLATES,
    TextImages,
    caption,
    caption_table,
    draw_caption_ids,
    mnist_text_splits,
    parse_concept,
)
from benchmark.models.class_unet import default_scheduler_config
from benchmark.zoo.recipes import JudgeRecipe, training_step, warmup_cosine


# -- CLIP ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class CLIPRecipe:
    """Contrastive pre-training of the tiny CLIP on the member images and their training captions.

    Departure from CLIP's InfoNCE, stated: with 40 (digit, colour) cells, a batch of 256 holds many
    captions of the same cell, which InfoNCE would treat as negatives. The loss here is the
    multi-positive form (targets spread uniformly over every caption of the image's cell in the batch),
    symmetric image→text and text→image, as in supervised contrastive learning (Khosla et al., 2020).
    """

    steps: int = 2000
    batch_size: int = 256
    lr: float = 1e-3
    weight_decay: float = 0.1
    warmup_steps: int = 100
    max_shift_px: int = 1
    seed: int = 0
    split_seed: int = 0


def _shift(x: torch.Tensor, max_px: int, gen: torch.Generator) -> torch.Tensor:
    if max_px <= 0:
        return x
    dx, dy = (int(v) for v in torch.randint(-max_px, max_px + 1, (2,), generator=gen))
    return torch.roll(x, shifts=(dy, dx), dims=(2, 3))


def cell_of(data: TextImages) -> torch.Tensor:
    return data.digit * NUM_COLOURS + data.colour


def train_clip(recipe: CLIPRecipe = CLIPRecipe(), show_progress: bool = True) -> tuple[Any, dict]:
    from benchmark.models.tiny_clip import create_clip, tokenize

    model = create_clip(seed=recipe.seed).train()
    data = mnist_text_splits(recipe.split_seed).members
    vocab, _ = caption_table()
    all_ids = tokenize(list(vocab))
    opt = torch.optim.AdamW(model.parameters(), lr=recipe.lr, weight_decay=recipe.weight_decay)
    sched = warmup_cosine(opt, recipe.warmup_steps, recipe.steps)
    gen = torch.Generator().manual_seed(recipe.seed)
    cells = cell_of(data)
    bar = tqdm(range(recipe.steps), desc="train clip", disable=not show_progress, mininterval=2)
    for step in bar:
        idx = torch.randint(0, len(data), (recipe.batch_size,), generator=gen)
        sub = data.where(idx)
        cap = draw_caption_ids(sub.digit, sub.colour, gen)
        img_f = F.normalize(model.encode_image(_shift(sub.x, recipe.max_shift_px, gen)), dim=-1)
        txt_f = F.normalize(model.encode_text(all_ids[cap]), dim=-1)
        logits = model.logit_scale.exp() * img_f @ txt_f.T
        same = (cells[idx][:, None] == cells[idx][None, :]).float()
        target = same / same.sum(1, keepdim=True)
        loss = 0.5 * (torch.sum(-target * logits.log_softmax(1), 1).mean()
                      + torch.sum(-target * logits.T.log_softmax(1), 1).mean())
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        with torch.no_grad():
            model.logit_scale.clamp_(0, math.log(100))
        if step % 50 == 0:
            bar.set_postfix(loss=f"{loss.item():.3f}")
    model.eval()
    return model, clip_zero_shot(model, mnist_text_splits(recipe.split_seed).heldout)


@torch.no_grad()
def clip_zero_shot(model: Any, data: TextImages, templates: tuple[str, ...] = HELDOUT_TEMPLATES,
                   phrasing: int = 0) -> dict:
    """Zero-shot accuracy per attribute on ``data``: each image is scored against the 40 (digit, colour)
    prompts of every template, probabilities averaged over templates, and the digit and colour read off
    the best (digit, colour) prompt. ``phrasing`` picks the words: 0, 1 = the erase phrasings ("zero",
    "the digit 0"; "red", "red ink"), 2, 3 = the paraphrases ("cero", "nought"; "crimson", "scarlet")."""
    from benchmark.data.mnist_text import all_phrasings_colour, all_phrasings_digit
    from benchmark.models.tiny_clip import tokenize

    prompts = [caption(d, c, t, all_phrasings_digit(d)[phrasing], all_phrasings_colour(c)[phrasing])
               for t in templates for d in range(NUM_CLASSES) for c in range(NUM_COLOURS)]
    txt = F.normalize(model.encode_text(tokenize(prompts)), dim=-1).view(len(templates), NUM_CLASSES * NUM_COLOURS, -1)
    img = F.normalize(model.encode_image(data.x), dim=-1)
    probs = torch.stack([(100 * img @ t.T).softmax(1) for t in txt]).mean(0)
    best = probs.argmax(1)
    digit_acc = float((best // NUM_COLOURS == data.digit).float().mean())
    colour_acc = float((best % NUM_COLOURS == data.colour).float().mean())
    return {"zero_shot_digit_accuracy": digit_acc, "zero_shot_colour_accuracy": colour_acc, "n": len(data),
            "templates": "held-out", "protocol": "argmax over 40 (digit, colour) prompts, mean of held-out templates"}


# -- judge --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class TextJudgeRecipe(JudgeRecipe):
    """Two-head judge: digit (10 + "not a digit", outlier exposure as the class track's judge) and ink
    colour (4), one CNN with 15 outputs, same augmentation as the class track's judge. Trained on the
    member split, evaluated on the held-out split. 60 epochs: 30 gave 94.6% held-out digit accuracy."""

    epochs: int = 60


JUDGE_HEADS = {"digit": (0, NUM_CLASSES + 1), "colour": (NUM_CLASSES + 1, NUM_CLASSES + 1 + NUM_COLOURS)}


def train_text_judge(recipe: TextJudgeRecipe = TextJudgeRecipe(), show_progress: bool = True) -> tuple[Any, dict]:
    from benchmark.judges import DigitCNN
    from benchmark.zoo.recipes import _augment, make_outliers

    torch.manual_seed(recipe.seed)
    splits = mnist_text_splits(recipe.split_seed)
    net = DigitCNN(NUM_CLASSES + 1 + NUM_COLOURS, recipe.width, recipe.feature_dim, in_channels=3,
                   reject_class=NUM_CLASSES, heads={k: list(v) for k, v in JUDGE_HEADS.items()})
    opt = torch.optim.Adam(net.parameters(), lr=recipe.lr)
    data = splits.members
    steps_per_epoch = math.ceil(len(data) / recipe.batch_size)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, recipe.lr, total_steps=recipe.epochs * steps_per_epoch)
    gen = torch.Generator().manual_seed(recipe.seed)
    d0, d1 = JUDGE_HEADS["digit"]
    c0, c1 = JUDGE_HEADS["colour"]
    bar = tqdm(range(recipe.epochs), desc="train text judge", disable=not show_progress)
    for _ in bar:
        net.train()
        perm = torch.randperm(len(data), generator=gen)
        for i in range(0, len(data), recipe.batch_size):
            idx = perm[i:i + recipe.batch_size]
            n_out = int(len(idx) * recipe.outlier_fraction)
            outliers = make_outliers(n_out, gen, data.x.mean(1, keepdim=True)).expand(-1, 3, -1, -1)
            tint = torch.rand(n_out, 3, 1, 1, generator=gen) * 0.6 + 0.4  # coloured noise, not just grey
            xb = torch.cat([_augment(data.x[idx], recipe, gen), ((outliers + 1) * tint - 1)])
            yd = torch.cat([data.digit[idx], torch.full((n_out,), NUM_CLASSES)])
            yc = torch.cat([data.colour[idx], torch.full((n_out,), -100)])
            logits = net(xb)
            loss = F.cross_entropy(logits[:, d0:d1], yd) + F.cross_entropy(logits[:, c0:c1], yc, ignore_index=-100)
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
        bar.set_postfix(loss=f"{loss.item():.3f}")
    net.eval()
    with torch.no_grad():
        logits = net(splits.heldout.x)
    digit_acc = float((logits[:, d0:d1].argmax(1) == splits.heldout.digit).float().mean())
    colour_acc = float((logits[:, c0:c1].argmax(1) == splits.heldout.colour).float().mean())
    return net, {"heldout_digit_accuracy": digit_acc, "heldout_colour_accuracy": colour_acc,
                 "n": len(splits.heldout)}


# -- text-to-image UNet ---------------------------------------------------------------------------
@dataclass(frozen=True)
class TextUNetRecipe:
    """Text-conditioned DDPM on the member split (minus the ``exclude`` concept for an oracle).

    Each step draws one training caption per image (all phrasings, training templates only) and drops
    it to the empty prompt with ``cond_drop_prob`` (classifier-free guidance, Stable Diffusion's null
    condition). The text encoder is the frozen tiny CLIP; caption states are computed once and cached.
    """

    exclude: str | None = None  # a concept, e.g. "digit:0" or "colour:red"
    steps: int = 6000
    batch_size: int = 128
    lr: float = 1e-3
    warmup_steps: int = 200
    ema_decay: float = 0.999
    cond_drop_prob: float = 0.1
    grad_clip: float = 1.0
    block_out_channels: tuple[int, ...] = (32, 64, 64)
    attention_heads: int = 4
    seed: int = 0
    split_seed: int = 0
    scheduler: dict = field(default_factory=default_scheduler_config)


def text_unet_training_data(recipe: TextUNetRecipe) -> TextImages:
    members = mnist_text_splits(recipe.split_seed).members
    if recipe.exclude is None:
        return members
    return members.where(~parse_concept(recipe.exclude).mask(members))


def train_text_unet(recipe: TextUNetRecipe, text_model: Any, checkpoint_dir: Path | None = None,
                    checkpoint_every: int = 250, show_progress: bool = True,
                    progress: Callable[[int, int, dict[str, float]], None] | None = None) -> Any:
    """Train (or resume) a text UNet; returns the EMA model. ``text_model`` is a ``TextConditionalUNet``
    whose UNet is replaced by the trained one (it supplies the frozen text encoder and the schedule)."""
    from diffusers.training_utils import EMAModel

    data = text_unet_training_data(recipe)
    model = text_model
    model.train()
    params = model.parameters()
    opt = torch.optim.AdamW(params, lr=recipe.lr, weight_decay=0.0)
    sched = warmup_cosine(opt, recipe.warmup_steps, recipe.steps)
    ema = EMAModel(params, decay=recipe.ema_decay)
    gen = torch.Generator().manual_seed(recipe.seed + 1)
    start = 0
    state_file = checkpoint_dir / "train_state.pt" if checkpoint_dir is not None else None
    if checkpoint_dir is not None:
        checkpoint_dir.mkdir(parents=True, exist_ok=True)
    if state_file is not None and state_file.is_file():
        from benchmark.models.fingerprint import verify_sha256

        digest = state_file.with_name("train_state.sha256")
        verify_sha256(state_file, digest.read_text().strip() if digest.is_file() else None)
        state = torch.load(state_file, weights_only=False, map_location=model.device)  # our own file (below)
        model.unet.load_state_dict(state["unet"])
        opt.load_state_dict(state["opt"])
        sched.load_state_dict(state["sched"])
        ema.load_state_dict(state["ema"])
        gen.set_state(state["gen"].cpu())
        start = int(state["step"])
    vocab, _ = caption_table()
    with torch.no_grad():
        states = model.encode(list(vocab) + [""]).detach()
    empty = len(vocab)
    bar = tqdm(range(start, recipe.steps), desc="train text unet", initial=start, total=recipe.steps,
               disable=not show_progress or progress is not None, mininterval=5)
    for step in bar:
        idx = torch.randint(0, len(data), (recipe.batch_size,), generator=gen)
        cap = draw_caption_ids(data.digit[idx], data.colour[idx], gen)
        cap[torch.rand(len(cap), generator=gen) < recipe.cond_drop_prob] = empty
        x0 = data.x[idx].to(model.device)
        loss = model.loss(x0, states[cap].to(model.device), generator=gen).mean()
        training_step(loss, params, opt, sched, ema, recipe.grad_clip)
        if step % 50 == 0:
            bar.set_postfix(loss=f"{loss.item():.4f}")
        if progress is not None:
            progress(step + 1, recipe.steps, {"loss": float(loss.detach())})
        done = step + 1
        if state_file is not None and (done % checkpoint_every == 0 or done == recipe.steps):
            tmp = state_file.with_suffix(".tmp")
            torch.save({"unet": model.unet.state_dict(), "opt": opt.state_dict(), "sched": sched.state_dict(),
                        "ema": ema.state_dict(), "gen": gen.get_state(), "step": done}, tmp)
            tmp.replace(state_file)
            from benchmark.models.fingerprint import file_sha256

            state_file.with_name("train_state.sha256").write_text(file_sha256(state_file) + "\n")
    ema.copy_to(params)
    return model.eval()


def text_unet_quality(model: Any, judge: Any, n_per_cell: int = 10, steps: int = 25, guidance: float = 5.0,
                      seed: int = 1234, show_progress: bool = False) -> dict:
    """Prompt following on held-out templates: share of samples whose judged digit / colour is the
    prompted one (n_per_cell samples for each of the 40 (digit, colour) cells, phrasings drawn from all)."""
    from benchmark.data.mnist_text import prompts_for

    digits = torch.arange(NUM_CLASSES).repeat_interleave(NUM_COLOURS * n_per_cell)
    colours = torch.arange(NUM_COLOURS).repeat_interleave(n_per_cell).repeat(NUM_CLASSES)
    prompts = prompts_for(digits.tolist(), colours.tolist(), HELDOUT_TEMPLATES, seed=seed)
    bar = tqdm(total=len(prompts), desc="quality samples", disable=not show_progress, leave=False)
    x = model.sample(prompts, seed=seed, steps=steps, guidance=guidance, progress=bar.update)
    bar.close()
    pred = judge.predict_heads(x)
    digit_ok = pred["digit"] == digits
    colour_ok = pred["colour"] == colours
    return {"digit_agreement": float(digit_ok.float().mean()), "colour_agreement": float(colour_ok.float().mean()),
            "per_digit": {int(d): float(digit_ok[digits == d].float().mean()) for d in range(NUM_CLASSES)},
            "per_colour": {COLOURS[c]: float(colour_ok[colours == c].float().mean()) for c in range(NUM_COLOURS)},
            "n": len(prompts), "templates": list(HELDOUT_TEMPLATES), "ddim_steps": steps, "guidance": guidance,
            "seed": seed, "judge_sha256": judge.sha256, "train_templates": list(TRAIN_TEMPLATES)}
