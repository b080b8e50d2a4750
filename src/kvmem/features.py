"""Feature maps phi: kernels written as dot products, S(q, k) = phi(q) . phi(k) (paper Eq. 4).

Every map is a frozen dataclass called as ``phi(x)``; ``phi.out_dim(d)`` gives the
feature dimension for inputs of dimension ``d``. Random maps draw their projection from
their own ``seed`` the first time they see an input dimension, so the same seed always
gives the same map, whatever else the program draws.

Shapes:
    x ``[..., D]`` -> ``[..., F]`` with ``F = phi.out_dim(D)``.

Example:
    >>> import torch
    >>> from kvmem import features
    >>> phi = features.get({"name": "dpfp", "nu": 1})
    >>> phi(torch.ones(3, 4)).shape
    torch.Size([3, 8])
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F

from ._checks import check_int, check_positive
from ._registry import Registry, spec_of


class FeatureMap:
    """Base class: ``__call__(x [..., D]) -> [..., out_dim(D)]``."""

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def out_dim(self, in_dim: int) -> int:
        """Feature dimension for inputs of dimension ``in_dim``."""
        return in_dim

    def spec(self) -> dict[str, Any]:
        """JSON-serialisable spec that rebuilds this map."""
        return spec_of(self)


registry: Registry[FeatureMap] = Registry("feature map", FeatureMap)


def get(spec: Any, *, argument: str = "feature_map") -> FeatureMap:
    """Build a feature map from a name, a ``{"name": ..., **params}`` mapping or an instance."""
    return registry.get(spec, argument=argument)


@registry.register("identity")
@dataclass(frozen=True)
class Identity(FeatureMap):
    """phi(x) = x: the linear kernel of the paper's Eqs. 1-3."""

    def __call__(self, x):
        return x


@registry.register("elu_plus_one")
@dataclass(frozen=True)
class EluPlusOne(FeatureMap):
    """phi(x) = elu(x) + 1, positive everywhere (Katharopoulos et al. 2020)."""

    def __call__(self, x):
        # elu(x) + 1 written as exp(x) for x <= 0 keeps it strictly positive down to the
        # float underflow of exp (about -87 in float32) instead of rounding to 0 near -17.
        return torch.where(x > 0, x + 1.0, torch.exp(x.clamp(max=0.0)))


@registry.register("relu")
@dataclass(frozen=True)
class ReLU(FeatureMap):
    """phi(x) = max(x, 0)."""

    def __call__(self, x):
        return F.relu(x)


@registry.register("dpfp")
@dataclass(frozen=True)
class DPFP(FeatureMap):
    """Deterministic parameter-free projection (Schlag, Irie & Schmidhuber 2021).

    With r = [relu(x), relu(-x)] (dimension 2D), the features are the products
    r_i * r_((i - j) mod 2D) for every shift j = 1..nu, concatenated shift by shift:
    dimension 2 D nu, non-negative, and sparse for most inputs.

    Args:
        nu: number of shifts (the paper's capacity parameter), >= 1.
    """

    nu: int = 1

    def __post_init__(self):
        check_int(self.nu, "nu", minimum=1)

    def out_dim(self, in_dim):
        return 2 * in_dim * self.nu

    def __call__(self, x):
        r = torch.cat([F.relu(x), F.relu(-x)], dim=-1)
        return torch.cat([r * torch.roll(r, shifts=j, dims=-1) for j in range(1, self.nu + 1)], dim=-1)


@dataclass(frozen=True)
class _RandomMap(FeatureMap):
    """Shared machinery of the seeded random maps: one projection per input dimension."""

    num_features: int = 256
    seed: int = 0
    _cache: dict = field(default_factory=dict, init=False, repr=False, compare=False)

    def __post_init__(self):
        check_int(self.num_features, "num_features", minimum=1)
        check_int(self.seed, "seed", minimum=0)

    def out_dim(self, in_dim):
        return self.num_features

    def _draw(self, in_dim: int, gen: torch.Generator) -> tuple[torch.Tensor, ...]:
        raise NotImplementedError

    def parameters_for(self, in_dim: int, dtype: torch.dtype, device: torch.device) -> tuple[torch.Tensor, ...]:
        """The random projection used for inputs of dimension ``in_dim`` (drawn in float64)."""
        if in_dim not in self._cache:
            gen = torch.Generator().manual_seed(self.seed)
            self._cache[in_dim] = self._draw(in_dim, gen)
        return tuple(p.to(dtype=dtype, device=device) for p in self._cache[in_dim])


def _orthogonal_gaussian_rows(m: int, d: int, gen: torch.Generator) -> torch.Tensor:
    """m x d matrix whose rows are orthogonal within blocks of d and have Gaussian norms."""
    blocks = []
    for _ in range(math.ceil(m / d)):
        q, r = torch.linalg.qr(torch.randn(d, d, generator=gen, dtype=torch.float64))
        # Fixing the signs by diag(R) makes Q Haar-distributed (plain QR biases the signs).
        blocks.append((q * torch.sign(torch.diagonal(r))).T)
    w = torch.cat(blocks, dim=0)[:m]
    # Rescale rows to the norms of independent Gaussian vectors so each row is marginally N(0, I).
    norms = torch.randn(m, d, generator=gen, dtype=torch.float64).norm(dim=-1, keepdim=True)
    return w * norms


@registry.register("favor")
@dataclass(frozen=True)
class Favor(_RandomMap):
    """FAVOR+ positive orthogonal random features (Choromanski et al. 2021).

    phi(x) = exp(W x - |x|^2 / 2) / sqrt(m), with the m rows of W orthogonal in blocks and
    marginally N(0, I), so that E[phi(q) . phi(k)] = exp(q . k), the unnormalised softmax
    kernel. Scale inputs by D**-0.25 to approximate attention with 1/sqrt(D) scaling.
    Inputs with large norms overflow the exponential, as in the original method.

    Args:
        num_features: m, the number of random features.
        seed: seed of the projection.
    """

    def _draw(self, in_dim, gen):
        return (_orthogonal_gaussian_rows(self.num_features, in_dim, gen),)

    def __call__(self, x):
        (w,) = self.parameters_for(x.shape[-1], x.dtype, x.device)
        proj = x @ w.T - 0.5 * (x * x).sum(-1, keepdim=True)
        return torch.exp(proj) / math.sqrt(self.num_features)


@registry.register("random_fourier")
@dataclass(frozen=True)
class RandomFourier(_RandomMap):
    """Random Fourier features for the RBF kernel (Rahimi & Recht 2007).

    phi(x) = sqrt(2 / m) cos(W x + b), W ~ N(0, 2 gamma I), b ~ U[0, 2 pi), so that
    E[phi(q) . phi(k)] = exp(-gamma |q - k|^2), the :class:`kvmem.similarity.RBF` kernel.

    Args:
        num_features: m, the number of random features.
        gamma: inverse squared length scale of the RBF kernel, > 0.
        seed: seed of the projection.
    """

    gamma: float = 1.0

    def __post_init__(self):
        super().__post_init__()
        check_positive(self.gamma, "gamma")

    def _draw(self, in_dim, gen):
        w = torch.randn(self.num_features, in_dim, generator=gen, dtype=torch.float64) * math.sqrt(2.0 * self.gamma)
        b = torch.rand(self.num_features, generator=gen, dtype=torch.float64) * (2.0 * math.pi)
        return w, b

    def __call__(self, x):
        w, b = self.parameters_for(x.shape[-1], x.dtype, x.device)
        return torch.cos(x @ w.T + b) * math.sqrt(2.0 / self.num_features)
