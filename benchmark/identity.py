"""What a result record *is*: the identity that decides whether a stored record may be reused.

A record is reusable for a cell only when all of these equal the cell's: the scenario card's config hash,
the method's resolved config (after tier budgets, ``--set`` overrides and the card or adapter budget),
the step cap the harness imposed (``max_steps``), and the method's **code identity** — the version of the
distribution that ships it and a sha256 over the source files of its class and every base class outside
the public contract (``benchmark.api``). So a changed method, card or budget never silently reuses or
overwrites another's record: the file name carries a short hash of the first three, and a record whose
code identity differs is stale and recomputed (the runner says so).
"""

from __future__ import annotations

import functools
import hashlib
import inspect
import json
import subprocess
from importlib import metadata
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parent.parent
_CONTRACT_MODULES = ("benchmark.api", "builtins", "abc", "typing")


def source_files(cls: type) -> list[Path]:
    """Source files of ``cls`` and its base classes, excluding the public contract and the stdlib."""
    files: list[Path] = []
    for klass in inspect.getmro(cls):
        if klass.__module__ in _CONTRACT_MODULES or klass.__module__.startswith("typing"):
            continue
        try:
            path = Path(inspect.getfile(klass)).resolve()
        except (TypeError, OSError):
            continue
        if path.suffix == ".py" and path not in files:
            files.append(path)
    return files


def _distribution(module: str) -> dict[str, str | None]:
    top = module.split(".")[0]
    try:
        dists = metadata.packages_distributions().get(top) or []
    except Exception:  # noqa: BLE001 - metadata of odd environments must not break a run
        dists = []
    if not dists:
        return {"distribution": None, "version": None}
    name = dists[0]
    try:
        return {"distribution": name, "version": metadata.version(name)}
    except metadata.PackageNotFoundError:
        return {"distribution": name, "version": None}


def _display(path: Path) -> str:
    try:
        return str(path.relative_to(REPO_ROOT))
    except ValueError:
        return path.name


def code_identity(cls: type, files: list[Path] | None = None) -> dict[str, Any]:
    """``{"distribution", "version", "source_sha256", "files"}`` for a method (or attack) class: a sha256
    over ``files`` (default: ``source_files(cls)``), each file's repository path and bytes in turn."""
    digest = hashlib.sha256()
    files = source_files(cls) if files is None else files
    for path in files:
        digest.update(_display(path).encode() + b"\0")
        digest.update(path.read_bytes())
    return {**_distribution(cls.__module__), "source_sha256": digest.hexdigest(), "files": [_display(p) for p in files]}


def _package_closure(cls: type, package: str) -> list[Path]:
    """Source files of the ``package`` modules that ``cls``'s module reaches through its module-level names,
    transitively (the helpers an attack calls: ``attacks.concept.common``, ``attacks.inversion.common``, …);
    helpers imported inside functions are found through the modules that import them at module level."""
    import sys

    seen: list[str] = []
    todo = [cls.__module__]
    while todo:
        name = todo.pop()
        if name in seen or not (name == package or name.startswith(package + ".")):
            continue
        seen.append(name)
        module = sys.modules.get(name)
        if module is None:
            continue
        for obj in vars(module).values():
            ref = obj.__name__ if inspect.ismodule(obj) else getattr(obj, "__module__", None)
            if isinstance(ref, str) and ref not in seen:
                todo.append(ref)
    files = []
    for name in sorted(seen):
        path = Path(getattr(sys.modules.get(name), "__file__", "") or "")
        if path.suffix == ".py":
            files.append(path.resolve())
    return files


@functools.cache
def attack_code_identity(cls: type) -> dict[str, Any]:
    """``code_identity`` of an attack class over its own files and every ``attacks`` module it reaches: an
    attack result whose code identity differs from today's is stale (rerun on the record's saved weights).
    Computed once per class per process."""
    files = set(source_files(cls)) | set(_package_closure(cls, cls.__module__.split(".")[0]))
    return code_identity(cls, sorted(files, key=_display))


def cell_key(scenario_hash: str, method: str, config: dict[str, Any], max_steps: int | None) -> str:
    """Short hash of what makes a record's numbers: card, method name, resolved config and step cap."""
    blob = json.dumps({"scenario": scenario_hash, "method": method, "config": config, "max_steps": max_steps},
                      sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:10]


def sources_at_commit_match(commit: str, code: dict[str, Any]) -> bool:
    """True when every repository file in ``code["files"]`` had, at git ``commit``, the content it has now.

    Used once per record written before records carried a code identity: such a record is adopted only if
    its method's sources are provably unchanged since the commit that produced it."""
    if not commit:
        return False
    for rel in code.get("files", []):
        path = REPO_ROOT / rel
        if not path.is_file():
            return False
        try:
            old = subprocess.run(["git", "show", f"{commit}:{rel}"], cwd=REPO_ROOT, capture_output=True, timeout=10)
        except (OSError, subprocess.SubprocessError):
            return False
        if old.returncode != 0 or old.stdout != path.read_bytes():
            return False
    return True
