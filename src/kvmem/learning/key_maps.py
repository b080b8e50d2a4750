"""Key and query maps: fixed, learned and mixed projections from inputs to addresses.

The paper's Eqs. 7-9 write keys, values and queries as projections of the input,
``k_n = x_n W_k``, ``v_n = x_n W_v``, ``q_n = x_n W_q``. Sec. 2.2 contrasts three ways to
get ``W_k`` and ``W_q``: learn them (transformers, fast weight programmers), fix them at
random (a "scaffold", like the addresses of sparse distributed memory), or make keys equal
to the content itself (content addressability, as in the Hopfield network). This module
gives one small ``nn.Module`` for each choice, all with the same contract, and a trainer
that fits the learned ones by gradient descent on retrieval itself:

- :class:`IdentityMap`: keys are the inputs (content-addressable memory).
- :class:`FixedRandomMap`: ``f(x W)`` with a seeded Gaussian ``W`` that never trains.
- :class:`LearnedLinearMap`: ``x W`` with ``W`` a trainable parameter.
- :class:`MixedMap`: a fixed random part and a learned part, concatenated or added.
- :func:`retrieve`: slot-memory retrieval ``softmax(beta S(q W_q, K W_k)) V``.
- :func:`train_key_maps`: Adam on the retrieval error from fresh noisy / partial cues.

Shapes:
    Every map takes ``x`` of shape ``[..., N, D]`` and returns ``[..., N, Dk]``. A map built
    with ``batch_shape=(T,)`` holds T independent weight matrices ``[T, D, Dk]``: inputs
    ``[T, N, D]`` are mapped trial by trial in one batched product, so T memories (trials,
    seeds) are learned side by side.

Example:
    >>> import torch
    >>> from kvmem.learning.key_maps import FixedRandomMap, LearnedLinearMap, retrieve
    >>> items = torch.rand(10, 8)
    >>> fixed = FixedRandomMap(8, 8, seed=0, nonlinearity="sign")
    >>> fixed(items).abs().unique().tolist()
    [1.0]
    >>> learned = LearnedLinearMap(8, 8, seed=0)
    >>> retrieve(items, items, learned, beta=4.0).shape
    torch.Size([10, 8])
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from .. import similarity as _similarity
from .._checks import as_tensor, check_int, check_positive, make_generator
from ..memory import SlotMemory
from ..separation import Softmax

NONLINEARITIES = (None, "sign", "relu", "tanh")
MIX_MODES = ("concat", "add")
INITS = ("random", "identity")


def _batch_shape(batch_shape: Any) -> tuple[int, ...]:
    if isinstance(batch_shape, int) and not isinstance(batch_shape, bool):
        batch_shape = (batch_shape,)
    if not isinstance(batch_shape, (tuple, list, torch.Size)):
        raise TypeError(f"batch_shape: expected a tuple of integers, got {type(batch_shape).__name__}")
    return tuple(check_int(b, "batch_shape", minimum=1) for b in batch_shape)


def _gaussian(shape: tuple[int, ...], in_dim: int, seed: int) -> torch.Tensor:
    """N(0, 1/in_dim) entries from a generator seeded with ``seed``: norms kept on average.

    Copies along the leading dimensions are drawn one matrix at a time, so copy 0 of a
    batched map is exactly the unbatched map with the same seed.
    """
    gen = make_generator(seed, "seed")
    *batch, rows, cols = shape
    draws = [torch.randn(rows, cols, generator=gen) for _ in range(math.prod(batch))]
    return torch.stack(draws).reshape(shape) / math.sqrt(in_dim)


class KeyMap(nn.Module):
    """Base class: a map from inputs ``[..., N, in_dim]`` to keys ``[..., N, out_dim]``.

    Subclasses implement ``_map(x)``; ``forward`` checks the input first, so every map
    rejects bad input the same way.

    Attributes:
        in_dim: D, the input dimension.
        out_dim: Dk, the key dimension.
        batch_shape: leading shape of independent weight copies (``()`` for one map).
    """

    in_dim: int
    out_dim: int
    batch_shape: tuple[int, ...]

    def forward(self, x: Any) -> torch.Tensor:
        """Map rows of ``x`` to keys.

        Args:
            x: ``[..., N, in_dim]``, a tensor or numpy array; with a non-empty
                ``batch_shape`` its leading dimensions must broadcast to it.

        Returns:
            ``[..., N, out_dim]``.

        Raises:
            TypeError: ``x`` is not a tensor or array.
            ValueError: rank below 2, wrong last dimension, leading dimensions that do not
                broadcast to ``batch_shape``, or non-finite entries.
        """
        x = as_tensor(x, "x", min_rank=2, dtype=self._dtype())
        if x.shape[-1] != self.in_dim:
            raise ValueError(f"x: expected shape [..., N, {self.in_dim}] (in_dim), got {tuple(x.shape)}")
        if self.batch_shape:
            lead = x.shape[:-2]
            try:
                ok = torch.broadcast_shapes(lead, self.batch_shape) == torch.Size(self.batch_shape)
            except RuntimeError:
                ok = False
            if not ok:
                raise ValueError(
                    f"x: leading dimensions {tuple(lead)} must broadcast to the map's batch_shape {self.batch_shape}"
                )
        return self._map(x)

    def _map(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def _dtype(self) -> torch.dtype | None:
        for t in list(self.parameters()) + list(self.buffers()):
            return t.dtype
        return None

    def extra_repr(self) -> str:
        extra = f", batch_shape={self.batch_shape}" if self.batch_shape else ""
        return f"in_dim={self.in_dim}, out_dim={self.out_dim}{extra}"


class IdentityMap(KeyMap):
    """Keys equal to the inputs: content addressability, one representation for both roles.

    Args:
        dim: D, the input (and key) dimension.

    Shapes:
        ``[..., N, D] -> [..., N, D]`` (the same tensor, converted to floating point).

    Example:
        >>> import torch
        >>> from kvmem.learning.key_maps import IdentityMap
        >>> IdentityMap(3)(torch.eye(3)).tolist()
        [[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]]
    """

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.in_dim = self.out_dim = check_int(dim, "dim")
        self.batch_shape = ()

    def _map(self, x: torch.Tensor) -> torch.Tensor:
        return x


class FixedRandomMap(KeyMap):
    """A fixed random projection ``f(x W)``: a scaffold of addresses that never learns.

    ``W`` has i.i.d. N(0, 1/in_dim) entries drawn from a generator seeded by ``seed``; it is
    a buffer, not a parameter, so optimisers never see it. With ``nonlinearity="sign"`` the
    keys are random-hyperplane binary codes (+-1), whose dot products measure the angle
    between inputs, the binary random addresses of SDM; ``"relu"`` and ``"tanh"`` give
    graded versions; ``None`` keeps the projection linear.

    Args:
        in_dim: D, the input dimension.
        out_dim: Dk, the key dimension.
        seed: seed of ``W``.
        nonlinearity: one of ``None``, ``"sign"``, ``"relu"``, ``"tanh"``.
        batch_shape: leading shape of independent copies; copy i uses the i-th slice of
            one draw of shape ``[*batch_shape, in_dim, out_dim]``.

    Shapes:
        ``[..., N, in_dim] -> [..., N, out_dim]``.

    Example:
        >>> import torch
        >>> from kvmem.learning.key_maps import FixedRandomMap
        >>> m = FixedRandomMap(4, 6, seed=1, nonlinearity="relu")
        >>> m(torch.ones(2, 4)).shape, len(list(m.parameters()))
        (torch.Size([2, 6]), 0)
    """

    def __init__(
        self,
        in_dim: int,
        out_dim: int,
        seed: int = 0,
        nonlinearity: str | None = None,
        batch_shape: Any = (),
    ) -> None:
        super().__init__()
        self.in_dim = check_int(in_dim, "in_dim")
        self.out_dim = check_int(out_dim, "out_dim")
        self.seed = check_int(seed, "seed", minimum=0)
        if nonlinearity not in NONLINEARITIES:
            raise ValueError(f"nonlinearity: expected one of {NONLINEARITIES}, got {nonlinearity!r}")
        self.nonlinearity = nonlinearity
        self.batch_shape = _batch_shape(batch_shape)
        self.register_buffer("weight", _gaussian((*self.batch_shape, self.in_dim, self.out_dim), self.in_dim, self.seed))

    def _map(self, x: torch.Tensor) -> torch.Tensor:
        h = x @ self.weight
        if self.nonlinearity == "sign":
            # torch.sign maps 0 to 0; a code of +-1 everywhere keeps every key the same norm.
            return torch.where(h >= 0, torch.ones_like(h), -torch.ones_like(h))
        if self.nonlinearity == "relu":
            return torch.relu(h)
        if self.nonlinearity == "tanh":
            return torch.tanh(h)
        return h

    def extra_repr(self) -> str:
        return super().extra_repr() + f", seed={self.seed}, nonlinearity={self.nonlinearity!r}"


class LearnedLinearMap(KeyMap):
    """A trainable linear projection ``x W`` (the paper's Eqs. 7-9).

    Args:
        in_dim: D, the input dimension.
        out_dim: Dk, the key dimension.
        seed: seed of the initial ``W``.
        init: ``"random"`` (i.i.d. N(0, 1/in_dim), seeded) or ``"identity"`` (needs
            ``in_dim == out_dim``; starts at the content-addressable map).
        scale: multiplies the initial ``W``.
        batch_shape: leading shape of independent copies, trained side by side.

    Shapes:
        ``[..., N, in_dim] -> [..., N, out_dim]``; ``weight`` is
        ``[*batch_shape, in_dim, out_dim]``.

    Example:
        >>> import torch
        >>> from kvmem.learning.key_maps import LearnedLinearMap
        >>> m = LearnedLinearMap(3, 3, init="identity", scale=2.0)
        >>> m(torch.ones(1, 3)).tolist(), m.weight.requires_grad
        ([[2.0, 2.0, 2.0]], True)
    """

    def __init__(
        self,
        in_dim: int,
        out_dim: int,
        seed: int = 0,
        init: str = "random",
        scale: float = 1.0,
        batch_shape: Any = (),
    ) -> None:
        super().__init__()
        self.in_dim = check_int(in_dim, "in_dim")
        self.out_dim = check_int(out_dim, "out_dim")
        self.seed = check_int(seed, "seed", minimum=0)
        if init not in INITS:
            raise ValueError(f"init: expected one of {INITS}, got {init!r}")
        if init == "identity" and self.in_dim != self.out_dim:
            raise ValueError(f"init: 'identity' needs in_dim == out_dim, got {self.in_dim} and {self.out_dim}")
        scale = check_positive(scale, "scale", allow_zero=True)
        self.batch_shape = _batch_shape(batch_shape)
        shape = (*self.batch_shape, self.in_dim, self.out_dim)
        if init == "identity":
            w = torch.eye(self.in_dim).expand(shape).clone()
        else:
            w = _gaussian(shape, self.in_dim, self.seed)
        self.weight = nn.Parameter(scale * w)

    def _map(self, x: torch.Tensor) -> torch.Tensor:
        return x @ self.weight


class MixedMap(KeyMap):
    """A fixed random part and a learned linear part of the same key.

    ``mode="concat"``: the key is ``[f(x W_fixed), x W_learned]`` with ``fixed_dim`` fixed
    coordinates and ``out_dim - fixed_dim`` learned ones, so a dot product adds a fixed
    scaffold similarity to a learned one. ``mode="add"``: ``f(x W_fixed) + x W_learned``,
    both ``out_dim`` wide; the learned part starts at zero, so training starts exactly at
    the scaffold and learns a correction to it.

    Args:
        in_dim: D, the input dimension.
        out_dim: Dk, the key dimension.
        seed: seed of the fixed part.
        fixed_dim: width of the fixed part in concat mode (default ``out_dim // 2``);
            must leave at least one learned coordinate. Ignored in add mode.
        nonlinearity: of the fixed part, as in :class:`FixedRandomMap`.
        mode: ``"concat"`` or ``"add"``.
        batch_shape: leading shape of independent copies.
        learned_seed: seed of the learned part's initial weights (default ``seed + 1``).
            A key map and a query map built with the same ``seed`` and different
            ``learned_seed`` share one scaffold and start from different learned parts.

    Shapes:
        ``[..., N, in_dim] -> [..., N, out_dim]``.

    Example:
        >>> import torch
        >>> from kvmem.learning.key_maps import MixedMap
        >>> m = MixedMap(4, 6, fixed_dim=2, nonlinearity="sign")
        >>> m(torch.ones(3, 4)).shape, [p.shape for p in m.parameters()]
        (torch.Size([3, 6]), [torch.Size([4, 4])])
    """

    def __init__(
        self,
        in_dim: int,
        out_dim: int,
        seed: int = 0,
        fixed_dim: int | None = None,
        nonlinearity: str | None = None,
        mode: str = "concat",
        batch_shape: Any = (),
        learned_seed: int | None = None,
    ) -> None:
        super().__init__()
        self.in_dim = check_int(in_dim, "in_dim")
        self.out_dim = check_int(out_dim, "out_dim")
        seed = check_int(seed, "seed", minimum=0)
        learned_seed = seed + 1 if learned_seed is None else check_int(learned_seed, "learned_seed", minimum=0)
        if mode not in MIX_MODES:
            raise ValueError(f"mode: expected one of {MIX_MODES}, got {mode!r}")
        self.mode = mode
        self.batch_shape = _batch_shape(batch_shape)
        if mode == "concat":
            if self.out_dim < 2:
                raise ValueError(f"out_dim: concat mode needs at least 2 (one fixed, one learned), got {self.out_dim}")
            fixed_dim = self.out_dim // 2 if fixed_dim is None else check_int(fixed_dim, "fixed_dim")
            if fixed_dim >= self.out_dim:
                raise ValueError(f"fixed_dim: expected 1 <= fixed_dim < out_dim = {self.out_dim}, got {fixed_dim}")
            learned_dim = self.out_dim - fixed_dim
            scale = 1.0
        else:
            fixed_dim = learned_dim = self.out_dim
            scale = 0.0
        self.fixed_dim = fixed_dim
        self.fixed = FixedRandomMap(self.in_dim, fixed_dim, seed, nonlinearity, self.batch_shape)
        self.learned = LearnedLinearMap(self.in_dim, learned_dim, learned_seed, "random", scale, self.batch_shape)

    def _map(self, x: torch.Tensor) -> torch.Tensor:
        fixed, learned = self.fixed._map(x), self.learned._map(x)
        if self.mode == "add":
            return fixed + learned
        fixed = fixed.expand(*learned.shape[:-1], fixed.shape[-1])
        return torch.cat([fixed, learned], dim=-1)

    def extra_repr(self) -> str:
        return super().extra_repr() + f", mode={self.mode!r}, fixed_dim={self.fixed_dim}"


def _check_map(m: Any, name: str) -> KeyMap:
    if not isinstance(m, KeyMap):
        raise TypeError(f"{name}: expected a KeyMap (IdentityMap, FixedRandomMap, ...), got {type(m).__name__}")
    return m


def retrieve(
    cues: Any,
    items: Any,
    key_map: KeyMap,
    query_map: KeyMap | None = None,
    *,
    values: Any = None,
    similarity: Any = "scaled_dot",
    beta: float = 1.0,
    details: bool = False,
):
    """Slot-memory retrieval with mapped keys and queries: ``softmax(beta S(c W_q, X W_k)) V``.

    The stored pairs are ``(key_map(items), values)`` in a :class:`kvmem.SlotMemory`; each cue
    is mapped by ``query_map`` (``key_map`` when None: shared ``W_q = W_k``) and read out.
    Differentiable in the maps' parameters.

    Args:
        cues: ``[..., M, D]``.
        items: ``[..., N, D]``, the stored inputs.
        key_map: maps items to keys ``[..., N, Dk]``.
        query_map: maps cues to queries ``[..., M, Dk]``; None shares ``key_map``.
        values: ``[..., N, Dv]``; default ``items`` (values fixed to the items).
        similarity: spec of S (see :mod:`kvmem.similarity`).
        beta: softmax inverse temperature, > 0.
        details: return the :class:`kvmem.ReadResult` (values, weights, scores).

    Returns:
        retrieved values ``[..., M, Dv]`` (or the ReadResult).

    Example:
        >>> import torch
        >>> from kvmem.learning.key_maps import IdentityMap, retrieve
        >>> items = torch.eye(3)
        >>> out = retrieve(torch.tensor([[0.9, 0.1, 0.0]]), items, IdentityMap(3), similarity="dot", beta=50.0)
        >>> out.argmax(-1).tolist()
        [0]
    """
    key_map = _check_map(key_map, "key_map")
    query_map = key_map if query_map is None else _check_map(query_map, "query_map")
    if query_map.out_dim != key_map.out_dim:
        raise ValueError(f"query_map: out_dim {query_map.out_dim} must equal key_map's {key_map.out_dim}")
    items = as_tensor(items, "items", min_rank=2)
    values = items if values is None else as_tensor(values, "values", min_rank=2, dtype=items.dtype)
    cues = as_tensor(cues, "cues", min_rank=2, dtype=items.dtype)
    beta = check_positive(beta, "beta")
    keys = key_map(items)
    queries = query_map(cues)
    mem = SlotMemory(similarity=similarity, separation=Softmax(beta=beta))
    mem.write(keys, values.to(keys.dtype).expand(*keys.shape[:-1], values.shape[-1]))
    return mem.read(queries, details=details)


def corrupt(
    items: torch.Tensor,
    copies: int,
    noise_std: float,
    mask_fraction: float,
    generator: torch.Generator,
) -> torch.Tensor:
    """Training cues: ``copies`` corrupted versions of every item, laid out ``[..., copies * N, D]``.

    Each cue hides each entry (sets it to 0) with probability f ~ U[0, mask_fraction], drawn
    per cue, then adds Gaussian noise of standard deviation s ~ U[0, noise_std], also per
    cue; so one cue set spans clean, noisy, partial and both. Cue ``c * N + n`` is a version
    of item ``n``.

    Args:
        items: ``[..., N, D]``.
        copies: cues per item.
        noise_std: the largest noise standard deviation, >= 0.
        mask_fraction: the largest expected hidden fraction, in [0, 1].
        generator: a CPU ``torch.Generator`` (advanced by the call).

    Returns:
        ``[..., copies * N, D]``.
    """
    *lead, n, d = items.shape
    shape = (*lead, copies, n, d)
    f = torch.rand((*lead, copies, n, 1), generator=generator) * mask_fraction
    s = torch.rand((*lead, copies, n, 1), generator=generator) * noise_std
    hidden = torch.rand(shape, generator=generator) < f
    eps = torch.randn(shape, generator=generator)
    x = items.unsqueeze(-3).expand(shape)
    cues = torch.where(hidden.to(items.device), torch.zeros_like(x), x) + (s * eps).to(items)
    return cues.reshape(*lead, copies * n, d)


def _training_scores(sim: Any, queries: torch.Tensor, keys: torch.Tensor) -> torch.Tensor:
    """``sim(queries, keys)``, except that the Euclidean distance keeps a finite gradient.

    ``-sqrt(d2)`` has an infinite derivative at d2 = 0, and a cue that equals its item up to
    rounding (a shared map, a nearly clean cue) reaches it: float32 cancellation clamps d2 to
    0 and the backward pass returns NaN. Flooring d2 at 1e-12 changes a score by at most 1e-6.
    """
    if isinstance(sim, _similarity.NegEuclidean):
        q2 = (queries * queries).sum(-1, keepdim=True)
        k2 = (keys * keys).sum(-1).unsqueeze(-2)
        return -(q2 + k2 - 2.0 * queries @ keys.transpose(-1, -2)).clamp_min(1e-12).sqrt()
    return sim(queries, keys)


@dataclass
class TrainLog:
    """What :func:`train_key_maps` returns.

    Attributes:
        losses: ``[steps, *batch]``: the retrieval loss of each independent memory at each
            step, measured on that step's fresh cues before the update.
        parameters: number of trained scalars.
    """

    losses: torch.Tensor
    parameters: int


def train_key_maps(
    items: Any,
    key_map: KeyMap,
    query_map: KeyMap | None = None,
    *,
    values: Any = None,
    similarity: Any = "scaled_dot",
    beta: float = 1.0,
    steps: int = 300,
    lr: float = 0.01,
    cues_per_item: int = 4,
    noise_std: float = 0.5,
    mask_fraction: float = 0.5,
    seed: int = 0,
) -> TrainLog:
    """Fit W_k (and W_q) by Adam so that retrieval from corrupted cues returns the item.

    The objective is retrieval itself: at every step each item gets ``cues_per_item`` fresh
    corrupted cues (see :func:`corrupt`), each cue is read from the slot memory holding
    ``(key_map(items), values)`` by :func:`retrieve`, and the loss is the mean squared error
    between the read-out and the cued item's value. Values stay fixed (default: the items
    themselves), so only addressing is learned. The softmax ``beta`` is fixed; a learned
    linear map can still learn the effective scale through the norm of its weights.

    Shared or separate maps: with ``query_map=None`` queries use ``key_map`` itself (one
    matrix, ``W_q = W_k``: a cue is addressed the way the items are stored); pass a second map
    for separate ``W_q`` and ``W_k`` (the paper's Eqs. 7 and 9), which lets the query side
    learn to undo the corruption while the key side spreads the items apart.

    Leading (batch) dimensions of ``items`` are independent memories; the total loss is the
    *sum* of their mean losses, so each memory's gradient is its own, and Adam's per-entry
    updates keep maps with a matching ``batch_shape`` independent.

    Args:
        items: ``[..., N, D]``, the stored inputs.
        key_map: the key map; its trainable parameters are trained in place.
        query_map: a separate query map, or None to share ``key_map``.
        values: ``[..., N, Dv]``; default ``items``.
        similarity: spec of S (see :mod:`kvmem.similarity`).
        beta: softmax inverse temperature, > 0.
        steps: Adam steps.
        lr: Adam learning rate, > 0.
        cues_per_item: fresh cues per item per step.
        noise_std: largest Gaussian noise standard deviation of a training cue.
        mask_fraction: largest expected fraction of hidden entries of a training cue.
        seed: seeds the cue draws (the maps carry their own seeds).

    Returns:
        a :class:`TrainLog` with the loss per step and memory.

    Raises:
        ValueError: no trainable parameters in the maps, or bad settings.

    Example:
        >>> import torch
        >>> from kvmem.learning.key_maps import LearnedLinearMap, train_key_maps
        >>> items = torch.rand(20, 8, generator=torch.Generator().manual_seed(0))
        >>> log = train_key_maps(items, LearnedLinearMap(8, 8), LearnedLinearMap(8, 8, seed=1), steps=50)
        >>> bool(log.losses[-10:].mean() < log.losses[:10].mean())
        True
    """
    key_map = _check_map(key_map, "key_map")
    if query_map is not None:
        query_map = _check_map(query_map, "query_map")
    steps = check_int(steps, "steps")
    cues_per_item = check_int(cues_per_item, "cues_per_item")
    lr = check_positive(lr, "lr")
    noise_std = check_positive(noise_std, "noise_std", allow_zero=True)
    mask_fraction = check_positive(mask_fraction, "mask_fraction", allow_zero=True)
    if mask_fraction > 1:
        raise ValueError(f"mask_fraction: expected a number in [0, 1], got {mask_fraction}")
    items = as_tensor(items, "items", min_rank=2, dtype=key_map._dtype())
    if items.shape[-1] != key_map.in_dim:
        raise ValueError(f"items: expected shape [..., N, {key_map.in_dim}] (key_map.in_dim), got {tuple(items.shape)}")
    values = items if values is None else as_tensor(values, "values", min_rank=2, dtype=items.dtype)
    if values.shape[:-1] != items.shape[:-1]:
        raise ValueError(f"values: expected shape [..., {items.shape[-2]}, Dv] matching items, got {tuple(values.shape)}")
    params: list[nn.Parameter] = []
    for m in (key_map, query_map):
        for p in ([] if m is None else m.parameters()):
            if p.requires_grad and all(p is not q for q in params):
                params.append(p)
    if not params:
        raise ValueError("key_map/query_map: no trainable parameters (fixed or identity maps need no training)")
    sim = _similarity.get(similarity)
    sep = Softmax(beta=check_positive(beta, "beta"))
    query_map = key_map if query_map is None else query_map
    gen = make_generator(seed, "seed")
    opt = torch.optim.Adam(params, lr=lr)
    target = values.unsqueeze(-3).expand(*values.shape[:-2], cues_per_item, *values.shape[-2:])
    target = target.reshape(*values.shape[:-2], cues_per_item * values.shape[-2], values.shape[-1])
    losses = []
    for _ in range(steps):
        cues = corrupt(items, cues_per_item, noise_std, mask_fraction, gen)
        # The same read as SlotMemory.read (sigma(S(q, K)) V with the same S and sigma objects,
        # checked against retrieve() in the tests) without its per-call input checks, which
        # cost more than the arithmetic at these sizes.
        out = sep(_training_scores(sim, query_map._map(cues), key_map._map(items))) @ values
        per_memory = ((out - target) ** 2).mean(dim=(-2, -1))
        opt.zero_grad(set_to_none=True)
        per_memory.sum().backward()
        opt.step()
        losses.append(per_memory.detach())
    return TrainLog(losses=torch.stack(losses), parameters=sum(p.numel() for p in params))
