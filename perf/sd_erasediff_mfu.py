"""Time one EraseDiff outer step on a Stable-Diffusion-1.4-sized UNet and report model FLOPs utilisation.

Usage (repo root):
    python perf/sd_erasediff_mfu.py                                   # CPU: tiny model, 1 thread
    python perf/sd_erasediff_mfu.py --device cuda --batch 8 32        # SD-1.4 UNet, bf16 autocast
    python perf/sd_erasediff_mfu.py --device cuda --batch 8 32 --compile --json rows.jsonl
    python perf/sd_erasediff_mfu.py --table rows.jsonl                # print the table of saved rows
    bash perf/gpu_mfu.sh                                              # the whole GPU check, one command

**The model.** ``--full`` (the default on CUDA) is a ``StableDiffusionModel`` whose UNet is diffusers'
``UNet2DConditionModel`` with the SD v1.4 config (320/640/1280/1280 channels, 2 layers per block,
cross-attention dim 768, attention_head_dim 8, 64×64×4 latents; 859.5 M parameters), a CLIP-L-sized text
encoder (12 layers, width 768) and a cheap 8×-downsampling VAE, all randomly initialised (no weights are
downloaded; speed does not depend on the values). ``--tiny`` (the default on CPU) is the project's
``tiny_stable_diffusion``. The request holds random latents (so the VAE is never in the step) and captions
drawn from a 16-caption vocabulary per set: after the first step every caption's text states are cached
by the model, so the timed steps contain no text-encoder work (a real run with ever-new prompts adds one
frozen text-encoder forward per new prompt).

**One outer step** is one iteration of ``FineTuningMethod._loop`` running ``methods.erasediff.EraseDiff``
(variant ``noise``, adaptive λ, ``constraint_gradient="value"``; EraseDiff's Stable Diffusion
nudity recipe (Wu et al., arXiv 2401.05779; the EraseDiff docstring in methods/erasediff.py): ``params=noxattn``, lr and inner lr 1e-5, K = 2 inner steps; the method's defaults otherwise:
grad clip 1.0, EMA 0.99):

1. copy θ into the inner copy φ, then K steps of a fresh Adam on L_f(φ) (K UNet forward+backward passes);
2. L_f(φ_K) under no_grad (1 forward pass) — the logged constraint value;
3. g_r = ∇L_r(θ) on a retain batch and g_f = ∇L_f(θ) on the forget batch (2 forward+backward passes);
4. λ_t = max(0, η − ⟨g_f, g_r⟩/‖g_f‖²) (Python floats: host syncs), p.grad = g_r + λ_t g_f;
5. grad-norm clip, the outer Adam step, the EMA update, the progress callback.

So a step is (K + 2) forward+backward passes plus one forward pass of the UNet, each on ``batch`` latents.
The script drives the real method class: ``EraseDiff(steps=W+N, batch_size=B, ...).unlearn(model, request)``
with ``request.progress`` time-stamping every step (after ``torch.cuda.synchronize()`` on CUDA); the
reported s/step is (stamp[W+N] − stamp[W]) / N, i.e. the mean over the N steps after W warm-up steps
(compilation, cuDNN autotuning and the text-state cache fill happen in the warm-up). With W = 0 the start
is the start of the method's ``train`` phase (cost meter), after the model clones of its setup.

**FLOP counting.** One extra, eager run of ``EraseDiff(steps=1)`` on the same model, config and batch
under ``torch.utils.flop_counter.FlopCounterMode``: it counts the matrix products and convolutions
(forward and backward: mm/addmm/bmm, convolution, convolution_backward, the scaled-dot-product attention
kernels, with the CPU flash-attention kernel added here since torch does not count it) of everything the
step runs. The reported TFLOP/step is the UNet's share (module ``UNet2DConditionModel``; the frozen text
encoder, which runs only in that first step, is excluded). Elementwise work (GroupNorm, SiLU, the optimiser,
the λ dot products) is not counted: these are *model* FLOPs, as in the MFU definition of PaLM (Chowdhery et
al. 2022): an attention backward counts 2× its forward, without the flash kernels' recomputation of the
scores that torch's own formula adds. A cross-check counts one UNet forward and one forward+backward
(same trainable subset) on the meta device and prints the expected (K + 2)·fb + f.

**MFU** = (counted UNet FLOPs per step ÷ measured s/step) ÷ peak, where the peak is *measured* on the same
device: the mean rate of 10 products of two random 8192² bf16 matrices on CUDA (fp32 matrices, under the
current TF32 setting, with ``--dtype fp32``), or the best of repeated 1024² fp32 products with the current
thread count on CPU. ``unet-only MFU`` times the same (K + 2) forward+backward + 1 forward UNet passes alone
(same model options, batch, autocast; no optimiser, no λ, no copies, no host syncs inside), the ceiling for
this step without changing the UNet; the gap between the two columns is the method's own overhead.

Speed options: ``--dtype bf16`` (CUDA only: the project's ``eps`` autocasts to bf16 on CUDA and never on
CPU), ``--compile`` (``torch.compile`` of every UNet the method clones, whole model; ``--compile blocks``
compiles only the repeated ``BasicTransformerBlock`` / ``ResnetBlock2D`` modules, meant to compile faster),
``--channels-last``, TF32 matmuls (on by default; ``--no-tf32``) and ``cudnn.benchmark`` (on by default on
CUDA; ``--no-cudnn-benchmark``). ``--fused-adam`` is a *what-if*: it makes every ``torch.optim.Adam`` of the
process fused (``fused=True``), which the method does not do; its rows are labelled.
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import gc
import json
import math
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from benchmark import cost  # noqa: E402
from benchmark.api import LabeledImages, UnlearnRequest  # noqa: E402
from benchmark.models.stable_diffusion import (  # noqa: E402
    StableDiffusionModel,
    clip_tokenizer,
    stable_diffusion_scheduler_config,
    tiny_stable_diffusion,
)
from methods.erasediff import EraseDiff  # noqa: E402

SD14_UNET: dict[str, Any] = dict(
    sample_size=64, in_channels=4, out_channels=4, layers_per_block=2,
    block_out_channels=(320, 640, 1280, 1280),
    down_block_types=("CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"),
    up_block_types=("UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"),
    cross_attention_dim=768, attention_head_dim=8)
SD14_TEXT: dict[str, Any] = dict(hidden_size=768, intermediate_size=3072, num_hidden_layers=12,
                                 num_attention_heads=12, max_position_embeddings=77, hidden_act="quick_gelu")
REPEATED_BLOCKS = ("BasicTransformerBlock", "ResnetBlock2D")
WORDS = ("person", "woman", "man", "dog", "city", "beach", "forest", "street", "painting", "photo", "red",
         "old", "young", "night", "sunrise", "portrait", "lake", "mountain", "table", "fruit")
COLUMNS = ("config", "batch", "dtype", "options", "s/step", "TFLOP/step", "TFLOP/s", "peak TFLOP/s", "MFU %",
           "unet-only MFU %", "peak mem GB")


# -- model ----------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class UNetOptions:
    """How every UNet of a run is prepared: compile scope (None, "full", "blocks"), memory format, autocast."""

    compile: str | None = None
    channels_last: bool = False
    autocast: bool = True  # the project's bf16 autocast in ``eps`` on CUDA; False = plain fp32 there
    backend: str = "inductor"  # torch.compile backend ("aot_eager" checks the wiring without code generation)

    def prepare(self, unet: torch.nn.Module) -> None:
        for m in unet.modules():  # deepcopy already drops a compiled call (Module.__getstate__); be sure
            m.__dict__.pop("_compiled_call_impl", None)
        if self.channels_last:
            unet.to(memory_format=torch.channels_last)
        if self.compile == "full":
            unet.compile(backend=self.backend)
        elif self.compile == "blocks":
            for m in unet.modules():
                if type(m).__name__ in REPEATED_BLOCKS:
                    m.compile(backend=self.backend)

    def label(self) -> str:
        parts = [f"compile={self.compile}" if self.compile else "eager"]
        if self.compile and self.backend != "inductor":
            parts[0] += f"/{self.backend}"
        if self.channels_last:
            parts.append("channels-last")
        return " ".join(parts)


class TunedSD(StableDiffusionModel):
    """A ``StableDiffusionModel`` whose clones (the method's student and inner copy φ) get ``options``:
    compiled and/or channels-last UNets, and on CUDA optionally fp32 without the project's autocast.
    Everything else is the project's class; the bf16 path runs its ``eps`` unchanged."""

    options: UNetOptions

    @classmethod
    def wrap(cls, model: StableDiffusionModel, options: UNetOptions) -> TunedSD:
        out = cls(model.unet, model.vae, model.text_encoder, model.tokenizer, model.scheduler)
        out.options = options
        out._acp = model._acp
        return out

    def clone(self) -> TunedSD:
        # as StableDiffusionModel.clone (fresh ᾱ table on the CPU, shared frozen parts), plus the options
        unet = copy.deepcopy(self.unet)
        self.options.prepare(unet)
        out = TunedSD(unet, self.vae, self.text_encoder, self.tokenizer, copy.deepcopy(self.scheduler))
        out.options = self.options
        return out

    def eps(self, x_t: Tensor, t: Tensor, cond: Tensor) -> Tensor:
        if self.options.autocast or x_t.device.type != "cuda":
            return super().eps(x_t, t, cond)
        from benchmark.cost import count_eps

        t = torch.as_tensor(t, device=x_t.device)
        if t.ndim == 0:
            t = t.expand(x_t.shape[0])
        out = self.unet(x_t, t, **self._unet_kwargs(cond)).sample.float()
        count_eps(out)
        return out


def sd14_model(device: torch.device) -> StableDiffusionModel:
    """SD v1.4's UNet, a CLIP-L-sized text encoder and a cheap 8× VAE, random, built on ``device``."""
    from diffusers import AutoencoderKL, DDPMScheduler, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    tokenizer = clip_tokenizer()
    torch.manual_seed(0)
    with torch.device(device):
        unet = UNet2DConditionModel(**SD14_UNET)
        vae = AutoencoderKL(in_channels=3, out_channels=3, down_block_types=("DownEncoderBlock2D",) * 4,
                            up_block_types=("UpDecoderBlock2D",) * 4, block_out_channels=(8, 8, 8, 8),
                            layers_per_block=1, latent_channels=4, norm_num_groups=8, sample_size=512)
        text = CLIPTextModel(CLIPTextConfig(vocab_size=len(tokenizer), bos_token_id=tokenizer.bos_token_id,
                                            eos_token_id=tokenizer.eos_token_id,
                                            pad_token_id=tokenizer.pad_token_id, **SD14_TEXT))
    scheduler = DDPMScheduler.from_config(stable_diffusion_scheduler_config())
    return StableDiffusionModel(unet, vae, text.eval(), tokenizer, scheduler).to(device)


def latent_request(model: StableDiffusionModel, batch: int, device: torch.device, seed: int = 0) -> UnlearnRequest:
    """D_f and D_r of 2·batch random latents each (the model's latent shape), captions from a 16-caption
    vocabulary of random words per set; a nudity-style forget target (unused by the ``noise`` variant)."""
    gen = torch.Generator().manual_seed(seed)
    shape = model.latent_shape

    def captions() -> tuple[str, ...]:
        return tuple(" ".join(WORDS[int(i)] for i in torch.randint(0, len(WORDS), (6,), generator=gen))
                     for _ in range(16))

    def data(prompts: tuple[str, ...]) -> LabeledImages:
        n = 2 * batch
        return LabeledImages(torch.randn((n, *shape), generator=gen),
                             torch.randint(0, len(prompts), (n,), generator=gen), prompts)

    return UnlearnRequest(forget=data(captions()), retain=data(captions()), forget_target=("nudity",),
                          remap_targets=("clothed",), num_classes=2, seed=seed, device=str(device))


# -- FLOPs ----------------------------------------------------------------------------------------------------

def _flop_mapping() -> dict[Any, Callable[..., int]]:
    """Model-FLOP formulas for scaled-dot-product attention: the CPU flash kernel (which FlopCounterMode
    does not count at all) and every backward kernel counted as 2× its forward (dQ, dK, dV: four matrix
    products). torch's own backward formula adds the flash kernels' recomputation of the scores, a
    hardware FLOP but not a model FLOP."""
    from torch.utils.flop_counter import sdpa_flop_count

    def fwd(q: Any, k: Any, v: Any, *args: Any, out_shape: Any = None, **kwargs: Any) -> int:
        return sdpa_flop_count(q, k, v)

    def bwd(g: Any, q: Any, k: Any, v: Any, *args: Any, out_shape: Any = None, **kwargs: Any) -> int:
        return 2 * sdpa_flop_count(q, k, v)

    formulas = {"_scaled_dot_product_flash_attention_for_cpu": fwd,
                "_scaled_dot_product_flash_attention_for_cpu_backward": bwd,
                "_scaled_dot_product_flash_attention_backward": bwd,
                "_scaled_dot_product_efficient_attention_backward": bwd,
                "_scaled_dot_product_cudnn_attention_backward": bwd}
    aten = torch.ops.aten
    return {getattr(aten, name): f for name, f in formulas.items() if hasattr(aten, name)}


def method(cfg: argparse.Namespace, steps: int, batch: int) -> EraseDiff:
    return EraseDiff(steps=steps, batch_size=batch, params=cfg.params, lr=1e-5, inner_lr=1e-5,
                     inner_steps=cfg.inner_steps)


def count_step_flops(model: TunedSD, cfg: argparse.Namespace, batch: int,
                     request: UnlearnRequest) -> dict[str, float]:
    """FLOPs of one EraseDiff outer step (an eager ``steps=1`` run under FlopCounterMode), by module."""
    from torch.utils.flop_counter import FlopCounterMode

    options = model.options
    model.options = dataclasses.replace(options, compile=None)
    try:
        with FlopCounterMode(display=False, custom_mapping=_flop_mapping()) as counter:
            out = method(cfg, 1, batch).unlearn(model, request)
    finally:
        model.options = options
    del out
    by_module = {k: sum(v.values()) for k, v in counter.get_flop_counts().items()}
    total = counter.get_total_flops()
    unet = by_module.get("UNet2DConditionModel", 0)
    return {"total": total, "unet": unet, "other": total - unet}


def meta_pass_flops(unet_config: dict[str, Any], batch: int, subset: str, context: tuple[int, int]) -> tuple[int, int]:
    """(forward, forward+backward) FLOPs of one UNet pass on ``batch`` latents, on the meta device, with the
    weights of ``subset`` trainable as in the method."""
    from diffusers import UNet2DConditionModel
    from torch.utils.flop_counter import FlopCounterMode

    from benchmark.models.guided_ddim import unet_parameters

    with torch.device("meta"):
        unet = UNet2DConditionModel.from_config(unet_config)
    unet.requires_grad_(False)
    params = unet_parameters(unet, subset)
    for p in params:
        p.requires_grad_(True)
    c = int(unet_config["in_channels"])
    s = int(unet_config["sample_size"])
    x = torch.randn(batch, c, s, s, device="meta")
    t = torch.zeros(batch, dtype=torch.long, device="meta")
    cond = torch.randn(batch, *context, device="meta")
    with FlopCounterMode(display=False) as fwd, torch.no_grad():
        unet(x, t, encoder_hidden_states=cond)
    with FlopCounterMode(display=False) as both:
        out = unet(x, t, encoder_hidden_states=cond).sample
        torch.autograd.grad(out.float().pow(2).mean(), params)
    return fwd.get_total_flops(), both.get_total_flops()


# -- timing ---------------------------------------------------------------------------------------------------

def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def measure_peak(device: torch.device, dtype: str) -> float:
    """Measured matmul rate in FLOP/s: 10 products of random 8192² matrices (bf16, or fp32 under the TF32
    setting) on CUDA timed with events; on CPU the best of 8 1024² fp32 products."""
    if device.type == "cuda":
        n, reps = 8192, 10
        dt = torch.bfloat16 if dtype == "bf16" else torch.float32
        a = torch.randn(n, n, device=device, dtype=dt)
        b = torch.randn(n, n, device=device, dtype=dt)
        for _ in range(3):
            a @ b
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        for _ in range(reps):
            a @ b
        end.record()
        end.synchronize()
        return 2 * n**3 * reps / (start.elapsed_time(end) / 1e3)
    n = 1024
    a, b = torch.randn(n, n), torch.randn(n, n)
    a @ b
    best = math.inf
    for _ in range(8):
        t0 = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - t0)
    return 2 * n**3 / best


def time_method(model: TunedSD, cfg: argparse.Namespace, batch: int, request: UnlearnRequest,
                device: torch.device) -> dict[str, Any]:
    """s/step of EraseDiff over ``cfg.steps`` steps after ``cfg.warmup`` warm-up steps (see the docstring)."""
    stamps: list[float] = []

    def progress(step: int, total: int, row: dict[str, float]) -> None:
        sync(device)
        stamps.append(time.time())

    req = dataclasses.replace(request, progress=progress)
    with cost.measure(str(device)) as meter:
        out = method(cfg, cfg.warmup + cfg.steps, batch).unlearn(model, req)
    del out
    train_s = meter.phases["train"]["seconds"]
    start = stamps[cfg.warmup - 1] if cfg.warmup > 0 else stamps[-1] - train_s
    timed = [start, *stamps[cfg.warmup:]]
    per = [b - a for a, b in zip(timed, timed[1:])]
    total_steps = cfg.warmup + cfg.steps
    return {"s_per_step": (timed[-1] - timed[0]) / cfg.steps, "step_min": min(per), "step_max": max(per),
            "warmup_s": stamps[cfg.warmup - 1] - (stamps[-1] - train_s) if cfg.warmup else 0.0,
            "forward_images_per_step": meter.forward_images / total_steps,
            "backward_images_per_step": meter.backward_images / total_steps,
            "peak_mem_gb": meter.peak_memory_mb / 1024}


def time_unet_only(model: TunedSD, cfg: argparse.Namespace, batch: int, device: torch.device) -> float:
    """Seconds for the step's UNet passes alone: (K + 2) forward+backward and 1 no-grad forward (K > 0) on
    one clone, same options and batch, mean of ``cfg.steps`` repetitions after ``max(1, cfg.warmup)``."""
    m = model.clone().to(device)
    m.train().requires_grad_(False)
    params = m.parameters(cfg.params)
    for p in params:
        p.requires_grad_(True)
    gen = torch.Generator().manual_seed(1)
    x = torch.randn((batch, *m.latent_shape), generator=gen).to(device)
    noise = torch.randn(x.shape, generator=gen).to(device)
    t = torch.randint(0, m.num_train_timesteps, (batch,), generator=gen).to(device)
    cond = torch.randn(batch, m.context_length, m.text_encoder.width, generator=gen).to(device)
    x_t = m.add_noise(x, noise, t)

    def passes() -> None:
        for _ in range(cfg.inner_steps + 2):
            loss = (m.eps(x_t, t, cond) - noise).pow(2).flatten(1).mean(1).mean()
            torch.autograd.grad(loss, params)
        if cfg.inner_steps > 0:
            with torch.no_grad():
                m.eps(x_t, t, cond)

    for _ in range(max(1, cfg.warmup)):
        passes()
    sync(device)
    t0 = time.time()
    for _ in range(cfg.steps):
        passes()
    sync(device)
    return (time.time() - t0) / cfg.steps


def free(device: torch.device) -> None:
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()


# -- output ---------------------------------------------------------------------------------------------------

def fmt_row(r: dict[str, Any]) -> list[str]:
    if r.get("error"):
        return [r["config"], str(r["batch"]), r["dtype"], r["options"], r["error"], *[""] * 6]
    only = f"{r['unet_only_mfu'] * 100:.1f}" if r.get("unet_only_mfu") is not None else "–"
    mem = f"{r['peak_mem_gb']:.1f}" if r["device"] == "cuda" else "–"
    return [r["config"], str(r["batch"]), r["dtype"], r["options"], f"{r['s_per_step']:.4g}",
            f"{r['unet_flops_per_step'] / 1e12:.4g}", f"{r['achieved_flops'] / 1e12:.4g}",
            f"{r['peak_flops'] / 1e12:.4g}", f"{r['mfu'] * 100:.2f}", only, mem]


def print_table(rows: Sequence[dict[str, Any]]) -> None:
    print("| " + " | ".join(COLUMNS) + " |")
    print("| " + " | ".join("---" if i < 4 else "---:" for i in range(len(COLUMNS))) + " |")
    for r in rows:
        print("| " + " | ".join(fmt_row(r)) + " |")


def read_rows(paths: Sequence[str]) -> list[dict[str, Any]]:
    rows = []
    for path in paths:
        p = Path(path)
        if p.is_file():
            rows += [json.loads(line) for line in p.read_text().splitlines() if line.strip()]
    return rows


# -- main -----------------------------------------------------------------------------------------------------

def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default=None, help="cuda or cpu (default: cuda when available)")
    size = ap.add_mutually_exclusive_group()
    size.add_argument("--tiny", action="store_true", help="the project's tiny_stable_diffusion (default on CPU)")
    size.add_argument("--full", action="store_true", help="the SD-1.4-sized UNet (default on CUDA)")
    ap.add_argument("--batch", type=int, nargs="+", default=[8], help="batch sizes (D_f and D_r batch each)")
    ap.add_argument("--dtype", choices=("bf16", "fp32"), default=None,
                    help="bf16 autocast (CUDA only, the project's default there) or fp32 (default on CPU)")
    ap.add_argument("--compile", nargs="?", const="full", choices=("full", "blocks"), default=None,
                    help="torch.compile each UNet the method clones: the whole model (default) or its blocks")
    ap.add_argument("--compile-backend", default="inductor", help="torch.compile backend (default inductor)")
    ap.add_argument("--channels-last", action="store_true")
    ap.add_argument("--no-tf32", dest="tf32", action="store_false", help="keep fp32 matmuls in full fp32")
    ap.add_argument("--no-cudnn-benchmark", dest="cudnn_benchmark", action="store_false")
    ap.add_argument("--fused-adam", action="store_true",
                    help="what-if: make every torch.optim.Adam fused (the method does not; rows are labelled)")
    ap.add_argument("--steps", type=int, default=5, help="timed outer steps")
    ap.add_argument("--warmup", type=int, default=2, help="warm-up outer steps before the timed ones")
    ap.add_argument("--params", choices=("noxattn", "all", "xattn"), default="noxattn",
                    help="trainable subset (SD nudity recipe: noxattn)")
    ap.add_argument("--inner-steps", type=int, default=2, help="K, EraseDiff's inner steps")
    ap.add_argument("--no-unet-only", dest="unet_only", action="store_false",
                    help="skip timing the UNet passes alone")
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: 1 on CPU)")
    ap.add_argument("--json", default=None, help="append one JSON line per row to this file")
    ap.add_argument("--label", default="", help="text appended to the options column")
    ap.add_argument("--table", nargs="+", default=None, metavar="JSONL",
                    help="only print the table of the rows saved in these files")
    cfg = ap.parse_args(argv)
    if cfg.device is None:
        cfg.device = "cuda" if torch.cuda.is_available() else "cpu"
    if cfg.dtype is None:
        cfg.dtype = "bf16" if cfg.device.startswith("cuda") else "fp32"
    if cfg.dtype == "bf16" and not cfg.device.startswith("cuda"):
        ap.error("--dtype bf16 needs CUDA: the project autocasts to bf16 on CUDA only")
    if cfg.steps < 1 or cfg.warmup < 0:
        ap.error("--steps must be ≥ 1 and --warmup ≥ 0")
    if not cfg.tiny and not cfg.full:
        cfg.full = cfg.device.startswith("cuda")
    return cfg


def setup_backends(cfg: argparse.Namespace, device: torch.device) -> None:
    if device.type == "cpu":
        torch.set_num_threads(cfg.threads or 1)
    elif cfg.threads:
        torch.set_num_threads(cfg.threads)
    torch.set_float32_matmul_precision("high" if cfg.tf32 else "highest")
    torch.backends.cudnn.allow_tf32 = cfg.tf32
    torch.backends.cudnn.benchmark = cfg.cudnn_benchmark and device.type == "cuda"
    if cfg.compile:
        import torch._dynamo as dynamo

        dynamo.config.cache_size_limit = 64  # student, φ, no-grad and per-block variants
        dynamo.config.automatic_dynamic_shapes = False  # one static graph per shape
    if cfg.fused_adam:
        base = torch.optim.Adam

        class FusedAdam(base):  # type: ignore[valid-type,misc]
            def __init__(self, params: Any, **kwargs: Any) -> None:
                kwargs.setdefault("fused", device.type == "cuda")
                super().__init__(params, **kwargs)

        torch.optim.Adam = FusedAdam  # type: ignore[misc]


def main(argv: Sequence[str] | None = None) -> None:
    cfg = parse_args(argv)
    if cfg.table:
        print_table(read_rows(cfg.table))
        return
    device = torch.device(cfg.device)
    setup_backends(cfg, device)
    options = UNetOptions(compile=cfg.compile, channels_last=cfg.channels_last, autocast=cfg.dtype == "bf16",
                          backend=cfg.compile_backend)
    t0 = time.time()
    base = sd14_model(device) if cfg.full else tiny_stable_diffusion().to(device)
    if cfg.channels_last:
        base.unet.to(memory_format=torch.channels_last)
    model = TunedSD.wrap(base, options)
    n_params = sum(p.numel() for p in model.unet.parameters())
    config = f"SD-1.4 UNet {n_params / 1e6:.1f}M" if cfg.full else f"tiny {n_params / 1e6:.2f}M"
    gpu = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    print(f"# {config} on {gpu} ({torch.get_num_threads()} threads), torch {torch.__version__}, built in "
          f"{time.time() - t0:.1f} s; dtype {cfg.dtype}, {options.label()}, "
          + (f"tf32={cfg.tf32}, cudnn.benchmark={torch.backends.cudnn.benchmark}, " if device.type == "cuda" else "")
          + f"params={cfg.params}, K={cfg.inner_steps}, "
          f"warmup {cfg.warmup} + {cfg.steps} timed steps", flush=True)
    peak = measure_peak(device, cfg.dtype)
    print(f"# measured matmul peak: {peak / 1e12:.3f} TFLOP/s", flush=True)
    label = options.label() + (" fused-Adam(what-if)" if cfg.fused_adam else "") + (
        f" {cfg.label}" if cfg.label else "")
    dtype_label = cfg.dtype + ("" if cfg.dtype == "bf16" or not cfg.tf32 or device.type == "cpu" else "/tf32")
    rows = []
    for batch in cfg.batch:
        row: dict[str, Any] = {"config": config, "batch": batch, "dtype": dtype_label, "options": label,
                               "device": device.type, "gpu": gpu, "torch": torch.__version__,
                               "params": cfg.params, "inner_steps": cfg.inner_steps, "warmup": cfg.warmup,
                               "steps": cfg.steps, "peak_flops": peak}
        try:
            request = latent_request(model, batch, device)
            flops = count_step_flops(model, cfg, batch, request)
            free(device)
            fwd, fb = meta_pass_flops(dict(model.unet.config), batch, cfg.params,
                                      (model.context_length, model.text_encoder.width))
            expected = cfg.inner_steps * fb + (fwd if cfg.inner_steps > 0 else 0) + 2 * fb
            print(f"# batch {batch}: counted UNet {flops['unet'] / 1e12:.4g} TFLOP/step (+ text encoder "
                  f"{flops['other'] / 1e12:.3g}, first step only); meta count per pass: forward "
                  f"{fwd / 1e12:.4g}, forward+backward {fb / 1e12:.4g} → expected {expected / 1e12:.4g} "
                  f"(ratio {flops['unet'] / expected:.4f})", flush=True)
            timing = time_method(model, cfg, batch, request, device)
            free(device)
            row.update(timing, unet_flops_per_step=flops["unet"], text_flops_first_step=flops["other"],
                       expected_unet_flops=expected)
            row["achieved_flops"] = flops["unet"] / timing["s_per_step"]
            row["mfu"] = row["achieved_flops"] / peak
            print(f"# batch {batch}: {timing['s_per_step']:.4g} s/step (min {timing['step_min']:.4g}, max "
                  f"{timing['step_max']:.4g}; warm-up {timing['warmup_s']:.1f} s), UNet images per step "
                  f"{timing['forward_images_per_step']:.0f} fwd / {timing['backward_images_per_step']:.0f} bwd",
                  flush=True)
            if cfg.unet_only:
                s = time_unet_only(model, cfg, batch, device)
                free(device)
                row["unet_only_s"] = s
                row["unet_only_mfu"] = flops["unet"] / s / peak
                print(f"# batch {batch}: UNet passes alone {s:.4g} s ({row['unet_only_mfu'] * 100:.1f}% MFU); "
                      f"method overhead {timing['s_per_step'] - s:.3g} s/step", flush=True)
        except torch.cuda.OutOfMemoryError as exc:
            row["error"] = "OOM"
            print(f"# batch {batch}: out of memory ({str(exc).splitlines()[0]})", flush=True)
            free(device)
        rows.append(row)
        if cfg.json:
            with open(cfg.json, "a") as fh:
                fh.write(json.dumps(row) + "\n")
    print_table(rows)


if __name__ == "__main__":
    main()
