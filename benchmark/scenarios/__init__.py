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

CARDS_DIR = Path(__file__).resolve().parent
TIERS = ("smoke", "quick", "full")
MNIST_CLASS = CARDS_DIR / "mnist-class.yaml"
MNIST_TEXT_OBJECT = CARDS_DIR / "mnist-text-object.yaml"
MNIST_TEXT_STYLE = CARDS_DIR / "mnist-text-style.yaml"


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
    except (OSError, yaml.YAMLError) as exc:
        raise UnlearnbenchError(f"cannot read scenario card {path}: {exc}") from exc
    if not isinstance(raw, dict):
        raise UnlearnbenchError(f"scenario card {path} must be a mapping")
    missing = [k for k in _REQUIRED + _REQUIRED_BY_TRACK.get(raw.get("track"), ()) if k not in raw]
    if missing:
        raise UnlearnbenchError(f"scenario card {path} lacks {', '.join(missing)}")
    _check_hashes(raw["models"], path)
    tiers = {}
    for tname, t in raw["tiers"].items():
        if tname not in TIERS:
            raise UnlearnbenchError(f"scenario card {path}: unknown tier {tname!r} (use {', '.join(TIERS)})")
        tiers[tname] = TierSpec(tname, int(t["samples_per_class"]), int(t["ddim_steps"]), dict(t.get("methods") or {}),
                                dict(t.get("attacks") or {}), dict(t.get("attack_budget") or {}))
    return Scenario(
        name=raw["name"], version=int(raw["version"]), track=raw["track"], description=raw.get("description", ""),
        num_classes=int(raw.get("num_classes", 0)),
        forget_class=int(raw["forget_class"]) if raw.get("forget_class") is not None else None,
        guidance=float(raw.get("sampling", {}).get("guidance", 2.0)), data=dict(raw.get("data", {})),
        models=dict(raw["models"]), metrics=tuple(raw.get("metrics", ("classifier", "fidelity"))),
        attacks=tuple(raw.get("attacks") or ()),
        default_methods=tuple(raw.get("default_methods", ())), tiers=tiers, raw=raw, path=path,
    )


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
