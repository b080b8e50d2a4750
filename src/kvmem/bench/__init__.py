"""The benchmark suite behind ``kvmem bench``.

Every case checks its own correctness first, then times our implementation against a
bound measured in the same run (a GEMM of the same FLOP count, a matrix-vector product, a
reference implementation) and reports the ratio that its target is stated in. Nothing here
is asserted by the unit tests except correctness: speed is a measurement, not a test.

Cases (module in :mod:`kvmem.bench.cases`, each with ``run(*, quick, device)``):

==========================  ===========================================================
``slot-read``               blocked softmax read of a large slot memory vs ``torch.matmul``
``matrix-writes``           streaming Hebbian and delta writes vs one GEMM of equal FLOPs
``fast-weight-ops``         chunked delta rule / linear attention vs recurrence and GEMM
``capacity``                batched Hopfield probes vs a per-probe loop; async vs mat-vec
``topk-ann``                faiss IVF / HNSW top-k vs exact search (optional faiss)
``dask-scaling``            sweep throughput on 2 Dask workers vs 1
``free-recall-likelihood``  CMR likelihood of a data set vs cymr's
==========================  ===========================================================

Example:
    >>> sorted(CASES)[:2]
    ['capacity', 'dask-scaling']
"""

from __future__ import annotations

import importlib
import json
import os
import platform
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from .base import BenchRow, time_call, time_pair

__all__ = ["CASES", "BenchRow", "BenchSuite", "machine_info", "markdown_table", "run_suite", "time_call", "time_pair"]

CASES: dict[str, str] = {
    "slot-read": "kvmem.bench.cases.slot_read",
    "matrix-writes": "kvmem.bench.cases.matrix_writes",
    "fast-weight-ops": "kvmem.bench.cases.ops",
    "capacity": "kvmem.bench.cases.capacity",
    "topk-ann": "kvmem.bench.cases.topk_ann",
    "dask-scaling": "kvmem.bench.cases.dask_scaling",
    "free-recall-likelihood": "kvmem.bench.cases.free_recall_likelihood",
}


def machine_info(device: str | torch.device = "cpu") -> dict[str, Any]:
    """The facts a benchmark number needs beside it: CPU, cores, threads, BLAS, torch, device.

    Example:
        >>> info = machine_info()
        >>> info["device"], isinstance(info["threads"], int)
        ('cpu', True)
    """
    device = str(device)
    info: dict[str, Any] = {
        "torch": torch.__version__, "threads": torch.get_num_threads(), "python": platform.python_version(),
        "machine": platform.machine(), "cpus": os.cpu_count(), "device": device,
    }
    try:
        info["cpu_affinity"] = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        pass
    try:
        with open("/proc/cpuinfo") as fh:
            names = [line.split(":", 1)[1].strip() for line in fh if line.startswith("model name")]
        info["cpu_model"] = names[0] if names else platform.processor() or "unknown"
    except OSError:
        info["cpu_model"] = platform.processor() or "unknown"
    blas = re.search(r"BLAS_INFO=([\w.-]+)", torch.__config__.show())
    info["blas"] = blas.group(1) if blas else ("mkl" if torch.backends.mkl.is_available() else "unknown")
    if device.startswith("cuda") and torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name()
    try:
        info["load_average"] = [round(x, 2) for x in os.getloadavg()]
    except OSError:
        pass
    return info


@dataclass
class BenchSuite:
    """What one ``kvmem bench`` run measured.

    Attributes:
        rows: Every measured variant of every case that ran.
        skipped: Case name -> why it did not run (e.g. an optional package is missing).
        machine: :func:`machine_info` at the start of the run.
        quick: Whether the quick sizes were used.
        seconds: Wall time of the whole run.
    """

    rows: list[BenchRow]
    skipped: dict[str, str] = field(default_factory=dict)
    machine: dict[str, Any] = field(default_factory=dict)
    quick: bool = False
    seconds: float = 0.0

    @property
    def all_checks_passed(self) -> bool:
        return all(r.check_passed for r in self.rows)

    def to_dict(self) -> dict[str, Any]:
        return {"machine": self.machine, "quick": self.quick, "seconds": self.seconds,
                "all_checks_passed": self.all_checks_passed, "skipped": self.skipped,
                "rows": [r.to_dict() for r in self.rows]}


def _fmt_seconds(s: float) -> str:
    if not s or s != s:
        return "-"
    if s >= 1:
        return f"{s:.2f} s"
    if s >= 1e-3:
        return f"{s * 1e3:.1f} ms"
    return f"{s * 1e6:.0f} us"


def markdown_table(suite: BenchSuite) -> str:
    """The suite's rows as a Markdown table (one line per variant), with the machine above it.

    Example:
        >>> row = BenchRow("demo", "x", "n=1", 1.0, "matmul", 0.5, 0.5, 0.4, True, "exact", True)
        >>> print(markdown_table(BenchSuite([row], machine={"cpu_model": "cpu"})).splitlines()[-1])
        | demo | x | n=1 | 1.00 s | matmul: 500.0 ms | 0.5 | >= 0.4 | yes | exact |
    """
    m = suite.machine
    lines = []
    if m:
        desc = ", ".join(f"{k} {m[k]}" for k in ("cpu_model", "cpu_affinity", "threads", "blas", "torch", "device", "gpu",
                                                  "load_average") if k in m)
        lines += [f"Machine: {desc}.", ""]
    lines += ["| case | variant | size | ours | bound | ratio | target | met | check |",
              "|---|---|---|---|---|---|---|---|---|"]
    for r in suite.rows:
        target = "-" if r.target is None else (">= " if r.higher_is_better else "<= ") + f"{r.target:g}"
        met = {True: "yes", False: "**no**", None: "-"}[r.met]
        ratio = f"{r.ratio:.3g}" if r.check_passed else "(check failed)"
        check = r.check if r.check_passed else f"**FAILED**: {r.check}"
        lines.append(f"| {r.case} | {r.variant} | {r.size} | {_fmt_seconds(r.seconds)} | {r.bound}: "
                     f"{_fmt_seconds(r.bound_seconds)} | {ratio} | {target} | {met} | {check} |")
    for name, why in suite.skipped.items():
        lines.append(f"| {name} | skipped | - | - | - | - | - | - | {why} |")
    return "\n".join(lines)


def run_suite(
    *,
    quick: bool = False,
    only: Sequence[str] | None = None,
    device: str = "cpu",
    out: str | Path | None = None,
    echo: Callable[[str], None] | None = None,
) -> BenchSuite:
    """Run the benchmark cases and optionally write ``bench.json`` and ``bench.md`` to ``out``.

    A case whose optional dependency is missing (``ImportError``) is skipped with the reason.

    Args:
        quick: Small sizes (seconds per case) instead of the issue's sizes.
        only: Case names to run (default: all of :data:`CASES`).
        device: ``"cpu"`` or a CUDA device.
        out: Folder for the JSON and Markdown results.
        echo: Called with one line per finished case (e.g. ``print``).

    Raises:
        ValueError: an unknown case name in ``only``, or a CUDA device without CUDA.
    """
    names = list(CASES) if not only else list(only)
    unknown = [n for n in names if n not in CASES]
    if unknown:
        raise ValueError(f"only: unknown case(s) {unknown}; known: {', '.join(CASES)}")
    if str(device).startswith("cuda") and not torch.cuda.is_available():
        raise ValueError(f"device: {device!r} requested but CUDA is not available here")
    start = time.perf_counter()
    suite = BenchSuite(rows=[], machine=machine_info(device), quick=quick)
    for name in names:
        try:
            module = importlib.import_module(CASES[name])
        except ImportError as err:
            suite.skipped[name] = f"not available: {err}"
            continue
        t0 = time.perf_counter()
        try:
            rows = module.run(quick=quick, device=device)
        except ImportError as err:
            suite.skipped[name] = f"optional dependency missing: {err}"
            if echo:
                echo(f"{name}: skipped ({err})")
            continue
        suite.rows.extend(rows)
        if echo:
            for r in rows:
                status = "check FAILED" if not r.check_passed else f"ratio {r.ratio:.3g}" + (
                    "" if r.met is None else (" (target met)" if r.met else " (target NOT met)"))
                echo(f"{name} / {r.variant}: {status}")
            echo(f"{name}: {time.perf_counter() - t0:.1f} s")
    suite.seconds = time.perf_counter() - start
    if out is not None:
        out = Path(out)
        out.mkdir(parents=True, exist_ok=True)
        (out / "bench.json").write_text(json.dumps(suite.to_dict(), indent=2, default=str))
        (out / "bench.md").write_text(markdown_table(suite) + "\n")
    return suite
