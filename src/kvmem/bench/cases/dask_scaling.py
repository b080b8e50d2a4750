"""Sweep throughput on a Dask ``LocalCluster``: 2 workers against 1 (issue 10, case 6).

The tasks are real sweep tasks (:func:`kvmem.runner.sweep.run_task`: one experiment run
with one torch thread, as ``kvmem sweep`` runs them). The same task list runs on a cluster
of 1 worker and on a cluster of 2; each clock starts once the cluster is up and each worker
has run one task of the sweep's own settings (a warm-up: kvmem imported, and the numba
kernels a task uses compiled, about 2.3 s once per process), so what is compared is the
throughput of the sweep, not the start-up. The check before any speed is reported: every task's tables and
claims are bit-identical between the two runs.

Target: >= 1.6x on 2 cores.
"""

from __future__ import annotations

import time

from kvmem.bench.base import BenchRow
from kvmem.runner.executor import Call, open_executor
from kvmem.runner.sweep import run_task

EXPERIMENT = "capacity"
OVERRIDES: dict[str, str] = {}


def _sweep(workers: int, seeds: list[int]) -> tuple[float, dict[int, tuple]]:
    with open_executor(workers=workers) as ex:
        # The warm-up runs the sweep's own settings on every worker (client.run, so that no
        # worker is left out): a smaller task would leave the numba compile, once per
        # worker process, inside the timed sweep.
        if hasattr(ex, "client"):
            ex.client.run(run_task, EXPERIMENT, "quick", OVERRIDES, 1000)
        else:
            warm = [Call(("warm", i), (EXPERIMENT, "quick", OVERRIDES, 1000 + i)) for i in range(workers)]
            for outcome in ex.imap_unordered(run_task, warm):
                outcome.unwrap()
        start = time.perf_counter()
        calls = [Call(seed, (EXPERIMENT, "quick", OVERRIDES, seed)) for seed in seeds]
        results = {}
        for outcome in ex.imap_unordered(run_task, calls):
            value = outcome.unwrap()
            results[outcome.key] = (value["config"], repr(value["claims"]), tuple(sorted(value["tables"].items())))
        return time.perf_counter() - start, results


def run(*, quick: bool, device: str) -> list[BenchRow]:
    """Quick: 4 tasks; full: 16 tasks (each a quick-profile ``capacity`` run, about 1 s)."""
    if device != "cpu":
        raise ImportError("the Dask scaling case runs CPU workers; run it with --device cpu")
    seeds = list(range(4 if quick else 16))
    t1, r1 = _sweep(1, seeds)
    t2, r2 = _sweep(2, seeds)
    same = r1 == r2
    return [BenchRow("dask-scaling", "sweep on 2 workers vs 1", f"{len(seeds)} tasks ({EXPERIMENT}, quick)", t2,
                     "same sweep on 1 worker", t1, t1 / t2, 1.6, True,
                     "tables and claims of every task identical on 1 and 2 workers", same,
                     {"tasks_per_s_1": len(seeds) / t1, "tasks_per_s_2": len(seeds) / t2})]
