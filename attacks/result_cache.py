"""Attack results cached per model weights: in the run's memory and, when the run has a cache folder, on disk.

``AttackContext.cache`` (a dict shared by every attack of one run) keeps a result for the rest of the run,
so a model identical to a reference is attacked once. With ``AttackContext.cache_dir`` set (the runner sets
it to ``$UNLEARNBENCH_CACHE``) the result is also written to
``<cache_dir>/attacks/<fingerprint[:24]>/<attack>-<key>.pt``, so a restarted run, a second worker or a later
audit does not attack the same reference model (the original, the oracle) again: on the embedded text card
that is ~4 min of 2 CPU cores per process.

The disk key covers everything that makes the numbers: the attack's name, variant and resolved config, the
attack seed, the forget concept and class, the model's weights fingerprint, the scenario card's config hash
and tier, the context's extra config, the torch version, and a sha256 over the source of the code that
computes them (every ``.py`` file of ``attacks/``, ``benchmark/models/``, ``benchmark/sampling.py``,
``benchmark/judges.py`` and ``benchmark/api.py``); a change to any of them misses. Only finished results are
cached (a result cut short by its budget is retried). Files are written atomically and read with
``torch.load(weights_only=True)`` with ``MetricValue`` the one allowlisted class, so a tampered cache file
cannot execute code; an unreadable one is recomputed and overwritten.
"""

from __future__ import annotations

import functools
import hashlib
import io
import json
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from benchmark.api import AttackContext, MetricValue

_REPO = Path(__file__).resolve().parent.parent
_CODE = ("attacks", "benchmark/models", "benchmark/sampling.py", "benchmark/judges.py", "benchmark/api.py")


@functools.cache
def code_sha256() -> str:
    """sha256 over the source files whose change can move an attack's numbers (see the module docstring)."""
    digest = hashlib.sha256()
    for entry in _CODE:
        path = _REPO / entry
        for f in sorted(path.rglob("*.py")) if path.is_dir() else [path]:
            if f.is_file():
                digest.update(str(f.relative_to(_REPO)).encode() + b"\0" + f.read_bytes())
    return digest.hexdigest()


def disk_path(context: AttackContext, key: tuple[Any, ...], fingerprint: str) -> Path | None:
    """Where the result for ``key`` lives on disk, or None when the context has no cache folder."""
    root = getattr(context, "cache_dir", None)
    if root is None:
        return None
    scenario = context.scenario
    blob = json.dumps({"key": [str(k) for k in key], "scenario": getattr(scenario, "config_hash", repr(scenario)),
                       "tier": context.tier, "config": repr(sorted(context.config.items())),
                       "forget": [context.concept_name, context.forget_class], "torch": torch.__version__,
                       "code": code_sha256()}, sort_keys=True)
    name = "".join(c if c.isalnum() or c in "-_" else "_" for c in str(key[0]))
    return Path(root) / "attacks" / fingerprint[:24] / f"{name}-{hashlib.sha256(blob.encode()).hexdigest()[:20]}.pt"


def _load(path: Path) -> Any:
    try:
        with torch.serialization.safe_globals([MetricValue]):
            return torch.load(path, map_location="cpu", weights_only=True)
    except Exception:  # noqa: BLE001 - a corrupt or foreign cache file is recomputed, never trusted
        return None


def _save(path: Path, result: Any) -> None:
    """Write ``result`` atomically, only if it reads back under ``weights_only`` (else keep it in memory only)."""
    buf = io.BytesIO()
    try:
        torch.save(result, buf)
        buf.seek(0)
        with torch.serialization.safe_globals([MetricValue]):
            torch.load(buf, weights_only=True)
    except Exception:  # noqa: BLE001 - a result holding other types is simply not persisted
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
    with os.fdopen(fd, "wb") as fh:
        fh.write(buf.getvalue())
    os.replace(tmp, path)


def cached(context: AttackContext, key: tuple[Any, ...], fingerprint: str, compute: Callable[[], Any],
           finished: Callable[[Any], bool] = lambda result: True) -> Any:
    """``compute()`` once per ``key`` (which must include ``fingerprint``): from the run's memory, else from
    disk, else computed and, when ``finished(result)``, kept in both."""
    if key in context.cache:
        return context.cache[key]
    path = disk_path(context, key, fingerprint)
    if path is not None and path.is_file():
        result = _load(path)
        if result is not None:
            context.cache[key] = result
            return result
    result = compute()
    if finished(result):
        context.cache[key] = result
        if path is not None:
            _save(path, result)
    return result
