"""Prompt following of a text UNet whose zoo training is still under way (its EMA weights at the last
checkpoint), measured like the finished entry's quality bar: held-out templates, the text judge.

Usage:  python perf/zoo_progress.py [NAME] [--root benchmark/zoo] [--per-cell 5] [--steps 20]

Reads ``ROOT/NAME.partial/train_state.pt`` (written by ``unlearnbench zoo train``); changes nothing.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch


def partial_model(name: str, root: Path) -> tuple[object, int]:
    from benchmark import zoo
    from benchmark.models.text_unet import TextConditionalUNet, tiny_text_unet_config

    recipe = zoo.recipe_for(name)
    state = torch.load(root / f"{name}.partial" / "train_state.pt", weights_only=False, map_location="cpu")
    text = zoo.load_clip_text_states(zoo.TEXT_CLIP)
    model = TextConditionalUNet.from_config(
        tiny_text_unet_config(recipe.block_out_channels, text.width, recipe.attention_heads), text,
        dict(recipe.scheduler), seed=recipe.seed)
    with torch.no_grad():
        for p, shadow in zip(model.parameters(), state["ema"]["shadow_params"]):
            p.copy_(shadow)
    return model.eval(), int(state["step"])


def main() -> None:
    from benchmark import zoo
    from benchmark.zoo.text_recipes import text_unet_quality

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("name", nargs="?", default="mnist-text-unet-base")
    ap.add_argument("--root", type=Path, default=zoo.ZOO_DIR)
    ap.add_argument("--per-cell", type=int, default=5)
    ap.add_argument("--steps", type=int, default=20)
    args = ap.parse_args()
    model, step = partial_model(args.name, args.root)
    q = text_unet_quality(model, zoo.load_judge("mnist-text-judge"), n_per_cell=args.per_cell, steps=args.steps,
                          show_progress=True)
    print(json.dumps({"name": args.name, "step": step, "digit_agreement": round(q["digit_agreement"], 3),
                      "colour_agreement": round(q["colour_agreement"], 3), "n": q["n"],
                      "per_digit": {k: round(v, 2) for k, v in q["per_digit"].items()},
                      "protocol": f"EMA weights; held-out templates; DDIM {args.steps}, s={q['guidance']}"}))


if __name__ == "__main__":
    main()
