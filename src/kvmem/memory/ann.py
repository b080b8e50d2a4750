"""Top-k key search for very large slot memories: exact blocked search and faiss indexes.

A top-k read (the ``"topk"`` separation) only needs the k keys that score highest for each
query. Scoring all N keys costs O(M N D); an approximate nearest-neighbour (ANN) index finds
nearly the same k keys while looking at a small part of them. This module offers

- :func:`exact_topk`: the brute-force reference in torch, one block of keys at a time, so
  that it never holds more than ``[M, block]`` scores;
- :class:`KeyIndex`: a faiss index over one set of keys. Kinds (see :func:`get`):
  ``"flat"`` (exact, faiss ``IndexFlat``), ``"ivf"`` (inverted lists of k-means cells,
  ``IndexIVFFlat``: a query scans the ``nprobe`` cells nearest to it; Jegou et al. 2011)
  and ``"hnsw"`` (a navigable small-world graph, ``IndexHNSWFlat``; Malkov & Yashunin 2018).

faiss-cpu is an optional dependency (``pip install kvmem[faiss]``): it is imported only
when an index is built. The candidates an index returns are scored again with the memory's
own similarity, in the memory's dtype, so the scores of the keys it finds are exact;
only which keys are found is approximate (measured as recall@k against
:func:`exact_topk`). :class:`kvmem.SlotMemory` uses a :class:`KeyIndex` when it is given
``index=...`` with the top-k separation.

Supported similarities and the faiss metric each maps to (the order of the keys is the
same under both): ``dot``, ``scaled_dot`` and bipolar ``hamming`` -> inner product;
``cosine`` -> inner product of unit vectors; ``neg_euclidean``, ``rbf`` and binary
``hamming`` -> L2 distance.

Example:
    >>> import torch
    >>> from kvmem.memory import ann
    >>> g = torch.Generator().manual_seed(0)
    >>> keys, queries = torch.randn(500, 16, generator=g), torch.randn(4, 16, generator=g)
    >>> scores, idx = ann.exact_topk(queries, keys, 3, similarity="dot")
    >>> index = ann.KeyIndex(keys, similarity="dot", index="flat")
    >>> bool((index.search(queries, 3)[1] == idx).all())
    True
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from .._checks import as_tensor, check_int
from .._registry import Registry, spec_of
from .. import similarity as _similarity
from .matrix import _check_finite

INSTALL_HINT = "pip install kvmem[faiss]"


def import_faiss():
    """The faiss module, or an ImportError that says how to install it."""
    try:
        import faiss
    except ImportError as err:
        raise ImportError(
            f"the approximate top-k backend (index='ivf', 'hnsw' or 'flat') needs faiss-cpu, which is not "
            f"installed: {INSTALL_HINT}"
        ) from err
    return faiss


@contextlib.contextmanager
def _faiss_threads(faiss, threads: int) -> Iterator[None]:
    """faiss's OpenMP threads set to ``threads`` inside the block (torch's count by default),
    so that ``torch.set_num_threads`` governs both libraries."""
    before = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(max(1, threads))
    try:
        yield
    finally:
        faiss.omp_set_num_threads(before)


def search_metric(similarity: Any) -> str:
    """``"ip"`` or ``"l2"``: the faiss metric that ranks keys as ``similarity`` does.

    Raises:
        ValueError: a similarity with no faiss metric of the same ranking.
    """
    sim = _similarity.get(similarity)
    if isinstance(sim, (_similarity.Dot, _similarity.ScaledDot, _similarity.Cosine)):
        return "ip"
    if isinstance(sim, (_similarity.NegEuclidean, _similarity.RBF)):
        return "l2"
    if isinstance(sim, _similarity.Hamming):
        # +-1 codes: d = (D - q.k) / 2 falls as q.k rises. {0, 1} codes: d = |q - k|^2.
        return "ip" if sim.code == "bipolar" else "l2"
    raise ValueError(
        f"similarity: the index backend supports dot, scaled_dot, cosine, neg_euclidean, rbf and hamming "
        f"(each ranks keys like a faiss metric), got {type(sim).__name__}"
    )


def _search_vectors(x: torch.Tensor, similarity: _similarity.Similarity) -> np.ndarray:
    """Rows as faiss wants them: float32, C-contiguous, on the CPU (unit length for cosine)."""
    x = x.detach()
    if isinstance(similarity, _similarity.Cosine):
        x = x / x.norm(dim=-1, keepdim=True).clamp_min(similarity.eps)
    return np.ascontiguousarray(x.to(device="cpu", dtype=torch.float32).numpy())


# -- index kinds -------------------------------------------------------------------
class IndexSpec:
    """Base class of the index kinds: ``build(vectors, metric) -> faiss index``."""

    def build(self, faiss, vectors: np.ndarray, metric: str):
        raise NotImplementedError

    def configure(self, index, k: int) -> None:
        """Set the search-time parameters before a search for k neighbours."""

    def spec(self) -> dict[str, Any]:
        """JSON-serialisable spec that rebuilds this index kind."""
        return spec_of(self)


registry: Registry[IndexSpec] = Registry("index", IndexSpec)


def get(spec: Any, *, argument: str = "index") -> IndexSpec:
    """An index kind from ``"flat"``, ``"ivf"``, ``"hnsw"``, ``{"name": ..., **params}`` or an instance.

    Example:
        >>> from kvmem.memory import ann
        >>> ann.get({"name": "ivf", "nprobe": 8})
        IVFFlat(nlist=None, nprobe=8, niter=20, seed=0)
    """
    return registry.get(spec, argument=argument)


def _metric(faiss, metric: str) -> int:
    return faiss.METRIC_INNER_PRODUCT if metric == "ip" else faiss.METRIC_L2


@registry.register("flat")
@dataclass(frozen=True)
class Flat(IndexSpec):
    """Exact search by faiss (``IndexFlat``): every key is scored."""

    def build(self, faiss, vectors, metric):
        index = faiss.IndexFlat(vectors.shape[1], _metric(faiss, metric))
        index.add(vectors)
        return index


@registry.register("ivf")
@dataclass(frozen=True)
class IVFFlat(IndexSpec):
    """Inverted file: k-means cells of the keys; a query scans the ``nprobe`` nearest cells.

    Args:
        nlist: number of cells; None chooses ``4 sqrt(N)`` (at most N / 39, the fewest
            training points per cell faiss accepts without a warning), at least 1.
        nprobe: cells scanned per query (more: higher recall, slower).
        niter: k-means iterations.
        seed: seed of k-means (initial centroids and the training sample).
    """

    nlist: int | None = None
    nprobe: int = 16
    niter: int = 20
    seed: int = 0

    def __post_init__(self):
        if self.nlist is not None:
            check_int(self.nlist, "nlist")
        check_int(self.nprobe, "nprobe")
        check_int(self.niter, "niter")
        check_int(self.seed, "seed", minimum=0)

    def cells(self, n: int) -> int:
        """The number of cells used for ``n`` keys."""
        if self.nlist is not None:
            return min(self.nlist, n)
        return max(1, min(int(round(4 * math.sqrt(n))), n // 39))

    def build(self, faiss, vectors, metric):
        n, d = vectors.shape
        quantizer = faiss.IndexFlat(d, _metric(faiss, metric))
        index = faiss.IndexIVFFlat(quantizer, d, self.cells(n), _metric(faiss, metric))
        index.cp.seed = self.seed
        index.cp.niter = self.niter
        index.train(vectors)
        index.add(vectors)
        return index  # faiss's Python wrapper keeps the quantizer alive with the index

    def configure(self, index, k):
        index.nprobe = min(self.nprobe, index.nlist)


@registry.register("hnsw")
@dataclass(frozen=True)
class HNSW(IndexSpec):
    """Hierarchical navigable small-world graph (``IndexHNSWFlat``).

    Args:
        m: neighbours per node (graph degree; more: higher recall, more memory).
        ef_construction: candidate list length while inserting.
        ef_search: candidate list length while searching (at least k is used).
        seed: seed of the random node levels.
        build_threads: threads that insert keys. faiss inserts in parallel in an order
            that depends on thread timing, so only ``1`` (the default) gives the same graph
            on every run; None uses torch's thread count (faster, not reproducible).
    """

    m: int = 32
    ef_construction: int = 80
    ef_search: int = 64
    seed: int = 0
    build_threads: int | None = 1

    def __post_init__(self):
        check_int(self.m, "m", minimum=2)
        check_int(self.ef_construction, "ef_construction")
        check_int(self.ef_search, "ef_search")
        check_int(self.seed, "seed", minimum=0)
        if self.build_threads is not None:
            check_int(self.build_threads, "build_threads")

    def build(self, faiss, vectors, metric):
        index = faiss.IndexHNSWFlat(vectors.shape[1], self.m, _metric(faiss, metric))
        index.hnsw.efConstruction = self.ef_construction
        index.hnsw.rng = faiss.RandomGenerator(self.seed)
        threads = torch.get_num_threads() if self.build_threads is None else self.build_threads
        with _faiss_threads(faiss, threads):
            index.add(vectors)
        return index

    def configure(self, index, k):
        index.hnsw.efSearch = max(self.ef_search, k)


# -- search ------------------------------------------------------------------------
def _check_pair(queries: Any, keys: Any, keys_checked: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    # Finiteness by one sum per tensor (see _check_finite); keys already checked when an
    # index was built over them are not read again, so that a search costs O(M), not O(N).
    if not keys_checked:
        keys = as_tensor(keys, "keys", min_rank=2, finite=False)
        _check_finite(keys, "keys")
    queries = as_tensor(queries, "queries", min_rank=2, dtype=keys.dtype, device=keys.device, finite=False)
    _check_finite(queries, "queries")
    if keys.dim() != 2 or queries.dim() != 2:
        raise ValueError(f"keys, queries: expected [N, D] and [M, D], got shapes {tuple(keys.shape)} and "
                         f"{tuple(queries.shape)}")
    if queries.shape[-1] != keys.shape[-1]:
        raise ValueError(f"queries: expected last dimension {keys.shape[-1]} (the keys'), got shape "
                         f"{tuple(queries.shape)}")
    if keys.shape[0] == 0:
        raise ValueError("keys: expected at least one key, got none")
    return queries, keys


def _order(scores: torch.Tensor, idx: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Rows sorted by score, highest first, equal scores by lowest key index."""
    by_index = torch.sort(idx, dim=-1, stable=True).indices
    scores, idx = scores.gather(-1, by_index), idx.gather(-1, by_index)
    by_score = torch.sort(scores, dim=-1, descending=True, stable=True).indices
    return scores.gather(-1, by_score), idx.gather(-1, by_score)


def exact_topk(queries: Any, keys: Any, k: int, *, similarity: Any = "dot",
               block_size: int = 16384) -> tuple[torch.Tensor, torch.Tensor]:
    """The k keys that score highest for each query, by brute force in blocks of keys.

    Each block is scored with one matrix product and reduced to its k best by
    ``torch.topk``; the running k best are merged with them. Memory is O(M (block + k)).

    Args:
        queries: ``[M, D]``.
        keys: ``[N, D]``.
        k: neighbours per query, >= 1 (at most N are returned).
        similarity: spec of the similarity (see :mod:`kvmem.similarity`).
        block_size: keys scored at once.

    Returns:
        ``(scores, indices)``, each ``[M, min(k, N)]``, highest score first; equal scores
        are ordered by key index (which of several keys tied at the k-th place is kept is
        not specified).

    Example:
        >>> import torch
        >>> from kvmem.memory.ann import exact_topk
        >>> exact_topk(torch.eye(2), torch.eye(2) * torch.tensor([[1.0], [2.0]]), 1)[1].tolist()
        [[0], [1]]
    """
    queries, keys = _check_pair(queries, keys)
    k = check_int(k, "k")
    block_size = check_int(block_size, "block_size")
    sim = _similarity.get(similarity)
    n = keys.shape[0]
    k = min(k, n)
    best_s = best_i = None
    for start in range(0, n, block_size):
        s = sim(queries, keys[start:start + block_size])
        top = torch.topk(s, min(k, s.shape[-1]), dim=-1)
        s_b, i_b = top.values, top.indices + start
        if best_s is not None:
            s_b, i_b = torch.cat([best_s, s_b], -1), torch.cat([best_i, i_b], -1)
            top = torch.topk(s_b, k, dim=-1)
            s_b, i_b = top.values, i_b.gather(-1, top.indices)
        best_s, best_i = s_b, i_b
    return _order(best_s, best_i)


class KeyIndex:
    """A faiss index over one set of keys, searched for the top-k keys of queries.

    Args:
        keys: ``[N, D]``; kept (not copied) to score the candidates exactly.
        similarity: the similarity that defines "top" (see :func:`search_metric`).
        index: the index kind (see :func:`get`): ``"flat"``, ``"ivf"``, ``"hnsw"`` or a spec.

    Shapes:
        search: queries ``[M, D]`` -> scores, indices ``[M, min(k, N)]``.

    Raises:
        ImportError: faiss is not installed (``pip install kvmem[faiss]``).
        ValueError: an unsupported similarity, bad shapes or non-finite keys.

    Example:
        >>> import torch
        >>> from kvmem.memory.ann import KeyIndex
        >>> index = KeyIndex(torch.eye(3), similarity="cosine", index="hnsw")
        >>> index.search(torch.tensor([[0.1, 0.9, 0.2]]), 2)[1].tolist()
        [[1, 2]]
    """

    def __init__(self, keys: Any, *, similarity: Any = "dot", index: Any = "hnsw") -> None:
        keys = as_tensor(keys, "keys", min_rank=2)
        if keys.dim() != 2 or keys.shape[0] == 0:
            raise ValueError(f"keys: expected a non-empty [N, D] matrix, got shape {tuple(keys.shape)}")
        self.similarity = _similarity.get(similarity)
        self.kind = get(index)
        self.metric = search_metric(self.similarity)
        faiss = import_faiss()
        self.keys = keys
        with _faiss_threads(faiss, torch.get_num_threads()):
            self.index = self.kind.build(faiss, _search_vectors(keys, self.similarity), self.metric)
        self._faiss = faiss

    def __len__(self) -> int:
        return self.keys.shape[0]

    def candidates(self, queries: torch.Tensor, k: int) -> torch.Tensor:
        """Key indices ``[M, k]`` that the index finds (-1 where it found fewer than k)."""
        self.kind.configure(self.index, k)
        with _faiss_threads(self._faiss, torch.get_num_threads()):
            _, idx = self.index.search(_search_vectors(queries, self.similarity), k)
        return torch.from_numpy(idx).to(device=self.keys.device, dtype=torch.long)

    def search(self, queries: Any, k: int) -> tuple[torch.Tensor, torch.Tensor]:
        """The top-k keys the index finds for each query, scored exactly.

        Returns:
            ``(scores, indices)`` ``[M, min(k, N)]``, highest score first, ties by key index.
            A query for which the index found fewer than k keys (an IVF search whose probed
            cells hold fewer) gets score ``-inf`` and index ``-1`` in the empty places.
        """
        queries, _ = _check_pair(queries, self.keys, keys_checked=True)
        k = min(check_int(k, "k"), len(self))
        idx = self.candidates(queries, k)
        found = idx >= 0
        safe = idx.clamp_min(0)
        # The candidates are scored again with the similarity itself: faiss's float32 scores
        # are not the memory's, and a transformed metric (L2 for rbf) has other values.
        scores = self.similarity(queries.unsqueeze(-2), self.keys[safe]).squeeze(-2)
        scores = scores.masked_fill(~found, float("-inf"))
        scores, idx = _order(scores, idx.masked_fill(~found, torch.iinfo(torch.long).max))
        return scores, idx.masked_fill(torch.isneginf(scores), -1)


def recall_at_k(found: torch.Tensor, exact: torch.Tensor) -> float:
    """Mean over queries of |found ∩ exact| / k for index rows ``[M, k]`` (-1 never matches).

    Example:
        >>> import torch
        >>> from kvmem.memory.ann import recall_at_k
        >>> recall_at_k(torch.tensor([[0, 1], [2, -1]]), torch.tensor([[1, 0], [2, 3]]))
        0.75
    """
    if found.shape != exact.shape or found.dim() != 2:
        raise ValueError(f"found, exact: expected two [M, k] index matrices of one shape, got "
                         f"{tuple(found.shape)} and {tuple(exact.shape)}")
    hits = (found.unsqueeze(-1) == exact.unsqueeze(-2)) & (found >= 0).unsqueeze(-1)
    return float(hits.any(-1).sum()) / found.numel()
