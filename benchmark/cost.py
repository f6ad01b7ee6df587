"""Compute accounting: what an unlearning run cost, measured rather than estimated.

Inside ``measure()`` every ε_θ evaluation of any DiffusionModel (the student, frozen copies, proxies,
replay samplers) is counted in *images*: ``forward_images`` per image pushed through the network and
``backward_images`` per image whose output received a gradient. Methods add the images they sample
for replay or Fisher estimation (``generated_images``) and their optimiser steps; ``phase`` splits it
all by stage (one-off preparation vs the training loop). Peak memory is the CUDA peak allocation on GPU,
and on CPU the peak rise of the process's resident set over the run, sampled every 20 ms.
"""

from __future__ import annotations

import contextvars
import resource
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

_ACTIVE: contextvars.ContextVar[CostMeter | None] = contextvars.ContextVar("unlearnbench_cost", default=None)


@dataclass
class CostMeter:
    forward_images: int = 0
    backward_images: int = 0
    forward_calls: int = 0
    generated_images: int = 0  # sampled from a frozen model for replay / Fisher estimation
    optimizer_steps: int = 0
    seconds: float = 0.0
    peak_memory_mb: float = 0.0
    peak_memory_scope: str = ""
    device: str = "cpu"
    phases: dict[str, dict[str, float]] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["seconds"] = round(self.seconds, 3)
        d["peak_memory_mb"] = round(self.peak_memory_mb, 1)
        d["phases"] = {k: {kk: round(vv, 3) for kk, vv in v.items()} for k, v in self.phases.items()}
        return d


def active() -> CostMeter | None:
    return _ACTIVE.get()


def count_eps(output: torch.Tensor) -> None:
    """Called by every DiffusionModel.eps on its output: counts the forward and, lazily, the backward."""
    meter = _ACTIVE.get()
    if meter is None:
        return
    n = int(output.shape[0])
    meter.forward_images += n
    meter.forward_calls += 1
    if output.requires_grad:
        output.register_hook(lambda grad: _add_backward(meter, n))


def _add_backward(meter: CostMeter, n: int) -> None:
    meter.backward_images += n


def add(**counts: int) -> None:
    """Add to counters of the active meter (e.g. ``add(generated_images=500)``)."""
    meter = _ACTIVE.get()
    if meter is not None:
        for key, value in counts.items():
            setattr(meter, key, getattr(meter, key) + value)


@contextmanager
def phase(name: str) -> Iterator[None]:
    """Time a named phase (e.g. "fisher", "replay", "proxy", "train") and count its image passes."""
    meter = _ACTIVE.get()
    t0 = time.time()
    f0, b0 = (meter.forward_images, meter.backward_images) if meter else (0, 0)
    try:
        yield
    finally:
        if meter is not None:
            row = meter.phases.setdefault(name, {"seconds": 0.0, "forward_images": 0, "backward_images": 0})
            row["seconds"] += time.time() - t0
            row["forward_images"] += meter.forward_images - f0
            row["backward_images"] += meter.backward_images - b0


def _rss_mb() -> float:
    try:
        pages = int(Path("/proc/self/statm").read_text().split()[1])
        return pages * resource.getpagesize() / 2**20
    except (OSError, ValueError, IndexError):
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


class _RssSampler(threading.Thread):
    def __init__(self, interval: float = 0.02):
        super().__init__(daemon=True)
        self.interval, self.base, self.peak = interval, _rss_mb(), 0.0
        self._stop_event = threading.Event()

    def run(self) -> None:
        while not self._stop_event.wait(self.interval):
            self.peak = max(self.peak, _rss_mb())

    def stop(self) -> float:
        self._stop_event.set()
        self.join()
        return max(0.0, max(self.peak, _rss_mb()) - self.base)


@contextmanager
def measure(device: str = "cpu") -> Iterator[CostMeter]:
    """Count everything done inside the block; nested blocks count into the innermost meter only."""
    meter = CostMeter(device=device)
    token = _ACTIVE.set(meter)
    cuda = device.startswith("cuda") and torch.cuda.is_available()
    sampler = None
    if cuda:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    else:
        sampler = _RssSampler()
        sampler.start()
    t0 = time.time()
    try:
        yield meter
    finally:
        if cuda:
            torch.cuda.synchronize()
        meter.seconds = time.time() - t0
        _ACTIVE.reset(token)
        if cuda:
            meter.peak_memory_mb = torch.cuda.max_memory_allocated() / 2**20
            meter.peak_memory_scope = "CUDA peak allocated during unlearning"
        else:
            meter.peak_memory_mb = sampler.stop() if sampler else 0.0
            meter.peak_memory_scope = "peak rise of process RSS during unlearning (20 ms sampling)"
