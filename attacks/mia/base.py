"""Template for membership inference: an attack supplies only ``score`` (higher = more likely member).

The base scores (a) the forget-class members (D_f) against the held-out images of the same class and
(b) all members against all held-out images, then reports, with scikit-learn's ROC utilities: AUC
with a stratified bootstrap 95% CI, TPR at 1% / 0.1% FPR where there are enough non-members (≥ 100 /
≥ 1,000), best-threshold balanced accuracy (the splits are
imbalanced, 400 : 100 per class) and the ROC curve. For an unlearned model the headline is the
forget-set AUC next to the same AUC of the original and of the retrained oracle, and the signed gap
to the oracle: after exact unlearning D_f is a non-member set for the model, so the oracle's AUC
(≈ 0.5) is the target, and over-unlearning that pushes the AUC *below* it leaks too.

Noise draws and timesteps come from the attack's seed and the image index only, so the model under
test, the original and the oracle are scored with exactly the same randomness (and the references are
computed once per fingerprint and cached for the whole run).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import torch
from sklearn.metrics import roc_auc_score, roc_curve

from attacks.result_cache import cached
from benchmark.api import (
    Attack,
    AttackContext,
    AttackResult,
    BudgetClock,
    DiffusionModel,
    LabeledImages,
    MetricValue,
)


@dataclass(frozen=True)
class RocSummary:
    auc: float
    auc_ci: tuple[float, float] | None
    tpr_at: dict[str, float | None]
    best_balanced_accuracy: float
    fpr: list[float]
    tpr: list[float]
    n_members: int
    n_nonmembers: int


def summarize(member_scores: np.ndarray, nonmember_scores: np.ndarray, n_boot: int = 500,
              seed: int = 0, max_points: int = 200) -> RocSummary:
    """AUC (+ stratified bootstrap CI), TPR@FPR, best-threshold balanced accuracy and ROC points."""
    y = np.r_[np.ones(len(member_scores)), np.zeros(len(nonmember_scores))]
    s = np.r_[member_scores, nonmember_scores]
    auc = float(roc_auc_score(y, s))
    fpr, tpr, _ = roc_curve(y, s)
    tpr_at: dict[str, float | None] = {}
    for label, alpha, need in (("tpr@1%fpr", 0.01, 100), ("tpr@0.1%fpr", 0.001, 1000)):
        tpr_at[label] = float(tpr[fpr <= alpha].max()) if len(nonmember_scores) >= need else None
    n_pos, n_neg = len(member_scores), len(nonmember_scores)
    acc = float(np.max((tpr + 1 - fpr) / 2))
    ci = bootstrap_auc_ci(member_scores, nonmember_scores, n_boot, seed) if n_boot else None
    keep = np.unique(np.linspace(0, len(fpr) - 1, min(len(fpr), max_points)).round().astype(int))
    return RocSummary(auc, ci, tpr_at, acc, fpr[keep].round(5).tolist(), tpr[keep].round(5).tolist(), n_pos, n_neg)


def bootstrap_auc_ci(member_scores: np.ndarray, nonmember_scores: np.ndarray, n_boot: int = 500,
                     seed: int = 0) -> tuple[float, float]:
    """95% percentile CI of the AUC from a stratified bootstrap (members and non-members resampled
    separately). Each replicate's AUC is the Mann–Whitney U / (n₁·n₀), computed for all replicates at
    once with scipy (equal to sklearn's ROC AUC, ties counted half)."""
    from scipy.stats import mannwhitneyu

    rng = np.random.default_rng(seed)
    bp = rng.choice(member_scores, (n_boot, len(member_scores)))
    bn = rng.choice(nonmember_scores, (n_boot, len(nonmember_scores)))
    u = mannwhitneyu(bp, bn, axis=1, method="asymptotic", use_continuity=False).statistic
    boots = u / (len(member_scores) * len(nonmember_scores))
    return float(np.quantile(boots, 0.025)), float(np.quantile(boots, 0.975))


class MembershipAttack(Attack):
    """Subclasses implement ``score``; everything else (splits, references, ROC) lives here."""

    family = "membership"
    threat_model = "white-box noise predictions (ε_θ queries with the true class), no gradients"
    requires: ClassVar[frozenset[str]] = frozenset({"eps"})
    tracks: ClassVar[frozenset[str]] = frozenset({"class", "text"})

    @dataclass
    class Config:
        batch_size: int = 250
        include_all_classes: bool = True  # also members vs held-out over every class
        # at most this many images per split (members, held-out): a seeded random subset, the same for every
        # model (None: all); a budget, stated in the values' protocol
        max_per_split: int | None = None

    def score(self, model: DiffusionModel, data: LabeledImages, index: torch.Tensor, seed: int) -> torch.Tensor:
        """Per-image membership score, higher = more likely a member. ``index`` identifies each image
        (its position in its split) so that random draws can depend on (seed, split, index) only."""
        raise NotImplementedError

    def conventions(self) -> dict[str, Any]:
        return {}

    # -- template ------------------------------------------------------------------------------------
    def _scores(self, model: DiffusionModel, data: LabeledImages, split_id: int, seed: int,
                clock: BudgetClock) -> torch.Tensor:
        out = []
        bs = self.config.batch_size
        modes = {name: m.training for name, m in model.modules().items()}
        model.eval()
        try:
            with torch.no_grad():
                for start in range(0, len(data), bs):
                    stopped = clock.exhausted()
                    if stopped:
                        raise BudgetExhausted(stopped)
                    idx = torch.arange(start, min(len(data), start + bs)) + split_id * 1_000_000
                    chunk = data.take(torch.arange(start, min(len(data), start + bs))).to(model.device)
                    out.append(self.score(model, chunk, idx, seed).float().cpu())
        finally:
            for name, m in model.modules().items():
                m.train(modes[name])
        return torch.cat(out) if out else torch.empty(0)

    def _all_scores(self, model: DiffusionModel, context: AttackContext) -> dict[str, torch.Tensor]:
        """Scores of every image in the attacked splits, once per weights (own budget clock; cut-short
        runs raise BudgetExhausted and are not cached)."""
        fp = model.fingerprint()
        key = (self.name, repr(self.config), context.seed, fp, context.forget_class)

        def compute() -> dict[str, torch.Tensor]:
            members, m_forget = self._split(context, "members", 1)
            heldout, h_forget = self._split(context, "heldout", 2)
            clock = context.budget.start()
            return {"members": self._scores(model, members, 1, context.seed, clock),
                    "heldout": self._scores(model, heldout, 2, context.seed, clock),
                    "members_y": members.y, "heldout_y": heldout.y,
                    "members_forget": m_forget, "heldout_forget": h_forget}

        return cached(context, key, fp, compute)

    def _split(self, context: AttackContext, split: str, salt: int) -> tuple[LabeledImages, torch.Tensor]:
        """The images of ``split`` this attack scores and which of them are of the forget class: every image
        (``include_all_classes``) or the forget class only, then at most ``max_per_split`` of them (a
        seeded subset, the same for every model)."""
        data, forget = context.members if split == "members" else context.heldout, context.forget_mask(split)
        if not self.config.include_all_classes:
            data, forget = data.where(forget), torch.ones(int(forget.sum()), dtype=torch.bool)
        cap = self.config.max_per_split
        if cap is not None and len(data) > cap:
            pick = torch.randperm(len(data), generator=torch.Generator().manual_seed(context.seed * 31 + salt))
            pick = pick[:cap].sort().values
            data, forget = data.take(pick), forget[pick]
        return data, forget

    def run(self, model: DiffusionModel, context: AttackContext) -> AttackResult:
        skipped = self.skip_if_missing(model)
        if skipped:
            return skipped
        try:
            own = self._all_scores(model, context)
        except BudgetExhausted as exc:
            return AttackResult("failed", reason=f"stopped by the {exc}")
        refs, notes = {}, {}
        for ref_name, ref_model in context.reference_models.items():
            try:
                refs[ref_name] = self._all_scores(ref_model, context)
            except BudgetExhausted as exc:
                notes[ref_name] = f"not scored: stopped by the {exc}"
        values: dict[str, MetricValue] = {}
        what = context.concept_name
        proto = f"{self.name}; forget members ({what}) vs held-out of {what}; sklearn ROC"
        if self.config.max_per_split is not None:
            proto += f"; at most {self.config.max_per_split} images per split (seeded subset, the same for every model)"

        def forget_auc(sc: dict[str, torch.Tensor]) -> RocSummary:
            return summarize(sc["members"][sc["members_forget"]].numpy(), sc["heldout"][sc["heldout_forget"]].numpy(),
                             seed=context.seed)

        mine = forget_auc(own)
        values["auc_forget"] = MetricValue("auc_forget", mine.auc, mine.n_members + mine.n_nonmembers, None,
                                           mine.auc_ci, proto + "; CI: stratified bootstrap",
                                           {**mine.tpr_at, "best_balanced_accuracy": mine.best_balanced_accuracy,
                                            "roc": {"fpr": mine.fpr, "tpr": mine.tpr},
                                            "n_members": mine.n_members, "n_nonmembers": mine.n_nonmembers})
        for ref_name, sc in refs.items():
            ref = forget_auc(sc)
            values[f"auc_forget_{ref_name}"] = MetricValue(f"auc_forget_{ref_name}", ref.auc,
                                                           ref.n_members + ref.n_nonmembers, None, ref.auc_ci,
                                                           proto + f"; the {ref_name} model")
        if "oracle" in refs:
            gap = mine.auc - values["auc_forget_oracle"].value
            values["auc_forget_gap"] = MetricValue("auc_forget_gap", gap, mine.n_members + mine.n_nonmembers, None,
                                                   None, "model AUC − oracle AUC on the forget set (signed; 0 is "
                                                   "exact unlearning, both signs leak)")
        if self.config.include_all_classes:
            allr = summarize(own["members"].numpy(), own["heldout"].numpy(), seed=context.seed)
            values["auc_all"] = MetricValue("auc_all", allr.auc, allr.n_members + allr.n_nonmembers, None, allr.auc_ci,
                                            f"{self.name}; all members vs all held-out; CI: stratified bootstrap",
                                            {**allr.tpr_at, "best_balanced_accuracy": allr.best_balanced_accuracy,
                                             "roc": {"fpr": allr.fpr, "tpr": allr.tpr}})
        per_item = [{"split": split, "index": i, "label": int(y), "score": float(s)}
                    for split in ("members", "heldout")
                    for i, (s, y) in enumerate(zip(own[split], own[f"{split}_y"]))]
        return AttackResult("ok", values, per_item=per_item, conventions={**self.conventions(), **(
            {"reference_notes": notes} if notes else {})})


class BudgetExhausted(RuntimeError):
    pass


def noise_for(index: torch.Tensor, shape: tuple[int, ...], seed: int, salt: int = 0) -> torch.Tensor:
    """Gaussian noise for each image that depends only on (seed, salt, image index)."""
    out = torch.empty((len(index), *shape))
    for row, i in enumerate(index.tolist()):
        g = torch.Generator().manual_seed((seed * 1_000_003 + salt * 7_919 + i) % (2**63))
        out[row] = torch.randn(shape, generator=g)
    return out
