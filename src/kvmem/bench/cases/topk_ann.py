"""Benchmark case ``topk-ann``: top-k key search with faiss IVF-Flat and HNSW vs exact brute force.

A top-k read of a very large slot memory needs, for each query, the k keys of highest
similarity. The exact way scores every key: :func:`kvmem.memory.ann.exact_topk`, torch
matrix products over blocks of keys with ``torch.topk`` (the bound). The indexes of
:class:`kvmem.memory.ann.KeyIndex` (faiss IVF-Flat and HNSW, an optional dependency)
look at a small part of the keys. For each index this case reports

- recall@k: the share of the exact top-k keys that the index returns, over all queries;
- the speed-up: exact search time / index search time, timed in turns
  (:func:`~kvmem.bench.base.time_pair`); the index search includes scoring its candidates
  again with the memory's similarity. Building the index is not timed in the ratio
  (``extra["build_seconds"]``): a memory builds it once and reads many times;
  ``extra["index_mib"]`` is the memory the index holds (a second copy of the keys, plus
  the graph for HNSW).

No speed target is stated in issue 10. The check of each row: the exact search agrees with a
full float64 sort of all scores on the first queries (same top-k indices), and the index's
recall@k is at least ``min_recall``.

Data (cosine similarity): keys on the unit sphere in D = 64 dimensions, drawn around 1,000
random cluster centres (centre + 0.5 x Gaussian noise, normalised), as embeddings tend to
cluster; queries are stored keys plus 0.1 x Gaussian noise (retrieval cues), normalised.
Full: N = 10^6 keys, 1,000 queries, k = 10; IVF with 1,024 cells and 16 probed; HNSW with
M = 16, efConstruction = 100, efSearch = 256 (built on torch's thread count, so its graph
can differ between runs). Quick: N = 10^5, 200 queries, IVF with 256 cells.

Raises ImportError when faiss-cpu is missing (``pip install kvmem[faiss]``); the suite then
lists the case as skipped.

Run:  kvmem bench --only topk-ann, or python -m kvmem.bench.cases.topk_ann [--quick] [--keys N]
"""

from __future__ import annotations

import argparse
import json
import time

import torch

from kvmem.bench.base import BenchRow
from kvmem.bench.cases.slot_read import paired
from kvmem.memory import ann

FULL = {"keys": 10**6, "dim": 64, "queries": 1000, "k": 10, "clusters": 1000, "block": 16384,
        "ivf": {"name": "ivf", "nlist": 1024, "nprobe": 16},
        "hnsw": {"name": "hnsw", "m": 16, "ef_construction": 100, "ef_search": 256, "build_threads": None},
        "min_recall": 0.9, "check_queries": 20, "repeats": 3, "kinds": ("ivf", "hnsw")}
QUICK = {**FULL, "keys": 10**5, "queries": 200, "ivf": {"name": "ivf", "nlist": 256, "nprobe": 16}}


def make_data(keys: int, dim: int, queries: int, clusters: int, device: str = "cpu", seed: int = 0):
    """Seeded clustered unit keys ``[N, D]`` and noisy cues of stored keys ``[M, D]``."""
    gen = torch.Generator().manual_seed(seed)
    centres = torch.randn(clusters, dim, generator=gen)
    k = centres[torch.randint(clusters, (keys,), generator=gen)]
    k.add_(0.5 * torch.randn(keys, dim, generator=gen))
    k = k / k.norm(dim=-1, keepdim=True)
    q = k[torch.randint(keys, (queries,), generator=gen)] + 0.1 * torch.randn(queries, dim, generator=gen)
    q = q / q.norm(dim=-1, keepdim=True)
    return k.to(device), q.to(device)


def index_bytes(index) -> int:
    """Bytes a faiss index holds beyond Python: stored vectors and ids (IVF-Flat) or stored
    vectors and graph links (HNSW), from the index's own counts."""
    if hasattr(index, "hnsw"):
        return index.ntotal * index.d * 4 + index.hnsw.neighbors.size() * 4
    return index.ntotal * (index.code_size + 8)


def check_exact(queries: torch.Tensor, keys: torch.Tensor, k: int, block: int, count: int) -> dict:
    """exact_topk against a full float64 stable sort of all N scores, one query at a time
    (N float64 scores per query, never a [count, N] matrix), on the first ``count`` queries."""
    qs = queries[:count]
    _, ours = ann.exact_topk(qs, keys, k, similarity="cosine", block_size=block)
    same = True
    for i, q in enumerate(qs.double()):
        q = q / q.norm()
        scores = torch.cat([(part.double() / part.double().norm(dim=-1, keepdim=True)) @ q
                            for part in keys.split(1 << 20)])
        ref = torch.sort(scores, descending=True, stable=True).indices[:k]
        same &= bool((ours[i].cpu() == ref.cpu()).all())
    return {"passed": same, "text": f"exact search = full float64 sort on {count} queries: {same}"}


def run(*, quick: bool, device: str, sizes: dict | None = None) -> list[BenchRow]:
    """IVF-Flat and HNSW search vs exact search: recall@k and speed-up (no target).

    Args:
        quick: the quick sizes instead of the issue's.
        device: ``"cpu"`` (faiss-cpu searches on the CPU; a CUDA memory is copied over).
        sizes: overrides of the sizes (keys of :data:`FULL`), e.g. for tests.

    Raises:
        ImportError: faiss-cpu is not installed.
    """
    ann.import_faiss()
    sz = {**(QUICK if quick else FULL), **(sizes or {})}
    n, d, m, k, block = sz["keys"], sz["dim"], sz["queries"], sz["k"], sz["block"]
    keys, queries = make_data(n, d, m, sz["clusters"], device)
    exact_check = check_exact(queries, keys, k, block, min(sz["check_queries"], m))
    with torch.no_grad():
        _, exact = ann.exact_topk(queries, keys, k, similarity="cosine", block_size=block)
    rows = []
    for name in sz["kinds"]:
        spec = sz[name]
        start = time.perf_counter()
        index = ann.KeyIndex(keys, similarity="cosine", index=spec)
        build = time.perf_counter() - start
        with torch.no_grad():
            _, found = index.search(queries, k)
            recall = ann.recall_at_k(found.cpu(), exact.cpu())
            times = paired(lambda: index.search(queries, k),
                           lambda: ann.exact_topk(queries, keys, k, similarity="cosine", block_size=block),
                           sz["repeats"], device)
        ours, brute = times["ours"], times["bound"]
        passed = exact_check["passed"] and recall >= sz["min_recall"]
        params = ", ".join(f"{key}={val}" for key, val in spec.items() if key != "name")
        rows.append(BenchRow(
            "topk-ann", f"{name} ({params}) vs exact", f"N={n} keys, D={d}, {m} queries, k={k}, cosine",
            ours, f"exact blocked matmul + topk ({block} keys per block)", brute, brute / ours, None, True,
            f"{exact_check['text']}; recall@{k} {recall:.3f} (>= {sz['min_recall']})", passed,
            {"recall_at_k": recall, "k": k, "build_seconds": build, "queries_per_second": m / ours,
             "speedup_of_fastest": times["bound_min"] / times["ours_min"],
             "seconds_each": times["ours_all"], "bound_seconds_each": times["bound_all"],
             "exact_queries_per_second": m / brute,
             "index_mib": index_bytes(index.index) / 2**20, "keys_mib": keys.numel() * 4 / 2**20}))
        del index
    return rows


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--keys", type=int, default=None, help="number of keys (e.g. 10000000)")
    parser.add_argument("--only", choices=("ivf", "hnsw"), default=None)
    parser.add_argument("--nlist", type=int, default=None, help="IVF cells (default: 1,024; 256 quick)")
    args = parser.parse_args(argv)
    sizes: dict = {} if args.keys is None else {"keys": args.keys}
    if args.only:
        sizes["kinds"] = (args.only,)
    if args.nlist:
        sizes["ivf"] = {**(QUICK if args.quick else FULL)["ivf"], "nlist": args.nlist}
    for row in run(quick=args.quick, device=args.device, sizes=sizes):
        print(json.dumps(row.to_dict(), indent=2))


if __name__ == "__main__":
    main()
