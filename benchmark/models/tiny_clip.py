"""A tiny CLIP of our own, built by ``open_clip`` from a custom model config, offline.

It plays both of CLIP's roles in Stable Diffusion: its text tower (frozen) is the text encoder of the
embedded text-to-image model, and the whole model is the CLIP-score / zero-shot model of the text track.
Tokenizer: open_clip's ``SimpleTokenizer`` over the BPE vocabulary that ships inside the open_clip
wheel (49,408 tokens, the same ids as OpenAI CLIP). Context length 32 (our captions are < 16 tokens;
Stable Diffusion's is 77). Padding is token id 0 (open_clip's convention, a real token "!"): positions
after the end-of-text token carry states that depend on the prompt through the causal mask, as in
Stable Diffusion v1, whose UNet attends over all 77 positions too.

open_clip has no call that returns token-level text states, so ``TextStates`` rebuilds them from the
text tower's own modules (token embedding + positional embedding → transformer with the causal mask →
final LayerNorm); ``tests/unit/test_text_track.py`` checks its pooled output against ``encode_text``.
"""

from __future__ import annotations

import functools
import json
import os
import tempfile
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from benchmark import UnlearnbenchError

MODEL_NAME = "unlearnbench-tiny-clip"
CONTEXT_LENGTH = 32


def tiny_clip_config(context_length: int = CONTEXT_LENGTH, image_size: int = 16) -> dict[str, Any]:
    """open_clip model config: ViT (4×4 patches → 16 tokens) and a 2-layer width-64 text transformer."""
    return {
        "embed_dim": 64,
        "vision_cfg": {"image_size": image_size, "layers": 3, "width": 96, "head_width": 32, "patch_size": 4,
                       "mlp_ratio": 2.0},
        "text_cfg": {"context_length": context_length, "vocab_size": 49408, "width": 64, "heads": 4,
                     "layers": 2, "mlp_ratio": 4.0},
    }


@functools.lru_cache(maxsize=1)
def _register_config() -> str:
    """Register our config with open_clip once (a file in a private temp folder, as open_clip wants)."""
    import open_clip

    folder = Path(tempfile.mkdtemp(prefix="unlearnbench-openclip-"))
    (folder / f"{MODEL_NAME}.json").write_text(json.dumps(tiny_clip_config()))
    open_clip.add_model_config(folder)
    return MODEL_NAME


def create_clip(weights: str | Path | None = None, seed: int = 0) -> nn.Module:
    """The tiny CLIP through ``open_clip.create_model``; ``weights`` a local file (no hub access ever)."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import open_clip

    name = _register_config()
    torch.manual_seed(seed)
    if weights is not None:
        weights = Path(weights)
        if not weights.is_file():
            raise UnlearnbenchError(f"CLIP weights file {weights} does not exist")
    model = open_clip.create_model(name, pretrained=str(weights) if weights else None, device="cpu")
    return model.eval()


@functools.lru_cache(maxsize=1)
def tokenizer() -> Any:
    """open_clip's BPE tokenizer from the vocabulary file inside the wheel (no download)."""
    from open_clip.tokenizer import SimpleTokenizer

    return SimpleTokenizer(context_length=CONTEXT_LENGTH)


def tokenize(prompts: list[str] | tuple[str, ...], context_length: int = CONTEXT_LENGTH) -> Tensor:
    """Token ids (N × context_length); a prompt that does not fit the context is refused, not truncated."""
    tok = tokenizer()
    if isinstance(prompts, str):
        prompts = [prompts]
    for p in prompts:
        if not isinstance(p, str):
            raise UnlearnbenchError(f"prompts must be strings, got {type(p).__name__}")
        n = len(tok.encode(p)) + 2
        if n > context_length:
            raise UnlearnbenchError(f"prompt {p[:60]!r} is {n} tokens long; the text encoder's context is "
                                    f"{context_length} tokens (start and end tokens included)")
    return tok(list(prompts), context_length=context_length)


class TextStates(nn.Module):
    """Token-level text states of an open_clip text tower (what cross-attention attends to).

    ``forward(ids)`` → N × L × width. ``from_embeddings(token_embeds)`` takes token embeddings
    (N × L × width) instead of ids, for attacks that optimise soft prompts or a new token's embedding.
    The modules are the CLIP's own (shared, not copied)."""

    def __init__(self, clip: nn.Module):
        super().__init__()
        self.token_embedding = clip.token_embedding
        self.positional_embedding = clip.positional_embedding
        self.transformer = clip.transformer
        self.ln_final = clip.ln_final
        self.register_buffer("attn_mask", clip.attn_mask, persistent=False)

    @property
    def width(self) -> int:
        return int(self.token_embedding.weight.shape[1])

    @property
    def context_length(self) -> int:
        return int(self.positional_embedding.shape[0])

    def from_embeddings(self, token_embeds: Tensor) -> Tensor:
        x = token_embeds + self.positional_embedding.to(token_embeds.dtype)
        x = self.transformer(x, attn_mask=self.attn_mask)
        return self.ln_final(x)

    def forward(self, ids: Tensor) -> Tensor:
        return self.from_embeddings(self.token_embedding(ids))


def pooled_from_states(clip: nn.Module, states: Tensor, ids: Tensor) -> Tensor:
    """CLIP's text feature from token states: the end-of-text position, projected (= ``encode_text``)."""
    x = states[torch.arange(len(ids), device=states.device), ids.argmax(dim=-1)]
    proj = clip.text_projection
    return proj(x) if isinstance(proj, nn.Linear) else x @ proj
