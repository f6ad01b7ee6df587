"""One generic registry for every pluggable kind (methods, attacks, metrics, judges, scenarios).

Built-ins are lazy ``"module:attr"`` strings, so listing names never imports torch. Out-of-tree
plug-ins declare entry points in the group ``unlearnbench.<kind>`` and show up without a fork.
Unknown names fail with the nearest registered names suggested (did-you-mean).
"""

from __future__ import annotations

import difflib
import importlib
import re
from collections.abc import Callable, Iterator
from importlib import metadata
from typing import Generic, TypeVar

from benchmark import UnlearnbenchError

T = TypeVar("T")

_NAME = re.compile(r"^[a-z][a-z0-9_\-]*$")


class RegistryError(UnlearnbenchError):
    """Unknown, malformed or invalid registry entry."""


class Registry(Generic[T]):
    """Maps names to objects of one kind, loaded on first use.

    Args:
        kind: plural noun shown in messages ("methods").
        entry_point_group: importlib.metadata group scanned for plug-ins.
        validate: called on every loaded object; raises ``TypeError`` with a reason if it is not a T.
    """

    def __init__(self, kind: str, entry_point_group: str, validate: Callable[[object], None] | None = None):
        self.kind = kind
        self.entry_point_group = entry_point_group
        self._validate = validate
        self._targets: dict[str, str | T] = {}
        self._origins: dict[str, str] = {}
        self._loaded: dict[str, T] = {}
        self._entry_points_scanned = False

    def register(self, name: str, target: str | T, *, origin: str = "built-in", overwrite: bool = False) -> None:
        """Register ``target`` (an object, or a lazy ``"module:attr"`` string) under ``name``."""
        if not _NAME.match(name):
            raise RegistryError(f"invalid {self.kind[:-1]} name {name!r}: use lowercase letters, digits, '-' or '_'")
        if isinstance(target, str) and ":" not in target:
            raise RegistryError(f"lazy target for {name!r} must look like 'package.module:attr', got {target!r}")
        if name in self._targets and not overwrite:
            raise RegistryError(f"{self.kind[:-1]} {name!r} is already registered (from {self._origins[name]})")
        self._targets[name] = target
        self._origins[name] = origin
        self._loaded.pop(name, None)

    def _scan_entry_points(self) -> None:
        if self._entry_points_scanned:
            return
        self._entry_points_scanned = True
        for ep in metadata.entry_points(group=self.entry_point_group):
            if ep.name in self._targets:
                continue  # built-ins win; a plug-in cannot shadow them silently
            dist = getattr(ep, "dist", None)
            origin = f"entry point {ep.value}" + (f" ({dist.name})" if dist is not None else "")
            self.register(ep.name, ep.value, origin=origin)

    def names(self) -> list[str]:
        self._scan_entry_points()
        return sorted(self._targets)

    def origin(self, name: str) -> str:
        self._scan_entry_points()
        return self._origins[self._check_known(name)]

    def __contains__(self, name: object) -> bool:
        self._scan_entry_points()
        return name in self._targets

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def _check_known(self, name: str) -> str:
        if name not in self._targets:
            close = difflib.get_close_matches(name, list(self._targets), n=3, cutoff=0.5)
            hint = f"; did you mean {', '.join(repr(c) for c in close)}?" if close else ""
            known = ", ".join(sorted(self._targets)) or "none"
            raise RegistryError(f"unknown {self.kind[:-1]} {name!r}{hint} (known: {known})")
        return name

    def get(self, name: str) -> T:
        """Return the object registered as ``name``, importing it on first use."""
        self._scan_entry_points()
        self._check_known(name)
        if name not in self._loaded:
            target = self._targets[name]
            obj = load_object(target) if isinstance(target, str) else target
            if self._validate is not None:
                try:
                    self._validate(obj)
                except TypeError as exc:
                    raise RegistryError(f"{self.kind[:-1]} {name!r} ({self._origins[name]}) is invalid: {exc}") from exc
            self._loaded[name] = obj
        return self._loaded[name]


def load_object(spec: str) -> object:
    """Import ``"package.module:attr"`` (attr may be dotted) and return the attribute."""
    module_name, _, attr = spec.partition(":")
    try:
        obj: object = importlib.import_module(module_name)
    except ImportError as exc:
        raise RegistryError(f"cannot import {module_name!r} for {spec!r}: {exc}") from exc
    for part in attr.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError as exc:
            raise RegistryError(f"{module_name!r} has no attribute {attr!r}") from exc
    return obj


def _is_subclass_of(base_path: str) -> Callable[[object], None]:
    def check(obj: object) -> None:
        base = load_object(base_path)
        if not (isinstance(obj, type) and issubclass(obj, base)):  # type: ignore[arg-type]
            raise TypeError(f"expected a subclass of {base_path}, got {obj!r}")

    return check


METHODS: Registry[type] = Registry("methods", "unlearnbench.methods", _is_subclass_of("benchmark.api:UnlearningMethod"))
ATTACKS: Registry[type] = Registry("attacks", "unlearnbench.attacks", _is_subclass_of("benchmark.api:Attack"))
METRICS: Registry[type] = Registry("metrics", "unlearnbench.metrics", _is_subclass_of("benchmark.api:Metric"))
JUDGES: Registry[type] = Registry("judges", "unlearnbench.judges", _is_subclass_of("benchmark.api:Judge"))
SCENARIOS: Registry[str] = Registry("scenarios", "unlearnbench.scenarios")

for _name, _target in {
    "original": "methods.original:Original",
    "retrain": "methods.retrain:Retrain",
    "finetune": "methods.finetune:Finetune",
    "neggrad": "methods.neggrad:NegGrad",
    "blindspot": "methods.blindspot:BlindSpot",
    "selective_amnesia": "methods.selective_amnesia:SelectiveAmnesia",
    "salun": "methods.salun:SalUn",
    "erasediff": "methods.erasediff:EraseDiff",
    "erasediff-fixed": "methods.erasediff:EraseDiffFixed",
    "erasediff-remap": "methods.erasediff:EraseDiffRemap",
    "esd-u": "methods.esd:ESD",
    "esd-x": "methods.esd:ESDX",
    "uce": "methods.uce:UCE",
}.items():
    METHODS.register(_name, _target)

for _name, _target in {
    "classifier": "benchmark.metrics.classifier:ClassifierMetrics",
    "fidelity": "benchmark.metrics.fid:FidelityMetrics",
    "concept": "benchmark.metrics.concept:ConceptMetrics",
    "clip_score": "benchmark.metrics.clip_score:CLIPScoreMetrics",
    "prompt_concept": "benchmark.metrics.prompt_concept:PromptConceptMetrics",
    "clip_score_file": "benchmark.metrics.instruments:CLIPScoreFromFile",
    "inception_fid": "benchmark.metrics.instruments:InceptionFIDToOriginal",
}.items():
    METRICS.register(_name, _target)

for _name, _target in {
    "loss_threshold": "attacks.mia.loss_threshold:LossThreshold",
    "secmi": "attacks.mia.secmi:SecMI",
    "pia": "attacks.mia.pia:PIA",
    "class_inversion": "attacks.inversion.class_embedding:ClassEmbeddingInversion",
    "relearning": "attacks.inversion.relearning:Relearning",
    "concept_asr": "attacks.concept.asr:ConceptASR",
    "unlearndiffatk": "attacks.concept.unlearndiffatk:UnlearnDiffAtk",
    "concept_inversion": "attacks.concept.concept_inversion:ConceptInversion",
    "ring_a_bell": "attacks.concept.ring_a_bell:RingABell",
    "p4d": "attacks.concept.p4d:P4D",
    "context_probe": "attacks.concept.probes:VisualContextProbe",
    "noise_probe": "attacks.concept.probes:NoiseTrajectoryProbe",
}.items():
    ATTACKS.register(_name, _target)

JUDGES.register("classifier", "benchmark.judges:ClassifierJudge")
SCENARIOS.register("mnist-class", "benchmark.scenarios:MNIST_CLASS")
SCENARIOS.register("mnist-text-object", "benchmark.scenarios:MNIST_TEXT_OBJECT")
SCENARIOS.register("mnist-text-style", "benchmark.scenarios:MNIST_TEXT_STYLE")
SCENARIOS.register("sd-nudity", "benchmark.scenarios:SD_NUDITY")
SCENARIOS.register("sd-object", "benchmark.scenarios:SD_OBJECT")
SCENARIOS.register("sd-style", "benchmark.scenarios:SD_STYLE")
