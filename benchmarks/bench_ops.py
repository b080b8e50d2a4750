"""Chunked fast-weight ops against the token recurrence and a GEMM bound (case ``fast-weight-ops``).

The code lives in :mod:`kvmem.bench.cases.ops`; ``kvmem bench --only fast-weight-ops`` runs
it inside the suite. This script keeps the case's own options (sizes, threads, memory case).

Run:  python benchmarks/bench_ops.py [--t 4096] [--d 128] [--bh 8] [--chunk 64] [--threads N] [--out DIR]
"""

import sys

from kvmem.bench.cases.ops import main

if __name__ == "__main__":
    result = main()
    if result and not result["all_correct"]:
        sys.exit(1)
