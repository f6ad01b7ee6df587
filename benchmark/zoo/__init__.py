"""The reference zoo: shipped weights (each a folder here) and the recipes that rebuild them.

Names: ``mnist-judge``, ``mnist-unet-base``, ``mnist-unet-retrain-c{k}`` (the oracle trained without
class k; c0 ships, the others are trained on demand and cached under ``$UNLEARNBENCH_CACHE/zoo``).
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


def cache_dir() -> Path:
    return Path(os.environ.get("UNLEARNBENCH_CACHE", Path.home() / ".cache" / "unlearnbench"))


def zoo_names() -> list[str]:
    return ["mnist-judge", "mnist-unet-base"] + [f"mnist-unet-retrain-c{k}" for k in range(10)]


def recipe_for(name: str) -> Any:
    from benchmark.zoo.recipes import JudgeRecipe, UNetRecipe

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
                            "mnist-unet-retrain-c0 … c9)")


def weights_file(name: str, folder: Path) -> Path:
    if name == "mnist-judge":
        return folder / "model.safetensors"
    return folder / "unet" / "diffusion_pytorch_model.safetensors"


def locate(name: str) -> Path | None:
    """The shipped folder if there is one, else the cached one, else None."""
    for root in (ZOO_DIR, cache_dir() / "zoo"):
        if weights_file(name, root / name).is_file():
            return root / name
    return None


def read_manifest(folder: Path) -> dict[str, Any]:
    path = folder / "recipe.json"
    return json.loads(path.read_text()) if path.is_file() else {}


def build(name: str, out_root: Path | None = None, show_progress: bool = True, checkpoint_every: int = 0,
          **recipe_overrides: Any) -> Path:
    """Train ``name`` by its recipe and write it atomically to ``out_root/name``; return the folder.

    ``checkpoint_every`` > 0 also saves EMA snapshots to ``out_root/name.checkpoints/step-N`` (UNets).
    """
    import torch

    from benchmark.models.fingerprint import file_sha256
    from benchmark.zoo import recipes

    recipe = recipe_for(name)
    if recipe_overrides:
        recipe = dataclasses.replace(recipe, **recipe_overrides)
    out_root = Path(out_root) if out_root is not None else cache_dir() / "zoo"
    out_root.mkdir(parents=True, exist_ok=True)
    t0 = time.time()
    tmp = Path(tempfile.mkdtemp(prefix=f".{name}.", dir=out_root))
    try:
        if isinstance(recipe, recipes.JudgeRecipe):
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


def load_unet(name: str, sha256: str | None = None, build_if_missing: bool = False,
              show_progress: bool = True) -> Any:
    """Load a zoo UNet, verifying its sha256 (the card's, else the one in its recipe.json)."""
    from benchmark.models.class_unet import ClassConditionalUNet

    folder = locate(name)
    if folder is None:
        if not build_if_missing:
            raise UnlearnbenchError(f"zoo entry {name!r} is not shipped or cached; build it with "
                                    f"`unlearnbench zoo train {name}`")
        folder = build(name, show_progress=show_progress)
    expected = sha256 or read_manifest(folder).get("sha256")
    return ClassConditionalUNet.from_pretrained(folder, sha256=expected)


def load_judge(name: str = "mnist-judge", sha256: str | None = None, device: str = "cpu") -> Any:
    from benchmark.judges import ClassifierJudge

    folder = locate(name)
    if folder is None:
        raise UnlearnbenchError(f"judge {name!r} is not shipped or cached; build it with `unlearnbench zoo train {name}`")
    expected = sha256 or read_manifest(folder).get("sha256")
    return ClassifierJudge.from_file(weights_file(name, folder), expected, label=name, device=device)


_BASE_FINGERPRINT: dict[str, str] = {}


def is_zoo_base(model: Any) -> bool:
    """True if ``model`` has exactly the weights of the shipped base UNet."""
    if "base" not in _BASE_FINGERPRINT:
        folder = locate("mnist-unet-base")
        _BASE_FINGERPRINT["base"] = load_unet("mnist-unet-base").fingerprint() if folder else ""
    return bool(_BASE_FINGERPRINT["base"]) and model.fingerprint() == _BASE_FINGERPRINT["base"]
