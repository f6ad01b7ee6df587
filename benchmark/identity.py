"""What a result record *is*: the identity that decides whether a stored record may be reused.

A record is reusable for a cell only when all of these equal the cell's: the scenario card's config hash,
the method's resolved config (after tier budgets, ``--set`` overrides and the card or adapter budget),
the step cap the harness imposed (``max_steps``), and the method's **code identity** — the version of the
distribution that ships it and a sha256 over the source files of its class and every base class outside
the public contract (``benchmark.api``). So a changed method, card or budget never silently reuses or
overwrites another's record: the file name carries a short hash of the first three, and a record whose
code identity differs is stale and recomputed (the runner says so).

Two hashes make the code identity. ``source_sha256`` covers the files' bytes. ``behaviour_sha256`` covers
the code Python runs: each file parsed, its docstrings and other bare string statements dropped (comments
never reach the syntax tree), and printed back by ``ast.unparse``. A record is today's when either hash
matches (``same_code``), so correcting a docstring or a comment — where a method's departures from its
paper are named — keeps its records, while any change to what runs still makes them stale. Records
written before ``behaviour_sha256`` existed match by bytes only. ``ast.unparse``'s layout can differ
between Python versions; that can only make a record look stale, never make changed code look the same.
"""

from __future__ import annotations

import ast
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


class _DropStringStatements(ast.NodeTransformer):
    """Removes bare string statements (docstrings, attribute notes); a body left empty gets ``pass``."""

    def visit_Expr(self, node: ast.Expr) -> ast.AST | None:
        if isinstance(node.value, ast.Constant) and isinstance(node.value.value, str):
            return None
        return node

    def generic_visit(self, node: ast.AST) -> ast.AST:
        super().generic_visit(node)
        if getattr(node, "body", None) == []:
            node.body = [ast.Pass()]
        return node


def behaviour_source(source: bytes | str) -> str:
    """Python ``source`` as it runs: without comments, docstrings or other bare string statements, in
    ``ast.unparse``'s layout. Two files with the same result differ only in documentation and formatting."""
    return ast.unparse(_DropStringStatements().visit(ast.parse(source)))


def files_sha256(files: list[Path], behaviour: bool = False) -> str:
    """sha256 over ``files``, each file's repository path and then its bytes (or, with ``behaviour``, its
    ``behaviour_source``) in turn."""
    digest = hashlib.sha256()
    for path in files:
        digest.update(_display(path).encode() + b"\0")
        data = path.read_bytes()
        digest.update(behaviour_source(data).encode() if behaviour and path.suffix == ".py" else data)
    return digest.hexdigest()


def code_identity(cls: type, files: list[Path] | None = None) -> dict[str, Any]:
    """``{"distribution", "version", "source_sha256", "behaviour_sha256", "files"}`` for a method (or attack)
    class over ``files`` (default: ``source_files(cls)``); see the module docstring."""
    files = source_files(cls) if files is None else files
    return {**_distribution(cls.__module__), "source_sha256": files_sha256(files),
            "behaviour_sha256": files_sha256(files, behaviour=True), "files": [_display(p) for p in files]}


def same_code(recorded: dict[str, Any] | None, current: dict[str, Any]) -> bool:
    """True when a record's code identity ``recorded`` is ``current``'s: the same source bytes, or the same
    code with documentation set aside (``behaviour_sha256``, where the record has one)."""
    recorded = recorded or {}
    if recorded.get("source_sha256") == current["source_sha256"]:
        return True
    return recorded.get("behaviour_sha256") is not None and recorded.get("behaviour_sha256") == current.get(
        "behaviour_sha256")


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
