"""The benchmark contract: one row per measured variant, always with its bound and its check.

Every case of ``kvmem bench`` is a module in :mod:`kvmem.bench.cases` with a function
``run(*, quick: bool, device: str) -> list[BenchRow]``. A row reports our time, the time
of a bound measured in the same run (a GEMM of the same FLOP count, a matrix-vector
product, a reference implementation) and the ratio that the target is stated in. A row
whose correctness check failed carries no speed figure that anyone should read: the table
marks it and the suite exits non-zero.
"""

from __future__ import annotations

import math
import statistics
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

import torch


@dataclass
class BenchRow:
    """One measured variant of a benchmark case.

    Args:
        case: Case name, e.g. ``"slot-read"``.
        variant: What was measured, e.g. ``"softmax, blocked"``.
        size: Human-readable problem size.
        seconds: Our implementation's time (median of the repeats).
        bound: What the bound is, e.g. ``"torch.matmul, same shapes"``.
        bound_seconds: The bound's time in the same run.
        ratio: The figure the target is stated in (e.g. bound_seconds / seconds, a speed-up).
        target: The target for ``ratio``, or None when there is none.
        higher_is_better: Whether ``ratio >= target`` (True) or ``ratio <= target`` meets it.
        check: The correctness check that was run before timing, in words with its number.
        check_passed: Whether it passed.
        extra: Further measurements (peak memory, recall@k, ...), JSON-serialisable.

    Example:
        >>> row = BenchRow("demo", "x", "n=1", 1.0, "matmul", 0.5, 0.5, 0.4, True, "exact", True)
        >>> row.met
        True
    """

    case: str
    variant: str
    size: str
    seconds: float
    bound: str
    bound_seconds: float
    ratio: float
    target: float | None
    higher_is_better: bool
    check: str
    check_passed: bool
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def met(self) -> bool | None:
        """Whether the target is met (None without a target or a passed check)."""
        if self.target is None or not self.check_passed or not math.isfinite(self.ratio):
            return None
        return self.ratio >= self.target if self.higher_is_better else self.ratio <= self.target

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["met"] = self.met
        return d


def sync(device: str | torch.device) -> None:
    """Wait for queued kernels on ``device`` (a no-op on the CPU)."""
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize()


def time_call(fn: Callable[[], Any], *, repeats: int = 5, warmup: int = 1, device: str | torch.device = "cpu") -> float:
    """Median wall time of ``fn()`` in seconds over ``repeats`` calls after ``warmup`` calls.

    Example:
        >>> t = time_call(lambda: sum(range(100)), repeats=3)
        >>> t >= 0
        True
    """
    for _ in range(warmup):
        fn()
    sync(device)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        sync(device)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def time_pair(fn_a: Callable[[], Any], fn_b: Callable[[], Any], *, repeats: int = 5, warmup: int = 1,
              device: str | torch.device = "cpu") -> tuple[float, float]:
    """Median times of two calls measured in turns, so that both see the same machine load.

    Example:
        >>> a, b = time_pair(lambda: None, lambda: None, repeats=3)
        >>> a >= 0 and b >= 0
        True
    """
    for _ in range(warmup):
        fn_a()
        fn_b()
    sync(device)
    ta, tb = [], []
    for _ in range(repeats):
        start = time.perf_counter()
        fn_a()
        sync(device)
        ta.append(time.perf_counter() - start)
        start = time.perf_counter()
        fn_b()
        sync(device)
        tb.append(time.perf_counter() - start)
    return statistics.median(ta), statistics.median(tb)
