"""Slot memory: explicit key and value rows, read by attention (the paper's dual form)."""

from __future__ import annotations

import math
from typing import Any, Literal

import torch

from .._checks import check_int, make_generator
from .. import separation as _separation
from .. import similarity as _similarity
from . import ann as _ann
from .base import Memory, ReadResult, register_memory

OVERWRITE_POLICIES = ("oldest", "lru", "random")

#: ``block_size="auto"`` reads in blocks once the plain read would hold at least this many
#: scores (64 MiB of float32; the plain softmax read keeps about four such matrices alive).
AUTO_MIN_SCORES = 1 << 24
#: ... with blocks of about this many scores per block (8 MiB of float32: large enough for
#: efficient matrix products, small enough to stay near the caches).
AUTO_BLOCK_SCORES = 1 << 21


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
        block_size: read the keys in blocks of this many slots, never holding more than one
            ``[..., M, block_size]`` block of scores: an integer, ``"auto"`` (blocks once the
            plain read would hold 2^24 scores or more) or None (never). Only separations that
            can be summed block by block are read in blocks (softmax and exponential with a
            running maximum, the online softmax; identity, threshold and polynomial);
            hard max and top-k, ``details=True``, the ``"lru"`` policy with a capacity and
            reads that need gradients use the plain read. Blocked and plain reads agree to
            rounding. See ``docs/memory.md``.
        index: find the top-k keys with a search index instead of scoring every key (top-k
            separation only): ``"ivf"``, ``"hnsw"``, ``"flat"`` or a spec such as
            ``{"name": "ivf", "nprobe": 32}`` (see :mod:`kvmem.memory.ann`; needs faiss-cpu,
            ``pip install kvmem[faiss]``). The index is built at the first read after a write.
            ``"flat"`` is exact; ``"ivf"`` and ``"hnsw"`` may miss some of the top-k keys.

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
        >>> big = kvmem.SlotMemory(block_size=256)  # softmax read, 256 slots at a time
        >>> g = torch.Generator().manual_seed(0)
        >>> big.write(torch.randn(1000, 8, generator=g), torch.randn(1000, 2, generator=g))
        >>> q = torch.randn(3, 8, generator=g)
        >>> plain = kvmem.SlotMemory(block_size=None)
        >>> plain.load_state_dict(big.state_dict())
        <All keys matched successfully>
        >>> bool(torch.allclose(big.read(q), plain.read(q), atol=1e-6))
        True
    """

    _state_names = ("keys", "values", "written_at", "last_used", "clock", "rng_state")

    def __init__(
        self,
        similarity: Any = "scaled_dot",
        separation: Any = "softmax",
        capacity: int | None = None,
        overwrite: Literal["oldest", "lru", "random"] = "oldest",
        seed: int = 0,
        block_size: int | Literal["auto"] | None = "auto",
        index: Any = None,
    ) -> None:
        super().__init__()
        self.similarity = _similarity.get(similarity)
        self.separation = _separation.get(separation)
        self.capacity = None if capacity is None else check_int(capacity, "capacity", minimum=1)
        if overwrite not in OVERWRITE_POLICIES:
            raise ValueError(f"overwrite: expected one of {OVERWRITE_POLICIES}, got {overwrite!r}")
        self.overwrite = overwrite
        self.seed = check_int(seed, "seed", minimum=0)
        if block_size is not None and block_size != "auto":
            block_size = check_int(block_size, "block_size")
        self.block_size = block_size
        self.index = None if index is None else _ann.get(index)
        if self.index is not None:
            if not isinstance(self.separation, _separation.TopK):
                raise ValueError(
                    f"index: a search index serves the top-k separation only, got separation "
                    f"{self.separation.spec()['name']!r}; use separation={{'name': 'topk', 'k': ...}}"
                )
            _ann.search_metric(self.similarity)  # fails early for a similarity no index ranks by
        self._index_cache: tuple | None = None

    def __getstate__(self):
        # A built faiss index is a SWIG object that neither pickles nor deep-copies; it is
        # rebuilt from the keys at the next read.
        state = self.__dict__.copy()
        state["_index_cache"] = None
        return state

    def config(self) -> dict[str, Any]:
        return {
            "similarity": self.similarity.spec(),
            "separation": self.separation.spec(),
            "capacity": self.capacity,
            "overwrite": self.overwrite,
            "seed": self.seed,
            "block_size": self.block_size,
            "index": None if self.index is None else self.index.spec(),
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
        # Explicit leading sizes: reshape(-1, ...) is ambiguous for zero-width keys or values.
        b = batch.numel()
        flat_k = keys.reshape(b, *keys.shape[-2:])
        flat_v = values.reshape(b, *values.shape[-2:])
        mk = self.keys.reshape(b, *self.keys.shape[-2:]).clone()
        mv = self.values.reshape(b, *self.values.shape[-2:]).clone()
        wa = self.written_at.reshape(b, self.written_at.shape[-1]).clone()
        lu = self.last_used.reshape(b, self.last_used.shape[-1]).clone()
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
        if self.index is not None:
            return self._index_read(queries, details)
        if not details:
            block = self._read_block(queries)
            if block is not None:
                out = self._blocked_read(queries, block)
                if out is not None:
                    return out
        scores = self.similarity(queries, self.keys)
        weights = self.separation(scores)
        out = weights @ self.values
        if self.overwrite == "lru" and self.capacity is not None:
            self._mark_used(weights)
        return ReadResult(out, weights, scores) if details else out

    def _mark_used(self, weights: torch.Tensor) -> None:
        # Each query uses the slot it weighs most; those slots become most recently used.
        self._mark_slots(weights.detach().argmax(dim=-1))

    def _mark_slots(self, slots: torch.Tensor) -> None:
        """Make ``slots [..., M]`` (one per query) the most recently used."""
        slots = slots.expand(*self._batch_shape(), slots.shape[-1])
        used = torch.zeros_like(self.last_used, dtype=torch.bool)
        used.scatter_(-1, slots, True)
        self.clock = self.clock + 1
        self.last_used = torch.where(used, self.clock.to(self.last_used.device), self.last_used)

    # -- blocked read --------------------------------------------------------------
    def _read_block(self, queries: torch.Tensor) -> int | None:
        """The block size of a blocked read of ``queries``, or None for the plain read."""
        if self.block_size is None or self.separation.streaming() is None:
            return None
        if self.overwrite == "lru" and self.capacity is not None:
            return None  # the policy needs each query's largest weight over all slots
        if torch.is_grad_enabled() and (queries.requires_grad or self.keys.requires_grad
                                        or self.values.requires_grad):
            return None  # the blocked read works in place; autograd needs the plain graph
        n = self.keys.shape[-2]
        if self.block_size == "auto":
            rows = torch.broadcast_shapes(queries.shape[:-2], self._batch_shape()).numel() * queries.shape[-2]
            if rows * n < AUTO_MIN_SCORES:
                return None
            block = max(256, AUTO_BLOCK_SCORES // max(rows, 1))
        else:
            block = self.block_size
        return block if block < n else None

    def _blocked_read(self, queries: torch.Tensor, block: int) -> torch.Tensor | None:
        """sigma(S(q, K)) V summed over blocks of ``block`` slots (see :class:`kvmem.separation.Streaming`).

        Returns None where the folded fast path overflowed (|beta s| beyond the float range),
        so that the caller falls back to the plain read, which shifts before it scales.
        """
        stream = self.separation.streaming()
        keys, values = self.keys, self.values
        batch = self._batch_shape()
        m, d = queries.shape[-2:]
        n, dv = values.shape[-2:]
        q = queries.expand(*batch, m, d).reshape(-1, m, d)
        k = keys.reshape(-1, n, d)
        v = values.reshape(-1, n, dv)
        acc = values.new_zeros(q.shape[0], m, dv)
        sim = self.similarity
        # For (scaled) dot products beta and the scale are folded into the queries: the
        # block of beta * S comes straight out of one matrix product, saving a pass over it.
        folded = stream.exp_beta is not None and type(sim) in (_similarity.Dot, _similarity.ScaledDot)
        if folded:
            scale = stream.exp_beta / (math.sqrt(d) if isinstance(sim, _similarity.ScaledDot) else 1.0)
            q = q * scale
        if stream.exp_beta is not None:
            lowest = torch.finfo(acc.dtype).min
            run_max = acc.new_full((q.shape[0], m, 1), lowest)
            total = acc.new_zeros(q.shape[0], m, 1)
            for start in range(0, n, block):
                kb, vb = k[:, start:start + block], v[:, start:start + block]
                t = torch.bmm(q, kb.transpose(1, 2)) if folded else sim(q, kb)
                new_max = torch.maximum(run_max, t.amax(-1, keepdim=True))
                if folded:
                    t.sub_(new_max).exp_()
                    rescale = torch.exp(run_max - new_max)
                else:
                    # Scores and their maximum in score units: shift, then scale, so that
                    # exp(beta (s - max)) stays finite for any finite beta.
                    t = torch.exp(stream.exp_beta * (t - new_max))
                    rescale = torch.exp(stream.exp_beta * (run_max - new_max))
                total.mul_(rescale).add_(t.sum(-1, keepdim=True))
                acc.mul_(rescale).baddbmm_(t, vb)
                run_max = new_max
            out = acc / total if stream.normalize else acc
            if folded and not bool(torch.isfinite(out).all()):
                return None
        else:
            total = acc.new_zeros(q.shape[0], m, 1) if stream.normalize else None
            for start in range(0, n, block):
                kb, vb = k[:, start:start + block], v[:, start:start + block]
                w = stream.weights(sim(q, kb))
                if total is not None:
                    total.add_(w.sum(-1, keepdim=True))
                acc.baddbmm_(w, vb)
            out = acc
            if total is not None:
                out = torch.where(total > 0, acc / total.clamp_min(torch.finfo(acc.dtype).tiny), acc)
        return out.reshape(*batch, m, dv)

    # -- index read ----------------------------------------------------------------
    def _key_indexes(self) -> list[_ann.KeyIndex]:
        """One search index per memory of the batch, rebuilt when the keys have changed."""
        keys = self.keys
        cache = self._index_cache
        if cache is None or cache[0] is not keys or cache[1] != keys._version:
            flat = keys.detach().reshape(-1, *keys.shape[-2:])
            built = [_ann.KeyIndex(kb, similarity=self.similarity, index=self.index) for kb in flat]
            self._index_cache = cache = (keys, keys._version, built)
        return cache[2]

    def _index_read(self, queries: torch.Tensor, details: bool) -> torch.Tensor | ReadResult:
        """Top-k read whose top-k keys come from the search index."""
        batch = self._batch_shape()
        m, d = queries.shape[-2:]
        n, dv = self.values.shape[-2:]
        q = queries.expand(*batch, m, d).reshape(-1, m, d)
        values = self.values.reshape(-1, n, dv)
        keys = self.keys.reshape(-1, n, d)
        sep = self.separation
        outs, weights, slots = [], [], []
        for b, index in enumerate(self._key_indexes()):
            _, idx = index.search(q[b].detach(), sep.k)
            lost = idx[:, 0] < 0
            if bool(lost.any()):
                # The probed IVF cells of these queries were empty: search them exactly.
                idx[lost] = _ann.exact_topk(q[b][lost].detach(), keys[b].detach(), idx.shape[1],
                                            similarity=self.similarity)[1]
            found = idx >= 0
            safe = idx.clamp_min(0)
            # Scores again, through autograd, so that reads stay differentiable in q, K and V.
            s = self.similarity(q[b].unsqueeze(-2), keys[b][safe]).squeeze(-2)
            s = s.masked_fill(~found, float("-inf"))
            w = torch.softmax(sep.beta * (s - s.amax(-1, keepdim=True)), dim=-1)
            outs.append((w.unsqueeze(-1) * values[b][safe]).sum(-2))
            slots.append(safe[:, 0])
            if details:
                rows = torch.arange(m, device=safe.device).unsqueeze(-1).expand_as(safe)
                dense = w.new_zeros(m, n).index_put_((rows, safe), w.masked_fill(~found, 0.0), accumulate=True)
                weights.append(dense)
        out = torch.stack(outs).reshape(*batch, m, dv)
        if self.overwrite == "lru" and self.capacity is not None:
            self._mark_slots(torch.stack(slots).reshape(*batch, m))
        if details:
            return ReadResult(out, torch.stack(weights).reshape(*batch, m, n), None)
        return out
