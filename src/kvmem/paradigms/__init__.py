"""Experimental paradigms: how cues are corrupted and how recall is probed.

:mod:`kvmem.paradigms.corruption` makes noisy, partial and bit-flipped cues, batched and
seeded: :func:`flip_bits`, :func:`mask`, :func:`gaussian_noise`.
:mod:`kvmem.paradigms.capacity` stores random patterns, probes them with cues and finds
the capacity P* at a named criterion by bisection.
"""

from . import capacity
from .corruption import flip_bits, gaussian_noise, mask

__all__ = ["capacity", "flip_bits", "gaussian_noise", "mask"]
