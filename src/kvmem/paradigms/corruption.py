"""Cue corruption: flipped bits, masked entries, Gaussian noise; batched and seeded.

Every function acts on the last dimension (one pattern of N entries per row) and treats all
leading dimensions as independent rows. Randomness comes only from the ``generator``
(a CPU ``torch.Generator``, advanced by the call) or from a new generator seeded by
``seed``; with neither, seed 0 is used, so results are reproducible and the global
generator is never touched. Inputs are never modified: each call returns new tensors.

The number of corrupted entries per row is k = floor(fraction N + 1/2) (round half up).

Example:
    >>> import torch
    >>> from kvmem.paradigms import flip_bits, mask
    >>> x = torch.ones(2, 10)
    >>> (flip_bits(x, 0.3, seed=1) == -1).sum(-1).tolist()
    [3, 3]
    >>> cue, known = mask(x, 0.5, mode="bottom")
    >>> cue[0].tolist()
    [1.0, 1.0, 1.0, 1.0, 1.0, 0.0, 0.0, 0.0, 0.0, 0.0]
"""

from __future__ import annotations

import math
from typing import Any, Literal

import torch

from .._checks import as_tensor, check_positive, make_generator

CODES = ("bipolar", "binary")
MASK_MODES = ("random", "bottom")


def _generator(seed: int | None, generator: torch.Generator | None) -> torch.Generator:
    if seed is not None and generator is not None:
        raise ValueError("generator: give a seed or a generator, not both")
    if generator is not None:
        if not isinstance(generator, torch.Generator):
            raise TypeError(f"generator: expected a torch.Generator, got {type(generator).__name__}")
        return generator
    if isinstance(seed, torch.Generator):
        raise TypeError("seed: expected an integer; pass a torch.Generator as generator=")
    return make_generator(seed, "seed")


def _fraction(fraction: Any) -> float:
    value = check_positive(fraction, "fraction", allow_zero=True)
    if value > 1.0:
        raise ValueError(f"fraction: expected a number in [0, 1], got {fraction}")
    return value


def _count(fraction: float, n: int) -> int:
    return min(n, math.floor(fraction * n + 0.5))


def _random_positions(shape: torch.Size, k: int, gen: torch.Generator, device: torch.device) -> torch.Tensor:
    """Boolean ``shape``: exactly k True entries per row (last dim), uniform and independent per row."""
    ranks = torch.rand(shape, generator=gen).argsort(dim=-1)
    chosen = torch.zeros(shape, dtype=torch.bool)
    chosen.scatter_(-1, ranks[..., :k], True)
    return chosen.to(device)


def flip_bits(
    x: Any,
    fraction: float,
    *,
    code: Literal["bipolar", "binary"] = "bipolar",
    seed: int | None = None,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Flip exactly k = round(fraction N) randomly chosen entries of each row.

    Args:
        x: ``[..., N]`` with entries +-1 (``code="bipolar"``) or {0, 1} (``"binary"``).
        fraction: the fraction of entries flipped, in [0, 1].
        code: how a flip is made: s -> -s (bipolar) or b -> 1 - b (binary).
        seed: seed of a new generator (default 0 when no generator is given).
        generator: a CPU ``torch.Generator`` to draw from instead.

    Returns:
        a new floating tensor shaped like ``x``; positions are drawn independently per row.

    Raises:
        ValueError: unknown code, entries outside the code, fraction outside [0, 1].
    """
    if code not in CODES:
        raise ValueError(f"code: expected one of {CODES}, got {code!r}")
    x = as_tensor(x, "x")
    fraction = _fraction(fraction)
    allowed = (-1.0, 1.0) if code == "bipolar" else (0.0, 1.0)
    if not bool(((x == allowed[0]) | (x == allowed[1])).all()):
        raise ValueError(f"x: code={code!r} needs entries in {allowed}")
    gen = _generator(seed, generator)
    flip = _random_positions(x.shape, _count(fraction, x.shape[-1]), gen, x.device)
    flipped = -x if code == "bipolar" else 1.0 - x
    return torch.where(flip, flipped, x)


def mask(
    x: Any,
    fraction: float,
    *,
    mode: Literal["random", "bottom"] = "random",
    fill: float = 0.0,
    seed: int | None = None,
    generator: torch.Generator | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Hide k = round(fraction N) entries of each row behind ``fill``.

    Args:
        x: ``[..., N]``.
        fraction: the fraction of entries hidden, in [0, 1].
        mode: ``"random"`` (positions drawn independently per row) or ``"bottom"`` (the
            last k entries: the bottom part of a flattened image, as in the halved images of
            Millidge et al. 2022; deterministic).
        fill: the value written into hidden entries.
        seed: seed of a new generator (random mode; default 0 when no generator is given).
        generator: a CPU ``torch.Generator`` to draw from instead.

    Returns:
        ``(corrupted, known)``: the new tensor and a boolean mask shaped like ``x``, True
        where the entry is kept (known), ready to use as a clamp mask in ``retrieve``.
    """
    if mode not in MASK_MODES:
        raise ValueError(f"mode: expected one of {MASK_MODES}, got {mode!r}")
    if isinstance(fill, bool) or not isinstance(fill, (int, float)) or not math.isfinite(fill):
        raise ValueError(f"fill: expected a finite real number, got {fill!r}")
    x = as_tensor(x, "x")
    fraction = _fraction(fraction)
    gen = _generator(seed, generator)
    n = x.shape[-1]
    k = _count(fraction, n)
    if mode == "random":
        hidden = _random_positions(x.shape, k, gen, x.device)
    else:
        hidden = (torch.arange(n, device=x.device) >= n - k).expand(x.shape)
    known = ~hidden
    return torch.where(known, x, torch.full_like(x, float(fill))), known.clone()


def gaussian_noise(
    x: Any,
    std: float,
    *,
    seed: int | None = None,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """x + std * eps with eps ~ N(0, 1) drawn independently for every entry.

    Args:
        x: any shape, at least one dimension.
        std: the noise standard deviation, >= 0.
        seed: seed of a new generator (default 0 when no generator is given).
        generator: a CPU ``torch.Generator`` to draw from instead.
    """
    x = as_tensor(x, "x")
    std = check_positive(std, "std", allow_zero=True)
    gen = _generator(seed, generator)
    eps = torch.randn(x.shape, generator=gen, dtype=x.dtype).to(x.device)
    return x + std * eps
