"""Cost of EraseDiff, Selective Amnesia and SalUn at their *default* (paper) budgets, side by side.

EraseDiff claims to be ≥ 11× cheaper than SA and ≥ 2× cheaper than SalUn (CIFAR-10 DDPM). Running SA's
defaults (20k steps, a Fisher over 5,000 samples × 1,000 timesteps, 4,500 replay samples) takes hours on
a CPU, so each method runs here with its default config except for the *sizes* of its phases (steps,
sample counts), every phase is measured under ``benchmark.cost`` (wall time and UNet image passes), and
each phase is scaled linearly to its default size. Image passes scale exactly (they are a deterministic
function of the sizes); wall time is an extrapolation from the measured rate.
"""

from __future__ import annotations

import dataclasses
from typing import Any

MEASURE_STEPS = 8


def _measure(name: str, overrides: dict[str, Any], device: str) -> dict[str, Any]:
    from benchmark import cost
    from benchmark.api import UnlearnRequest
    from benchmark.data.mnist import mnist_splits
    from benchmark.registry import METHODS
    from benchmark.zoo import load_unet

    cls = METHODS.get(name)
    config = dataclasses.replace(cls.Config(), **overrides)
    base = load_unet("mnist-unet-base").to(device)
    forget, retain = mnist_splits().forget_retain(0)
    req = UnlearnRequest(forget, retain, 0, list(range(1, 10)), 10, seed=0, device=device)
    with cost.measure(device) as meter:
        cls(config).unlearn(base, req)
    return {"config": config, "meter": meter, "defaults": cls.Config()}


def _scaled(phases: dict[str, dict[str, float]], factors: dict[str, float]) -> dict[str, float]:
    seconds = sum(phases[p]["seconds"] * f for p, f in factors.items() if p in phases)
    passes = sum((phases[p]["forward_images"] + phases[p]["backward_images"]) * f
                 for p, f in factors.items() if p in phases)
    return {"seconds": seconds, "image_passes": passes}


def cost_ratios(device: str = "cpu") -> dict[str, Any]:
    out: dict[str, Any] = {}
    ed = _measure("erasediff", {"steps": MEASURE_STEPS}, device)
    d = ed["defaults"]
    out["erasediff"] = _scaled(ed["meter"].phases, {"train": d.steps / MEASURE_STEPS})
    out["erasediff"]["budget"] = f"{d.steps} steps × batch {d.batch_size}, K={d.inner_steps}"

    sal = _measure("salun", {"steps": MEASURE_STEPS}, device)
    d = sal["defaults"]
    out["salun"] = _scaled(sal["meter"].phases, {"saliency": 1.0, "train": d.steps / MEASURE_STEPS})
    out["salun"]["budget"] = f"saliency over D_f + {d.steps} steps × batch {d.batch_size}"

    replay_per_class = 15  # 135 replay images ≥ one batch of 128, so training steps are full-sized
    sa = _measure("selective_amnesia", {"steps": MEASURE_STEPS, "fisher_samples_per_class": 1,
                                        "replay_samples_per_class": replay_per_class}, device)
    d = sa["defaults"]
    out["selective_amnesia"] = _scaled(sa["meter"].phases, {
        "fisher_sampling": d.fisher_samples_per_class, "fisher": d.fisher_samples_per_class,
        "replay": d.replay_samples_per_class / replay_per_class, "train": d.steps / MEASURE_STEPS})
    out["selective_amnesia"]["budget"] = (
        f"Fisher {d.fisher_samples_per_class}/class × {d.fisher_timesteps} t, replay "
        f"{d.replay_samples_per_class}/class (DDIM {d.sample_steps}), {d.steps} steps × batch {d.batch_size}")
    for name in ("selective_amnesia", "salun"):
        for key in ("seconds", "image_passes"):
            out[name][f"ratio_{key}"] = out[name][key] / out["erasediff"][key]
    out["phases"] = {"erasediff": ed["meter"].phases, "salun": sal["meter"].phases,
                     "selective_amnesia": sa["meter"].phases}
    return out


def markdown(r: dict[str, Any], device: str) -> str:
    claims = {"selective_amnesia": "≥ 11", "salun": "≥ 2"}
    lines = [
        "## Cost at default budgets: SA / EraseDiff and SalUn / EraseDiff",
        "",
        f"Measured by `python perf/run_perf.py` (device `{device}`): each method runs its default config with "
        f"reduced phase sizes ({MEASURE_STEPS} training steps; SA's Fisher from 1 sample per class, replay from 15), "
        "each phase's measured wall time and UNet image passes are scaled linearly to the default sizes.",
        "",
        "| method | default budget | image passes (fwd+bwd) | est. wall time | ratio to EraseDiff (passes / time) | paper claim |",
        "| --- | --- | ---: | ---: | ---: | --- |",
    ]
    for name in ("erasediff", "selective_amnesia", "salun"):
        row = r[name]
        ratio = ("1" if name == "erasediff" else
                 f"{row['ratio_image_passes']:.1f}× / {row['ratio_seconds']:.1f}×")
        lines.append(f"| {name} | {row['budget']} | {row['image_passes'] / 1e6:.2f} M | "
                     f"{row['seconds'] / 60:.1f} min | {ratio} | {claims.get(name, '')} |")
    return "\n".join(lines) + "\n"
