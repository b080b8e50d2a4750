"""Causal linear attention (the Hebbian fast-weight programmer) as a sequence operation.

With a feature map phi, the fast-weight state is written and read token by token::

    S_t = S_(t-1) + phi(k_t)^T v_t          (the paper's Eq. 1, one pair per step)
    o_t = phi(q_t) S_t                       (read after the write of step t)

This is softmax attention with the separation replaced by the identity and the kernel
written as a dot product of features (paper Eqs. 4-6; Katharopoulos et al. 2020), i.e. the
fast weight programmer of Schmidhuber (1992). With ``normalize=True`` each read is divided
by phi(q_t) . z_t with z_t = sum_(j<=t) phi(k_j), the attention normaliser.

Three forms compute the same thing (``mode``):

- ``"recurrent"``: the loop above, the reference;
- ``"chunk"``: chunkwise-parallel. Within a chunk of C tokens the outputs are
  ``Q S_n + tril(Q K^T) V``; the states at the chunk starts are an exclusive prefix sum
  of the per-chunk writes ``K^T V``. Memory O(T (D + C) + (T / C) D^2): no T x T matrix;
- ``"parallel"``: one chunk as long as the sequence, ``tril(Q K^T) V`` (builds the T x T
  matrix; for short sequences).

The module also holds the argument checks shared with :mod:`kvmem.ops.delta_rule`.

Layout (as ``torch.nn.functional.scaled_dot_product_attention``): q, k ``[..., T, Dk]``,
v ``[..., T, Dv]``, usually ``[B, H, T, D]``; the state is ``[..., F, Dv]`` with
``F = phi.out_dim(Dk)``. No query scaling is applied.

Example:
    >>> import torch
    >>> from kvmem.ops import linear_attention
    >>> q = k = torch.eye(3).expand(1, 1, 3, 3)
    >>> v = torch.tensor([[[[1.0], [2.0], [3.0]]]])
    >>> o, state = linear_attention(q, k, v)
    >>> o.flatten().tolist(), state.shape
    ([1.0, 2.0, 3.0], torch.Size([1, 1, 3, 1]))
"""

from __future__ import annotations

from typing import Any

import torch

from .. import features as _features
from .._checks import as_tensor, check_int, check_positive

MODES = ("chunk", "parallel", "recurrent")
KEY_NORMS = (None, "l2", "sum")

# CPU triangular solves and matmuls have no half-precision kernels worth using: half inputs
# run in float32 and the final state stays float32 (as fast-weight kernels usually keep it).
_HALF = (torch.float16, torch.bfloat16)


# -- checks shared by the ops ------------------------------------------------------------------
def all_finite(x: torch.Tensor) -> bool:
    """No NaN and no infinity in ``x``.

    min and max propagate NaN and expose infinities, in one reduction that is ten times
    cheaper than ``isfinite(x).all()`` (which matters next to a fast chunked op).
    """
    if x.numel() == 0:
        return True
    lo, hi = torch.aminmax(x.detach())
    return bool(torch.isfinite(lo)) and bool(torch.isfinite(hi))


def check_mode(mode: Any, chunk_size: Any) -> tuple[str, int]:
    """Validate ``mode`` and ``chunk_size``."""
    if mode not in MODES:
        raise ValueError(f"mode: expected one of {MODES}, got {mode!r}")
    return mode, check_int(chunk_size, "chunk_size")


def prepare_qkv(q: Any, k: Any, v: Any) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.dtype]:
    """Check q, k ``[..., T, Dk]`` and v ``[..., T, Dv]``; return them in the compute dtype.

    Returns ``(q, k, v, out_dtype)``: half-precision inputs are promoted to float32 and
    ``out_dtype`` remembers the dtype the outputs are given back in.
    """
    q = as_tensor(q, "q", min_rank=2, finite=False)
    k = as_tensor(k, "k", min_rank=2, finite=False)
    v = as_tensor(v, "v", min_rank=2, finite=False)
    if q.shape != k.shape:
        raise ValueError(f"q, k: expected the same shape [..., T, Dk], got {tuple(q.shape)} and {tuple(k.shape)}")
    if v.shape[:-1] != k.shape[:-1]:
        raise ValueError(f"v: expected shape {tuple(k.shape[:-1])} + (Dv,) (the leading dimensions and T of k), "
                         f"got {tuple(v.shape)}")
    if k.shape[-2] == 0 or k.shape[-1] == 0 or v.shape[-1] == 0:
        raise ValueError(f"q, k, v: expected T >= 1 and feature dimensions >= 1, "
                         f"got k {tuple(k.shape)}, v {tuple(v.shape)}")
    if not (q.dtype == k.dtype == v.dtype):
        raise TypeError(f"q, k, v: expected one floating dtype, got {q.dtype}, {k.dtype}, {v.dtype}")
    if not (q.device == k.device == v.device):
        raise ValueError(f"q, k, v: expected one device, got {q.device}, {k.device}, {v.device}")
    for x, name in ((q, "q"), (k, "k"), (v, "v")):
        if not all_finite(x):
            raise ValueError(f"{name}: contains NaN or infinite values")
    out_dtype = q.dtype
    if out_dtype in _HALF:
        q, k, v = q.float(), k.float(), v.float()
    return q, k, v, out_dtype


def per_token(x: Any, name: str, like: torch.Tensor, what: str) -> torch.Tensor:
    """A per-token scalar (``beta``, ``log_decay``): a number or a tensor broadcastable to ``[..., T]``.

    ``like`` is k; the result has shape ``k.shape[:-1]`` and k's dtype and device.
    """
    shape = like.shape[:-1]
    if isinstance(x, (int, float)) and not isinstance(x, bool):
        return torch.full(shape, float(x), dtype=like.dtype, device=like.device)
    x = as_tensor(x, name, min_rank=0, finite=False)
    if x.device != like.device:
        raise ValueError(f"{name}: expected device {like.device}, got {x.device}")
    try:
        x = torch.broadcast_to(x, shape)
    except RuntimeError:
        raise ValueError(f"{name}: expected {what} of shape {tuple(shape)} (the leading dimensions and T of k) "
                         f"or broadcastable to it, got {tuple(x.shape)}") from None
    return x.to(like.dtype)


def apply_features(x: torch.Tensor, phi: _features.FeatureMap, key_norm: str | None, eps: float,
                   name: str) -> torch.Tensor:
    """phi(x), then normalised to unit L2 norm or unit sum when ``key_norm`` says so."""
    f = phi(x)
    if key_norm == "l2":
        f = f / f.norm(dim=-1, keepdim=True).clamp_min(eps)
    elif key_norm == "sum":
        if bool((f.detach() < 0).any()):
            raise ValueError(f"{name}: key_norm='sum' needs non-negative features, but phi({name}) has negative "
                             "entries; use a non-negative feature map (elu_plus_one, relu, dpfp, favor) "
                             "or key_norm='l2'")
        f = f / f.sum(dim=-1, keepdim=True).clamp_min(eps)
    return f


def check_key_norm(key_norm: Any) -> str | None:
    if key_norm not in KEY_NORMS:
        raise ValueError(f"key_norm: expected one of {KEY_NORMS}, got {key_norm!r}")
    return key_norm


def prepare_state(initial_state: Any, batch: torch.Size, rows: int, cols: int, like: torch.Tensor,
                  what: str) -> torch.Tensor:
    """The initial state ``[..., rows, cols]`` (zeros when None), in the compute dtype of ``like``."""
    if initial_state is None:
        return like.new_zeros(*batch, rows, cols)
    s = as_tensor(initial_state, "initial_state", min_rank=2, finite=False)
    if not all_finite(s):
        raise ValueError("initial_state: contains NaN or infinite values")
    if s.device != like.device:
        raise ValueError(f"initial_state: expected device {like.device}, got {s.device}")
    if s.shape != (*batch, rows, cols):
        raise ValueError(f"initial_state: expected shape {(*batch, rows, cols)} ({what}), got {tuple(s.shape)}")
    return s.to(like.dtype)


def check_finite_result(*tensors: torch.Tensor) -> None:
    """Raise instead of handing back NaN or infinities (an overflow with finite inputs)."""
    for t in tensors:
        if not all_finite(t):
            raise ValueError("q, k, v: the result overflowed to non-finite values although every input is finite; "
                             "scale the inputs down or normalise the keys (key_norm='l2')")


def pad_time(x: torch.Tensor, chunk: int, dim: int = -2) -> torch.Tensor:
    """Zero-pad the time axis to a multiple of ``chunk``.

    Zero keys write nothing and zero queries read nothing, so padding at the end changes
    neither the real outputs nor the final state.
    """
    t = x.shape[dim]
    extra = (-t) % chunk
    if extra == 0:
        return x
    shape = list(x.shape)
    shape[dim] = extra
    return torch.cat([x, x.new_zeros(shape)], dim=dim)


def flatten_batch(x: torch.Tensor, trailing: int) -> torch.Tensor:
    """Merge every leading (batch) dimension into one: ``[..., *last trailing] -> [B, *last trailing]``."""
    return x.reshape(-1, *x.shape[x.dim() - trailing:])


# -- the operation ------------------------------------------------------------------------------
def linear_attention(
    q: Any,
    k: Any,
    v: Any,
    *,
    feature_map: Any = None,
    key_norm: str | None = None,
    normalize: bool = False,
    initial_state: Any = None,
    mode: str = "chunk",
    chunk_size: int = 64,
    eps: float = 1e-6,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Causal linear attention: ``S_t = S_(t-1) + phi(k_t)^T v_t``, ``o_t = phi(q_t) S_t``.

    Args:
        q: queries ``[..., T, Dk]``.
        k: keys ``[..., T, Dk]``.
        v: values ``[..., T, Dv]``.
        feature_map: spec of phi (see :mod:`kvmem.features`); None is the identity.
        key_norm: None, ``"l2"`` or ``"sum"``: normalise phi(q) and phi(k) to unit L2 norm or
            unit sum (``"sum"`` needs non-negative features) before use.
        normalize: divide each read by ``phi(q_t) . z_t`` with ``z_t = sum_(j<=t) phi(k_j)``
            (Katharopoulos et al. 2020). The denominator is clamped at ``eps``. Needs
            non-negative features (raises ``ValueError`` otherwise). The state then carries
            z as an extra last column: ``[..., F, Dv + 1]``.
        initial_state: the state before the first token, ``[..., F, Dv]`` (``Dv + 1`` with
            ``normalize``); zeros when None.
        mode: ``"chunk"`` (chunkwise-parallel), ``"parallel"`` (one chunk, T x T memory) or
            ``"recurrent"`` (the token loop, the reference).
        chunk_size: C of the chunked form.
        eps: floor of the key normalisations and of the read normaliser.

    Returns:
        ``(o, final_state)``: o ``[..., T, Dv]`` in the input dtype, final_state
        ``[..., F, Dv]`` (or ``[..., F, Dv + 1]``) after the last token. Half-precision
        inputs are computed in float32 and give a float32 state.

    Shapes:
        q, k ``[B, H, T, Dk]``, v ``[B, H, T, Dv]`` -> o ``[B, H, T, Dv]``, state
        ``[B, H, F, Dv]``; any number of leading batch dimensions works.

    Raises:
        ValueError: shapes that do not match, non-finite inputs, an unknown mode or key norm,
            negative features with ``normalize`` or ``key_norm="sum"``, or a result that
            overflowed.
        TypeError: non-tensor inputs or mixed dtypes.

    Example:
        >>> import torch
        >>> from kvmem.ops import linear_attention
        >>> g = torch.Generator().manual_seed(0)
        >>> q, k, v = (torch.randn(2, 3, 50, 8, generator=g) for _ in range(3))
        >>> o1, s1 = linear_attention(q, k, v, feature_map="elu_plus_one", normalize=True, chunk_size=16)
        >>> o2, s2 = linear_attention(q, k, v, feature_map="elu_plus_one", normalize=True, mode="recurrent")
        >>> o1.shape, s1.shape, bool(torch.allclose(o1, o2, atol=1e-5))
        (torch.Size([2, 3, 50, 8]), torch.Size([2, 3, 8, 9]), True)
    """
    mode, chunk_size = check_mode(mode, chunk_size)
    key_norm = check_key_norm(key_norm)
    eps = check_positive(eps, "eps")
    phi = _features.get("identity" if feature_map is None else feature_map)
    q, k, v, out_dtype = prepare_qkv(q, k, v)
    fq = apply_features(q, phi, key_norm, eps, "q")
    fk = apply_features(k, phi, key_norm, eps, "k")
    batch, t, dv = k.shape[:-2], k.shape[-2], v.shape[-1]
    f = fk.shape[-1]
    if normalize:
        if bool((fq.detach() < 0).any()) or bool((fk.detach() < 0).any()):
            raise ValueError("normalize: the read normaliser phi(q) . z needs non-negative features, but phi(q) or "
                             "phi(k) has negative entries; use a non-negative feature map (elu_plus_one, relu, "
                             "dpfp, favor) or normalize=False")
        # z is linear attention with a constant value 1: carry it as an extra value column.
        v = torch.cat([v, v.new_ones(*v.shape[:-1], 1)], dim=-1)
    s0 = prepare_state(initial_state, batch, f, v.shape[-1], fk,
                       "F x (Dv + 1): the normaliser is the last column" if normalize else "F x Dv")
    if normalize and bool((s0.detach()[..., -1] < 0).any()):
        raise ValueError("initial_state: its last column is the normaliser z = sum phi(k) and must be non-negative")
    fq2, fk2, v2, s02 = flatten_batch(fq, 2), flatten_batch(fk, 2), flatten_batch(v, 2), flatten_batch(s0, 2)
    if mode == "recurrent":
        o, s = _linear_recurrent(fq2, fk2, v2, s02)
    else:
        o, s = _linear_chunk(fq2, fk2, v2, s02, t if mode == "parallel" else chunk_size)
    o, s = o.reshape(*batch, t, v.shape[-1]), s.reshape(s0.shape)
    if normalize:
        o = o[..., :dv] / o[..., dv:].clamp_min(eps)
    check_finite_result(o, s)
    return o.to(out_dtype), s


def _linear_recurrent(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, s: torch.Tensor):
    """The token loop: ``[B, T, F]``, ``[B, T, Dv]``, state ``[B, F, Dv]``."""
    outs = []
    for t in range(k.shape[1]):
        s = torch.baddbmm(s, k[:, t, :, None], v[:, t, None, :])
        outs.append(torch.bmm(q[:, t, None, :], s))
    return torch.cat(outs, dim=1), s


def _linear_chunk(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, s0: torch.Tensor, chunk: int):
    """Chunkwise-parallel form; no loop: the chunk-start states are a prefix sum."""
    b, t, f = k.shape
    dv = v.shape[-1]
    chunk = min(chunk, t)
    q, k, v = pad_time(q, chunk, 1), pad_time(k, chunk, 1), pad_time(v, chunk, 1)
    n = q.shape[1] // chunk
    q, k, v = q.view(b, n, chunk, f), k.view(b, n, chunk, f), v.view(b, n, chunk, dv)
    writes = k.transpose(-1, -2) @ v  # [B, N, F, Dv]: what each chunk adds to the state
    # State entering chunk n: S0 plus the writes of chunks < n (an exclusive prefix sum).
    starts = torch.cat([s0.unsqueeze(1), writes[:, :-1]], dim=1).cumsum(dim=1)
    scores = (q @ k.transpose(-1, -2)).tril()  # causal within the chunk, diagonal included
    o = q @ starts + scores @ v
    return o.reshape(b, n * chunk, dv)[:, :t], starts[:, -1] + writes[:, -1]
