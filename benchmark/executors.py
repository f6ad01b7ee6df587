"""Where the cells of a grid run: in this process (``local``) or as Dask tasks (``dask``).

A cell — one (scenario, forget target, method, seed, tier) — is described by a picklable ``CellSpec``
and run by ``run_cell``, which plans and executes it with the same runner as the local loop, so its
record is the one the local executor writes (same identity, same file name, same numbers for the same
seed). With ``--executor dask`` the cells become tasks on a ``dask.distributed`` cluster:

- no ``--scheduler``: a ``LocalCluster`` on this machine, one single-threaded worker process per
  ``--workers`` (default: one per free core on CPU, one per GPU on CUDA), each running torch with the
  free cores divided among the workers (``benchmark.threads``);
- ``--scheduler tcp://host:8786``: any running scheduler — e.g. workers started on a SLURM or PBS
  allocation through ``dask-jobqueue``, or on Kubernetes through ``dask-kubernetes`` — with no code
  change (docs/scale-out.md has a SLURM example). Workers need this package installed and the same
  results folder mounted.

Cells on CUDA declare the resource ``GPU: 1``; a worker runs one such cell at a time on its own GPU
(the local cluster gives worker *i* the GPU *i*; on a batch system set ``CUDA_VISIBLE_DEVICES`` per
worker and start it with ``--resources GPU=1``). Records are written atomically by the workers into the
shared results folder, so a killed grid resumes like a local one.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from benchmark import UnlearnbenchError


@dataclass(frozen=True)
class CellSpec:
    scenario: str
    method: str  # a registered name, or an adapter target (path.py:Class, package.module:Class)
    target: Any
    seed: int
    tier: str
    device: str
    out_dir: str
    attacks: tuple[str, ...] | None = None
    overrides: dict[str, Any] = field(default_factory=dict)
    force: bool = False
    threads: int | None = None
    save_weights: bool = False

    @property
    def resources(self) -> dict[str, int]:
        return {"GPU": 1} if self.device.startswith("cuda") else {}

    def label(self) -> str:
        return f"{self.method} seed {self.seed} target {self.target}"


def run_cell(spec: CellSpec, log: Callable[[str], None] | None = None) -> str:
    """Plan and execute one cell in this process; return its record path (as text, for pickling)."""
    from benchmark import runner
    from benchmark.threads import configure_threads

    configure_threads(spec.threads)
    name = runner.register_adapter(spec.method)
    run = runner.plan(spec.scenario, [name], None, spec.tier, spec.seed, _worker_device(spec.device), spec.out_dir,
                      attacks=None if spec.attacks is None else list(spec.attacks), target=spec.target,
                      overrides={name: dict(spec.overrides)} if spec.overrides else None)
    run.save_weights = spec.save_weights
    (path,) = runner.execute(run, show_progress=False, force=spec.force, log=log or (lambda *_: None))
    return str(path)


def _worker_device(device: str) -> str:
    """On a Dask worker, ``cuda`` means this worker's GPU: ``UNLEARNBENCH_WORKER_GPU``, else the local
    cluster's worker index, else 0 (a batch system's ``CUDA_VISIBLE_DEVICES`` already narrowed it)."""
    if device != "cuda":
        return device
    index = os.environ.get("UNLEARNBENCH_WORKER_GPU")
    if index is None:
        try:
            import torch
            from distributed import get_worker

            name = get_worker().name
            index = str(int(name) % max(1, torch.cuda.device_count())) if str(name).isdigit() else "0"
        except (ImportError, ValueError):
            index = "0"
    return f"cuda:{index}"


def specs_of(plans: Sequence[Any], method_sources: dict[str, str], overrides: dict[str, dict[str, Any]],
             attacks: Sequence[str] | None, force: bool, threads: int | None) -> list[CellSpec]:
    """One spec per (plan, method cell), in the local loop's order."""
    out = []
    for plan in plans:
        for cell in plan.cells:
            overlay = plan.scenario.overlay
            ref = overlay["path"] if overlay else str(plan.scenario.path) if _is_path(plan) else plan.scenario.name
            out.append(CellSpec(ref,
                                method_sources.get(cell.name, cell.name), plan.target, plan.seed, plan.tier,
                                plan.device, str(plan.out_dir), None if attacks is None else tuple(attacks),
                                dict(overrides.get(cell.name, {})), force, threads, plan.save_weights))
    return out


def _is_path(plan: Any) -> bool:
    from benchmark.registry import SCENARIOS

    return plan.scenario.name not in SCENARIOS or Path(SCENARIOS.get(plan.scenario.name)).resolve() != \
        Path(plan.scenario.path).resolve()


def run_dask(specs: Sequence[CellSpec], scheduler: str | None = None, workers: int | None = None,
             show_progress: bool = True, log: Callable[[str], None] = print) -> list[Path]:
    """Run ``specs`` as Dask tasks; return the record paths in ``specs`` order. A task that raises (not a
    method failure — those are records) is reported and the others go on."""
    try:
        from distributed import Client, LocalCluster, as_completed
    except ImportError:
        raise UnlearnbenchError("--executor dask needs dask.distributed: pip install 'unlearnbench[dask]'") from None
    from benchmark.threads import choose_threads

    cluster = None
    if scheduler:
        client = Client(scheduler, timeout="30s")
    else:
        cuda = any(s.device.startswith("cuda") for s in specs)
        n = workers or (_gpu_count() if cuda else choose_threads(1)[0])
        threads = max(1, choose_threads(n)[0])
        cluster = LocalCluster(n_workers=n, threads_per_worker=1, processes=True, dashboard_address=None,
                               resources={"GPU": 1} if cuda else None,
                               env={"OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)})
        client = Client(cluster)
        specs = [s if s.threads is not None else _with_threads(s, threads) for s in specs]
        log(f"dask: local cluster, {n} worker process(es) × {threads} torch thread(s)")
    t0 = time.time()
    try:
        futures = {client.submit(run_cell, s, resources=s.resources or None, pure=False, key=f"cell-{i}-{s.method}"): i
                   for i, s in enumerate(specs)}
        paths: list[Path | None] = [None] * len(specs)
        errors = []
        for done, future in enumerate(as_completed(futures), 1):
            i = futures[future]
            try:
                paths[i] = Path(future.result())
                log(f"[{done}/{len(specs)}] {specs[i].label()} → {paths[i].name}")
            except Exception as exc:  # noqa: BLE001 - a crashed task (bad worker) must not lose the others
                errors.append(f"{specs[i].label()}: {type(exc).__name__}: {exc}")
                log(f"[{done}/{len(specs)}] {specs[i].label()} crashed: {type(exc).__name__}: {exc}")
    finally:
        client.close()
        if cluster is not None:
            cluster.close()
    log(f"dask: {len(specs)} cells in {time.time() - t0:.1f}s")
    if errors:
        raise UnlearnbenchError(f"{len(errors)} Dask task(s) crashed (finished records are kept): {errors[0]}")
    return [p for p in paths if p is not None]


def _with_threads(spec: CellSpec, threads: int) -> CellSpec:
    from dataclasses import replace

    return replace(spec, threads=threads)


def _gpu_count() -> int:
    import torch

    return max(1, torch.cuda.device_count())
