"""Sparse distributed memory (Kanerva 1988) and its link to attention (Bricken & Pehlevan 2021).

Kanerva, P. (1988). *Sparse Distributed Memory*. MIT Press.
Bricken, T. & Pehlevan, C. (2021). "Attention approximates sparse distributed memory",
NeurIPS.

A sparse distributed memory has L *hard locations*, each a random binary address
a_l in {0, 1}^n with a counter vector c_l in Z^Dv. A key k *activates* every location
within Hamming distance r of it. Writing (k, v) adds the bipolar form of v (+1 for a 1,
-1 for a 0) to the counters of the active locations; reading q sums the counters of the
locations q activates and thresholds the sum at 0.

Bricken & Pehlevan observed that the number of hard locations in the intersection of the
radius-r balls around q and around a stored key k falls off approximately exponentially
in d(q, k), so SDM's read weighs stored patterns like softmax(beta cos(q, k));
:func:`fit_softmax_beta` computes that beta exactly.

Example:
    >>> import torch
    >>> from kvmem.memory.sdm import SparseDistributedMemory
    >>> mem = SparseDistributedMemory(32, 32, num_locations=500, activation_prob=0.1, seed=0)
    >>> pattern = (torch.arange(32) % 3 == 0).float()[None]
    >>> mem.write(pattern)
    >>> torch.equal(mem.read(pattern), pattern)
    True
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from scipy import special, stats

from .._checks import check_int, make_generator
from .base import Memory, ReadResult, Retrieval, register_memory
from .universal import _renamed, iterate


def _check_binary(x: torch.Tensor, name: str) -> None:
    if not bool(((x == 0) | (x == 1)).all()):
        raise ValueError(f"{name}: sparse distributed memory needs {{0, 1}} entries")


def radius_for_probability(address_dim: int, activation_prob: float) -> int:
    """The smallest radius r with P(Binomial(address_dim, 1/2) <= r) >= ``activation_prob``.

    That is the smallest Hamming ball around a query that holds a random address with
    probability at least ``activation_prob``; so on average at least that fraction of the
    hard locations is active.

    Example:
        >>> radius_for_probability(64, 0.05)
        25
    """
    n = check_int(address_dim, "address_dim")
    if isinstance(activation_prob, bool) or not isinstance(activation_prob, (int, float)):
        raise TypeError(f"activation_prob: expected a real number, got {type(activation_prob).__name__}")
    if not (0.0 < activation_prob <= 1.0):
        raise ValueError(f"activation_prob: expected a probability in (0, 1], got {activation_prob}")
    cdf = stats.binom.cdf(np.arange(n + 1), n, 0.5)
    # A tiny slack absorbs the rounding of the CDF (activation_prob = 1 must give r = n).
    return int(np.argmax(cdf >= activation_prob - 1e-12))


def log_intersection_probability(address_dim: int, radius: int, distance: int) -> float:
    """log P(|a - q| <= r and |a - k| <= r) for a uniform random address a, |q - k| = d.

    Split the coordinates into the d where q and k differ and the n - d where they agree.
    If a differs from q in i of the first and j of the second, then |a - q| = i + j and
    |a - k| = (d - i) + j, so

        P = 2^-n sum_{i, j : i + j <= r, d - i + j <= r} C(d, i) C(n - d, j),

    evaluated in float64 log-space. Returns ``-inf`` where the balls do not meet (d > 2r).
    """
    n = check_int(address_dim, "address_dim")
    r = check_int(radius, "radius", minimum=0)
    d = check_int(distance, "distance", minimum=0)
    if d > n:
        raise ValueError(f"distance: expected at most address_dim = {n}, got {d}")
    i = np.arange(d + 1)[:, None]
    j = np.arange(n - d + 1)[None, :]
    ok = (i + j <= r) & (d - i + j <= r)
    if not ok.any():
        return -math.inf
    log_terms = (
        special.gammaln(d + 1) - special.gammaln(i + 1) - special.gammaln(d - i + 1)
        + special.gammaln(n - d + 1) - special.gammaln(j + 1) - special.gammaln(n - d - j + 1)
    )
    return float(special.logsumexp(log_terms[ok]) - n * math.log(2.0))


@dataclass(frozen=True)
class SoftmaxFit:
    """The least-squares fit log E[|B_r(q) ∩ B_r(k)|] ≈ intercept + beta cos(q, k).

    Attributes:
        beta: the fitted inverse temperature.
        intercept: the fitted constant (log of the normalisation; softmax ignores it).
        r_squared: coefficient of determination of the fit on the log weights.
        distances: the Hamming distances used, 0..min(n, 2r).
        cosines: cos(q, k) = 1 - 2 d / n of the bipolar forms of q and k.
        log_weights: log of the expected number of hard locations in the intersection
            (log probabilities when ``num_locations`` is None).
    """

    beta: float
    intercept: float
    r_squared: float
    distances: np.ndarray
    cosines: np.ndarray
    log_weights: np.ndarray


def softmax_fit(
    address_dim: int, radius: int, num_locations: int | None = None, max_distance: int | None = None
) -> SoftmaxFit:
    """Fit SDM's expected read weights by exp(beta cos) (Bricken & Pehlevan 2021); see :func:`fit_softmax_beta`."""
    n = check_int(address_dim, "address_dim")
    r = check_int(radius, "radius", minimum=0)
    if r > n:
        raise ValueError(f"radius: expected at most address_dim = {n}, got {r}")
    scale = 0.0 if num_locations is None else math.log(check_int(num_locations, "num_locations"))
    top = min(n, 2 * r)
    if max_distance is not None:
        top = min(top, check_int(max_distance, "max_distance", minimum=1))
    d = np.arange(top + 1)
    if d.size < 2:
        raise ValueError(f"radius: the intersection is non-zero at one distance only (r = {r}); nothing to fit")
    logw = np.array([log_intersection_probability(n, r, int(x)) for x in d]) + scale
    cos = 1.0 - 2.0 * d / n
    design = np.stack([np.ones_like(cos), cos], axis=1)
    (intercept, beta), *_ = np.linalg.lstsq(design, logw, rcond=None)
    resid = logw - design @ np.array([intercept, beta])
    total = ((logw - logw.mean()) ** 2).sum()
    r2 = 1.0 - float((resid**2).sum() / total) if total > 0 else 1.0
    return SoftmaxFit(float(beta), float(intercept), r2, d, cos, logw)


def fit_softmax_beta(
    address_dim: int, radius: int, num_locations: int | None = None, max_distance: int | None = None
) -> float:
    """The beta for which softmax(beta cos(q, k)) best matches SDM's read weights.

    SDM weighs a stored key k, at Hamming distance d from the query q, by the number of
    hard locations in the intersection of the radius-r balls around q and k. Its
    expectation is L P_r(d) with P_r from :func:`log_intersection_probability`, exact.
    The fit is ordinary least squares of log(L P_r(d)) on cos = 1 - 2d/n (the cosine of
    the bipolar forms) with a free intercept, over d = 0..min(n, 2r), where P_r(d) > 0.
    The intercept absorbs every normalisation, so beta does not depend on
    ``num_locations`` (accepted for the expected counts kept by :func:`softmax_fit`).

    log P_r(d) is concave in d and falls steeply as d nears 2r, where the two balls barely
    touch, so the straight line fits the small distances (which carry nearly all of a
    read's weight) best. ``max_distance`` restricts the fit to d <= max_distance; e.g. for
    n = 64, r = 25 (p ~ 0.05): beta = 4.55 with R^2 = 0.88 over d <= 2r, but beta = 2.58
    with R^2 = 0.99 over d <= r. :func:`softmax_fit` returns R^2 and the fitted curve.

    Args:
        address_dim: n, >= 1.
        radius: r, in [1, n].
        num_locations: L, or None.
        max_distance: the largest distance fitted (default: 2r, all non-zero ones).

    Example:
        >>> round(fit_softmax_beta(64, 25), 2), round(fit_softmax_beta(64, 25, max_distance=25), 2)
        (4.55, 2.58)
    """
    return softmax_fit(address_dim, radius, num_locations, max_distance).beta


@register_memory
class SparseDistributedMemory(Memory):
    """Kanerva's sparse distributed memory with binary addresses and bipolar counters.

    Hard-location addresses are drawn once, at construction, as uniform {0, 1} vectors from
    a ``torch.Generator`` seeded by ``seed``; they are not part of the saved state (the seed
    in the configuration redraws them identically). Leading batch dimensions of the first
    write give independent memories that *share* these addresses but have separate counters.

    - write(k, v): every location l with d_H(a_l, k) <= r adds 2 v - 1 to its counters c_l.
    - read(q): s = sum over active l of c_l; the output is 1 where s > 0 and 0 where s <= 0
      (a tie s = 0, including "no active location", reads as 0).

    Exactly one of ``radius`` and ``activation_prob`` is given. With ``activation_prob = p``
    the radius is the smallest r whose Binomial(n, 1/2) CDF reaches p
    (:func:`radius_for_probability`), so a query activates at least a fraction p of the
    locations on average.

    Args:
        address_dim: n, the dimension of keys and queries.
        value_dim: Dv, the dimension of values.
        num_locations: L, the number of hard locations.
        radius: r, the Hamming activation radius, in [0, n].
        activation_prob: p in (0, 1], the alternative to ``radius``.
        seed: seed of the hard-location addresses.

    Shapes:
        write: keys ``[..., P, n]``, values ``[..., P, Dv]`` (both {0, 1}); state counters
        ``[..., L, Dv]``.
        read: queries ``[..., M, n]`` -> ``[..., M, Dv]`` in {0, 1}; ``details=True`` adds
        weights (the activations as 0./1.) and scores (minus the Hamming distances to the
        hard locations) ``[..., M, L]``.

    Example:
        >>> mem = SparseDistributedMemory(16, 2, num_locations=100, radius=6)
        >>> mem.radius, mem.addresses.shape
        (6, torch.Size([100, 16]))
    """

    _state_names = ("counters", "writes")

    def __init__(
        self,
        address_dim: int,
        value_dim: int,
        num_locations: int,
        radius: int | None = None,
        activation_prob: float | None = None,
        seed: int = 0,
    ) -> None:
        super().__init__()
        self.address_dim = check_int(address_dim, "address_dim")
        self.value_dim = check_int(value_dim, "value_dim")
        self.num_locations = check_int(num_locations, "num_locations")
        if (radius is None) == (activation_prob is None):
            raise ValueError("radius: give exactly one of radius and activation_prob")
        self._radius_arg = radius
        self._prob_arg = activation_prob
        if radius is not None:
            self.radius = check_int(radius, "radius", minimum=0)
            if self.radius > self.address_dim:
                raise ValueError(f"radius: expected at most address_dim = {self.address_dim}, got {radius}")
        else:
            self.radius = radius_for_probability(self.address_dim, activation_prob)
        self.seed = check_int(seed, "seed", minimum=0)
        gen = make_generator(self.seed)
        addresses = torch.randint(0, 2, (self.num_locations, self.address_dim), generator=gen)
        self.register_buffer("addresses", addresses.to(torch.get_default_dtype()), persistent=False)

    def config(self) -> dict[str, Any]:
        return {
            "address_dim": self.address_dim,
            "value_dim": self.value_dim,
            "num_locations": self.num_locations,
            "radius": self._radius_arg,
            "activation_prob": self._prob_arg,
            "seed": self.seed,
        }

    def _batch_shape(self) -> torch.Size:
        return self.counters.shape[:-2]

    def _key_dim(self) -> int:
        return self.address_dim

    def _required_state(self):
        return ("counters", "writes")

    # -- activation ----------------------------------------------------------------
    def distances(self, x: torch.Tensor) -> torch.Tensor:
        """Hamming distances to the hard locations: ``[..., M, n] -> [..., M, L]``.

        One matrix product: d = |x| + |a| - 2 x . a for {0, 1} vectors (exact in floating
        point for n < 2^24).
        """
        a = self.addresses.to(dtype=x.dtype, device=x.device)
        d = x.sum(-1, keepdim=True) + a.sum(-1) - 2.0 * (x @ a.T)
        return d.round()

    def activation(self, x: torch.Tensor) -> torch.Tensor:
        """1. where a hard location lies within the radius of x, else 0.: ``[..., M, L]``."""
        return (self.distances(x) <= self.radius).to(x.dtype)

    # -- writing -------------------------------------------------------------------
    def write(self, keys: Any, values: Any = None) -> None:
        """Add the bipolar values 2 v - 1 to the counters of the locations each key activates.

        Args:
            keys: ``[..., P, n]`` in {0, 1}.
            values: ``[..., P, Dv]`` in {0, 1}; None stores the keys themselves
                (auto-association, needs Dv = n).
        """
        if values is None:
            if self.value_dim != self.address_dim:
                raise ValueError(
                    f"values: needed unless value_dim == address_dim (got {self.value_dim} and {self.address_dim})"
                )
            values = keys
        keys, values = self._pairs(keys, values)
        if keys.shape[-1] != self.address_dim:
            raise ValueError(f"keys: expected shape [..., P, {self.address_dim}], got {tuple(keys.shape)}")
        if values.shape[-1] != self.value_dim:
            raise ValueError(f"values: expected shape [..., P, {self.value_dim}], got {tuple(values.shape)}")
        _check_binary(keys, "keys")
        _check_binary(values, "values")
        act = self.activation(keys)  # [..., P, L]
        update = act.transpose(-1, -2) @ (2.0 * values - 1.0)  # [..., L, Dv]
        if self.is_empty:
            self.counters = update
            self.writes = torch.tensor(keys.shape[-2], dtype=torch.long)
        else:
            self.counters = self.counters + update
            self.writes = self.writes + keys.shape[-2]

    # -- reading -------------------------------------------------------------------
    def read(self, queries: Any, details: bool = False) -> torch.Tensor | ReadResult:
        """Sum the counters of the active locations and threshold at 0 (ties read 0).

        Args:
            queries: ``[..., M, n]`` in {0, 1}; leading dimensions broadcast to the batch shape.
            details: return a :class:`ReadResult` with the activations as weights and the
                negative Hamming distances as scores, ``[..., M, L]``.
        """
        queries = self._queries(queries)
        _check_binary(queries, "queries")
        return self._read(queries, details)

    def _read(self, x: torch.Tensor, details: bool = False) -> torch.Tensor | ReadResult:
        dist = self.distances(x)
        act = (dist <= self.radius).to(x.dtype)
        out = ((act @ self.counters) > 0).to(x.dtype)
        return ReadResult(out, act, -dist) if details else out

    def retrieve(self, cue: Any, steps: int = 10, clamp: Any = None) -> Retrieval:
        """Iterated autoassociative read x <- read(x) until a fixed point (needs Dv = n).

        Args:
            cue: ``[..., M, n]`` in {0, 1}.
            steps: the most reads, >= 0.
            clamp: optional mask broadcastable to the cue, True where an entry is known
                and is reset to the cue's after every read.

        Returns:
            :class:`~kvmem.memory.base.Retrieval`: final states, the number of reads
            that changed each state (reads until its fixed point), and whether a read left
            it unchanged within ``steps`` reads.
        """
        if self.value_dim != self.address_dim:
            raise ValueError(
                f"value_dim: retrieve needs value_dim == address_dim, got {self.value_dim} and {self.address_dim}"
            )
        steps = check_int(steps, "steps", minimum=0)
        try:
            cue = self._queries(cue)
        except (ValueError, TypeError) as err:
            raise _renamed(err, "cue") from None
        _check_binary(cue, "cue")
        return iterate(self._read, cue, self._batch_shape(), steps, 0.0, clamp)
