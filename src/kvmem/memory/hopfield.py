"""Hopfield networks: autoassociative memories whose reads are steps of an energy descent.

Three models, one contract. Each is a :class:`~kvmem.memory.base.Memory` whose values are
its keys: ``write(patterns)`` stores rows ``[..., P, N]`` (leading dimensions are batch
dimensions: independent networks, e.g. trials) and ``read(states)`` applies ONE
synchronous update step to states ``[..., M, N]``. ``retrieve`` runs the dynamics to a
fixed point, synchronously or asynchronously (one neuron at a time, in a seeded random
order), optionally clamping part of the cue; ``energy`` gives the Lyapunov function that
the dynamics descend.

- :class:`ClassicalHopfield` (Hopfield 1982): +-1 neurons, weights W from the Hebbian,
  pseudo-inverse (projection) or Storkey (1997) rule, update s <- sign(W s),
  energy E = -1/2 s W s.
- :class:`DenseAssociativeMemory` (Krotov & Hopfield 2016; Demircigil et al. 2017): +-1
  neurons, energy E = -sum_mu F(xi_mu . s) with a rectified polynomial or exponential F.
- :class:`ModernHopfield` (Ramsauer et al. 2021): continuous states, update
  xi <- X^T softmax(beta X xi), the attention read of a :class:`~kvmem.SlotMemory`.

Everything is batched over trials and stored patterns; the only Python loops run over
update steps, over the neurons of an asynchronous sweep, and over the patterns of a
Storkey write (that rule is sequential by definition). ``retrieve`` of a Hebbian
:class:`ClassicalHopfield` on the CPU takes exact fast paths instead (see that class).

Example:
    >>> import torch
    >>> from kvmem.memory.hopfield import ClassicalHopfield
    >>> net = ClassicalHopfield()
    >>> net.write(torch.tensor([[1.0, -1, 1, -1, 1, -1], [1.0, 1, 1, -1, -1, -1]]))
    >>> cue = torch.tensor([[-1.0, -1, 1, -1, 1, -1]])      # first pattern, one bit flipped
    >>> net.retrieve(cue).states.tolist()
    [[1.0, -1.0, 1.0, -1.0, 1.0, -1.0]]
"""

from __future__ import annotations

import math
from typing import Any, ClassVar, Literal

import numpy as np
import torch

from .._checks import as_tensor, check_int, check_positive, make_generator
from .. import separation as _separation
from .. import similarity as _similarity
from . import _hopfield_numba
from .base import Memory, ReadResult, Retrieval, register_memory

CLASSICAL_RULES = ("hebbian", "pseudo_inverse", "storkey")
DAM_ENERGIES = ("polynomial", "exponential")
MODES = ("sync", "async")
#: Relative size below which an exponential energy difference counts as a tie.
EXP_TIE_RTOL = 1e-12


def _sign(x: torch.Tensor) -> torch.Tensor:
    """sign with the tie rule sign(0) = +1."""
    return torch.where(x >= 0, x.new_ones(()), -x.new_ones(()))


def _lift(x: torch.Tensor, ndim: int) -> torch.Tensor:
    """Prepend size-1 dimensions to ``x`` up to ``ndim`` dimensions."""
    return x.reshape((1,) * (ndim - x.dim()) + tuple(x.shape))


def _at(x: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """``x[..., index]`` per row: x ``[..., N]``, index ``[...]`` -> ``[...]``."""
    if index.shape == x.shape[:-1]:
        return x.gather(-1, index.unsqueeze(-1)).squeeze(-1)
    return torch.take_along_dim(x, index.unsqueeze(-1), dim=-1).squeeze(-1)


class _Hopfield(Memory):
    """Shared machinery of the Hopfield models (not registered: use a subclass).

    Subclasses store their patterns in the state ``patterns`` (listed first in
    ``_state_names``) and implement ``_update`` (one synchronous step), ``_neuron``
    (the new value of one neuron per state) and ``energy``.
    """

    _binary: ClassVar[bool] = True

    def _batch_shape(self) -> torch.Size:
        return self.patterns.shape[:-2]

    def _key_dim(self) -> int:
        return self.patterns.shape[-1]

    def __len__(self) -> int:
        """Number of stored patterns P (0 while empty)."""
        return 0 if self.is_empty else self.patterns.shape[-2]

    # -- input checks --------------------------------------------------------------
    def _check_binary(self, x: torch.Tensor, name: str) -> None:
        if not self._binary or not x.numel():
            return
        # min |x| == max |x| == 1 (NaN fails both): two reductions, no boolean temporaries.
        low, high = x.abs().aminmax()
        if not (bool(low == 1) and bool(high == 1)):
            if not bool(torch.isfinite(x).all()):
                raise ValueError(f"{name}: contains NaN or infinite values")
            raise ValueError(f"{name}: {type(self).__name__} works with +-1 entries only")

    def _patterns_in(self, keys: Any, values: Any) -> torch.Tensor:
        """Check a write: values None or equal to keys, +-1 entries, N as stored."""
        if values is not None:
            v = as_tensor(values, "values", min_rank=2)
            k = as_tensor(keys, "keys", min_rank=2)
            if v.shape != k.shape or not torch.equal(v.to(k.dtype), k):
                raise ValueError(
                    f"values: a {type(self).__name__} is autoassociative (values are the keys); "
                    "pass values=None or values equal to keys"
                )
        if self._binary:
            keys = self._binary_keys(keys)
        else:
            keys, _ = self._pairs(keys, keys)
        if not self.is_empty and keys.shape[-1] != self._key_dim():
            raise ValueError(f"keys: expected shape [..., P, {self._key_dim()}] (as stored), got {tuple(keys.shape)}")
        self._check_binary(keys, "keys")
        return keys

    def _binary_keys(self, keys: Any) -> torch.Tensor:
        """The checks of ``_pairs(keys, keys)`` without its two finiteness passes (the +-1
        test that follows rejects NaN and infinities)."""
        ref = None if self.is_empty else self.patterns
        keys = as_tensor(keys, "keys", min_rank=2, dtype=None if ref is None else ref.dtype,
                         device=None if ref is None else ref.device, finite=False)
        if keys.shape[-2] == 0:
            raise ValueError(f"keys: expected at least one pair (N >= 1), got shape {tuple(keys.shape)}")
        if ref is not None and keys.shape[:-2] != self._batch_shape():
            raise ValueError(
                f"keys: expected batch shape {tuple(self._batch_shape())} (fixed by the first write), "
                f"got shape {tuple(keys.shape)}"
            )
        return keys

    def _states_in(self, x: Any, name: str) -> torch.Tensor:
        """Check states ``[..., M, N]`` for a read, a retrieval or an energy."""
        if not self._binary:
            return self._queries(x, name)
        # The +-1 test also rejects NaN and infinities, so the states skip as_tensor's own
        # finiteness pass (a full read of them); the other checks are those of _queries.
        if self.is_empty:
            raise ValueError(f"{type(self).__name__} is empty: write at least one pair before reading")
        ref = self.patterns
        x = as_tensor(x, name, min_rank=2, dtype=ref.dtype, device=ref.device, finite=False)
        n = self._key_dim()
        if x.shape[-1] != n:
            raise ValueError(f"{name}: expected shape [..., M, {n}] (the key dimension), got {tuple(x.shape)}")
        batch = self._batch_shape()
        try:
            ok = torch.broadcast_shapes(x.shape[:-2], batch) == batch
        except RuntimeError:
            ok = False
        if not ok:
            raise ValueError(
                f"{name}: leading dimensions {tuple(x.shape[:-2])} must broadcast to the "
                f"memory's batch shape {tuple(batch)}"
            )
        self._check_binary(x, name)
        return x

    def _full(self, x: torch.Tensor) -> torch.Tensor:
        """``x`` expanded to the full shape [*batch, M, N] (a copy: it is updated in place)."""
        return x.expand(*self._batch_shape(), *x.shape[-2:]).clone()

    # -- dynamics ------------------------------------------------------------------
    def _update(self, states: torch.Tensor, memory: dict[str, torch.Tensor] | None = None) -> torch.Tensor:
        """One synchronous step ``[..., M, N] -> [..., M, N]``.

        ``memory`` (state name -> tensor) replaces the stored state, e.g. a subset of the
        batch's memories; None reads the stored state.
        """
        raise NotImplementedError

    def _update_needs(self, states: torch.Tensor) -> tuple[str, ...]:
        """The stored state tensors ``_update`` reads for these states."""
        return self._required_state()

    def _run_sync(self, start: torch.Tensor, clamp: torch.Tensor | None, steps: int) -> Retrieval:
        """Synchronous dynamics from ``start [*batch, M, N]`` (not modified) for at most ``steps`` steps.

        Two shortcuts keep the cost proportional to the states still moving, with results
        equal to iterating every state for the whole budget (tested against that loop):

        - the map is deterministic, so once x_t == x_(t-2) a state alternates between two
          values for good: it is settled at once, its final value fixed by the parity of the
          steps left (binary models only: exact equality);
        - once the moving states number at most half the memories (batch entries), the
          steps run on those states only, each with its own memory gathered from the batch
          (a few slow cues otherwise keep the whole batch iterating).
        """
        shape = start.shape
        m, n = shape[-2:]
        count = math.prod(shape[:-2])
        rows = count * m
        first = start.reshape(count, m, n)
        states = first.clone()
        keep = None if clamp is None else clamp.expand(shape).reshape(count, m, n)
        prev = torch.empty_like(states)
        done = torch.zeros(count, m, dtype=torch.bool, device=states.device)
        cycling = torch.zeros_like(done)
        moved = torch.zeros(count, m, dtype=torch.long, device=states.device)
        stored = {k: getattr(self, k) for k in self._update_needs(states)}
        stored = {k: v.expand(*shape[:-2], *v.shape[-2:]).reshape(count, *v.shape[-2:]) for k, v in stored.items()}
        idx, memory = None, stored  # idx: the rows being stepped (None: all, batch-shaped)
        run = 0
        while run < steps:
            live = ~(done | cycling).reshape(-1)
            alive = int(live.sum())
            if alive == 0:
                break
            # Gathering costs a memory per row: worth it once the moving rows number no more
            # than half the memories, and again each time they halve.
            if 2 * alive <= (count if idx is None else len(idx)):
                idx = live.nonzero().squeeze(-1)
                owner = torch.div(idx, m, rounding_mode="floor")
                memory = {k: v[owner] for k, v in stored.items()}
            run += 1
            if idx is None:
                view = lambda t: t  # noqa: E731
            else:
                view = lambda t: t.reshape(rows, 1, *t.shape[2:])[idx]  # noqa: E731
            s = view(states)
            frozen = view(done | cycling)
            new = self._update(s, memory)
            if keep is not None:
                new = torch.where(view(keep), view(first), new)
            new = torch.where(frozen.unsqueeze(-1), s, new)
            still = self._unchanged(new, s)
            moving = ~frozen & ~still
            step_moved = moving.long()
            loop = torch.zeros_like(moving)
            if self._binary and run > 1:
                loop = moving & (new == view(prev)).all(-1)
                if bool(loop.any()):
                    left = steps - run
                    step_moved = step_moved + loop.long() * left
                    new = torch.where(loop.unsqueeze(-1), new if left % 2 == 0 else s, new)
            settled = still & ~frozen
            if idx is None:
                moved += step_moved
                cycling |= loop
                done |= settled
                prev.copy_(s)
                states = new
            else:
                flat = lambda t: t.view(rows, *t.shape[2:])  # noqa: E731
                flat(moved)[idx] += step_moved.squeeze(-1)
                flat(cycling)[idx] |= loop.squeeze(-1)
                flat(done)[idx] |= settled.squeeze(-1)
                flat(prev)[idx] = s.squeeze(-2)
                flat(states)[idx] = new.squeeze(-2)
        iterations = steps if bool(cycling.any()) else run
        return Retrieval(states.reshape(shape), moved.reshape(shape[:-1]), done.reshape(shape[:-1]), iterations)

    def _neuron(self, states: torch.Tensor, index: torch.Tensor, cache: dict | None = None) -> torch.Tensor:
        """New value of neuron ``index[...]`` of each state given the others: ``[...]``.

        ``cache`` is what :meth:`_async_cache` built for these states, kept current by
        :meth:`_after_neuron`.
        """
        return _at(self._update(states), index)

    #: Cache entries that change during a sweep (written back after a partial sweep).
    _async_cache_mutable: ClassVar[tuple[str, ...]] = ()

    def _async_cache(self, states: torch.Tensor) -> dict | None:
        """Running quantities ``[*batch, ...]`` that make one neuron's update cheaper
        (None: no cache)."""
        return None

    def _after_neuron(self, cache: dict, index: torch.Tensor, change: torch.Tensor) -> None:
        """Bring ``cache`` up to date after neuron ``index`` of each state changed by ``change``."""

    def _unchanged(self, new: torch.Tensor, old: torch.Tensor) -> torch.Tensor:
        return (new == old).all(-1)

    def read(self, queries: Any, details: bool = False) -> torch.Tensor | ReadResult:
        """One synchronous update step of every neuron of every query.

        Args:
            queries: states ``[..., M, N]``; leading dimensions broadcast to the batch shape.
            details: return a :class:`~kvmem.memory.base.ReadResult` with the overlaps
                ``scores = q . xi_mu`` ``[..., M, P]`` (and ``weights`` where the model has
                read weights).
        """
        queries = self._states_in(queries, "queries")
        out = self._update(queries)
        if not details:
            return out
        return ReadResult(out, None, queries @ self.patterns.transpose(-1, -2))

    def update_neurons(self, states: Any, index: Any, clamp: Any = None) -> torch.Tensor:
        """Update one neuron of each state (an asynchronous micro-step).

        Args:
            states: ``[..., M, N]``.
            index: an int, or an integer tensor broadcastable to ``states.shape[:-1]``:
                which neuron of each state to update.
            clamp: optional bool mask broadcastable to ``states``; clamped neurons keep
                their value.

        Returns:
            new states ``[*batch, M, N]``, equal to ``states`` except at ``index``.
        """
        states = self._full(self._states_in(states, "states"))
        index = self._index(index, states)
        clamp = self._clamp(clamp, states)
        self._set_neuron(states, index, clamp, None)
        return states

    def _index(self, index: Any, states: torch.Tensor) -> torch.Tensor:
        n = states.shape[-1]
        if isinstance(index, bool) or not isinstance(index, (int, torch.Tensor)):
            raise TypeError(f"index: expected an int or an integer tensor, got {type(index).__name__}")
        index = torch.as_tensor(index, device=states.device)
        if index.is_floating_point() or index.is_complex() or index.dtype == torch.bool:
            raise TypeError(f"index: expected an integer tensor, got dtype {index.dtype}")
        if index.numel() and not bool(((index >= 0) & (index < n)).all()):
            raise ValueError(f"index: neuron indices must lie in [0, {n}), got {index.tolist()}")
        try:
            return index.long().expand(states.shape[:-1])
        except RuntimeError:
            raise ValueError(
                f"index: shape {tuple(index.shape)} does not broadcast to the states' {tuple(states.shape[:-1])}"
            ) from None

    def _clamp(self, clamp: Any, cue: torch.Tensor) -> torch.Tensor | None:
        if clamp is None:
            return None
        if isinstance(clamp, torch.Tensor):
            mask = clamp
        else:
            try:
                mask = torch.as_tensor(clamp)
            except (TypeError, ValueError, RuntimeError):
                raise TypeError(f"clamp: expected a boolean mask, got {type(clamp).__name__}") from None
        if mask.dtype != torch.bool:
            raise TypeError(f"clamp: expected a boolean mask, got dtype {mask.dtype}")
        try:
            ok = torch.broadcast_shapes(mask.shape, cue.shape) == cue.shape
        except RuntimeError:
            ok = False
        if not ok:
            raise ValueError(f"clamp: shape {tuple(mask.shape)} must broadcast to the cue's {tuple(cue.shape)}")
        return mask.to(cue.device)

    def _set_neuron(
        self,
        states: torch.Tensor,
        index: torch.Tensor,
        clamp: torch.Tensor | None,
        frozen: torch.Tensor | None,
        cache: dict | None = None,
    ) -> torch.Tensor:
        """Update neuron ``index`` of each state in place; return the size of the change."""
        old = _at(states, index)
        new = self._neuron(states, index, cache)
        keep = None
        if clamp is not None:
            keep = _at(clamp.expand(states.shape), index)
        if frozen is not None:
            keep = frozen if keep is None else keep | frozen
        if keep is not None:
            new = torch.where(keep, old, new)
        states.scatter_(-1, index.unsqueeze(-1), new.unsqueeze(-1))
        if cache is not None:
            self._after_neuron(cache, index, new - old)
        return (new - old).abs()

    def retrieve(
        self,
        cue: Any,
        steps: int = 100,
        clamp: Any = None,
        mode: Literal["sync", "async"] = "sync",
        seed: int | torch.Generator = 0,
    ) -> Retrieval:
        """Run the dynamics from ``cue`` until every state converges or ``steps`` run out.

        Args:
            cue: initial states ``[..., M, N]``; leading dimensions broadcast to the batch shape.
            steps: the most iterations (synchronous steps or asynchronous sweeps), >= 0.
            clamp: optional bool mask broadcastable to ``cue``: clamped neurons stay equal
                to the cue throughout (completion from a partial cue).
            mode: ``"sync"`` updates every neuron at once from the current state (the
                ``read`` step); ``"async"`` updates neurons one at a time, each sweep in a
                fresh random order (one permutation per state) drawn from a
                ``torch.Generator`` seeded with ``seed``: the same seed gives the same result.
            seed: seed (or generator) of the asynchronous order; unused in sync mode.

        Returns:
            a :class:`Retrieval` with states ``[*batch, M, N]``.
        """
        cue = self._states_in(cue, "cue")
        steps = check_int(steps, "steps", minimum=0)
        if mode not in MODES:
            raise ValueError(f"mode: expected one of {MODES}, got {mode!r}")
        gen = make_generator(seed, "seed")
        clamp = self._clamp(clamp, cue)
        start = cue.expand(*self._batch_shape(), *cue.shape[-2:])  # a view: the runs copy it
        if mode == "sync":
            return self._run_sync(start, clamp, steps)
        return self._run_async(start, clamp, steps, gen)

    def _run_async(self, start: torch.Tensor, clamp: torch.Tensor | None, steps: int, gen: torch.Generator) -> Retrieval:
        """Asynchronous sweeps from ``start [*batch, M, N]`` (not modified); one random order per sweep.

        With a model cache (:meth:`_async_cache`), a sweep runs only on the memories (batch
        entries) that still have a moving state once they are at most half of them: the
        slowest cues otherwise keep every memory sweeping. The orders are drawn for the
        whole batch every sweep, so results do not depend on this.
        """
        shape = start.shape
        m, n = shape[-2:]
        count = math.prod(shape[:-2])
        states = start.clone()
        flat = states.view(count, m, n)
        keep = None if clamp is None else clamp.expand(shape).reshape(count, m, n)
        done = torch.zeros(count, m, dtype=torch.bool, device=states.device)
        moved = torch.zeros(count, m, dtype=torch.long, device=states.device)
        cache = self._async_cache(states)
        if cache is not None:
            cache = {k: v.expand(*shape[:-2], *v.shape[-2:]).reshape(count, *v.shape[-2:]) for k, v in cache.items()}
        run = 0
        while run < steps and not bool(done.all()):
            run += 1
            order = torch.rand(shape, generator=gen).argsort(dim=-1).to(states.device).view(count, m, n)
            live = (~done).any(-1)
            idx = None
            if cache is not None and 2 * int(live.sum()) <= count:
                idx = live.nonzero().squeeze(-1)
            pick = (lambda t: t) if idx is None else (lambda t: t[idx])  # noqa: E731
            s_, done_, order_ = pick(flat), pick(done), pick(order)
            keep_ = None if keep is None else pick(keep)
            cache_ = None if cache is None else {k: pick(v) for k, v in cache.items()}
            change = torch.zeros_like(s_[..., 0])
            for t in range(n):
                change = torch.maximum(change, self._set_neuron(s_, order_[..., t], keep_, done_, cache_))
            still = self._sweep_unchanged(change)
            if idx is None:
                moved += (~done & ~still).long()
                done |= still
            else:
                flat[idx] = s_
                for k in self._async_cache_mutable:
                    cache[k][idx] = cache_[k]
                moved[idx] += (~done_ & ~still).long()
                done[idx] = done_ | still
        return Retrieval(states, moved.view(shape[:-1]), done.view(shape[:-1]), run)

    def _sweep_unchanged(self, change: torch.Tensor) -> torch.Tensor:
        return change == 0

    def energy(self, state: Any) -> torch.Tensor:
        """Energy of each state ``[..., M, N]`` -> ``[..., M]``."""
        raise NotImplementedError


# -- exact fast paths of the Hebbian network on the CPU --------------------------------
#
# With the Hebbian rule the field of neuron i is h_i = sum_mu xi_mu,i m_mu - P s_i (zero
# diagonal; no -P s_i without it), with the overlaps m_mu = xi_mu . s: integers, exact in
# floating point below 2^24 (float32) whatever the order of the sums. So any way of
# computing them gives the same dynamics, and the paths below trade the dense per-step
# work of a plain loop for work proportional to what changes:
#
# - only the states still moving are stepped, laid out [memories, slots] so that one
#   batched product X^T m serves all of them (_Slots);
# - the overlaps follow the flipped neurons (2 s_j xi_mu,j each), and flips are found as
#   the few entries of q = s * (X^T m) at or below P (_unstable): numpy's comparison and
#   flatnonzero do this several times faster than torch's boolean ops;
# - an asynchronous sweep visits only the neurons that flip (_sweep).


class _Slots:
    """Moving states laid out ``[U, G]`` by memory, so that one batched product serves them all.

    Slot ``u * G + k`` holds the k-th moving state of memory ``mem[u]``; ``row[slot]`` is its
    row among all states (-1: an empty slot). ``stack`` ``[U, P, N]`` holds those memories'
    patterns: the full pattern tensor (no copy) until at most half of the current stack is
    in use, then a copy of the used ones (read by every later product).

    Args:
        x: patterns ``[C, P, N]`` of all memories (row r belongs to memory r // m).
        m: states per memory.
        sel: rows to lay out (ascending); None: all rows in their natural places.
        base: the layout ``sel`` comes from (its stack is reused or cut down).
    """

    def __init__(self, x: torch.Tensor, m: int, sel: np.ndarray | None = None, base: _Slots | None = None):
        c = x.shape[0]
        if sel is None:
            self.u, self.g, self.stack, self.mem = c, m, x, None
            self.row = np.arange(c * m)
            self.place_at = self.row
        else:
            owner = sel // m
            counts = np.bincount(owner, minlength=c)
            used = np.flatnonzero(counts)
            mem = None if base is None else base.mem
            stack = x if base is None else base.stack
            if 2 * used.size <= stack.shape[0]:
                local = used if mem is None else np.searchsorted(mem, used)
                mem, stack = used, stack[torch.from_numpy(local)]
            self.mem, self.stack = mem, stack
            self.u = stack.shape[0]
            self.g = int(counts.max())
            slot_mem = owner if mem is None else np.searchsorted(mem, owner)
            cnt = counts[used]
            rank = np.arange(sel.size) - np.repeat(np.cumsum(cnt) - cnt, cnt)
            self.place_at = slot_mem * self.g + rank  # the slot of each selected row
            self.row = np.full(self.u * self.g, -1)
            self.row[self.place_at] = sel
        self.size = self.u * self.g
        self.stack_np = self.stack.numpy()
        self._field: torch.Tensor | None = None

    def field(self, over: torch.Tensor) -> np.ndarray:
        """X^T m of every slot: overlaps ``[S, P]`` -> ``[S, N]`` (a buffer reused by the next call)."""
        if self._field is None:
            self._field = torch.empty(self.u, self.g, self.stack.shape[-1], dtype=self.stack.dtype)
        torch.bmm(over.view(self.u, self.g, -1), self.stack, out=self._field)
        return self._field.view(self.size, -1).numpy()

    def columns(self, slots: np.ndarray, neurons: np.ndarray) -> np.ndarray:
        """xi_mu,i of neuron ``neurons[k]`` in the memory of slot ``slots[k]``: ``[K, P]``."""
        return self.stack_np[slots // self.g, :, neurons]

    def repack(self, x: torch.Tensor, m: int, slots: np.ndarray, arrays, fills):
        """A layout of ``slots`` (ascending) of this one, with the rows of each array moved over.

        Returns the new layout, the new arrays and the new slot of every old slot (-1: dropped).
        """
        new = _Slots(x, m, self.row[slots], self)
        out = []
        for a, fill in zip(arrays, fills):
            b = np.full((new.size, *a.shape[1:]), fill, dtype=a.dtype)
            b[new.place_at] = a[slots]
            out.append(b)
        place = np.full(self.size, -1)
        place[slots] = new.place_at
        return new, out, place


def _segments(keys: np.ndarray) -> np.ndarray:
    """Start of each run of equal values in ``keys`` (sorted): ``[runs]``."""
    change = np.empty(keys.size, dtype=bool)
    change[:1] = True
    np.not_equal(keys[1:], keys[:-1], out=change[1:])
    return np.flatnonzero(change)


def _add_rows(a: np.ndarray, rows: np.ndarray, vals: np.ndarray) -> None:
    """``a[rows[k]] += vals[k]`` for ascending ``rows`` (repeats allowed)."""
    # One fancy add per rank within the rows (np.add.at is far slower); reduceat for the rest.
    for _ in range(4):
        if not rows.size:
            return
        starts = _segments(rows)
        a[rows[starts]] += vals[starts]
        if starts.size == rows.size:
            return
        rest = np.ones(rows.size, dtype=bool)
        rest[starts] = False
        rows, vals = rows[rest], vals[rest]
    starts = _segments(rows)
    a[rows[starts]] += np.add.reduceat(vals, starts, axis=0)


def _unstable(q: np.ndarray, s: np.ndarray, limit: int, keep: np.ndarray | None, rows: np.ndarray) -> np.ndarray:
    """Flat indices (ascending) of the unstable neurons of states ``s [S, N]``.

    ``q = s * (X^T m)``; with h = X^T m - limit * s (limit = P with a zero diagonal, else 0),
    neuron i wants sign(h_i), sign(0) = +1: it is unstable iff q_i < limit, or q_i == limit
    (h_i = 0) and s_i = -1. ``keep``: clamp mask of all rows; ``rows``: each slot's row.
    """
    flat = np.flatnonzero(q <= limit)
    ok = (q.ravel()[flat] < limit) | (s.ravel()[flat] < 0)
    if not ok.all():
        flat = flat[ok]
    if keep is not None and flat.size:
        r, j = np.divmod(flat, q.shape[1])
        flat = flat[~keep[rows[r], j]]
    return flat


def _neuron_hashes(n: int) -> np.ndarray:
    # Fixed pseudo-random integers below 2^40: a sum of up to n of them is exact in float64.
    return np.random.default_rng(1982).integers(1, 2**40, size=n).astype(np.float64)


def _sync_hebbian(x: torch.Tensor, s: torch.Tensor, m: int, keep: np.ndarray | None, steps: int,
                  zero_diagonal: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray, int]:
    """Synchronous Hebbian dynamics, exact: what ``_Hopfield._run_sync`` gives.

    Args:
        x: patterns ``[C, P, N]``, float32 (P N < 2^24) or float64, contiguous.
        s: start states ``[C * M, N]`` (row r belongs to memory r // M), dtype of x; not modified.
        m: states per memory.
        keep: clamp mask ``[C * M, N]`` or None.
        steps: the step budget.
        zero_diagonal: whether w_ii = 0.

    Returns:
        final states ``[C * M, N]`` (dtype of s), steps, converged (numpy) and iterations.
    """
    c, p, n = x.shape
    rows = c * m
    out = s.numpy().copy()  # rows are overwritten only if they change
    moved = np.zeros(rows, dtype=np.int64)
    done = np.zeros(rows, dtype=bool)
    if rows == 0 or steps == 0:
        return out, moved, done, 0
    limit = p if zero_diagonal else 0
    hashes = _neuron_hashes(n)
    lay = _Slots(x, m)
    s_np, owned = s.numpy(), False  # the states of the slots (copied before the first flip)
    # Rows of s set to NaN give NaN in q, never unstable: empty slots and cycling states.
    over = torch.bmm(s.view(c, m, n), x.transpose(1, 2)).view(rows, p).numpy()
    alive = np.ones(rows, dtype=bool)
    prev = prev_counts = prev_sig = None  # the last step's flips (flat, ascending) and per slot
    cycling = False
    run = 0
    while True:
        run += 1
        q = lay.field(torch.from_numpy(over))
        np.multiply(q, s_np, out=q)
        flat = _unstable(q, s_np, limit, keep, lay.row)
        r, j = np.divmod(flat, n)
        counts = np.bincount(r, minlength=lay.size)
        moving = counts > 0
        settled = alive & ~moving
        if run > 1 and settled.any():
            who = lay.row[settled]
            done[who] = True
            moved[who] = run - 1
            out[who] = s_np[settled]
        elif run == 1:
            done[lay.row[settled]] = True  # unchanged cues: `out` holds them already
        go = moving
        loop = None
        if prev is not None:
            # x_t == x_(t-2), i.e. this step flips the neurons the last one did: the state
            # alternates between two values for good. Hashes find the candidates; the flips
            # themselves decide.
            sig = np.bincount(r, weights=hashes[j], minlength=lay.size)
            cand = moving & (counts == prev_counts) & (sig == prev_sig)
            if cand.any():
                now, before = flat[cand[r]], prev[cand[prev // n]]
                cand[np.unique(now[now != before] // n)] = False
                if cand.any():
                    loop = np.flatnonzero(cand)
                    go = moving & ~cand
                    who = lay.row[loop]
                    moved[who] = steps  # it changes at every step left
                    cycling = True
                    out[who] = s_np[loop]
                    if (steps - run) % 2 == 0:  # the budget ends on the state after this step
                        inside = cand[r]
                        lin = lay.row[r[inside]] * n + j[inside]
                        out.ravel()[lin] = -out.ravel()[lin]
        alive = go
        live = int(np.count_nonzero(alive))
        if run == steps or live == 0:
            break
        if loop is not None:
            kept = go[r]
            r, j, flat = r[kept], j[kept], flat[kept]
            counts = np.where(go, counts, 0)
        old = s_np.ravel()[flat]
        # Each flip changes the overlaps by 2 s_j xi_mu,j: integers, exact.
        _add_rows(over, r, lay.columns(r, j) * (-2 * old)[:, None])
        prev_counts = counts
        prev_sig = np.bincount(r, weights=hashes[j], minlength=lay.size)
        # Repack once the live slots are at most 3/4 of the layout and a packed layout is too.
        repacked = False
        if 4 * live <= 3 * lay.size:
            slots = np.flatnonzero(alive)
            counts_mem = np.bincount(lay.row[slots] // m)
            used = np.count_nonzero(counts_mem)
            packed = (used if 2 * used <= lay.u else lay.u) * int(counts_mem.max())
            if 4 * packed <= 3 * lay.size:
                lay, (s_np, over, prev_counts, prev_sig), place = lay.repack(
                    x, m, slots, (s_np, over, prev_counts, prev_sig), (np.nan, 0.0, 0, 0.0))
                flat = place[r] * n + j
                alive = lay.row >= 0
                owned = repacked = True
        if not owned:
            s_np, owned = s_np.copy(), True
        if loop is not None and not repacked:
            s_np[loop] = np.nan
        s_np.ravel()[flat] = -old
        prev = flat
    # The states still moving when the budget ran out: this step's flips applied.
    if live:
        who = lay.row[alive]
        moved[who] = run
        out[who] = s_np[alive]
        inside = alive[r]
        lin = lay.row[r[inside]] * n + j[inside]
        out.ravel()[lin] = -out.ravel()[lin]
    return out, moved, done, (steps if cycling else run)


def _async_hebbian(x: torch.Tensor, s: torch.Tensor, m: int, keep: np.ndarray | None, steps: int,
                   gen: torch.Generator, shape: torch.Size, zero_diagonal: bool
                   ) -> tuple[np.ndarray, np.ndarray, np.ndarray, int]:
    """Asynchronous Hebbian dynamics, exact: what ``_Hopfield._run_async`` gives with the same
    generator (the same ``torch.rand(shape)`` draw per sweep, and the order its argsort gives).

    Args and returns as :func:`_sync_hebbian`; ``shape`` is the full states' shape
    ``[*batch, M, N]`` that the random keys are drawn for.
    """
    c, p, n = x.shape
    rows = c * m
    out = s.numpy().copy()  # rows are overwritten only if they change
    moved = np.zeros(rows, dtype=np.int64)
    done = np.zeros(rows, dtype=bool)
    if rows == 0 or steps == 0:
        return out, moved, done, 0
    limit = p if zero_diagonal else 0
    lay = _Slots(x, m)
    s_np, owned = s.numpy(), False  # copied before the first flip; NaN rows: empty slots
    over = torch.bmm(s.view(c, m, n), x.transpose(1, 2)).view(rows, p)
    g = lay.field(over).copy()  # X^T m of every state, kept up to date flip by flip
    alive = np.ones(rows, dtype=bool)
    run = 0
    while run < steps:
        run += 1
        # The sweep's random keys, drawn as _Hopfield._run_async draws them (the draw is
        # serial and about three quarters of the time here; it cannot be skipped, since
        # later sweeps' keys depend on it).
        keys = torch.rand(shape, generator=gen).numpy().reshape(rows, n)
        q = g * s_np
        flat = _unstable(q, s_np, limit, keep, lay.row)
        # A state without an unstable neuron keeps every neuron, whatever the order: it
        # has converged. Every other state flips at least its first unstable neuron.
        play = np.bincount(flat // n, minlength=lay.size) > 0
        settled = alive & ~play
        if settled.any():
            who = lay.row[settled]
            done[who] = True
            moved[who] = run - 1
            if run > 1:  # unchanged cues: `out` holds them already
                out[who] = s_np[settled]
        alive = play
        live = int(np.count_nonzero(alive))
        if live == 0:
            break
        if 4 * live <= 3 * lay.size:
            slots = np.flatnonzero(alive)
            lay, (s_np, g), place = lay.repack(x, m, slots, (s_np, g), (np.nan, 0.0))
            flat = place[flat // n] * n + flat % n
            alive = lay.row >= 0
            owned = True
        if not owned:
            s_np, owned = s_np.copy(), True
        _sweep(lay, s_np, g, flat, keys, keep, x, m, limit)
    if alive.any():
        who = lay.row[alive]
        moved[who] = run
        out[who] = s_np[alive]
    return out, moved, done, run


def _sweep(lay: _Slots, s: np.ndarray, g: np.ndarray, flat: np.ndarray, keys: np.ndarray,
           keep: np.ndarray | None, x: torch.Tensor, m: int, limit: int) -> None:
    """One asynchronous sweep of the slots of ``lay``: states ``s`` and fields ``g`` (X^T m)
    updated in place; ``flat``: their unstable neurons (flat indices, ascending).

    The neurons of row r are visited in the order of ascending ``keys[r]`` (the order
    ``keys[r].argsort()`` gives). Only the neurons that flip change anything, so each round
    takes, in every slot, the first unstable neuron after the last one flipped (the
    unstable neuron of least key above the last flip's), flips it and updates the slot's
    field by one batched product. Equal keys are ordered by argsort itself (_rank). The
    last few slots, often states that run far from their cue, finish one by one
    (_sweep_row): a round costs the same for one slot as for hundreds.
    """
    n = s.shape[1]
    wl, ws, wg, wpos = lay, s, g, None  # working layout and arrays (wpos: their slots in lay)
    last_key = np.full(wl.size, -1.0, dtype=keys.dtype)  # key of the last flip of each slot
    last = np.full(wl.size, -1)  # the last flipped neuron of each slot
    while flat.size:
        r, j = np.divmod(flat, n)
        kj = keys[wl.row[r], j]
        ahead = kj >= last_key[r]
        r, j, kj = r[ahead], j[ahead], kj[ahead]
        if not r.size:
            break
        starts = _segments(r)
        slots = r[starts]
        if slots.size <= 4:
            for slot in slots:
                _sweep_row(ws[slot], wg[slot], wl.stack_np[slot // wl.g], keys[wl.row[slot]],
                           None if keep is None else keep[wl.row[slot]], last_key[slot], last[slot], limit)
            break
        val = np.minimum.reduceat(kj, starts)
        seg = np.zeros(r.size, dtype=np.int64)
        seg[starts[1:]] = 1
        np.cumsum(seg, out=seg)
        hit = kj == val[seg]
        pick = np.empty(slots.size, dtype=np.int64)
        pick[seg[hit][::-1]] = j[hit][::-1]  # the first neuron of each slot at its least key
        tied = (np.bincount(seg[hit], minlength=slots.size) > 1) | (val == last_key[slots])
        if tied.any():
            slots, pick, val = _tie_break(tied, slots, pick, val, r, j, keys, wl.row, last)
            if not slots.size:
                break
        if 2 * slots.size <= wl.size:
            # Work on the flipping slots alone: write the working rows back, pack those.
            if wpos is not None:
                filled = wpos >= 0
                s[wpos[filled]], g[wpos[filled]] = ws[filled], wg[filled]
                base = wpos[slots]
            else:
                base = slots
            new = _Slots(x, m, lay.row[base], wl)
            pad_s = np.full((new.size, n), np.nan, dtype=s.dtype)
            pad_g = np.zeros((new.size, n), dtype=g.dtype)
            pad_s[new.place_at], pad_g[new.place_at] = s[base], g[base]
            ws, wg = pad_s, pad_g
            wpos = np.full(new.size, -1)
            wpos[new.place_at] = base
            lk, ls = np.full(new.size, -1.0, dtype=keys.dtype), np.full(new.size, -1)
            lk[new.place_at], ls[new.place_at] = last_key[slots], last[slots]
            last_key, last, wl, slots = lk, ls, new, new.place_at
        lin = slots * n + pick
        old = ws.ravel()[lin]
        ws.ravel()[lin] = -old
        vec = np.zeros((wl.size, x.shape[1]), dtype=ws.dtype)
        vec[slots] = wl.columns(slots, pick) * (-2 * old)[:, None]
        # Flipping neuron i adds 2 s_i X^T xi_i to the field: integers, exact.
        wg += wl.field(torch.from_numpy(vec))
        last_key[slots], last[slots] = val, pick
        # Slots that did not flip have no unstable neuron ahead: their entries drop out above.
        flat = _unstable(wg * ws, ws, limit, keep, wl.row)
    if wpos is not None:
        filled = wpos >= 0
        s[wpos[filled]], g[wpos[filled]] = ws[filled], wg[filled]


def _rank(keys: np.ndarray) -> np.ndarray:
    """Position of each neuron in the visiting order ``keys.argsort()`` (keys ``[N]``)."""
    # The same call on the same row of keys as the sweep order of _Hopfield._run_async, so
    # equal keys come in the same order.
    order = torch.from_numpy(np.ascontiguousarray(keys)).argsort().numpy()
    rank = np.empty(keys.size, dtype=np.int64)
    rank[order] = np.arange(keys.size)
    return rank


def _tie_break(tied, slots, pick, val, r, j, keys, rows, last):
    """Next flips of the slots whose least keys are tied, in the order ``argsort`` gives."""
    stays = np.ones(slots.size, dtype=bool)
    for t in np.flatnonzero(tied):
        slot = slots[t]
        row = keys[rows[slot]]
        rank = _rank(row)
        unstable = j[r == slot]
        after = unstable[rank[unstable] > (rank[last[slot]] if last[slot] >= 0 else -1)]
        if after.size:
            best = after[np.argmin(rank[after])]
            pick[t], val[t] = best, row[best]
        else:
            stays[t] = False
    return slots[stays], pick[stays], val[stays]


def _sweep_row(s: np.ndarray, g: np.ndarray, x: np.ndarray, keys: np.ndarray, keep: np.ndarray | None,
               last_key: float, last: int, limit: int) -> None:
    """The rest of one state's sweep, flip by flip: s, g ``[N]`` (updated in place), its
    memory's patterns x ``[P, N]``, its keys ``[N]``, the key and neuron of its last flip."""
    # With v = g + 1/2 (never 0), neuron i is unstable iff s_i v_i < limit (the tie included).
    v = g.astype(np.float64) + 0.5
    rank = None  # the visiting order, once equal keys make it matter
    while True:
        unstable = s * v < limit
        if keep is not None:
            unstable &= ~keep
        if rank is None:
            cand = np.flatnonzero(unstable & (keys >= last_key))
            if not cand.size:
                break
            kc = keys[cand]
            best = int(np.argmin(kc))
            if kc[best] == last_key or np.count_nonzero(kc == kc[best]) > 1:
                rank = _rank(keys)
            else:
                i = cand[best]
        if rank is not None:
            cand = np.flatnonzero(unstable & (rank > (rank[last] if last >= 0 else -1)))
            if not cand.size:
                break
            i = cand[np.argmin(rank[cand])]
        s[i] = -s[i]
        v += (2 * s[i]) * (x[:, i] @ x)  # integers, exact
        last_key, last = keys[i], i
    g[...] = v - 0.5


@register_memory
class ClassicalHopfield(_Hopfield):
    """The classical Hopfield network (Hopfield 1982) on +-1 neurons.

    Weights from the stored patterns xi_mu (rows of X ``[..., P, N]``):

    - ``"hebbian"``: W = (1/N) sum_mu xi_mu xi_mu^T, zero diagonal. Capacity about
      0.138 N random patterns (Amit, Gutfreund & Sompolinsky 1987).
    - ``"pseudo_inverse"`` (projection rule): W = X^T (X X^T)^+ X, the orthogonal projection
      onto the span of the patterns: every linearly independent set of P < N patterns is a
      set of fixed points.
    - ``"storkey"`` (Storkey 1997), incremental, pattern after pattern:
      w_ij += (1/N) (xi_i xi_j - xi_i h_ji - h_ij xi_j) with h_ij = sum_{k != i, j} w_ik xi_k
      (weights before this pattern), for i != j; the diagonal stays zero. This rule is
      sequential by definition, so a write loops over its patterns (vectorised over the
      batch and over i, j); later writes continue from the stored weights.

    Update: s_i <- sign(sum_j w_ij s_j), with the tie rule sign(0) = +1. For the Hebbian
    rule the field is computed from the patterns as (1/N) [sum_mu xi_mu,i (xi_mu . s) - P s_i]
    (dropping the diagonal), in integers, so ties are exact zeros and the result does not
    depend on summation order; it also costs O(P N) per state instead of O(N^2). Energy: E = -1/2 s^T W s, which never increases under asynchronous
    updates (W symmetric with a non-negative diagonal).

    The Hebbian weights are built on first use (``weights``, :meth:`energy`,
    ``state_dict()``, a dtype or device change): the dynamics only need the patterns, and W
    is ``[..., N, N]`` per memory. On the CPU, ``retrieve`` of a Hebbian network takes exact
    fast paths with the same results (states, steps, converged, iterations; the same random
    orders in async mode): synchronous steps run only on the states still moving, with the
    overlaps updated flip by flip; an asynchronous sweep visits only the neurons that flip,
    in the order of that sweep's random keys.

    Args:
        rule: ``"hebbian"``, ``"pseudo_inverse"`` or ``"storkey"``.
        zero_diagonal: set w_ii = 0 (default). The Storkey rule needs it; for the
            pseudo-inverse rule False keeps the exact projection.

    Shapes:
        write: patterns ``[..., P, N]`` of +-1 (``values`` None or equal); state:
        patterns ``[..., P, N]`` and weights ``[..., N, N]`` (Hebbian: built on first use).
        read: states ``[..., M, N]`` -> ``[..., M, N]`` (one synchronous step).

    Example:
        >>> import torch
        >>> from kvmem.memory.hopfield import ClassicalHopfield
        >>> net = ClassicalHopfield(rule="pseudo_inverse")
        >>> x = torch.tensor([[1.0, 1, -1, -1, 1], [1.0, -1, 1, -1, -1]])
        >>> net.write(x)
        >>> torch.equal(net.read(x), x)
        True
    """

    _state_names = ("patterns", "weights")

    def __init__(self, rule: Literal["hebbian", "pseudo_inverse", "storkey"] = "hebbian", zero_diagonal: bool = True):
        super().__init__()
        if rule not in CLASSICAL_RULES:
            raise ValueError(f"rule: expected one of {CLASSICAL_RULES}, got {rule!r}")
        if not isinstance(zero_diagonal, bool):
            raise TypeError(f"zero_diagonal: expected a bool, got {type(zero_diagonal).__name__}")
        if rule == "storkey" and not zero_diagonal:
            raise ValueError("zero_diagonal: the Storkey rule is defined for i != j; it needs zero_diagonal=True")
        self.rule = rule
        self.zero_diagonal = zero_diagonal

    def config(self) -> dict[str, Any]:
        return {"rule": self.rule, "zero_diagonal": self.zero_diagonal}

    def _required_state(self):
        return ("patterns", "weights")

    def write(self, keys: Any, values: Any = None) -> None:
        """Store +-1 patterns ``[..., P, N]`` and update the weights by the rule.

        Args:
            keys: the patterns, entries +-1.
            values: None, or a tensor equal to ``keys`` (the memory is autoassociative).
        """
        x = self._patterns_in(keys, values)
        patterns = x if self.is_empty else torch.cat([self.patterns, x], dim=-2)
        n = x.shape[-1]
        if self.rule == "hebbian":
            # W is a function of the patterns alone: built when first asked for (__getattr__).
            self.patterns, self.weights = patterns, None
            self._weights_pending = True
            return
        eye = torch.eye(n, dtype=torch.bool, device=x.device)
        if self.rule == "pseudo_inverse":
            p64 = patterns.double()
            w = p64.transpose(-1, -2) @ torch.linalg.pinv(p64 @ p64.transpose(-1, -2), hermitian=True) @ p64
            w = (0.5 * (w + w.transpose(-1, -2))).to(patterns.dtype)
        else:
            w = x.new_zeros(*x.shape[:-2], n, n) if self.is_empty else self.weights
            for xi in x.unbind(-2):
                w = self._storkey(w, xi, eye)
        if self.zero_diagonal:
            w = w.masked_fill(eye, 0.0)
        self.patterns, self.weights = patterns, w
        self._weights_pending = False

    def _hebbian_weights(self, patterns: torch.Tensor) -> torch.Tensor:
        """W = X^T X / N (zero diagonal unless ``zero_diagonal=False``)."""
        n = patterns.shape[-1]
        w = patterns.transpose(-1, -2) @ patterns / n
        if self.zero_diagonal:
            w = w.masked_fill(torch.eye(n, dtype=torch.bool, device=patterns.device), 0.0)
        return w

    def __getattr__(self, name: str) -> Any:
        if name == "weights":
            state = self.__dict__
            buffers = state.get("_buffers")
            if buffers is not None and buffers.get("weights") is None and state.get("_weights_pending"):
                state["_weights_pending"] = False
                if buffers.get("patterns") is not None:
                    buffers["weights"] = self._hebbian_weights(buffers["patterns"])
        return super().__getattr__(name)

    def _save_to_state_dict(self, destination, prefix, keep_vars):
        self.weights  # noqa: B018 -- build pending Hebbian weights: the state holds them
        super()._save_to_state_dict(destination, prefix, keep_vars)

    def _apply(self, fn, *args, **kwargs):
        self.weights  # noqa: B018 -- convert W as built at write time, as before it was lazy
        return super()._apply(fn, *args, **kwargs)

    @staticmethod
    def _storkey(w: torch.Tensor, xi: torch.Tensor, eye: torch.Tensor) -> torch.Tensor:
        """One Storkey step: w ``[..., N, N]`` (zero diagonal), xi ``[..., N]``."""
        n = xi.shape[-1]
        field = (w @ xi.unsqueeze(-1)).squeeze(-1)  # (W xi)_i, with w_ii = 0
        h = field.unsqueeze(-1) - w * xi.unsqueeze(-2)  # h_ij = (W xi)_i - w_ij xi_j
        outer = xi.unsqueeze(-1) * xi.unsqueeze(-2)
        dw = (outer - xi.unsqueeze(-1) * h.transpose(-1, -2) - h * xi.unsqueeze(-2)) / n
        return (w + dw).masked_fill(eye, 0.0)

    def _exact(self, states: torch.Tensor) -> bool:
        """Whether the integer Hebbian field fits the dtype's exact integer range."""
        if self.rule != "hebbian":
            return False
        limit = 2**24 if states.dtype in (torch.float32, torch.float16, torch.bfloat16) else 2**53
        p, n = self.patterns.shape[-2:]
        return p * n < limit and states.dtype != torch.float16 and states.dtype != torch.bfloat16

    def _update_needs(self, states):
        return ("patterns",) if self._exact(states) else ("weights",)

    def _update(self, states, memory=None):
        if self._exact(states):
            x = (self.patterns if memory is None else memory["patterns"]).to(states.dtype)
            field = (states @ x.transpose(-1, -2)) @ x  # sum_mu xi_mu,i (xi_mu . s): integers
            if self.zero_diagonal:
                field = field - x.shape[-2] * states
            return _sign(field)
        w = self.weights if memory is None else memory["weights"]
        return _sign(states @ w.transpose(-1, -2))

    def _fast(self, start: torch.Tensor) -> bool:
        """Whether ``retrieve`` takes the exact CPU fast path (Hebbian, integer-exact field)."""
        return start.device.type == "cpu" and self._exact(start)

    def _fast_inputs(self, start, clamp):
        shape = start.shape
        m, n = shape[-2:]
        count = math.prod(shape[:-2])
        p = self.patterns.shape[-2]
        # Integer fields stay exact in float32 below 2^24 (the GEMMs are faster in float32).
        dtype = torch.float32 if p * n < 2**24 else torch.float64
        # Sign dynamics have no gradient: plain arrays (numpy views) from here on.
        x = self.patterns.detach().expand(*shape[:-2], p, n).reshape(count, p, n).to(dtype).contiguous()
        s = start.detach().reshape(count * m, n).to(dtype).contiguous()
        keep = None if clamp is None else clamp.expand(shape).reshape(count * m, n).contiguous().numpy()
        return shape, m, x, s, keep

    @staticmethod
    def _fast_result(shape, dtype, out, moved, done, iterations) -> Retrieval:
        return Retrieval(torch.from_numpy(out).to(dtype).view(shape), torch.from_numpy(moved).view(shape[:-1]),
                         torch.from_numpy(done).view(shape[:-1]), iterations)

    def _run_sync(self, start, clamp, steps):
        if not self._fast(start):
            return super()._run_sync(start, clamp, steps)
        shape, m, x, s, keep = self._fast_inputs(start, clamp)
        # The same results either way; the compiled kernel when numba is there (_hopfield_numba).
        run = _sync_hebbian
        if _hopfield_numba.sync_backend(s.shape[0], *x.shape[1:]) == "numba":
            run = _hopfield_numba.sync_hebbian
        return self._fast_result(shape, start.dtype, *run(x, s, m, keep, steps, self.zero_diagonal))

    def _run_async(self, start, clamp, steps, gen):
        if not self._fast(start):
            return super()._run_async(start, clamp, steps, gen)
        shape, m, x, s, keep = self._fast_inputs(start, clamp)
        return self._fast_result(shape, start.dtype,
                                 *_async_hebbian(x, s, m, keep, steps, gen, shape, self.zero_diagonal))

    _async_cache_mutable = ("overlaps",)

    def _async_cache(self, states):
        # The overlaps xi_mu . s, updated by O(P) per flipped neuron instead of recomputed
        # by an O(P N) product per neuron: a sweep costs O(P N), as with a weight matrix.
        if not self._exact(states):
            return None
        x = _lift(self.patterns.to(states.dtype), states.dim())
        # x transposed and contiguous [..., N, P]: neuron i's row of weights-to-patterns.
        return {"xt": x.transpose(-1, -2).contiguous(), "overlaps": states @ x.transpose(-1, -2)}

    def _after_neuron(self, cache, index, change):
        cache["overlaps"] += change.unsqueeze(-1) * cache["xi"]

    def _neuron(self, states, index, cache=None):
        if cache is not None:
            # xi_mu,i for the neuron i of each state: [..., M, P]; integers, so exact.
            # The cache is flattened to one batch dimension ([count, N, P], index [count, M]);
            # advanced indexing gathers the rows several times faster than take_along_dim.
            rows = torch.arange(index.shape[0], device=index.device).unsqueeze(-1)
            xi = cache["xt"][rows, index]
            cache["xi"] = xi
            field = (cache["overlaps"] * xi).sum(-1)
            if self.zero_diagonal:
                field = field - xi.shape[-1] * _at(states, index)
            return _sign(field)
        if self._exact(states):
            x = _lift(self.patterns.to(states.dtype), states.dim())  # [..., P, N]
            overlaps = states @ x.transpose(-1, -2)  # [..., M, P]
            xi = torch.take_along_dim(x.unsqueeze(-3), index[..., None, None], dim=-1).squeeze(-1)  # [..., M, P]
            field = (overlaps * xi).sum(-1)
            if self.zero_diagonal:
                field = field - x.shape[-2] * _at(states, index)
            return _sign(field)
        w = _lift(self.weights, states.dim())
        rows = torch.take_along_dim(w, index.unsqueeze(-1), dim=-2)  # [..., M, N]: row w_i of each state
        return _sign((rows * states).sum(-1))

    def energy(self, state: Any) -> torch.Tensor:
        """E = -1/2 s^T W s for each state ``[..., M, N]`` -> ``[..., M]``."""
        s = self._states_in(state, "state")
        return -0.5 * ((s @ self.weights) * s).sum(-1)


@register_memory
class DenseAssociativeMemory(_Hopfield):
    """Dense associative memory (Krotov & Hopfield 2016; Demircigil et al. 2017) on +-1 neurons.

    Energy E(s) = -sum_mu F(xi_mu . s) with

    - ``"polynomial"``: F(x) = max(x, 0)^n (``rectified=True``) or x^n (``rectified=False``);
      capacity grows like N^(n-1). With ``n=2, rectified=False`` the dynamics are those of
      the classical Hebbian network (the update fields differ by the factor 4N).
    - ``"exponential"``: F(x) = exp(beta x) (Demircigil et al.): exponential capacity.

    Update of neuron i by the energy difference, the others fixed:
    s_i <- sign(sum_mu [F(xi_mu . s |s_i=+1) - F(xi_mu . s |s_i=-1)]), sign(0) = +1;
    each such update minimises E over s_i, so asynchronous dynamics never raise the energy.
    ``read`` applies the rule to every neuron at once from the current state. The
    differences are computed in float64 (exact for the polynomial: integer overlaps); the
    exponential ones are shifted by their largest exponent per state and neuron, so they
    never overflow, and one within ``EXP_TIE_RTOL`` (1e-12) of the sum of its terms counts
    as a tie (sign +1), so that rounding cannot break the tie rule (:meth:`energy` itself is
    -sum exp(beta x) and can overflow to -inf for huge overlaps).

    Args:
        energy: ``"polynomial"`` or ``"exponential"``.
        n: degree of the polynomial, >= 1.
        beta: inverse temperature of the exponential, > 0.
        rectified: use max(x, 0)^n rather than x^n.

    Shapes:
        write: patterns ``[..., P, N]`` of +-1; state: patterns.
        read: states ``[..., M, N]`` -> ``[..., M, N]``. A synchronous step of the
        polynomial energy is one ``[..., M, P] @ [..., P, N]`` product while
        6 P (N + 2)^n <= 2^53 (exact; see ``_product_step``); beyond that bound, and for
        the exponential energy, it builds a ``[..., M, P, N]`` intermediate.

    Example:
        >>> import torch
        >>> from kvmem.memory.hopfield import DenseAssociativeMemory
        >>> dam = DenseAssociativeMemory(energy="polynomial", n=3)
        >>> x = torch.tensor([[1.0, 1, 1, -1, -1, -1], [1.0, -1, 1, -1, 1, -1]])
        >>> dam.write(x)
        >>> torch.equal(dam.retrieve(x).states, x)
        True
    """

    _state_names = ("patterns",)

    def __init__(
        self,
        energy: Literal["polynomial", "exponential"] = "polynomial",
        n: int = 3,
        beta: float = 1.0,
        rectified: bool = True,
    ) -> None:
        super().__init__()
        if energy not in DAM_ENERGIES:
            raise ValueError(f"energy: expected one of {DAM_ENERGIES}, got {energy!r}")
        if not isinstance(rectified, bool):
            raise TypeError(f"rectified: expected a bool, got {type(rectified).__name__}")
        self.kind = energy
        self.n = check_int(n, "n", minimum=1)
        self.beta = check_positive(beta, "beta")
        self.rectified = rectified

    def config(self) -> dict[str, Any]:
        return {"energy": self.kind, "n": self.n, "beta": self.beta, "rectified": self.rectified}

    def _required_state(self):
        return ("patterns",)

    def write(self, keys: Any, values: Any = None) -> None:
        """Store +-1 patterns ``[..., P, N]`` (``values`` None or equal to ``keys``)."""
        x = self._patterns_in(keys, values)
        self.patterns = x if self.is_empty else torch.cat([self.patterns, x], dim=-2)

    def _f(self, x: torch.Tensor) -> torch.Tensor:
        if self.kind == "exponential":
            return torch.exp(self.beta * x)
        return (x.clamp_min(0) if self.rectified else x) ** self.n

    def _difference(self, rest: torch.Tensor, xi: torch.Tensor) -> torch.Tensor:
        """sum over mu (dim -2) of F(rest + xi) - F(rest - xi); float64."""
        plus, minus = rest + xi, rest - xi
        if self.kind == "polynomial":
            return self._f(plus).sum(-2) - self._f(minus).sum(-2)  # exact for integer overlaps
        top = torch.maximum(plus.amax(-2, keepdim=True), minus.amax(-2, keepdim=True))
        up, down = self._f(plus - top).sum(-2), self._f(minus - top).sum(-2)
        diff = up - down
        # Sums of exponentials are not exact: a difference within rounding is a tie (-> +1).
        return torch.where(diff.abs() <= EXP_TIE_RTOL * (up + down), torch.zeros_like(diff), diff)

    def _update(self, states, memory=None):
        return self._step(states, self.patterns if memory is None else memory["patterns"])

    def _exact_product(self, p: int, n: int) -> bool:
        """Whether :meth:`_product_step` is exact for P = ``p`` patterns of N = ``n`` neurons.

        Every number that path forms is an integer of magnitude at most 6 P (N + 2)^n (see
        :meth:`_product_step`); up to 2^53 each is exactly representable in float64, so
        every product, sum and difference is exact whatever the order of the sums (a
        matrix product of any blocking or FMA use only adds exact products).
        """
        return self.kind == "polynomial" and 6 * p * (n + 2) ** self.n <= 2 ** 53

    def _power(self, x: torch.Tensor) -> torch.Tensor:
        """F(x) of integer-valued float64 ``x`` by repeated products: exact while |F| <= 2^53,
        independent of how the math library rounds ``pow``."""
        base = x.clamp_min(0) if self.rectified else x
        out = base
        for _ in range(self.n - 1):
            out = out * base
        return out

    def _product_step(self, states: torch.Tensor, patterns: torch.Tensor) -> torch.Tensor:
        """:meth:`_step` of the polynomial energy as one matrix product (exact under
        :meth:`_exact_product`).

        With +-1 entries and overlaps m_mu = xi_mu . s, the overlap without neuron i is
        r = m_mu - t, t = xi_mu,i s_i. For t = +1 the arguments r +- xi_mu,i are
        {m_mu, m_mu - 2} and the term F(r + xi_mu,i) - F(r - xi_mu,i) is xi_mu,i A_mu with
        A_mu = F(m_mu) - F(m_mu - 2); for t = -1 they are {m_mu + 2, m_mu} and the term is
        xi_mu,i B_mu with B_mu = F(m_mu + 2) - F(m_mu). Writing the factor as
        (A + B)/2 + t (A - B)/2 and using xi_mu,i t = s_i, twice the field is

            2 h_i = sum_mu xi_mu,i u_mu + s_i sum_mu v_mu,
            u_mu = F(m_mu + 2) - F(m_mu - 2),   v_mu = 2 F(m_mu) - F(m_mu + 2) - F(m_mu - 2),

        one ``[..., M, P] @ [..., P, N]`` product instead of ``[..., M, P, N]`` temporaries.
        Twice the field, because u and v are odd for the rectified power at odd overlaps
        near 0; its sign is that of the field, ties (0) included. Bounds: |m_mu| <= N, so
        |F| <= K = (N + 2)^n at m_mu and m_mu +- 2, |u| <= 2K, |v| <= 4K (partial results
        within 3K), every partial sum of the product within 2PK and of sum_mu v within 4PK,
        and 2 h_i within 6PK: all integers exact in float64 when 6PK <= 2^53, the guard.
        """
        x = patterns.double()
        s = states.double()
        m = s @ x.transpose(-1, -2)  # [..., M, P] overlaps: integers
        low, mid, high = self._power(m - 2), self._power(m), self._power(m + 2)
        u = high - low
        v = (2 * mid - high) - low
        return _sign(u @ x + s * v.sum(-1, keepdim=True)).to(states.dtype)

    def _step(self, states: torch.Tensor, patterns: torch.Tensor) -> torch.Tensor:
        """One synchronous step of states ``[..., M, N]`` against ``patterns [..., P, N]``.

        The polynomial energy takes the exact matrix-product form (:meth:`_product_step`)
        while its numbers provably fit float64's integers; otherwise (huge P, N or n, and
        the exponential energy) the fields are summed term by term over ``[..., M, P, N]``.
        """
        if self._exact_product(patterns.shape[-2], patterns.shape[-1]):
            return self._product_step(states, patterns)
        x = patterns.double().unsqueeze(-3)  # [..., 1, P, N]
        s = states.double()
        overlaps = s @ patterns.double().transpose(-1, -2)  # [..., M, P]
        rest = overlaps.unsqueeze(-1) - x * s.unsqueeze(-2)  # xi_mu . s without neuron i
        return _sign(self._difference(rest, x)).to(states.dtype)

    def _neuron(self, states, index, cache=None):
        s = states.double()
        x = _lift(self.patterns.double(), s.dim())  # [..., P, N]
        overlaps = s @ x.transpose(-1, -2)  # [..., M, P]
        # xi_mu,i for the neuron i of each state: [..., M, P]
        xi = torch.take_along_dim(x.unsqueeze(-3), index[..., None, None], dim=-1).squeeze(-1)
        si = _at(s, index).unsqueeze(-1)
        rest = overlaps - xi * si
        diff = self._difference(rest.unsqueeze(-1), xi.unsqueeze(-1)).squeeze(-1)
        return _sign(diff).to(states.dtype)

    def energy(self, state: Any) -> torch.Tensor:
        """E = -sum_mu F(xi_mu . s) for each state ``[..., M, N]`` -> ``[..., M]``."""
        s = self._states_in(state, "state")
        return -self._f(s @ self.patterns.transpose(-1, -2)).sum(-1)


@register_memory
class ModernHopfield(_Hopfield):
    """Modern (continuous) Hopfield network (Ramsauer et al. 2021): attention as retrieval.

    With patterns X ``[..., P, N]`` (rows xi_mu) and a continuous state xi, the update is

        xi <- X^T softmax(beta X xi),

    exactly one read of a ``SlotMemory(similarity="dot", separation=Softmax(beta))`` with
    keys = values = X. It descends the energy

        E(xi) = -lse(beta, X xi) + 1/2 xi . xi + (1/beta) log P + 1/2 M^2,

    with lse(beta, z) = (1/beta) log sum_mu exp(beta z_mu) and M = max_mu |xi_mu|. Large
    beta retrieves single patterns in one step; small beta (or very similar patterns) gives
    metastable states near averages of patterns (beta -> 0: their mean). Asynchronous mode
    updates one coordinate at a time by the same rule, which also never raises E (a
    concave-convex step in that coordinate).

    Args:
        beta: inverse temperature, > 0.
        tol: a state has converged once no entry changes by ``tol`` or more in one iteration.

    Shapes:
        write: patterns ``[..., P, N]``, any finite reals; state: patterns.
        read: states ``[..., M, N]`` -> ``[..., M, N]``; ``details=True`` adds the
        softmax weights and the dot-product scores ``[..., M, P]``.

    Example:
        >>> import torch
        >>> from kvmem.memory.hopfield import ModernHopfield
        >>> net = ModernHopfield(beta=8.0)
        >>> net.write(torch.eye(3))
        >>> r = net.retrieve(torch.tensor([[0.9, 0.2, 0.1]]))
        >>> bool(r.converged.all()), bool(torch.allclose(r.states, torch.eye(3)[:1], atol=1e-2))
        (True, True)
    """

    _state_names = ("patterns",)
    _binary = False

    def __init__(self, beta: float = 1.0, tol: float = 1e-6) -> None:
        super().__init__()
        self.beta = check_positive(beta, "beta")
        self.tol = check_positive(tol, "tol")
        self._similarity = _similarity.get("dot")
        self._separation = _separation.get({"name": "softmax", "beta": self.beta})

    def config(self) -> dict[str, Any]:
        return {"beta": self.beta, "tol": self.tol}

    def _required_state(self):
        return ("patterns",)

    def write(self, keys: Any, values: Any = None) -> None:
        """Store patterns ``[..., P, N]`` (``values`` None or equal to ``keys``)."""
        x = self._patterns_in(keys, values)
        self.patterns = x if self.is_empty else torch.cat([self.patterns, x], dim=-2)

    def _weights(self, states, patterns=None):
        scores = self._similarity(states, self.patterns if patterns is None else patterns)
        return scores, self._separation(scores)

    def _update(self, states, memory=None):
        patterns = self.patterns if memory is None else memory["patterns"]
        return self._weights(states, patterns)[1] @ patterns

    def read(self, queries: Any, details: bool = False) -> torch.Tensor | ReadResult:
        """One update step xi <- X^T softmax(beta X xi) for states ``[..., M, N]``.

        Args:
            queries: states ``[..., M, N]``; leading dimensions broadcast to the batch shape.
            details: return a ReadResult with weights softmax(beta S) and scores S = X xi.
        """
        queries = self._states_in(queries, "queries")
        scores, weights = self._weights(queries)
        out = weights @ self.patterns
        return ReadResult(out, weights, scores) if details else out

    def _unchanged(self, new, old):
        return (new - old).abs().amax(-1) < self.tol

    def _sweep_unchanged(self, change):
        return change < self.tol

    def energy(self, state: Any) -> torch.Tensor:
        """E = -lse(beta, X xi) + 1/2 xi.xi + (1/beta) log P + 1/2 M^2, ``[..., M, N]`` -> ``[..., M]``."""
        s = self._states_in(state, "state")
        scores = s @ self.patterns.transpose(-1, -2)
        lse = torch.logsumexp(self.beta * scores, dim=-1) / self.beta
        p = self.patterns.shape[-2]
        big_m = self.patterns.norm(dim=-1).amax(-1).unsqueeze(-1)  # [*batch, 1]
        return -lse + 0.5 * (s * s).sum(-1) + math.log(p) / self.beta + 0.5 * big_m**2
