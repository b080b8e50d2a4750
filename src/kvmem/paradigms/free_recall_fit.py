"""Exact likelihood of free-recall data under CMR, and maximum-likelihood fits.

Data come in psifr's long table (subject, list, position, trial_type, item). As in cymr,
intrusions and repeats are removed (``psifr.fr.merge_free_recall``); each list then
contributes one event per recall and one stop event. :func:`log_likelihood` evaluates
``P`` parameter sets on all lists at once (the study phase once per list length, the
recall phase batched over parameter sets and lists; :mod:`kvmem.paradigms.free_recall`).

:func:`fit` maximises the likelihood with ``scipy.optimize.differential_evolution``,
evaluating the whole population in one batched call per generation
(``vectorized=True``). :func:`fit_subjects` fits subjects in parallel through
:func:`kvmem.runner.executor.open_executor` (in-process or a Dask ``LocalCluster``).

The default search frees the ten parameters of Morton & Polyn's (2016) localist CMR,
with ``Dfc = 1 - Lfc``, ``Dcf = 1 - Lcf`` and ``Afc = Acf = 0`` (:data:`DEFAULT_BOUNDS`).
:data:`MODELS` names this model ``"cmr"``, two extensions beyond it (associative
chaining, and chaining with a return to the start-of-list context after each recall), and
models with semantic associations between the studied words (``Scf`` / ``Sff``; their data
need word vectors, ``prepare_data(..., word_vectors=...)``); :func:`model_bounds` gives
each one's free parameters.

Example:
    >>> from kvmem.paradigms.free_recall import CMRParams, simulate
    >>> truth = CMRParams(B_enc=0.7, B_rec=0.6, Lfc=0.3, Dfc=0.7, Lcf=0.3, Dcf=0.7,
    ...                   P1=1.0, P2=1.0, T=0.15, X1=0.02, X2=0.3)
    >>> data = prepare_data(simulate(truth, list_length=8, n_lists=20, seed=0))
    >>> data.n_lists, data.n_events == data.n_lists + int(sum(g.n_recall.sum() for g in data.groups))
    (20, True)
    >>> float(log_likelihood(truth, data)[0]) < 0
    True
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from .._checks import check_int
from .free_recall import (
    _RATES,
    PARAM_NAMES,
    CMRParams,
    _check_recalls,
    _recall_log_probs,
    _semantic,
    _study,
    check_similarity,
    param_batch,
)

__all__ = [
    "DEFAULT_BOUNDS",
    "FitResult",
    "MODELS",
    "PEERS_POOLED",
    "ListGroup",
    "RecallData",
    "baseline_log_likelihood",
    "expand_params",
    "fit",
    "fit_subjects",
    "load_sample",
    "log_likelihood",
    "model_bounds",
    "model_uses_semantics",
    "prepare_data",
]

DEFAULT_BOUNDS: dict[str, tuple[float, float]] = {
    "B_enc": (0.0, 1.0),
    "B_start": (0.0, 1.0),
    "B_rec": (0.0, 1.0),
    "Lfc": (0.0, 1.0),
    "Lcf": (0.0, 1.0),
    "P1": (0.0, 10.0),
    "P2": (0.1, 5.0),
    "T": (0.01, 1.0),
    "X1": (0.0, 1.0),
    "X2": (0.0, 5.0),
}
"""Free parameters and search bounds of the default fit (Dfc = 1 - Lfc, Dcf = 1 - Lcf)."""

MODELS: dict[str, dict[str, tuple[float, float]]] = {
    "cmr": dict(DEFAULT_BOUNDS),
    "cmr-chain": {**DEFAULT_BOUNDS, "Lff_f": (0.0, 1.0), "Lff_b": (0.0, 1.0)},
    "cmr-chain-restart": {**DEFAULT_BOUNDS, "Lff_f": (0.0, 1.0), "Lff_b": (0.0, 1.0), "B_restart": (0.0, 1.0)},
    "cmr-sem": {**DEFAULT_BOUNDS, "Scf": (0.0, 1.0)},
    "cmr-chain-restart-sem": {**DEFAULT_BOUNDS, "Lff_f": (0.0, 1.0), "Lff_b": (0.0, 1.0), "B_restart": (0.0, 1.0),
                              "Scf": (0.0, 1.0)},
    "cmr-sem-ff": {**DEFAULT_BOUNDS, "Sff": (0.0, 1.0)},
    "cmr-chain-restart-sem-ff": {**DEFAULT_BOUNDS, "Lff_f": (0.0, 1.0), "Lff_b": (0.0, 1.0), "B_restart": (0.0, 1.0),
                                 "Sff": (0.0, 1.0)},
}
"""Named models and their free parameters with search bounds (all with Dfc = 1 - Lfc,
Dcf = 1 - Lcf, Afc = Acf = 0; parameters not listed keep their defaults, i.e. off):

- ``"cmr"``: standard localist CMR (:data:`DEFAULT_BOUNDS`; 10 parameters).
- ``"cmr-chain"``: plus associative chaining at recall, ``Lff_f`` and ``Lff_b`` (12).
- ``"cmr-chain-restart"``: plus reinstating the start-of-list context after each recall
  with rate ``B_restart`` (13).
- ``"cmr-sem"``: standard CMR with semantic associations in ``M_cf_pre``, weight ``Scf``
  (Polyn, Norman & Kahana 2009; 11). Needs data prepared with word vectors.
- ``"cmr-chain-restart-sem"``: ``"cmr-chain-restart"`` plus ``Scf`` (14).
- ``"cmr-sem-ff"``, ``"cmr-chain-restart-sem-ff"``: the same with the semantic weight in
  the item -> item memory cued by the last recall instead, ``Sff`` (cymr's ``M_ff_pre``
  from a similarity pattern; 11 and 14).

Chaining and the restart are extensions beyond standard CMR (see
:mod:`kvmem.paradigms.free_recall`)."""


def model_uses_semantics(model: str) -> bool:
    """Whether a named model has a semantic weight (its data need word vectors).

    Example:
        >>> model_uses_semantics("cmr-sem"), model_uses_semantics("cmr")
        (True, False)
    """
    return bool({"Scf", "Sff"} & set(model_bounds(model)))


def model_bounds(model: str) -> dict[str, tuple[float, float]]:
    """The free parameters and bounds of a named model (a copy of ``MODELS[model]``).

    Raises:
        ValueError: an unknown model name.

    Example:
        >>> sorted(set(model_bounds("cmr-chain")) - set(model_bounds("cmr")))
        ['Lff_b', 'Lff_f']
    """
    if not isinstance(model, str) or model not in MODELS:
        raise ValueError(f"model: expected one of {sorted(MODELS)}, got {model!r}")
    return dict(MODELS[model])

PEERS_POOLED: dict[str, float] = {
    "B_enc": 0.651409, "B_start": 0.280060, "B_rec": 0.712163, "Lfc": 0.386262, "Lcf": 0.668212,
    "P1": 1.133609, "P2": 0.766800, "T": 0.327777, "X1": 0.008254, "X2": 0.291160,
}
"""The pooled maximum-likelihood fit to all 126 PEERS subjects (experiment ``free-recall``,
full profile, seed 0; log-likelihood -79138.1 over 41031 events), rounded to 6 decimals:
a typical starting point for short searches (``fit(..., x0=...)``)."""

# An objective value for parameter sets whose likelihood is undefined (e.g. Lfc = 1 with
# Dfc = 1 - Lfc leaves an item with no context to retrieve): finite, so the population's
# spread (the convergence test) stays defined.
_BAD = 1e12


@dataclass(frozen=True)
class ListGroup:
    """Lists of one length, ready for the likelihood.

    Attributes:
        list_length: ``L``.
        recalls: 0-based serial positions in output order, ``-1`` padded. Shape ``[N, K]``.
        n_recall: recalls per list. Shape ``[N]``.
        subjects: subject of each list. Shape ``[N]``.
        lists: list number of each list. Shape ``[N]``.
        similarity: semantic similarity matrix of each list's items in serial order, or
            None (then models with ``Scf`` / ``Sff`` cannot be evaluated). Shape ``[N, L, L]``.
    """

    list_length: int
    recalls: np.ndarray
    n_recall: np.ndarray
    subjects: np.ndarray
    lists: np.ndarray
    similarity: np.ndarray | None = None

    def __post_init__(self) -> None:
        check_int(self.list_length, "list_length", minimum=1)
        for name in ("recalls", "n_recall", "subjects", "lists"):
            if not isinstance(getattr(self, name), np.ndarray):
                raise TypeError(f"ListGroup.{name}: expected a numpy array")
        if self.recalls.ndim != 2 or self.recalls.shape[1] < 1:
            raise ValueError(f"ListGroup.recalls: expected shape [N, K >= 1], got {self.recalls.shape}")
        n = self.recalls.shape[0]
        if self.n_recall.shape != (n,) or self.subjects.shape != (n,) or self.lists.shape != (n,):
            raise ValueError(f"ListGroup: n_recall, subjects and lists must have shape ({n},)")
        _check_recalls(torch.from_numpy(self.recalls), torch.from_numpy(self.n_recall), self.list_length)
        if self.similarity is not None:
            if not isinstance(self.similarity, np.ndarray):
                raise TypeError("ListGroup.similarity: expected a numpy array or None")
            check_similarity(self.similarity, n, self.list_length, name="ListGroup.similarity")

    def take(self, mask: np.ndarray) -> ListGroup:
        """The lists where ``mask`` is true."""
        n = self.n_recall[mask]
        k = max(int(n.max()) if n.size else 0, 1)
        sim = None if self.similarity is None else self.similarity[mask]
        return ListGroup(self.list_length, self.recalls[mask][:, :k], n, self.subjects[mask], self.lists[mask], sim)


@dataclass(frozen=True)
class RecallData:
    """Free-recall data grouped by list length (from :func:`prepare_data`).

    Attributes:
        groups: one :class:`ListGroup` per list length.
        pool_size: item units of cymr's context (see :func:`kvmem.paradigms.free_recall.study`);
            None: the list length.
    """

    groups: tuple[ListGroup, ...]
    pool_size: int | None = None

    @property
    def n_lists(self) -> int:
        """Number of lists."""
        return int(sum(len(g.n_recall) for g in self.groups))

    @property
    def n_events(self) -> int:
        """Number of modelled events: every recall plus one stop per list."""
        return int(sum(g.n_recall.sum() + len(g.n_recall) for g in self.groups))

    @property
    def subjects(self) -> list[Any]:
        """Subjects in order of first appearance."""
        seen: dict[Any, None] = {}
        for g in self.groups:
            for s in g.subjects.tolist():
                seen.setdefault(s, None)
        return list(seen)

    def subset(self, subjects: Sequence[Any]) -> RecallData:
        """The lists of ``subjects`` only.

        Raises:
            ValueError: a subject has no lists.
        """
        wanted = list(subjects)
        known = set(self.subjects)
        missing = [s for s in wanted if s not in known]
        if missing:
            raise ValueError(f"subjects: no lists for {missing}")
        groups = []
        for g in self.groups:
            mask = np.isin(g.subjects, np.asarray(wanted, dtype=g.subjects.dtype))
            if mask.any():
                groups.append(g.take(mask))
        return RecallData(tuple(groups), self.pool_size)


def load_sample(name: str = "peers_notask") -> Any:
    """A free-recall data set shipped with psifr, as psifr's long table.

    Args:
        name: ``"peers_notask"`` (PEERS, no-task condition: 126 subjects x 28 lists of 16
            words) or ``"Morton2013"`` (40 subjects x 48 lists of 24 words).

    Raises:
        ValueError: an unknown name.
    """
    if name not in ("peers_notask", "Morton2013"):
        raise ValueError(f"name: expected 'peers_notask' or 'Morton2013', got {name!r}")
    from psifr import fr

    return fr.sample_data(name)


def prepare_data(table: Any, *, pool_size: int | None = None,
                 word_vectors: tuple[Sequence[str], Any] | None = None) -> RecallData:
    """Group a psifr long table into padded recall sequences for the likelihood.

    Intrusions and repeats are dropped (as in cymr); a list keeps its other recalls.

    Args:
        table: ``pandas.DataFrame`` with columns subject, list, position, trial_type, item.
        pool_size: see :class:`RecallData`.
        word_vectors: ``(words, vectors)`` (e.g. :func:`kvmem.data.semantic.load_word_vectors`):
            each list's semantic similarity matrix is computed from its study items
            (:func:`kvmem.data.semantic.semantic_similarity`), for models with ``Scf`` or
            ``Sff``. None: no similarities.

    Raises:
        TypeError: not a DataFrame.
        ValueError: missing columns, no study rows, an item studied twice in one list, or
            study positions that are not ``1..L``.

    Example:
        >>> import pandas as pd
        >>> t = pd.DataFrame({"subject": 1, "list": 1, "trial_type": ["study"] * 3 + ["recall"] * 3,
        ...                   "position": [1, 2, 3, 1, 2, 3], "item": ["a", "b", "c", "c", "x", "a"]})
        >>> g = prepare_data(t).groups[0]
        >>> g.list_length, g.recalls.tolist(), g.n_recall.tolist()  # the intrusion "x" is dropped
        (3, [[2, 0]], [2])
    """
    import pandas as pd
    from psifr import fr

    if not isinstance(table, pd.DataFrame):
        raise TypeError(f"table: expected a pandas DataFrame in psifr's format, got {type(table).__name__}")
    need = {"subject", "list", "position", "trial_type", "item"}
    missing = sorted(need - set(table.columns))
    if missing:
        raise ValueError(f"table: missing columns {missing} (psifr format: subject, list, position, trial_type, item)")
    if pool_size is not None:
        pool_size = check_int(pool_size, "pool_size", minimum=1)
    study_rows = table[table["trial_type"] == "study"]
    if study_rows.empty:
        raise ValueError("table: no study rows")
    if study_rows.duplicated(["subject", "list", "item"]).any():
        raise ValueError("table: an item is studied twice in one list (CMR here assumes distinct list items)")
    sizes = study_rows.groupby(["subject", "list"])["position"].agg(["size", "min", "max", "nunique"])
    bad = sizes[(sizes["min"] != 1) | (sizes["max"] != sizes["size"]) | (sizes["nunique"] != sizes["size"])]
    if len(bad):
        raise ValueError(f"table: study positions must run 1..L in each list; not so for {bad.index[0]}")
    merged = fr.merge_free_recall(table[list(need)])
    merged = merged[merged["study"] & ~merged["intrusion"] & (merged["repeat"] == 0)]
    keys = sizes.index.to_frame(index=False)
    keys["list_length"] = sizes["size"].to_numpy()
    groups = []
    for length, part in keys.groupby("list_length", sort=True):
        part = part.reset_index(drop=True)
        code = pd.MultiIndex.from_frame(part[["subject", "list"]])
        rec = merged[merged["recall"].astype(bool)]
        rec = rec.set_index(["subject", "list"])
        rec = rec[rec.index.isin(code)].reset_index().sort_values(["subject", "list", "output"])
        row = code.get_indexer(pd.MultiIndex.from_frame(rec[["subject", "list"]]))
        order = rec.groupby(["subject", "list"]).cumcount().to_numpy()
        n_rec = np.bincount(row, minlength=len(part)).astype(np.int64)
        k = max(int(n_rec.max()) if len(n_rec) else 0, 1)
        recalls = np.full((len(part), k), -1, dtype=np.int64)
        recalls[row, order] = rec["input"].to_numpy().astype(np.int64) - 1
        sim = None
        if word_vectors is not None:
            sim = _list_similarity(study_rows, code, int(length), word_vectors)
        groups.append(ListGroup(int(length), recalls, n_rec, part["subject"].to_numpy(), part["list"].to_numpy(),
                                sim))
    return RecallData(tuple(groups), pool_size)


def _list_similarity(study_rows: Any, code: Any, length: int, word_vectors: Any) -> np.ndarray:
    """Similarity matrices ``[N, L, L]`` of the study items of the lists in ``code`` (in its order)."""
    import pandas as pd

    from ..data.semantic import semantic_similarity

    if not isinstance(word_vectors, (tuple, list)) or len(word_vectors) != 2:
        raise TypeError("word_vectors: expected a pair (words, vectors)")
    words, vectors = word_vectors
    st = study_rows.set_index(["subject", "list"])
    st = st[st.index.isin(code)].reset_index()
    st["_row"] = code.get_indexer(pd.MultiIndex.from_frame(st[["subject", "list"]]))
    st = st.sort_values(["_row", "position"])
    items = st["item"].astype(str).to_numpy(dtype=object).reshape(len(code), length)
    return semantic_similarity(items, words, vectors).numpy()


def log_likelihood(params: Any, data: RecallData, *, per_list: bool = False,
                   chunk: int = 1 << 12) -> torch.Tensor:
    """Log-likelihood of all recall sequences (stop events included) for ``P`` parameter sets.

    Args:
        params: parameter set(s), anything :func:`kvmem.paradigms.free_recall.param_batch` accepts.
        data: prepared data (:func:`prepare_data`).
        per_list: return one value per list (in group order) instead of the sum.
        chunk: the most (parameter set, list) pairs evaluated together; bounds memory.

    Shapes:
        Returns ``[P]`` (float64), or ``[P, n_lists]`` with ``per_list``.

    Raises:
        TypeError: ``data`` is not :class:`RecallData`.
    """
    if not isinstance(data, RecallData):
        raise TypeError(f"data: expected RecallData (see prepare_data), got {type(data).__name__}")
    p = param_batch(params)
    if any(_semantic(p)) and any(g.similarity is None for g in data.groups):
        raise ValueError("data: the semantic weights Scf / Sff are non-zero but the data have no similarity "
                         "matrices (prepare_data(..., word_vectors=...))")
    return _log_likelihood(p, data, per_list, check_int(chunk, "chunk", minimum=1))


def _log_likelihood(p: dict[str, torch.Tensor], data: RecallData, per_list: bool = False,
                    chunk: int = 1 << 12) -> torch.Tensor:
    """:func:`log_likelihood` on a checked parameter batch."""
    P = p["T"].numel()
    parts = []
    for g in data.groups:
        pool = g.list_length if data.pool_size is None else data.pool_size
        if pool < g.list_length:
            raise ValueError(f"data.pool_size = {pool} is smaller than a list length ({g.list_length})")
        state = _study(p, g.list_length, pool)
        step = max(1, chunk // P)
        semantic = any(_semantic(p))
        for lo in range(0, len(g.n_recall), step):
            n = g.n_recall[lo:lo + step]
            k = max(int(n.max()), 1)
            sim = torch.from_numpy(g.similarity[lo:lo + step]) if semantic and g.similarity is not None else None
            lp = _recall_log_probs(state, p, torch.from_numpy(g.recalls[lo:lo + step, :k]), torch.from_numpy(n),
                                   sim=sim)
            parts.append(lp.sum(-1))
    per = torch.cat(parts, dim=1) if parts else torch.zeros(P, 0, dtype=torch.float64)
    return per if per_list else per.sum(-1)


def baseline_log_likelihood(data: RecallData) -> dict[Any, float]:
    """Log-likelihood per subject of a chance model with a fitted stop rule.

    Each recall is a uniform draw from the items not yet recalled; the stop probability
    at each output position is the subject's own stop frequency there (its maximum-
    likelihood value). A fit that does not beat this has learned nothing about order.

    Example:
        >>> g = ListGroup(2, np.array([[0, 1]]), np.array([2]), np.array([7]), np.array([1]))
        >>> round(baseline_log_likelihood(RecallData((g,)))[7], 4)  # 1/2 * 1 * stop at 2 = 1
        -0.6931
    """
    out: dict[Any, float] = {}
    for subj in data.subjects:
        logl = 0.0
        for g in data.subset([subj]).groups:
            L = g.list_length
            n = g.n_recall
            # Recall k (0-based) chooses among L - k items.
            logl -= float(sum(np.log(L - np.arange(int(m))).sum() for m in n))
            for k in range(L + 1):
                reached = int((n >= k).sum())
                stopped = int((n == k).sum())
                if k == L or reached == 0:
                    continue
                q = stopped / reached
                if 0 < q < 1:
                    logl += stopped * math.log(q) + (reached - stopped) * math.log(1 - q)
        out[subj] = logl
    return out


def expand_params(values: Mapping[str, float], *, fixed: Mapping[str, float] | None = None,
                  complementary: bool = True) -> CMRParams:
    """A full :class:`CMRParams` from free values, fixed values and the dependent ones.

    With ``complementary``, ``Dfc = 1 - Lfc`` and ``Dcf = 1 - Lcf`` (unless fixed), and
    ``Afc = Acf = 0`` unless given.

    Example:
        >>> expand_params({"Lfc": 0.25, "Lcf": 0.5}).Dfc
        0.75
    """
    full: dict[str, float] = {"Afc": 0.0, "Acf": 0.0}
    full.update(fixed or {})
    full.update(values)
    if complementary:
        full.setdefault("Dfc", 1.0 - full.get("Lfc", CMRParams.Lfc))
        full.setdefault("Dcf", 1.0 - full.get("Lcf", CMRParams.Lcf))
    unknown = sorted(set(full) - set(PARAM_NAMES))
    if unknown:
        raise ValueError(f"unknown parameter names {unknown}")
    return CMRParams(**{k: float(v) for k, v in full.items()})


@dataclass
class FitResult:
    """A maximum-likelihood fit.

    Attributes:
        params: the best parameters (free, fixed and dependent).
        logl: their log-likelihood.
        n: number of events fitted.
        k: number of free parameters.
        nfev: likelihood evaluations (parameter sets).
        nit: generations of differential evolution.
        success: whether it converged within ``maxiter``.
        seconds: wall time of the search.
        cpu_seconds: processor time of the search (this process; robust to a busy machine).
        free: names of the free parameters.
    """

    params: CMRParams
    logl: float
    n: int
    k: int
    nfev: int
    nit: int
    success: bool
    seconds: float
    cpu_seconds: float = 0.0
    free: tuple[str, ...] = field(default_factory=tuple)

    def row(self) -> dict[str, Any]:
        """A flat dict (parameters and fit statistics) for a table."""
        return {**self.params.to_dict(), "logl": self.logl, "n": self.n, "k": self.k, "nfev": self.nfev,
                "nit": self.nit, "success": self.success, "seconds": self.seconds,
                "cpu_seconds": self.cpu_seconds}


def _check_bounds(free: Mapping[str, tuple[float, float]], fixed: Mapping[str, float]) -> None:
    if not free:
        raise ValueError("free: expected at least one free parameter")
    for name, b in free.items():
        if name not in PARAM_NAMES:
            raise ValueError(f"free: unknown parameter {name!r}; known: {', '.join(PARAM_NAMES)}")
        if (not isinstance(b, (tuple, list)) or len(b) != 2 or not all(isinstance(x, (int, float)) for x in b)
                or not math.isfinite(b[0]) or not math.isfinite(b[1]) or b[0] >= b[1]):
            raise ValueError(f"free[{name!r}]: expected bounds (low, high) with low < high, got {b!r}")
    both = sorted(set(free) & set(fixed))
    if both:
        raise ValueError(f"fixed: {both} are also free")
    for name in fixed:
        if name not in PARAM_NAMES:
            raise ValueError(f"fixed: unknown parameter {name!r}")


@contextlib.contextmanager
def _one_thread() -> Iterator[None]:
    # Many tiny products per generation: a second thread only adds synchronisation, and
    # one thread fixes the reduction order, so a seed gives the same fit anywhere.
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def fit(data: RecallData, *, free: Mapping[str, tuple[float, float]] | None = None,
        fixed: Mapping[str, float] | None = None, complementary: bool = True, maxiter: int = 200,
        popsize: int = 15, tol: float = 0.01, atol: float = 0.0, seed: int = 0, init: Any = "latinhypercube",
        mutation: Any = (0.5, 1.0), recombination: float = 0.7,
        x0: Mapping[str, float] | None = None) -> FitResult:
    """Maximum-likelihood CMR parameters by differential evolution.

    Args:
        data: prepared data (:func:`prepare_data`), one subject or many (pooled).
        free: free parameters and their bounds (default :data:`DEFAULT_BOUNDS`).
        fixed: fixed values of other parameters.
        complementary: tie ``Dfc = 1 - Lfc`` and ``Dcf = 1 - Lcf`` (see :func:`expand_params`).
        maxiter, popsize, tol, atol, mutation, recombination: as in
            ``scipy.optimize.differential_evolution`` (``polish`` is off: the batched
            population evaluation is what makes the search cheap).
        seed: seed of the search.
        init: DE's ``init`` (a method name or an initial population ``[S, k]``).
        x0: a starting parameter set (values of the free parameters, clipped to the bounds),
            which replaces the first member of DE's first population (e.g. :data:`PEERS_POOLED`).

    Returns:
        :class:`FitResult`.

    Raises:
        ValueError: bad bounds, unknown names, parameters both free and fixed.
    """
    from scipy.optimize import differential_evolution

    if not isinstance(data, RecallData):
        raise TypeError(f"data: expected RecallData (see prepare_data), got {type(data).__name__}")
    free = dict(DEFAULT_BOUNDS if free is None else free)
    fixed = dict(fixed or {})
    _check_bounds(free, fixed)
    if ({"Scf", "Sff"} & set(free) or any(fixed.get(n, 0) != 0 for n in ("Scf", "Sff"))) and any(
            g.similarity is None for g in data.groups):
        raise ValueError("data: the model has semantic weights (Scf / Sff) but the data have no similarity "
                         "matrices (prepare_data(..., word_vectors=...))")
    maxiter = check_int(maxiter, "maxiter", minimum=1)
    popsize = check_int(popsize, "popsize", minimum=1)
    seed = check_int(seed, "seed", minimum=0)
    names = tuple(free)
    # Defaults, then Afc = Acf = 0, then the fixed values; free and dependent ones per member.
    base = expand_params({}, fixed=fixed, complementary=False).to_dict()
    dependent = complementary
    # Within these bounds every member is a valid parameter set (rates in [0, 1], T > 0,
    # X1 >= 0), so the per-generation call can skip param_batch's checks.
    checked = all(_inside_domain(n, *free[n]) for n in names)

    def batch(x: np.ndarray) -> dict[str, np.ndarray]:
        cols = {n: x[i] for i, n in enumerate(names)}
        out = {n: np.full(x.shape[1], v) for n, v in base.items()}
        out.update(cols)
        if dependent:
            if "Dfc" not in fixed and "Dfc" not in cols:
                out["Dfc"] = 1.0 - out["Lfc"]
            if "Dcf" not in fixed and "Dcf" not in cols:
                out["Dcf"] = 1.0 - out["Lcf"]
        return out

    evaluated = [0]

    def objective(x: np.ndarray) -> np.ndarray:
        x = np.asarray(x, dtype=np.float64)
        if x.ndim == 1:  # one member: shape [k]
            x = x[:, None]
        evaluated[0] += x.shape[1]
        values = batch(x)
        if checked:
            ll = _log_likelihood({k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in values.items()}, data).numpy()
        else:
            try:
                ll = log_likelihood(values, data).numpy()
            except ValueError:  # a member outside a parameter's domain
                return np.full(x.shape[1], _BAD)
        return np.where(np.isfinite(ll), -ll, _BAD)

    if x0 is not None:
        missing = [n for n in names if n not in x0]
        if missing:
            raise ValueError(f"x0: no values for the free parameters {missing}")
        x0 = np.clip([float(x0[n]) for n in names], [free[n][0] for n in names], [free[n][1] for n in names])
    start, cpu_start = time.perf_counter(), time.process_time()
    with _one_thread():
        res = differential_evolution(objective, [free[n] for n in names], maxiter=maxiter, popsize=popsize, tol=tol, atol=atol,
                                     seed=np.random.default_rng(seed), init=init, mutation=mutation,
                                     recombination=recombination, polish=False, vectorized=True,
                                     updating="deferred", x0=x0)
    seconds, cpu = time.perf_counter() - start, time.process_time() - cpu_start
    best = {n: float(v) for n, v in zip(names, np.atleast_1d(res.x))}
    params = expand_params(best, fixed=fixed, complementary=complementary)
    logl = float(log_likelihood(params, data)[0])
    return FitResult(params=params, logl=logl, n=data.n_events, k=len(names), nfev=evaluated[0], nit=int(res.nit),
                     success=bool(res.success), seconds=seconds, cpu_seconds=cpu, free=names)


def _inside_domain(name: str, low: float, high: float) -> bool:
    """Whether every value in ``[low, high]`` is valid for parameter ``name``."""
    if name in _RATES:
        return low >= 0.0 and high <= 1.0
    if name == "T":
        return low > 0.0
    if name in ("X1", "Lff_f", "Lff_b", "Scf", "Sff"):
        return low >= 0.0
    return True


def _fit_task(data: RecallData, kwargs: dict[str, Any]) -> FitResult:
    """One subject's fit (a top-level function, so Dask can pickle it)."""
    return fit(data, **kwargs)


def fit_subjects(data: RecallData, subjects: Sequence[Any] | None = None, *, workers: int | None = None,
                 seed: int = 0, on_result: Callable[[Any, FitResult], None] | None = None,
                 x0_by_subject: Mapping[Any, Mapping[str, float]] | None = None,
                 **fit_kwargs: Any) -> dict[Any, FitResult]:
    """Fit each subject separately, in parallel through the sweep runner's executor.

    Args:
        data: prepared data with several subjects.
        subjects: which subjects (default all, in order of appearance).
        workers: None: one after another in this process; ``N``: a Dask ``LocalCluster``
            of ``N`` single-threaded workers (:func:`kvmem.runner.executor.open_executor`).
        seed: base seed; subject ``i`` (in the order given) is searched with a seed derived
            from ``(seed, i)``, so results do not depend on the backend or completion order.
        on_result: called as ``on_result(subject, result)`` as each fit completes.
        x0_by_subject: a starting parameter set per subject (``fit``'s ``x0``, e.g. each
            subject's fit of a nested model); overrides ``x0`` in ``fit_kwargs``.
        **fit_kwargs: passed to :func:`fit`.

    Returns:
        ``{subject: FitResult}`` in the order of ``subjects``.

    Raises:
        ValueError: unknown subjects; the first failed fit's error is re-raised.
    """
    from ..runner.executor import Call, open_executor

    subjects = data.subjects if subjects is None else list(subjects)
    seed = check_int(seed, "seed", minimum=0)
    if x0_by_subject is not None:
        missing = [s for s in subjects if s not in x0_by_subject]
        if missing:
            raise ValueError(f"x0_by_subject: no starting point for subjects {missing}")
    calls = []
    for i, subj in enumerate(subjects):
        sub_seed = int(np.random.SeedSequence([seed, i]).generate_state(1)[0])
        kwargs = {**fit_kwargs, "seed": sub_seed}
        if x0_by_subject is not None:
            kwargs["x0"] = dict(x0_by_subject[subj])
        calls.append(Call(subj, (data.subset([subj]), kwargs)))
    results: dict[Any, FitResult] = {}
    with open_executor(workers=workers) as ex:
        for outcome in ex.imap_unordered(_fit_task, calls):
            results[outcome.key] = outcome.unwrap()
            if on_result is not None:
                on_result(outcome.key, results[outcome.key])
    return {s: results[s] for s in subjects}
