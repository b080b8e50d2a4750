"""Benchmark: chunked fast-weight ops against the token recurrence and a GEMM bound.

For each op (delta rule, gated delta rule, linear attention) at ``[B x H, T, D]`` the script

1. computes a float64 reference with the token recurrence (not timed);
2. times the float32 chunked form (``mode="chunk"``) and the float32 recurrence
   (``mode="recurrent"``, the same op's token loop) and checks both against the reference
   (relative RMSE <= ``--tol``). A case whose check fails is reported without any speed;
3. times ``torch.matmul`` on square matrices with the same FLOP count as the chunked form
   (the GEMM bound of this machine), in turns with the chunked form so that both see the
   same load, and reports the chunked form's throughput as a fraction of it.

A forward-plus-backward case (``--bwd-t``) compares the gradients of the two forms with a
float64 chunked reference. The memory case runs each (mode, T) in a fresh process and
reads its peak resident memory above the inputs (``/proc/self/clear_refs`` resets the
peak; glibc's mmap threshold is fixed so that freed tensors leave the resident set), or the
CUDA allocator's peak on a GPU: the chunked form grows like T, the parallel
form (one T x T block) like T^2.

FLOP counts (per sequence, F = Dk, C = chunk size, matrix products only):
chunked delta rule ``T (C (6 F + 4 Dv) + 6 F Dv) + (T / C) 2 C^3 / 3``, chunked linear
attention ``T (4 C F + 2 C Dv + 4 F Dv)`` (pessimistic: it counts ``Q K^T`` in full),
recurrences ``6 T F Dv`` (delta) and ``4 T F Dv`` (linear).

Run:  kvmem bench --only fast-weight-ops, or python benchmarks/bench_ops.py [--t 4096] [--d 128] [--bh 8] [--chunk 64] [--threads N] [--out DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import torch

from kvmem.bench import machine_info
from kvmem.bench.base import BenchRow
from kvmem.ops import delta_rule, gated_delta_rule, linear_attention

OPS = ("delta_rule", "gated_delta_rule", "linear_attention")


# -- problem sizes and work -----------------------------------------------------------------------
def flops(op: str, mode: str, bh: int, t: int, f: int, dv: int, chunk: int) -> float:
    """Multiply-add FLOPs (2 per multiply-add) of the matrix products of one forward pass."""
    if mode == "recurrent":
        return bh * t * f * dv * (4.0 if op == "linear_attention" else 6.0)
    c = min(chunk, t)
    n = -(-t // c)
    tp = n * c
    if op == "linear_attention":
        return bh * tp * (4.0 * c * f + 2.0 * c * dv + 4.0 * f * dv)
    return bh * (tp * (c * (6.0 * f + 4.0 * dv) + 6.0 * f * dv) + n * 2.0 * c**3 / 3.0)


def make_inputs(op: str, bh: int, t: int, d: int, dtype: torch.dtype, device: str, seed: int = 0):
    """Unit-norm keys, Gaussian queries and values, beta in (0, 1), log-decays in (-0.1, 0)."""
    gen = torch.Generator().manual_seed(seed)
    q = torch.randn(1, bh, t, d, generator=gen, dtype=torch.float64)
    k = torch.randn(1, bh, t, d, generator=gen, dtype=torch.float64)
    k = k / k.norm(dim=-1, keepdim=True)
    v = torch.randn(1, bh, t, d, generator=gen, dtype=torch.float64)
    beta = torch.rand(1, bh, t, generator=gen, dtype=torch.float64)
    g = -0.1 * torch.rand(1, bh, t, generator=gen, dtype=torch.float64)
    tensors = {"q": q, "k": k, "v": v, "beta": beta, "log_decay": g}
    if op == "delta_rule":
        del tensors["log_decay"]
    elif op == "linear_attention":
        del tensors["beta"], tensors["log_decay"]
        # Scaled so that the state (a sum of T outer products) stays O(1).
        tensors["v"] = v / t**0.5
    return {name: x.to(dtype=dtype, device=device) for name, x in tensors.items()}


def call(op: str, inputs: dict, mode: str, chunk: int):
    x = inputs
    if op == "delta_rule":
        return delta_rule(x["q"], x["k"], x["v"], x["beta"], mode=mode, chunk_size=chunk)
    if op == "gated_delta_rule":
        return gated_delta_rule(x["q"], x["k"], x["v"], x["beta"], x["log_decay"], mode=mode, chunk_size=chunk)
    return linear_attention(x["q"], x["k"], x["v"], mode=mode, chunk_size=chunk)


def rel_rmse(a: torch.Tensor, ref: torch.Tensor) -> float:
    a, ref = a.detach().double().cpu(), ref.detach().double().cpu()
    return float((a - ref).norm() / ref.norm().clamp_min(1e-300))


# -- timing ------------------------------------------------------------------------------------------
def sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def best_time(fn, repeats: int, device: str):
    """Best wall time of ``repeats`` calls after one warm-up call; returns (seconds, last result)."""
    out = fn()
    sync(device)
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        out = fn()
        sync(device)
        best = min(best, time.perf_counter() - start)
    return best, out


def gemm_operands(work: float, device: str):
    """float32 n x n matrices whose product costs about ``work`` FLOPs (2 n^3)."""
    n = max(16, round((work / 2.0) ** (1.0 / 3.0)))
    gen = torch.Generator().manual_seed(1)
    return torch.randn(n, n, generator=gen).to(device), torch.randn(n, n, generator=gen).to(device)


def interleaved_best(fns: dict, repeats: int, device: str) -> dict:
    """Best wall time of each function, timed in turns (one warm-up call each).

    Taking turns exposes every function to the same load on a shared machine, so their
    ratio is fair even when the load drifts during the run.
    """
    best = {}
    for name, fn in fns.items():
        fn()
        sync(device)
        best[name] = float("inf")
    for _ in range(repeats):
        for name, fn in fns.items():
            start = time.perf_counter()
            fn()
            sync(device)
            best[name] = min(best[name], time.perf_counter() - start)
    return best


def speed_case(op: str, args, device: str) -> dict:
    """Forward pass: chunk and recurrence against a float64 recurrence, then the speeds."""
    d, bh, t, chunk = args.d, args.bh, args.t, args.chunk
    ref_in = make_inputs(op, bh, t, d, torch.float64, "cpu")
    with torch.no_grad():
        ref_o, ref_s = call(op, ref_in, "recurrent", chunk)
        inputs = make_inputs(op, bh, t, d, torch.float32, device)
        t_chunk, (o_c, s_c) = best_time(lambda: call(op, inputs, "chunk", chunk), args.repeats, device)
        t_rec, (o_r, s_r) = best_time(lambda: call(op, inputs, "recurrent", chunk), args.rec_repeats, device)
    errors = {"chunk_output": rel_rmse(o_c, ref_o), "chunk_state": rel_rmse(s_c, ref_s),
              "recurrent_output": rel_rmse(o_r, ref_o), "recurrent_state": rel_rmse(s_r, ref_s)}
    correct = all(e <= args.tol for e in errors.values())
    work = flops(op, "chunk", bh, t, d, d, chunk)
    case = {"case": f"{op} forward", "op": op, "pass": "forward", "bh": bh, "t": t, "d": d, "chunk": chunk,
            "dtype": "float32", "rel_rmse": errors, "tol": args.tol, "correct": correct,
            "chunk_flop": work, "recurrent_flop": flops(op, "recurrent", bh, t, d, d, chunk)}
    if not correct:
        case.update(chunk_seconds=None, recurrent_seconds=None, speedup=None, gemm=None, gemm_fraction=None)
        return case
    a, b = gemm_operands(work, device)
    with torch.no_grad():
        best = interleaved_best({"chunk": lambda: call(op, inputs, "chunk", chunk), "gemm": lambda: a @ b},
                                max(args.repeats, 5), device)
    n = a.shape[0]
    gemm = {"n": n, "flop": 2.0 * n**3, "seconds": best["gemm"], "flop_per_s": 2.0 * n**3 / best["gemm"]}
    t_chunk = min(t_chunk, best["chunk"])
    case.update(chunk_seconds=t_chunk, recurrent_seconds=t_rec, speedup=t_rec / t_chunk,
                chunk_flop_per_s=work / t_chunk, gemm=gemm, gemm_fraction=(work / t_chunk) / gemm["flop_per_s"])
    return case


def backward_case(args, device: str) -> dict:
    """Forward plus backward of the delta rule: gradients of both forms against float64."""
    d, bh, t, chunk = args.d, args.bh, args.bwd_t, args.chunk
    names = ("q", "k", "v", "beta")

    def fwd_bwd(inputs, mode):
        leaves = {n: x.detach().requires_grad_() for n, x in inputs.items()}
        o, s = call("delta_rule", leaves, mode, chunk)
        (o.sum() + s.sum()).backward()
        return [o.detach(), s.detach()] + [leaves[n].grad for n in names]

    ref = fwd_bwd(make_inputs("delta_rule", bh, t, d, torch.float64, "cpu"), "chunk")
    inputs = make_inputs("delta_rule", bh, t, d, torch.float32, device)
    t_chunk, got_c = best_time(lambda: fwd_bwd(inputs, "chunk"), args.repeats, device)
    t_rec, got_r = best_time(lambda: fwd_bwd(inputs, "recurrent"), 1, device)
    labels = ("output", "state", *(f"grad_{n}" for n in names))
    errors = {f"{form}_{label}": rel_rmse(x, r) for form, got in (("chunk", got_c), ("recurrent", got_r))
              for label, x, r in zip(labels, got, ref)}
    correct = all(e <= args.tol for e in errors.values())
    case = {"case": "delta_rule forward+backward", "op": "delta_rule", "pass": "forward+backward", "bh": bh,
            "t": t, "d": d, "chunk": chunk, "dtype": "float32", "rel_rmse": errors, "tol": args.tol,
            "correct": correct, "chunk_seconds": None, "recurrent_seconds": None, "speedup": None}
    if correct:
        case.update(chunk_seconds=t_chunk, recurrent_seconds=t_rec, speedup=t_rec / t_chunk)
    return case


# -- memory ---------------------------------------------------------------------------------------
def _rss_bytes() -> int:
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def _hwm_bytes() -> int:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    raise OSError("no VmHWM in /proc/self/status")


def measure_peak(op: str, mode: str, bh: int, t: int, d: int, chunk: int, device: str) -> dict:
    """Peak memory of one forward pass above what the inputs already hold (run in a fresh process)."""
    inputs = make_inputs(op, bh, t, d, torch.float32, device)
    with torch.no_grad():
        # A small call first: libraries allocate their workspaces once, on first use.
        call(op, make_inputs(op, bh, min(t, 2 * chunk), d, torch.float32, device), mode, chunk)
        if device.startswith("cuda"):
            torch.cuda.synchronize()
            base = torch.cuda.memory_allocated()
            torch.cuda.reset_peak_memory_stats()
            call(op, inputs, mode, chunk)
            torch.cuda.synchronize()
            return {"peak_extra_bytes": torch.cuda.max_memory_allocated() - base, "method": "cuda allocator peak"}
        base = _rss_bytes()
        try:
            with open("/proc/self/clear_refs", "w") as fh:
                fh.write("5")  # resets the peak resident set size (VmHWM) to the current one
            method = "VmHWM after clear_refs"
        except OSError:
            method = "ru_maxrss (lower bound: earlier peaks hide smaller ones)"
        call(op, inputs, mode, chunk)
        peak = _hwm_bytes()
        return {"peak_extra_bytes": max(0, peak - base), "method": method}


def memory_cases(args, device: str) -> list[dict]:
    rows = []
    for t in args.memory_t:
        for mode in args.memory_modes:
            if mode == "recurrent" and t > 4096:
                continue
            if mode == "parallel" and args.bh * t * t * 4 > args.parallel_limit_mib * 2**20:
                continue  # one T x T block alone would pass the limit
            spec = {"op": "delta_rule", "mode": mode, "bh": args.bh, "t": t, "d": args.d, "chunk": args.chunk,
                    "device": device}
            env = dict(os.environ)
            # glibc raises its mmap threshold after large frees, then serves large tensors from a
            # heap that fragments and never shrinks, so RSS would measure the allocator rather than
            # the algorithm (the token loop reached 2 GB at T = 4096). A fixed threshold returns
            # every large tensor to the system when it is freed.
            env.setdefault("MALLOC_MMAP_THRESHOLD_", str(128 * 1024))
            out = subprocess.run([sys.executable, "-m", "kvmem.bench.cases.ops", "--child-memory", json.dumps(spec),
                                  "--threads", str(torch.get_num_threads())],
                                 capture_output=True, text=True, env=env, check=True)
            peak = json.loads(out.stdout.strip().splitlines()[-1])
            row = {**spec, **peak, "peak_extra_mib": peak["peak_extra_bytes"] / 2**20,
                   "one_t_by_t_mib": args.bh * t * t * 4 / 2**20,
                   "inputs_mib": 3 * args.bh * t * args.d * 4 / 2**20}
            rows.append(row)
            print(f"memory  delta_rule {mode:9s} T={t:6d}: peak {row['peak_extra_mib']:9.1f} MiB above the inputs "
                  f"(q, k, v: {row['inputs_mib']:.1f} MiB; one [BH, T, T] float32 block: {row['one_t_by_t_mib']:.1f} MiB)",
                  flush=True)
    return rows


# -- driver -----------------------------------------------------------------------------------------
def print_speed(case: dict) -> None:
    if not case["correct"]:
        worst = max(case["rel_rmse"].items(), key=lambda kv: kv[1])
        print(f"{case['case']:28s} T={case['t']}: CHECK FAILED ({worst[0]} rel RMSE {worst[1]:.2e} > {case['tol']:.0e}); "
              "no speed reported", flush=True)
        return
    err = max(case["rel_rmse"].values())
    line = (f"{case['case']:28s} T={case['t']:5d}: chunk {case['chunk_seconds'] * 1e3:8.1f} ms, recurrence "
            f"{case['recurrent_seconds'] * 1e3:8.1f} ms, speed-up {case['speedup']:5.1f}x")
    if case.get("gemm"):
        line += (f", {case['chunk_flop_per_s'] / 1e9:6.1f} GFLOP/s = {100 * case['gemm_fraction']:4.1f}% of GEMM "
                 f"({case['gemm']['flop_per_s'] / 1e9:.1f} GFLOP/s, n={case['gemm']['n']})")
    print(line + f"  [max rel RMSE {err:.1e}]", flush=True)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--t", type=int, default=4096, help="sequence length of the speed cases")
    parser.add_argument("--d", type=int, default=128, help="head dimension (Dk = Dv)")
    parser.add_argument("--bh", type=int, default=8, help="batch x heads")
    parser.add_argument("--chunk", type=int, default=64)
    parser.add_argument("--ops", type=lambda s: [x for x in s.split(",") if x], default=list(OPS))
    parser.add_argument("--bwd-t", type=int, default=1024, help="sequence length of the backward case (0: skip)")
    parser.add_argument("--memory-t", type=lambda s: [int(x) for x in s.split(",") if x], default=[1024, 4096, 16384],
                        help="sequence lengths of the memory case (empty: skip)")
    parser.add_argument("--memory-modes", type=lambda s: [x for x in s.split(",") if x],
                        default=["chunk", "parallel", "recurrent"])
    parser.add_argument("--parallel-limit-mib", type=float, default=1024.0,
                        help="skip the parallel form where one T x T block exceeds this")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--rec-repeats", type=int, default=1)
    parser.add_argument("--tol", type=float, default=1e-5, help="largest relative RMSE against float64")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    parser.add_argument("--cpus", type=int, default=None, help="pin the process to its first N allowed CPUs")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--child-memory", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.cpus:
        allowed = sorted(os.sched_getaffinity(0))
        os.sched_setaffinity(0, allowed[: args.cpus])
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.child_memory:
        spec = json.loads(args.child_memory)
        print(json.dumps(measure_peak(spec["op"], spec["mode"], spec["bh"], spec["t"], spec["d"], spec["chunk"],
                                      spec["device"])))
        return {}
    bad = [op for op in args.ops if op not in OPS]
    if bad:
        parser.error(f"--ops: unknown {bad}; expected names from {OPS}")

    start = time.perf_counter()
    cases = []
    for op in args.ops:
        cases.append(speed_case(op, args, args.device))
        print_speed(cases[-1])
    if args.bwd_t:
        cases.append(backward_case(args, args.device))
        print_speed(cases[-1])
    memory = memory_cases(args, args.device) if args.memory_t else []
    result = {"cases": cases, "memory": memory, "all_correct": all(c["correct"] for c in cases),
              "seconds": time.perf_counter() - start, **machine_info(args.device)}
    if args.out is not None:
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "bench_ops.json").write_text(json.dumps(result, indent=2))
    return result


def run(*, quick: bool, device: str) -> list[BenchRow]:
    """The suite's entry point: the forward cases (speed-up over the recurrence, target >= 10x;
    share of the GEMM bound, target >= 40%) and the forward+backward case (no target).

    Quick: T = 512, B x H = 2, backward at T = 256, no memory case. Full: the issue's sizes
    (T = 4096, D = 128, B x H = 8, chunk 64; backward at T = 1024).
    """
    argv = ["--device", device, "--memory-t", ""]
    if quick:
        argv += ["--t", "512", "--bh", "2", "--d", "64", "--bwd-t", "256", "--repeats", "2"]
    result = main(argv)
    rows = []
    for c in result["cases"]:
        size = f"T={c['t']}, D={c['d']}, BxH={c['bh']}, chunk {c['chunk']}"
        worst = max(c["rel_rmse"].values())
        check = f"max rel RMSE {worst:.1e} vs float64 recurrence (tol {c['tol']:.0e})"
        nan = float("nan")
        speedup = c["speedup"] if c["correct"] else nan
        rows.append(BenchRow("fast-weight-ops", f"{c['case']}: chunked vs recurrence", size,
                             c["chunk_seconds"] or nan, "token recurrence", c["recurrent_seconds"] or nan,
                             speedup, 10.0 if c["pass"] == "forward" else None, True, check, c["correct"]))
        if c.get("gemm"):
            rows.append(BenchRow("fast-weight-ops", f"{c['case']}: share of GEMM bound", size, c["chunk_seconds"],
                                 f"matmul {c['gemm']['n']}^3, same FLOPs", c["gemm"]["seconds"] * c["chunk_flop"]
                                 / c["gemm"]["flop"], c["gemm_fraction"], 0.4, True, check, c["correct"],
                                 {"chunk_gflop_per_s": c["chunk_flop_per_s"] / 1e9,
                                  "gemm_gflop_per_s": c["gemm"]["flop_per_s"] / 1e9}))
    return rows


if __name__ == "__main__":
    res = main()
    if res and not res["all_correct"]:
        sys.exit(1)
