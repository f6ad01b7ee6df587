"""Confidence intervals shared by the metrics and attacks: percentile bootstrap, Wilson score, Student t."""

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
