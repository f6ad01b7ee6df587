"""Deliberate torch CPU thread counts: never more threads than free cores.

On a small machine, torch's default (one thread per core) next to another busy process oversubscribes
the cores and a tiny UNet's forward pass can go from 0.025 s to 3 s (measured on 2 cores: BlindSpot's
quick cell took 1,252 s instead of 43 s). The harness therefore picks its thread count from the cores
this process may run on (``os.sched_getaffinity``), minus the ones other processes keep busy (the
1-minute load average, rounded), divided among the workers that share them; ``--threads`` or
``OMP_NUM_THREADS`` overrides the choice. The choice and its reason go into every record's environment.
"""

from __future__ import annotations

import os

_CHOICE: dict[str, object] = {}


def available_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def busy_cores() -> int:
    """Cores other processes keep busy now (the rounded 1-minute load average), 0 where unknown."""
    try:
        return int(round(os.getloadavg()[0]))
    except (AttributeError, OSError):
        return 0


def choose_threads(workers: int = 1, cores: int | None = None, busy: int | None = None) -> tuple[int, str]:
    """(threads per worker, reason): the free cores shared among ``workers``, at least one."""
    cores = available_cores() if cores is None else cores
    busy = busy_cores() if busy is None else busy
    free = max(1, cores - busy)
    threads = max(1, free // max(1, workers))
    return threads, f"{cores} cores available, ~{busy} busy (load average), {workers} worker(s) → {threads}"


def configure_threads(threads: int | None = None, workers: int = 1) -> int:
    """Set torch's intra-op threads: ``threads`` if given, else ``OMP_NUM_THREADS`` if set, else the
    choice above. Returns the count; ``chosen()`` reports it for records."""
    import torch

    if threads is not None:
        if threads < 1:
            from benchmark import UnlearnbenchError

            raise UnlearnbenchError(f"--threads must be a positive integer, got {threads}")
        reason = "set by --threads"
    elif os.environ.get("OMP_NUM_THREADS", "").isdigit() and int(os.environ["OMP_NUM_THREADS"]) > 0:
        threads, reason = int(os.environ["OMP_NUM_THREADS"]), "set by OMP_NUM_THREADS"
    else:
        threads, reason = choose_threads(workers)
    torch.set_num_threads(threads)
    _CHOICE.update(threads=threads, reason=reason)
    return threads


def chosen() -> dict[str, object]:
    """The last ``configure_threads`` decision ({} if the harness never chose)."""
    return dict(_CHOICE)
