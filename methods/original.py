"""The unscrubbed original model: no unlearning, the reference row of every table."""

from __future__ import annotations

from benchmark.api import DiffusionModel, UnlearningMethod, UnlearnOutcome, UnlearnRequest


class Original(UnlearningMethod):
    name = "original"
    paper = "no unlearning (reference row)"
    supports = frozenset({"class", "text"})
    changes_weights = False

    def unlearn(self, model: DiffusionModel, request: UnlearnRequest) -> UnlearnOutcome:
        return UnlearnOutcome(model.clone(), steps=0)
