"""Free recall with the context maintenance and retrieval model (CMR) as a key-value memory.

CMR (Polyn, Norman & Kahana 2009; the temporal context model of Howard & Kahana 2002 with a
recall rule) is a pair of Hebbian key-value memories between an item layer ``f`` and a
drifting context layer ``c`` (:mod:`kvmem.context`):

- ``M_fc`` (item -> context) and ``M_cf`` (context -> item), each the sum of a
  pre-experimental part and an experimental part learned as outer products during study.
  The contexts are the keys of ``M_cf`` and the items its values.
- Study of item ``i`` (localist ``f_i``): the context integrates the item's retrieved context,
  ``c <- rho c + B_enc c_in`` with ``c_in = M_fc f_i / ||M_fc f_i||`` and ``rho`` keeping
  ``||c|| = 1`` (:func:`kvmem.context.tcm_rho`); then ``M_fc_exp += Lfc f_i c^T`` and
  ``M_cf_exp += Lcf_i c f_i^T`` with the primacy gradient ``Lcf_i = Lcf + P1 exp(-P2 i)``.
- Pre-experimental weights: ``M_fc_pre = Afc + Dfc I`` and ``M_cf_pre = Acf + Dcf I`` on the
  item units, 1 between the start-of-list units.
- Optional distractor periods: before each item (rate ``B_distract``) and after the last
  one (rate ``B_retention``) the context integrates a fresh distractor unit.
- After study the start-of-list context is reinstated with rate ``B_start``.
- Recall: the item activations are ``a = M_cf c`` (floored at ``1e-6``); an item is chosen
  by the Luce choice rule on ``exp(2 a / T)`` over the items not yet recalled, after
  a stop decision with probability ``p_stop(k) = X1 exp(X2 k)`` at output position ``k``
  (clipped to ``[1e-6, 1 - 1e-6]``; 1 once every item is out). A recalled item's context is
  integrated with rate ``B_rec``.
- Optional associative chaining at recall (``Lff_f``, ``Lff_b``; off by default). This is an
  extension beyond standard CMR, added because standard CMR fitted to PEERS misses the
  sharp ``+1`` contiguity peak (experiment ``free-recall``). Chaining models (Kahana 1996,
  "Associative retrieval processes in free recall") link each studied item directly to its
  neighbours; here that link is a third key-value memory, item -> item,
  ``M_ff = Lff_f S + Lff_b S^T`` with ``S`` the shift ``S[i, i + 1] = 1``. After item ``r``
  is recalled the next choice uses ``a = M_cf c + M_ff f_r``: item ``r + 1`` gains
  ``Lff_f``, item ``r - 1`` gains ``Lff_b``. The cue is thus compound, the current context
  plus the just-recalled item (cf. the compound cueing of Lohnas & Kahana 2014). With
  ``Lff_f = Lff_b = 0`` every result is that of standard CMR.
- Optional return to the start of the list during recall (``B_restart``; off by default),
  another extension beyond standard CMR: after each recall (after the ``B_rec`` update) the
  start-of-list context is reinstated with rate ``B_restart``, the same operation that
  ``B_start`` performs once before the first recall. It keeps the early items' study
  contexts in the cue all through recall, so that people's jumps back to the list start
  after they have begun with the last items can be modelled (cf. the start marker of
  Henson's 1998 start-end model; Farrell 2012).
- Optional semantic associations (``Scf``, ``Sff``; off by default). With ``S`` the
  cosine-similarity matrix of the list items' word vectors (``S_ii = 1``;
  :mod:`kvmem.data.semantic`), ``Scf`` adds ``Scf S`` to the pre-experimental
  context-to-item weights on the item units, ``M_cf_pre = Acf + Dcf I + Scf S``, as in CMR
  (Polyn, Norman & Kahana 2009, whose ``s`` it is; Morton & Polyn 2016): an item is then
  cued by the context units of the items it resembles, which the context holds in
  proportion to how recently they were studied or recalled. ``Sff`` adds ``Sff S`` to an
  item-to-item memory cued by the last recalled item, ``a = M_cf c + Sff S f_r``: cymr's
  pre-experimental ``M_ff`` built from a similarity pattern. Only the similarities among
  the list's items are modelled: the never-studied pool items (the ``rest`` unit) have no
  semantic weights, which is exact when ``Afc = 0`` (their context units stay at 0).
  The study phase does not use ``M_cf``, so it is unchanged.

This follows cymr's CMR (Morton & Polyn 2016, ``cymr.cmr`` with ``config_loc_cmr``) step for
step, so likelihoods agree with cymr's (``tests/test_cmr_parity.py``). cymr gives the
context one unit per item of the whole word pool; with ``Afc = Acf = 0`` the units of items
not on the list stay at zero. Here the context has the list's item units, one ``rest``
unit, one start unit and the distractor units: the never-studied pool items all carry the
same value, so they act as one unit of weight ``sqrt(pool_size - list_length)`` and the
dot products and norms come out exactly as with the full pool (:func:`to_pool_layout`).

Everything is batched over ``P`` parameter sets (a differential-evolution population, or
one parameter set per subject) and ``N`` lists, in float64.

Example:
    >>> params = CMRParams(B_enc=0.7, B_rec=0.5, Lfc=0.3, Lcf=0.3, Dfc=0.7, Dcf=0.7,
    ...                    P1=1.0, P2=1.0, T=0.2, X1=0.02, X2=0.3)
    >>> state = study(params, 8)
    >>> tuple(state.context.shape)  # one parameter set, 8 items + rest + start units
    (1, 10)
    >>> recalls = generate(params, 8, 4, generator=0)
    >>> tuple(recalls.shape)
    (1, 4, 8)
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, fields
from typing import Any

import numpy as np
import torch

from .._checks import check_int, make_generator
from ..context import tcm_rho

__all__ = [
    "AMIN",
    "CMRParams",
    "P_FLOOR",
    "PARAM_NAMES",
    "PSTOP_MIN",
    "StudyState",
    "check_similarity",
    "generate",
    "param_batch",
    "recall_log_probs",
    "simulate",
    "stop_probability",
    "study",
    "to_pool_layout",
    "to_table",
]

AMIN = 1e-6
"""Floor on item activations before the choice rule (cymr's ``amin``)."""
PSTOP_MIN = 1e-6
"""Floor on the stop probability and on one minus it (cymr's ``pmin``)."""
P_FLOOR = 1e-5
"""Floor on each event probability before the log in a likelihood (as in cymr)."""

DTYPE = torch.float64


@dataclass(frozen=True)
class CMRParams:
    """One CMR parameter set (names as in cymr). Defaults are the settings of cymr's tests.

    Attributes:
        B_enc: context integration rate at study, in [0, 1].
        B_start: rate of reinstating the start-of-list context before recall, in [0, 1].
        B_rec: context integration rate after each recall, in [0, 1].
        Afc, Dfc: pre-experimental item -> context weights ``Afc + Dfc I``.
        Acf, Dcf: pre-experimental context -> item weights ``Acf + Dcf I``.
        Lfc: learning rate of item -> context associations.
        Lcf: learning rate of context -> item associations (asymptote of the gradient).
        P1, P2: primacy gradient ``Lcf + P1 exp(-P2 i)`` at serial position ``i`` (0-based).
        T: temperature of the choice rule ``exp(2 a / T)`` (> 0).
        X1, X2: stop probability ``X1 exp(X2 k)`` at output position ``k`` (0-based).
        B_distract: rate of the distractor before each item (0: no distractor), in [0, 1].
        B_retention: rate of the distractor after the last item (0: none), in [0, 1].
        Lff_f, Lff_b: associative chaining at recall (an extension beyond standard CMR, see
            the module docstring): after item ``r`` is recalled, ``Lff_f`` is added to the
            activation of item ``r + 1`` and ``Lff_b`` to that of item ``r - 1`` for the next
            choice (>= 0; 0 and 0, the default, is standard CMR).
        B_restart: rate of reinstating the start-of-list context after each recall, in
            [0, 1] (an extension beyond standard CMR; 0, the default, is standard CMR).
        Scf: weight of the list items' semantic similarities in the pre-experimental
            context -> item weights, ``M_cf_pre = Acf + Dcf I + Scf S`` (>= 0; 0, the
            default, is localist CMR). Needs the similarity matrices of the lists.
        Sff: weight of the semantic similarities in the item -> item memory cued by the
            last recalled item, ``+ Sff S[r, :]`` (cymr's ``M_ff_pre``; >= 0, default 0).

    Example:
        >>> CMRParams(B_enc=0.6).B_enc
        0.6
        >>> CMRParams(T=0)
        Traceback (most recent call last):
        ...
        ValueError: T: expected a finite number > 0, got 0
    """

    B_enc: float = 0.5
    B_start: float = 0.0
    B_rec: float = 0.8
    Afc: float = 0.0
    Dfc: float = 1.0
    Acf: float = 0.0
    Dcf: float = 1.0
    Lfc: float = 1.0
    Lcf: float = 1.0
    P1: float = 0.0
    P2: float = 1.0
    T: float = 10.0
    X1: float = 0.05
    X2: float = 1.0
    B_distract: float = 0.0
    B_retention: float = 0.0
    Lff_f: float = 0.0
    Lff_b: float = 0.0
    B_restart: float = 0.0
    Scf: float = 0.0
    Sff: float = 0.0

    def __post_init__(self) -> None:
        for f in fields(self):
            _check_value(getattr(self, f.name), f.name)

    def to_dict(self) -> dict[str, float]:
        """The parameters as a plain dict of floats."""
        return {k: float(v) for k, v in asdict(self).items()}


PARAM_NAMES: tuple[str, ...] = tuple(f.name for f in fields(CMRParams))
_RATES = ("B_enc", "B_start", "B_rec", "B_distract", "B_retention", "B_restart")
_NON_NEGATIVE = ("X1", "Lff_f", "Lff_b", "Scf", "Sff")


def _check_value(value: Any, name: str) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise TypeError(f"{name}: expected a real number, got {type(value).__name__}")
    value = float(value)
    if not math.isfinite(value):
        raise ValueError(f"{name}: expected a finite number, got {value}")
    if name in _RATES and not 0.0 <= value <= 1.0:
        raise ValueError(f"{name}: expected a rate in [0, 1], got {value}")
    if name == "T" and value <= 0:
        raise ValueError(f"T: expected a finite number > 0, got {value:g}")
    if name in _NON_NEGATIVE and value < 0:
        raise ValueError(f"{name}: expected a number >= 0, got {value}")


def param_batch(params: Any) -> dict[str, torch.Tensor]:
    """A batch of ``P`` parameter sets as float64 tensors of shape ``[P]``, one per name.

    Args:
        params: a :class:`CMRParams`; a sequence of them; or a mapping from names to
            numbers or 1-d arrays of a common length ``P`` (missing names take the
            :class:`CMRParams` defaults).

    Shapes:
        Returns ``{name: [P]}`` for every name in :data:`PARAM_NAMES`.

    Raises:
        TypeError: not one of the accepted forms, or non-numeric values.
        ValueError: unknown names, mismatched lengths or values out of range.

    Example:
        >>> b = param_batch({"B_enc": [0.2, 0.4], "T": 0.5})
        >>> b["B_enc"].tolist(), b["T"].tolist(), b["B_rec"].tolist()
        ([0.2, 0.4], [0.5, 0.5], [0.8, 0.8])
    """
    if isinstance(params, CMRParams):
        params = [params]
    if isinstance(params, Sequence) and not isinstance(params, (str, bytes)):
        if not params or not all(isinstance(p, CMRParams) for p in params):
            raise TypeError("params: expected a non-empty sequence of CMRParams")
        return {n: torch.tensor([getattr(p, n) for p in params], dtype=DTYPE) for n in PARAM_NAMES}
    if not isinstance(params, Mapping):
        raise TypeError(f"params: expected CMRParams, a sequence of them or a mapping, got {type(params).__name__}")
    unknown = sorted(set(params) - set(PARAM_NAMES))
    if unknown:
        raise ValueError(f"params: unknown parameter names {unknown}; known: {', '.join(PARAM_NAMES)}")
    values = {}
    for name in PARAM_NAMES:
        v = params.get(name, getattr(CMRParams, name))
        if isinstance(v, torch.Tensor):
            t = v.detach().to(dtype=DTYPE, device="cpu").reshape(-1)
        else:
            arr = np.asarray(v)
            if arr.dtype == object or not (np.issubdtype(arr.dtype, np.number)) or arr.dtype == bool:
                raise TypeError(f"{name}: expected numbers, got {v!r}")
            t = torch.as_tensor(arr, dtype=DTYPE).reshape(-1)
        values[name] = t
    sizes = {t.numel() for t in values.values()} - {1}
    if len(sizes) > 1:
        raise ValueError(f"params: parameter arrays have different lengths {sorted(sizes)}")
    size = sizes.pop() if sizes else 1
    if size == 0:
        raise ValueError("params: empty parameter arrays")
    out = {n: t.expand(size).clone() if t.numel() == 1 else t for n, t in values.items()}
    for name, t in out.items():
        if not torch.isfinite(t).all():
            raise ValueError(f"{name}: expected finite numbers")
        if name in _RATES and ((t < 0) | (t > 1)).any():
            raise ValueError(f"{name}: expected rates in [0, 1], got {t.tolist()}")
    if (out["T"] <= 0).any():
        raise ValueError(f"T: expected numbers > 0, got {out['T'].tolist()}")
    for name in _NON_NEGATIVE:
        if (out[name] < 0).any():
            raise ValueError(f"{name}: expected numbers >= 0, got {out[name].tolist()}")
    return out


def stop_probability(list_length: int, X1: Any, X2: Any, *, pmin: float = PSTOP_MIN) -> torch.Tensor:
    """Probability of stopping at each output position ``k = 0..L`` (1 at ``k = L``).

    Args:
        list_length: ``L``, the number of studied items.
        X1, X2: ``p_stop(k) = X1 exp(X2 k)``, clipped to ``[pmin, 1 - pmin]``.
        pmin: the clip margin.

    Shapes:
        X1, X2: ``[P]`` (or scalars). Returns ``[P, L + 1]``.

    Example:
        >>> stop_probability(3, 0.05, 1.0).numpy().round(4)
        array([[0.05  , 0.1359, 0.3695, 1.    ]])
    """
    L = check_int(list_length, "list_length", minimum=1)
    x1 = torch.as_tensor(X1, dtype=DTYPE).reshape(-1, 1)
    x2 = torch.as_tensor(X2, dtype=DTYPE).reshape(-1, 1)
    k = torch.arange(L + 1, dtype=DTYPE)
    p = (x1 * torch.exp(x2 * k)).clamp(pmin, 1 - pmin)
    p[:, L] = 1.0
    return p


@dataclass
class StudyState:
    """CMR after the study phase of a list, for ``P`` parameter sets.

    The context units are ``[items 0..L-1, rest, start, distractors 0..L]`` (the distractor
    units only when a distractor rate is non-zero); ``rest`` stands for the pool items
    that were not studied (see the module docstring).

    Attributes:
        context: the context cueing the first recall. Shape ``[P, D]``.
        states: the context after each study item (before the start reinstatement).
            Shape ``[P, L, D]``.
        fc: ``M_fc`` rows of the list items (pre-experimental + learned). Shape ``[P, L, D]``.
        cf: ``M_cf`` rows of the list items (pre-experimental + learned). Shape ``[P, L, D]``.
        list_length: ``L``.
        pool_size: number of item units of the context in cymr's layout (>= ``L``).
    """

    context: torch.Tensor
    states: torch.Tensor
    fc: torch.Tensor
    cf: torch.Tensor
    list_length: int
    pool_size: int

    @property
    def distraction(self) -> bool:
        """Whether the context has distractor units."""
        return self.context.shape[-1] > self.list_length + 2


def _integrate(c: torch.Tensor, c_in: torch.Tensor, beta: torch.Tensor) -> torch.Tensor:
    """``rho c + beta c_in`` for unit ``c_in``; ``beta`` broadcasts against ``c[..., 0]``.

    The hot loops call :func:`kvmem.context.tcm_rho` directly instead of ``tcm_update``:
    they run thousands of times per fit, and the input checks and renormalisation there
    would cost more than the update (and would move results away from cymr's by rounding).
    """
    dot = (c * c_in).sum(-1)
    rho = tcm_rho(dot, beta)
    return rho.unsqueeze(-1) * c + beta.unsqueeze(-1) * c_in


def _integrate_unit(c: torch.Tensor, unit: int, beta: torch.Tensor) -> torch.Tensor:
    """Integrate the one-hot input ``e_unit`` (start or distractor units)."""
    rho = tcm_rho(c[..., unit], beta)
    out = rho.unsqueeze(-1) * c
    out[..., unit] += beta
    return out


def study(params: Any, list_length: int, *, pool_size: int | None = None) -> StudyState:
    """Run the study phase of one list of ``list_length`` distinct items.

    With localist items the study phase depends only on the parameters and the list
    length, so one call serves every list of that length.

    Args:
        params: parameter set(s), anything :func:`param_batch` accepts.
        list_length: ``L``, the number of items studied.
        pool_size: item units of the context in cymr's layout (the size of the word pool
            the localist patterns cover); default ``L``. Matters only when ``Afc`` or
            ``Acf`` is non-zero.

    Shapes:
        Returns a :class:`StudyState` with ``P`` parameter sets.

    Example:
        >>> s = study(CMRParams(), 3)  # cymr's test settings: B_enc = 0.5
        >>> s.states[0, :, [0, 1, 2, 4]].numpy().round(4)  # item units and the start unit
        array([[0.5   , 0.    , 0.    , 0.866 ],
               [0.433 , 0.5   , 0.    , 0.75  ],
               [0.375 , 0.433 , 0.5   , 0.6495]])
    """
    p = param_batch(params)
    L = check_int(list_length, "list_length", minimum=1)
    pool = L if pool_size is None else check_int(pool_size, "pool_size", minimum=1)
    if pool < L:
        raise ValueError(f"pool_size: expected at least list_length = {L}, got {pool}")
    return _study(p, L, pool)


def _study(p: dict[str, torch.Tensor], L: int, pool: int) -> StudyState:
    """:func:`study` on a checked parameter batch."""
    P = p["B_enc"].numel()
    distraction = bool((p["B_distract"] > 0).any() or (p["B_retention"] > 0).any())
    rest, start = L, L + 1
    D = L + 2 + (L + 1 if distraction else 0)
    root = math.sqrt(pool - L)

    def pre(a: torch.Tensor, d: torch.Tensor) -> torch.Tensor:
        w = torch.zeros(P, L, D, dtype=DTYPE)
        w[:, :, :L] = a.view(P, 1, 1)
        w[:, :, :L] += d.view(P, 1, 1) * torch.eye(L, dtype=DTYPE)
        w[:, :, rest] = (a * root).view(P, 1)
        return w

    fc_pre = pre(p["Afc"], p["Dfc"])
    cf_pre = pre(p["Acf"], p["Dcf"])
    # Items are studied once, so an item's learned M_fc row is still zero when it is presented.
    c_in = fc_pre / fc_pre.norm(dim=-1, keepdim=True)
    lfc = p["Lfc"].clamp_min(0).view(P, 1)
    lcf = p["Lcf"].view(P, 1) + p["P1"].view(P, 1) * torch.exp(-p["P2"].view(P, 1) * torch.arange(L, dtype=DTYPE))
    lcf = lcf.clamp_min(0)  # cymr skips learning at non-positive rates

    if not distraction and bool((p["Afc"] == 0).all()) and bool((p["Dfc"] > 0).all()):
        # Orthonormal item inputs (the standard localist CMR): each input is orthogonal to
        # the context it meets, so rho = sqrt(1 - B^2) at every step and
        # c_i = rho^(i+1) e_start + sum_(j <= i) B rho^(i-j) e_j, in closed form.
        b = p["B_enc"].view(P, 1, 1)
        rho = torch.sqrt(1 - b * b)
        lag = torch.arange(L, dtype=DTYPE).view(L, 1) - torch.arange(L, dtype=DTYPE).view(1, L)
        states = torch.zeros(P, L, D, dtype=DTYPE)
        states[:, :, :L] = torch.where(lag >= 0, b * rho ** lag.clamp_min(0), 0.0)
        states[:, :, start] = rho.view(P, 1) ** torch.arange(1, L + 1, dtype=DTYPE)
        c = states[:, -1].clone()
    else:
        c = torch.zeros(P, D, dtype=DTYPE)
        c[:, start] = 1.0
        states = torch.empty(P, L, D, dtype=DTYPE)
        for i in range(L):
            if distraction:
                c = _integrate_unit(c, L + 2 + i, p["B_distract"])
            c = _integrate(c, c_in[:, i], p["B_enc"])
            states[:, i] = c
        if distraction:
            c = _integrate_unit(c, L + 2 + L, p["B_retention"])
    c = _integrate_unit(c, start, p["B_start"])
    # Hebbian outer products of each item with the context it was studied in.
    fc = fc_pre + lfc.unsqueeze(-1) * states
    cf = cf_pre + lcf.unsqueeze(-1) * states
    return StudyState(context=c, states=states, fc=fc, cf=cf, list_length=L, pool_size=pool)


def to_pool_layout(context: torch.Tensor, item_index: Any, pool_size: int) -> torch.Tensor:
    """Context vectors in cymr's layout: ``[pool items..., start, distractors...]``.

    Args:
        context: contexts in this module's layout (from a :class:`StudyState`).
        item_index: pool index of each list item (distinct, ``0 <= i < pool_size``).
        pool_size: number of pool items.

    Shapes:
        context: ``[..., D]`` with ``D = L + 2`` or ``2 L + 3``; item_index: ``[L]``.
        Returns ``[..., pool_size + D - L - 1]``.

    Example:
        >>> s = study(CMRParams(), 3, pool_size=6)
        >>> to_pool_layout(s.context, [3, 4, 5], 6).numpy().round(4)
        array([[0.    , 0.    , 0.    , 0.375 , 0.433 , 0.5   , 0.6495]])
    """
    idx = torch.as_tensor(np.asarray(item_index), dtype=torch.long).reshape(-1)
    L = idx.numel()
    pool = check_int(pool_size, "pool_size", minimum=1)
    if context.shape[-1] not in (L + 2, 2 * L + 3):
        raise ValueError(f"context: expected last dimension {L + 2} or {2 * L + 3} for {L} items, got {context.shape[-1]}")
    if len(set(idx.tolist())) != L or (idx < 0).any() or (idx >= pool).any():
        raise ValueError(f"item_index: expected {L} distinct indices in [0, {pool}), got {idx.tolist()}")
    m = pool - L
    out = torch.empty(context.shape[:-1] + (pool,), dtype=context.dtype)
    fill = context[..., L] / math.sqrt(m) if m else torch.zeros_like(context[..., L])
    out[...] = fill.unsqueeze(-1)
    out[..., idx] = context[..., :L]
    return torch.cat([out, context[..., L + 1:]], dim=-1)


def _check_recalls(recalls: Any, n_recall: Any, list_length: int) -> tuple[torch.Tensor, torch.Tensor]:
    r = torch.as_tensor(np.asarray(recalls) if not isinstance(recalls, torch.Tensor) else recalls)
    if r.dtype.is_floating_point or r.dtype == torch.bool or r.ndim != 2:
        raise ValueError(f"recalls: expected a 2-d integer array [N, K] of serial positions, got {tuple(r.shape)} {r.dtype}")
    r = r.to(torch.long)
    n = torch.as_tensor(np.asarray(n_recall) if not isinstance(n_recall, torch.Tensor) else n_recall).to(torch.long)
    if n.shape != (r.shape[0],):
        raise ValueError(f"n_recall: expected shape ({r.shape[0]},), got {tuple(n.shape)}")
    if (n < 0).any() or (n > r.shape[1]).any() or (n > list_length).any():
        raise ValueError(f"n_recall: expected counts in [0, min(K, L) = {min(r.shape[1], list_length)}]")
    valid = torch.arange(r.shape[1]) < n.unsqueeze(1)
    if ((r < 0) | (r >= list_length))[valid].any():
        raise ValueError(f"recalls: serial positions must lie in [0, {list_length}) (0-based)")
    rv = torch.where(valid, r, -1 - torch.arange(r.shape[1]).unsqueeze(0))
    if r.shape[1] > 1 and (rv.sort(dim=1).values.diff(dim=1) == 0).any():
        raise ValueError("recalls: an item is recalled twice in one list (remove repeats first)")
    return torch.where(valid, r, 0), n


def recall_log_probs(state: StudyState, params: Any, recalls: Any, n_recall: Any, *,
                     return_contexts: bool = False,
                     similarity: Any = None) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
    """Log-probability of each event of observed recall sequences, stop events included.

    Event ``k < n`` of a list is "not stopping, then recalling ``recalls[k]``": probability
    ``(1 - p_stop(k)) exp(2 a_r / T) / sum_j exp(2 a_j / T)`` over the items not yet recalled,
    with ``a = M_cf c`` (plus ``M_ff f_(recalls[k - 1])`` when chaining is on, and the
    semantic terms ``Scf S c_items + Sff S[recalls[k - 1]]`` when they are on).
    Event ``n`` is stopping, ``p_stop(n)``. Each probability is floored at :data:`P_FLOOR`
    before the log, as cymr does. The choice rule is evaluated as a log-softmax (no
    overflow at small ``T``); otherwise the arithmetic is cymr's.

    Args:
        state: the study phase (:func:`study`), ``P`` parameter sets.
        params: the same parameter sets (``B_rec``, ``T``, ``X1``, ``X2``, ``Lff_f``,
            ``Lff_b``, ``B_restart`` are used here).
        recalls: 0-based serial positions in output order, padded after ``n_recall``.
        n_recall: number of recalls of each list.
        return_contexts: also return the context cueing each event.
        similarity: the semantic similarity matrix of each list's items (in serial
            order); needed when ``Scf`` or ``Sff`` is non-zero, ignored otherwise.

    Shapes:
        recalls: ``[N, K]``; n_recall: ``[N]``; similarity: ``[N, L, L]``. Returns ``[P, N, K + 1]`` with the stop event
        at index ``n_recall`` and zeros after it; with ``return_contexts`` also the cueing
        contexts ``[P, N, K + 1, D]`` (entries after the stop event are not meaningful).

    Example:
        >>> s = study(CMRParams(), 3)
        >>> lp = recall_log_probs(s, CMRParams(), [[1, 2]], [2])
        >>> round(float(lp.sum()), 6)
        -2.977857
    """
    p = param_batch(params)
    P = p["T"].numel()
    if state.context.shape[0] != P:
        raise ValueError(f"params: expected {state.context.shape[0]} parameter sets like state, got {P}")
    r, n = _check_recalls(recalls, n_recall, state.list_length)
    _need_similarity(p, similarity)
    sim = None if similarity is None else check_similarity(similarity, r.shape[0], state.list_length)
    return _recall_log_probs(state, p, r, n, return_contexts, sim)


def _semantic(p: dict[str, torch.Tensor]) -> tuple[bool, bool]:
    """Whether the ``Scf`` and the ``Sff`` terms are on for any parameter set."""
    return bool((p["Scf"] != 0).any()), bool((p["Sff"] != 0).any())


def check_similarity(similarity: Any, n_lists: int, list_length: int, *, name: str = "similarity",
                     batch: int | None = None) -> torch.Tensor:
    """Per-list similarity matrices as a float64 tensor, checked.

    Args:
        similarity: ``[n_lists, L, L]`` (or ``[batch, n_lists, L, L]`` when ``batch`` is
            given), e.g. from :func:`kvmem.data.semantic.semantic_similarity`.
        n_lists, list_length: the expected sizes.
        name: the argument's name in error messages.
        batch: accept a leading dimension of this size (one set of lists per parameter set).

    Raises:
        ValueError: wrong shape, or values that are not finite.

    Example:
        >>> check_similarity(np.eye(3)[None], 1, 3).shape
        torch.Size([1, 3, 3])
    """
    s = similarity if isinstance(similarity, torch.Tensor) else torch.as_tensor(np.asarray(similarity, dtype=np.float64))
    s = s.detach().to(dtype=DTYPE, device="cpu")
    shapes = [(n_lists, list_length, list_length)]
    if batch is not None:
        shapes.append((batch, n_lists, list_length, list_length))
    if tuple(s.shape) not in shapes:
        raise ValueError(f"{name}: expected shape {' or '.join(str(list(x)) for x in shapes)}, got {list(s.shape)}")
    if not torch.isfinite(s).all():
        raise ValueError(f"{name}: expected finite similarities")
    return s


def _need_similarity(p: dict[str, torch.Tensor], similarity: Any) -> None:
    if any(_semantic(p)) and similarity is None:
        raise ValueError("similarity: the semantic weights Scf / Sff are non-zero, so the similarity matrices of the "
                         "list items are needed (kvmem.data.semantic.semantic_similarity)")


def _chain_matrix(p: dict[str, torch.Tensor], L: int) -> torch.Tensor | None:
    """``M_ff`` of associative chaining, ``[P, L, L]`` with row ``r`` the boost after recalling
    ``r`` (``Lff_f`` at ``r + 1``, ``Lff_b`` at ``r - 1``); None when chaining is off."""
    if not bool((p["Lff_f"] != 0).any() or (p["Lff_b"] != 0).any()):
        return None
    P = p["Lff_f"].numel()
    shift = torch.diag(torch.ones(L - 1, dtype=DTYPE), 1)  # shift[r, r + 1] = 1
    return p["Lff_f"].view(P, 1, 1) * shift + p["Lff_b"].view(P, 1, 1) * shift.T


def _recall_log_probs(state: StudyState, p: dict[str, torch.Tensor], r: torch.Tensor, n: torch.Tensor,
                      return_contexts: bool = False, sim: torch.Tensor | None = None) -> Any:
    """:func:`recall_log_probs` on checked input (the likelihood's inner loop)."""
    P = p["T"].numel()
    L = state.list_length
    chain = _chain_matrix(p, L)
    N, K = r.shape
    D = state.context.shape[-1]
    p_stop = stop_probability(L, p["X1"], p["X2"])  # [P, L + 1]
    log_go = torch.log1p(-p_stop)
    floor = math.log(P_FLOOR)
    fc_unit = state.fc / state.fc.norm(dim=-1, keepdim=True)
    inv_t = (2.0 / p["T"]).view(P, 1, 1)
    beta = p["B_rec"].view(P, 1)
    b_restart = p["B_restart"].view(P, 1)
    restart = bool((p["B_restart"] > 0).any())
    sem_cf, sem_ff = _semantic(p)
    if (sem_cf or sem_ff) and sim is None:
        _need_similarity(p, sim)
    scf = p["Scf"].view(P, 1, 1)
    sff = p["Sff"].view(P, 1, 1)
    s_unit = L + 1  # the start unit
    # Lists sorted by length of recall, longest first: at output k the lists still
    # recalling are a prefix, and the work shrinks as lists stop.
    order = torch.argsort(n, descending=True, stable=True)
    r, n_sorted = r[order], n[order]
    if sem_cf or sem_ff:
        sim = sim[order]
    active = [int(m) for m in (n_sorted.unsqueeze(0) > torch.arange(K).unsqueeze(1)).sum(1)]
    excluded = torch.zeros(N, L, dtype=torch.bool)
    out = torch.zeros(P, N, K + 1, dtype=DTYPE)
    rows = torch.arange(N)
    k_max = int(n_sorted[0]) if N else 0
    if return_contexts:
        # The context itself, as cymr tracks it (for inspection and the parity tests).
        c = state.context.unsqueeze(1).expand(P, N, D).clone()
        contexts = torch.zeros(P, N, K + 1, D, dtype=DTYPE)
        cf_t = state.cf.transpose(1, 2)  # [P, D, L]
    else:
        # The context update is linear, so the recall phase can track, instead of c, the
        # item activations a = M_cf c and the cosines e = fcu . c with every item's input:
        # after recalling r, a <- rho a + B (M_cf fcu_r) and e <- rho e + B (fcu . fcu_r),
        # with rho from e_r. Both updates read one row of a table built once per parameter
        # set, which replaces a batched product per step by a gather. The start unit's value
        # c_s is tracked too (column 2L), for the restart update with input e_start:
        # a <- rho a + B M_cf[:, s], e <- rho e + B fcu[:, s], c_s <- rho c_s + B.
        # With Scf the item part of c (columns 2L + 1 on) is tracked as well: the semantic
        # weights differ from list to list, so their activations cannot enter the table.
        c0 = state.context.unsqueeze(-1)  # [P, D, 1]
        start = torch.cat([torch.bmm(state.cf, c0), torch.bmm(fc_unit, c0), c0[:, s_unit:s_unit + 1]]
                          + ([c0[:, :L]] if sem_cf else []), dim=1).squeeze(-1)  # [P, 2L + 1 (+ L)]
        fcu_t = fc_unit.transpose(1, 2)
        table = torch.cat([torch.bmm(state.cf, fcu_t).transpose(1, 2), torch.bmm(fc_unit, fcu_t),
                           fc_unit[:, :, s_unit:s_unit + 1]] + ([fc_unit[:, :, :L]] if sem_cf else []),
                          dim=-1)  # [P, L, 2L + 1 (+ L)]
        s_row = torch.cat([state.cf[:, :, s_unit], fc_unit[:, :, s_unit], torch.ones(P, 1, dtype=DTYPE)]
                          + ([torch.zeros(P, L, dtype=DTYPE)] if sem_cf else []), dim=-1).unsqueeze(1)
        z = start.unsqueeze(1).expand(P, N, start.shape[-1]).clone()
    for k in range(k_max + (1 if return_contexts else 0)):
        if return_contexts:
            contexts[:, :, k] = c
        if k == k_max:
            break
        m = active[k]
        rk, rows_k, ex = r[:m, k], rows[:m], excluded[:m]
        if return_contexts:
            act = torch.bmm(c[:, :m], cf_t)
            c_items = c[:, :m, :L]
        else:
            zk = z[:, :m]
            act = zk[..., :L]
            c_items = zk[..., 2 * L + 1:]
        if sem_cf:
            # (Scf S) c over the item units; S is symmetric.
            act = act + scf * torch.einsum("pml,mjl->pmj", c_items, sim[:m])
        if chain is not None and k > 0:
            act = act + chain[:, r[:m, k - 1]]  # the compound cue: context plus the last item
        if sem_ff and k > 0:
            act = act + sff * sim[rows_k, r[:m, k - 1]]
        act = act.clamp_min(AMIN).mul_(inv_t)  # [P, m, L]
        act.masked_fill_(ex, -math.inf)
        top = act.amax(-1, keepdim=True)
        lse = top.squeeze(-1) + torch.exp(act - top).sum(-1).log_()
        lp = act[:, rows_k, rk] - lse + log_go[:, k].view(P, 1)
        out[:, :m, k] = lp.clamp_(floor, 0.0)
        ex[rows_k, rk] = True
        if return_contexts:
            c[:, :m] = _integrate(c[:, :m], fc_unit[:, rk], beta)
            if restart:
                c[:, :m] = _integrate_unit(c[:, :m], s_unit, b_restart)
        elif k + 1 < k_max:
            rho = tcm_rho(zk[:, rows_k, L + rk], beta)
            zk = rho.unsqueeze(-1) * zk + beta.unsqueeze(-1) * table[:, rk]
            if restart:
                rho = tcm_rho(zk[..., 2 * L], b_restart)
                zk = rho.unsqueeze(-1) * zk + b_restart.unsqueeze(-1) * s_row
            z[:, :m] = zk
    stop = torch.log(p_stop.gather(1, n_sorted.view(1, N).expand(P, N)).clamp(P_FLOOR, 1.0))
    out.scatter_(2, n_sorted.view(1, N, 1).expand(P, N, 1), stop.unsqueeze(-1))
    inverse = torch.empty_like(order)
    inverse[order] = torch.arange(N)
    out = out[:, inverse]
    if return_contexts:
        return out, contexts[:, inverse]
    return out


def generate(params: Any, list_length: int, n_lists: int, *, generator: torch.Generator | int | None = None,
             pool_size: int | None = None, similarity: Any = None) -> torch.Tensor:
    """Simulate free recall of ``n_lists`` lists for each of ``P`` parameter sets.

    At output position ``k`` a list stops with probability ``p_stop(k)``; otherwise it
    recalls an item drawn by the choice rule (with chaining, cued by the context and the
    last recalled item), and the item's context is integrated (then, with ``B_restart``,
    the start-of-list context).

    Args:
        params: parameter set(s) (:func:`param_batch`).
        list_length: items per list.
        n_lists: lists per parameter set.
        generator: seed or ``torch.Generator``; the same seed gives the same recalls.
        pool_size: see :func:`study`.
        similarity: semantic similarity matrices of the lists' items, the same lists for
            every parameter set or one set of lists per parameter set; needed when ``Scf``
            or ``Sff`` is non-zero, ignored otherwise. The random draws do not depend on
            it, so a seed gives the same uniforms with and without semantics.

    Shapes:
        similarity: ``[n_lists, L, L]`` or ``[P, n_lists, L, L]``.
        Returns ``[P, n_lists, list_length]`` (int64): 0-based serial positions in output
        order, ``-1`` after the last recall.

    Example:
        >>> r = generate(CMRParams(X1=0.0), 5, 2, generator=1)  # X1 = 0: rarely stops early
        >>> r.shape, bool((r[..., 0] >= 0).all())
        (torch.Size([1, 2, 5]), True)
    """
    p = param_batch(params)
    n_lists = check_int(n_lists, "n_lists", minimum=1)
    gen = make_generator(generator, "generator")
    state = study(p, list_length, pool_size=pool_size)
    L = state.list_length
    P = p["T"].numel()
    D = state.context.shape[-1]
    p_stop = stop_probability(L, p["X1"], p["X2"])
    fc_unit = state.fc / state.fc.norm(dim=-1, keepdim=True)
    cf_t = state.cf.transpose(1, 2)
    inv_t = (2.0 / p["T"]).view(P, 1, 1)
    beta = p["B_rec"].view(P, 1)
    b_restart = p["B_restart"].view(P, 1).expand(P, n_lists)
    restart = bool((p["B_restart"] > 0).any())
    chain = _chain_matrix(p, L)
    sem_cf, sem_ff = _semantic(p)
    _need_similarity(p, similarity)
    if sem_cf or sem_ff:
        sim = check_similarity(similarity, n_lists, L, batch=P).expand(P, n_lists, L, L)
        scf, sff = p["Scf"].view(P, 1, 1), p["Sff"].view(P, 1, 1)
    c = state.context.unsqueeze(1).expand(P, n_lists, D).clone()
    excluded = torch.zeros(P, n_lists, L, dtype=torch.bool)
    stopped = torch.zeros(P, n_lists, dtype=torch.bool)
    out = torch.full((P, n_lists, L), -1, dtype=torch.long)
    for k in range(L):
        u_stop = torch.rand(P, n_lists, generator=gen, dtype=DTYPE)
        u_item = torch.rand(P, n_lists, 1, generator=gen, dtype=DTYPE)
        stopped |= u_stop < p_stop[:, k].view(P, 1)
        if bool(stopped.all()):
            break
        act = torch.bmm(c, cf_t)
        if sem_cf:
            act = act + scf * torch.einsum("pnl,pnjl->pnj", c[..., :L], sim)
        # Row out[:, :, k - 1] of a stopped list is -1, but its draw is discarded anyway.
        prev = out[:, :, k - 1].clamp_min(0) if k > 0 else None
        if chain is not None and k > 0:
            act = act + torch.gather(chain, 1, prev.unsqueeze(-1).expand(P, n_lists, L))
        if sem_ff and k > 0:
            act = act + sff * torch.gather(sim, 2, prev.view(P, n_lists, 1, 1).expand(P, n_lists, 1, L)).squeeze(2)
        act = act.clamp_min(AMIN) * inv_t
        prob = torch.softmax(act.masked_fill(excluded, -math.inf), dim=-1)
        # Inverse-CDF draw; the clamp keeps a rounding shortfall in the last bin off
        # excluded items.
        cdf = prob.cumsum(-1)
        pick = (cdf < u_item * cdf[..., -1:]).sum(-1).clamp_max(L - 1)
        pick = torch.where(excluded.gather(-1, pick.unsqueeze(-1)).squeeze(-1),
                           prob.argmax(-1), pick)
        go = ~stopped
        out[:, :, k] = torch.where(go, pick, -1)
        excluded |= torch.nn.functional.one_hot(pick, L).bool() & go.unsqueeze(-1)
        c_in = torch.gather(fc_unit, 1, pick.unsqueeze(-1).expand(P, n_lists, D))
        c_new = _integrate(c, c_in, beta)
        if restart:
            c_new = _integrate_unit(c_new, L + 1, b_restart)
        c = torch.where(go.unsqueeze(-1), c_new, c)
    return out


def to_table(recalls: Any, study_items: Any, *, subjects: Any, lists: Any) -> Any:
    """Recall sequences as psifr's long table (subject, list, position, trial_type, item).

    Args:
        recalls: 0-based serial positions in output order, ``-1`` padded.
        study_items: the studied items of each list in serial order (strings).
        subjects: subject label of each list.
        lists: list number of each list.

    Shapes:
        recalls: ``[N, K]``; study_items: ``[N, L]``; subjects, lists: ``[N]``.

    Returns:
        ``pandas.DataFrame`` sorted by subject and list, study rows before recall rows,
        positions 1-based.

    Example:
        >>> t = to_table([[1, -1]], [["a", "b"]], subjects=[1], lists=[1])
        >>> t[["trial_type", "position", "item"]].values.tolist()
        [['study', 1, 'a'], ['study', 2, 'b'], ['recall', 1, 'b']]
    """
    import pandas as pd

    rec = np.asarray(recalls)
    items = np.asarray(study_items, dtype=object)
    subj = np.asarray(subjects)
    lst = np.asarray(lists)
    if rec.ndim != 2 or items.ndim != 2 or rec.shape[0] != items.shape[0]:
        raise ValueError(f"recalls and study_items: expected [N, K] and [N, L], got {rec.shape} and {items.shape}")
    if subj.shape != (rec.shape[0],) or lst.shape != (rec.shape[0],):
        raise ValueError(f"subjects and lists: expected shape ({rec.shape[0]},)")
    N, L = items.shape
    if (rec >= L).any():
        raise ValueError(f"recalls: serial positions must be < list length {L}")
    study_df = pd.DataFrame({
        "subject": np.repeat(subj, L), "list": np.repeat(lst, L),
        "position": np.tile(np.arange(1, L + 1), N), "trial_type": "study", "item": items.reshape(-1),
    })
    li, out_pos = np.nonzero(rec >= 0)
    recall_df = pd.DataFrame({
        "subject": subj[li], "list": lst[li], "position": out_pos + 1, "trial_type": "recall",
        "item": items[li, rec[li, out_pos]],
    })
    table = pd.concat([study_df, recall_df], ignore_index=True)
    table["_order"] = (table["trial_type"] == "recall").astype(int)
    table = table.sort_values(["subject", "list", "_order", "position"], kind="stable").drop(columns="_order")
    return table.reset_index(drop=True)


def simulate(params: Any, *, list_length: int = 16, n_lists: int = 28, subjects: Sequence[Any] | None = None,
             study_table: Any = None, n_rep: int = 1, seed: int = 0, pool_size: int | None = None,
             word_vectors: tuple[Sequence[str], Any] | None = None) -> Any:
    """Simulated free-recall data in psifr's long table.

    Args:
        params: one :class:`CMRParams` for every subject, or a mapping subject -> params.
        list_length: items per list (ignored when ``study_table`` is given).
        n_lists: lists per subject and replication (ignored when ``study_table`` is given).
        subjects: subject labels (default: the mapping's keys, or ``[1]``).
        study_table: psifr table whose study lists are re-used (each subject's own lists,
            one list length); its recall rows are ignored.
        n_rep: replications of each subject's lists (numbered after the originals).
        seed: seed of the random draws.
        pool_size: see :func:`study`.
        word_vectors: ``(words, vectors)`` (e.g. :func:`kvmem.data.semantic.load_word_vectors`)
            from which each list's semantic similarities are computed
            (:func:`kvmem.data.semantic.semantic_similarity`); needed when ``Scf`` or
            ``Sff`` is non-zero. Without ``study_table`` the items are named ``item1``... and
            have no vectors, so their similarity matrix is the identity.

    Returns:
        ``pandas.DataFrame`` with columns subject, list, position, trial_type, item.

    Example:
        >>> t = simulate(CMRParams(T=0.2), list_length=4, n_lists=2, seed=0)
        >>> sorted(t["trial_type"].unique()), int((t["trial_type"] == "study").sum())
        (['recall', 'study'], 8)
    """
    n_rep = check_int(n_rep, "n_rep", minimum=1)
    seed = check_int(seed, "seed", minimum=0)
    if isinstance(params, Mapping) and not set(params) <= set(PARAM_NAMES):
        per_subject = dict(params)
        if not all(isinstance(v, CMRParams) for v in per_subject.values()):
            raise TypeError("params: a mapping of subjects must map to CMRParams")
        subjects = list(per_subject) if subjects is None else list(subjects)
        missing = [s for s in subjects if s not in per_subject]
        if missing:
            raise ValueError(f"params: no parameters for subjects {missing}")
        plist = [per_subject[s] for s in subjects]
    else:
        if not isinstance(params, CMRParams):
            raise TypeError("params: expected CMRParams or a mapping subject -> CMRParams")
        subjects = [1] if subjects is None else list(subjects)
        plist = [params] * len(subjects)
    if not subjects:
        raise ValueError("subjects: expected at least one subject")
    if study_table is not None:
        items_by_subject, lists_by_subject, L = _study_lists(study_table, subjects)
    else:
        L = check_int(list_length, "list_length", minimum=1)
        n_lists = check_int(n_lists, "n_lists", minimum=1)
        items_by_subject = [np.array([[f"item{j + 1}" for j in range(L)]] * n_lists, dtype=object)] * len(subjects)
        lists_by_subject = [np.arange(1, n_lists + 1)] * len(subjects)
    n_max = max(len(x) for x in lists_by_subject)
    similarity = None
    if any(p.Scf != 0 or p.Sff != 0 for p in plist):
        if word_vectors is None:
            raise ValueError("word_vectors: the semantic weights Scf / Sff are non-zero, so (words, vectors) are needed")
        from ..data.semantic import semantic_similarity

        words, vectors = word_vectors
        # One set of lists per subject, padded with identity matrices (lists a subject lacks
        # are simulated but discarded below).
        similarity = torch.eye(L, dtype=DTYPE).repeat(len(subjects), n_max * n_rep, 1, 1)
        for s_i, items in enumerate(items_by_subject):
            sim = semantic_similarity(items, words, vectors)
            for rep in range(n_rep):
                similarity[s_i, rep * n_max: rep * n_max + len(items)] = sim
    rec = generate(plist, L, n_max * n_rep, generator=seed, pool_size=pool_size, similarity=similarity).numpy()
    rows_rec, rows_items, rows_subj, rows_list = [], [], [], []
    for s_i, subj in enumerate(subjects):
        items, lists = items_by_subject[s_i], lists_by_subject[s_i]
        n_l = len(lists)
        top = int(np.max(lists))
        for rep in range(n_rep):
            rows_rec.append(rec[s_i, rep * n_max: rep * n_max + n_l])
            rows_items.append(items)
            rows_subj.append(np.full(n_l, subj, dtype=object))
            rows_list.append(lists + rep * top)
    return to_table(np.concatenate(rows_rec), np.concatenate(rows_items), subjects=np.concatenate(rows_subj),
                    lists=np.concatenate(rows_list))


def _study_lists(table: Any, subjects: Sequence[Any]) -> tuple[list[np.ndarray], list[np.ndarray], int]:
    """Each subject's study lists from a psifr table: items ``[n_lists, L]`` and list numbers."""
    need = {"subject", "list", "position", "trial_type", "item"}
    if not hasattr(table, "columns") or not need <= set(table.columns):
        raise ValueError(f"study_table: expected a psifr table with columns {sorted(need)}")
    st = table[table["trial_type"] == "study"].sort_values(["subject", "list", "position"])
    lengths = st.groupby(["subject", "list"]).size()
    if lengths.empty:
        raise ValueError("study_table: no study rows")
    if lengths.nunique() != 1:
        raise ValueError(f"study_table: lists must have one length, got {sorted(lengths.unique())}")
    L = int(lengths.iloc[0])
    items, lists = [], []
    for subj in subjects:
        part = st[st["subject"] == subj]
        if part.empty:
            raise ValueError(f"study_table: no study lists for subject {subj!r}")
        items.append(part["item"].to_numpy(dtype=object).reshape(-1, L))
        lists.append(part["list"].drop_duplicates().to_numpy())
    return items, lists, L
