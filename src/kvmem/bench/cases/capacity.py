"""Benchmark: batched Hopfield retrieval against a per-trial, per-probe Python loop.

Both compute the same thing: the classical Hopfield network (Hebbian, zero diagonal)
stores P = alpha N random +-1 patterns in each of T independent trials, and every stored
pattern is run through the sign dynamics until it stops changing (or for ``steps``
iterations), as a capacity probe does. Two cases:

- ``sync``: all neurons at once. The loop does one trial and one probe at a time (a
  matrix-vector product per step, stopping when the state stops changing); the batched
  path is ``ClassicalHopfield.retrieve(mode="sync")`` on all trials and probes at once.
- ``async``: neurons one at a time in a random order per sweep. The loop visits neuron
  after neuron of one probe (a dot product each); the batched path is
  ``retrieve(mode="async")`` on every probe of every trial. The loop uses the same random
  orders (drawn the same way from the same seed), so the final states must be identical.

The sync case runs the compiled numba kernel of the Hebbian dynamics when numba is
installed (``--backend``, or the ``KVMEM_HOPFIELD_BACKEND`` environment variable, picks
``numba`` or ``numpy``; the JIT compile happens in the warm-up, before any timing); each
case records the backend its batched side used. A case counts only after the two give
identical final states. The batched time includes
the write (``batched``), as the loop's includes building its weight matrices; the time of
``retrieve`` alone is reported beside it. Both sides run on ``--threads`` torch threads and
are timed in turns (``time_pair``-style medians), so that both see the same machine load.
The default is one thread: on the shared 2-core development machine a second intra-op
thread made the batched path 5x slower (each small product waits for a busy core), while
the loop gains at most 1.3x from it on a quiet machine.

Run:  kvmem bench --only capacity, or python benchmarks/bench_capacity.py [--n 500] [--trials 50] [--alpha 0.12] [--threads 1]
[--backend auto|numba|numpy] [--out DIR]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import statistics
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import torch

import kvmem
from kvmem.bench import machine_info
from kvmem.bench.base import BenchRow, time_pair
from kvmem.memory import _hopfield_numba
from kvmem.paradigms import capacity


def loop_reference(patterns: torch.Tensor, steps: int) -> torch.Tensor:
    """Per-trial, per-probe synchronous dynamics: patterns ``[T, P, N]`` -> final states."""
    trials, p, n = patterns.shape
    out = torch.empty_like(patterns)
    for t in range(trials):
        x = patterns[t]
        # N W in integers (exact), so the sign and its tie rule see the true field.
        w = x.T @ x
        w.fill_diagonal_(0.0)
        for mu in range(p):
            s = x[mu]
            for _ in range(steps):
                new = torch.where(w @ s >= 0, 1.0, -1.0)
                if torch.equal(new, s):
                    break
                s = new
            out[t, mu] = s
    return out


def loop_reference_async(patterns: torch.Tensor, steps: int, seed: int = 0) -> torch.Tensor:
    """Per-trial, per-probe asynchronous dynamics with ``retrieve``'s random orders."""
    trials, p, n = patterns.shape
    gen = torch.Generator().manual_seed(seed)
    # retrieve draws one order tensor per sweep for the whole batch; draw the same ones.
    orders = [torch.rand(trials, p, n, generator=gen).argsort(dim=-1).numpy() for _ in range(steps)]
    x_all = patterns.numpy().astype(np.float64)
    out = np.empty_like(x_all)
    for t in range(trials):
        x = x_all[t]
        w = x.T @ x  # N W in integers (exact)
        np.fill_diagonal(w, 0.0)
        for mu in range(p):
            s = x[mu].copy()
            for sweep in range(steps):
                changed = False
                for i in orders[sweep][t, mu]:
                    new = 1.0 if w[i] @ s >= 0 else -1.0
                    if new != s[i]:
                        s[i], changed = new, True
                if not changed:
                    break
            out[t, mu] = s
    return torch.from_numpy(out).to(patterns.dtype)


def batched(patterns: torch.Tensor, steps: int, mode: str = "sync") -> torch.Tensor:
    """Write the patterns into one batched network and retrieve every one of them."""
    net = kvmem.ClassicalHopfield()
    net.write(patterns)
    return net.retrieve(patterns, steps=steps, mode=mode, seed=0).states


def in_turns(fns: dict[str, Callable[[], object]], repeats: int) -> dict[str, float]:
    """Median time of each callable, the callables measured in turns within each repeat."""
    times: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            start = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(t) for name, t in times.items()}


@contextlib.contextmanager
def hebbian_backend(name: str | None) -> Iterator[None]:
    """The synchronous Hebbian path of ``retrieve`` inside the block (None: unchanged)."""
    before = _hopfield_numba.backend
    if name is not None:
        _hopfield_numba.backend = name
    try:
        yield
    finally:
        _hopfield_numba.backend = before


@contextlib.contextmanager
def threads(n: int) -> Iterator[None]:
    """Torch on ``n`` intra-op threads inside the block (``n <= 0``: unchanged)."""
    before = torch.get_num_threads()
    if n > 0:
        torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=500)
    parser.add_argument("--trials", type=int, default=50)
    parser.add_argument("--alpha", type=float, default=0.12)
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1, help="torch threads for both sides (0: unchanged)")
    parser.add_argument("--backend", choices=_hopfield_numba.BACKENDS, default=None,
                        help="path of the sync Hebbian dynamics (default: KVMEM_HOPFIELD_BACKEND, else auto)")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)

    p = max(1, round(args.alpha * args.n))
    patterns = capacity.make_patterns(args.trials, p, args.n, seed=0)
    net = kvmem.ClassicalHopfield()
    net.write(patterns)
    cases = []
    with threads(args.threads), hebbian_backend(args.backend):
        for mode, loop in (("sync", loop_reference), ("async", loop_reference_async)):
            # The check doubles as the warm-up of both sides.
            if not torch.equal(loop(patterns, args.steps), batched(patterns, args.steps, mode)):
                raise SystemExit(f"{mode}: batched and loop states differ: the speed-up is not reported")
            t = in_turns({"loop": lambda: loop(patterns, args.steps),
                          "batched": lambda: batched(patterns, args.steps, mode),
                          "retrieve": lambda: net.retrieve(patterns, steps=args.steps, mode=mode, seed=0)},
                         args.repeats)
            # Only the synchronous dynamics have a numba kernel.
            backend = _hopfield_numba.sync_backend(args.trials * p, p, args.n) if mode == "sync" else "numpy"
            cases.append({"case": f"classical Hopfield retrieval, {mode} dynamics", "mode": mode, "backend": backend,
                          "loop_seconds": t["loop"], "batched_seconds": t["batched"], "speedup": t["loop"] / t["batched"],
                          "retrieve_seconds": t["retrieve"], "retrieve_speedup": t["loop"] / t["retrieve"],
                          "identical_states": True})
            print(f"{mode:5s} N={args.n} P={p} trials={args.trials}: loop {t['loop']:.3f} s, batched {t['batched']:.4f} s "
                  f"(retrieve alone {t['retrieve']:.4f} s), speed-up {t['loop'] / t['batched']:.1f}x "
                  f"({t['loop'] / t['retrieve']:.1f}x) (states identical; {backend})", flush=True)
        info = machine_info("cpu")
    result = {
        "n": args.n, "p": p, "trials": args.trials, "probes": args.trials * p, "steps": args.steps,
        "cases": cases, "identical_states": True, **info,
    }
    if args.out is not None:
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "bench_capacity.json").write_text(json.dumps(result, indent=2))
    return result


def async_matvec_bound(patterns: torch.Tensor, steps: int, repeats: int = 3) -> dict:
    """Batched asynchronous sweeps against the matrix-vector bound.

    One asynchronous sweep of one state visits each of the N neurons once with a dot product
    of length N: the FLOPs of one N x N matrix-vector product. Batched over all probes of all
    trials, the bound of a sweep is one ``[trials x P, N] @ [N, N]`` float32 GEMM. The
    ratio is (sweeps x bound time) / (batched time): the fraction of that bound reached.
    """
    trials, p, n = patterns.shape
    net = kvmem.ClassicalHopfield()
    net.write(patterns)
    out = net.retrieve(patterns, steps=steps, mode="async", seed=0)
    sweeps = int(out.iterations)
    w = torch.randn(trials, n, n, generator=torch.Generator().manual_seed(1))
    t_ours, t_mv = time_pair(lambda: net.retrieve(patterns, steps=steps, mode="async", seed=0),
                             lambda: torch.bmm(patterns, w), repeats=repeats)
    return {"sweeps": sweeps, "batched_seconds": t_ours, "bound_seconds": sweeps * t_mv,
            "fraction": sweeps * t_mv / t_ours}


def run(*, quick: bool, device: str) -> list[BenchRow]:
    """The suite's entry point: sync and async speed-ups over the per-probe loop (target 20x,
    issue 3) and the async sweeps' share of the matrix-vector bound (no target stated).

    Quick: N = 100, 5 trials. Full: N = 500, 50 trials, alpha = 0.12 (3,000 probes). Both
    on one torch thread (see the module docstring).
    """
    if device != "cpu":
        raise ImportError("the capacity case compares against a CPU loop; run it with --device cpu")
    argv = ["--n", "100", "--trials", "5", "--repeats", "2"] if quick else ["--repeats", "3"]
    result = main(argv)
    size = f"N={result['n']}, P={result['p']}, {result['trials']} trials ({result['probes']} probes)"
    rows = [BenchRow("capacity", f"batched {c['mode']} vs per-probe loop", size, c["batched_seconds"],
                     "per-probe Python loop", c["loop_seconds"], c["speedup"], 20.0, True,
                     "final states identical to the loop", c["identical_states"],
                     {"retrieve_seconds": c["retrieve_seconds"], "retrieve_speedup": c["retrieve_speedup"],
                      "backend": c["backend"]})
            for c in result["cases"]]
    patterns = capacity.make_patterns(result["trials"], result["p"], result["n"], seed=0)
    with threads(1):
        mv = async_matvec_bound(patterns, result["steps"], repeats=1 if quick else 3)
    rows.append(BenchRow("capacity", "batched async sweeps vs mat-vec bound", size, mv["batched_seconds"],
                         f"{mv['sweeps']} x bmm [trials, P, N] @ [trials, N, N]", mv["bound_seconds"],
                         mv["fraction"], None, True, "same run as the identical-states check above", True,
                         {"sweeps": mv["sweeps"]}))
    return rows


if __name__ == "__main__":
    main()
