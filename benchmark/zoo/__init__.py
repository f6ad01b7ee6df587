"""The reference zoo: shipped weights (each a folder here) and the recipes that rebuild them.

Names: ``mnist-judge``, ``mnist-unet-base``, ``mnist-unet-retrain-c{k}`` (the oracle trained without
class k; c0 ships, the others are trained on demand and cached under ``$UNLEARNBENCH_CACHE/zoo``).
Text track: ``mnist-text-clip`` (the tiny CLIP), ``mnist-text-judge`` (digit and colour heads),
``mnist-text-unet-base`` and the oracles ``mnist-text-unet-retrain-d{k}`` (without digit k) and
``mnist-text-unet-retrain-{colour}`` (without that ink colour).
Every folder holds ``recipe.json``: the recipe, its hash, the weights' sha256 and the quality
numbers measured right after training.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmark import UnlearnbenchError

ZOO_DIR = Path(__file__).resolve().parent
_RETRAIN = re.compile(r"^mnist-unet-retrain-c(\d)$")
_TEXT_RETRAIN = re.compile(r"^mnist-text-unet-retrain-(d\d|red|green|blue|yellow)$")
TEXT_CLIP = "mnist-text-clip"


def cache_dir() -> Path:
    return Path(os.environ.get("UNLEARNBENCH_CACHE", Path.home() / ".cache" / "unlearnbench"))


def zoo_names() -> list[str]:
    from benchmark.data.mnist_text import COLOURS

    return (["mnist-judge", "mnist-unet-base"] + [f"mnist-unet-retrain-c{k}" for k in range(10)]
            + [TEXT_CLIP, "mnist-text-judge", "mnist-text-unet-base"]
            + [f"mnist-text-unet-retrain-d{k}" for k in range(10)]
            + [f"mnist-text-unet-retrain-{c}" for c in COLOURS])


def recipe_for(name: str) -> Any:
    from benchmark.zoo.recipes import JudgeRecipe, UNetRecipe
    from benchmark.zoo.text_recipes import CLIPRecipe, TextJudgeRecipe, TextUNetRecipe

    if name == TEXT_CLIP:
        return CLIPRecipe()
    if name == "mnist-text-judge":
        return TextJudgeRecipe()
    if name == "mnist-text-unet-base":
        return TextUNetRecipe()
    t = _TEXT_RETRAIN.match(name)
    if t:
        tag = t.group(1)
        return TextUNetRecipe(exclude=f"digit:{tag[1]}" if tag.startswith("d") else f"colour:{tag}")
    if name == "mnist-judge":
        return JudgeRecipe()
    if name == "mnist-unet-base":
        return UNetRecipe()
    m = _RETRAIN.match(name)
    if m:
        return UNetRecipe(exclude_class=int(m.group(1)))
    import difflib

    close = difflib.get_close_matches(name, zoo_names(), n=2)
    hint = f"; did you mean {', '.join(close)}?" if close else ""
    raise UnlearnbenchError(f"unknown zoo entry {name!r}{hint} (known: mnist-judge, mnist-unet-base, "
                            "mnist-unet-retrain-c0 … c9, mnist-text-clip, mnist-text-judge, mnist-text-unet-base, "
                            "mnist-text-unet-retrain-d0 … d9 | -red | -green | -blue | -yellow)")


def weights_file(name: str, folder: Path) -> Path:
    if name in ("mnist-judge", "mnist-text-judge", TEXT_CLIP):
        return folder / "model.safetensors"
    return folder / "unet" / "diffusion_pytorch_model.safetensors"


def locate(name: str) -> Path | None:
    """The shipped folder if there is one, else the cached one, else None."""
    for root in (ZOO_DIR, cache_dir() / "zoo"):
        if weights_file(name, root / name).is_file():
            return root / name
    return None


def partial_status(name: str) -> tuple[int, int, Path] | None:
    """(step, total steps, folder) of a UNet whose resumable training has started, else None."""
    for root in (ZOO_DIR, cache_dir() / "zoo"):
        state = root / f"{name}.partial" / "train_state.pt"
        if state.is_file():
            import torch

            step = int(torch.load(state, weights_only=False, map_location="cpu")["step"])
            return step, int(getattr(recipe_for(name), "steps", 0)), state.parent
    return None


def read_manifest(folder: Path) -> dict[str, Any]:
    path = folder / "recipe.json"
    return json.loads(path.read_text()) if path.is_file() else {}


def build(name: str, out_root: Path | None = None, show_progress: bool = True, checkpoint_every: int = 0,
          device: str = "cpu", **recipe_overrides: Any) -> Path:
    """Train ``name`` by its recipe and write it atomically to ``out_root/name``; return the folder.

    ``checkpoint_every`` > 0 also saves EMA snapshots to ``out_root/name.checkpoints/step-N`` (UNets).
    """
    import torch

    from benchmark.models.fingerprint import file_sha256
    from benchmark.zoo import recipes, text_recipes

    recipe = recipe_for(name)
    if recipe_overrides:
        recipe = dataclasses.replace(recipe, **recipe_overrides)
    out_root = Path(out_root) if out_root is not None else cache_dir() / "zoo"
    out_root.mkdir(parents=True, exist_ok=True)
    t0 = time.time()
    for stale in out_root.glob(f".{name}.*"):  # a build killed by a signal (no except clause ran) left it
        if stale.is_dir():
            shutil.rmtree(stale, ignore_errors=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{name}.", dir=out_root))
    try:
        if isinstance(recipe, (text_recipes.CLIPRecipe, text_recipes.TextJudgeRecipe, text_recipes.TextUNetRecipe)):
            quality = _build_text(name, recipe, tmp, out_root, show_progress, checkpoint_every, device)
        elif isinstance(recipe, recipes.JudgeRecipe):
            from safetensors.torch import save_file

            net, quality = recipes.train_judge(recipe, show_progress)
            save_file({k: v.contiguous() for k, v in net.state_dict().items()}, tmp / "model.safetensors")
            (tmp / "config.json").write_text(json.dumps(net.config, indent=2))
        else:
            ckpt_root = out_root / f"{name}.checkpoints"

            def save_checkpoint(step: int, snap: Any) -> None:
                snap.save_pretrained(ckpt_root / f"step-{step}")

            model = recipes.train_unet(recipe, show_progress, on_checkpoint=save_checkpoint,
                                       checkpoint_every=checkpoint_every)
            model.save_pretrained(tmp)
            quality = recipes.unet_quality(model, show_progress=show_progress)
        manifest = {
            "name": name,
            "recipe": dataclasses.asdict(recipe),
            "recipe_hash": recipes.recipe_hash(recipe),
            "sha256": file_sha256(weights_file(name, tmp)),
            "quality": quality,
            "train_seconds": round(time.time() - t0, 1),
            "torch": torch.__version__,
            "threads": torch.get_num_threads(),
        }
        (tmp / "recipe.json").write_text(json.dumps(manifest, indent=2))
        final = out_root / name
        if final.exists():
            shutil.rmtree(final)
        tmp.rename(final)
        return final
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _build_text(name: str, recipe: Any, tmp: Path, out_root: Path, show_progress: bool,
                checkpoint_every: int, device: str = "cpu") -> dict[str, Any]:
    """Train one text-track entry into ``tmp``; return its quality numbers. A UNet keeps its resumable
    training state in ``out_root/<name>.partial`` (removed once the entry is complete)."""
    from safetensors.torch import save_file

    from benchmark.zoo import text_recipes

    if isinstance(recipe, text_recipes.CLIPRecipe):
        model, quality = text_recipes.train_clip(recipe, show_progress)
        save_file({k: v.contiguous() for k, v in model.state_dict().items()}, tmp / "model.safetensors")
        from benchmark.models.tiny_clip import tiny_clip_config

        (tmp / "open_clip_config.json").write_text(json.dumps(tiny_clip_config(), indent=2))
        return quality
    if isinstance(recipe, text_recipes.TextJudgeRecipe):
        net, quality = text_recipes.train_text_judge(recipe, show_progress)
        save_file({k: v.contiguous() for k, v in net.state_dict().items()}, tmp / "model.safetensors")
        (tmp / "config.json").write_text(json.dumps(net.config, indent=2))
        return quality
    from benchmark.models.text_unet import TextConditionalUNet, tiny_text_unet_config

    text_encoder, clip_sha = load_clip_text_states(TEXT_CLIP), read_manifest(locate(TEXT_CLIP) or Path()).get("sha256")
    config = tiny_text_unet_config(recipe.block_out_channels, text_encoder.width, recipe.attention_heads)
    model = TextConditionalUNet.from_config(config, text_encoder, dict(recipe.scheduler), seed=recipe.seed,
                                            text_source={"zoo": TEXT_CLIP, "sha256": clip_sha})
    partial = out_root / f"{name}.partial"
    partial.mkdir(parents=True, exist_ok=True)
    started = read_manifest(partial).get("recipe_hash")
    if started is not None and started != text_recipes_hash(recipe):
        raise UnlearnbenchError(f"{partial} holds a run of another recipe ({started}); delete it to start over")
    (partial / "recipe.json").write_text(json.dumps({"name": name, "recipe_hash": text_recipes_hash(recipe)}))
    model = text_recipes.train_text_unet(recipe, model.to(device), partial, checkpoint_every or 250, show_progress)
    model = model.to("cpu")
    model.save_pretrained(tmp)
    quality = text_recipes.text_unet_quality(model, load_judge("mnist-text-judge"), show_progress=show_progress)
    shutil.rmtree(partial, ignore_errors=True)
    return quality


def text_recipes_hash(recipe: Any) -> str:
    from benchmark.zoo.recipes import recipe_hash

    return recipe_hash(recipe)


def load_clip(name: str = TEXT_CLIP, sha256: str | None = None) -> Any:
    """The zoo's tiny CLIP (open_clip model), weights verified by sha256."""
    from benchmark.models.fingerprint import verify_sha256
    from benchmark.models.tiny_clip import create_clip

    folder = locate(name)
    if folder is None:
        raise UnlearnbenchError(f"zoo entry {name!r} is not shipped or cached; build it with `unlearnbench zoo train {name}`")
    weights = weights_file(name, folder)
    verify_sha256(weights, sha256 or read_manifest(folder).get("sha256"))
    return create_clip(weights)


def load_clip_text_states(name: str = TEXT_CLIP, sha256: str | None = None) -> Any:
    """The frozen text tower of the zoo CLIP as token-level states (the text UNet's encoder)."""
    from benchmark.models.tiny_clip import TextStates

    return TextStates(load_clip(name, sha256)).eval().requires_grad_(False)


def load_unet(name: str, sha256: str | None = None, build_if_missing: bool = False,
              show_progress: bool = True) -> Any:
    """Load a zoo UNet, verifying its sha256 (the card's, else the one in its recipe.json)."""
    from benchmark.models.class_unet import ClassConditionalUNet

    folder = locate(name)
    if folder is None:
        if not build_if_missing:
            partial = partial_status(name)
            resume = (f"; its training is under way (step {partial[0]}/{partial[1]}): `unlearnbench zoo train "
                      f"{name} --out {partial[2].parent}` resumes it" if partial else "")
            raise UnlearnbenchError(f"zoo entry {name!r} is not shipped or cached; build it with "
                                    f"`unlearnbench zoo train {name}`{resume}")
        folder = build(name, show_progress=show_progress)
    expected = sha256 or read_manifest(folder).get("sha256")
    meta = folder / "unlearnbench.json"
    if meta.is_file() and json.loads(meta.read_text()).get("kind") == "text_unet":
        from benchmark.models.text_unet import TextConditionalUNet

        return TextConditionalUNet.from_pretrained(folder, sha256=expected)
    return ClassConditionalUNet.from_pretrained(folder, sha256=expected)


def load_judge(name: str = "mnist-judge", sha256: str | None = None, device: str = "cpu") -> Any:
    from benchmark.judges import ClassifierJudge

    folder = locate(name)
    if folder is None:
        raise UnlearnbenchError(f"judge {name!r} is not shipped or cached; build it with `unlearnbench zoo train {name}`")
    expected = sha256 or read_manifest(folder).get("sha256")
    return ClassifierJudge.from_file(weights_file(name, folder), expected, label=name, device=device)


_BASE_FINGERPRINT: dict[str, str] = {}


def is_zoo_base(model: Any, name: str = "mnist-unet-base") -> bool:
    """True if ``model`` has exactly the weights of the shipped base UNet ``name``."""
    if name not in _BASE_FINGERPRINT:
        folder = locate(name)
        _BASE_FINGERPRINT[name] = load_unet(name).fingerprint() if folder else ""
    return bool(_BASE_FINGERPRINT[name]) and model.fingerprint() == _BASE_FINGERPRINT[name]
