"""Separation functions sigma: turn similarity scores into read weights alpha (paper Eq. 3).

Every separation is a frozen dataclass called as ``sep(scores)``; it acts along the last
dimension (the stored keys) independently for each query.

Shapes:
    scores ``[..., M, N]`` -> weights ``[..., M, N]``.

Example:
    >>> import torch
    >>> from kvmem import separation
    >>> separation.get("hardmax")(torch.tensor([[0.1, 0.9, 0.3]])).tolist()
    [[0.0, 1.0, 0.0]]
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F

from ._checks import check_int, check_positive
from ._registry import Registry, spec_of


@dataclass(frozen=True)
class Streaming:
    """How a separation's read ``sigma(S) V`` can be summed one block of keys at a time.

    A blocked read (:class:`kvmem.SlotMemory` with ``block_size``) never holds more than
    one ``[..., M, block]`` block of scores. That works for two kinds of separation:

    - *shifted exponentials* (``exp_beta`` set): block weights ``exp(beta (s - m))`` with
      m the running maximum of the scores seen so far; when a later block raises the
      maximum, the sums kept so far are multiplied by ``exp(beta (m_old - m_new))``. At the
      end m is the global maximum, so the sums equal those of the unblocked weights
      (the online softmax of Milakov & Gimelshein 2018, as in FlashAttention).
    - *elementwise* (``weights`` set): each weight depends on its own score only.

    With ``normalize`` the summed read is divided by the summed weights (a read whose
    weights sum to zero stays zero, as the unblocked separations do).

    Attributes:
        exp_beta: beta of a shifted exponential, or None.
        weights: ``scores block -> weights block`` of an elementwise separation, or None.
        normalize: divide by the sum of the weights over all keys.

    Example:
        >>> from kvmem import separation
        >>> separation.Softmax(beta=2.0).streaming()
        Streaming(exp_beta=2.0, weights=None, normalize=True)
        >>> separation.HardMax().streaming() is None
        True
    """

    exp_beta: float | None = None
    weights: Callable[[torch.Tensor], torch.Tensor] | None = None
    normalize: bool = False

    def __post_init__(self):
        if (self.exp_beta is None) == (self.weights is None):
            raise ValueError("streaming: give exactly one of exp_beta (shifted exponential) and weights (elementwise)")


class Separation:
    """Base class: ``__call__(scores [..., M, N]) -> weights [..., M, N]``."""

    def __call__(self, scores: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def spec(self) -> dict[str, Any]:
        """JSON-serialisable spec that rebuilds this separation."""
        return spec_of(self)

    def streaming(self) -> Streaming | None:
        """How to read with this separation block by block of keys, or None where a weight
        depends on the ranks of all scores (hard max, top-k): those need every score at once."""
        return None


registry: Registry[Separation] = Registry("separation", Separation)


def get(spec: Any, *, argument: str = "separation") -> Separation:
    """Build a separation from a name, a ``{"name": ..., **params}`` mapping or an instance."""
    return registry.get(spec, argument=argument)


def _check_real(value: Any, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ValueError(f"{name}: expected a finite real number, got {value!r}")
    return float(value)


def _shifted(scores: torch.Tensor) -> torch.Tensor:
    """scores minus their per-query maximum: <= 0, so exponentials never overflow."""
    return scores - scores.amax(dim=-1, keepdim=True)


@registry.register("identity")
@dataclass(frozen=True)
class Identity(Separation):
    """sigma(s) = s: linear attention / correlation-matrix memory."""

    def __call__(self, scores):
        return scores

    def streaming(self):
        return Streaming(weights=_same)


def _same(scores: torch.Tensor) -> torch.Tensor:
    return scores


@registry.register("softmax")
@dataclass(frozen=True)
class Softmax(Separation):
    """softmax(beta s) over the keys (paper Eq. 6; Ramsauer et al. 2021).

    The maximum is subtracted before scaling, so the weights stay finite for any finite
    scores and any finite beta (tested up to beta = 1e4 with scores of 1e30).

    Args:
        beta: inverse temperature, > 0.
    """

    beta: float = 1.0

    def __post_init__(self):
        check_positive(self.beta, "beta")

    def __call__(self, scores):
        return torch.softmax(self.beta * _shifted(scores), dim=-1)

    def streaming(self):
        return Streaming(exp_beta=float(self.beta), normalize=True)


@registry.register("hardmax")
@dataclass(frozen=True)
class HardMax(Separation):
    """One-hot argmax: the ideal separation without noise (Millidge et al. 2022).

    Ties go to the key with the lowest index, so the result is always exactly one-hot.
    """

    def __call__(self, scores):
        idx = scores.argmax(dim=-1, keepdim=True)
        return torch.zeros_like(scores).scatter_(-1, idx, 1.0)


@registry.register("topk")
@dataclass(frozen=True)
class TopK(Separation):
    """Softmax(beta s) renormalised over the k best keys, zero elsewhere.

    Ties at the k-th place go to the keys with the lowest index. With k >= N every key
    is kept (plain softmax).

    Args:
        k: number of keys kept, >= 1.
        beta: inverse temperature, > 0.
    """

    k: int = 1
    beta: float = 1.0

    def __post_init__(self):
        check_int(self.k, "k", minimum=1)
        check_positive(self.beta, "beta")

    def __call__(self, scores):
        k = min(self.k, scores.shape[-1])
        # A stable sort keeps the lowest index first among equal scores.
        idx = torch.sort(scores, dim=-1, descending=True, stable=True).indices[..., :k]
        top = scores.gather(-1, idx)
        w = torch.softmax(self.beta * _shifted(top), dim=-1)
        return torch.zeros_like(scores).scatter_(-1, idx, w)


@registry.register("threshold")
@dataclass(frozen=True)
class Threshold(Separation):
    """Step function 1[s >= theta]: sparse distributed memory's activation (Kanerva 1988).

    With Hamming similarity (negative distance), ``theta = -r`` activates every key
    within Hamming radius r of the query.

    Args:
        theta: the threshold.
        normalize: divide by the number of active keys (0 active keys gives all zeros).
    """

    theta: float = 0.0
    normalize: bool = False

    def __post_init__(self):
        _check_real(self.theta, "theta")

    def __call__(self, scores):
        w = (scores >= self.theta).to(scores.dtype)
        if self.normalize:
            w = w / w.sum(-1, keepdim=True).clamp_min(1.0)
        return w

    def streaming(self):
        theta = self.theta
        return Streaming(weights=lambda s: (s >= theta).to(s.dtype), normalize=self.normalize)


@registry.register("polynomial")
@dataclass(frozen=True)
class RectifiedPolynomial(Separation):
    """max(s, 0) ** n: dense associative memory's separation (Krotov & Hopfield 2016).

    Args:
        n: the power, >= 1.
        normalize: divide by the sum over keys (all-zero rows stay zero).
    """

    n: int = 2
    normalize: bool = False

    def __post_init__(self):
        check_int(self.n, "n", minimum=1)

    def __call__(self, scores):
        w = F.relu(scores) ** self.n
        if self.normalize:
            total = w.sum(-1, keepdim=True)
            w = torch.where(total > 0, w / total.clamp_min(torch.finfo(w.dtype).tiny), w)
        return w

    def streaming(self):
        n = self.n
        return Streaming(weights=lambda s: F.relu(s) ** n, normalize=self.normalize)


@registry.register("exponential")
@dataclass(frozen=True)
class Exponential(Separation):
    """exp(beta (s - max s)): the exponential separation of Demircigil et al. (2017).

    The raw weights exp(beta s) overflow for beta s > 88 in float32; dividing every weight
    of a query by the same positive number exp(beta max s) keeps them in (0, 1] and leaves
    their ratios, and the sign of any weighted sum, unchanged. Unlike softmax the weights
    do not sum to one.

    Args:
        beta: inverse temperature, > 0.
    """

    beta: float = 1.0

    def __post_init__(self):
        check_positive(self.beta, "beta")

    def __call__(self, scores):
        return torch.exp(self.beta * _shifted(scores))

    def streaming(self):
        return Streaming(exp_beta=float(self.beta))
