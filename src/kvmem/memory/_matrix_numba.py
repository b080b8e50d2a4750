"""Optional numba kernel for the chunked delta-rule write of ``MatrixMemory``.

The torch path of :meth:`kvmem.memory.matrix.MatrixMemory._delta_chunked` runs three
Python-level operations per block of C pairs (``X = V - K S``, the unit lower-triangular
solve ``(I + A) U' = beta X``, ``S += K^T U'``), each a small product of a few
microseconds, on one thread: the interpreter's cost per operation and the hand-over to a
thread pool per product keep it far from the machine's GEMM rate. Here the block loop is
compiled: per block one ``sgemm`` for ``X``, the solve by forward substitution in the
loop itself, one ``sgemm`` for the update. The products take row-major arrays as their
column-major transposes, so nothing is copied but one block of values, and the loop runs
without the GIL on several threads at once.

The threads never hand over inside the loop because the delta rule is separable across
value columns: column j of ``S`` evolves as ``s_j <- s_j + beta k^T (v_j - k s_j)``, which
reads no other column. So each thread owns a slice of the columns of each memory (a
*task*) and runs its own sequential block loop on it, every BLAS call on one thread. The
Gram matrices of all blocks, and the stability check on their diagonals, come first from
one batched product in the caller, exactly as on the torch path.

BLAS: the MKL that torch's CPU library carries when it exports ``sgemm_`` (x86 Linux
wheels; checked against numpy on a small product when loaded), set to one thread in each
worker thread only (``MKL_Set_Num_Threads_Local``); otherwise scipy's BLAS (what numba's
own ``np.dot`` calls), limited to one thread through threadpoolctl while the kernel runs,
which is process-wide for that time. On a 2-core AMD EPYC the MKL products ran the whole
write about 1.3x faster than scipy's OpenBLAS. :data:`blas` names the one in use.

Which path runs is :func:`delta_backend`'s choice: ``backend`` (initialised from the
environment variable ``KVMEM_MATRIX_BACKEND``) is ``"auto"`` (numba when importable and
the chunk has at least :data:`MIN_WORK` multiply-adds per memory, N F Dv, so that small
writes never pay the one-off compile of a few seconds), ``"numba"`` (whenever the kernel
applies; ImportError without numba) or ``"torch"`` (never). The kernel applies to float32
tensors on the CPU outside autograd; anything else takes the torch path. numba is
imported on first use only.

Example:
    >>> from kvmem.memory import _matrix_numba as nb
    >>> nb.delta_backend("cpu", torch.float64, pairs=10**6, f=128, dv=128)
    'torch'
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import torch

BACKENDS = ("auto", "numba", "torch")
#: Which path the chunked delta write takes: one of ``BACKENDS`` (see the module).
backend: str = os.environ.get("KVMEM_MATRIX_BACKEND", "auto")
#: Smallest number of multiply-adds per memory (pairs x F x Dv of one chunk) for which
#: ``"auto"`` picks numba: 512 pairs at F = Dv = 128, about 3 ms on the torch path.
MIN_WORK = 1 << 23
#: Fewest value columns a task gets: narrower slices make each BLAS call too thin to pay.
MIN_COLUMNS = 16
#: The BLAS the kernel calls once loaded: ``"mkl (torch)"`` or ``"scipy"`` (see the module).
blas: str | None = None

_kernel = None  # the compiled kernel once loaded
_load_error: BaseException | None = None  # why numba could not be used, once tried
_lock = threading.Lock()
_pool: ThreadPoolExecutor | None = None
_pool_size = 0
_pool_pid = 0
_mkl_local = None  # MKL_Set_Num_Threads_Local when the BLAS is torch's MKL
_limit_blas = None  # threadpoolctl's limit(...) when it is scipy's

_GEMM = ctypes.CFUNCTYPE(None, *([ctypes.c_void_p] * 13))


def _torch_mkl():
    """(sgemm, MKL_Set_Num_Threads_Local) from torch's CPU library, or None."""
    try:
        lib = ctypes.CDLL(os.path.join(os.path.dirname(torch.__file__), "lib", "libtorch_cpu.so"))
        gemm = _GEMM(ctypes.cast(lib.sgemm_, ctypes.c_void_p).value)
        local = lib.MKL_Set_Num_Threads_Local
    except (OSError, AttributeError):
        return None
    local.restype, local.argtypes = ctypes.c_int, [ctypes.c_int]
    # A small product against numpy: the symbol must be a working Fortran sgemm. Integer
    # arguments are [value, 0] pairs of int32, which read the same as a 64-bit integer.
    a = np.arange(12, dtype=np.float32).reshape(3, 4) / 7
    b = np.arange(20, dtype=np.float32).reshape(4, 5) / 11
    out = np.zeros((3, 5), dtype=np.float32)

    def arg(x, dtype=np.int32):
        arr = np.array([x, 0] if dtype == np.int32 else [x], dtype=dtype)
        keep.append(arr)
        return arr.ctypes.data_as(ctypes.c_void_p)

    keep: list[np.ndarray] = []
    n_ = arg(ord("N"), np.uint8)
    gemm(n_, n_, arg(5), arg(3), arg(4), arg(1.0, np.float32), b.ctypes.data_as(ctypes.c_void_p), arg(5),
         a.ctypes.data_as(ctypes.c_void_p), arg(4), arg(0.0, np.float32), out.ctypes.data_as(ctypes.c_void_p), arg(5))
    if not np.allclose(out, a @ b, rtol=1e-5, atol=1e-6):
        return None
    return gemm, local


def _build():
    global blas, _mkl_local, _limit_blas
    import numba

    mkl = _torch_mkl()
    if mkl is not None:
        sgemm, _mkl_local = mkl
        blas = "mkl (torch)"
    else:
        from numba.extending import get_cython_function_address
        from threadpoolctl import ThreadpoolController

        sgemm = _GEMM(get_cython_function_address("scipy.linalg.cython_blas", "sgemm"))
        controller = ThreadpoolController()
        _limit_blas = lambda: controller.limit(limits=1, user_api="blas")  # noqa: E731
        blas = "scipy"

    # fastmath "contract" only fuses the forward substitution's multiply-subtract into an FMA.
    sig = "void(f4[:, ::1], f4[:, ::1], f4[:, ::1], f4[:, :, ::1], f4[:, ::1], i8, i8, f4)"

    @numba.njit(sig, nogil=True, fastmath={"contract"})
    def kernel(k, v, s, gram, tail, lo, hi, beta):  # pragma: no cover - compiled
        """Delta rule on columns ``lo:hi`` of ``s``, block after block, in place.

        k ``[N, F]``, v ``[N, Dv]``, s ``[F, Dv]``, all C-contiguous float32; gram
        ``[N // C, C, C]`` holds beta K K^T of each full block and tail ``[r, r]`` that of
        the last r = N mod C pairs (only the strictly lower triangles are read).
        """
        n, f = k.shape
        dv = v.shape[1]
        c = gram.shape[1]
        w = hi - lo
        x = np.empty((c, w), dtype=np.float32)
        # A row-major [r, q] array is, to BLAS, the column-major [q, r] array: its transpose.
        # So both products are written for the transposes: X^T = V^T - S^T K^T and
        # S^T += U'^T K. Integers go as [value, 0] int32 pairs (see _torch_mkl).
        ch_n = np.array([ord("N")], dtype=np.uint8)
        ch_t = np.array([ord("T")], dtype=np.uint8)
        n_w = np.array([w, 0], dtype=np.int32)
        n_f = np.array([f, 0], dtype=np.int32)
        n_dv = np.array([dv, 0], dtype=np.int32)
        size = np.array([c, 0], dtype=np.int32)
        minus_one = np.array([-1.0], dtype=np.float32)
        one = np.array([1.0], dtype=np.float32)
        s_cols = s[:, lo:]
        nblocks = gram.shape[0]
        r = n - nblocks * c
        for b in range(nblocks + (1 if r > 0 else 0)):
            r0 = b * c
            g = gram[b] if b < nblocks else tail
            m = c if b < nblocks else r
            size[0] = m
            for i in range(m):
                for j in range(w):
                    x[i, j] = v[r0 + i, lo + j]
            kb = k[r0:]
            sgemm(ch_n.ctypes, ch_n.ctypes, n_w.ctypes, size.ctypes, n_f.ctypes, minus_one.ctypes,
                  s_cols.ctypes, n_dv.ctypes, kb.ctypes, n_f.ctypes, one.ctypes, x.ctypes, n_w.ctypes)
            # (I + A) U' = beta X row by row: u_i = beta x_i - sum_(j<i) A_ij u_j, A = beta G.
            for i in range(m):
                for q in range(w):
                    x[i, q] *= beta
                for j in range(i):
                    a = g[i, j]
                    for q in range(w):
                        x[i, q] -= a * x[j, q]
            sgemm(ch_n.ctypes, ch_t.ctypes, n_w.ctypes, n_f.ctypes, size.ctypes, one.ctypes,
                  x.ctypes, n_w.ctypes, kb.ctypes, n_f.ctypes, one.ctypes, s_cols.ctypes, n_dv.ctypes)

    return kernel


def _load():
    """The compiled kernel, or None (numba, a BLAS or threadpoolctl missing or broken);
    tried once per process. Compiling takes a few seconds."""
    global _kernel, _load_error
    with _lock:
        if _kernel is None and _load_error is None:
            try:
                _kernel = _build()
            except Exception as exc:  # ImportError, or a numba/numpy/scipy version mismatch
                _load_error = exc
    return _kernel


def applies(device: torch.device | str, dtype: torch.dtype, requires_grad: bool = False) -> bool:
    """Whether the kernel can run a write of this device, dtype and autograd state."""
    return torch.device(device).type == "cpu" and dtype == torch.float32 and not requires_grad


def delta_backend(device: torch.device | str, dtype: torch.dtype, pairs: int, f: int, dv: int,
                  requires_grad: bool = False) -> str:
    """``"numba"`` or ``"torch"``: the path a chunked delta write of ``pairs`` pairs per
    memory (F features, Dv value columns) takes.

    Args:
        device: the tensors' device.
        dtype: the tensors' dtype (the kernel runs float32 only).
        pairs: pairs of the chunk.
        f: F, rows of the state.
        dv: Dv, columns of the state.
        requires_grad: whether autograd records the write (then torch).

    Example:
        >>> delta_backend("cpu", torch.float32, pairs=1, f=3, dv=1)
        'torch'
    """
    if backend not in BACKENDS:
        raise ValueError(f"KVMEM_MATRIX_BACKEND / backend: expected one of {BACKENDS}, got {backend!r}")
    if backend == "torch" or pairs == 0 or not applies(device, dtype, requires_grad):
        return "torch"
    if backend == "auto":
        return "numba" if pairs * f * dv >= MIN_WORK and _load() is not None else "torch"
    if _load() is None:
        raise ImportError(f"backend 'numba' was asked for but the kernel cannot be used: {_load_error!r}")
    return "numba"


def _tasks(b: int, dv: int, threads: int) -> list[tuple[int, int, int]]:
    """(memory, first column, end column) slices: at least ``threads`` of them when the
    columns allow, each a multiple of 16 columns wide but the last (64-byte cache lines,
    so that two threads never write the same line of S)."""
    splits = max(1, min(-(-threads // b), dv // MIN_COLUMNS))
    bounds = sorted({min(dv, round(dv * j / splits / 16) * 16) for j in range(splits)} | {dv})
    return [(m, lo, hi) for m in range(b) for lo, hi in zip(bounds[:-1], bounds[1:]) if hi > lo]


def _executor(workers: int) -> ThreadPoolExecutor:
    """A pool of at least ``workers`` threads, made again in a forked child (whose copy
    of the parent's pool has no threads and would never run a task)."""
    global _pool, _pool_size, _pool_pid
    with _lock:
        if _pool is None or _pool_size < workers or _pool_pid != os.getpid():
            if _pool is not None and _pool_pid == os.getpid():
                _pool.shutdown(wait=False)
            _pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="kvmem-delta")
            _pool_size, _pool_pid = workers, os.getpid()
        return _pool


def delta_blocks(phi: torch.Tensor, values: torch.Tensor, state: torch.Tensor, grams: list[torch.Tensor],
                 beta: float) -> None:
    """The block loop of the chunked delta write, in place on ``state``.

    Args:
        phi: features ``[B, N, F]`` float32.
        values: ``[B, N, Dv]`` float32.
        state: S ``[B, F, Dv]`` float32, contiguous; overwritten with the state after the N pairs.
        grams: beta K K^T per block: ``[B, N // C, C, C]`` for the full blocks, then (when C
            does not divide N) ``[B, 1, r, r]`` for the last r pairs; only the strictly lower
            triangles are read.
        beta: the write strength.

    Example:
        >>> k, v = torch.eye(3)[None], torch.tensor([[[1.0], [2.0], [3.0]]])
        >>> s = torch.zeros(1, 3, 1)
        >>> if _load() is not None:  # numba installed
        ...     delta_blocks(k, v, s, [(k @ k.transpose(-1, -2))[:, None]], 1.0)
        ... else:  # what the torch path leaves: orthonormal keys, beta = 1
        ...     s = v.clone()
        >>> s.flatten().tolist()
        [1.0, 2.0, 3.0]
    """
    kernel = _load()
    if kernel is None:
        raise ImportError(f"numba cannot be used: {_load_error!r}")
    b, n, f = phi.shape
    dv = values.shape[-1]
    # detach: tensors that require grad but are written under no_grad (autograd itself
    # takes the torch path); the state keeps its storage, so it is still updated in place.
    k = phi.detach().contiguous().numpy()
    v = values.detach().contiguous().numpy()
    s = state.detach().numpy()
    full = grams[0].detach().contiguous().numpy()
    if len(grams) == 2:
        tail = grams[1].detach().contiguous().numpy()[:, 0]
    else:
        tail = np.zeros((b, 0, 0), dtype=np.float32)
    threads = max(1, torch.get_num_threads())
    tasks = _tasks(b, dv, threads)
    workers = min(threads, len(tasks))
    beta = np.float32(beta)

    def run(mine):
        # MKL's thread count is set per calling thread: one here, the caller's back after.
        prev = _mkl_local(1) if _mkl_local is not None else None
        try:
            for m, lo, hi in mine:
                kernel(k[m], v[m], s[m], full[m], tail[m], lo, hi, beta)
        finally:
            if prev is not None:
                _mkl_local(prev)

    with _limit_blas() if _limit_blas is not None else contextlib.nullcontext():
        if workers == 1:
            run(tasks)
            return
        pool = _executor(workers - 1)
        futures = [pool.submit(run, tasks[t::workers]) for t in range(1, workers)]
        try:
            run(tasks[0::workers])
        finally:
            for fut in futures:
                fut.result()
