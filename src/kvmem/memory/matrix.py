"""Matrix memory: a correlation matrix / fast-weight memory M written by outer products."""

from __future__ import annotations

from typing import Any, Literal

import torch

from .._checks import check_int, check_positive
from .. import features as _features
from .base import Memory, ReadResult, register_memory

RULES = ("hebbian", "delta", "decay")
KEY_NORMS = (None, "l2", "sum")


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

    Example:
        >>> import torch, kvmem
        >>> mem = kvmem.MatrixMemory(3, 1, rule="delta", beta=1.0)
        >>> mem.write(torch.eye(3), torch.tensor([[1.0], [2.0], [3.0]]))
        >>> mem.read(torch.eye(3)).flatten().tolist()
        [1.0, 2.0, 3.0]
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
    def write(self, keys: Any, values: Any, passes: int = 1) -> None:
        """Write the pairs in order, ``passes`` times over.

        Args:
            keys: ``[..., N, Dk]``.
            values: ``[..., N, Dv]``.
            passes: presentations of the whole sequence; repeated delta-rule passes converge
                to exact recall of linearly independent keys (the pseudo-inverse solution).

        Raises:
            ValueError: bad shapes, non-finite entries, or a delta-rule write that would be
                unstable; the memory is unchanged after any error.
        """
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
