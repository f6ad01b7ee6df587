"""Versioned scenario cards (YAML) and their loader.

A card names the base model (+ sha256), data splits, forget and remap targets, judge, metrics and,
per tier, budgets and sample counts. Changing anything that moves the numbers bumps ``version``.
Built-in cards live beside this file; plug-ins register more through the ``unlearnbench.scenarios``
entry point (a ``"module:attr"`` naming a path to a YAML card).
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from benchmark import UnlearnbenchError
from benchmark.typed_config import coerce_field

CARDS_DIR = Path(__file__).resolve().parent
TIERS = ("smoke", "quick", "full")
MNIST_CLASS = CARDS_DIR / "mnist-class.yaml"
MNIST_TEXT_OBJECT = CARDS_DIR / "mnist-text-object.yaml"
MNIST_TEXT_STYLE = CARDS_DIR / "mnist-text-style.yaml"
SD_NUDITY = CARDS_DIR / "sd-nudity.yaml"
SD_OBJECT = CARDS_DIR / "sd-object.yaml"
SD_STYLE = CARDS_DIR / "sd-style.yaml"


@dataclass(frozen=True)
class TierSpec:
    name: str
    samples_per_class: int
    ddim_steps: int
    methods: dict[str, dict[str, Any]] = field(default_factory=dict)
    attacks: dict[str, dict[str, Any]] = field(default_factory=dict)
    attack_budget: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Scenario:
    name: str
    version: int
    track: str
    description: str
    num_classes: int
    forget_class: int | None  # the class track's default target
    guidance: float
    data: dict[str, Any]
    models: dict[str, Any]
    metrics: tuple[str, ...]
    attacks: tuple[str, ...]
    default_methods: tuple[str, ...]
    tiers: dict[str, TierSpec]
    raw: dict[str, Any]
    path: Path
    # Set when loaded through a user overlay card (``extends:``): its path, hash and the methods it budgets.
    # The table identity (``config_hash``) stays the extended card's, so baselines stay comparable.
    overlay: dict[str, Any] | None = None

    @property
    def default_target(self) -> Any:
        """The card's forget target: ``forget_class`` (class track) or ``forget_concept`` (text track)."""
        return self.raw.get("forget_concept", self.forget_class)

    @property
    def config_hash(self) -> str:
        return hashlib.sha256(json.dumps(self.raw, sort_keys=True, default=str).encode()).hexdigest()[:16]

    def tier(self, name: str) -> TierSpec:
        if name not in self.tiers:
            raise UnlearnbenchError(f"scenario {self.name!r} has no tier {name!r} (tiers: {', '.join(self.tiers)})")
        return self.tiers[name]

    def attack_config(self, tier: str, attack: str) -> dict[str, Any]:
        return dict(self.tier(tier).attacks.get(attack, {}))

    def method_config(self, tier: str, method: str) -> dict[str, Any]:
        """The card's overrides for ``method`` at ``tier`` (``erasediff-fixed`` inherits ``erasediff``'s)."""
        per_tier = self.tier(tier).methods
        base = method.split("-")[0]
        merged = dict(per_tier.get(base, {})) if base != method else {}
        merged.update(per_tier.get(method, {}))
        return merged


_REQUIRED = ("name", "version", "track", "models", "tiers")
_REQUIRED_BY_TRACK = {"class": ("num_classes", "forget_class"), "text": ("forget_concept",)}


def load_card(path: str | Path) -> Scenario:
    path = Path(path)
    try:
        raw = yaml.safe_load(path.read_text())
    except OSError as exc:
        raise UnlearnbenchError(f"cannot read scenario card {path}: {exc}") from exc
    except yaml.YAMLError as exc:
        raise UnlearnbenchError(f"cannot read scenario card {path}: {_yaml_problem(exc)}") from exc
    if not isinstance(raw, dict):
        raise UnlearnbenchError(f"scenario card {path} must be a mapping")
    if "extends" in raw:
        return _load_overlay(raw, path)
    missing = [k for k in _REQUIRED + _REQUIRED_BY_TRACK.get(raw.get("track"), ()) if k not in raw]
    if missing:
        raise UnlearnbenchError(f"scenario card {path} lacks {', '.join(missing)}")
    card = _CardFields(path)
    name, track = card.string(raw["name"], "name"), card.string(raw["track"], "track")
    version = card.integer(raw["version"], "version")
    models = card.mapping(raw["models"], "models")
    _check_hashes(models, path)
    sampling = card.mapping(raw.get("sampling", {}), "sampling", null_ok=True) or {}
    guidance = float(card.number(sampling.get("guidance", 2.0), "sampling.guidance"))
    num_classes = card.integer(raw.get("num_classes", 0), "num_classes")
    forget_class = card.integer(raw["forget_class"], "forget_class") if raw.get("forget_class") is not None else None
    tiers = {}
    for tname, t in card.mapping(raw["tiers"], "tiers").items():
        if tname not in TIERS:
            raise UnlearnbenchError(f"scenario card {path}: unknown tier {tname!r} (use {', '.join(TIERS)})")
        tiers[tname] = card.tier(tname, t)
    return Scenario(
        name=name, version=version, track=track, description=raw.get("description", ""),
        num_classes=num_classes, forget_class=forget_class, guidance=guidance,
        data=dict(card.mapping(raw.get("data", {}), "data", null_ok=True) or {}), models=dict(models),
        metrics=card.names(raw.get("metrics", ("classifier", "fidelity")), "metrics"),
        attacks=card.names(raw.get("attacks") or (), "attacks"),
        default_methods=card.names(raw.get("default_methods", ()), "default_methods"), tiers=tiers, raw=raw, path=path,
    )


_OVERLAY_KEYS = ("extends", "description", "default_methods", "tiers")


def _load_overlay(raw: dict[str, Any], path: Path) -> Scenario:
    """A user card that extends a registered (or another file's) card with method budgets only.

    It may set ``default_methods`` and ``tiers.<tier>.methods`` (budgets of new or existing methods);
    anything that changes the scenario itself (data, models, sampling, metrics, attacks, sample counts)
    needs a copied card with its own name and version. The result keeps the extended card's ``raw`` and
    so its config hash: records of baselines computed on it stay in the same table."""
    import dataclasses

    card = _CardFields(path)
    extra = sorted(set(raw) - set(_OVERLAY_KEYS))
    if extra:
        raise UnlearnbenchError(f"scenario card {path}: an overlay (extends:) may only set {', '.join(_OVERLAY_KEYS)}; "
                                f"{', '.join(extra)} change the scenario itself — copy the card under a new name instead")
    parent = card.string(raw["extends"], "extends")
    parent_path = path.parent / parent if parent.endswith((".yaml", ".yml")) else None
    base = load_scenario(str(parent_path) if parent_path is not None else parent)
    if base.overlay is not None:
        raise UnlearnbenchError(f"scenario card {path}: extends another overlay ({parent}); extend the card it extends")
    tiers = dict(base.tiers)
    budgeted: set[str] = set()
    for tname, block in (card.mapping(raw.get("tiers"), "tiers", null_ok=True) or {}).items():
        if tname not in base.tiers:
            raise UnlearnbenchError(f"scenario card {path}: tier {tname!r} is not a tier of {base.name} "
                                    f"({', '.join(base.tiers)})")
        block = card.mapping(block, f"tiers.{tname}") or {}
        stray = sorted(set(block) - {"methods"})
        if stray:
            raise UnlearnbenchError(f"scenario card {path}: an overlay's tiers.{tname} may only set methods, not "
                                    f"{', '.join(stray)}")
        entries = card.mapping(block.get("methods"), f"tiers.{tname}.methods", null_ok=True) or {}
        methods = {k: dict(card.mapping(v, f"tiers.{tname}.methods.{k}", null_ok=True) or {}) for k, v in entries.items()}
        budgeted |= set(methods)
        tiers[tname] = dataclasses.replace(base.tiers[tname], methods={**base.tiers[tname].methods, **methods})
    default_methods = (card.names(raw["default_methods"], "default_methods") if "default_methods" in raw
                       else base.default_methods)
    digest = hashlib.sha256(json.dumps(raw, sort_keys=True, default=str).encode()).hexdigest()[:16]
    overlay = {"path": str(path), "extends": base.name, "sha256": digest, "methods": sorted(budgeted)}
    return dataclasses.replace(base, tiers=tiers, default_methods=default_methods, overlay=overlay,
                               description=raw.get("description", base.description))


def _yaml_problem(exc: yaml.YAMLError) -> str:
    """A YAML error on one line: the problem and where (PyYAML's own message spans several)."""
    mark = getattr(exc, "problem_mark", None)
    problem = getattr(exc, "problem", None) or str(exc)
    where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
    return " ".join(f"{problem}{where}".split())


class _CardFields:
    """Type checks of the card fields ``load_card`` reads, each failing with a one-line UnlearnbenchError
    ``scenario card PATH: WHERE must be WHAT, got VALUE`` (strings that spell a number are read as one)."""

    def __init__(self, path: Path):
        self.owner = f"scenario card {path}"

    def _fail(self, where: str, expected: str, value: Any) -> UnlearnbenchError:
        shown = repr(value).replace("\n", " ")
        shown = shown if len(shown) <= 80 else shown[:77] + "..."
        return UnlearnbenchError(f"{self.owner}: {where} must be {expected}, got {shown}")

    def integer(self, value: Any, where: str) -> int:
        return int(coerce_field(self.owner, where, value, int))

    def number(self, value: Any, where: str) -> float:
        return coerce_field(self.owner, where, value, float, expected="a number")

    def string(self, value: Any, where: str) -> str:
        if not isinstance(value, str):
            raise self._fail(where, "a string", value)
        return value

    def mapping(self, value: Any, where: str, null_ok: bool = False) -> dict[Any, Any] | None:
        if value is None and null_ok:
            return None
        if not isinstance(value, dict):
            raise self._fail(where, "a mapping", value)
        return value

    def names(self, value: Any, where: str) -> tuple[str, ...]:
        if value is None:
            return ()
        if not isinstance(value, (list, tuple)):
            raise self._fail(where, "a list of names", value)
        for i, item in enumerate(value):
            if not isinstance(item, str):
                raise self._fail(f"{where}[{i}]", "a name (a string)", item)
        return tuple(value)

    def tier(self, name: str, block: Any) -> TierSpec:
        where = f"tiers.{name}"
        block = self.mapping(block, where)
        lacking = [k for k in ("samples_per_class", "ddim_steps") if k not in block]
        if lacking:
            raise UnlearnbenchError(f"{self.owner}: {where} lacks {', '.join(lacking)}")
        subs = {}
        for key in ("methods", "attacks"):
            entries = self.mapping(block.get(key), f"{where}.{key}", null_ok=True) or {}
            subs[key] = {k: dict(self.mapping(v, f"{where}.{key}.{k}", null_ok=True) or {}) for k, v in entries.items()}
        budget = self.mapping(block.get("attack_budget"), f"{where}.attack_budget", null_ok=True) or {}
        return TierSpec(name, self.integer(block["samples_per_class"], f"{where}.samples_per_class"),
                        self.integer(block["ddim_steps"], f"{where}.ddim_steps"), subs["methods"], subs["attacks"],
                        dict(budget))


_SHA256 = re.compile(r"^[0-9a-f]{64}$")


def _check_hashes(models: Any, path: Path, where: str = "models") -> None:
    """Every ``sha256`` in the card must be a quoted 64-hex string (or null): YAML would read an
    all-digit hash as a number and the check would silently vanish."""
    if not isinstance(models, dict):
        return
    for key, value in models.items():
        if key == "sha256":
            if value is not None and not (isinstance(value, str) and _SHA256.match(value)):
                raise UnlearnbenchError(f"scenario card {path}: {where}.sha256 must be 64 lowercase hex characters "
                                        f"in quotes, got {value!r}")
        else:
            _check_hashes(value, path, f"{where}.{key}")


def load_scenario(name_or_path: str) -> Scenario:
    """A registered scenario name, or a path to a YAML card."""
    from benchmark.registry import SCENARIOS

    if name_or_path.endswith((".yaml", ".yml")) or Path(name_or_path).is_file():
        return load_card(name_or_path)
    return load_card(SCENARIOS.get(name_or_path))
