"""Experimental paradigms: how cues are corrupted and how recall is probed.

:mod:`kvmem.paradigms.corruption` makes noisy, partial and bit-flipped cues, batched and
seeded: :func:`flip_bits`, :func:`mask`, :func:`gaussian_noise`.
:mod:`kvmem.paradigms.capacity` stores random patterns, probes them with cues and finds
the capacity P* at a named criterion by bisection.
:mod:`kvmem.paradigms.free_recall` is CMR free recall on drifting context keys (simulation
in psifr's long table, the PEERS and Morton2013 data); :mod:`kvmem.paradigms.free_recall_fit`
is its exact likelihood and maximum-likelihood fits.
"""

from . import capacity, free_recall, free_recall_fit
from .corruption import flip_bits, gaussian_noise, mask

__all__ = ["capacity", "flip_bits", "free_recall", "free_recall_fit", "gaussian_noise", "mask"]
