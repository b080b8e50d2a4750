"""Sequence operations for fast-weight memories: linear attention and the (gated) delta rule.

Each op takes q, k ``[..., T, Dk]`` and v ``[..., T, Dv]`` (usually ``[B, H, T, D]``),
returns ``(o, final_state)`` with the state ``[..., F, Dv]``, and has three interchangeable
forms: ``mode="recurrent"`` (the token loop, the reference), ``"chunk"`` (chunkwise-parallel,
the fast path) and ``"parallel"`` (one chunk; T x T memory). See ``docs/ops.md``.

Example:
    >>> import torch
    >>> from kvmem import ops
    >>> x = torch.randn(1, 2, 10, 4)
    >>> o, s = ops.delta_rule(x, x, x, 0.5, key_norm="l2")
    >>> o.shape, s.shape
    (torch.Size([1, 2, 10, 4]), torch.Size([1, 2, 4, 4]))
"""

from .delta_rule import delta_rule, gated_delta_rule
from .layers import DeltaNet, LinearAttention
from .linear_attention import linear_attention

__all__ = ["DeltaNet", "LinearAttention", "delta_rule", "gated_delta_rule", "linear_attention"]
