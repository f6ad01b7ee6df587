"""The method-submission flow: load an adapter from a file or module, check it, scaffold a new one."""

from __future__ import annotations

import importlib
import importlib.util
import re
import sys
import tempfile
from pathlib import Path
from typing import Any

from benchmark import UnlearnbenchError
from benchmark.conformance import CheckResult, check_method, smoke_overrides


def load_adapter(target: str) -> type:
    """``path/to/file.py:Class``, ``package.module:Class``, or a file with exactly one adapter class."""
    from benchmark.api import UnlearningMethod

    where, _, attr = target.partition(":")
    path = Path(where)
    if where.endswith(".py") or path.is_file():
        if not path.is_file():
            raise UnlearnbenchError(f"no such adapter file: {path}")
        mod_name = f"_unlearnbench_adapter_{re.sub(r'[^0-9a-zA-Z_]', '_', path.stem)}"
        spec = importlib.util.spec_from_file_location(mod_name, path)
        if spec is None or spec.loader is None:
            raise UnlearnbenchError(f"cannot import {path}")
        module = importlib.util.module_from_spec(spec)
        sys.path.insert(0, str(path.resolve().parent))
        sys.modules[mod_name] = module
        try:
            spec.loader.exec_module(module)
        except Exception as exc:  # noqa: BLE001 - surface the adapter's own import error on one line
            raise UnlearnbenchError(f"importing {path} failed: {type(exc).__name__}: {exc}") from exc
        finally:
            sys.path.pop(0)
    else:
        try:
            module = importlib.import_module(where)
        except ImportError as exc:
            raise UnlearnbenchError(f"cannot import module {where!r}: {exc}") from exc
    if attr:
        if not hasattr(module, attr):
            raise UnlearnbenchError(f"{where} has no attribute {attr!r}")
        return getattr(module, attr)
    found = [v for v in vars(module).values() if isinstance(v, type) and issubclass(v, UnlearningMethod)
             and v.__module__ == module.__name__]
    if len(found) != 1:
        names = ", ".join(c.__name__ for c in found) or "none"
        raise UnlearnbenchError(f"{where} defines {len(found)} adapter classes ({names}); name one as {where}:Class")
    return found[0]


def method_name(cls: type) -> str:
    name = getattr(cls, "name", "") or re.sub(r"(?<!^)(?=[A-Z])", "_", cls.__name__).lower()
    return name


def smoke_run(cls: type, name: str, out_dir: Path | None, device: str = "cpu",
              overrides: dict[str, Any] | None = None, max_steps: int = 4) -> dict[str, Any]:
    """Run the smoke tier with ``original`` and the adapter (its config: the card's smoke budget, else the
    adapter's ``tier_budgets["smoke"]``, else its defaults; ``overrides`` on top; steps capped at
    ``max_steps``) on the class card, or the text object card for a text-only method; return both records."""
    import json

    from benchmark import runner
    from benchmark.registry import METHODS

    if name in METHODS and METHODS.get(name) is not cls:
        raise UnlearnbenchError(f"method name {name!r} is already taken by {METHODS.origin(name)}; "
                                "set a different `name` on the class")
    if name not in METHODS:
        METHODS.register(name, cls, origin="check-method")
    scenario = "mnist-class" if "class" in getattr(cls, "supports", {"class"}) else "mnist-text-object"
    with tempfile.TemporaryDirectory(prefix="unlearnbench-check-") as scratch:  # removed unless --out keeps them
        out = Path(out_dir) if out_dir else Path(scratch)
        plan = runner.plan(scenario, ["original", name], None, "smoke", 0, device, out,
                           overrides={name: dict(overrides)} if overrides else None)
        plan.max_steps = max_steps
        paths = runner.execute(plan, show_progress=False, force=True, log=lambda *_: None)
        records = {r["method"]["name"]: r for r in (json.loads(p.read_text()) for p in paths)}
    return {"records": records, "out": Path(out_dir) if out_dir else None}


def check_and_smoke(target: str, overrides: dict[str, Any], out_dir: Path | None,
                    device: str = "cpu") -> tuple[list[CheckResult], dict[str, Any] | None]:
    import math
    import time

    cls = load_adapter(target)
    name = method_name(cls)
    budget = {**_card_or_empty(name, cls), **(overrides or {})}
    try:
        cls.make_config(budget)
    except (TypeError, ValueError) as exc:
        raise UnlearnbenchError(f"--set: {exc}") from exc
    results = check_method(cls, budget)
    if not all(r.passed for r in results):
        return results, None
    t0 = time.time()
    try:
        smoke = smoke_run(cls, name, out_dir, device, overrides)
        if smoke["records"][name].get("status") == "failed":
            failure = smoke["records"][name]["failure"]
            results.append(CheckResult("smoke tier runs end to end", False,
                                       f"failed in {failure['stage']}: {failure['reason']}", time.time() - t0))
            return results, None
    except UnlearnbenchError:
        raise
    except Exception as exc:  # noqa: BLE001
        results.append(CheckResult("smoke tier runs end to end", False, f"{type(exc).__name__}: {exc}",
                                   time.time() - t0))
        return results, None
    rec = smoke["records"][name]
    bad = [k for k, m in rec["metrics"].items() if m["value"] is None or not math.isfinite(m["value"])]
    detail = (f"forget acc {rec['metrics']['forget_accuracy']['value']:.2f} "
              f"(original {smoke['records']['original']['metrics']['forget_accuracy']['value']:.2f}), "
              f"FID {rec['metrics']['fid']['value']:.1f}; "
              + (f"records in {smoke['out']}" if smoke["out"] else "records not kept (--out DIR keeps them)"))
    results.append(CheckResult("smoke tier runs end to end", not bad,
                               f"non-finite metrics: {bad}" if bad else detail, time.time() - t0))
    return results, smoke


def _card_or_empty(name: str, cls: type | None = None) -> dict[str, Any]:
    """The smoke budget: the card's for a registered name, else the adapter's ``tier_budgets["smoke"]``."""
    try:
        card = smoke_overrides(name)
    except UnlearnbenchError:
        card = {}
    return card or dict((getattr(cls, "tier_budgets", None) or {}).get("smoke") or {})


def parse_overrides(items: list[str]) -> dict[str, Any]:
    """``key=value`` pairs; values parsed as YAML scalars (numbers, booleans, strings)."""
    import yaml

    out: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise UnlearnbenchError(f"--set wants key=value, got {item!r}")
        out[key.strip()] = yaml.safe_load(value)
    return out


_TEMPLATE = '''"""{title} — TODO: authors, "paper title", venue year.

TODO: one paragraph saying what the method optimises, in the paper's notation, and every place where
this implementation departs from the paper or its released code (and why).
"""

from __future__ import annotations

from dataclasses import dataclass

from methods.base import FineTuneConfig, FineTuningMethod


@dataclass
class {cls}Config(FineTuneConfig):
    # TODO: the paper's defaults. Scenario cards scale steps / batch sizes per tier.
    steps: int = 200
    batch_size: int = 128
    lr: float = 1e-4
    forget_weight: float = 0.1


class {cls}(FineTuningMethod):
    name = "{name}"
    paper = "TODO: authors, title, venue year"
    supports = frozenset({{"class"}})
    Config = {cls}Config
    config: {cls}Config

    def loss(self, model, batch, state, gen):
        """Return (scalar loss to minimise, dict of scalars to log). Replace this example:
        keep the ordinary denoising loss on D_r and push D_f's loss up."""
        r, f = batch.retain, batch.forget
        retain_loss = model.loss(r.x, model.encode(r.conditions), generator=gen).mean()
        forget_loss = model.loss(f.x, model.encode(f.conditions), generator=gen).mean()
        loss = retain_loss - self.config.forget_weight * forget_loss
        return loss, {{"retain_loss": float(retain_loss.detach()), "forget_loss": float(forget_loss.detach())}}
'''

_TEST_TEMPLATE = '''"""Contract checks for the {name} adapter (the same checks `unlearnbench check-method` runs)."""

from benchmark.conformance import check_method
from {module} import {cls}


def test_{module}_meets_the_contract():
    results = check_method({cls}, {{"steps": 4, "batch_size": 32}})
    failed = [f"{{r.name}}: {{r.detail}}" for r in results if not r.passed]
    assert not failed, "\\n".join(failed)
'''


def new_method(name: str, directory: Path) -> list[Path]:
    """Write ``<module>.py`` and ``test_<module>.py`` for a new adapter; refuse to overwrite."""
    if not re.fullmatch(r"[a-z][a-z0-9_\-]*", name):
        raise UnlearnbenchError(f"method name {name!r}: use lowercase letters, digits, '-' or '_', starting with a letter")
    module = name.replace("-", "_")
    cls = "".join(part.capitalize() for part in re.split(r"[_\-]", name))
    directory = Path(directory)
    files = {directory / f"{module}.py": _TEMPLATE.format(title=cls, cls=cls, name=name),
             directory / f"test_{module}.py": _TEST_TEMPLATE.format(name=name, module=module, cls=cls)}
    existing = [str(p) for p in files if p.exists()]
    if existing:
        raise UnlearnbenchError(f"refusing to overwrite {', '.join(existing)}")
    directory.mkdir(parents=True, exist_ok=True)
    from benchmark.atomic import write_text_atomic

    for path, text in files.items():
        write_text_atomic(path, text)
    return list(files)
