"""``torch.nn`` layers built on the sequence ops: a DeltaNet layer and a linear-attention layer.

Each layer maps ``x [B, T, d_model]`` to ``y [B, T, d_model]`` through learned projections
(paper Eqs. 7-9: ``k = x W_k``, ``v = x W_v``, ``q = x W_q``), a fast-weight op per head, and
an output projection. ``forward(x, state)`` also returns the final fast-weight state
``[B, H, F, Dv]``, so a long sequence can be fed in pieces (the state of one piece is the
initial state of the next) with the same result as in one call.

- :class:`DeltaNet` (Schlag, Irie & Schmidhuber 2021; Yang et al. 2024): SiLU then L2
  normalisation of queries and keys (so every write is stable), write strengths
  ``beta = sigmoid(x W_beta)`` per head (times 2 with ``allow_neg_eigval``), and with
  ``gated=True`` a per-head decay ``alpha = sigmoid(x W_alpha + b)`` (Gated DeltaNet).
- :class:`LinearAttention` (Katharopoulos et al. 2020): a feature map phi (elu+1 by
  default, any spec of :mod:`kvmem.features`) and the attention normaliser.

Example (a small training loop: a DeltaNet student learns to match a fixed DeltaNet teacher):
    >>> import torch
    >>> from kvmem.ops import DeltaNet
    >>> _ = torch.manual_seed(0)
    >>> teacher, student = DeltaNet(16, num_heads=2), DeltaNet(16, num_heads=2)
    >>> x = torch.randn(8, 40, 16)
    >>> with torch.no_grad():
    ...     target, _ = teacher(x)
    >>> opt = torch.optim.Adam(student.parameters(), lr=1e-2)
    >>> losses = []
    >>> for step in range(30):
    ...     y, _ = student(x)
    ...     loss = torch.nn.functional.mse_loss(y, target)
    ...     opt.zero_grad()
    ...     loss.backward()
    ...     opt.step()
    ...     losses.append(loss.item())
    >>> losses[-1] < 0.5 * losses[0]
    True
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from .._checks import check_int
from .. import features as _features
from .delta_rule import delta_rule, gated_delta_rule
from .linear_attention import MODES, check_key_norm, check_mode, linear_attention


def _check_input(x: Any, d_model: int) -> torch.Tensor:
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"x: expected a torch.Tensor, got {type(x).__name__}")
    if x.dim() != 3 or x.shape[-1] != d_model:
        raise ValueError(f"x: expected shape [B, T, {d_model}], got {tuple(x.shape)}")
    return x


class _Heads(nn.Module):
    """Shared projections: x -> q, k ``[B, H, T, Dk]`` and v ``[B, H, T, Dv]``; o -> y."""

    def __init__(self, d_model: int, num_heads: int, head_dim: int | None, mode: str, chunk_size: int) -> None:
        super().__init__()
        self.d_model = check_int(d_model, "d_model")
        self.num_heads = check_int(num_heads, "num_heads")
        if head_dim is None:
            if d_model % num_heads:
                raise ValueError(f"num_heads: {num_heads} does not divide d_model = {d_model}; pass head_dim")
            head_dim = d_model // num_heads
        self.head_dim = check_int(head_dim, "head_dim")
        self.mode, self.chunk_size = check_mode(mode, chunk_size)
        inner = self.num_heads * self.head_dim
        self.q_proj = nn.Linear(d_model, inner, bias=False)
        self.k_proj = nn.Linear(d_model, inner, bias=False)
        self.v_proj = nn.Linear(d_model, inner, bias=False)
        self.o_proj = nn.Linear(inner, d_model, bias=False)

    def split(self, y: torch.Tensor) -> torch.Tensor:
        """``[B, T, H * D] -> [B, H, T, D]``."""
        b, t, _ = y.shape
        return y.view(b, t, self.num_heads, -1).transpose(1, 2)

    def merge(self, o: torch.Tensor) -> torch.Tensor:
        """``[B, H, T, D] -> [B, T, d_model]`` through the output projection."""
        b, h, t, d = o.shape
        return self.o_proj(o.transpose(1, 2).reshape(b, t, h * d))

    def extra_repr(self) -> str:
        return f"d_model={self.d_model}, num_heads={self.num_heads}, head_dim={self.head_dim}, mode={self.mode!r}"


class DeltaNet(_Heads):
    """Multi-head DeltaNet layer (gated with ``gated=True``).

    Args:
        d_model: width of the input and output.
        num_heads: H, the number of fast-weight memories.
        head_dim: Dk = Dv per head; default ``d_model // num_heads``.
        gated: add the per-token decay of Gated DeltaNet.
        allow_neg_eigval: beta in (0, 2) instead of (0, 1).
        mode: ``"chunk"``, ``"parallel"`` or ``"recurrent"`` (see :func:`kvmem.ops.delta_rule`).
        chunk_size: C of the chunked form.

    Shapes:
        x ``[B, T, d_model]`` -> y ``[B, T, d_model]``; state ``[B, H, head_dim, head_dim]``.

    Example:
        >>> import torch
        >>> from kvmem.ops import DeltaNet
        >>> layer = DeltaNet(32, num_heads=4, gated=True)
        >>> x = torch.randn(2, 100, 32)
        >>> y, state = layer(x)
        >>> y1, s1 = layer(x[:, :60])
        >>> y2, s2 = layer(x[:, 60:], s1)
        >>> y.shape, state.shape, bool(torch.allclose(torch.cat([y1, y2], 1), y, atol=1e-5))
        (torch.Size([2, 100, 32]), torch.Size([2, 4, 8, 8]), True)
    """

    def __init__(self, d_model: int, num_heads: int = 4, head_dim: int | None = None, *, gated: bool = False,
                 allow_neg_eigval: bool = False, mode: str = "chunk", chunk_size: int = 64) -> None:
        super().__init__(d_model, num_heads, head_dim, mode, chunk_size)
        self.gated = bool(gated)
        self.allow_neg_eigval = bool(allow_neg_eigval)
        self.beta_proj = nn.Linear(d_model, self.num_heads)
        if self.gated:
            self.decay_proj = nn.Linear(d_model, self.num_heads)
            # Start with slow forgetting (alpha near sigmoid(3) = 0.95), as gated layers usually do.
            nn.init.constant_(self.decay_proj.bias, 3.0)

    def forward(self, x: torch.Tensor, state: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """``(y, final_state)`` for ``x [B, T, d_model]`` and an optional state ``[B, H, Dk, Dv]``."""
        x = _check_input(x, self.d_model)
        q = self.split(F.silu(self.q_proj(x)))
        k = self.split(F.silu(self.k_proj(x)))
        v = self.split(self.v_proj(x))
        beta = torch.sigmoid(self.beta_proj(x)).transpose(1, 2)  # [B, H, T]
        if self.allow_neg_eigval:
            beta = 2.0 * beta
        kwargs = dict(key_norm="l2", initial_state=state, mode=self.mode, chunk_size=self.chunk_size)
        if self.gated:
            log_decay = F.logsigmoid(self.decay_proj(x)).transpose(1, 2)
            o, s = gated_delta_rule(q, k, v, beta, log_decay, **kwargs)
        else:
            o, s = delta_rule(q, k, v, beta, **kwargs)
        return self.merge(o), s

    def extra_repr(self) -> str:
        return super().extra_repr() + f", gated={self.gated}, allow_neg_eigval={self.allow_neg_eigval}"


class LinearAttention(_Heads):
    """Multi-head causal linear attention layer (Hebbian fast weights).

    Args:
        d_model: width of the input and output.
        num_heads: H.
        head_dim: Dk = Dv per head; default ``d_model // num_heads``.
        feature_map: spec of phi applied to queries and keys (default elu+1).
        normalize: divide by the attention normaliser (needs non-negative features).
        key_norm: None, ``"l2"`` or ``"sum"`` normalisation of phi(q) and phi(k).
        mode: ``"chunk"``, ``"parallel"`` or ``"recurrent"``.
        chunk_size: C of the chunked form.

    Shapes:
        x ``[B, T, d_model]`` -> y ``[B, T, d_model]``; state ``[B, H, F, head_dim]``
        (``head_dim + 1`` columns with ``normalize``).

    Example:
        >>> import torch
        >>> from kvmem.ops import LinearAttention
        >>> layer = LinearAttention(16, num_heads=2, feature_map={"name": "dpfp", "nu": 1})
        >>> y, state = layer(torch.randn(3, 20, 16))
        >>> y.shape, state.shape
        (torch.Size([3, 20, 16]), torch.Size([3, 2, 16, 9]))
    """

    def __init__(self, d_model: int, num_heads: int = 4, head_dim: int | None = None, *,
                 feature_map: Any = "elu_plus_one", normalize: bool = True, key_norm: str | None = None,
                 mode: str = "chunk", chunk_size: int = 64) -> None:
        super().__init__(d_model, num_heads, head_dim, mode, chunk_size)
        self.feature_map = _features.get(feature_map)
        self.normalize = bool(normalize)
        self.key_norm = check_key_norm(key_norm)

    def forward(self, x: torch.Tensor, state: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """``(y, final_state)`` for ``x [B, T, d_model]`` and an optional state."""
        x = _check_input(x, self.d_model)
        q, k, v = self.split(self.q_proj(x)), self.split(self.k_proj(x)), self.split(self.v_proj(x))
        o, s = linear_attention(q, k, v, feature_map=self.feature_map, key_norm=self.key_norm,
                                normalize=self.normalize, initial_state=state, mode=self.mode,
                                chunk_size=self.chunk_size)
        return self.merge(o), s

    def extra_repr(self) -> str:
        return super().extra_repr() + f", feature_map={self.feature_map.spec()!r}, normalize={self.normalize}"


__all__ = ["DeltaNet", "LinearAttention", "MODES"]
