"""Compare two sets of result records: did a re-run reproduce the stored numbers?

``unlearnbench compare PUBLISHED RERUN`` pairs the records of two folders (or two record files) by
their file name, which carries the cell's identity hash (card hash, resolved config, step cap, method
code), and compares what a record *measured*: its status, the unlearned weights' fingerprint, every
metric's value / n / CI / extra (curves, counts, ROC points, test results), every attack's status and
values the same way, and the method's statistics (losses, lambda, mask sizes; not its timings).
Provenance that is expected to differ between runs (UTC time, git commit, wall-clock timings, compute
seconds, environment) is never compared.

Records present in only one folder are listed, not counted as differences: a re-run of seed 0 is a
valid check of a three-seed folder. A cell whose card or config changed has another identity hash, so
it shows up unpaired — the summary says so instead of comparing numbers that were never meant to agree.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from benchmark import UnlearnbenchError
from benchmark.results import load_records_by_name, read_record

ABSENT = "(absent)"  # a field one record has and the other lacks


@dataclass
class Difference:
    record: str
    field: str
    a: Any
    b: Any


@dataclass
class Comparison:
    paired: list[str] = field(default_factory=list)
    only_a: list[str] = field(default_factory=list)
    only_b: list[str] = field(default_factory=list)
    differences: list[Difference] = field(default_factory=list)
    fields_compared: int = 0

    @property
    def identical(self) -> bool:
        return bool(self.paired) and not self.differences

    def differing_records(self) -> list[str]:
        return sorted({d.record for d in self.differences})


def _records(path: Path) -> dict[str, dict[str, Any]]:
    if path.is_dir():
        return load_records_by_name(path)
    if not path.is_file():
        raise UnlearnbenchError(f"no such record file or folder: {path}")
    rec = read_record(path)
    if rec is None:
        raise UnlearnbenchError(f"{path} is not an unlearnbench result record")
    return {path.name: rec}


def _leaves(prefix: str, obj: Any, out: dict[str, Any], skip_seconds: bool = False) -> None:
    """Flatten dicts and lists to ``prefix.key`` / ``prefix[i]`` leaves (``skip_seconds``: drop ``*seconds``
    keys, the wall-clock statistics of a method)."""
    if isinstance(obj, dict) and obj:
        for k, v in obj.items():
            if not (skip_seconds and str(k).endswith("seconds")):
                _leaves(f"{prefix}.{k}", v, out, skip_seconds)
    elif isinstance(obj, list) and obj and any(isinstance(x, (dict, list)) for x in obj):
        for i, v in enumerate(obj):
            _leaves(f"{prefix}[{i}]", v, out, skip_seconds)
    else:
        out[prefix] = obj


def measured(rec: dict[str, Any]) -> dict[str, Any]:
    """The fields of a record that a faithful re-run must reproduce, flattened to ``path -> value``."""
    out: dict[str, Any] = {"status": rec.get("status", "ok"),
                           "failure.reason": (rec.get("failure") or {}).get("reason"),
                           "model.fingerprint": (rec.get("model") or {}).get("fingerprint")}
    for name, m in (rec.get("metrics") or {}).items():
        for key in ("value", "n", "ci"):
            out[f"metrics.{name}.{key}"] = m.get(key)
        _leaves(f"metrics.{name}.extra", m.get("extra") or {}, out)
    for name, att in (rec.get("attacks") or {}).items():
        out[f"attacks.{name}.status"] = att.get("status")
        for vname, v in (att.get("values") or {}).items():
            for key in ("value", "n", "ci"):
                out[f"attacks.{name}.{vname}.{key}"] = v.get(key)
            _leaves(f"attacks.{name}.{vname}.extra", v.get("extra") or {}, out)
    _leaves("method_stats", rec.get("method_stats") or {}, out, skip_seconds=True)
    return out


def _close(a: Any, b: Any, rtol: float, atol: float) -> bool:
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_close(x, y, rtol, atol) for x, y in zip(a, b))
    num = (int, float)
    if isinstance(a, num) and isinstance(b, num) and not isinstance(a, bool) and not isinstance(b, bool):
        if math.isnan(a) or math.isnan(b):
            return math.isnan(a) and math.isnan(b)
        return math.isclose(a, b, rel_tol=rtol, abs_tol=atol)
    return a == b


def compare_records(a: str | Path, b: str | Path, rtol: float = 0.0, atol: float = 0.0) -> Comparison:
    """Pair the records of ``a`` and ``b`` by file name and list every measured field that differs
    beyond ``atol + rtol·|value|`` (exact by default: a seeded re-run on the same build is bitwise)."""
    if rtol < 0 or atol < 0:
        raise UnlearnbenchError("--rtol and --atol must be >= 0")
    ra, rb = _records(Path(a)), _records(Path(b))
    if Path(a).is_file() and Path(b).is_file():   # two files: compare them whatever their names
        ra, rb = {"record": next(iter(ra.values()))}, {"record": next(iter(rb.values()))}
    cmp = Comparison(paired=sorted(set(ra) & set(rb)), only_a=sorted(set(ra) - set(rb)),
                     only_b=sorted(set(rb) - set(ra)))
    for name in cmp.paired:
        fa, fb = measured(ra[name]), measured(rb[name])
        for key in sorted(set(fa) | set(fb)):
            cmp.fields_compared += 1
            a_val, b_val = fa.get(key, ABSENT), fb.get(key, ABSENT)
            if not _close(a_val, b_val, rtol, atol):
                cmp.differences.append(Difference(name, key, a_val, b_val))
    return cmp


def render(cmp: Comparison, a: str, b: str, rtol: float, atol: float, limit: int = 40) -> str:
    """Plain-text summary: counts, the differing fields (A vs B), and the unpaired records."""
    import pandas as pd

    tol = "exact" if rtol == 0 and atol == 0 else f"rtol {rtol:g}, atol {atol:g}"
    lines = [f"compared {len(cmp.paired)} record pair(s) by file name ({cmp.fields_compared} measured fields, "
             f"{tol}): {len(cmp.paired) - len(cmp.differing_records())} identical, "
             f"{len(cmp.differing_records())} differ",
             f"  A = {a}", f"  B = {b}"]
    if cmp.differences:
        kinds = Counter(re.sub(r"\[\d+\]", "[i]", d.field) for d in cmp.differences)
        lines.append("differing fields by kind (records x entries):")
        lines += [f"  {count:6d}  {kind}" for kind, count in kinds.most_common(limit)]
        if len(kinds) > limit:
            lines.append(f"  ... and {len(kinds) - limit} more kinds")
        rows = [{"record": d.record, "field": d.field, "A": str(d.a), "B": str(d.b)} for d in cmp.differences[:limit]]
        with pd.option_context("display.max_colwidth", 60, "display.width", 200):
            lines.append(pd.DataFrame(rows).to_string(index=False))
        if len(cmp.differences) > limit:
            lines.append(f"... and {len(cmp.differences) - limit} more differing fields")
    for label, names in (("only in A", cmp.only_a), ("only in B", cmp.only_b)):
        if names:
            shown = ", ".join(names[:5]) + (f", ... ({len(names) - 5} more)" if len(names) > 5 else "")
            lines.append(f"{label} ({len(names)}; another seed, or another card/config identity): {shown}")
    return "\n".join(lines)
