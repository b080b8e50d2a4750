"""Benchmark case ``slot-read``: the blocked softmax read of a large slot memory vs ``torch.matmul``.

A softmax read ``softmax(beta q K^T / sqrt(D)) V`` of M queries from N slots is two matrix
products of 2 M N D FLOPs each (``Q K^T`` and ``P V``) plus O(M N) exponentials. The
blocked read (:class:`kvmem.SlotMemory` with ``block_size``) does both products one block
of slots at a time with an online softmax, so it never holds more than ``[M, block]``
scores. The bound is ``torch.matmul`` on the same two GEMM shapes, unblocked, writing
into preallocated outputs (no allocation is timed); the two are timed in turns
(:func:`~kvmem.bench.base.time_pair`). The ratio bound time / our time is our achieved
FLOP/s divided by matmul's (target >= 0.7, issue 10); ``extra["ratio_of_fastest"]`` is
the same ratio from the fastest repeat of each side (less sensitive to a shared machine's
load).

Check first: the float32 blocked read against the float64 formula
``softmax(beta Q K^T / sqrt(D)) V`` computed in one piece (on the first 64 queries), max
abs error relative to the largest output entry <= 1e-4.

Peak memory: a fresh process loads the inputs and runs the blocked read, then the plain
read, reading its peak resident set (``VmHWM``, reset by ``/proc/self/clear_refs`` to the
current size before each read) after each; glibc's mmap threshold is fixed so that freed
blocks leave the resident set. On CUDA the allocator's peak is used. In the same process as the timing,
a dispatch hook also records the largest storage any operation of the blocked read allocates.

Full: M = 1,024 queries, N = 65,536 slots, D = Dv = 256, float32, block 2,048 slots.
Quick: M = 256, N = 16,384, D = 128, block 4,096 (fewer, larger blocks: small products
suffer most from a busy machine).

Run:  kvmem bench --only slot-read, or python -m kvmem.bench.cases.slot_read [--quick]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from collections.abc import Callable

import torch
from torch.utils._python_dispatch import TorchDispatchMode

import kvmem
from kvmem.bench.base import BenchRow, time_pair

FULL = {"queries": 1024, "slots": 65536, "dim": 256, "block": 2048, "beta": 1.0, "repeats": 7}
QUICK = {"queries": 256, "slots": 16384, "dim": 128, "block": 4096, "beta": 1.0, "repeats": 3}
CHECK_QUERIES = 64
TOLERANCE = 1e-4


def paired(ours: Callable[[], object], bound: Callable[[], object], repeats: int, device: str = "cpu") -> dict:
    """Our call and the bound timed in turns, one :func:`time_pair` repeat at a time.

    Returns the medians (what the row reports, as ``time_pair(repeats=...)`` would) and the
    fastest time of each side: on a shared machine the medians carry the load of the moment,
    the minima come closer to what an idle machine gives. Both are kept.
    """
    ta, tb = [], []
    for i in range(repeats):
        a, b = time_pair(ours, bound, repeats=1, warmup=1 if i == 0 else 0, device=device)
        ta.append(a)
        tb.append(b)
    return {"ours": statistics.median(ta), "bound": statistics.median(tb), "ours_min": min(ta), "bound_min": min(tb),
            "ours_all": ta, "bound_all": tb}


def make_inputs(queries: int, slots: int, dim: int, device: str = "cpu", seed: int = 0):
    """Seeded float32 queries ``[M, D]``, keys ``[N, D]`` and values ``[N, D]``."""
    gen = torch.Generator().manual_seed(seed)
    q, k, v = (torch.randn(n, dim, generator=gen) for n in (queries, slots, slots))
    return q.to(device), k.to(device), v.to(device)


def memory(keys: torch.Tensor, values: torch.Tensor, beta: float, block: int | None) -> kvmem.SlotMemory:
    mem = kvmem.SlotMemory("scaled_dot", {"name": "softmax", "beta": beta}, block_size=block)
    mem.write(keys, values)
    return mem


class LargestAllocation(TorchDispatchMode):
    """Records the largest new storage (in bytes) that any aten operation allocates.

    Views and in-place results share an input's storage and are not counted.
    """

    def __init__(self):
        super().__init__()
        self.largest = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        leaves = torch.utils._pytree.tree_leaves((args, kwargs))
        inputs = {t.untyped_storage().data_ptr() for t in leaves if isinstance(t, torch.Tensor)}
        for t in torch.utils._pytree.tree_leaves(out):
            if isinstance(t, torch.Tensor) and t.untyped_storage().data_ptr() not in inputs:
                self.largest = max(self.largest, t.untyped_storage().nbytes())
        return out


def check(mem: kvmem.SlotMemory, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, beta: float) -> dict:
    """The blocked float32 read against the float64 formula on the first queries."""
    qs = q[:CHECK_QUERIES]
    with torch.no_grad():
        ours = mem.read(qs).double()
        q64, k64, v64 = qs.double(), k.double(), v.double()
        ref = torch.softmax(beta * (q64 @ k64.T) / q.shape[-1] ** 0.5, dim=-1) @ v64
    err = float((ours - ref).abs().max() / ref.abs().max())
    return {"rel_error": err, "passed": err <= TOLERANCE}


def _rss_bytes() -> int:
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def _hwm_bytes() -> int:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    raise OSError("no VmHWM in /proc/self/status")


def peak_of_reads(sizes: dict, blocks: list, device: str) -> list[dict]:
    """Peak memory of one read above the inputs, for each block size in turn (None: the
    plain read). Meant to run in a fresh process; the peak is reset before each read."""
    q, k, v = make_inputs(sizes["queries"], sizes["slots"], sizes["dim"], device)
    results = []
    for block in blocks:
        mem = memory(k, v, sizes["beta"], block)
        with torch.no_grad():
            mem.read(q[:2])  # libraries allocate their workspaces once, on first use
            if device.startswith("cuda"):
                torch.cuda.synchronize()
                base = torch.cuda.memory_allocated()
                torch.cuda.reset_peak_memory_stats()
                mem.read(q)
                torch.cuda.synchronize()
                results.append({"peak_extra_bytes": torch.cuda.max_memory_allocated() - base,
                                "method": "CUDA allocator peak"})
                continue
            base = _rss_bytes()
            try:
                with open("/proc/self/clear_refs", "w") as fh:
                    fh.write("5")  # the peak resident set (VmHWM) restarts from the current size
                method = "VmHWM after clear_refs, fresh process"
            except OSError:
                # Without a reset the first read's peak would hide a smaller later one: the
                # caller lists the blocked read (the smaller) first.
                method = "VmHWM since the process started (a lower bound for all but the first read)"
            mem.read(q)
            results.append({"peak_extra_bytes": max(0, _hwm_bytes() - base), "method": method})
    return results


def measure_peaks(sizes: dict, blocks: list, device: str) -> list[dict]:
    """:func:`peak_of_reads` in a fresh Python process, so that no earlier allocation hides a peak.

    glibc's mmap threshold is fixed at 128 KiB there, so that every freed block of scores
    is returned to the system at once instead of lingering in the heap.
    """
    env = dict(os.environ)
    env.setdefault("MALLOC_MMAP_THRESHOLD_", str(128 * 1024))
    spec = json.dumps({"sizes": sizes, "blocks": blocks, "device": device, "threads": torch.get_num_threads()})
    out = subprocess.run([sys.executable, "-m", "kvmem.bench.cases.slot_read", "--child-peak", spec],
                         capture_output=True, text=True, env=env, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def run(*, quick: bool, device: str, sizes: dict | None = None, peak: bool = True) -> list[BenchRow]:
    """Blocked softmax read vs the two GEMMs (target >= 0.7 of matmul's FLOP/s).

    Args:
        quick: the quick sizes instead of the issue's.
        device: ``"cpu"`` or a CUDA device.
        sizes: overrides of the sizes (keys of :data:`FULL`), e.g. for tests.
        peak: also measure the peak memory of the blocked and plain reads in fresh processes.
    """
    sz = {**(QUICK if quick else FULL), **(sizes or {})}
    m, n, d, block = sz["queries"], sz["slots"], sz["dim"], sz["block"]
    q, k, v = make_inputs(m, n, d, device)
    mem = memory(k, v, sz["beta"], block)
    result = check(mem, q, k, v, sz["beta"])
    with torch.no_grad():
        with LargestAllocation() as largest:
            mem.read(q)
        scores = torch.empty(m, n, device=device)
        probs = torch.rand(m, n, generator=torch.Generator().manual_seed(1)).to(device)
        out = torch.empty(m, d, device=device)

        def bound():
            torch.matmul(q, k.T, out=scores)
            torch.matmul(probs, v, out=out)

        times = paired(lambda: mem.read(q), bound, sz["repeats"], device)
    ours, gemm = times["ours"], times["bound"]
    flop = 2.0 * 2.0 * m * n * d
    extra = {
        "flop": flop, "gflop_per_s": flop / ours / 1e9, "matmul_gflop_per_s": flop / gemm / 1e9,
        "ratio_of_fastest": times["bound_min"] / times["ours_min"], "repeats": sz["repeats"],
        "seconds_each": times["ours_all"], "bound_seconds_each": times["bound_all"],
        "rel_error_vs_float64": result["rel_error"], "block": block,
        "largest_allocation_bytes": largest.largest, "one_block_bytes": m * block * 4, "all_scores_bytes": m * n * 4,
    }
    if peak:
        mib = 2.0**-20
        blocked, plain = measure_peaks(sz, [block, None], device)
        extra.update({
            "peak_extra_mib_blocked": blocked["peak_extra_bytes"] * mib,
            "peak_extra_mib_plain": plain["peak_extra_bytes"] * mib,
            "one_block_mib": m * block * 4 * mib, "all_scores_mib": m * n * 4 * mib,
            "peak_method": blocked["method"],
        })
    return [BenchRow(
        "slot-read", f"softmax, blocked ({block} slots), online softmax", f"M={m}, N={n}, D={d}, float32",
        ours, "torch.matmul, Q K^T and P V (same shapes)", gemm, gemm / ours, 0.7, True,
        f"max abs error {result['rel_error']:.1e} x max|out| vs float64 softmax formula (tol {TOLERANCE:.0e})",
        result["passed"], extra)]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--child-peak", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child_peak:
        spec = json.loads(args.child_peak)
        torch.set_num_threads(spec["threads"])
        print(json.dumps(peak_of_reads(spec["sizes"], spec["blocks"], spec["device"])))
        return
    for row in run(quick=args.quick, device=args.device):
        print(json.dumps(row.to_dict(), indent=2))


if __name__ == "__main__":
    main()
