"""Weight fingerprints and hash-checked loading of weight files."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from pathlib import Path

import torch
from torch import nn

from benchmark import UnlearnbenchError


def fingerprint_state(state: Mapping[str, torch.Tensor]) -> str:
    """sha256 over (name, shape, float32 bytes) of every tensor, names sorted."""
    h = hashlib.sha256()
    for name in sorted(state):
        t = state[name].detach().to("cpu", torch.float32).contiguous()
        h.update(name.encode())
        h.update(str(tuple(t.shape)).encode())
        h.update(t.numpy().tobytes())
    return h.hexdigest()


def fingerprint_modules(modules: Mapping[str, nn.Module]) -> str:
    state = {f"{prefix}.{k}": v for prefix, m in modules.items() for k, v in m.state_dict().items()}
    return fingerprint_state(state)


def file_sha256(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


class WeightHashMismatch(UnlearnbenchError):
    pass


def verify_sha256(path: str | Path, expected: str | None) -> str:
    """Return the file's sha256; raise WeightHashMismatch if ``expected`` is given and differs."""
    path = Path(path)
    if not path.is_file():
        raise UnlearnbenchError(f"weights file not found: {path}")
    actual = file_sha256(path)
    if expected and actual != expected:
        raise WeightHashMismatch(
            f"refusing to load {path}: sha256 {actual[:16]}… does not match the recorded {expected[:16]}… "
            "(tampered or stale file; rebuild it with `unlearnbench zoo train` or restore it)"
        )
    return actual
