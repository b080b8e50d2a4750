"""Universal Hopfield networks: similarity, separation, projection (Millidge et al. 2022).

Millidge, Salvatori, Song, Lukasiewicz & Bogacz (2022), "Universal Hopfield Networks: A
General Framework for Single-Shot Associative Memory Models", ICML. Every single-shot
associative memory they review is

    z = P sep(sim(K, q))

with K the memory matrix (one stored pattern per row), sim a similarity, sep a separation
and P the projection: P = K (auto-association: classical and modern Hopfield networks,
SDM's autoassociative form) or a separate value matrix V (hetero-association: attention).
Iterating the auto-associative update gives the networks' retrieval dynamics.

Example:
    >>> import torch
    >>> from kvmem.memory.universal import UniversalHopfield
    >>> mem = UniversalHopfield(similarity="dot", separation="hardmax")
    >>> mem.write(torch.tensor([[1.0, -1.0, 1.0], [-1.0, -1.0, 1.0]]))
    >>> mem.retrieve(torch.tensor([[1.0, 1.0, 1.0]])).states.tolist()
    [[1.0, -1.0, 1.0]]
"""

from __future__ import annotations

from typing import Any, Literal

import torch

from .._checks import as_tensor, check_int, check_positive
from .. import separation as _separation
from .. import similarity as _similarity
from .base import Memory, ReadResult, Retrieval, register_memory

PROJECTIONS = ("auto", "hetero")


def _renamed(err: Exception, name: str) -> Exception:
    """The same error with the ``queries:`` prefix of the base class's checks renamed."""
    msg = str(err)
    if msg.startswith("queries:"):
        msg = f"{name}:" + msg[len("queries:"):]
    return type(err)(msg)


def iterate(
    update: Any,
    cue: torch.Tensor,
    batch: torch.Size,
    steps: int,
    tol: float,
    clamp: Any = None,
) -> Retrieval:
    """Run ``x <- update(x)`` from ``cue`` until every state stops moving or ``steps`` runs out.

    A state has converged once an update moves it by at most ``tol`` (max-abs); it is then
    frozen at that last update. Where ``clamp`` is True the entry is reset to the cue's after
    every update (a clamp mask: True = known entry).

    Args:
        update: ``[..., M, D] -> [..., M, D]``.
        cue: ``[..., M, D]``, leading dimensions broadcasting to ``batch``.
        batch: the memory's batch shape.
        steps: the most updates, >= 0.
        tol: the largest max-abs change that counts as a fixed point, >= 0.
        clamp: None or a boolean mask broadcastable to the cue.
    """
    shape = (*torch.broadcast_shapes(cue.shape[:-2], batch), *cue.shape[-2:])
    cue = cue.expand(shape)
    if clamp is not None:
        clamp = as_tensor(clamp, "clamp", dtype=cue.dtype, device=cue.device) != 0
        try:
            clamp = clamp.expand(shape)
        except RuntimeError:
            raise ValueError(f"clamp: shape {tuple(clamp.shape)} does not broadcast to the cue's {shape}") from None
    x = cue.clone()
    taken = torch.zeros(shape[:-1], dtype=torch.long, device=cue.device)
    converged = torch.zeros(shape[:-1], dtype=torch.bool, device=cue.device)
    run = 0
    for _ in range(steps):
        run += 1
        new = update(x).expand(shape)
        if clamp is not None:
            new = torch.where(clamp, cue, new)
        moved = (new - x).abs().amax(dim=-1) > tol
        active = ~converged
        x = torch.where(active.unsqueeze(-1), new, x)
        taken = taken + (active & moved).long()
        converged = converged | (active & ~moved)
        if bool(converged.all()):
            break
    return Retrieval(x, taken, converged, run)


@register_memory
class UniversalHopfield(Memory):
    """Single-shot associative memory z = sep(sim(q, K)) P (Millidge et al. 2022).

    Row vectors: the memory matrix K holds one stored pattern per row. A read is one
    update, exactly what :class:`kvmem.SlotMemory` computes with the same similarity and
    separation; ``retrieve`` iterates the auto-associative update. Instances:

    - ``similarity="dot", separation="identity"``: the classical (correlation-matrix)
      Hopfield read q K^T K, i.e. X^T X q in column form, before any sign function.
    - ``similarity="dot", separation={"name": "softmax", "beta": b}``: the modern
      continuous Hopfield network of Ramsauer et al. (2021), xi <- X^T softmax(b X xi).
    - ``separation="polynomial"``: dense associative memory (Krotov & Hopfield 2016).
    - ``similarity="neg_euclidean"`` or ``"neg_manhattan"`` with softmax: Millidge et al.'s
      best-performing variants.

    Args:
        similarity: spec of sim (see :mod:`kvmem.similarity`), default dot product.
        separation: spec of sep (see :mod:`kvmem.separation`), default softmax (beta 1).
        projection: ``"auto"`` (P = K; write keys only, values must be None or equal the
            keys) or ``"hetero"`` (P = V, values required).
        steps: default number of updates of :meth:`retrieve`, >= 1.

    Shapes:
        write: keys ``[..., P, N]`` (appended to K), values ``[..., P, Dv]`` (hetero).
        read: queries ``[..., M, N]`` -> ``[..., M, Dv]`` (Dv = N for auto); ``details=True``
        adds weights and scores ``[..., M, P]``.
        retrieve: cue ``[..., M, N]`` -> :class:`Retrieval` with states ``[..., M, N]``.

    Reading an empty memory raises ``ValueError``.

    Example:
        >>> import torch
        >>> mem = UniversalHopfield(similarity="dot", separation="identity", projection="hetero")
        >>> mem.write(torch.eye(2), torch.tensor([[1.0], [2.0]]))
        >>> mem.read(torch.tensor([[1.0, 1.0]])).tolist()
        [[3.0]]
    """

    _state_names = ("keys", "values")

    def __init__(
        self,
        similarity: Any = "dot",
        separation: Any = "softmax",
        projection: Literal["auto", "hetero"] = "auto",
        steps: int = 1,
    ) -> None:
        super().__init__()
        self.similarity = _similarity.get(similarity)
        self.separation = _separation.get(separation)
        if projection not in PROJECTIONS:
            raise ValueError(f"projection: expected one of {PROJECTIONS}, got {projection!r}")
        self.projection = projection
        self.steps = check_int(steps, "steps", minimum=1)

    def config(self) -> dict[str, Any]:
        return {
            "similarity": self.similarity.spec(),
            "separation": self.separation.spec(),
            "projection": self.projection,
            "steps": self.steps,
        }

    def _batch_shape(self) -> torch.Size:
        return self.keys.shape[:-2]

    def _key_dim(self) -> int:
        return self.keys.shape[-1]

    def _required_state(self):
        return ("keys",) if self.projection == "auto" else ("keys", "values")

    def __len__(self) -> int:
        """Number of stored patterns (0 while empty)."""
        return 0 if self.is_empty else self.keys.shape[-2]

    @property
    def projection_matrix(self) -> torch.Tensor | None:
        """P: the keys for auto-association, the values for hetero-association."""
        return self.keys if self.projection == "auto" else self.values

    # -- writing -------------------------------------------------------------------
    def write(self, keys: Any, values: Any = None) -> None:
        """Append patterns to the memory matrix (and their values for hetero-association).

        Args:
            keys: ``[..., P, N]``.
            values: hetero: ``[..., P, Dv]``; auto: None or equal to ``keys``.
        """
        if self.projection == "auto":
            keys, _ = self._pairs(keys, keys)
            if values is not None:
                values = as_tensor(values, "values", min_rank=2, dtype=keys.dtype, device=keys.device)
                if values.shape != keys.shape or not torch.equal(values, keys):
                    raise ValueError(
                        "values: projection='auto' projects onto the keys; pass values=None (or the keys)"
                    )
            values = None
        else:
            if values is None:
                raise ValueError("values: projection='hetero' needs values [..., P, Dv]")
            keys, values = self._pairs(keys, values)
        if not self.is_empty:
            stored = [("keys", keys, self.keys)] + ([("values", values, self.values)] if values is not None else [])
            for arg, new, old in stored:
                if new.shape[-1] != old.shape[-1]:
                    raise ValueError(
                        f"{arg}: expected last dimension {old.shape[-1]} (as stored), got shape {tuple(new.shape)}"
                    )
            keys = torch.cat([self.keys, keys], dim=-2)
            if values is not None:
                values = torch.cat([self.values, values], dim=-2)
        self.keys = keys
        self.values = values

    # -- reading -------------------------------------------------------------------
    def read(self, queries: Any, details: bool = False) -> torch.Tensor | ReadResult:
        """One update: sep(sim(q, K)) P.

        Args:
            queries: ``[..., M, N]``; leading dimensions broadcast to the batch shape.
            details: also return the weights sep(S) and scores S ``[..., M, P]``.
        """
        queries = self._queries(queries)
        return self._update(queries, details)

    def _update(self, x: torch.Tensor, details: bool = False) -> torch.Tensor | ReadResult:
        scores = self.similarity(x, self.keys)
        weights = self.separation(scores)
        out = weights @ self.projection_matrix
        return ReadResult(out, weights, scores) if details else out

    def retrieve(self, cue: Any, steps: int | None = None, tol: float = 1e-6, clamp: Any = None) -> Retrieval:
        """Iterate the auto-associative update x <- sep(sim(x, K)) K from ``cue``.

        Each state stops once an update moves it by at most ``tol`` (max-abs); it then
        holds that last update.

        Args:
            cue: ``[..., M, N]``; leading dimensions broadcast to the batch shape.
            steps: the most updates (default: the constructor's ``steps``), >= 0.
            tol: the largest change counted as a fixed point, >= 0.
            clamp: optional mask broadcastable to the cue, True where an entry is known:
                those entries are reset to the cue's after every update (pattern completion
                with :func:`kvmem.paradigms.mask`).

        Returns:
            :class:`Retrieval` (states, steps, converged).

        Raises:
            ValueError: projection is ``"hetero"`` (values need not live in the key space),
                the memory is empty, or a bad cue.
        """
        if self.projection != "auto":
            raise ValueError("projection: retrieve iterates the auto-associative update; it needs projection='auto'")
        steps = self.steps if steps is None else check_int(steps, "steps", minimum=0)
        tol = check_positive(tol, "tol", allow_zero=True)
        try:
            cue = self._queries(cue)
        except (ValueError, TypeError) as err:
            raise _renamed(err, "cue") from None
        return iterate(self._update, cue, self._batch_shape(), steps, tol, clamp)
