"""Contracts every plug-in meets: DiffusionModel, UnlearningMethod, Attack, Metric, Judge.

A method, metric or attack only ever sees these types, so a new model family (a text-conditioned
UNet, Stable Diffusion) plugs in by writing one more ``DiffusionModel`` wrapper.
"""

from __future__ import annotations

import abc
import dataclasses
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Literal

import torch
from torch import Tensor, nn

ParamSubset = Literal["all", "xattn", "noxattn"]
Track = Literal["class", "text"]
ProgressFn = Callable[[int, int, dict[str, float]], None]
"""progress(step, total, stats): called by long loops; stats are scalars for the progress bar."""


@dataclass(frozen=True)
class LabeledImages:
    """Images in [-1, 1] (N×C×H×W float) with integer labels (N, long).

    On the class track ``y`` are class ids and the conditions. On the text track ``prompts`` is a caption
    vocabulary and ``y`` indexes it: ``conditions`` gives what ``DiffusionModel.encode`` takes either way,
    so a method writes ``model.encode(batch.conditions)`` once for both tracks.
    """

    x: Tensor
    y: Tensor
    prompts: tuple[str, ...] | None = None

    def __post_init__(self) -> None:
        if self.x.ndim != 4 or self.y.ndim != 1 or len(self.x) != len(self.y):
            raise ValueError(f"LabeledImages wants x N×C×H×W and y N, got {tuple(self.x.shape)} and {tuple(self.y.shape)}")

    def __len__(self) -> int:
        return len(self.y)

    @property
    def conditions(self) -> Tensor | list[str]:
        """The conditions to encode: class ids, or the caption of each image."""
        if self.prompts is None:
            return self.y
        return [self.prompts[int(i)] for i in self.y]

    def where(self, mask: Tensor) -> LabeledImages:
        return LabeledImages(self.x[mask], self.y[mask], self.prompts)

    def take(self, index: Tensor) -> LabeledImages:
        return LabeledImages(self.x[index], self.y[index], self.prompts)

    def to(self, device: str | torch.device) -> LabeledImages:
        return LabeledImages(self.x.to(device), self.y.to(device), self.prompts)


class DiffusionModel(abc.ABC):
    """What every method, metric and attack sees: a thin wrapper over diffusers components.

    ``cond`` below is whatever ``encode`` returns (class embeddings for a class-conditional UNet,
    text-encoder states for a text-conditioned one); it is differentiable, so attacks can optimise it.
    """

    capabilities: frozenset[str] = frozenset()
    num_train_timesteps: int = 1000

    @abc.abstractmethod
    def encode(self, conditions: Any) -> Tensor:
        """Class ids or prompts → conditioning tensor."""

    @abc.abstractmethod
    def null_condition(self, n: int) -> Tensor:
        """Conditioning of the unconditional branch (classifier-free guidance), repeated n times."""

    @abc.abstractmethod
    def eps(self, x_t: Tensor, t: Tensor, cond: Tensor) -> Tensor:
        """Noise prediction ε_θ(x_t, t, cond), differentiable, float32 output."""

    @abc.abstractmethod
    def add_noise(self, x0: Tensor, noise: Tensor, t: Tensor) -> Tensor:
        """x_t = √ᾱ_t x0 + √(1−ᾱ_t) noise."""

    @abc.abstractmethod
    def alphas_cumprod(self) -> Tensor:
        """ᾱ_t for t = 0..T−1 (float32, on the model's device)."""

    def encode_images(self, x: Tensor) -> Tensor:
        """Model space ↔ image space; identity for pixel-space models (images in [-1, 1] → model space)."""
        return x

    def decode_latents(self, z: Tensor) -> Tensor:
        """Model space ↔ image space; identity for pixel-space models (model space → images in [-1, 1])."""
        return z

    def loss(
        self,
        x0: Tensor,
        cond: Tensor,
        t: Tensor | None = None,
        noise: Tensor | None = None,
        generator: torch.Generator | None = None,
    ) -> Tensor:
        """Per-sample denoising loss ‖ε − ε_θ(x_t, t, cond)‖² (mean over pixels), shape (N,)."""
        n = x0.shape[0]
        if t is None:
            t = torch.randint(0, self.num_train_timesteps, (n,), generator=generator, device="cpu").to(x0.device)
        if noise is None:
            noise = torch.randn(x0.shape, generator=generator, device="cpu").to(x0.device)
        pred = self.eps(self.add_noise(x0, noise, t), t, cond)
        return (pred - noise).pow(2).flatten(1).mean(1)

    @abc.abstractmethod
    def sample(self, conditions: Any, seed: int, steps: int, guidance: float, batch_size: int = 256) -> Tensor:
        """Deterministic (seeded) samples in [-1, 1] for each condition, with classifier-free guidance. A wrapper
        may also take ``noise=`` (the N × C × H × W starting noise instead of the seed's, as the shipped ones
        do); the concept attacks then judge many prompts, each from its own seed, in one call."""

    @abc.abstractmethod
    def parameters(self, subset: ParamSubset = "all") -> list[nn.Parameter]:
        """Trainable parameters; ``xattn`` selects the cross-attention weights, ``noxattn`` the rest but the
        time embedding and the output layer (the released ESD / EraseDiff "noxattn")."""

    @abc.abstractmethod
    def modules(self) -> dict[str, nn.Module]:
        """The torch modules that make up the model (for train()/eval(), state dicts, EMA)."""

    @abc.abstractmethod
    def clone(self) -> DiffusionModel:
        """A deep copy that shares nothing with this model."""

    @abc.abstractmethod
    def fresh(self, seed: int = 0) -> DiffusionModel:
        """Same architecture and noise schedule, freshly initialised weights (for oracles and proxies)."""

    @abc.abstractmethod
    def to(self, device: str | torch.device) -> DiffusionModel: ...

    @property
    @abc.abstractmethod
    def device(self) -> torch.device: ...

    @abc.abstractmethod
    def save_pretrained(self, path: str | Path) -> None:
        """Save in diffusers format (config + safetensors)."""

    def fingerprint(self) -> str:
        """sha256 over every weight (sorted names, float32 bytes): two models with equal weights agree."""
        from benchmark.models.fingerprint import fingerprint_modules

        return fingerprint_modules(self.modules())

    def train(self, mode: bool = True) -> DiffusionModel:
        for m in self.modules().values():
            m.train(mode)
        return self

    def eval(self) -> DiffusionModel:
        return self.train(False)

    def requires_grad_(self, flag: bool) -> DiffusionModel:
        for m in self.modules().values():
            m.requires_grad_(flag)
        return self


@dataclass
class UnlearnRequest:
    """Everything an unlearning method is given.

    ``forget_target`` is the class id to forget on the class track (prompts on the text track);
    ``remap_targets`` the conditions a method may remap it to (the other classes, or remap prompts).
    ``max_steps`` caps the method's optimiser steps whatever its config says.
    """

    forget: LabeledImages
    retain: LabeledImages
    forget_target: int | Sequence[str]
    remap_targets: Sequence[int] | Sequence[str]
    num_classes: int
    seed: int = 0
    device: str = "cpu"
    max_steps: int | None = None
    progress: ProgressFn | None = None
    scenario: str = ""  # registered name or path of the scenario card
    # Text track: the concept's position among the values of its axis (remap_targets are the others, in
    # order), so "the next value" is remap_targets[forget_position % len(remap_targets)]. None on the class
    # track, where forget_target is the class id itself.
    forget_position: int | None = None


@dataclass
class UnlearnOutcome:
    """What a method returns: the unlearned model plus what it cost and what it logged."""

    model: DiffusionModel
    steps: int = 0
    stats: dict[str, Any] = field(default_factory=dict)


class Configurable:
    """A ``Config`` dataclass of defaults (the paper's), overridable per instance and from scenario cards."""

    @dataclass
    class Config:
        pass

    def __init__(self, config: Any | None = None, **overrides: Any):
        base = config if config is not None else self.Config()
        self.config = dataclasses.replace(base, **overrides) if overrides else base

    @classmethod
    def make_config(cls, values: dict[str, Any] | None = None) -> Any:
        """Build a Config from a mapping, checking each value against the field's annotation.

        Unknown keys (with the known ones listed) and wrong types raise ``benchmark.typed_config.ConfigError``
        (a ``ValueError``) with one line; strings are converted (``"1e-5"`` for a float), other valid values
        are kept as given.
        """
        from benchmark.typed_config import coerce_config

        owner = f"{getattr(cls, 'name', '') or cls.__name__} config"
        return cls.Config(**coerce_config(owner, cls.Config, values))


class UnlearningMethod(Configurable, abc.ABC):
    """Base of every unlearning method adapter.

    Subclasses define a ``Config`` dataclass whose defaults are the paper's, a ``paper`` citation and
    ``supports`` (tracks). ``unlearn`` must not mutate its input model and must be deterministic under
    ``request.seed``.
    """

    name: ClassVar[str] = ""
    paper: ClassVar[str] = ""
    supports: ClassVar[frozenset[str]] = frozenset({"class"})
    # Per-tier budgets an out-of-tree adapter declares for itself, e.g. {"smoke": {"steps": 4,
    # "batch_size": 32}, "quick": {"steps": 100}}; a scenario card's own entry for the method wins.
    tier_budgets: ClassVar[dict[str, dict[str, Any]]] = {}
    # What the shipped suites (``pytest --pyargs benchmark.suites``) check at each tier beyond the contract,
    # e.g. {"quick": {"forget_accuracy": "<= 0.5 * original", "fid": "<= 1.5 * original"}}: the mean over
    # seeds compared with a number or with a baseline's mean (benchmark.pytest_plugin.check_expectation).
    expectations: ClassVar[dict[str, dict[str, str]]] = {}


    def check_track(self, track: str) -> None:
        if track not in self.supports:
            raise ValueError(f"method {self.name or type(self).__name__!r} does not support the {track} track "
                             f"(supports: {', '.join(sorted(self.supports))})")

    @abc.abstractmethod
    def unlearn(self, model: DiffusionModel, request: UnlearnRequest) -> UnlearnOutcome: ...


@dataclass
class MetricValue:
    """One reported number: what it is, how many items it is over, and its 95% CI where it has one."""

    name: str
    value: float
    n: int
    higher_is_better: bool | None
    ci: tuple[float, float] | None = None
    protocol: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["ci"] = list(self.ci) if self.ci is not None else None
        return d


@dataclass(frozen=True)
class MetricSpec:
    """Declared by a Metric for each value it produces, so tables never guess direction."""

    key: str
    label: str
    higher_is_better: bool | None
    aggregation: str = "mean"


class Judge(abc.ABC):
    """A pinned classifier or detector; its weights' sha256 goes into every result."""

    name: ClassVar[str] = ""

    @property
    @abc.abstractmethod
    def sha256(self) -> str: ...

    @abc.abstractmethod
    def predict_proba(self, x: Tensor) -> Tensor:
        """Class probabilities for images in [-1, 1]."""


@dataclass
class EvalContext:
    """What metrics see: the samples drawn from the model under test plus the scenario's references."""

    scenario: Any
    tier: str
    samples: LabeledImages
    forget_class: int
    judge: Judge
    reference: LabeledImages
    members: LabeledImages | None = None
    device: str = "cpu"
    cache_dir: Path | None = None
    # Set by scenarios whose conditions are not class ids (the text track); None = derived from forget_class.
    retain_mask: Tensor | None = None  # which samples were drawn for retained conditions
    reference_retained: LabeledImages | None = None  # real held-out images of the retained conditions
    members_retained: LabeledImages | None = None  # real member images of the retained conditions
    extra: dict[str, Any] = field(default_factory=dict)  # scenario-specific (prompts, concept, groups)
    # The original model's samples for the same sample plan drawn with another seed (FID-to-original).
    original_samples: LabeledImages | None = None

    def retained_samples(self) -> Tensor:
        mask = self.retain_mask if self.retain_mask is not None else self.samples.y != self.forget_class
        return self.samples.x[mask]

    def retained_original(self) -> Tensor | None:
        if self.original_samples is None:
            return None
        mask = self.retain_mask if self.retain_mask is not None else self.original_samples.y != self.forget_class
        return self.original_samples.x[mask]

    def retained_reference(self) -> LabeledImages:
        if self.reference_retained is not None:
            return self.reference_retained
        return self.reference.where(self.reference.y != self.forget_class)

    def retained_members(self) -> LabeledImages | None:
        if self.members_retained is not None:
            return self.members_retained
        return None if self.members is None else self.members.where(self.members.y != self.forget_class)


class Metric(abc.ABC):
    """A family of values computed from one EvalContext (e.g. FID + KID from one feature pass)."""

    provides: ClassVar[tuple[MetricSpec, ...]] = ()
    # True: the runner draws the original model's samples of the same plan (another seed) into
    # ``ctx.original_samples`` once per run, for metrics measured against the model before unlearning.
    needs_original_samples: ClassVar[bool] = False

    @abc.abstractmethod
    def compute(self, ctx: EvalContext) -> list[MetricValue]: ...


@dataclass
class AttackBudget:
    """Caps for one attack on one model: UNet image passes (forward / backward) and wall-clock seconds.

    ``None`` means no cap. Each model an attack touches (the model under test, and each reference it
    has to score) gets its own ``start()``-ed clock, so a reference is never computed on what another
    model left over. Image caps count through the active ``benchmark.cost`` meter (the runner and the
    conformance checks always measure); outside one only the wall clock is enforced. Attacks check
    ``exhausted()`` between units of work (a batch, an optimiser step) and stop cleanly.
    """

    max_forward_images: int | None = None
    max_backward_images: int | None = None
    max_seconds: float | None = None

    def start(self) -> BudgetClock:
        from benchmark import cost

        return BudgetClock(self, cost.active())


class BudgetClock:
    """A running budget: the time and image passes spent since ``AttackBudget.start()``."""

    def __init__(self, budget: AttackBudget, meter: Any):
        import time

        self.budget, self.meter, self.started = budget, meter, time.time()
        self._fwd0 = meter.forward_images if meter is not None else 0
        self._bwd0 = meter.backward_images if meter is not None else 0

    def exhausted(self) -> str:
        """'' if within budget, else which cap was hit."""
        import time

        b, m = self.budget, self.meter
        if m is not None and b.max_forward_images is not None and m.forward_images - self._fwd0 >= b.max_forward_images:
            return f"forward-pass budget ({b.max_forward_images} images)"
        if m is not None and b.max_backward_images is not None and m.backward_images - self._bwd0 >= b.max_backward_images:
            return f"backward-pass budget ({b.max_backward_images} images)"
        if b.max_seconds is not None and time.time() - self.started >= b.max_seconds:
            return f"wall-clock cap ({b.max_seconds:g} s)"
        return ""


# The words of the ``concept_needs_digit`` judge rule, as records and metric protocols state it.
JUDGE_RULE_NEEDS_DIGIT = "the concept counts only on samples the judge's digit head accepts as a digit"


@dataclass
class AttackContext:
    """What an attack sees: the scenario's data and references, its judge, budget and seed.

    ``reference_models`` maps "original" / "oracle" to models (the oracle may be absent);
    ``cache`` is shared by all attacks of a run, so reference scores are computed once per fingerprint;
    with ``cache_dir`` set they are also kept on disk for later runs and audits.
    """

    scenario: Any
    tier: str
    forget_class: int
    members: LabeledImages
    heldout: LabeledImages
    judge: Judge
    reference_models: dict[str, DiffusionModel]
    config: dict[str, Any] = field(default_factory=dict)
    budget: AttackBudget = field(default_factory=AttackBudget)
    seed: int = 0
    device: str = "cpu"
    guidance: float = 2.0
    sample_steps: int = 25
    cache: dict[Any, Any] = field(default_factory=dict)
    # The run's cache folder ($UNLEARNBENCH_CACHE): finished attack results are also kept on disk there,
    # keyed by weights, config and code (``attacks.result_cache``); None = in memory only.
    cache_dir: Path | None = None
    # Set by scenarios whose conditions are not class ids (the text track); None = derived from forget_class.
    forget_members_mask: Tensor | None = None  # which members show the forgotten concept
    forget_heldout_mask: Tensor | None = None
    forget_prompts: tuple[str, ...] | None = None  # prompts that ask for the concept (sampled in turn)
    judge_head: str | None = None  # the judge head that names the concept, and its index there
    forget_name: str = ""
    # Judge rule (opt-in, a scenario card's ``judging.concept_needs_digit``): the concept counts only on an image
    # the judge's digit head accepts as a digit, so a blank or black sample is not read as a colour.
    concept_needs_digit: bool = False

    def forget_mask(self, split: str) -> Tensor:
        """Boolean mask of the ``members`` or ``heldout`` images that show the forgotten concept."""
        data, mask = ((self.members, self.forget_members_mask) if split == "members"
                      else (self.heldout, self.forget_heldout_mask))
        return mask if mask is not None else data.y == self.forget_class

    def forget_conditions(self, n: int) -> Any:
        """``n`` conditions that ask for the forgotten concept (class ids, or prompts in turn)."""
        if self.forget_prompts is None:
            return torch.full((n,), self.forget_class, dtype=torch.long)
        return [self.forget_prompts[i % len(self.forget_prompts)] for i in range(n)]

    @property
    def judge_rule(self) -> str:
        """The judge rule in words, for the record ('' = the concept head alone)."""
        return JUDGE_RULE_NEEDS_DIGIT if self._reject_class() is not None else ""

    def _reject_class(self) -> int | None:
        """The judge's "not a digit" output when ``concept_needs_digit`` applies, else None."""
        if not self.concept_needs_digit or self.judge_head is None:
            return None
        return getattr(self.judge, "reject_class", None)

    def shows_concept(self, x: Tensor) -> Tensor:
        """1.0 for each image the judge reads as the forgotten concept, else 0.0 (with ``concept_needs_digit``,
        also 0.0 where the digit head says "not a digit")."""
        if self.judge_head is None:
            return (self.judge.predict_proba(x).argmax(1) == self.forget_class).float()
        heads = self.judge.predict_heads(x)  # type: ignore[attr-defined]
        shows = heads[self.judge_head] == self.forget_class
        reject = self._reject_class()
        if reject is not None:
            shows &= heads["digit"] != reject
        return shows.float()

    def concept_probability(self, x: Tensor) -> Tensor:
        """The judge's probability of the forgotten concept per image, on the concept's head (times the
        probability of "a digit" under ``concept_needs_digit``): the soft score attacks select and plot by."""
        if self.judge_head is None:
            return self.judge.predict_proba(x)[:, self.forget_class]
        p = self.judge.predict_proba(x, head=self.judge_head)[:, self.forget_class]  # type: ignore[call-arg]
        reject = self._reject_class()
        if reject is not None:
            p = p * (1 - self.judge.predict_proba(x, head="digit")[:, reject])  # type: ignore[call-arg]
        return p

    @property
    def concept_name(self) -> str:
        return self.forget_name or f"class {self.forget_class}"


HEADLINE = "headline"  # MetricValue.extra flag: this value is one of its attack's headline values


def headline_keys(values: dict[str, Any]) -> list[str]:
    """The headline values of one attack result (``MetricValue``s or their ``to_dict`` form, as in records):
    the values the audit gives a verdict (and, with an oracle, the ones with a ``_gap`` that the leaderboard
    gives a column) — not every point of a probe's grid.

    An attack declares them by the ``headline`` list it passes to ``attacks.concept.common.against_references``,
    which flags each with ``extra["headline"]`` (and adds its ``_gap`` to the oracle). Attacks that score
    the references for their headline values only (membership, inversion, relearning) need no flag: there
    the headline values are those with an ``_original`` / ``_oracle`` partner."""
    def flagged(v: Any) -> bool:
        extra = v.get("extra") if isinstance(v, dict) else getattr(v, "extra", None)
        return bool((extra or {}).get(HEADLINE))

    keys = [k for k, v in values.items() if flagged(v)]
    return keys or [k for k in values if f"{k}_oracle" in values or f"{k}_original" in values]


@dataclass
class AttackResult:
    status: Literal["ok", "skipped", "failed"]
    values: dict[str, MetricValue] = field(default_factory=dict)
    reason: str = ""
    per_item: list[dict[str, Any]] = field(default_factory=list)
    conventions: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"status": self.status, "reason": self.reason, "conventions": self.conventions,
                "values": {k: v.to_dict() for k, v in self.values.items()}}


class Attack(Configurable, abc.ABC):
    """An audit attack on a (possibly unlearned) model; protocols in attacks/README.md.

    ``run`` must not mutate ``model``, must be deterministic under ``context.seed``, must respect
    ``context.budget`` and returns ``skipped`` (with a reason) when the model lacks a capability in
    ``requires``. ``Config`` holds the attack's defaults; scenario cards override them per tier.
    """

    name: ClassVar[str] = ""
    paper: ClassVar[str] = ""
    family: ClassVar[str] = ""
    threat_model: ClassVar[str] = ""
    requires: ClassVar[frozenset[str]] = frozenset()
    tracks: ClassVar[frozenset[str]] = frozenset({"class"})


    def missing_capabilities(self, model: DiffusionModel) -> set[str]:
        return set(self.requires) - set(model.capabilities)

    def skip_if_missing(self, model: DiffusionModel) -> AttackResult | None:
        """A ``skipped`` result naming what ``model`` lacks, or None when it has every capability needed."""
        missing = self.missing_capabilities(model)
        return AttackResult("skipped", reason=f"model lacks {', '.join(sorted(missing))}") if missing else None

    @abc.abstractmethod
    def run(self, model: DiffusionModel, context: AttackContext) -> AttackResult: ...


def iter_batches(n: int, batch_size: int) -> Iterable[slice]:
    for start in range(0, n, batch_size):
        yield slice(start, min(n, start + batch_size))
