"""Matrix memory: a correlation matrix / fast-weight memory M written by outer products."""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Iterator
from typing import Any, Literal

import torch

from .._checks import as_tensor, check_int, check_positive
from .. import features as _features
from .base import Memory, ReadResult, register_memory

RULES = ("hebbian", "delta", "decay")
KEY_NORMS = (None, "l2", "sum")

#: Pairs per step of the chunkwise delta rule inside a chunked write: each step costs two
#: [C, F] x [F, Dv] products and a C x C triangular solve, so C trades the length of the
#: sequential loop against the extra O(C) work per pair of the Gram matrices and solves.
DELTA_BLOCK = 64
#: The same on a GPU, where each step is a few kernel launches whatever its size: larger
#: blocks mean fewer sequential steps (measured on an H200: 10^6 pairs at D = 128 took
#: 1.03 s with blocks of 64, launch-bound).
DELTA_BLOCK_GPU = 512
#: Pairs per block of the compiled block loop (:mod:`kvmem.memory._matrix_numba`), which
#: pays no interpreter cost per block, so C only trades the efficiency of its products
#: against the O(C) extra work per pair (Gram matrices, forward substitution). 10^6 pairs
#: at D = 128 on 2 AMD EPYC cores, medians of 7 ratios to the GEMM bound: 2.25 at C = 32,
#: 2.42 at 48, 2.46 at 64 (the torch path: 7.1 in the same run).
DELTA_BLOCK_NUMBA = 32
#: Rows per matrix product of a chunked Hebbian write: phi^T V over a long chunk is summed
#: from batched [F, R] x [R, Dv] products, which BLAS runs faster than one product whose
#: inner dimension is the whole chunk.
HEBBIAN_BLOCK = 4096
#: A sequential step of the chunked delta rule with at most this many multiply-adds
#: (B C F Dv) runs on one thread: handing products that small to a thread pool costs more
#: than it saves, and on a busy machine each hand-over can wait for a descheduled thread
#: (a 10^6-pair write took minutes on 2 threads under load, a second on one).
SMALL_STEP = 1 << 21


@register_memory
class MatrixMemory(Memory):
    """Key-value memory compressed into one matrix M = sum_n phi(k_n)^T v_n (paper Eqs. 1-2).

    Reading is ``phi(q) M``: with the identity feature map this is Kohonen's correlation
    matrix memory, and it equals a :class:`SlotMemory` with kernel phi(q) . phi(k) and
    identity separation (the dual form, Eq. 3). Write rules:

    - ``"hebbian"``: M <- M + lr phi(k)^T v (Eq. 1). Order within a write does not matter.
    - ``"delta"`` (Widrow-Hoff; Schlag, Irie & Schmidhuber 2021):
      M <- M + beta phi(k)^T (v - phi(k) M), pair after pair in order. Each write makes the
      error on its own key (1 - beta |phi(k)|^2) times smaller, so beta |phi(k)|^2 must lie
      in (0, 2): a write that breaks this raises ``ValueError`` and leaves M unchanged. With
      unit keys and beta = 1 the latest pair is recalled exactly.
    - ``"decay"``: M <- decay M + lr phi(k)^T v, pair after pair (exponential forgetting).

    Args:
        key_dim: Dk, the dimension of keys and queries.
        value_dim: Dv, the dimension of values.
        feature_map: spec of phi (see :mod:`kvmem.features`), default identity.
        rule: ``"hebbian"``, ``"delta"`` or ``"decay"``.
        lr: learning rate of the Hebbian and decay rules, > 0.
        beta: write strength of the delta rule, in (0, 2).
        decay: forgetting factor of the decay rule, in (0, 1].
        key_norm: None, ``"l2"`` or ``"sum"``: normalise phi(k) and phi(q) to unit L2 norm or
            unit sum before use (``"sum"`` needs a non-negative feature map).
        normalize: divide each read by phi(q) . z with z = sum phi(k) (Katharopoulos et al.
            2020; hebbian and decay rules only). The denominator is clamped at ``eps``, so
            it assumes a non-negative feature map.
        eps: smallest denominator of the key and read normalisations.

    Shapes:
        write: keys ``[..., N, Dk]``, values ``[..., N, Dv]``; state M ``[..., F, Dv]``
        with F = ``phi.out_dim(Dk)``.
        read: queries ``[..., M, Dk]`` -> ``[..., M, Dv]``.

    Reading before the first write raises ``ValueError``.

    Long sequences of pairs: ``write(keys, values, chunk_size=C)`` computes features and
    updates one chunk of C pairs at a time, and :meth:`write_stream` takes the pairs as an
    iterable of blocks, so that they never need to be in memory at once. Both leave the
    same M as writing the pairs one by one (to rounding); the delta rule then runs in the
    chunkwise form of :mod:`kvmem.ops.delta_rule` (a triangular system per block of pairs)
    instead of its pair-by-pair loop.

    Example:
        >>> import torch, kvmem
        >>> mem = kvmem.MatrixMemory(3, 1, rule="delta", beta=1.0)
        >>> mem.write(torch.eye(3), torch.tensor([[1.0], [2.0], [3.0]]))
        >>> mem.read(torch.eye(3)).flatten().tolist()
        [1.0, 2.0, 3.0]
        >>> long = kvmem.MatrixMemory(3, 1, rule="delta", beta=1.0)
        >>> long.write(torch.eye(3), torch.tensor([[1.0], [2.0], [3.0]]), chunk_size=2)
        >>> torch.allclose(long.matrix, mem.matrix)
        True
    """

    _state_names = ("matrix", "normalizer", "writes")

    def __init__(
        self,
        key_dim: int,
        value_dim: int,
        feature_map: Any = "identity",
        rule: Literal["hebbian", "delta", "decay"] = "hebbian",
        lr: float = 1.0,
        beta: float = 1.0,
        decay: float = 0.9,
        key_norm: Literal["l2", "sum"] | None = None,
        normalize: bool = False,
        eps: float = 1e-6,
    ) -> None:
        super().__init__()
        self.key_dim = check_int(key_dim, "key_dim")
        self.value_dim = check_int(value_dim, "value_dim")
        self.feature_map = _features.get(feature_map)
        if rule not in RULES:
            raise ValueError(f"rule: expected one of {RULES}, got {rule!r}")
        self.rule = rule
        self.lr = check_positive(lr, "lr")
        self.beta = check_positive(beta, "beta")
        if rule == "delta" and not self.beta < 2.0:
            raise ValueError(f"beta: the delta rule needs beta in (0, 2), got {beta}")
        self.decay = check_positive(decay, "decay")
        if self.decay > 1.0:
            raise ValueError(f"decay: expected a forgetting factor in (0, 1], got {decay}")
        if key_norm not in KEY_NORMS:
            raise ValueError(f"key_norm: expected one of {KEY_NORMS}, got {key_norm!r}")
        self.key_norm = key_norm
        if normalize and rule == "delta":
            raise ValueError("normalize: the read normaliser is defined for the hebbian and decay rules only")
        self.normalize = bool(normalize)
        self.eps = check_positive(eps, "eps")

    @property
    def feature_dim(self) -> int:
        """F, the number of rows of M."""
        return self.feature_map.out_dim(self.key_dim)

    def config(self) -> dict[str, Any]:
        return {
            "key_dim": self.key_dim,
            "value_dim": self.value_dim,
            "feature_map": self.feature_map.spec(),
            "rule": self.rule,
            "lr": self.lr,
            "beta": self.beta,
            "decay": self.decay,
            "key_norm": self.key_norm,
            "normalize": self.normalize,
            "eps": self.eps,
        }

    def _batch_shape(self) -> torch.Size:
        return self.matrix.shape[:-2]

    def _key_dim(self) -> int:
        return self.key_dim

    def _required_state(self):
        return ("matrix", "normalizer", "writes")

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """phi(x), normalised as ``key_norm`` says: ``[..., Dk] -> [..., F]``."""
        f = self.feature_map(x)
        if self.key_norm == "l2":
            f = f / f.norm(dim=-1, keepdim=True).clamp_min(self.eps)
        elif self.key_norm == "sum":
            f = f / f.sum(dim=-1, keepdim=True).clamp_min(self.eps)
        return f

    # -- writing -------------------------------------------------------------------
    def write(self, keys: Any, values: Any, passes: int = 1, chunk_size: int | None = None) -> None:
        """Write the pairs in order, ``passes`` times over.

        Args:
            keys: ``[..., N, Dk]``.
            values: ``[..., N, Dv]``.
            passes: presentations of the whole sequence; repeated delta-rule passes converge
                to exact recall of linearly independent keys (the pseudo-inverse solution).
            chunk_size: None writes all N pairs at once (the delta rule pair by pair);
                an integer computes features and updates for ``chunk_size`` pairs at a time
                (extra memory O(chunk_size (F + Dv)) instead of O(N F)), the delta rule in
                its chunkwise form. The result equals the unchunked write to rounding.
                With ``passes > 1`` the passes run in turn (O(passes)), unlike the
                unchunked delta write's O(log passes) products.

        Raises:
            ValueError: bad shapes, non-finite entries, or a delta-rule write that would be
                unstable; the memory is unchanged after any error.
        """
        if chunk_size is not None:
            passes = check_int(passes, "passes")
            chunk_size = check_int(chunk_size, "chunk_size")
            # Entries are checked for finiteness chunk by chunk (see _stream_blocks).
            self._write_chunked([(keys, values)], passes, chunk_size, single=True)
            return
        keys, values = self._pairs(keys, values)
        passes = check_int(passes, "passes")
        if keys.shape[-1] != self.key_dim:
            raise ValueError(f"keys: expected shape [..., N, {self.key_dim}], got {tuple(keys.shape)}")
        if values.shape[-1] != self.value_dim:
            raise ValueError(f"values: expected shape [..., N, {self.value_dim}], got {tuple(values.shape)}")
        phi = self.features(keys)
        if self.is_empty:
            batch = keys.shape[:-2]
            matrix = keys.new_zeros(*batch, phi.shape[-1], self.value_dim)
            normalizer = keys.new_zeros(*batch, phi.shape[-1])
            writes = torch.zeros((), dtype=torch.long)
        else:
            matrix, normalizer, writes = self.matrix, self.normalizer, self.writes
        n = phi.shape[-2]
        if self.rule == "hebbian":
            matrix = matrix + passes * self.lr * (phi.transpose(-1, -2) @ values)
            normalizer = normalizer + passes * phi.sum(-2)
        elif self.rule == "decay":
            # M_N = d^N M_0 + lr sum_n d^(N-1-n) phi_n^T v_n, for each pass.
            w = self.decay ** torch.arange(n - 1, -1, -1, dtype=phi.dtype, device=phi.device)
            for _ in range(passes):
                matrix = self.decay**n * matrix + self.lr * ((phi * w[:, None]).transpose(-1, -2) @ values)
                normalizer = self.decay**n * normalizer + (phi * w[:, None]).sum(-2)
        else:
            step = self.beta * (phi * phi).sum(-1)
            if not bool((step < 2.0).all()):
                raise ValueError(
                    f"keys: the delta rule needs beta * |phi(k)|^2 < 2 for a stable write, got up to "
                    f"{float(step.max()):.4g}; use smaller keys, a smaller beta or key_norm='l2'"
                )
            if passes == 1:
                matrix = self._delta_pass(phi, values, matrix)
            else:
                matrix = self._delta_passes(phi, values, matrix, passes)
        if not bool(torch.isfinite(matrix).all()):
            raise ValueError("keys: the write overflowed to non-finite values; the memory is unchanged")
        self.matrix, self.normalizer = matrix, normalizer
        self.writes = writes + passes * n

    # -- chunked and streaming writes ------------------------------------------------
    def write_stream(self, pairs: Iterable[tuple[Any, Any]], chunk_size: int = 65536) -> int:
        """Write a long sequence of pairs that arrives in blocks, in order.

        The result is the state that one ``write`` of all the pairs, concatenated, would
        leave (to rounding): block boundaries do not matter. Only one chunk of features is
        held at a time, so the sequence can be longer than memory allows (a generator that
        reads from disk, for instance).

        Args:
            pairs: an iterable of ``(keys [..., n_i, Dk], values [..., n_i, Dv])`` blocks,
                every block with the same batch shape (the memory's, once it has one).
            chunk_size: pairs whose features and updates are computed at once.

        Returns:
            The number of pairs written (per memory of the batch).

        Raises:
            ValueError: as :meth:`write`, naming the block; the memory is unchanged after
                any error (the blocks consumed so far are not written).
            TypeError: ``pairs`` is not an iterable of pairs.

        Shapes:
            keys ``[..., n_i, Dk]``, values ``[..., n_i, Dv]`` for each block i.

        Example:
            >>> import torch, kvmem
            >>> g = torch.Generator().manual_seed(0)
            >>> k, v = torch.randn(1000, 8, generator=g), torch.randn(1000, 4, generator=g)
            >>> mem = kvmem.MatrixMemory(8, 4, rule="delta", beta=0.5, key_norm="l2")
            >>> mem.write_stream(((k[i:i + 100], v[i:i + 100]) for i in range(0, 1000, 100)), chunk_size=256)
            1000
            >>> ref = kvmem.MatrixMemory(8, 4, rule="delta", beta=0.5, key_norm="l2")
            >>> ref.write(k, v)
            >>> bool(torch.allclose(mem.matrix, ref.matrix, atol=1e-5))
            True
        """
        chunk_size = check_int(chunk_size, "chunk_size")
        try:
            blocks = iter(pairs)
        except TypeError:
            raise TypeError(f"pairs: expected an iterable of (keys, values) blocks, got {type(pairs).__name__}") from None
        return self._write_chunked(blocks, 1, chunk_size)

    def _stream_blocks(self, blocks: Iterable[Any], single: bool = False):
        """Check and yield (keys, values) blocks; the first one fixes dtype, device and batch.

        The finiteness of the entries is not checked here but chunk by chunk in
        :meth:`_write_block` (one pass over data that is read anyway, instead of a separate
        ``isfinite`` pass over all of it). ``single``: the blocks are one ``write`` call's
        pairs, so error messages name plain ``keys`` and ``values``.
        """
        ref = None if self.is_empty else self.matrix
        for i, block in enumerate(blocks):
            if not (isinstance(block, (tuple, list)) and len(block) == 2):
                raise TypeError(f"pairs: block {i} is not a (keys, values) pair, got {type(block).__name__}")
            tag = "" if single else f" (block {i})"
            keys = as_tensor(block[0], f"keys{tag}", min_rank=2, finite=False,
                             dtype=None if ref is None else ref.dtype, device=None if ref is None else ref.device)
            values = as_tensor(block[1], f"values{tag}", min_rank=2, dtype=keys.dtype, device=keys.device, finite=False)
            if keys.shape[-1] != self.key_dim:
                raise ValueError(f"keys{tag}: expected shape [..., N, {self.key_dim}], got {tuple(keys.shape)}")
            if values.shape[-1] != self.value_dim:
                raise ValueError(f"values{tag}: expected shape [..., N, {self.value_dim}], got {tuple(values.shape)}")
            if keys.shape[:-1] != values.shape[:-1]:
                raise ValueError(f"values{tag}: expected shape [..., N, Dv] with the keys' leading shape "
                                 f"{tuple(keys.shape[:-1])}, got {tuple(values.shape)}")
            if single and keys.shape[-2] == 0:
                raise ValueError(f"keys: expected at least one pair (N >= 1), got shape {tuple(keys.shape)}")
            if ref is not None and keys.shape[:-2] != ref.shape[:-2]:
                raise ValueError(f"keys{tag}: expected batch shape {tuple(ref.shape[:-2])} (fixed by the first "
                                 f"write), got shape {tuple(keys.shape)}")
            if ref is None:
                ref = keys.new_empty(*keys.shape[:-2], 0, 0)
            yield keys, values, tag

    def _write_chunked(self, blocks: Iterable[Any], passes: int, chunk: int, single: bool = False) -> int:
        """Write blocks of pairs in order, ``chunk`` pairs at a time; state is set only at the end."""
        matrix = normalizer = None
        if not self.is_empty:
            matrix, normalizer = self.matrix, self.normalizer
        n_total = 0
        seen = []  # the blocks again, for passes > 1 (write() gives a single block)
        for keys, values, tag in self._stream_blocks(blocks, single):
            if matrix is None:
                batch = keys.shape[:-2]
                matrix = keys.new_zeros(*batch, self.feature_dim, self.value_dim)
                normalizer = keys.new_zeros(*batch, self.feature_dim)
            if passes > 1:
                seen.append((keys, values, tag))
            n_total += keys.shape[-2]
            matrix, normalizer = self._write_block(keys, values, matrix, normalizer, chunk, passes, tag)
        if matrix is None:
            raise ValueError("pairs: expected at least one block of pairs, got none")
        if passes > 1 and self.rule != "hebbian":
            for _ in range(passes - 1):
                for keys, values, tag in seen:
                    matrix, normalizer = self._write_block(keys, values, matrix, normalizer, chunk, 1, tag)
        if not bool(torch.isfinite(matrix).all()):
            raise ValueError("keys: the write overflowed to non-finite values; the memory is unchanged")
        self.matrix, self.normalizer = matrix, normalizer
        self.writes = (torch.zeros((), dtype=torch.long) if self.writes is None else self.writes) + passes * n_total
        return n_total

    def _write_block(self, keys, values, matrix, normalizer, chunk, passes, tag=""):
        """One block of pairs, ``chunk`` at a time (Hebbian: ``passes`` presentations at once).

        Finiteness costs no extra pass over the data: a NaN or infinity in phi(k) or v always
        reaches the small state (IEEE gives 0 x inf = NaN), so only the state is tested after
        each chunk, and the chunk's entries only when that test fails (for the message).
        Keys are summed once per chunk when a feature map other than the identity could map
        a non-finite key to a finite feature (relu(-inf) = 0).
        """
        identity = isinstance(self.feature_map, _features.Identity)
        for start in range(0, keys.shape[-2], chunk):
            k = keys[..., start:start + chunk, :]
            v = values[..., start:start + chunk, :]
            if not identity:
                _check_finite(k, f"keys{tag}")
            phi = self.features(k)
            if self.rule == "hebbian":
                matrix = matrix + (passes * self.lr) * _outer_sum(phi, v)
                normalizer = normalizer + passes * phi.sum(-2)
            elif self.rule == "decay":
                n = phi.shape[-2]
                w = self.decay ** torch.arange(n - 1, -1, -1, dtype=phi.dtype, device=phi.device)
                matrix = self.decay**n * matrix + self.lr * _outer_sum(phi * w[:, None], v)
                normalizer = self.decay**n * normalizer + (phi * w[:, None]).sum(-2)
            else:
                matrix = self._delta_chunked(phi, v, matrix, k, tag)
            if not bool(torch.isfinite(matrix).all()):
                _check_finite(k, f"keys{tag}")
                _check_finite(v, f"values{tag}")
                raise ValueError("keys: the write overflowed to non-finite values; the memory is unchanged")
        return matrix, normalizer

    def _delta_chunked(self, phi: torch.Tensor, values: torch.Tensor, matrix: torch.Tensor,
                       keys: torch.Tensor | None = None, tag: str = "") -> torch.Tensor:
        """One delta-rule pass over a chunk, a block of C pairs at a time (the chunkwise form).

        For a block with keys K, values V and the state S entering it, the updates
        ``u_i = beta (v_i - k_i S_(i-1))`` solve the unit lower-triangular system of
        :mod:`kvmem.ops.delta_rule`::

            (I + A) U' = beta (V - K S),    A = strictly_lower(beta K K^T),    S <- S + K^T U'

        The Gram matrices of all blocks come from one batched product; block after block
        then costs two ``[C, F] x [F, Dv]`` products and one triangular solve. The op's
        chunked form inverts every ``I + A`` up front (its WY representation) and also
        computes per-token outputs, which a write does not need; for the state alone,
        solving inside the loop measured about twice as fast as either.
        """
        batch = phi.shape[:-2]
        n, f = phi.shape[-2:]
        dv = values.shape[-1]
        phi, values = phi.reshape(-1, n, f), values.reshape(-1, n, dv)
        b = phi.shape[0]
        s = matrix.reshape(-1, f, dv).clone()  # updated in place below; the caller's M stays as it is
        from . import _matrix_numba

        # The compiled block loop (_matrix_numba) when it applies: float32 on the CPU, a
        # chunk large enough to repay its compile; it takes the Gram matrices checked below.
        grad = torch.is_grad_enabled() and (phi.requires_grad or values.requires_grad or s.requires_grad)
        use_numba = _matrix_numba.delta_backend(s.device, s.dtype, n, f, dv, grad) == "numba" \
            and phi.dtype == values.dtype == s.dtype
        grams = []
        c = min(DELTA_BLOCK_NUMBA if use_numba else delta_block(s.device), n)
        full = n - n % c
        for lo, hi, size in ((0, full, c), (full, n, n - full)):
            if hi == lo:
                continue
            k = phi[:, lo:hi].reshape(b, -1, size, f)
            v = values[:, lo:hi].reshape(b, -1, size, dv)
            gram = k @ k.transpose(-1, -2)
            # |phi(k)|^2 is the Gram matrix's diagonal: the stability check costs no pass.
            step = self.beta * gram.diagonal(dim1=-2, dim2=-1)
            if not bool((step < 2.0).all()):
                if keys is not None:
                    _check_finite(keys, f"keys{tag}")
                raise ValueError(
                    f"keys: the delta rule needs beta * |phi(k)|^2 < 2 for a stable write, got up to "
                    f"{float(step.max()):.4g}; use smaller keys, a smaller beta or key_norm='l2'"
                )
            if use_numba:
                grams.append(gram.mul_(self.beta) if self.beta != 1.0 else gram)
                continue
            lower = gram.tril_(-1)
            if self.beta != 1.0:
                lower.mul_(self.beta)
            lower.diagonal(dim1=-2, dim2=-1).fill_(1.0)  # I + A
            kt = k.transpose(-1, -2)
            if b == 1:  # one memory: plain matrix products, cheaper to call than batched ones
                k, v, kt, lower, state = k[0], v[0], kt[0], lower[0], s[0]
                product, update = torch.addmm, state.addmm_
            else:
                state, product, update = s, torch.baddbmm, s.baddbmm_
            x = s.new_empty(*state.shape[:-2], size, dv)
            with _few_threads(s.device.type == "cpu" and b * size * f * dv <= SMALL_STEP):
                for i in range(k.shape[-3]):
                    product(v[..., i, :, :], k[..., i, :, :], state, alpha=-1.0, out=x)  # V - K S
                    if self.beta != 1.0:
                        x.mul_(self.beta)
                    err = torch.linalg.solve_triangular(lower[..., i, :, :], x, upper=False, unitriangular=True)
                    update(kt[..., i, :, :], err)  # S + K^T U'
        if use_numba:
            _matrix_numba.delta_blocks(phi, values, s, grams, self.beta)
        return s.reshape(*batch, f, dv)

    def _delta_pass(self, phi: torch.Tensor, values: torch.Tensor, matrix: torch.Tensor) -> torch.Tensor:
        """One delta-rule pass over the pairs in order (the plain recurrence)."""
        for k, v in zip(phi.unbind(-2), values.unbind(-2)):
            k = k.unsqueeze(-2)
            matrix = matrix + self.beta * (k.transpose(-1, -2) @ (v.unsqueeze(-2) - k @ matrix))
        return matrix

    def _delta_passes(self, phi: torch.Tensor, values: torch.Tensor, matrix: torch.Tensor, passes: int) -> torch.Tensor:
        """``passes`` delta-rule passes in O(log passes) matrix products.

        A pass is affine in M: pass(M) = A M + C with A = prod_j (I - beta phi_j^T phi_j).
        Running one pass on the augmented state [I | 0] gives [A | C]; then
        M_n = A^n M_0 + (I + A + ... + A^(n-1)) C, built by repeated squaring.
        Outside the span of the keys A is the identity, so rounding errors of C there are
        summed n times: the products run in float64, keeping that drift near n * 1e-16.
        """
        out_dtype = matrix.dtype
        phi, values, matrix = phi.double(), values.double(), matrix.double()
        f = phi.shape[-1]
        eye = torch.eye(f, dtype=phi.dtype, device=phi.device).expand(*matrix.shape[:-2], f, f)
        aug = torch.cat([eye, torch.zeros_like(matrix)], dim=-1)
        zero_v = torch.zeros(*values.shape[:-1], f, dtype=values.dtype, device=values.device)
        aug = self._delta_pass(phi, torch.cat([zero_v, values], dim=-1), aug)
        a, c = aug[..., :f], aug[..., f:]
        # (power, series) = (A^m, I + ... + A^(m-1)); result accumulates the set bits of n.
        power, series = a, eye.clone()
        res_power, res_series = eye.clone(), torch.zeros_like(eye)
        n = passes
        while n:
            if n & 1:
                res_series = res_series + res_power @ series
                res_power = res_power @ power
            n >>= 1
            if n:
                series = series + power @ series
                power = power @ power
        return (res_power @ matrix + res_series @ c).to(out_dtype)

    # -- reading -------------------------------------------------------------------
    def read(self, queries: Any, details: bool = False) -> torch.Tensor | ReadResult:
        """Retrieve phi(q) M (divided by phi(q) . z when ``normalize``).

        Args:
            queries: ``[..., M, Dk]``; leading dimensions broadcast to the batch shape.
            details: return a :class:`ReadResult` (``weights`` and ``scores`` are None: a
                matrix memory keeps no explicit keys).
        """
        queries = self._queries(queries)
        phi = self.features(queries)
        out = phi @ self.matrix
        if self.normalize:
            den = (phi * self.normalizer.unsqueeze(-2)).sum(-1, keepdim=True)
            out = out / den.clamp_min(self.eps)
        return ReadResult(out) if details else out


def delta_block(device: torch.device | str) -> int:
    """Pairs per sequential step of the chunked delta write on ``device`` (CPU: :data:`DELTA_BLOCK`)."""
    return DELTA_BLOCK if torch.device(device).type == "cpu" else DELTA_BLOCK_GPU


def _outer_sum(phi: torch.Tensor, values: torch.Tensor) -> torch.Tensor:
    """sum_n phi_n^T v_n = phi^T V ``[..., F, Dv]``, as a sum of batched products over rows
    on the CPU (see :data:`HEBBIAN_BLOCK`), one product elsewhere."""
    if phi.device.type != "cpu":
        return phi.transpose(-1, -2) @ values
    n, f = phi.shape[-2:]
    dv = values.shape[-1]
    r = HEBBIAN_BLOCK
    full = n - n % r
    out = None
    if full:
        pk = phi[..., :full, :].reshape(-1, r, f)
        pv = values[..., :full, :].reshape(-1, r, dv)
        out = torch.bmm(pk.transpose(1, 2), pv).view(*phi.shape[:-2], full // r, f, dv).sum(-3)
    if full < n:
        rest = phi[..., full:, :].transpose(-1, -2) @ values[..., full:, :]
        out = rest if out is None else out + rest
    return out


def _check_finite(x: torch.Tensor, name: str) -> None:
    """ValueError if ``x`` holds NaN or an infinity.

    A single sum decides in the usual case: any NaN or infinity makes it non-finite, and a
    finite sum means there is none. Only a non-finite sum (which finite entries can also
    give, by overflow) needs the elementwise test.
    """
    if x.numel() and not bool(torch.isfinite(x.sum())) and not bool(torch.isfinite(x).all()):
        raise ValueError(f"{name}: contains NaN or infinite values")


@contextlib.contextmanager
def _few_threads(enabled: bool) -> Iterator[None]:
    """torch on one intra-op thread inside the block when ``enabled``."""
    before = torch.get_num_threads()
    if not enabled or before == 1:
        yield
        return
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)
