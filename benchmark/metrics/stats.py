"""Confidence intervals shared by the metrics and attacks: percentile bootstrap, Wilson score, Student t; and the
exact test the audit verdict uses on two shares."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np


def bootstrap_ci(values: np.ndarray, stat: Callable[[np.ndarray], float] = np.mean, n_boot: int = 1000,
                 seed: int = 0, level: float = 0.95) -> tuple[float, float] | None:
    """Percentile bootstrap CI of ``stat`` over items (rows of ``values``); None for fewer than 2 items."""
    values = np.asarray(values)
    if len(values) < 2:
        return None
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, len(values), size=(n_boot, len(values)))
    if stat is np.mean and values.ndim == 1:
        boots = values[idx].mean(axis=1)
    else:
        boots = np.array([stat(values[i]) for i in idx])
    lo, hi = np.quantile(boots, [(1 - level) / 2, 1 - (1 - level) / 2])
    return float(lo), float(hi)


def wilson_ci(share: float, n: int, level: float = 0.95) -> tuple[float, float] | None:
    """Wilson score interval of a proportion ``share`` of ``n`` independent 0/1 items (scipy's ``binomtest``);
    None for no items. Unlike a percentile bootstrap it is not (0, 0) at 0/n or (1, 1) at n/n: 0 of 8
    prompts gives (0, 0.32)."""
    from scipy import stats

    if n < 1:
        return None
    ci = stats.binomtest(round(share * n), n).proportion_ci(confidence_level=level, method="wilson")
    return float(ci.low), float(ci.high)


def share_counts(value: float, n: int | None, ci: tuple[float, float] | list | None) -> tuple[int, int] | None:
    """``(successes, items)`` when a recorded value is a share of ``n`` independent 0/1 items, recognised by
    its interval being that share's Wilson interval (how ``item_ci`` / ``wilson_ci`` record every share over
    prompts or images); None for anything else (a mean of scores, a bootstrap interval, a share whose
    interval counts other units, as Concept Inversion's counts prompts, not images)."""
    counts = share_of_items(value, n)
    if counts is None or not ci or ci[0] is None:
        return None
    wilson = wilson_ci(value, n)
    if wilson is None or not np.allclose(wilson, [float(c) for c in ci], rtol=0, atol=1e-9):
        return None
    return counts


def share_of_items(value: float, n: int | None) -> tuple[int, int] | None:
    """``(successes, n)`` when ``value`` can be a share of ``n`` 0/1 items (a whole number of successes)."""
    if not n or not 0.0 <= value <= 1.0:
        return None
    k = value * n
    return (round(k), int(n)) if abs(k - round(k)) <= 1e-6 else None


def two_share_p(a: tuple[int, int], b: tuple[int, int]) -> float:
    """Two-sided p-value of Fisher's exact test that two shares (successes, items) come from one rate."""
    from scipy import stats

    return float(stats.fisher_exact([[a[0], a[1] - a[0]], [b[0], b[1] - b[0]]]).pvalue)


def holm_reject(p_values: list[float], alpha: float = 0.05) -> list[bool]:
    """Holm's step-down procedure (Holm 1979): which of the hypotheses to reject so that the chance of one or
    more false rejections stays ≤ ``alpha`` whatever the dependence between the tests. The i-th smallest p
    (i = 0, 1, …) is compared with alpha / (m − i); the first that fails stops the procedure."""
    order = sorted(range(len(p_values)), key=lambda i: p_values[i])
    reject = [False] * len(p_values)
    for rank, i in enumerate(order):
        if p_values[i] > alpha / (len(p_values) - rank):
            break
        reject[i] = True
    return reject


def item_ci(values: np.ndarray, level: float = 0.95) -> tuple[float, float] | None:
    """The CI of a mean over independent items: Wilson for 0/1 items (a share), percentile bootstrap otherwise."""
    values = np.asarray(values, dtype=float)
    if len(values) and np.isin(values, (0.0, 1.0)).all():
        return wilson_ci(float(values.mean()), len(values), level)
    return bootstrap_ci(values, level=level)


def seed_interval(values: np.ndarray, level: float = 0.95) -> tuple[float, float] | None:
    """Student-t interval of the mean across independent seeds (None for fewer than 2 seeds)."""
    from scipy import stats

    values = np.asarray(values, dtype=float)
    values = values[np.isfinite(values)]
    if len(values) < 2:
        return None
    half = stats.t.ppf(1 - (1 - level) / 2, len(values) - 1) * values.std(ddof=1) / np.sqrt(len(values))
    return float(values.mean() - half), float(values.mean() + half)
