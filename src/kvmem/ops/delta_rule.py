r"""The delta rule and the gated delta rule as sequence operations.

The delta rule (Widrow-Hoff; as a fast-weight write: Schlag, Irie & Schmidhuber 2021)
replaces what the memory returns for ``k_t`` by ``v_t`` with strength ``beta_t``::

    S_t = S_(t-1) + beta_t k_t^T (v_t - k_t S_(t-1))
    o_t = q_t S_t                                     (read after the write of step t)

The gated delta rule (Yang, Kautz & Hatamizadeh 2024) first decays the state by
``alpha_t = exp(g_t)``::

    S_t = alpha_t S_(t-1) + beta_t k_t^T (v_t - alpha_t k_t S_(t-1))

Row vectors throughout; S is ``[Dk, Dv]`` (the transpose of ``W = sum v k^T``), as in
:class:`kvmem.MatrixMemory`, whose ``rule="delta"`` write agrees with this op token by token.

**Chunkwise-parallel form (WY / UT representation, Yang et al. 2024).** Within a chunk of C
tokens with keys K, values V, strengths beta and the state S entering it, the state after
token t is ``S + sum_(i<=t) k_i^T u_i`` with ``u_i = beta_i (v_i - k_i S_(i-1))``. Writing
the ``u_i`` as rows of U' gives the unit lower-triangular system::

    (I + A) U' = diag(beta) (V - K S),     A = strictly_lower(diag(beta) K K^T)

so with ``W = (I + A)^-1 diag(beta) K`` and ``U = (I + A)^-1 diag(beta) V`` (computed for all
chunks at once)::

    U' = U - W S,    O = Q S + tril(Q K^T) U',    S_next = S + K^T U'.

Only these three lines run chunk after chunk. With gating, ``gamma_i = prod_(j<=i) alpha_j``
inside the chunk: A and ``tril(Q K^T)`` are multiplied by ``gamma_i / gamma_j``, the rows of
W and of Q by ``gamma_i``, the state by ``gamma_C`` and the rows of K in the state update by
``gamma_C / gamma_i``; the log-decays are summed in float64 so that these ratios are exact
to float precision. Memory is O(T (D + C) + (T / C) D^2) per head: no T x T matrix.
``mode="parallel"`` is the same form with one chunk (C = T, T x T memory), for short
sequences; ``mode="recurrent"`` is the token loop, the reference.

**Safe numerics.** Each write multiplies the error on ``k_t`` by ``1 - beta_t |k_t|^2``, so
the recurrence is stable (no direction of S grows) exactly when
``0 <= beta_t |k_t|^2 <= 2``. The ops check this before computing and raise ``ValueError``
otherwise (the usual cause: unnormalised keys; pass ``key_norm="l2"``), rather than letting
the state blow up into NaN. beta must lie in [0, 2] (0 skips the write, values above 1 give
the negative eigenvalues of Grazzi et al. 2025), log-decays must be <= 0 (``-inf`` resets the
state), and a non-finite result raises as well. Under these conditions the triangular
systems are well posed: ``(I + A)`` is unit triangular and the U' it yields are the bounded
errors of a contracting recurrence.

Example:
    >>> import torch
    >>> from kvmem.ops import delta_rule
    >>> k = torch.eye(3).expand(1, 1, 3, 3)
    >>> v = torch.tensor([[[[1.0], [2.0], [3.0]]]])
    >>> o, state = delta_rule(k, k, v, 1.0)
    >>> state.flatten().tolist()
    [1.0, 2.0, 3.0]
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

from .. import features as _features
from .._checks import check_positive
from .linear_attention import (
    apply_features,
    check_finite_result,
    check_key_norm,
    check_mode,
    flatten_batch,
    pad_time,
    per_token,
    prepare_qkv,
    prepare_state,
)

# A log-decay this low already makes exp() zero in float64; flooring -inf there keeps the
# differences of cumulative log-decays finite (-inf - -inf would be NaN).
_LOG_DECAY_FLOOR = -1000.0


def delta_rule(
    q: Any,
    k: Any,
    v: Any,
    beta: Any,
    *,
    feature_map: Any = None,
    key_norm: str | None = None,
    initial_state: Any = None,
    mode: str = "chunk",
    chunk_size: int = 64,
    eps: float = 1e-6,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The delta rule: ``S_t = S_(t-1) + beta_t k_t^T (v_t - k_t S_(t-1))``, ``o_t = q_t S_t``.

    Args:
        q: queries ``[..., T, Dk]``.
        k: keys ``[..., T, Dk]``.
        v: values ``[..., T, Dv]``.
        beta: write strengths in [0, 2]: a number or a tensor broadcastable to ``[..., T]``.
        feature_map: spec of phi applied to q and k first (see :mod:`kvmem.features`); None
            is the identity.
        key_norm: None, ``"l2"`` or ``"sum"``: normalise phi(q) and phi(k) to unit L2 norm or
            unit sum. The delta rule needs ``beta_t |phi(k_t)|^2 <= 2``; ``"l2"`` guarantees it.
        initial_state: the state before the first token, ``[..., F, Dv]``; zeros when None.
        mode: ``"chunk"`` (chunkwise-parallel, WY form), ``"parallel"`` (one chunk, T x T
            memory) or ``"recurrent"`` (the token loop, the reference).
        chunk_size: C of the chunked form.
        eps: floor of the key normalisations.

    Returns:
        ``(o, final_state)``: o ``[..., T, Dv]`` in the input dtype, final_state
        ``[..., F, Dv]`` after the last token (float32 for half-precision inputs).

    Shapes:
        q, k ``[B, H, T, Dk]``, v ``[B, H, T, Dv]``, beta ``[B, H, T]`` -> o ``[B, H, T, Dv]``,
        state ``[B, H, F, Dv]`` with ``F = phi.out_dim(Dk)``.

    Raises:
        ValueError: mismatched shapes, non-finite inputs, beta outside [0, 2], an unstable
            write (``beta_t |phi(k_t)|^2 > 2``) or an overflowed result.
        TypeError: non-tensor inputs or mixed dtypes.

    Example:
        >>> import torch
        >>> from kvmem.ops import delta_rule
        >>> g = torch.Generator().manual_seed(0)
        >>> q, k, v = (torch.randn(2, 4, 100, 16, generator=g) for _ in range(3))
        >>> beta = torch.rand(2, 4, 100, generator=g)
        >>> o, s = delta_rule(q, k, v, beta, key_norm="l2", chunk_size=32)
        >>> o_ref, s_ref = delta_rule(q, k, v, beta, key_norm="l2", mode="recurrent")
        >>> bool(torch.allclose(o, o_ref, atol=1e-5)), s.shape
        (True, torch.Size([2, 4, 16, 16]))
    """
    return _run(q, k, v, beta, None, feature_map, key_norm, initial_state, mode, chunk_size, eps)


def gated_delta_rule(
    q: Any,
    k: Any,
    v: Any,
    beta: Any,
    log_decay: Any,
    *,
    feature_map: Any = None,
    key_norm: str | None = None,
    initial_state: Any = None,
    mode: str = "chunk",
    chunk_size: int = 64,
    eps: float = 1e-6,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The gated delta rule: decay by ``exp(g_t)``, then a delta-rule write.

    ``S_t = exp(g_t) S_(t-1) + beta_t k_t^T (v_t - exp(g_t) k_t S_(t-1))``, ``o_t = q_t S_t``.
    With ``log_decay = 0`` this is :func:`delta_rule`.

    Args:
        q, k, v, beta, feature_map, key_norm, initial_state, mode, chunk_size, eps: as in
            :func:`delta_rule`.
        log_decay: g_t <= 0, the log of the decay factor alpha_t in [0, 1]: a number or a
            tensor broadcastable to ``[..., T]``. ``-inf`` (alpha = 0) erases the state;
            values below -1000 act as -inf.

    Returns:
        ``(o, final_state)`` as in :func:`delta_rule`.

    Shapes:
        as :func:`delta_rule`, with log_decay ``[B, H, T]``.

    Raises:
        ValueError: as :func:`delta_rule`, or a log-decay that is positive or NaN.

    Example:
        >>> import torch
        >>> from kvmem.ops import gated_delta_rule
        >>> k = torch.eye(2).expand(1, 1, 2, 2)
        >>> v = torch.tensor([[[[1.0], [2.0]]]])
        >>> o, s = gated_delta_rule(k, k, v, 1.0, torch.log(torch.tensor(0.5)))
        >>> s.flatten().tolist()  # the first write has decayed once
        [0.5, 2.0]
    """
    return _run(q, k, v, beta, log_decay, feature_map, key_norm, initial_state, mode, chunk_size, eps)


def _run(q, k, v, beta, log_decay, feature_map, key_norm, initial_state, mode, chunk_size, eps):
    mode, chunk_size = check_mode(mode, chunk_size)
    key_norm = check_key_norm(key_norm)
    eps = check_positive(eps, "eps")
    phi = _features.get("identity" if feature_map is None else feature_map)
    q, k, v, out_dtype = prepare_qkv(q, k, v)
    fq = apply_features(q, phi, key_norm, eps, "q")
    fk = apply_features(k, phi, key_norm, eps, "k")
    beta = per_token(beta, "beta", k, "write strengths")
    _check_stable(fk, beta)
    g = None
    if log_decay is not None:
        g = per_token(log_decay, "log_decay", k, "log-decays")
        gd = g.detach()
        if bool(torch.isnan(gd).any()):
            raise ValueError("log_decay: contains NaN; expected log-decays g_t <= 0 (-inf resets the state)")
        if bool((gd > 0).any()):
            raise ValueError("log_decay: expected log-decays g_t <= 0 (decay factors exp(g_t) in [0, 1]), "
                             f"got up to {float(gd.max()):.4g}")
        g = g.clamp_min(_LOG_DECAY_FLOOR)
    batch, t = k.shape[:-2], k.shape[-2]
    f, dv = fk.shape[-1], v.shape[-1]
    s0 = prepare_state(initial_state, batch, f, dv, fk, "F x Dv")
    args = (flatten_batch(fq, 2), flatten_batch(fk, 2), flatten_batch(v, 2), beta.reshape(-1, t),
            None if g is None else g.reshape(-1, t), flatten_batch(s0, 2))
    if mode == "recurrent":
        o, s = _delta_recurrent(*args)
    else:
        o, s = _delta_chunk(*args, t if mode == "parallel" else chunk_size)
    o, s = o.reshape(*batch, t, dv), s.reshape(s0.shape)
    check_finite_result(o, s)
    return o.to(out_dtype), s


def _check_stable(fk: torch.Tensor, beta: torch.Tensor) -> None:
    """beta in [0, 2] and beta |k|^2 <= 2 at every token, else ValueError."""
    b = beta.detach()
    if not bool(((b >= 0) & (b <= 2)).all()):
        bad = b[~((b >= 0) & (b <= 2))][0]
        raise ValueError(f"beta: expected write strengths in [0, 2], got {float(bad):.4g}")
    step = b * torch.linalg.vector_norm(fk.detach(), dim=-1) ** 2
    # Keys normalised in float32 have |k|^2 = 1 up to a few ulps: allow that much over 2.
    limit = 2.0 * (1.0 + 64 * torch.finfo(fk.dtype).eps)
    if not bool((step <= limit).all()):
        raise ValueError(
            f"k: the delta rule needs beta_t |phi(k_t)|^2 <= 2 at every token (then each write contracts the "
            f"error on its key), got up to {float(step.max()):.4g}; normalise the keys (key_norm='l2') or "
            "lower beta")


def _delta_recurrent(q, k, v, beta, g, s):
    """The token loop: q, k ``[B, T, F]``, v ``[B, T, Dv]``, beta, g ``[B, T]``, state ``[B, F, Dv]``."""
    outs = []
    decay = None if g is None else torch.exp(g)
    for t in range(k.shape[1]):
        if decay is not None:
            s = s * decay[:, t, None, None]
        kt = k[:, t, None, :]
        err = (v[:, t, None, :] - torch.bmm(kt, s)) * beta[:, t, None, None]
        s = torch.baddbmm(s, kt.transpose(1, 2), err)
        outs.append(torch.bmm(q[:, t, None, :], s))
    return torch.cat(outs, dim=1), s


def _small_matmul(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Batched product of b x b matrices; below 16 x 16 a broadcast sum beats per-matrix GEMM calls."""
    if x.shape[-1] >= 16:
        return x @ y
    return (x.unsqueeze(-1) * y.unsqueeze(-3)).sum(-2)


def _lower_inverse_forward(a: torch.Tensor) -> torch.Tensor:
    """``(I + strictly_lower(a))^-1`` for a batch of C x C matrices (no autograd).

    Forward substitution a block at a time: the inverses of the diagonal blocks of size b
    are merged pairwise into those of size 2b with
    ``[[L11, 0], [L21, L22]]^-1 = [[X11, 0], [-X22 L21 X11, X22]]``, so log2(C) rounds of
    batched products replace C dependent row updates (and beat a batched triangular solve
    on CPU). C is padded to a power of two with identity rows.
    """
    c = a.shape[-1]
    size = 1 << max(c - 1, 0).bit_length()
    if size != c:
        a = F.pad(a, (0, size - c, 0, size - c))
    lead = a.shape[:-2]
    x = torch.zeros(*lead, size, size, dtype=a.dtype, device=a.device)
    x.diagonal(dim1=-2, dim2=-1).fill_(1.0)
    b = 1
    while b < size:
        m = size // (2 * b)

        def pairs(t):  # the m diagonal 2b x 2b blocks of t, as a view [..., m, 2b, 2b]
            return t.view(*lead, m, 2 * b, m, 2 * b).diagonal(dim1=-4, dim2=-2).movedim(-1, -3)

        xb, ab = pairs(x), pairs(a)
        xb[..., b:, :b] = -_small_matmul(xb[..., b:, b:], _small_matmul(ab[..., b:, :b], xb[..., :b, :b]))
        b *= 2
    return x[..., :c, :c]


class _UnitLowerInverse(torch.autograd.Function):
    """X = (I + strictly_lower(A))^-1 with the backward dA = -strictly_lower(X^T dX X^T)."""

    @staticmethod
    def forward(ctx, a):
        x = _lower_inverse_forward(a.detach())
        ctx.save_for_backward(x)
        return x

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad):
        (x,) = ctx.saved_tensors
        xt = x.transpose(-1, -2)
        return -(xt @ grad @ xt).tril(-1)


def _unit_lower_inverse(a: torch.Tensor) -> torch.Tensor:
    if torch.is_grad_enabled() and a.requires_grad:
        return _UnitLowerInverse.apply(a)
    return _lower_inverse_forward(a)


def _delta_chunk(q, k, v, beta, g, s, chunk):
    """Chunkwise-parallel (WY) form; see the module docstring for the derivation."""
    b, t, f = k.shape
    dv = v.shape[-1]
    chunk = min(chunk, t)
    q, k, v = pad_time(q, chunk, 1), pad_time(k, chunk, 1), pad_time(v, chunk, 1)
    beta = pad_time(beta, chunk, 1)  # beta = 0 on padding: nothing written
    n = k.shape[1] // chunk
    q, k, v = q.view(b, n, chunk, f), k.view(b, n, chunk, f), v.view(b, n, chunk, dv)
    beta = beta.view(b, n, chunk, 1)
    kb = k * beta
    a = kb @ k.transpose(-1, -2)  # only its strictly lower part is used
    qk = q @ k.transpose(-1, -2)
    last = None
    if g is not None:
        # gamma_i / gamma_j = exp(G_i - G_j) with G the within-chunk cumulative log-decay.
        cum = pad_time(g, chunk, 1).view(b, n, chunk).double().cumsum(-1)
        causal = torch.ones(chunk, chunk, dtype=torch.bool, device=k.device).tril()
        ratio = (cum.unsqueeze(-1) - cum.unsqueeze(-2)).masked_fill(~causal, float("-inf")).exp().to(k.dtype)
        gamma = cum.exp().to(k.dtype).unsqueeze(-1)  # [B, N, C, 1]
        a, qk = a * ratio, qk * ratio
        kb, q = kb * gamma, q * gamma
        k = k * (cum[..., -1:] - cum).exp().to(k.dtype).unsqueeze(-1)  # rows scaled by gamma_C / gamma_i
        last = cum[..., -1].exp().to(k.dtype)[..., None, None]  # gamma_C: [B, N, 1, 1]
    else:
        qk = qk.tril()
    tinv = _unit_lower_inverse(a)
    w, u = tinv @ kb, tinv @ (v * beta)
    kt = k.transpose(-1, -2)
    outs = []
    for i in range(n):
        err = torch.baddbmm(u[:, i], w[:, i], s, alpha=-1.0)  # U' = U - W S
        outs.append(torch.baddbmm(q[:, i] @ s, qk[:, i], err))  # O = Q S + tril(Q K^T) U'
        s = torch.baddbmm(s if last is None else s * last[:, i], kt[:, i], err)  # S + K^T U'
    return torch.cat(outs, 1)[:, :t], s
