"""Similarity kernels S(q, k): how well each query matches each stored key.

Every similarity is a frozen dataclass called as ``sim(queries, keys)``.

Shapes:
    queries ``[..., M, D]`` and keys ``[..., N, D]`` (leading dimensions broadcast)
    give scores ``[..., M, N]``: one row per query, one column per key. Larger is more
    similar for every kernel here, so the distances are negated.

Example:
    >>> import torch
    >>> from kvmem import similarity
    >>> sim = similarity.get("cosine")
    >>> sim(torch.eye(2), torch.eye(2)).tolist()
    [[1.0, 0.0], [0.0, 1.0]]
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Literal

import torch

from ._checks import check_positive
from ._registry import Registry, spec_of
from .features import FeatureMap
from .features import get as get_feature_map


class Similarity:
    """Base class: ``__call__(queries [..., M, D], keys [..., N, D]) -> [..., M, N]``."""

    def __call__(self, queries: torch.Tensor, keys: torch.Tensor) -> torch.Tensor:
        if queries.shape[-1] != keys.shape[-1]:
            raise ValueError(
                f"queries: last dimension {queries.shape[-1]} does not match the keys' {keys.shape[-1]}"
            )
        return self.scores(queries, keys)

    def scores(self, queries: torch.Tensor, keys: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def spec(self) -> dict[str, Any]:
        """JSON-serialisable spec that rebuilds this similarity."""
        return spec_of(self)


registry: Registry[Similarity] = Registry("similarity", Similarity)


def get(spec: Any, *, argument: str = "similarity") -> Similarity:
    """Build a similarity from a name, a ``{"name": ..., **params}`` mapping or an instance."""
    return registry.get(spec, argument=argument)


def _dot(queries: torch.Tensor, keys: torch.Tensor) -> torch.Tensor:
    return queries @ keys.transpose(-1, -2)


def _squared_distance(queries: torch.Tensor, keys: torch.Tensor) -> torch.Tensor:
    # |q|^2 + |k|^2 - 2 q.k uses one GEMM; clamp the small negatives that cancellation leaves.
    q2 = (queries * queries).sum(-1, keepdim=True)
    k2 = (keys * keys).sum(-1).unsqueeze(-2)
    return (q2 + k2 - 2.0 * _dot(queries, keys)).clamp_min(0.0)


@registry.register("dot")
@dataclass(frozen=True)
class Dot(Similarity):
    """Dot product q . k (the paper's Eq. 3 with a linear kernel)."""

    def scores(self, queries, keys):
        return _dot(queries, keys)


@registry.register("scaled_dot")
@dataclass(frozen=True)
class ScaledDot(Similarity):
    """Dot product divided by sqrt(D), as in transformer attention (paper Eq. 5)."""

    def scores(self, queries, keys):
        return _dot(queries, keys) / math.sqrt(queries.shape[-1])


@registry.register("cosine")
@dataclass(frozen=True)
class Cosine(Similarity):
    """Cosine of the angle between q and k; a zero vector has similarity 0 to everything.

    Args:
        eps: norms below ``eps`` are treated as ``eps``.
    """

    eps: float = 1e-12

    def scores(self, queries, keys):
        qn = queries / queries.norm(dim=-1, keepdim=True).clamp_min(self.eps)
        kn = keys / keys.norm(dim=-1, keepdim=True).clamp_min(self.eps)
        return _dot(qn, kn)


@registry.register("neg_euclidean")
@dataclass(frozen=True)
class NegEuclidean(Similarity):
    """Negative Euclidean distance -||q - k||_2 (Millidge et al. 2022)."""

    def scores(self, queries, keys):
        d2 = _squared_distance(queries, keys)
        # sqrt has an infinite derivative at 0, which turns a query sitting exactly on a key
        # into NaN gradients; at 0 the distance's subgradient 0 is used instead. The forward
        # values are the plain square roots.
        positive = d2 > 0
        return -torch.where(positive, torch.where(positive, d2, torch.ones_like(d2)).sqrt(), torch.zeros_like(d2))


@registry.register("neg_manhattan")
@dataclass(frozen=True)
class NegManhattan(Similarity):
    """Negative Manhattan distance -||q - k||_1 (Millidge et al. 2022)."""

    def scores(self, queries, keys):
        q, k = torch.broadcast_tensors(queries[..., :, None, :], keys[..., None, :, :])
        return -(q - k).abs().sum(-1)


@registry.register("rbf")
@dataclass(frozen=True)
class RBF(Similarity):
    """Gaussian (RBF) kernel exp(-gamma ||q - k||^2) (paper Eq. 4; Tsai et al. 2019).

    Args:
        gamma: inverse squared length scale, > 0.
    """

    gamma: float = 1.0

    def __post_init__(self):
        check_positive(self.gamma, "gamma")

    def scores(self, queries, keys):
        return torch.exp(-self.gamma * _squared_distance(queries, keys))


@registry.register("hamming")
@dataclass(frozen=True)
class Hamming(Similarity):
    """Negative Hamming distance between binary codes.

    Args:
        code: ``"bipolar"`` for +-1 codes or ``"binary"`` for {0, 1} codes. Entries are
            checked: anything else raises ``ValueError``.

    The distance is computed with one matrix product: for +-1 codes d = (D - q.k) / 2,
    for {0, 1} codes d = |q| + |k| - 2 q.k.
    """

    code: Literal["bipolar", "binary"] = "bipolar"

    def __post_init__(self):
        if self.code not in ("bipolar", "binary"):
            raise ValueError(f"code: expected 'bipolar' or 'binary', got {self.code!r}")

    def _check(self, x: torch.Tensor, name: str) -> None:
        allowed = (-1.0, 1.0) if self.code == "bipolar" else (0.0, 1.0)
        if not bool(((x == allowed[0]) | (x == allowed[1])).all()):
            raise ValueError(f"{name}: hamming similarity with code={self.code!r} needs entries in {allowed}")

    def scores(self, queries, keys):
        self._check(queries, "queries")
        self._check(keys, "keys")
        if self.code == "bipolar":
            return -(queries.shape[-1] - _dot(queries, keys)) / 2.0
        return -(queries.sum(-1, keepdim=True) + keys.sum(-1).unsqueeze(-2) - 2.0 * _dot(queries, keys))


@registry.register("kernel")
@dataclass(frozen=True)
class Kernel(Similarity):
    """Kernel through an explicit feature map: phi(q) . phi(k) (paper Eq. 4).

    With identity separation this is exactly what :class:`kvmem.MatrixMemory` computes
    with the same feature map (the dual form of Eqs. 1-3).

    Args:
        feature_map: a feature-map spec (see :mod:`kvmem.features`).
    """

    feature_map: Any = "identity"
    _phi: FeatureMap = field(init=False, repr=False, compare=False)

    def __post_init__(self):
        object.__setattr__(self, "_phi", get_feature_map(self.feature_map, argument="feature_map"))
        object.__setattr__(self, "feature_map", self._phi)

    def scores(self, queries, keys):
        return _dot(self._phi(queries), self._phi(keys))
