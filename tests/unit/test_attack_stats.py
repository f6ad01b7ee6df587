"""The MIA template's ROC summary: sklearn AUC, bootstrap CI, TPR at low FPR, balanced accuracy."""

from __future__ import annotations

import numpy as np
import torch
from sklearn.metrics import roc_auc_score

from attacks.mia.base import bootstrap_auc_ci, noise_for, summarize


def test_perfectly_separated_scores():
    r = summarize(np.arange(10, 20, dtype=float), np.arange(0, 10, dtype=float), n_boot=50)
    assert r.auc == 1.0 and r.best_balanced_accuracy == 1.0
    assert r.auc_ci == (1.0, 1.0)
    assert r.tpr_at == {"tpr@1%fpr": None, "tpr@0.1%fpr": None}  # 10 non-members: too few for either
    assert r.fpr[0] == 0.0 and r.tpr[-1] == 1.0


def test_overlapping_scores_match_sklearn_and_the_ci_brackets_the_auc():
    rng = np.random.default_rng(0)
    members, non = rng.normal(0.5, 1, 400), rng.normal(0, 1, 200)
    r = summarize(members, non, n_boot=400)
    y = np.r_[np.ones(400), np.zeros(200)]
    assert r.auc == roc_auc_score(y, np.r_[members, non])
    lo, hi = r.auc_ci
    assert lo < r.auc < hi and 0.03 < hi - lo < 0.15
    assert r.tpr_at["tpr@1%fpr"] is not None and r.tpr_at["tpr@0.1%fpr"] is None
    assert 0.5 < r.best_balanced_accuracy < 0.75


def test_bootstrap_replicates_equal_sklearn_auc_with_ties():
    # with every replicate equal to the sample itself (one score repeated), U/(n1 n0) must equal sklearn's AUC
    members, non = np.array([1.0, 1.0, 2.0]), np.array([1.0, 0.0])
    lo, hi = bootstrap_auc_ci(np.full(3, 1.0), np.full(2, 1.0), n_boot=10)
    assert lo == hi == roc_auc_score([1, 1, 0, 0, 0], [1, 1, 1, 1, 1])
    assert summarize(members, non, n_boot=10).auc == roc_auc_score([1, 1, 1, 0, 0], [1, 1, 2, 1, 0])


def test_noise_depends_only_on_seed_salt_and_index():
    a = noise_for(torch.tensor([5, 7]), (1, 4, 4), seed=0, salt=1)
    b = noise_for(torch.tensor([7]), (1, 4, 4), seed=0, salt=1)
    assert torch.equal(a[1], b[0])
    assert not torch.equal(noise_for(torch.tensor([7]), (1, 4, 4), seed=0, salt=2), b)
    assert not torch.equal(noise_for(torch.tensor([7]), (1, 4, 4), seed=1, salt=1), b)
