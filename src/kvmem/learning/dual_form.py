"""The dual form of a linear layer trained by gradient descent (paper Eqs. 10-11).

A bias-free linear layer ``y = x W`` (row vectors, ``W`` is ``[Din, Dout]``) trained by
plain SGD changes by ``-eta * x_n^T (dL/dy_n)`` for every row ``x_n`` it saw. Summed over
training (Irie, Csordas & Schmidhuber 2022):

    W = W0 + sum_n x_n^T e_n,            e_n = -eta_n (dL/dy)_n                 (Eq. 10)
    y = q W0 + sum_n alpha_n v_n,        alpha = q K^T, k_n = x_n, v_n = e_n    (Eq. 11)

so the layer *is* a linear key-value memory whose keys are its training inputs and whose
values are the error signals it was taught with. :class:`DualFormRecorder` logs those pairs
while a layer trains, each with a tag (the task) and the step index, in two forms:

- **accumulated**: one matrix ``M_t = sum_{n in tag t} x_n^T e_n`` per tag, the memory-
  efficient form of the authors' code (always kept; ``Din x Dout`` per tag);
- **explicit**: the pairs themselves, ``K [N, Din]`` and ``V [N, Dout]`` (``explicit=``),
  for per-pair manipulation.

*Reactivation* reads the memory with chosen pairs amplified by ``beta``:
``y = q W0 + sum_n beta_n alpha_n v_n``. The authors' notebook (``SuperpositionMLPModel``)
keeps ``W1 = W0 + M_task1`` as one matrix and scales it whole, so their ``W0`` is amplified
along with Task 1; ``scale_init=True`` reproduces that, the default leaves ``W0`` alone.

How the pairs are captured: a forward hook (or the recorder's own ``__call__`` for a bare
weight) keeps each input ``x`` and registers a tensor hook on the output ``y`` that receives
``dL/dy``; an optimizer step pre-hook then reads the learning rate the step is about to use,
turns the pending pairs into ``e = -eta dL/dy`` and checks that ``sum x^T dL/dy`` equals the
weight's ``.grad`` (so a missed ``zero_grad``, a weight used outside the recorded calls or
gradient clipping is reported instead of silently breaking the identity). The identity
holds for plain SGD only: momentum, weight decay, ``maximize`` or any other optimizer raise.

Orientation: ``torch.nn.Linear`` stores ``weight`` as ``[Dout, Din]`` and computes
``x weight^T``; everything here uses the paper's ``W = weight^T`` of shape ``[Din, Dout]``.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Collection, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from .._checks import as_tensor
from ..memory import SlotMemory

__all__ = ["DualFormRecorder", "KVPairs", "NetworkRecorder", "check_plain_sgd"]


@dataclass(frozen=True)
class KVPairs:
    """The explicit key-value pairs of one recorded layer.

    Attributes:
        keys: ``[N, Din]``, the layer inputs x_n.
        values: ``[N, Dout]``, the error signals e_n = -eta dL/dy_n.
        steps: ``[N]`` (long), the step of each pair: 0-based, counting the optimizer steps
            that updated this layer.
        tag_ids: ``[N]`` (long), index into ``tags`` of each pair's tag.
        tags: every tag the recorder has seen, in order of first use.
    """

    keys: torch.Tensor
    values: torch.Tensor
    steps: torch.Tensor
    tag_ids: torch.Tensor
    tags: tuple[str, ...]

    def __len__(self) -> int:
        return int(self.keys.shape[0])

    def mask(self, tag: str | Collection[str]) -> torch.Tensor:
        """Boolean ``[N]`` mask of the pairs whose tag is ``tag`` (or any of several)."""
        ids = _tag_ids(tag, self.tags)
        return torch.isin(self.tag_ids, torch.tensor(ids, dtype=torch.long))


@dataclass
class _Pending:
    """One recorded forward call waiting for its gradient and for the optimizer step."""

    x: torch.Tensor
    tag: str
    grad: torch.Tensor | None = None


def _tag_ids(tag: str | Collection[str], known: Sequence[str]) -> list[int]:
    names = [tag] if isinstance(tag, str) else list(tag) if isinstance(tag, Collection) else None
    if not names or not all(isinstance(t, str) for t in names):
        raise TypeError(f"tag: expected a tag name (str) or a non-empty collection of names, got {tag!r}")
    unknown = [t for t in names if t not in known]
    if unknown:
        raise ValueError(f"tag: unknown tag(s) {unknown}; recorded tags: {list(known)}")
    return [list(known).index(t) for t in names]


def check_plain_sgd(optimizer: Any, param: torch.Tensor) -> dict[str, Any]:
    """The parameter group of ``param`` in ``optimizer``, if the update is plain SGD.

    Eq. 10 needs ``W <- W - eta * grad`` exactly, so only ``torch.optim.SGD`` with
    ``momentum == 0``, ``weight_decay == 0`` and ``maximize == False`` qualifies.

    Args:
        optimizer: the optimizer that updates ``param``.
        param: the weight being recorded.

    Raises:
        TypeError: ``optimizer`` is not ``torch.optim.SGD``.
        ValueError: momentum, weight decay or maximize is set, or ``param`` is not optimized.

    Example:
        >>> import torch
        >>> w = torch.nn.Parameter(torch.zeros(3, 2))
        >>> check_plain_sgd(torch.optim.SGD([w], lr=0.1), w)["lr"]
        0.1
        >>> check_plain_sgd(torch.optim.SGD([w], lr=0.1, momentum=0.9), w)
        Traceback (most recent call last):
        ...
        ValueError: optimizer: the dual form (Eq. 10) holds for plain SGD only; got momentum=0.9 ...
    """
    if not isinstance(optimizer, torch.optim.SGD):
        raise TypeError(
            "optimizer: the dual form (Eq. 10) holds for plain SGD only; expected torch.optim.SGD, "
            f"got {type(optimizer).__name__}"
        )
    for group in optimizer.param_groups:
        if any(p is param for p in group["params"]):
            bad = [f"{k}={group.get(k)}" for k in ("momentum", "weight_decay") if group.get(k, 0)]
            if group.get("maximize", False):
                bad.append("maximize=True")
            if bad:
                raise ValueError(
                    f"optimizer: the dual form (Eq. 10) holds for plain SGD only; got {', '.join(bad)} "
                    "(use momentum=0, weight_decay=0, maximize=False)"
                )
            return group
    raise ValueError("optimizer: the recorded weight is not among the optimizer's parameters")


class DualFormRecorder:
    """Records the key-value pairs (Eqs. 10-11) of one linear layer trained by plain SGD.

    Args:
        layer: a ``torch.nn.Linear`` with ``bias=False`` (its ``weight`` is ``[Dout, Din]``;
            the recorder works with ``W = weight^T``), or a leaf weight ``W`` of shape
            ``[Din, Dout]`` (a ``torch.nn.Parameter``) used as ``y = x W``; a bare weight has
            no module to hook, so compute its outputs with ``recorder(x)``.
        optimizer: the ``torch.optim.SGD`` that trains it (no momentum, no weight decay).
        tag: the initial tag; change it with ``recorder.tag = "task2"`` (a pair gets the
            tag current at its forward pass).
        explicit: keep the explicit pairs: True (all), False (none; accumulated form only)
            or a collection of tags whose pairs are kept (e.g. ``{"task1"}``: the accumulated
            form holds everything, the explicit form the pairs one wants to manipulate).
        check_grad: at every step, check that the recorded pairs reproduce the weight's
            gradient (relative tolerance 1e-3) and raise ``RuntimeError`` otherwise.

    ``W0`` is the weight when the recorder is created. The accumulated memories are kept in
    the weight's dtype. Call :meth:`remove` to detach the hooks.

    Shapes:
        ``init_weight``, :meth:`weight`, :meth:`memory`, :meth:`reactivated_weight`:
        ``[Din, Dout]``; :meth:`read`: queries ``[..., Din]`` -> ``[..., Dout]``.

    Example:
        >>> import torch
        >>> torch.manual_seed(0) and None
        >>> layer = torch.nn.Linear(5, 3, bias=False)
        >>> opt = torch.optim.SGD(layer.parameters(), lr=0.1)
        >>> rec = DualFormRecorder(layer, opt, tag="task1")
        >>> for step in range(4):
        ...     rec.tag = "task1" if step < 2 else "task2"
        ...     opt.zero_grad()
        ...     layer(torch.randn(8, 5)).pow(2).mean().backward()
        ...     opt.step()
        >>> len(rec.pairs()), rec.tags
        (32, ('task1', 'task2'))
        >>> bool(torch.allclose(rec.weight(), layer.weight.T, atol=1e-6))
        True
        >>> q = torch.randn(2, 5)
        >>> bool(torch.allclose(rec.read(q), layer(q), atol=1e-6))
        True
    """

    def __init__(
        self,
        layer: nn.Linear | torch.Tensor,
        optimizer: torch.optim.Optimizer,
        *,
        tag: str = "default",
        explicit: bool | Collection[str] = True,
        check_grad: bool = True,
    ) -> None:
        if isinstance(layer, nn.Linear):
            if layer.bias is not None:
                raise ValueError("layer: expected torch.nn.Linear with bias=False (the dual form here has no bias)")
            self.module: nn.Linear | None = layer
            self.param = layer.weight
            self._transposed = True
        elif isinstance(layer, torch.Tensor):
            if layer.dim() != 2 or not layer.is_leaf or not layer.requires_grad:
                raise ValueError(
                    "layer: expected a leaf weight [Din, Dout] with requires_grad=True, "
                    f"got shape {tuple(layer.shape)}, leaf={layer.is_leaf}, requires_grad={layer.requires_grad}"
                )
            self.module = None
            self.param = layer
            self._transposed = False
        else:
            raise TypeError(f"layer: expected torch.nn.Linear or a weight tensor [Din, Dout], got {type(layer).__name__}")
        if not self.param.is_floating_point():
            raise TypeError(f"layer: expected a floating weight, got {self.param.dtype}")
        check_plain_sgd(optimizer, self.param)
        if isinstance(explicit, str) or not (isinstance(explicit, bool) or isinstance(explicit, Collection)):
            raise TypeError(f"explicit: expected True, False or a collection of tags, got {explicit!r}")
        self.optimizer = optimizer
        self.explicit = explicit if isinstance(explicit, bool) else frozenset(explicit)
        self.check_grad = bool(check_grad)
        self.tag = tag
        self.init_weight = self._current().clone()
        self.step_count = 0
        self._memories: dict[str, torch.Tensor] = {}
        self._tags: list[str] = []
        self._chunks: list[tuple[torch.Tensor, torch.Tensor, int, int]] = []  # keys, values, step, tag id
        self._pending: list[_Pending] = []
        self._pairs_cache: KVPairs | None = None
        # Hooks last, so a rejected layer or optimizer leaves nothing attached.
        self._hook = None if self.module is None else self.module.register_forward_hook(self._forward_hook)
        self._step_hook = optimizer.register_step_pre_hook(self._before_step)

    # -- shapes and tags ---------------------------------------------------------------
    @property
    def in_features(self) -> int:
        """Din."""
        return int(self.init_weight.shape[0])

    @property
    def out_features(self) -> int:
        """Dout."""
        return int(self.init_weight.shape[1])

    @property
    def tag(self) -> str:
        """The tag given to pairs recorded from now on."""
        return self._tag

    @tag.setter
    def tag(self, value: str) -> None:
        if not isinstance(value, str) or not value:
            raise TypeError(f"tag: expected a non-empty str, got {value!r}")
        self._tag = value

    @property
    def tags(self) -> tuple[str, ...]:
        """Every tag that has recorded at least one step, in order of first use."""
        return tuple(self._tags)

    @property
    def complete(self) -> bool:
        """True when the explicit pairs cover every recorded tag (Eq. 11 can be read from them)."""
        return all(self._keeps(t) for t in self._tags)

    def _keeps(self, tag: str) -> bool:
        return self.explicit if isinstance(self.explicit, bool) else tag in self.explicit

    def _current(self) -> torch.Tensor:
        w = self.param.detach()
        return w.T if self._transposed else w

    def current_weight(self) -> torch.Tensor:
        """The layer's weight now, as ``W`` ``[Din, Dout]`` (a copy)."""
        return self._current().clone()

    # -- recording -----------------------------------------------------------------------
    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        """The layer's output ``x W`` (recorded when gradients are on)."""
        if self.module is not None:
            return self.module(x)
        y = x @ self.param
        self._record(x, y)
        return y

    def _forward_hook(self, module: nn.Module, inputs: tuple[Any, ...], output: torch.Tensor) -> None:
        self._record(inputs[0], output)

    def _record(self, x: torch.Tensor, y: torch.Tensor) -> None:
        # Calls without a graph (evaluation under no_grad) cannot produce an update.
        if not (torch.is_grad_enabled() and y.requires_grad):
            return
        entry = _Pending(x.detach().reshape(-1, self.in_features), self.tag)
        self._pending.append(entry)

        def keep_grad(grad: torch.Tensor) -> None:
            grad = grad.detach().reshape(-1, self.out_features)
            # A second backward through the same graph adds to .grad; mirror that.
            entry.grad = grad if entry.grad is None else entry.grad + grad

        y.register_hook(keep_grad)

    def _before_step(self, optimizer: torch.optim.Optimizer, args: Any, kwargs: Any) -> None:
        group = check_plain_sgd(optimizer, self.param)
        lr = float(group["lr"])
        pending = [p for p in self._pending if p.grad is not None]
        self._pending = []
        grad = self.param.grad
        if grad is None:
            # SGD skips a weight without a gradient (e.g. frozen): no update, so no pairs.
            return
        grad = grad.T if self._transposed else grad
        by_tag: dict[str, torch.Tensor] = {}
        for p in pending:
            g = p.x.T.to(grad.dtype) @ p.grad.to(grad.dtype)
            by_tag[p.tag] = by_tag[p.tag] + g if p.tag in by_tag else g
        if self.check_grad:
            total = sum(by_tag.values()) if by_tag else torch.zeros_like(grad)
            err = float((total - grad).abs().max())
            scale = float(grad.abs().max())
            if not err <= 1e-3 * scale + 1e-30:
                raise RuntimeError(
                    "dual form: the recorded pairs do not reproduce the weight's gradient "
                    f"(max abs difference {err:.3g}, gradient scale {scale:.3g}); was zero_grad() skipped, "
                    "the gradient clipped, or the weight used outside the recorded layer?"
                )
        step = self.step_count
        for tag, g in by_tag.items():
            if tag not in self._tags:
                self._tags.append(tag)
                self._memories[tag] = torch.zeros_like(self.init_weight)
            # Same arithmetic as the optimizer's update W += (-lr) * grad.
            self._memories[tag].add_(g, alpha=-lr)
        for p in pending:
            if self._keeps(p.tag):
                self._chunks.append((p.x.clone(), -lr * p.grad, step, self._tags.index(p.tag)))
                self._pairs_cache = None
        self.step_count += 1

    def remove(self) -> None:
        """Detach the hooks; what was recorded stays readable."""
        if self._hook is not None:
            self._hook.remove()
            self._hook = None
        self._step_hook.remove()

    # -- the two forms -----------------------------------------------------------------
    def memory(self, tag: str) -> torch.Tensor:
        """The accumulated memory ``M_tag = sum_{n in tag} x_n^T e_n`` ``[Din, Dout]`` (a copy)."""
        (i,) = _tag_ids(tag, self._tags)
        return self._memories[self._tags[i]].clone()

    def memories(self) -> dict[str, torch.Tensor]:
        """Every accumulated memory by tag (copies)."""
        return {t: m.clone() for t, m in self._memories.items()}

    def pairs(self) -> KVPairs:
        """The explicit pairs recorded so far (only the tags kept by ``explicit``).

        The result is cached until the next recorded step and shared with the recorder's own
        reads: treat its tensors as read-only.

        Raises:
            ValueError: the recorder was made with ``explicit=False``.
        """
        if self.explicit is False:
            raise ValueError("pairs: this recorder keeps no explicit pairs (explicit=False); use memory(tag)")
        if self._pairs_cache is None or self._pairs_cache.tags != self.tags:
            self._pairs_cache = self._concat_pairs()
        return self._pairs_cache

    def _concat_pairs(self) -> KVPairs:
        w = self.init_weight
        if not self._chunks:
            empty = torch.zeros(0, dtype=torch.long)
            return KVPairs(w.new_zeros(0, self.in_features), w.new_zeros(0, self.out_features), empty, empty, self.tags)
        sizes = [c[0].shape[0] for c in self._chunks]
        return KVPairs(
            keys=torch.cat([c[0] for c in self._chunks]).to(w.dtype),
            values=torch.cat([c[1] for c in self._chunks]).to(w.dtype),
            steps=torch.repeat_interleave(torch.tensor([c[2] for c in self._chunks]), torch.tensor(sizes)),
            tag_ids=torch.repeat_interleave(torch.tensor([c[3] for c in self._chunks]), torch.tensor(sizes)),
            tags=self.tags,
        )

    def weight(self, source: str = "memories") -> torch.Tensor:
        """The reconstructed ``W = W0 + sum_n x_n^T e_n`` ``[Din, Dout]`` (Eq. 10).

        Args:
            source: ``"memories"`` (sum of the accumulated per-tag matrices) or ``"pairs"``
                (``W0 + K^T V`` from the explicit pairs; needs every tag kept).
        """
        if source == "memories":
            return self.reactivated_weight()
        if source == "pairs":
            self._require_complete("weight(source='pairs')")
            kv = self.pairs()
            return self.init_weight + kv.keys.T @ kv.values
        raise ValueError(f"source: expected 'memories' or 'pairs', got {source!r}")

    def _require_complete(self, what: str) -> None:
        if not self.complete:
            missing = [t for t in self._tags if not self._keeps(t)]
            raise ValueError(f"{what}: needs the explicit pairs of every tag; not kept: {missing} (explicit={self.explicit!r})")

    # -- reactivation --------------------------------------------------------------------
    def _pair_scale(self, beta: Any, tag: Any, pairs: Any, kv: KVPairs) -> torch.Tensor:
        """Per-pair factor beta_n ``[N]`` for the explicit pairs."""
        dtype, device, n = self.init_weight.dtype, self.init_weight.device, len(kv)
        if isinstance(beta, torch.Tensor):
            if tag is not None or pairs is not None:
                raise ValueError("beta: a per-pair beta tensor cannot be combined with tag= or pairs=")
            beta = as_tensor(beta, "beta", dtype=dtype)
            if beta.shape != (n,):
                raise ValueError(f"beta: expected a float or a per-pair tensor of shape [{n}], got shape {tuple(beta.shape)}")
            return beta.to(device)
        # On the recorder's device: a mask or indices given on the CPU select the same pairs.
        scale = torch.ones(n, dtype=dtype, device=device)
        if pairs is None:
            chosen = kv.mask(tag) if tag is not None else torch.ones(n, dtype=torch.bool)
        else:
            if tag is not None:
                raise ValueError("pairs: give either tag= or pairs=, not both")
            chosen = _selection(pairs, n)
        scale[chosen.to(device)] = float(beta)
        return scale

    def reactivated_weight(
        self,
        beta: float | torch.Tensor = 1.0,
        *,
        tag: str | Collection[str] | None = None,
        pairs: Any = None,
        scale_init: bool = False,
    ) -> torch.Tensor:
        """``W_beta = s W0 + sum_n beta_n x_n^T e_n`` ``[Din, Dout]``: the weight with chosen pairs amplified.

        Args:
            beta: the factor for the chosen pairs (a float), or a per-pair tensor ``[N]``
                over the explicit pairs.
            tag: amplify every pair of this tag (or these tags); None with ``pairs=None``:
                every pair.
            pairs: amplify a subset of the explicit pairs: a boolean mask ``[N]`` or
                indices. Pairs of tags not kept explicitly enter with factor 1.
            scale_init: also multiply ``W0`` by ``beta`` (``s = beta``), as the authors'
                ``SuperpositionMLPModel`` does by keeping ``W0`` inside the Task 1 matrix.

        With a tag selection the accumulated memories are used (no explicit pairs needed);
        with ``pairs`` or a per-pair ``beta`` the explicit pairs are used.
        """
        per_pair = isinstance(beta, torch.Tensor)
        if not per_pair and (isinstance(beta, bool) or not isinstance(beta, (int, float)) or not math.isfinite(beta)):
            raise TypeError(f"beta: expected a finite float or a per-pair tensor, got {beta!r}")
        if per_pair and scale_init:
            raise ValueError("scale_init: needs a scalar beta (W0 is one matrix)")
        s = float(beta) if scale_init else 1.0
        w = s * self.init_weight
        if pairs is None and not per_pair:
            chosen = set(self._tags) if tag is None else {self._tags[i] for i in _tag_ids(tag, self._tags)}
            for t, m in self._memories.items():
                w = w + (float(beta) if t in chosen else 1.0) * m
            return w
        kv = self.pairs()
        scale = self._pair_scale(beta, tag, pairs, kv)
        for m in self._memories.values():
            w = w + m
        # Pairs already in the memories enter once; add only the extra (beta_n - 1) part.
        return w + kv.keys.T @ ((scale - 1.0)[:, None] * kv.values)

    def read(
        self,
        queries: Any,
        *,
        beta: float | torch.Tensor = 1.0,
        tag: str | Collection[str] | None = None,
        pairs: Any = None,
        scale_init: bool = False,
    ) -> torch.Tensor:
        """The layer's output in the attention form of Eq. 11 over the explicit pairs.

        ``y = s q W0 + sum_n beta_n alpha_n v_n`` with ``alpha = q K^T`` (``beta_n = 1``
        and ``s = 1`` by default: the trained layer's output). Arguments as in
        :meth:`reactivated_weight`.

        Shapes:
            queries ``[..., Din]`` -> ``[..., Dout]``.

        Raises:
            ValueError: some tag's pairs were not kept explicitly.
        """
        self._require_complete("read")
        q = as_tensor(queries, "queries", dtype=self.init_weight.dtype)
        if q.shape[-1] != self.in_features:
            raise ValueError(f"queries: expected last dimension {self.in_features} (Din), got shape {tuple(q.shape)}")
        if isinstance(beta, torch.Tensor) and scale_init:
            raise ValueError("scale_init: needs a scalar beta (W0 is one matrix)")
        if not isinstance(beta, torch.Tensor) and (isinstance(beta, bool) or not isinstance(beta, (int, float))):
            raise TypeError(f"beta: expected a float or a per-pair tensor, got {beta!r}")
        kv = self.pairs()
        scale = self._pair_scale(beta, tag, pairs, kv)
        s = float(beta) if scale_init else 1.0
        alpha = q @ kv.keys.T
        return s * (q @ self.init_weight) + (alpha * scale) @ kv.values

    def as_slot_memory(self):
        """The explicit pairs as a :class:`kvmem.SlotMemory` (dot similarity, identity separation).

        Its read is ``sum_n (q . k_n) v_n``, the second term of Eq. 11: add ``q W0`` for the
        layer's output.
        """
        self._require_complete("as_slot_memory")
        kv = self.pairs()
        mem = SlotMemory(similarity="dot", separation="identity")
        mem.write(kv.keys, kv.values)
        return mem

    @contextlib.contextmanager
    def swapped(self, weight: torch.Tensor) -> Iterator[None]:
        """Within the block the layer computes with ``weight`` (``[Din, Dout]``); restored after.

        Meant for evaluation (e.g. under reactivation); do not train inside the block.
        """
        weight = as_tensor(weight, "weight", min_rank=2, dtype=self.param.dtype)
        if tuple(weight.shape) != (self.in_features, self.out_features):
            raise ValueError(f"weight: expected shape [{self.in_features}, {self.out_features}] ([Din, Dout]), got {tuple(weight.shape)}")
        saved = self.param.detach().clone()
        with torch.no_grad():
            self.param.copy_(weight.T if self._transposed else weight)
        try:
            yield
        finally:
            with torch.no_grad():
                self.param.copy_(saved)


def _selection(pairs: Any, n: int) -> torch.Tensor:
    """A boolean mask ``[n]`` from a mask or from indices."""
    if isinstance(pairs, torch.Tensor):
        sel = pairs
    else:
        try:
            sel = torch.as_tensor(pairs)
        except (TypeError, ValueError, RuntimeError):
            raise TypeError(f"pairs: expected a boolean mask [{n}] or integer indices, got {type(pairs).__name__}") from None
    if sel.dtype == torch.bool:
        if sel.shape != (n,):
            raise ValueError(f"pairs: expected a boolean mask of shape [{n}], got shape {tuple(sel.shape)}")
        return sel
    if sel.is_floating_point() or sel.is_complex() or sel.dim() > 1:
        raise TypeError(f"pairs: expected a boolean mask [{n}] or 1-D integer indices, got {sel.dtype} of shape {tuple(sel.shape)}")
    sel = sel.reshape(-1).long()
    if sel.numel() and (int(sel.min()) < -n or int(sel.max()) >= n):
        raise ValueError(f"pairs: indices out of range for {n} pairs")
    mask = torch.zeros(n, dtype=torch.bool)
    mask[sel] = True
    return mask


class NetworkRecorder:
    """Dual-form recorders for every bias-free ``nn.Linear`` of a network.

    Args:
        model: the network; each ``torch.nn.Linear`` in it (found by ``named_modules``)
            is recorded, and all must have ``bias=False``.
        optimizer: its plain ``torch.optim.SGD``.
        tag: initial tag of every recorder.
        explicit: as in :class:`DualFormRecorder`.

    ``recorders`` maps module names to :class:`DualFormRecorder`. Set ``tag`` to tag all.
    :meth:`reactivated` evaluates the whole network (e.g. Linear-ReLU-Linear) with the
    chosen pairs amplified in every layer by swapping each weight inside a ``with`` block.

    Example:
        >>> import torch
        >>> torch.manual_seed(0) and None
        >>> net = torch.nn.Sequential(torch.nn.Linear(4, 8, bias=False), torch.nn.ReLU(), torch.nn.Linear(8, 2, bias=False))
        >>> opt = torch.optim.SGD(net.parameters(), lr=0.5)
        >>> rec = NetworkRecorder(net, opt, tag="task1")
        >>> for step in range(6):
        ...     rec.tag = "task1" if step < 3 else "task2"
        ...     opt.zero_grad()
        ...     torch.nn.functional.cross_entropy(net(torch.randn(16, 4)), torch.randint(2, (16,))).backward()
        ...     opt.step()
        >>> x = torch.randn(5, 4)
        >>> with rec.reactivated(2.0, tag="task1"):
        ...     y2 = net(x)
        >>> W = rec.reactivated_weights(2.0, tag="task1")
        >>> bool(torch.allclose(y2, torch.relu(x @ W["0"]) @ W["2"], atol=1e-6))
        True
    """

    def __init__(self, model: nn.Module, optimizer: torch.optim.Optimizer, *, tag: str = "default",
                 explicit: bool | Collection[str] = True) -> None:
        if not isinstance(model, nn.Module):
            raise TypeError(f"model: expected a torch.nn.Module, got {type(model).__name__}")
        layers = [(name, m) for name, m in model.named_modules() if isinstance(m, nn.Linear)]
        if not layers:
            raise ValueError("model: contains no torch.nn.Linear layer to record")
        self.recorders: dict[str, DualFormRecorder] = {}
        try:
            for name, m in layers:
                self.recorders[name] = DualFormRecorder(m, optimizer, tag=tag, explicit=explicit)
        except (TypeError, ValueError) as err:
            self.remove()
            raise type(err)(f"layer {name!r}: {err}") from None

    @property
    def tag(self) -> str:
        """The tag of the next recorded pairs (the same in every layer)."""
        return next(iter(self.recorders.values())).tag

    @tag.setter
    def tag(self, value: str) -> None:
        for rec in self.recorders.values():
            rec.tag = value

    def __getitem__(self, name: str) -> DualFormRecorder:
        return self.recorders[name]

    def reactivated_weights(self, beta: float = 1.0, *, tag: str | Collection[str] | None = None,
                            pairs: Any = None, scale_init: bool = False) -> dict[str, torch.Tensor]:
        """Each layer's :meth:`DualFormRecorder.reactivated_weight` ``[Din, Dout]`` by name.

        ``pairs`` is one selection for every layer (the layers record the same training rows
        in the same order, so a mask picks the same events everywhere) or a mapping from
        layer name to selection.
        """
        out = {}
        for name, rec in self.recorders.items():
            sel = pairs[name] if isinstance(pairs, Mapping) else pairs
            out[name] = rec.reactivated_weight(beta, tag=tag, pairs=sel, scale_init=scale_init)
        return out

    @contextlib.contextmanager
    def swapped(self, weights: Mapping[str, torch.Tensor]) -> Iterator[None]:
        """Within the block every named layer computes with the given ``[Din, Dout]`` weight."""
        unknown = set(weights) - set(self.recorders)
        if unknown:
            raise ValueError(f"weights: unknown layer(s) {sorted(unknown)}; recorded: {list(self.recorders)}")
        with contextlib.ExitStack() as stack:
            for name, w in weights.items():
                stack.enter_context(self.recorders[name].swapped(w))
            yield

    @contextlib.contextmanager
    def reactivated(self, beta: float = 1.0, *, tag: str | Collection[str] | None = None,
                    pairs: Any = None, scale_init: bool = False) -> Iterator[None]:
        """Evaluate the network with the chosen pairs amplified by ``beta`` in every layer."""
        with self.swapped(self.reactivated_weights(beta, tag=tag, pairs=pairs, scale_init=scale_init)):
            yield

    def remove(self) -> None:
        """Detach every recorder's hooks."""
        for rec in self.recorders.values():
            rec.remove()
