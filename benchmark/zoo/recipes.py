"""Recipes that train the shipped reference weights, deterministic on CPU under their seed.

``unlearnbench zoo train NAME`` runs one. The shipped files in ``benchmark/zoo/`` were produced by
exactly these recipes (their sha256 is recorded in the scenario card); bit-identical rebuilds need
the same torch build and thread count, since float reductions on CPU depend on both.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from benchmark import cost
from benchmark.api import LabeledImages
from benchmark.data.mnist import NUM_CLASSES, mnist_splits
from benchmark.judges import DigitCNN
from benchmark.models.class_unet import ClassConditionalUNet, default_scheduler_config, tiny_unet_config


def recipe_hash(recipe: object) -> str:
    blob = json.dumps(dataclasses.asdict(recipe), sort_keys=True).encode()  # type: ignore[call-overload]
    return hashlib.sha256(blob).hexdigest()[:16]


@dataclass(frozen=True)
class JudgeRecipe:
    """Digit classifier on the member split, plus a "not a digit" class (index 10) learnt by outlier
    exposure (Hendrycks et al., ICLR 2019) so that noise, blank or saturated images — what an unlearned
    or broken model often produces — are not read as some digit. Evaluated on the held-out split."""

    epochs: int = 40
    outlier_fraction: float = 0.25
    batch_size: int = 128
    lr: float = 1e-3
    width: int = 32
    feature_dim: int = 64
    max_rotation_deg: float = 12.0
    max_shift: float = 0.12
    seed: int = 0
    split_seed: int = 0


@dataclass(frozen=True)
class UNetRecipe:
    """Class-conditional DDPM on the member split (minus ``exclude_class`` for a retrained oracle)."""

    exclude_class: int | None = None
    steps: int = 15000
    batch_size: int = 128
    lr: float = 1e-3
    warmup_steps: int = 200
    ema_decay: float = 0.999
    cond_drop_prob: float = 0.1
    grad_clip: float = 1.0
    block_out_channels: tuple[int, ...] = (16, 32, 64)
    seed: int = 0
    split_seed: int = 0
    scheduler: dict = field(default_factory=default_scheduler_config)


def _augment(x: torch.Tensor, recipe: JudgeRecipe, gen: torch.Generator) -> torch.Tensor:
    n = len(x)
    angle = (torch.rand(n, generator=gen) * 2 - 1) * math.radians(recipe.max_rotation_deg)
    shift = (torch.rand(n, 2, generator=gen) * 2 - 1) * recipe.max_shift * 2  # grid units span 2
    cos, sin = angle.cos(), angle.sin()
    theta = torch.stack([torch.stack([cos, -sin, shift[:, 0]], 1), torch.stack([sin, cos, shift[:, 1]], 1)], 1)
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    return F.grid_sample(x + 1, grid, align_corners=False, padding_mode="zeros") - 1


def make_outliers(n: int, gen: torch.Generator, like: torch.Tensor) -> torch.Tensor:
    """Non-digit images in [−1, 1]: uniform / Gaussian noise, constants, smooth blobs, noise-swamped
    or ink-saturated digits (drawn from ``like``)."""
    size = like.shape[-1]
    kind = torch.randint(0, 6, (n,), generator=gen)
    out = torch.empty(n, 1, size, size)
    u = torch.rand(n, 1, size, size, generator=gen) * 2 - 1
    level = torch.rand(n, 1, 1, 1, generator=gen) * 2 - 1
    spread = torch.rand(n, 1, 1, 1, generator=gen)
    g = (level + spread * torch.randn(n, 1, size, size, generator=gen)).clamp(-1, 1)
    low = torch.rand(n, 1, 4, 4, generator=gen) * 2 - 1
    blobs = F.interpolate(low, size=(size, size), mode="bilinear", align_corners=False)
    blobs = torch.where(torch.rand(n, 1, 1, 1, generator=gen) < 0.5, blobs.sign(), blobs)
    pick = like[torch.randint(0, len(like), (n,), generator=gen)]
    alpha = torch.rand(n, 1, 1, 1, generator=gen) * 0.35
    swamped = alpha * pick + (1 - alpha) * u
    saturated = F.max_pool2d(pick, 7, stride=1, padding=3)
    for k, img in enumerate((u, g, level.expand_as(u), blobs, swamped, saturated)):
        out[kind == k] = img[kind == k]
    return out


def train_judge(recipe: JudgeRecipe = JudgeRecipe(), show_progress: bool = True) -> tuple[DigitCNN, dict]:
    """Train the judge; returns the net and {'heldout_accuracy': ..., 'n': ...}."""
    torch.manual_seed(recipe.seed)
    splits = mnist_splits(recipe.split_seed)
    net = DigitCNN(NUM_CLASSES + 1, recipe.width, recipe.feature_dim, reject_class=NUM_CLASSES)
    opt = torch.optim.Adam(net.parameters(), lr=recipe.lr)
    steps_per_epoch = math.ceil(len(splits.members) / recipe.batch_size)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, recipe.lr, total_steps=recipe.epochs * steps_per_epoch)
    gen = torch.Generator().manual_seed(recipe.seed)
    x, y = splits.members.x, splits.members.y
    bar = tqdm(range(recipe.epochs), desc="train judge", disable=not show_progress)
    for _ in bar:
        net.train()
        perm = torch.randperm(len(y), generator=gen)
        for i in range(0, len(y), recipe.batch_size):
            idx = perm[i:i + recipe.batch_size]
            n_out = int(len(idx) * recipe.outlier_fraction)
            xb = torch.cat([_augment(x[idx], recipe, gen), make_outliers(n_out, gen, x)])
            yb = torch.cat([y[idx], torch.full((n_out,), NUM_CLASSES)])
            loss = F.cross_entropy(net(xb), yb)
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
        acc = judge_accuracy(net, splits.heldout)
        bar.set_postfix(loss=f"{loss.item():.3f}", heldout_acc=f"{acc:.4f}")
    net.eval()
    outliers = make_outliers(1000, torch.Generator().manual_seed(recipe.seed + 99), splits.heldout.x)
    with torch.no_grad():
        rejected = float((net(outliers).argmax(1) == NUM_CLASSES).float().mean())
        digits_rejected = float((net(splits.heldout.x).argmax(1) == NUM_CLASSES).float().mean())
    return net, {"heldout_accuracy": judge_accuracy(net, splits.heldout), "n": len(splits.heldout),
                 "heldout_rejected_as_not_digit": digits_rejected, "outlier_rejection": rejected, "n_outliers": 1000}


@torch.no_grad()
def judge_accuracy(net: DigitCNN, data: LabeledImages) -> float:
    was = net.training
    net.eval()
    acc = (net(data.x).argmax(1) == data.y).float().mean().item()
    net.train(was)
    return acc


def warmup_cosine(opt: torch.optim.Optimizer, warmup_steps: int, steps: int) -> torch.optim.lr_scheduler.LambdaLR:
    """Linear warm-up over ``warmup_steps``, then cosine decay to 0 at ``steps`` (the zoo recipes' schedule)."""
    warm = max(1, warmup_steps)
    return torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: min(1.0, (s + 1) / warm) * 0.5 * (1 + math.cos(math.pi * min(1.0, s / steps))))


def training_step(loss: torch.Tensor, params: list, opt: torch.optim.Optimizer, sched: Any, ema: Any,
                  grad_clip: float) -> None:
    """One optimiser step of a zoo recipe: backward, clip, step, schedule, EMA (and count it)."""
    opt.zero_grad(set_to_none=True)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(params, grad_clip)
    opt.step()
    cost.add(optimizer_steps=1)
    sched.step()
    ema.step(params)


def unet_training_data(recipe: UNetRecipe) -> LabeledImages:
    members = mnist_splits(recipe.split_seed).members
    if recipe.exclude_class is None:
        return members
    return members.where(members.y != recipe.exclude_class)


def train_unet(recipe: UNetRecipe = UNetRecipe(), show_progress: bool = True,
               on_checkpoint: Callable[[int, ClassConditionalUNet], None] | None = None,
               checkpoint_every: int = 0, data: LabeledImages | None = None,
               init: ClassConditionalUNet | None = None,
               progress: Callable[[int, int, dict[str, float]], None] | None = None) -> ClassConditionalUNet:
    """Train a conditional DDPM with label dropout (null class, or "" for captions) and EMA; return the
    EMA model.

    ``data`` and ``init`` let the retrain oracle reuse this exact loop for another model's
    architecture and retain set (same recipe as the base model, fresh weights). ``progress`` replaces
    the tqdm bar with the caller's progress(step, total, stats) callback.
    """
    from diffusers.training_utils import EMAModel

    torch.manual_seed(recipe.seed)
    if init is None:
        model = ClassConditionalUNet.from_config(tiny_unet_config(recipe.block_out_channels, NUM_CLASSES),
                                                 dict(recipe.scheduler), seed=recipe.seed)
    else:
        model = init
    data = unet_training_data(recipe) if data is None else data
    model.train()
    params = model.parameters()
    opt = torch.optim.AdamW(params, lr=recipe.lr, weight_decay=0.0)
    sched = warmup_cosine(opt, recipe.warmup_steps, recipe.steps)
    ema = EMAModel(params, decay=recipe.ema_decay)
    gen = torch.Generator().manual_seed(recipe.seed + 1)
    order = torch.randperm(len(data), generator=gen)
    pos = 0
    bar = tqdm(range(recipe.steps), desc="train unet", disable=not show_progress or progress is not None,
               mininterval=2)
    for step in bar:
        if pos + recipe.batch_size > len(order):
            order, pos = torch.randperm(len(data), generator=gen), 0
        idx = order[pos:pos + recipe.batch_size]
        pos += recipe.batch_size
        x0 = data.x[idx].to(model.device)
        y = data.y[idx].clone()
        drop = torch.rand(len(y), generator=gen) < recipe.cond_drop_prob
        if data.prompts is None:
            y[drop] = model.null_class
            cond = model.encode(y)
        else:  # captions (text track): dropped to the empty prompt, Stable Diffusion's null condition
            cond = model.encode(["" if d else data.prompts[int(i)] for i, d in zip(y, drop)])
        loss = model.loss(x0, cond, generator=gen).mean()
        training_step(loss, params, opt, sched, ema, recipe.grad_clip)
        if step % 50 == 0:
            bar.set_postfix(loss=f"{loss.item():.4f}")
        if progress is not None:
            progress(step + 1, recipe.steps, {"loss": float(loss.detach())})
        if on_checkpoint is not None and checkpoint_every and (step + 1) % checkpoint_every == 0:
            snap = model.clone()
            ema.copy_to(snap.parameters())
            on_checkpoint(step + 1, snap)
    ema.copy_to(params)
    return model.eval()


def unet_quality(model: ClassConditionalUNet, n_per_class: int = 50, steps: int = 50, guidance: float = 2.0,
                 seed: int = 1234, show_progress: bool = False) -> dict:
    """Quality bar of a class UNet: share of its CFG samples the judge assigns to the requested class."""
    from benchmark.zoo import load_judge

    judge = load_judge()
    labels = torch.arange(model.num_classes).repeat_interleave(n_per_class)
    bar = tqdm(total=len(labels), desc="quality samples", disable=not show_progress, leave=False)
    x = model.sample(labels, seed=seed, steps=steps, guidance=guidance, progress=bar.update)
    bar.close()
    pred = judge.predict_proba(x).argmax(1)
    per_class = {int(c): float((pred[labels == c] == c).float().mean()) for c in range(model.num_classes)}
    return {"judge_accuracy": float((pred == labels).float().mean()), "per_class": per_class,
            "n_per_class": n_per_class, "ddim_steps": steps, "guidance": guidance, "seed": seed,
            "judge_sha256": judge.sha256}
