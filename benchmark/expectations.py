"""Expectations an adapter declares per tier (``UnlearningMethod.expectations``), checked by the shipped suites.

A rule is ``OP [FACTOR *] (NUMBER | BASELINE)``: ``"<= 0.1"``, ``">= 0.8"``, ``"<= 0.5 * original"``,
``"<= 1.5 * original"``. The left side is the row's mean over seeds of the metric; a baseline is the mean
of the same cell run with that registered method. No pytest import here: ``check-method`` validates rules.
"""

from __future__ import annotations

import operator
import re
from typing import Any

_RULE = re.compile(r"^\s*(<=|<|>=|>)\s*(?:([0-9.eE+\-]+)\s*\*\s*)?([a-z][a-z0-9_\-]*|[0-9.eE+\-]+)\s*$")
_OPS = {"<=": operator.le, "<": operator.lt, ">=": operator.ge, ">": operator.gt}


def parse_expectation(rule: str) -> tuple[str, float, str | float]:
    """``"<= 0.5 * original"`` → ("<=", 0.5, "original"); ``"< 0.1"`` → ("<", 1.0, 0.1)."""
    m = _RULE.match(str(rule))
    if not m:
        raise ValueError(f"expectation {rule!r}: write OP [FACTOR *] (NUMBER | BASELINE), e.g. '<= 0.5 * original'")
    op, factor, rhs = m.group(1), float(m.group(2) or 1.0), m.group(3)
    try:
        return op, factor, float(rhs)
    except ValueError:
        return op, factor, rhs


def check_expectation(row: Any, metric: str, rule: str) -> str:
    """'' when the row's mean ``metric`` satisfies ``rule``, else a one-line account of the miss."""
    op, factor, rhs = parse_expectation(rule)
    value = row[metric].value
    bound = factor * (rhs if isinstance(rhs, float) else row.baseline(rhs)[metric].value)
    if _OPS[op](value, bound):
        return ""
    return f"{row.method} {metric} = {value:.4g}, expected {op} {bound:.4g} ({rule})"
