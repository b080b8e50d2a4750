"""Input checks shared by the core: one place that turns bad input into clear errors."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch


def as_tensor(
    x: Any,
    name: str,
    *,
    min_rank: int = 1,
    dtype: torch.dtype | None = None,
    device: torch.device | str | None = None,
    finite: bool = True,
) -> torch.Tensor:
    """Convert ``x`` (tensor or numpy array) to a floating tensor and check it.

    Args:
        x: a ``torch.Tensor`` or ``numpy.ndarray``.
        name: the argument name, used in error messages.
        min_rank: the least number of dimensions accepted.
        dtype: the floating dtype wanted; default: keep a floating dtype, integers and
            booleans become ``torch.get_default_dtype()``.
        device: the device wanted (default: unchanged).
        finite: reject NaN and infinities.

    Raises:
        TypeError: ``x`` is neither a tensor nor an array, or holds complex numbers.
        ValueError: rank below ``min_rank`` or non-finite entries.
    """
    if isinstance(x, np.ndarray):
        if x.dtype == object or not (np.issubdtype(x.dtype, np.number) or x.dtype == bool):
            raise TypeError(f"{name}: expected a numeric array, got dtype {x.dtype}")
        x = torch.from_numpy(np.ascontiguousarray(x))
    elif not isinstance(x, torch.Tensor):
        raise TypeError(f"{name}: expected a torch.Tensor or numpy.ndarray, got {type(x).__name__}")
    if x.is_complex():
        raise TypeError(f"{name}: complex tensors are not supported")
    if dtype is None:
        dtype = x.dtype if x.is_floating_point() else torch.get_default_dtype()
    if x.dtype != dtype or (device is not None and x.device != torch.device(device)):
        x = x.to(dtype=dtype, device=device)
    if x.dim() < min_rank:
        raise ValueError(f"{name}: expected at least {min_rank} dimensions, got shape {tuple(x.shape)}")
    if finite and x.numel() and not bool(torch.isfinite(x).all()):
        raise ValueError(f"{name}: contains NaN or infinite values")
    return x


def check_last_dim(x: torch.Tensor, size: int, name: str, what: str) -> None:
    """Raise ``ValueError`` unless ``x.shape[-1] == size``."""
    if x.shape[-1] != size:
        raise ValueError(f"{name}: expected last dimension {size} ({what}), got shape {tuple(x.shape)}")


def check_positive(value: Any, name: str, *, allow_zero: bool = False) -> float:
    """A finite positive (or non-negative) real number, else ``ValueError``/``TypeError``."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name}: expected a real number, got {type(value).__name__}")
    if not math.isfinite(value) or value < 0 or (value == 0 and not allow_zero):
        bound = ">= 0" if allow_zero else "> 0"
        raise ValueError(f"{name}: expected a finite number {bound}, got {value}")
    return float(value)


def check_int(value: Any, name: str, *, minimum: int = 1) -> int:
    """An integer of at least ``minimum``, else ``ValueError``/``TypeError``."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{name}: expected an integer, got {type(value).__name__}")
    if value < minimum:
        raise ValueError(f"{name}: expected an integer >= {minimum}, got {value}")
    return int(value)


def make_generator(seed: int | torch.Generator | None, name: str = "seed") -> torch.Generator:
    """A CPU ``torch.Generator``: the one given, or a new one seeded with ``seed`` (0 if None)."""
    if isinstance(seed, torch.Generator):
        return seed
    if seed is None:
        seed = 0
    seed = check_int(seed, name, minimum=0)
    gen = torch.Generator()
    gen.manual_seed(seed)
    return gen
