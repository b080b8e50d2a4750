"""Benchmark case ``matrix-writes``: chunked Hebbian and delta-rule writes of many pairs vs one GEMM.

:class:`kvmem.MatrixMemory` writes N pairs ``(k_n, v_n)`` of dimension D with
``write(keys, values, chunk_size=C)``:

- Hebbian: ``M <- M + sum_n k_n^T v_n``, 2 N D^2 FLOPs.
- Delta rule: ``M <- M + beta k_n^T (v_n - k_n M)`` pair after pair. The recurrence does
  ``k_n M`` and the outer product, 4 N D^2 FLOPs; the chunked form it runs here does more
  (Gram matrices and triangular solves add about ``3 C D`` FLOPs per pair for blocks of
  C pairs: 32 in the compiled numba loop, 64 on the torch CPU path, 512 on a GPU;
  ``extra["chunked_flop"]``), which the bound does not credit. ``extra["delta_backend"]``
  records which path ran (``"numba"`` or ``"torch"``, see
  :mod:`kvmem.memory._matrix_numba`) and ``extra["blas"]`` the numba path's BLAS.

The bound is one square ``torch.matmul`` of the same FLOP count as the rule (2 N D^2 and
4 N D^2), timed in turns with the write (:func:`~kvmem.bench.base.time_pair`; the GEMM's
side n is rounded, and its time scaled by the exact FLOP ratio). The ratio is our time
divided by the GEMM's: targets <= 1.5 (Hebbian) and <= 3 (delta), issue 10
(``extra["ratio_of_fastest"]``: the same from the fastest repeat of each side).

Checks first (float32 keys on the unit sphere, values N(0, 1), beta = 1):

- Hebbian: the final matrix against the float64 product ``K^T V`` of all N pairs.
- Delta: the chunked float32 write of the first ``check_pairs`` pairs against the plain
  float64 pair-by-pair loop; and after all N pairs, reading the last key returns the last
  value (beta = 1 and a unit key make the newest pair exact), to 1e-3.

Full: N = 10^6 pairs, D = 128, chunks of 65,536 pairs. Quick: N = 10^5.

Run:  kvmem bench --only matrix-writes, or python -m kvmem.bench.cases.matrix_writes [--quick]
"""

from __future__ import annotations

import argparse
import json

import torch

import kvmem
from kvmem.bench.base import BenchRow
from kvmem.bench.cases.slot_read import paired
from kvmem.memory import _matrix_numba
from kvmem.memory import matrix as _matrix

FULL = {"pairs": 10**6, "dim": 128, "chunk": 65536, "check_pairs": 4096, "repeats": 5}
QUICK = {"pairs": 10**5, "dim": 128, "chunk": 65536, "check_pairs": 2048, "repeats": 3}
TOLERANCE = 1e-4


def make_pairs(pairs: int, dim: int, device: str = "cpu", seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Seeded float32 unit keys ``[N, D]`` and Gaussian values ``[N, D]``."""
    gen = torch.Generator().manual_seed(seed)
    keys = torch.randn(pairs, dim, generator=gen)
    keys = keys / keys.norm(dim=-1, keepdim=True)
    return keys.to(device), torch.randn(pairs, dim, generator=gen).to(device)


def write(rule: str, keys: torch.Tensor, values: torch.Tensor, chunk: int | None) -> kvmem.MatrixMemory:
    mem = kvmem.MatrixMemory(keys.shape[-1], values.shape[-1], rule=rule, beta=1.0)
    mem.write(keys, values, chunk_size=chunk)
    return mem


def delta_path(pairs: int, dim: int, chunk: int, device: str = "cpu") -> tuple[str, int]:
    """The path a chunked float32 delta write of ``chunk``-pair chunks takes (``"numba"``
    or ``"torch"``, as the first chunk decides) and its pairs per block."""
    backend = _matrix_numba.delta_backend(device, torch.float32, min(chunk, pairs), dim, dim)
    return backend, (_matrix.DELTA_BLOCK_NUMBA if backend == "numba" else _matrix.delta_block(device))


def chunked_delta_flop(pairs: int, dim: int, device: str = "cpu", block: int | None = None) -> float:
    """FLOPs of the chunked delta write (products and solves only): per block of C pairs the
    Gram matrix ``K K^T`` (2 C^2 D), ``V - K S`` and ``K^T U'`` (2 C D^2 each) and the
    triangular solve (C^2 D). ``block``: C, by default the torch path's on ``device``."""
    c = min(block or _matrix.delta_block(device), pairs)
    blocks = -(-pairs // c)
    return blocks * (2.0 * c * c * dim + 2 * 2.0 * c * dim * dim + 1.0 * c * c * dim)


def check_hebbian(mem: kvmem.MatrixMemory, keys: torch.Tensor, values: torch.Tensor) -> dict:
    ref = keys.double().T @ values.double()
    err = float((mem.matrix.double() - ref).abs().max() / ref.abs().max())
    return {"text": f"max abs error {err:.1e} x max|M| vs float64 K^T V (tol {TOLERANCE:.0e})",
            "passed": err <= TOLERANCE, "rel_error": err}


def check_delta(mem: kvmem.MatrixMemory, keys: torch.Tensor, values: torch.Tensor, check_pairs: int, chunk: int) -> dict:
    kc, vc = keys[:check_pairs], values[:check_pairs]
    ours = write("delta", kc, vc, min(chunk, check_pairs)).matrix.double()
    ref = write("delta", kc.double(), vc.double(), None).matrix  # the plain pair-by-pair loop
    err = float((ours - ref).abs().max() / ref.abs().max())
    last = float((mem.read(keys[-1:]) - values[-1:]).abs().max())
    passed = err <= TOLERANCE and last <= 1e-3
    return {"text": f"first {check_pairs} pairs: max abs error {err:.1e} x max|M| vs float64 pair loop "
                    f"(tol {TOLERANCE:.0e}); all pairs: last pair recalled to {last:.1e} (tol 1e-3)",
            "passed": passed, "rel_error": err, "last_pair_error": last}


def gemm_bound(flop: float, device: str, seed: int = 1):
    """A square GEMM of about ``flop`` FLOPs and the factor that scales its time to exactly ``flop``."""
    n = max(1, round((flop / 2.0) ** (1.0 / 3.0)))
    gen = torch.Generator().manual_seed(seed)
    a, b = torch.randn(n, n, generator=gen).to(device), torch.randn(n, n, generator=gen).to(device)
    out = torch.empty(n, n, device=device)
    return (lambda: torch.matmul(a, b, out=out)), flop / (2.0 * n**3), n


def run(*, quick: bool, device: str, sizes: dict | None = None) -> list[BenchRow]:
    """Chunked Hebbian and delta writes vs a GEMM of the rule's FLOPs (targets <= 1.5 and <= 3).

    Args:
        quick: the quick sizes instead of the issue's.
        device: ``"cpu"`` or a CUDA device.
        sizes: overrides of the sizes (keys of :data:`FULL`), e.g. for tests.
    """
    sz = {**(QUICK if quick else FULL), **(sizes or {})}
    n, d, chunk = sz["pairs"], sz["dim"], sz["chunk"]
    keys, values = make_pairs(n, d, device)
    size = f"N={n} pairs, D={d}, float32, chunks of {chunk}"
    rows = []
    with torch.no_grad():
        for rule, flop, target in (("hebbian", 2.0 * n * d * d, 1.5), ("delta", 4.0 * n * d * d, 3.0)):
            mem = write(rule, keys, values, chunk)
            result = check_hebbian(mem, keys, values) if rule == "hebbian" else \
                check_delta(mem, keys, values, min(sz["check_pairs"], n), chunk)
            bound, scale, side = gemm_bound(flop, device)
            times = paired(lambda: write(rule, keys, values, chunk), bound, sz["repeats"], device)
            ours, gemm = times["ours"], times["bound"] * scale
            extra = {"flop": flop, "gflop_per_s": flop / ours / 1e9, "gemm_gflop_per_s": flop / gemm / 1e9,
                     "ratio_of_fastest": times["ours_min"] / (times["bound_min"] * scale), "repeats": sz["repeats"],
                     "seconds_each": times["ours_all"], "bound_seconds_each": [t * scale for t in times["bound_all"]],
                     "gemm_side": side, "rel_error": result["rel_error"]}
            label = "Hebbian, chunked"
            if rule == "delta":
                backend, block = delta_path(n, d, chunk, device)
                cf = chunked_delta_flop(n, d, device, block)
                extra.update({"chunked_flop": cf, "chunked_gflop_per_s": cf / ours / 1e9, "delta_block": block,
                              "delta_backend": backend, "blas": _matrix_numba.blas if backend == "numba" else None,
                              "last_pair_error": result["last_pair_error"]})
                label = f"delta rule, chunked (blocks of {block}, {backend})"
            rows.append(BenchRow("matrix-writes", label, size, ours,
                                 f"torch.matmul {side}^3, {flop / 1e9:.1f} GFLOP (= {'2' if rule == 'hebbian' else '4'} N D^2)",
                                 gemm, ours / gemm, target, False, result["text"], result["passed"], extra))
    return rows


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args(argv)
    for row in run(quick=args.quick, device=args.device):
        print(json.dumps(row.to_dict(), indent=2))


if __name__ == "__main__":
    main()
