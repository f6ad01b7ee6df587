"""pytest plugin: benchmark an unlearning method from a test, in the method author's own CI.

Installed with the package (entry point ``pytest11``; ``PYTEST_DISABLE_PLUGIN_AUTOLOAD=1`` disables it,
then ``-p benchmark.pytest_plugin`` loads it). A test asks for the ``unlearnbench`` fixture::

    def test_forgets(unlearnbench):
        r = unlearnbench.run("my-method", scenario="mnist-class", tier="smoke", seeds=[0])
        assert r["forget_accuracy"].upper <= 0.10        # the CI bound, not just the mean
        assert r["fid"].value <= 1.2 * r.baseline("original")["fid"].value

``run`` goes through the same runner as ``unlearnbench run`` (no mocks), so every cell writes a full
record. Records are cached by their identity (``benchmark.identity``) in a results folder that outlives
the pytest run (``--unlearnbench-results``, ``$UNLEARNBENCH_RESULTS``, default ``<cache>/pytest-records``):
a rerun with unchanged method code, config and card reuses them; a changed method is recomputed. Rows
are also memoised within a session, so baselines are computed once. A failing test prints the rows it
ran next to their baselines.

A cell's statistic (``Stat``): ``value`` is the mean over seeds; ``lower``/``upper`` the 95% Student-t
interval across seeds for ≥ 2 seeds, or the record's own 95% bootstrap interval over samples for one.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from benchmark.expectations import check_expectation, parse_expectation  # noqa: F401 - re-exported


@dataclass(frozen=True)
class Stat:
    """One metric of one row: mean over seeds and its 95% interval (see the module docstring)."""

    name: str
    value: float
    lower: float
    upper: float
    n: int
    seeds: int
    per_seed: tuple[float, ...]
    interval: str  # "seeds" (t-interval across seeds) or "samples" (the record's bootstrap CI)

    def __repr__(self) -> str:
        return (f"{self.name}={self.value:.4g} [{self.lower:.4g}, {self.upper:.4g}] "
                f"(95% over {self.interval}, n={self.n}, {self.seeds} seed(s))")


def stat_of(name: str, metrics: Sequence[dict[str, Any]]) -> Stat:
    """Combine one metric of several seeds' records (``metrics``: each record's entry for ``name``)."""
    from benchmark.metrics.stats import seed_interval

    values = tuple(float(m["value"]) for m in metrics)
    mean = sum(values) / len(values)
    if len(values) >= 2:
        ci = seed_interval(values)
        lo, hi = ci if ci else (mean, mean)
        kind = "seeds"
    else:
        ci = metrics[0].get("ci") or [mean, mean]
        lo, hi = (float(ci[0]), float(ci[1])) if ci[0] is not None else (mean, mean)
        kind = "samples"
    return Stat(name, mean, lo, hi, int(max(m.get("n", 0) for m in metrics)), len(values), values, kind)


@dataclass
class Row:
    """The records of one method on one scenario, tier, target and list of seeds."""

    method: str
    scenario: str
    tier: str
    seeds: tuple[int, ...]
    target: Any
    records: list[dict[str, Any]]
    bench: Bench = field(repr=False)
    _baselines: dict[str, Row] = field(default_factory=dict, repr=False)

    def metric_names(self) -> list[str]:
        return sorted(self.records[0]["metrics"])

    def __getitem__(self, metric: str) -> Stat:
        if metric not in self.records[0]["metrics"]:
            raise KeyError(f"{metric!r} is not a metric of {self.method} on {self.scenario} "
                           f"(metrics: {', '.join(self.metric_names())})")
        return stat_of(metric, [r["metrics"][metric] for r in self.records])

    def attack(self, attack: str, value: str) -> Stat:
        """An attack's value (``row.attack("pia", "auc_forget")``); the run must have asked for the attack."""
        entries = [(r.get("attacks") or {}).get(attack) for r in self.records]
        if not all(e and e.get("status") == "ok" and value in e.get("values", {}) for e in entries):
            raise KeyError(f"attack {attack!r} value {value!r} is not in every record of {self.method} "
                           f"(pass attacks=[{attack!r}] to run)")
        return stat_of(f"{attack}.{value}", [e["values"][value] for e in entries])

    @property
    def steps(self) -> list[int]:
        return [r["compute"]["steps"] for r in self.records]

    def baseline(self, method: str) -> Row:
        """The same cell (scenario, tier, target, seeds) for a registered baseline, computed once."""
        if method not in self._baselines:
            self._baselines[method] = self.bench.run(method, scenario=self.scenario, tier=self.tier,
                                                     seeds=list(self.seeds), target=self.target)
        return self._baselines[method]

    def table(self) -> str:
        rows = [self, *self._baselines.values()]
        names = self.metric_names()
        width = max(len(r.method) for r in rows)
        card = self.records[0]["scenario"]
        target = card.get("forget_target", card.get("forget_class", self.target))
        lines = [f"{self.scenario}, tier {self.tier}, target {target}, "
                 f"seeds {list(self.seeds)} — mean [95% interval]"]
        for r in rows:
            cells = []
            for name in names:
                if name in r.records[0]["metrics"]:
                    s = r[name]
                    cells.append(f"{name} {s.value:.3g} [{s.lower:.3g}, {s.upper:.3g}]")
            lines.append(f"  {r.method:<{width}}  " + "; ".join(cells))
        return "\n".join(lines)

    def __repr__(self) -> str:
        return f"<unlearnbench row\n{self.table()}\n>"


class Bench:
    """What the ``unlearnbench`` fixture returns: ``run`` cells, get ``Row`` s (memoised per session)."""

    def __init__(self, results: Path, device: str = "cpu", tier: str | None = None):
        self.results, self.device, self.tier_override = Path(results), device, tier
        self._rows: dict[str, Row] = {}
        self.used: list[Row] = []  # rows the current test touched (for its failure report)

    def run(self, method: Any, scenario: str = "mnist-class", tier: str = "smoke", seeds: Sequence[int] = (0,),
            target: Any = None, config: dict[str, Any] | None = None, attacks: Sequence[str] = ()) -> Row:
        """Run (or reuse) ``method`` — a registered name, an adapter class, or ``path.py:Class`` — on the
        cells (scenario, tier, target, each seed); ``config`` is set on top of the tier budget."""
        from benchmark import runner
        from benchmark.registry import METHODS
        from benchmark.submission import method_name

        tier = self.tier_override or tier
        if isinstance(method, type):
            name = method_name(method)
            if name not in METHODS or METHODS.get(name) is not method:
                METHODS.register(name, method, origin=f"pytest {method.__module__}", overwrite=name in METHODS
                                 and METHODS.origin(name).startswith("pytest"))
        else:
            name = runner.register_adapter(str(method))
        key = json.dumps([name, scenario, tier, list(seeds), target, config or {}, sorted(attacks)], default=str)
        if key not in self._rows:
            records = []
            for seed in seeds:
                plan = runner.plan(scenario, [name], None, tier, int(seed), self.device, self.results,
                                   attacks=list(attacks), target=target,
                                   overrides={name: dict(config)} if config else None)
                (path,) = runner.execute(plan, show_progress=False, log=lambda *_: None)
                rec = json.loads(path.read_text())
                if rec.get("status", "ok") != "ok":
                    f = rec.get("failure", {})
                    pytest.fail(f"{name} on {scenario} ({tier}, seed {seed}) failed in {f.get('stage')}: "
                                f"{f.get('reason')} (record: {path})", pytrace=False)
                bad = [k for k, m in rec["metrics"].items() if m["value"] is None or not math.isfinite(m["value"])]
                if bad:
                    pytest.fail(f"{name} on {scenario} seed {seed}: non-finite metrics {bad} ({path})", pytrace=False)
                records.append(rec)
            self._rows[key] = Row(name, scenario, tier, tuple(int(s) for s in seeds), target, records, self)
        row = self._rows[key]
        self.used.append(row)
        return row


def default_results_dir() -> Path:
    from benchmark import zoo

    env = os.environ.get("UNLEARNBENCH_RESULTS")
    return Path(env) if env else zoo.cache_dir() / "pytest-records"


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("unlearnbench", "unlearnbench benchmark cells")
    group.addoption("--unlearnbench-results", default=None,
                    help="folder of cached result records (default: $UNLEARNBENCH_RESULTS or <cache>/pytest-records)")
    group.addoption("--unlearnbench-device", default="cpu", help="cpu or cuda[:N] for unlearnbench cells")
    group.addoption("--unlearnbench-tier", default=None,
                    help="run every unlearnbench cell (and the shipped suites) at this tier instead")
    group.addoption("--unlearnbench-threads", type=int, default=None,
                    help="torch CPU threads for unlearnbench cells (default: chosen from the free cores)")


@pytest.fixture(scope="session")
def _unlearnbench_session(request: pytest.FixtureRequest) -> Bench:
    from benchmark.threads import configure_threads

    opt = request.config.getoption
    configure_threads(opt("--unlearnbench-threads"))
    results = Path(opt("--unlearnbench-results") or default_results_dir())
    return Bench(results, opt("--unlearnbench-device"), opt("--unlearnbench-tier"))


@pytest.fixture
def unlearnbench(_unlearnbench_session: Bench, request: pytest.FixtureRequest) -> Bench:
    """Run unlearnbench cells from a test; see ``benchmark.pytest_plugin``."""
    _unlearnbench_session.used = []
    request.node._unlearnbench_bench = _unlearnbench_session
    return _unlearnbench_session


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo) -> Any:
    outcome = yield
    report = outcome.get_result()
    bench = getattr(item, "_unlearnbench_bench", None)
    if report.when == "call" and report.failed and bench is not None and bench.used:
        seen = {id(b) for row in bench.used for b in row._baselines.values()}  # shown under their row
        text = []
        for row in bench.used:
            if id(row) not in seen:
                seen.add(id(row))
                text.append(row.table())
        report.sections.append(("unlearnbench rows (method, then its baselines)", "\n\n".join(text)))
