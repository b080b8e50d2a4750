"""Neuron-astrocyte attention (Kozachkov, Kastanenka & Krotov 2023, PNAS 120:e2219150120).

A three-layer network in which an astrocyte turns Hebbian key-value storage into softmax
attention. Input neurons carry a key (while writing) or a query (while reading); m hidden
neurons respond with a fixed nonlinear random expansion phi; the hidden-to-output synapses
are tripartite: each is contacted by a process of one astrocyte.

- Writing (one pair k_t, v_t per step): Hebbian plasticity with the output clamped to the
  value, H <- H + phi(k_t)^T v_t, and each astrocyte process j integrates the activity of
  its presynaptic hidden neuron, g_j <- g_j + phi_j(k_t).
- Reading (query q): process j responds linearly to its hidden neuron, a_j = g_j phi_j(q);
  the astrocyte sums its processes, p(q) = sum_j a_j = phi(q) . sum_t phi(k_t), and
  modulates every hidden-to-output synapse multiplicatively by 1/p. The output is

      y(q) = phi(q) H / p(q) = sum_t kappa(q, k_t) v_t / sum_t kappa(q, k_t),
      kappa(q, k) = phi(q) . phi(k).

With the positive random features of Choromanski et al. (2021),
phi_j(x) = exp(w_j . x - |x|^2 / 2) / sqrt(m) with w_j ~ N(0, I), the kernel is unbiased,
E[kappa(q, k)] = exp(q . k), so as m -> infinity the astrocyte response p(q) becomes the
softmax normaliser sum_t exp(beta q . k_t) and y(q) becomes softmax attention. This is the
limit the paper states (its code: "our Neuron-Astrocyte network is equivalent to a linear
Transformer with random feature attention"; it compares m = 10^3 and 10^5 against the
softmax normalisation of a pretrained ViT and ALBERT). For finite m, sharp attention (large
beta |q| |k|) or another feature map, the network departs from softmax attention;
:func:`departure_table` measures by how much.

Example:
    >>> import torch, kvmem
    >>> from kvmem.bio.astrocyte import NeuronAstrocyteAttention
    >>> gen = torch.Generator().manual_seed(0)
    >>> k, v, q = (torch.randn(8, 4, generator=gen, dtype=torch.float64) for _ in range(3))
    >>> k, q = k / k.norm(dim=-1, keepdim=True), q / q.norm(dim=-1, keepdim=True)
    >>> net = NeuronAstrocyteAttention(num_hidden=2**16)     # beta = 1/sqrt(4)
    >>> net.write(k, v)
    >>> attention = kvmem.SlotMemory(similarity="scaled_dot", separation="softmax")
    >>> attention.write(k, v)
    >>> bool((net.read(q) - attention.read(q)).abs().max() < 0.01)
    True
"""

from __future__ import annotations

import math
from typing import Any, Literal

import torch

from .._checks import as_tensor, check_int, check_positive
from ..memory.base import Memory, ReadResult, register_memory

__all__ = ["FEATURES", "NeuronAstrocyteAttention", "compare_with_softmax", "departure_table"]

#: Hidden-layer nonlinearities: positive (exponential) or trigonometric random features.
FEATURES = ("positive", "cosine")


@register_memory
class NeuronAstrocyteAttention(Memory):
    """Hebbian hidden-to-output synapses modulated by an astrocyte: random-feature attention.

    Hidden activity for an input x (key or query), with z = sqrt(beta) x, fixed input-to-hidden
    weights W ~ N(0, 1) of shape [m, Dk] and, for cosine features, offsets b ~ U[0, 2 pi):

        positive:  phi(x) = exp(W z - |z|^2 / 2) / sqrt(m)
        cosine:    phi(x) = sqrt(2 / m) cos(W z + b) exp(|z|^2 / 2)

    Both give E[phi(q) . phi(k)] = exp(beta q . k). Writing: H += phi(K)^T V (Hebbian),
    g += sum_t phi(k_t) (astrocyte processes). Reading: a = g * phi(q) (one linear process per
    hidden neuron), p = sum_j a_j (astrocyte response), y = phi(q) H / p (synapses scaled by
    1/p). Positive features keep p > 0; cosine features can make p vanish or change sign,
    which the read does not guard against (it is one of the departures from softmax).

    Args:
        num_hidden: m, the number of hidden neurons (random features).
        features: ``"positive"`` (the paper's default) or ``"cosine"``.
        beta: inverse temperature of the kernel exp(beta q . k); None for 1/sqrt(Dk), the
            transformer's scaling (then the m -> infinity limit is
            ``SlotMemory(similarity="scaled_dot", separation="softmax")``).
        seed: seed of the input-to-hidden weights.

    Shapes:
        write: keys ``[..., N, Dk]``, values ``[..., N, Dv]``; state H ``[..., m, Dv]``,
        g ``[..., m]``, W ``[m, Dk]`` (shared by the batch), b ``[m]``.
        read: queries ``[..., M, Dk]`` -> ``[..., M, Dv]``; ``details=True`` returns a
        :class:`~kvmem.memory.base.ReadResult` without weights or scores (the network keeps
        no explicit keys).

    Example:
        >>> import torch
        >>> net = NeuronAstrocyteAttention(num_hidden=64, seed=3)
        >>> net.write(torch.zeros(2, 5), torch.tensor([[1.0], [3.0]]))
        >>> net.read(torch.zeros(1, 5))    # equal similarity to both keys: their mean
        tensor([[2.]])
    """

    _state_names = ("synapses", "astrocyte", "projection", "offset")

    def __init__(
        self,
        num_hidden: int = 256,
        features: Literal["positive", "cosine"] = "positive",
        beta: float | None = None,
        seed: int = 0,
    ) -> None:
        super().__init__()
        self.num_hidden = check_int(num_hidden, "num_hidden", minimum=1)
        if features not in FEATURES:
            raise ValueError(f"features: expected one of {FEATURES}, got {features!r}")
        self.features = features
        self.beta = None if beta is None else check_positive(beta, "beta")
        self.seed = check_int(seed, "seed", minimum=0)

    def config(self) -> dict[str, Any]:
        return {"num_hidden": self.num_hidden, "features": self.features, "beta": self.beta, "seed": self.seed}

    def _batch_shape(self) -> torch.Size:
        return self.astrocyte.shape[:-1]

    def _key_dim(self) -> int:
        return self.projection.shape[-1]

    def _required_state(self):
        return ("synapses", "astrocyte", "projection") + (("offset",) if self.features == "cosine" else ())

    @property
    def inverse_temperature(self) -> float:
        """beta of the kernel exp(beta q . k) once the key dimension is known."""
        if self.projection is None:
            raise ValueError(f"{type(self).__name__} is empty: the key dimension is set by the first write")
        return self.beta if self.beta is not None else 1.0 / math.sqrt(self._key_dim())

    # -- the hidden layer ------------------------------------------------------------
    def _draw(self, dim: int, dtype: torch.dtype, device: torch.device) -> None:
        gen = torch.Generator().manual_seed(self.seed)
        # Drawn in float64 so that the weights are the same whatever the working dtype.
        w = torch.randn(self.num_hidden, dim, generator=gen, dtype=torch.float64)
        self.projection = w.to(dtype=dtype, device=device)
        if self.features == "cosine":
            b = torch.rand(self.num_hidden, generator=gen, dtype=torch.float64) * (2.0 * math.pi)
            self.offset = b.to(dtype=dtype, device=device)

    def hidden(self, inputs: Any) -> torch.Tensor:
        """Hidden-neuron activity phi(x) for keys or queries ``[..., M, Dk]`` -> ``[..., M, m]``."""
        x = self._queries(inputs, "inputs")
        return self._phi(x)

    def _phi(self, x: torch.Tensor) -> torch.Tensor:
        z = x * math.sqrt(self.inverse_temperature)
        half_sq = 0.5 * (z * z).sum(-1, keepdim=True)
        drive = z @ self.projection.T
        if self.features == "positive":
            return torch.exp(drive - half_sq - 0.5 * math.log(self.num_hidden))
        return torch.cos(drive + self.offset) * torch.exp(half_sq) * math.sqrt(2.0 / self.num_hidden)

    # -- writing -------------------------------------------------------------------
    def write(self, keys: Any, values: Any) -> None:
        """Store pairs: Hebbian hidden-to-output updates, astrocyte processes integrate.

        Args:
            keys: ``[..., N, Dk]``.
            values: ``[..., N, Dv]`` (the clamped output).
        """
        keys, values = self._pairs(keys, values)
        if self.is_empty:
            self._draw(keys.shape[-1], keys.dtype, keys.device)
            batch = keys.shape[:-2]
            self.synapses = keys.new_zeros(*batch, self.num_hidden, values.shape[-1])
            self.astrocyte = keys.new_zeros(*batch, self.num_hidden)
        else:
            if keys.shape[-1] != self._key_dim():
                raise ValueError(
                    f"keys: expected last dimension {self._key_dim()} (as stored), got shape {tuple(keys.shape)}"
                )
            if values.shape[-1] != self.synapses.shape[-1]:
                raise ValueError(
                    f"values: expected last dimension {self.synapses.shape[-1]} (as stored), "
                    f"got shape {tuple(values.shape)}"
                )
        h = self._phi(keys)
        self.synapses = self.synapses + h.transpose(-1, -2) @ values
        self.astrocyte = self.astrocyte + h.sum(-2)

    # -- reading -------------------------------------------------------------------
    def processes(self, queries: Any) -> torch.Tensor:
        """Activation of every astrocyte process, a_j = g_j phi_j(q): ``[..., M, m]``."""
        return self._phi(self._queries(queries)) * self.astrocyte.unsqueeze(-2)

    def astrocyte_response(self, queries: Any) -> torch.Tensor:
        """The astrocyte's integrated response p(q) = sum_j a_j: ``[..., M]``.

        As m -> infinity (positive features) it tends to sum_t exp(beta q . k_t), the
        softmax normaliser.
        """
        return self.processes(queries).sum(-1)

    def read(self, queries: Any, details: bool = False) -> torch.Tensor | ReadResult:
        """Output y = phi(q) H / p(q): Hebbian synapses scaled by the astrocyte.

        Args:
            queries: ``[..., M, Dk]``; leading dimensions broadcast to the batch shape.
            details: return a :class:`~kvmem.memory.base.ReadResult` (values only).

        Returns:
            ``[..., M, Dv]``.
        """
        h = self._phi(self._queries(queries))
        p = (h * self.astrocyte.unsqueeze(-2)).sum(-1, keepdim=True)
        out = (h @ self.synapses) / p
        return ReadResult(out) if details else out


def compare_with_softmax(
    keys: Any,
    values: Any,
    queries: Any,
    *,
    num_hidden: int,
    features: str = "positive",
    beta: float | None = None,
    seed: int = 0,
) -> dict[str, float]:
    """How far one neuron-astrocyte network is from exact softmax attention on given data.

    The reference is softmax(beta q . K) V with the network's beta, computed in float64.

    Args:
        keys, values, queries: ``[N, Dk]``, ``[N, Dv]``, ``[M, Dk]`` (or batched alike).
        num_hidden, features, beta, seed: the network's settings.

    Returns:
        ``normalizer_error``: mean over queries of |p(q) / Z(q) - 1|, Z the softmax normaliser;
        ``output_error``: |Y - Y_softmax|_F / |Y_softmax|_F;
        ``nonpositive``: fraction of queries with p(q) <= 0 (possible with cosine features).

    Example:
        >>> import torch
        >>> gen = torch.Generator().manual_seed(0)
        >>> k, v, q = (torch.randn(n, d, generator=gen) for n, d in ((8, 4), (8, 2), (5, 4)))
        >>> far = compare_with_softmax(k, v, q, num_hidden=16)
        >>> near = compare_with_softmax(k, v, q, num_hidden=16384)
        >>> near["output_error"] < far["output_error"]
        True
    """
    keys = as_tensor(keys, "keys", min_rank=2, dtype=torch.float64)
    values = as_tensor(values, "values", min_rank=2, dtype=torch.float64)
    queries = as_tensor(queries, "queries", min_rank=2, dtype=torch.float64)
    net = NeuronAstrocyteAttention(num_hidden=num_hidden, features=features, beta=beta, seed=seed)  # type: ignore
    net.write(keys, values)
    b = net.inverse_temperature
    scores = b * (queries @ keys.transpose(-1, -2))
    log_z = torch.logsumexp(scores, dim=-1)
    exact = torch.softmax(scores, dim=-1) @ values
    # One pass through the hidden layer gives both the astrocyte response and the output.
    h = net._phi(net._queries(queries))
    p = (h * net.astrocyte.unsqueeze(-2)).sum(-1)
    out = (h @ net.synapses) / p.unsqueeze(-1)
    return {
        "normalizer_error": float((p * torch.exp(-log_z) - 1.0).abs().mean()),
        "output_error": float((out - exact).norm() / exact.norm()),
        "nonpositive": float((p <= 0).double().mean()),
    }


def departure_table(
    num_hidden: Any = (16, 64, 256, 1024, 4096, 16384),
    betas: Any = (1.0, 2.0, 4.0, 8.0),
    features: Any = FEATURES,
    *,
    dim: int = 16,
    num_pairs: int = 32,
    num_queries: int = 64,
    seeds: int = 5,
) -> list[dict[str, Any]]:
    """Departure of the network from softmax attention over m, attention sharpness and phi.

    For each seed, draws unit-norm keys and queries (directions uniform on the sphere in
    ``dim`` dimensions) and N(0, I) values, so the scores beta q . k lie in [-beta, beta]
    and beta alone sets how sharp the attention is. Each row averages
    :func:`compare_with_softmax` over the seeds (data and network weights change with the
    seed).

    Args:
        num_hidden: the values of m.
        betas: inverse temperatures, > 0.
        features: feature maps to compare (names in :data:`FEATURES`).
        dim, num_pairs, num_queries: data size.
        seeds: number of seeds (0 .. seeds - 1).

    Returns:
        rows ``{"features", "num_hidden", "beta", "normalizer_error", "output_error",
        "output_error_sd", "nonpositive"}``, one per combination, in loop order
        features > num_hidden > beta.

    Example:
        >>> rows = departure_table(num_hidden=[64], betas=[1.0], features=["positive"], seeds=2)
        >>> sorted(rows[0])
        ['beta', 'features', 'nonpositive', 'normalizer_error', 'num_hidden', 'output_error', 'output_error_sd']
    """
    ms = [check_int(m, "num_hidden") for m in _as_list(num_hidden)]
    bs = [check_positive(b, "betas") for b in _as_list(betas)]
    feats = _as_list(features)
    for f in feats:
        if f not in FEATURES:
            raise ValueError(f"features: expected names from {FEATURES}, got {f!r}")
    if not ms or not bs or not feats:
        raise ValueError("num_hidden, betas, features: expected at least one value each")
    dim, num_pairs, num_queries = (
        check_int(v, n) for v, n in ((dim, "dim"), (num_pairs, "num_pairs"), (num_queries, "num_queries"))
    )
    seeds = check_int(seeds, "seeds")
    data = []
    for s in range(seeds):
        gen = torch.Generator().manual_seed(s)
        k = torch.randn(num_pairs, dim, generator=gen, dtype=torch.float64)
        v = torch.randn(num_pairs, dim, generator=gen, dtype=torch.float64)
        q = torch.randn(num_queries, dim, generator=gen, dtype=torch.float64)
        data.append((k / k.norm(dim=-1, keepdim=True), v, q / q.norm(dim=-1, keepdim=True)))
    rows = []
    for f in feats:
        for m in ms:
            for beta in bs:
                res = [
                    compare_with_softmax(k, v, q, num_hidden=m, features=f, beta=beta, seed=s)
                    for s, (k, v, q) in enumerate(data)
                ]
                errs = torch.tensor([r["output_error"] for r in res], dtype=torch.float64)
                rows.append(
                    {
                        "features": f,
                        "num_hidden": m,
                        "beta": beta,
                        "normalizer_error": sum(r["normalizer_error"] for r in res) / len(res),
                        "output_error": float(errs.mean()),
                        "output_error_sd": float(errs.std()) if len(res) > 1 else 0.0,
                        "nonpositive": sum(r["nonpositive"] for r in res) / len(res),
                    }
                )
    return rows


def _as_list(x: Any) -> list:
    if isinstance(x, (list, tuple, range)):
        return list(x)
    if isinstance(x, torch.Tensor):
        return x.reshape(-1).tolist()
    return [x]
