"""Benchmark: the batched capacity probe against a per-trial, per-probe Python loop.

Both compute the same thing: the classical Hopfield network (Hebbian, zero diagonal)
stores P = alpha N random +-1 patterns in each of T independent trials, and every stored
pattern is run through synchronous sign dynamics until it stops changing (or for
``steps`` steps). The loop does one trial and one probe at a time with the same torch
operations on vectors; the batched path is ``kvmem.paradigms.capacity.probe`` (one call,
trials and probes as batch dimensions). The case counts only after the two give
identical final states.

Run:  python benchmarks/bench_capacity.py [--n 500] [--trials 50] [--alpha 0.12] [--out DIR]
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import torch

import kvmem
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


def batched(patterns: torch.Tensor, steps: int) -> torch.Tensor:
    net = kvmem.ClassicalHopfield()
    net.write(patterns)
    return net.retrieve(patterns, steps=steps).states


def best_of(fn, repeats: int) -> tuple[float, torch.Tensor]:
    best, out = float("inf"), None
    for _ in range(repeats):
        start = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - start)
    return best, out


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=500)
    parser.add_argument("--trials", type=int, default=50)
    parser.add_argument("--alpha", type=float, default=0.12)
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)

    p = max(1, round(args.alpha * args.n))
    patterns = capacity.make_patterns(args.trials, p, args.n, seed=0)
    t_loop, ref = best_of(lambda: loop_reference(patterns, args.steps), 1)
    t_batch, out = best_of(lambda: batched(patterns, args.steps), args.repeats)
    if not torch.equal(ref, out):
        raise SystemExit("batched and loop states differ: the speed-up is not reported")
    result = {
        "case": "capacity probe, classical Hopfield, sync dynamics",
        "n": args.n, "p": p, "trials": args.trials, "probes": args.trials * p,
        "loop_seconds": t_loop, "batched_seconds": t_batch, "speedup": t_loop / t_batch,
        "identical_states": True,
        "torch": torch.__version__, "threads": torch.get_num_threads(), "python": platform.python_version(),
        "machine": platform.machine(), "processor": platform.processor() or "unknown",
    }
    print(f"N={args.n} P={p} trials={args.trials}: loop {t_loop:.2f} s, batched {t_batch:.3f} s, "
          f"speed-up {result['speedup']:.0f}x (states identical)")
    if args.out is not None:
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "bench_capacity.json").write_text(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    main()
