"""Slot memory: explicit key and value rows, read by attention (the paper's dual form)."""

from __future__ import annotations

from typing import Any, Literal

import torch

from .._checks import check_int, make_generator
from .. import separation as _separation
from .. import similarity as _similarity
from .base import Memory, ReadResult, register_memory

OVERWRITE_POLICIES = ("oldest", "lru", "random")


@register_memory
class SlotMemory(Memory):
    """Key-value memory with one slot per stored pair: read = sigma(S(q, K)) V.

    This is the right-hand architecture of the paper's Figure 1: keys are the
    input-to-hidden weights, values the hidden-to-output weights, one hidden unit a slot.
    With ``similarity="scaled_dot"`` and ``separation="softmax"`` it is transformer
    attention (Eqs. 5-6); with a threshold it is SDM-like, with hard max a lookup table.

    Args:
        similarity: spec of S (see :mod:`kvmem.similarity`), default scaled dot product.
        separation: spec of sigma (see :mod:`kvmem.separation`), default softmax.
        capacity: the most slots kept; None for unlimited. Once full, each new pair
            overwrites one slot chosen by ``overwrite``.
        overwrite: ``"oldest"`` (the slot written longest ago), ``"lru"`` (least recently
            used: written or read, where a read uses the slot with the largest weight for
            each query, ties to the lowest index) or ``"random"`` (uniform, seeded).
        seed: seed of the random overwrite policy.

    Shapes:
        write: keys ``[..., N, Dk]``, values ``[..., N, Dv]``.
        read: queries ``[..., M, Dk]`` -> values ``[..., M, Dv]``; ``details=True`` adds
        weights and scores ``[..., M, N]``.

    Reading an empty memory raises ``ValueError``.

    Example:
        >>> import torch, kvmem
        >>> mem = kvmem.SlotMemory(similarity="dot", separation="hardmax")
        >>> mem.write(torch.eye(3), torch.tensor([[1.0], [2.0], [3.0]]))
        >>> mem.read(torch.tensor([[0.1, 0.9, 0.2]])).tolist()
        [[2.0]]
    """

    _state_names = ("keys", "values", "written_at", "last_used", "clock", "rng_state")

    def __init__(
        self,
        similarity: Any = "scaled_dot",
        separation: Any = "softmax",
        capacity: int | None = None,
        overwrite: Literal["oldest", "lru", "random"] = "oldest",
        seed: int = 0,
    ) -> None:
        super().__init__()
        self.similarity = _similarity.get(similarity)
        self.separation = _separation.get(separation)
        self.capacity = None if capacity is None else check_int(capacity, "capacity", minimum=1)
        if overwrite not in OVERWRITE_POLICIES:
            raise ValueError(f"overwrite: expected one of {OVERWRITE_POLICIES}, got {overwrite!r}")
        self.overwrite = overwrite
        self.seed = check_int(seed, "seed", minimum=0)

    def config(self) -> dict[str, Any]:
        return {
            "similarity": self.similarity.spec(),
            "separation": self.separation.spec(),
            "capacity": self.capacity,
            "overwrite": self.overwrite,
            "seed": self.seed,
        }

    def _batch_shape(self) -> torch.Size:
        return self.keys.shape[:-2]

    def _key_dim(self) -> int:
        return self.keys.shape[-1]

    def _required_state(self):
        return ("keys", "values", "written_at", "last_used", "clock")

    def __len__(self) -> int:
        """Number of occupied slots (0 while empty)."""
        return 0 if self.is_empty else self.keys.shape[-2]

    # -- writing -------------------------------------------------------------------
    def write(self, keys: Any, values: Any) -> None:
        """Store pairs in order, overwriting slots by the policy once ``capacity`` is full.

        Args:
            keys: ``[..., N, Dk]``.
            values: ``[..., N, Dv]``.
        """
        keys, values = self._pairs(keys, values)
        if not self.is_empty:
            for arg, new, old in (("keys", keys, self.keys), ("values", values, self.values)):
                if new.shape[-1] != old.shape[-1]:
                    raise ValueError(
                        f"{arg}: expected last dimension {old.shape[-1]} (as stored), got shape {tuple(new.shape)}"
                    )
        n = keys.shape[-2]
        batch = keys.shape[:-2]
        if self.is_empty:
            self.keys = keys.new_zeros(*batch, 0, keys.shape[-1])
            self.values = values.new_zeros(*batch, 0, values.shape[-1])
            self.written_at = torch.zeros(*batch, 0, dtype=torch.long, device=keys.device)
            self.last_used = torch.zeros_like(self.written_at)
            self.clock = torch.zeros((), dtype=torch.long)
            if self.overwrite == "random":
                self.rng_state = make_generator(self.seed).get_state()
        free = n if self.capacity is None else max(0, min(n, self.capacity - len(self)))
        if free:
            stamps = self.clock + 1 + torch.arange(free, device=keys.device)
            stamps = stamps.expand(*batch, free)
            self.keys = torch.cat([self.keys, keys[..., :free, :]], dim=-2)
            self.values = torch.cat([self.values, values[..., :free, :]], dim=-2)
            self.written_at = torch.cat([self.written_at, stamps], dim=-1)
            self.last_used = torch.cat([self.last_used, stamps], dim=-1)
            self.clock = self.clock + free
        if free < n:
            self._overwrite(keys[..., free:, :], values[..., free:, :])

    def _overwrite(self, keys: torch.Tensor, values: torch.Tensor) -> None:
        """Write pairs into a full memory, one at a time, each into the slot the policy picks."""
        batch = keys.shape[:-2]
        flat_k = keys.reshape(-1, *keys.shape[-2:])
        flat_v = values.reshape(-1, *values.shape[-2:])
        mk = self.keys.reshape(-1, *self.keys.shape[-2:]).clone()
        mv = self.values.reshape(-1, *self.values.shape[-2:]).clone()
        wa = self.written_at.reshape(-1, self.written_at.shape[-1]).clone()
        lu = self.last_used.reshape(-1, self.last_used.shape[-1]).clone()
        rows = torch.arange(mk.shape[0], device=mk.device)
        gen = None
        if self.overwrite == "random":
            gen = torch.Generator()
            gen.set_state(self.rng_state)
        clock = int(self.clock)
        for j in range(flat_k.shape[1]):
            clock += 1
            if self.overwrite == "oldest":
                slot = wa.argmin(dim=-1)
            elif self.overwrite == "lru":
                slot = lu.argmin(dim=-1)
            else:
                slot = torch.randint(mk.shape[1], (mk.shape[0],), generator=gen).to(mk.device)
            mk[rows, slot] = flat_k[:, j]
            mv[rows, slot] = flat_v[:, j]
            wa[rows, slot] = clock
            lu[rows, slot] = clock
        self.keys = mk.reshape(*batch, *mk.shape[1:])
        self.values = mv.reshape(*batch, *mv.shape[1:])
        self.written_at = wa.reshape(*batch, wa.shape[-1])
        self.last_used = lu.reshape(*batch, lu.shape[-1])
        self.clock = torch.tensor(clock)
        if gen is not None:
            self.rng_state = gen.get_state()

    # -- reading -------------------------------------------------------------------
    def read(self, queries: Any, details: bool = False) -> torch.Tensor | ReadResult:
        """Retrieve sigma(S(q, K)) V for each query.

        Args:
            queries: ``[..., M, Dk]``; leading dimensions broadcast to the batch shape.
            details: also return the weights and scores.

        Returns:
            values ``[..., M, Dv]``, or a :class:`ReadResult` when ``details`` is true.
        """
        queries = self._queries(queries)
        scores = self.similarity(queries, self.keys)
        weights = self.separation(scores)
        out = weights @ self.values
        if self.overwrite == "lru" and self.capacity is not None:
            self._mark_used(weights)
        return ReadResult(out, weights, scores) if details else out

    def _mark_used(self, weights: torch.Tensor) -> None:
        # Each query uses the slot it weighs most; those slots become most recently used.
        weights = weights.detach().expand(*self._batch_shape(), *weights.shape[-2:])
        used = torch.zeros_like(self.last_used, dtype=torch.bool)
        used.scatter_(-1, weights.argmax(dim=-1), True)
        self.clock = self.clock + 1
        self.last_used = torch.where(used, self.clock.to(self.last_used.device), self.last_used)
