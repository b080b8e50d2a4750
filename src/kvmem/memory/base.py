"""What every kvmem memory shares: the read result, state handling and input checks.

A memory is a ``torch.nn.Module`` with ``write(keys, values)`` and ``read(queries)``.
Leading dimensions of the first write fix the memory's *batch shape*: that many
independent memories live side by side and every later write must have the same batch
shape. Queries may broadcast to it (one set of queries read from every memory).

Row vectors throughout, as in the paper: keys ``[..., N, Dk]``, values ``[..., N, Dv]``,
queries ``[..., M, Dk]``, read values ``[..., M, Dv]``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import nn

from .._checks import as_tensor

#: Memory classes by name, so that :func:`kvmem.load` can rebuild a saved memory.
MEMORY_CLASSES: dict[str, type[Memory]] = {}


def register_memory(cls: type[Memory]) -> type[Memory]:
    """Class decorator: make ``cls`` loadable by :func:`kvmem.load`."""
    MEMORY_CLASSES[cls.__name__] = cls
    return cls


@dataclass
class ReadResult:
    """What ``read(queries, details=True)`` returns.

    Attributes:
        values: retrieved values ``[..., M, Dv]``.
        weights: read weights alpha = sigma(S) ``[..., M, N]``, or None where a memory
            keeps no explicit keys (matrix memories).
        scores: similarities S before separation ``[..., M, N]``, or None likewise.
    """

    values: torch.Tensor
    weights: torch.Tensor | None = None
    scores: torch.Tensor | None = None


@dataclass(frozen=True)
class Retrieval:
    """What ``retrieve`` returns, for every memory with iterative dynamics.

    One type for the Hopfield family, ``UniversalHopfield`` and ``SparseDistributedMemory``.

    Attributes:
        states: the final states ``[..., M, N]``.
        steps: ``[..., M]`` (long): the updates that changed each state before it reached
            its fixed point (0: the cue already was one). For asynchronous dynamics an update
            is one sweep over all N neurons.
        converged: ``[..., M]`` (bool): an update left the state unchanged (within the
            model's tolerance) before the step budget ran out. A converged state is frozen
            while the others go on, so each result depends only on its own cue.
        iterations: how many updates (or sweeps) the loop ran for the whole batch; at most
            the step budget, and ``steps.max() + 1`` when every state converged.
    """

    states: torch.Tensor
    steps: torch.Tensor
    converged: torch.Tensor
    iterations: int


class Memory(nn.Module):
    """Base class of all memories.

    Subclasses list their state tensors in ``_state_names`` and implement ``config()``,
    ``write`` and ``read``. State tensors are buffers that are ``None`` until the first
    write; ``state_dict()`` holds only the ones that exist.
    """

    _state_names: ClassVar[tuple[str, ...]] = ()

    def __init__(self) -> None:
        super().__init__()
        for name in self._state_names:
            self.register_buffer(name, None)

    # -- configuration -------------------------------------------------------------
    def config(self) -> dict[str, Any]:
        """Constructor arguments as a JSON-serialisable dict: ``type(m)(**m.config())``."""
        raise NotImplementedError

    # -- state ---------------------------------------------------------------------
    @property
    def is_empty(self) -> bool:
        """True until the first write (and after :meth:`reset`)."""
        return getattr(self, self._state_names[0]) is None

    @property
    def batch_shape(self) -> torch.Size | None:
        """Leading dimensions fixed by the first write, or None while empty."""
        return None if self.is_empty else self._batch_shape()

    def _batch_shape(self) -> torch.Size:
        raise NotImplementedError

    def reset(self) -> None:
        """Forget everything: back to the state after construction."""
        for name in self._state_names:
            setattr(self, name, None)

    def load_state_dict(self, state_dict: Mapping[str, torch.Tensor], strict: bool = True, assign: bool = False):
        """Restore state saved by ``state_dict()``; the memory's configuration must match.

        Raises:
            ValueError: a missing or unexpected entry, or a non-tensor value.
        """
        missing = [n for n in self._required_state() if n not in state_dict]
        unexpected = [n for n in state_dict if n not in self._state_names]
        if missing or (strict and unexpected):
            raise ValueError(
                f"state_dict: missing entries {missing}, unexpected entries {unexpected}; "
                f"a {type(self).__name__} stores {list(self._state_names)}"
            )
        for name in self._state_names:
            value = state_dict.get(name)
            if value is not None and not isinstance(value, torch.Tensor):
                raise ValueError(f"state_dict: entry {name!r} must be a tensor, got {type(value).__name__}")
            setattr(self, name, None if value is None else value.detach().clone())
        return nn.modules.module._IncompatibleKeys([], [])

    def _required_state(self) -> tuple[str, ...]:
        """Entries that must be present in a non-empty state dict."""
        return ()

    # -- input checks --------------------------------------------------------------
    def _pairs(self, keys: Any, values: Any) -> tuple[torch.Tensor, torch.Tensor]:
        """Check and convert a batch of key-value pairs for a write."""
        dtype = None if self.is_empty else getattr(self, self._state_names[0]).dtype
        device = None if self.is_empty else getattr(self, self._state_names[0]).device
        keys = as_tensor(keys, "keys", min_rank=2, dtype=dtype, device=device)
        values = as_tensor(values, "values", min_rank=2, dtype=keys.dtype, device=keys.device)
        if keys.shape[:-1] != values.shape[:-1]:
            raise ValueError(
                f"values: expected shape [..., N, Dv] with the keys' leading shape {tuple(keys.shape[:-1])}, "
                f"got {tuple(values.shape)}"
            )
        if keys.shape[-2] == 0:
            raise ValueError(f"keys: expected at least one pair (N >= 1), got shape {tuple(keys.shape)}")
        if not self.is_empty and keys.shape[:-2] != self._batch_shape():
            raise ValueError(
                f"keys: expected batch shape {tuple(self._batch_shape())} (fixed by the first write), "
                f"got shape {tuple(keys.shape)}"
            )
        return keys, values

    def _key_dim(self) -> int:
        """Dimension of keys and queries."""
        raise NotImplementedError

    def _queries(self, queries: Any, name: str = "queries") -> torch.Tensor:
        """Check and convert queries (or states, cues: ``name``) for a read.

        An empty memory raises ``ValueError``; so do a wrong last dimension and leading
        dimensions that do not broadcast to the batch shape.
        """
        if self.is_empty:
            raise ValueError(f"{type(self).__name__} is empty: write at least one pair before reading")
        key_dim = self._key_dim()
        ref = getattr(self, self._state_names[0])
        queries = as_tensor(queries, name, min_rank=2, dtype=ref.dtype, device=ref.device)
        if queries.shape[-1] != key_dim:
            raise ValueError(
                f"{name}: expected shape [..., M, {key_dim}] (the key dimension), got {tuple(queries.shape)}"
            )
        batch = self._batch_shape()
        try:
            ok = torch.broadcast_shapes(queries.shape[:-2], batch) == batch
        except RuntimeError:
            ok = False
        if not ok:
            raise ValueError(
                f"{name}: leading dimensions {tuple(queries.shape[:-2])} must broadcast to the "
                f"memory's batch shape {tuple(batch)}"
            )
        return queries
