"""Batched Hopfield retrieval against a per-probe loop (case ``capacity``).

The code lives in :mod:`kvmem.bench.cases.capacity`; ``kvmem bench --only capacity`` runs it
inside the suite (adding the asynchronous sweeps' share of the matrix-vector bound).

Run:  python benchmarks/bench_capacity.py [--n 500] [--trials 50] [--alpha 0.12] [--out DIR]
"""

from kvmem.bench.cases.capacity import main

if __name__ == "__main__":
    main()
