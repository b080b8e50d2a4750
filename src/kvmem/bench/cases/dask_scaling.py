"""Sweep throughput on a Dask ``LocalCluster``: 2 workers against 1 (issue 10, case 6).

The tasks are real sweep tasks (:func:`kvmem.runner.sweep.run_task`: one experiment run
with one torch thread, as ``kvmem sweep`` runs them). The same task list runs on a cluster
of 1 worker and on a cluster of 2; each clock starts once the cluster is up and each worker
has run one task of the sweep's own settings (a warm-up: kvmem imported, and the numba
kernels a task uses compiled, about 2.3 s once per process), so what is compared is the
throughput of the sweep, not the start-up. The check before any speed is reported: every task's tables and
claims are bit-identical between the two runs.

The full case repeats the pair of sweeps three times, in alternating order (1 then 2
workers, then 2 then 1, ...), and reports the median of the pairs' ratios: on a shared
2-core machine one sweep can be slowed by other activity, and a single pair then says more
about the machine than about the sweep. Every pair's ratio and the load average before it
are kept in the row's ``extra``.

The machine's own ceiling is measured beside each pair: a pure-Python loop (no memory
traffic, no Dask) run in one process, then in two processes at once; twice the single
time over the slower of the pair is the throughput ratio that two independent processes
get on this machine at that moment (``ceiling_ratios``). On a virtual machine whose two
vCPUs share a physical core or a busy host, it falls well below 2.

Target: >= 1.6x on 2 cores.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import time

from kvmem.bench.base import BenchRow
from kvmem.runner.executor import Call, open_executor
from kvmem.runner.sweep import run_task

EXPERIMENT = "capacity"
OVERRIDES: dict[str, str] = {}


def _sweep(workers: int, seeds: list[int]) -> tuple[float, dict[int, tuple], list[float]]:
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
        results, task_seconds = {}, []
        for outcome in ex.imap_unordered(run_task, calls):
            value = outcome.unwrap()
            results[outcome.key] = (value["config"], repr(value["claims"]), tuple(sorted(value["tables"].items())))
            task_seconds.append(value["seconds"])
        return time.perf_counter() - start, results, task_seconds


_SPIN = "import time\nt = time.perf_counter()\ns = 0\nfor i in range(6_000_000):\n    s += i * i\nprint(time.perf_counter() - t)"


def _spin(copies: int) -> list[float]:
    """Seconds of the pure-Python loop in each of ``copies`` processes started together."""
    procs = [subprocess.Popen([sys.executable, "-c", _SPIN], stdout=subprocess.PIPE, text=True)
             for _ in range(copies)]
    return [float(p.communicate()[0]) for p in procs]


def machine_ceiling() -> float:
    """Throughput of two independent CPU-bound processes against one, measured now."""
    alone = _spin(1)[0]
    return 2 * alone / max(_spin(2))


def run(*, quick: bool, device: str) -> list[BenchRow]:
    """Quick: 4 tasks, one pair of sweeps; full: 16 tasks (each a quick-profile ``capacity``
    run, about 0.7 s), three pairs in alternating order, median of the pairs' ratios."""
    if device != "cpu":
        raise ImportError("the Dask scaling case runs CPU workers; run it with --device cpu")
    return [_measure(list(range(4 if quick else 16)), 1 if quick else 3)]


def _measure(seeds: list[int], pairs: int) -> BenchRow:
    """``pairs`` pairs of sweeps over ``seeds`` (1 and 2 workers, alternating order)."""
    reference, same = None, True
    t1s, t2s, ratios, loads, task1, task2, ceilings = [], [], [], [], [], [], []
    for k in range(pairs):
        loads.append(round(os.getloadavg()[0], 2))
        ceilings.append(round(machine_ceiling(), 3))
        timed = {}
        for workers in ((1, 2) if k % 2 == 0 else (2, 1)):
            timed[workers] = _sweep(workers, seeds)
        for workers, (_, results, _) in timed.items():
            reference = results if reference is None else reference
            same = same and results == reference
        t1s.append(timed[1][0])
        t2s.append(timed[2][0])
        task1 += timed[1][2]
        task2 += timed[2][2]
        ratios.append(timed[1][0] / timed[2][0])
    ratio = statistics.median(ratios)
    # The pair whose ratio is the median gives the row's two times.
    k = ratios.index(ratio) if ratio in ratios else 0
    return BenchRow("dask-scaling", "sweep on 2 workers vs 1", f"{len(seeds)} tasks ({EXPERIMENT}, quick)"
                     + ("" if pairs == 1 else f", median of {pairs} pairs"), t2s[k],
                     "same sweep on 1 worker", t1s[k], ratio, 1.6, True,
                     "tables and claims of every task identical on 1 and 2 workers, in every pair", same,
                     {"tasks_per_s_1": len(seeds) / t1s[k], "tasks_per_s_2": len(seeds) / t2s[k],
                      "pair_ratios": [round(r, 3) for r in ratios],
                      "seconds_1_worker": [round(t, 3) for t in t1s],
                      "seconds_2_workers": [round(t, 3) for t in t2s],
                      "load_before_pair": loads,
                      "ceiling_ratios": ceilings,
                      "median_task_s_1_worker": round(statistics.median(task1), 3),
                      "median_task_s_2_workers": round(statistics.median(task2), 3)})
