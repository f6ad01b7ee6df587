"""Versioned result records: one JSON per (scenario, forget class, method, seed, tier) cell.

Records are written atomically (temp file + rename) and carry their provenance (harness version and
git commit, UTC time, scenario name/version/config hash, model fingerprints, resolved method config,
compute, judge hashes, environment). Leaderboards and reports are rendered from stored records only.
"""

from __future__ import annotations

import json
import platform
import subprocess
import sys
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import Any

from benchmark import UnlearnbenchError, __version__
from benchmark.atomic import write_text_atomic

SCHEMA_VERSION = 1
RECORD_KIND = "unlearnbench.result"
_PACKAGES = ("torch", "diffusers", "torch-fidelity", "numpy", "safetensors", "pandas", "mlxtend")


def record_filename(scenario: str, target: int | str, method: str, seed: int, tier: str, key: str = "") -> str:
    """``target``: the scenario setup's target tag (``c0``, ``digit0``, ``red``); an int is a class id.
    ``key``: the cell's identity hash (``benchmark.identity.cell_key``); records written before identities
    existed have none, and the runner adopts them once (``runner.adopt_legacy``)."""
    tag = f"c{target}" if isinstance(target, int) else target
    return f"{scenario}__{tag}__{method}__seed{seed}__{tier}{'__' + key if key else ''}.json"


def git_commit() -> dict[str, Any]:
    root = Path(__file__).resolve().parent.parent
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, timeout=5)
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=root,
                               capture_output=True, text=True, timeout=5)
    except (OSError, subprocess.SubprocessError):
        return {"commit": None, "dirty": None}
    if commit.returncode != 0:
        return {"commit": None, "dirty": None}
    return {"commit": commit.stdout.strip(), "dirty": bool(dirty.stdout.strip())}


def environment(device: str) -> dict[str, Any]:
    import torch

    versions = {}
    for pkg in _PACKAGES:
        try:
            versions[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            versions[pkg] = None
    env: dict[str, Any] = {
        "python": sys.version.split()[0], "platform": platform.platform(), "packages": versions,
        "device": device, "torch_threads": torch.get_num_threads(),
    }
    from benchmark.threads import chosen

    if chosen():
        env["threads_choice"] = chosen()["reason"]
    if device.startswith("cuda") and torch.cuda.is_available():
        env["device_name"] = torch.cuda.get_device_name()
    return env


def new_record(**sections: Any) -> dict[str, Any]:
    rec: dict[str, Any] = {
        "schema_version": SCHEMA_VERSION,
        "kind": RECORD_KIND,
        "harness": {"version": __version__, **git_commit()},
        "created_utc": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    rec.update(sections)
    return rec


def write_record(record: dict[str, Any], path: Path) -> Path:
    """Write atomically: a crash never leaves a half-written record behind."""
    return write_text_atomic(path, json.dumps(record, indent=2, default=_json_default) + "\n")


def _json_default(obj: Any) -> Any:
    if isinstance(obj, (set, frozenset, tuple)):
        return list(obj)
    if isinstance(obj, Path):
        return str(obj)
    if hasattr(obj, "item"):
        return obj.item()
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")


def validate_record(rec: Any, source: str = "record") -> dict[str, Any]:
    if not isinstance(rec, dict) or rec.get("kind") != RECORD_KIND:
        raise UnlearnbenchError(f"{source} is not an unlearnbench result record")
    version = rec.get("schema_version")
    if version != SCHEMA_VERSION:
        raise UnlearnbenchError(f"{source} has schema version {version}; this harness reads {SCHEMA_VERSION}")
    if rec.get("status", "ok") not in ("ok", "failed"):
        raise UnlearnbenchError(f"{source} has unknown status {rec.get('status')!r}")
    for key in ("scenario", "method", "metrics", "seed", "compute"):
        if key not in rec:
            raise UnlearnbenchError(f"{source} lacks '{key}'")
    return rec


def load_records(directory: str | Path) -> list[dict[str, Any]]:
    """Every valid record in ``directory`` (non-recursive); other JSON files are ignored."""
    return list(load_records_by_name(directory).values())


def load_records_by_name(directory: str | Path) -> dict[str, dict[str, Any]]:
    """``{file name: record}`` for every valid record in ``directory``, in file-name order."""
    directory = Path(directory)
    if not directory.is_dir():
        raise UnlearnbenchError(f"no such results directory: {directory}")
    out = {}
    for path in sorted(directory.glob("*.json")):
        rec = read_record(path)
        if rec is not None:
            out[path.name] = rec
    return out


def read_record(path: str | Path) -> dict[str, Any] | None:
    """The validated record in ``path``; None for a readable JSON file that is not a result record."""
    path = Path(path)
    try:
        rec = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise UnlearnbenchError(f"{path} is not a readable JSON file: {exc}") from exc
    return validate_record(rec, str(path)) if isinstance(rec, dict) and rec.get("kind") == RECORD_KIND else None
