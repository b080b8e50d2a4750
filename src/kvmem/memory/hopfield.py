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
Storkey write (that rule is sequential by definition).

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

import torch

from .._checks import as_tensor, check_int, check_positive, make_generator
from .. import separation as _separation
from .. import similarity as _similarity
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
        if self._binary and x.numel() and not bool((x.abs() == 1).all()):
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
        keys, _ = self._pairs(keys, keys)
        if not self.is_empty and keys.shape[-1] != self._key_dim():
            raise ValueError(f"keys: expected shape [..., P, {self._key_dim()}] (as stored), got {tuple(keys.shape)}")
        self._check_binary(keys, "keys")
        return keys

    def _states_in(self, x: Any, name: str) -> torch.Tensor:
        """Check states ``[..., M, N]`` for a read, a retrieval or an energy."""
        x = self._queries(x, name)
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
        """Synchronous dynamics from ``start [*batch, M, N]`` for at most ``steps`` steps.

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
        start = self._full(cue)
        if mode == "sync":
            return self._run_sync(start, clamp, steps)
        return self._run_async(start, clamp, steps, gen)

    def _run_async(self, start: torch.Tensor, clamp: torch.Tensor | None, steps: int, gen: torch.Generator) -> Retrieval:
        """Asynchronous sweeps from ``start [*batch, M, N]``; one random order per sweep.

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

    Args:
        rule: ``"hebbian"``, ``"pseudo_inverse"`` or ``"storkey"``.
        zero_diagonal: set w_ii = 0 (default). The Storkey rule needs it; for the
            pseudo-inverse rule False keeps the exact projection.

    Shapes:
        write: patterns ``[..., P, N]`` of +-1 (``values`` None or equal); state:
        patterns ``[..., P, N]`` and weights ``[..., N, N]``.
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
        eye = torch.eye(n, dtype=torch.bool, device=x.device)
        if self.rule == "hebbian":
            w = patterns.transpose(-1, -2) @ patterns / n
        elif self.rule == "pseudo_inverse":
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
        memory = memory or {"patterns": self.patterns, "weights": self.weights}
        if self._exact(states):
            x = memory["patterns"].to(states.dtype)
            field = (states @ x.transpose(-1, -2)) @ x  # sum_mu xi_mu,i (xi_mu . s): integers
            if self.zero_diagonal:
                field = field - x.shape[-2] * states
            return _sign(field)
        return _sign(states @ memory["weights"].transpose(-1, -2))

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
        read: states ``[..., M, N]`` -> ``[..., M, N]``. A synchronous step builds a
        ``[..., M, P, N]`` intermediate.

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

    def _step(self, states: torch.Tensor, patterns: torch.Tensor) -> torch.Tensor:
        """One synchronous step of states ``[..., M, N]`` against ``patterns [..., P, N]``."""
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
