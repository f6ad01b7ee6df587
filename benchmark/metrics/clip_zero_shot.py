"""Real CLIP models from a LOCAL weights file: CLIP score and zero-shot object/style judging (open_clip).

Loading: ``open_clip.create_model_and_transforms(arch, pretrained=<absolute file path>)`` — a built-in
architecture name (``ViT-B-32``, ``ViT-L-14``, … or one registered with ``open_clip.add_model_config``)
and a state-dict file (``.safetensors``, or a ``.bin``/``.pt`` state dict that ``torch.load(weights_only=True)``
reads). Never a pretrained tag, never a hub id: nothing here can reach the network (``HF_HUB_OFFLINE=1``
is set before open_clip is imported, and architectures whose tokenizer or text tower come from the
Hugging Face hub are refused). OpenAI's CLIP weights were trained with QuickGELU: load them with the
``-quickgelu`` architecture (``ViT-B-32-quickgelu``) or ``quick_gelu=True``, or features are slightly off.

Images are N×C×H×W tensors in [−1, 1]. They are quantised to uint8 like a saved PNG and go through the
model's own validation transform (PIL resize + centre crop + normalise), so a score equals the one
computed from the saved images with open_clip's usual recipe.

CLIP score (Hessel et al., EMNLP 2021, at torchmetrics' scale; docs/metrics.md): per (image, prompt)
pair 100 · max(cos(E_img, E_txt), 0), on a 0–100 scale; reported as the mean over pairs with n and a 95%
bootstrap CI, the architecture named in the label (``CLIP score [ViT-L-14]``).

Zero-shot judging (Radford et al., ICML 2021): each class name is put into every template, the text
embeddings are L2-normalised, averaged over templates and re-normalised (prompt ensembling); an image's
class is the argmax of its cosine similarity to the class embeddings.
"""

from __future__ import annotations

import difflib
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from benchmark import UnlearnbenchError
from benchmark.api import Judge, MetricSpec, MetricValue
from benchmark.metrics.stats import bootstrap_ci

SCALE = 100.0
DEFAULT_TEMPLATES = ("a photo of a {}.",)
STYLE_TEMPLATES = ("a painting in the style of {}.", "an artwork by {}.", "a picture in the style of {}.")


def _open_clip() -> Any:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import open_clip

    return open_clip


def _check_arch(open_clip: Any, arch: str) -> None:
    if ":" in arch:
        raise UnlearnbenchError(f"open_clip architecture {arch!r} names a hub or folder; pass a built-in "
                                "architecture name (e.g. ViT-B-32) and the weights file separately")
    cfg = open_clip.get_model_config(arch)
    if cfg is None:
        close = difflib.get_close_matches(arch.replace("/", "-"), open_clip.list_models(), n=3, cutoff=0.6)
        hint = f"; did you mean {', '.join(close)}?" if close else ""
        raise UnlearnbenchError(f"unknown open_clip architecture {arch!r}{hint}")
    text = cfg.get("text_cfg", {})
    hub = text.get("hf_model_name") or text.get("hf_tokenizer_name")
    if hub:
        raise UnlearnbenchError(f"open_clip architecture {arch!r} builds its text tower or tokenizer from the "
                                f"Hugging Face hub ({hub}); only architectures with open_clip's own tokenizer load offline")


_LOADED: dict[tuple, LocalCLIP] = {}  # the last CLIP loaded from a file, by (arch, file, size, mtime, device, …)


class LocalCLIP:
    """An open_clip model with its validation transform and tokenizer, loaded from a local file.

    Build with ``LocalCLIP.from_file(arch, weights)``. ``encode_images`` / ``encode_texts`` return
    L2-normalised features; ``clip_scores`` gives per-pair CLIP scores (0–100).
    """

    def __init__(self, model: torch.nn.Module, preprocess: Any, tokenizer: Any, arch: str, sha256: str,
                 weights_path: Path | None = None, device: str = "cpu"):
        self.model = model.to(device).eval().requires_grad_(False)
        self.preprocess = preprocess
        self.tokenizer = tokenizer
        self.arch = arch
        self.sha256 = sha256
        self.weights_path = weights_path
        self.device = torch.device(device)

    @classmethod
    def from_file(cls, arch: str, weights: str | Path | None, device: str = "cpu", sha256: str | None = None,
                  quick_gelu: bool = False) -> LocalCLIP:
        """Load ``arch`` with the weights in ``weights`` (checked against ``sha256`` if given).

        Raises ``UnlearnbenchError`` (one line) for a missing file, an unknown or hub-bound architecture,
        or weights that do not fit the architecture.
        """
        from benchmark.models.fingerprint import verify_sha256

        path = Path(weights).expanduser() if weights is not None else None
        if path is None or not path.is_file():
            raise UnlearnbenchError(
                f"CLIP weights file not found: {path if path is not None else '(none given)'}; {arch} needs a local "
                "open_clip checkpoint (a .safetensors or state-dict .bin, e.g. open_clip_model.safetensors from the "
                "model's page): pass it as --clip-weights ARCH=FILE")
        st = path.stat()
        key = (arch, str(path.resolve()), st.st_size, st.st_mtime_ns, str(device), quick_gelu)
        if key in _LOADED and sha256 is None:  # the judge, the CLIP score and P4D measure with the same file
            return _LOADED[key]
        open_clip = _open_clip()
        _check_arch(open_clip, arch)
        digest = verify_sha256(path, sha256)
        try:
            model, _, preprocess = open_clip.create_model_and_transforms(
                arch, pretrained=str(path.resolve()), device="cpu", force_quick_gelu=quick_gelu)
        except Exception as e:  # noqa: BLE001 - the user's file: any failure to load it (a corrupt safetensors, a
            # pickle holding more than tensors, mismatched keys) is "does not load", in one line
            first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            raise UnlearnbenchError(f"{path} does not load into open_clip {arch}: {first[:300]}") from e
        name = arch + ("-quickgelu" if quick_gelu and not arch.endswith("quickgelu") else "")
        loaded = cls(model, preprocess, open_clip.get_tokenizer(arch), name, digest, path, device)
        _LOADED.clear()  # keep one (a ViT-L is 1.7 GB)
        _LOADED[key] = loaded
        return loaded

    def _pixels(self, x: Tensor) -> Tensor:
        from PIL import Image

        if x.ndim != 4 or x.shape[1] not in (1, 3):
            raise UnlearnbenchError(f"CLIP takes N×3×H×W (or N×1×H×W) images, got shape {tuple(x.shape)}")
        u8 = ((x.detach().float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).cpu()
        u8 = u8.expand(-1, 3, -1, -1) if u8.shape[1] == 1 else u8
        return torch.stack([self.preprocess(Image.fromarray(img)) for img in u8.permute(0, 2, 3, 1).numpy()])

    @torch.no_grad()
    def encode_images(self, x: Tensor, batch_size: int = 64) -> Tensor:
        """L2-normalised image features (N × D, float32, CPU) of images in [−1, 1]."""
        out = [F.normalize(self.model.encode_image(self._pixels(x[i:i + batch_size]).to(self.device)).float(), dim=-1)
               for i in range(0, len(x), batch_size)]
        return torch.cat(out).cpu() if out else torch.empty(0)

    @torch.no_grad()
    def encode_texts(self, prompts: Sequence[str], batch_size: int = 256) -> Tensor:
        """L2-normalised text features (N × D, float32, CPU); the tokenizer truncates at its context length."""
        prompts = [prompts] if isinstance(prompts, str) else list(prompts)
        out = [F.normalize(self.model.encode_text(self.tokenizer(prompts[i:i + batch_size]).to(self.device)).float(),
                           dim=-1) for i in range(0, len(prompts), batch_size)]
        return torch.cat(out).cpu() if out else torch.empty(0)

    def clip_scores(self, images: Tensor, prompts: Sequence[str]) -> Tensor:
        """Per-pair CLIP score 100 · max(cos, 0) of image i and prompt i (0–100 scale)."""
        if len(images) != len(prompts):
            raise UnlearnbenchError(f"CLIP score pairs images with prompts: got {len(images)} images and "
                                    f"{len(prompts)} prompts")
        return SCALE * (self.encode_images(images) * self.encode_texts(prompts)).sum(-1).clamp_min(0)


def clip_score_spec(arch: str, key: str = "clip_score", higher_is_better: bool = True) -> MetricSpec:
    """``MetricSpec`` of a CLIP score column naming the architecture: ``CLIP score [ViT-L-14]``."""
    return MetricSpec(key, f"CLIP score [{arch}]", higher_is_better=higher_is_better)


def clip_score_value(clip: LocalCLIP, images: Tensor, prompts: Sequence[str], key: str = "clip_score",
                     higher_is_better: bool = True, what: str = "image vs its own prompt", n_boot: int = 1000,
                     seed: int = 0) -> MetricValue:
    """Mean CLIP score over (image, prompt) pairs with n and a 95% percentile bootstrap CI over pairs."""
    v = clip.clip_scores(images, prompts).double().numpy()
    label = clip_score_spec(clip.arch, key).label
    protocol = (f"{label}: mean of 100·max(cos, 0) (0–100 scale), open_clip {clip.arch} sha256:{clip.sha256[:12]}, "
                f"{what}; CI: percentile bootstrap over pairs")
    return MetricValue(key, float(v.mean()) if len(v) else float("nan"), len(v), higher_is_better,
                       bootstrap_ci(v, n_boot=n_boot, seed=seed), protocol, {"label": label})


class ZeroShotJudge(Judge):
    """CLIP zero-shot classifier over ``classnames`` (objects or styles) with prompt-ensembled templates.

    ``predict_proba`` is softmax(logit_scale · cos) over the classes; ``shows_concept(x)`` says, per
    image, whether the argmax class is ``target`` (given here or per call). The judge's sha256 is the
    CLIP weights file's.
    """

    name = "clip-zero-shot"

    def __init__(self, clip: LocalCLIP, classnames: Sequence[str], templates: Sequence[str] = DEFAULT_TEMPLATES,
                 target: str | None = None):
        classnames, templates = list(classnames), list(templates)
        if len(classnames) < 2 or len(set(classnames)) != len(classnames):
            raise UnlearnbenchError(f"zero-shot judging needs at least two distinct class names, got {classnames}")
        bad = [t for t in templates if "{}" not in t]
        if not templates or bad:
            raise UnlearnbenchError(f"every zero-shot template needs a '{{}}' for the class name; got {bad or templates}")
        self.clip, self.classnames, self.templates = clip, classnames, templates
        self.target = target
        if target is not None:
            self.index(target)
        emb = torch.stack([self.clip.encode_texts([t.format(c) for t in templates]).mean(0) for c in classnames])
        self.class_embeddings = F.normalize(emb, dim=-1)  # C × D

    @property
    def sha256(self) -> str:
        return self.clip.sha256

    @property
    def label(self) -> str:
        return f"CLIP zero-shot [{self.clip.arch}, {len(self.classnames)} classes]"

    def index(self, classname: str) -> int:
        """Position of ``classname`` among the classes (the ``forget_class`` an audit context uses)."""
        if classname not in self.classnames:
            close = difflib.get_close_matches(classname, self.classnames, n=1, cutoff=0.5)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            raise UnlearnbenchError(f"{classname!r} is not one of the zero-shot classes{hint}")
        return self.classnames.index(classname)

    def cosines(self, x: Tensor) -> Tensor:
        """N × C cosine similarity of each image to each class embedding."""
        return self.clip.encode_images(x) @ self.class_embeddings.T

    def predict_proba(self, x: Tensor) -> Tensor:
        scale = float(self.clip.model.logit_scale.exp().clamp(max=100))
        return torch.softmax(scale * self.cosines(x), dim=1)

    def predict(self, x: Tensor) -> Tensor:
        """Argmax class index per image (long, N)."""
        return self.cosines(x).argmax(1)

    def shows_concept(self, x: Tensor, target: str | None = None) -> Tensor:
        """Bool (N,): the image's zero-shot class is ``target`` (default: the judge's own target)."""
        target = target if target is not None else self.target
        if target is None:
            raise UnlearnbenchError("zero-shot shows_concept needs a target class (ZeroShotJudge(..., target=NAME))")
        return self.predict(x) == self.index(target)

    def accuracy_value(self, x: Tensor, target: str, key: str = "zero_shot_rate", higher_is_better: bool | None = None,
                       n_boot: int = 1000, seed: int = 0) -> MetricValue:
        """Share of images classified as ``target``, with n and a 95% bootstrap CI over images."""
        v = self.shows_concept(x, target).double().numpy()
        protocol = (f"{self.label}: share of images whose argmax class is {target!r}; templates {self.templates}; "
                    f"open_clip sha256:{self.sha256[:12]}; CI: percentile bootstrap over images")
        return MetricValue(key, float(np.mean(v)) if len(v) else float("nan"), len(v), higher_is_better,
                           bootstrap_ci(v, n_boot=n_boot, seed=seed), protocol, {"label": self.label, "target": target})
