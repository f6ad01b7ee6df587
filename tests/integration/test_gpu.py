"""CUDA checks (run with `pytest -m gpu` on a machine with a GPU; skipped by default and without one)."""

from __future__ import annotations

import pytest
import torch

from benchmark.api import UnlearnRequest
from benchmark.data.mnist import mnist_splits
from benchmark.zoo import load_unet
from methods.erasediff import EraseDiff

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")]


def test_bf16_eps_on_cuda_matches_cpu_float32():
    cpu = load_unet("mnist-unet-base")
    gpu = cpu.clone().to("cuda")
    gen = torch.Generator().manual_seed(0)
    x, t = torch.randn(64, 1, 16, 16, generator=gen), torch.randint(0, 1000, (64,), generator=gen)
    y = torch.randint(0, 11, (64,), generator=gen)
    ref = cpu.eps(x, t, cpu.encode(y))
    got = gpu.eps(x.cuda(), t.cuda(), gpu.encode(y)).cpu()
    rel = (got - ref).norm() / ref.norm()
    assert rel < 0.05, f"bf16 autocast drifted: relative error {rel:.4f}"


def test_erasediff_runs_on_cuda_and_leaves_input_on_its_device():
    base = load_unet("mnist-unet-base")
    fp = base.fingerprint()
    forget, retain = mnist_splits().forget_retain(0)
    req = UnlearnRequest(forget, retain, 0, list(range(1, 10)), 10, seed=0, device="cuda", max_steps=5)
    out = EraseDiff().unlearn(base, req)
    assert out.model.device.type == "cuda" and base.device.type == "cpu" and base.fingerprint() == fp
    assert all(torch.isfinite(p).all() for p in out.model.parameters())
    assert out.stats["lambda"]["mean"] >= 0
