"""Optional numba kernel for the synchronous Hebbian dynamics of ``ClassicalHopfield.retrieve``.

The numpy fast path :func:`kvmem.memory.hopfield._sync_hebbian` steps all moving states
together, so every step pays some 40 small array operations and a batched product whose
inner dimension is only P. Here the first overlaps come from one batched product and
everything else runs in one compiled loop per state, its field in a buffer that stays in
cache:

- the overlaps m_mu = xi_mu . s follow the flipped neurons (m_mu -= 2 s_j xi_mu,j, P
  operations per flip), and the field is rebuilt as h = X^T m - limit * s (P N per step);
  every quantity is an integer below P N < 2^24 in magnitude, so float32 sums are exact
  in any order and the signs, ties (sign(0) = +1) included, are those of the numpy path;
- a state stops when nothing flips (converged) or when a step flips exactly the neurons
  the step before flipped (x_t == x_(t-2): a 2-cycle for good, settled by the parity of
  the steps left), the conventions of ``_Hopfield._run_sync``.

Which path runs is :func:`sync_backend`'s choice: ``backend`` (initialised from the
environment variable ``KVMEM_HOPFIELD_BACKEND``) is ``"auto"`` (numba when importable and
the problem has at least ``MIN_WORK`` state entries, so that a small call never pays the
one-off compile), ``"numba"`` (whenever the exactness condition holds; ImportError without
numba) or ``"numpy"`` (never). numba is imported on first use only.

Example:
    >>> import torch
    >>> from kvmem.memory import _hopfield_numba as nb
    >>> nb.sync_backend(rows=10, p=3, n=8) in ("numba", "numpy")
    True
"""

from __future__ import annotations

import os

import numpy as np
import torch

BACKENDS = ("auto", "numba", "numpy")
#: Which synchronous Hebbian path ``retrieve`` takes: one of ``BACKENDS`` (see the module).
backend: str = os.environ.get("KVMEM_HOPFIELD_BACKEND", "auto")
#: Smallest number of state entries (rows x N) for which ``"auto"`` picks numba: below it
#: the numpy path takes a few milliseconds, less than loading or compiling the kernel.
MIN_WORK = 2**15

_kernel = None  # the compiled kernel once loaded
_load_error: BaseException | None = None  # why numba could not be used, once tried


def _build():
    import numba

    f32 = np.float32
    # Every value below is an integer under 2^24 in magnitude, so reassociated or fused
    # float32 sums are exact: the flags only let LLVM vectorise; nothing is approximated.
    jit = numba.njit(nogil=True, fastmath={"reassoc", "contract"})

    @jit
    def field(h, xc, over_r):  # pragma: no cover - compiled
        """h = X^T m for one state: patterns ``xc [P, N]``, overlaps ``over_r [P]``."""
        p, n = xc.shape
        for i in range(n):
            h[i] = f32(0.0)
        # Four patterns per pass over h: a quarter of the loads and stores of h per product.
        mu = 0
        while mu + 4 <= p:
            a0, a1, a2, a3 = over_r[mu], over_r[mu + 1], over_r[mu + 2], over_r[mu + 3]
            x0, x1, x2, x3 = xc[mu], xc[mu + 1], xc[mu + 2], xc[mu + 3]
            for i in range(n):
                h[i] += a0 * x0[i] + a1 * x1[i] + a2 * x2[i] + a3 * x3[i]
            mu += 4
        while mu < p:
            a0, x0 = over_r[mu], xc[mu]
            for i in range(n):
                h[i] += a0 * x0[i]
            mu += 1

    @jit
    def kernel(x, start, over, out, m, keep, has_keep, steps, limit, moved, done):  # pragma: no cover - compiled
        """Steps every row of ``start`` into ``out`` from its overlaps ``over`` (overwritten);
        returns (the last step any row ran, whether any row cycled)."""
        rows, n = out.shape
        p = x.shape[1]
        flips = np.empty(n, dtype=np.int64)
        before = np.empty(n, dtype=np.int64)
        h = np.empty(n, dtype=np.float32)
        run = 0
        cycled = False
        for r in range(rows):
            xc = x[r // m]
            s = out[r]
            s0 = start[r]
            for i in range(n):
                s[i] = s0[i]
            over_r = over[r]
            n_before = 0
            last = 0
            field(h, xc, over_r)
            for step in range(1, steps + 1):
                last = step
                # With q_i = s_i (X^T m)_i, neuron i wants to flip iff q_i < limit, or
                # q_i == limit (a zero field) and s_i = -1 (sign(0) = +1). Flips are rare: a
                # branch-free count first, the (ascending) list only when there are any.
                count = 0
                for i in range(n):
                    count += np.int32(s[i] * h[i] <= limit)
                nf = 0
                if count:
                    for i in range(n):
                        q = s[i] * h[i]
                        if q <= limit and (q < limit or s[i] < f32(0.0)):
                            if not (has_keep and keep[r, i]):
                                flips[nf] = i
                                nf += 1
                if nf == 0:
                    done[r] = True
                    moved[r] = step - 1
                    break
                if step > 1 and nf == n_before:
                    same = True
                    for k in range(nf):
                        if flips[k] != before[k]:
                            same = False
                            break
                    if same:
                        # This step undoes the last one (x_t == x_(t-2)): the state alternates
                        # for every step left, and the budget ends on this step's state if
                        # the steps left are even.
                        moved[r] = steps
                        cycled = True
                        if (steps - step) % 2 == 0:
                            for k in range(nf):
                                s[flips[k]] = -s[flips[k]]
                        break
                for k in range(nf):
                    j = flips[k]
                    two_s = f32(2.0) * s[j]
                    for mu in range(p):
                        over_r[mu] -= two_s * xc[mu, j]
                    s[j] = -s[j]
                    before[k] = j
                n_before = nf
                moved[r] = step
                if step == steps:
                    break
                field(h, xc, over_r)
            if last > run:
                run = last
        return run, cycled

    return kernel


def _load():
    """The compiled kernel, or None (numba missing or broken); tried once per process."""
    global _kernel, _load_error
    if _kernel is None and _load_error is None:
        try:
            _kernel = _build()
        except Exception as exc:  # ImportError, or a numba/numpy version mismatch
            _load_error = exc
    return _kernel


def sync_backend(rows: int, p: int, n: int) -> str:
    """``"numba"`` or ``"numpy"``: the path the synchronous Hebbian fast path takes for
    ``rows`` states of N neurons against P patterns per memory (float32-exact: P N < 2^24).

    Args:
        rows: number of states (all batch entries and cues).
        p: patterns per memory.
        n: neurons.

    Example:
        >>> sync_backend(0, 3, 8)
        'numpy'
    """
    if backend not in BACKENDS:
        raise ValueError(f"KVMEM_HOPFIELD_BACKEND / backend: expected one of {BACKENDS}, got {backend!r}")
    if backend == "numpy" or p * n >= 2**24 or rows == 0:
        return "numpy"
    if backend == "auto":
        return "numba" if rows * n >= MIN_WORK and _load() is not None else "numpy"
    if _load() is None:
        raise ImportError(f"backend 'numba' was asked for but numba cannot be used: {_load_error!r}")
    return "numba"


def sync_hebbian(x: torch.Tensor, s: torch.Tensor, m: int, keep: np.ndarray | None, steps: int,
                 zero_diagonal: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray, int]:
    """What :func:`kvmem.memory.hopfield._sync_hebbian` returns, computed by the numba kernel.

    Args:
        x: patterns ``[C, P, N]``, float32 (P N < 2^24), contiguous.
        s: start states ``[C * M, N]``, float32 (row r belongs to memory r // M); not modified.
        m: states per memory.
        keep: clamp mask ``[C * M, N]`` (bool, C-contiguous) or None.
        steps: the step budget.
        zero_diagonal: whether w_ii = 0.

    Returns:
        final states ``[C * M, N]`` (float32), steps moved, converged (numpy) and iterations.

    Example:
        >>> import torch
        >>> x = torch.tensor([[[1.0, 1.0]]])
        >>> s = torch.tensor([[1.0, -1.0], [1.0, 1.0]])
        >>> out, moved, done, it = sync_hebbian(x, s, 2, None, 3, True)
        >>> out.tolist(), moved.tolist(), done.tolist(), it
        ([[-1.0, 1.0], [1.0, 1.0]], [3, 0], [False, True], 3)
    """
    kernel = _load()
    if kernel is None:
        raise ImportError(f"numba cannot be used: {_load_error!r}")
    if x.dtype != torch.float32 or s.dtype != torch.float32:
        raise TypeError(f"x, s: expected float32 tensors, got {x.dtype} and {s.dtype}")
    c, p, n = x.shape
    rows = c * m
    moved = np.zeros(rows, dtype=np.int64)
    done = np.zeros(rows, dtype=bool)
    if rows == 0 or steps == 0:
        return s.numpy().copy(), moved, done, 0
    # The first overlaps by one batched product (BLAS); the fields come from them in the kernel.
    over = torch.bmm(s.view(c, m, n), x.transpose(1, 2)).view(rows, p).numpy()
    has_keep = keep is not None
    keep_arr = np.ascontiguousarray(keep, dtype=bool) if has_keep else np.zeros((1, 1), dtype=bool)
    limit = np.float32(p if zero_diagonal else 0)
    out = np.empty((rows, n), dtype=np.float32)
    run, cycled = kernel(x.numpy(), s.numpy(), over, out, m, keep_arr, has_keep, steps, limit, moved, done)
    return out, moved, done, (steps if cycled else int(run))
