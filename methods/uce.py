"""UCE — Gandikota, Orgad, Belinkov, Materzyńska, Bau, "Unified Concept Editing in Diffusion Models",
WACV 2024.

A closed-form edit of every cross-attention key and value projection W (no training, no images):

    W ← (λ W + Σ_e s_e · W c*_e c_eᵀ + Σ_p s_p · W c_p c_pᵀ) (λ I + Σ_e s_e · c_e c_eᵀ + Σ_p s_p · c_p c_pᵀ)⁻¹

where c_e are the text states of the concepts to erase, c*_e the states of their guide ("" by default:
erase toward the unconditional output), and c_p the states of concepts to preserve (kept at W c_p).
As in the released code of the paper's experiments (``train-scripts/train_erase.py`` at bd5fb51, August
2023, technique "replace"): λ = 0.5, erase scale 1; the preserved prompts are always the empty prompt ""
(the unconditional branch classifier-free guidance relies on) plus the concepts to preserve, at preserve
scale max(0.1, 1 / their number) unless set; the erased rows are the token states from the concept's last
word through the end of the context, aligned with the guide's from its last word; preserved prompts
contribute all their positions. (Before 2026-11-30 this adapter followed the July 2023 script, which
preserved only the given concepts at 0.1 and "" only when none were given.)

Text track: the erase prompts are the request's erase phrasings ("zero", "the digit 0"); the preserved
concepts are, by default, the other values of the same axis ("one" … "nine", or the other colours),
as the released script preserves the other artists when it erases one (``preserve: none`` keeps only "",
as it does for objects). Departure: the guide is "" for styles too, where the released artist recipe
guides toward "art" (the embedded ink colours have no such generic style word). On Stable Diffusion
cards ``remap_targets`` is the concept's first contrast word (another artist or object, "clothed"), so
"axis" preserves "" and that word, as the released script preserves other artists.
Positions are found from the end-of-text token (our tokenizer pads with id 0, Stable Diffusion's with
the end token; the released code counts the attention mask, which is the same position).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Literal

import torch
from torch import nn

from benchmark.api import DiffusionModel, UnlearningMethod, UnlearnOutcome, UnlearnRequest
from methods.base import track_of


@dataclass
class UCEConfig:
    lamb: float = 0.5
    erase_scale: float = 1.0
    preserve_scale: float | None = None  # None: max(0.1, 1 / number of preserved prompts), as released
    guide: str = ""  # the concept the erased one is mapped to ("" = unconditional)
    preserve: Literal["axis", "none"] = "axis"
    edit_keys: bool = True  # edit to_k as well as to_v (the released default)


def cross_attention_projections(model: DiffusionModel, with_keys: bool = True) -> list[nn.Linear]:
    """The to_v (and to_k) linear maps of every cross-attention layer (``attn2``) of the UNet."""
    unet = model.modules()["unet"]
    layers = [m for name, m in unet.named_modules() if name.endswith("attn2")]
    out = [layer.to_v for layer in layers] + ([layer.to_k for layer in layers] if with_keys else [])
    if not out:
        raise ValueError("uce: the model has no cross-attention layers")
    return out


class UCE(UnlearningMethod):
    name = "uce"
    paper = ("Gandikota, Orgad, Belinkov, Materzyńska, Bau. Unified Concept Editing in Diffusion Models. "
             "WACV 2024")
    supports = frozenset({"text"})
    Config = UCEConfig
    config: UCEConfig

    def states_from_last_word(self, model: DiffusionModel, prompts: list[str]) -> list[torch.Tensor]:
        """Per prompt: its text states from the last word token to the end of the context."""
        ids = model.tokenize(prompts)  # type: ignore[attr-defined]
        states = model.encode(prompts)
        eot = ids.argmax(dim=-1)  # the end-of-text token has the highest id
        return [s[int(e) - 1:] for s, e in zip(states, eot)]

    def unlearn(self, model: DiffusionModel, request: UnlearnRequest) -> UnlearnOutcome:
        self.check_track(track_of(model))
        cfg = self.config
        t0 = time.time()
        erase = [str(w) for w in request.forget_target] if not isinstance(request.forget_target, (int, str)) else [str(request.forget_target)]
        if not erase:
            raise ValueError("uce needs the concept's prompt(s) in request.forget_target")
        preserve = [str(p) for p in request.remap_targets] if cfg.preserve == "axis" else []
        if cfg.preserve not in ("axis", "none"):
            raise ValueError(f"uce preserve must be 'axis' or 'none', got {cfg.preserve!r}")
        edited = model.clone().to(request.device).eval().requires_grad_(False)
        layers = cross_attention_projections(edited, cfg.edit_keys)
        old = self.states_from_last_word(edited, erase)
        new = self.states_from_last_word(edited, [cfg.guide or " "] * len(erase))
        pairs = []
        for o, n in zip(old, new):  # align from the last word; keep the common length
            k = min(len(o), len(n))
            pairs.append((o[:k], n[:k]))
        kept_prompts = [""] + [p for p in preserve if p != ""]
        kept = edited.encode(kept_prompts)
        preserve_scale = cfg.preserve_scale if cfg.preserve_scale is not None else max(0.1, 1 / len(kept_prompts))
        with torch.no_grad():
            for layer in layers:
                w = layer.weight
                mat1 = cfg.lamb * w.clone()
                mat2 = cfg.lamb * torch.eye(w.shape[1], device=w.device, dtype=w.dtype)
                for c, c_new in pairs:
                    v = layer(c_new)  # W c*: what the erased tokens should now produce
                    mat1 += cfg.erase_scale * v.T @ c
                    mat2 += cfg.erase_scale * c.T @ c
                for c in kept:
                    mat1 += preserve_scale * layer(c).T @ c
                    mat2 += preserve_scale * c.T @ c
                layer.weight.copy_(mat1 @ torch.linalg.inv(mat2))
        stats = {"erase_prompts": erase, "guide": cfg.guide, "preserve_prompts": kept_prompts,
                 "preserve_scale": preserve_scale,
                 "edited_layers": len(layers), "seconds": round(time.time() - t0, 3)}
        return UnlearnOutcome(edited, steps=0, stats=stats)
