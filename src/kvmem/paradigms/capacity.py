"""The capacity paradigm: store P patterns, probe with corrupted cues, score, find P*.

Works with any kvmem memory. Autoassociative models with ``retrieve`` (the Hopfield
family, SDM) run their dynamics from the cue; the others (``SlotMemory``,
``MatrixMemory``) store each pattern as both key and value and answer with one ``read``.
Trials are a leading batch dimension, so hundreds of trials run in one call.

Scoring depends on the pattern kind:

- ``bipolar`` (+-1): the output is decoded by sign (0 -> +1); bit error = fraction of wrong
  entries, overlap m = (1/N) sum_i s_i xi_i, exact = no wrong entry.
- ``sparse`` ({0, 1} with coding level f): decoded by ``out > 0.5``; overlap is the
  correlation of the decoded pattern with the stored one, centred at f.
- ``gaussian``: no decoding; bit error is replaced by the relative error
  |out - xi| / |xi|, overlap by the cosine, exact means relative error <= 1e-6.

A :class:`Criterion` names the success rule of one probe ("bit error <= 1%"); capacity P*
is the largest P whose success rate reaches ``level``.

Example:
    >>> import kvmem
    >>> from kvmem.paradigms import capacity
    >>> crit = capacity.Criterion("bit_error", 0.01)
    >>> r = capacity.probe(lambda n: kvmem.SlotMemory("dot", "hardmax"), n=32, p=20, trials=5, criterion=crit)
    >>> float(r["success"].mean())
    1.0
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

import pandas as pd
import torch

from .._checks import check_int, make_generator

PatternKind = Literal["bipolar", "sparse", "gaussian"]
KINDS = ("bipolar", "sparse", "gaussian")
METRICS = ("bit_error", "overlap", "exact")


@dataclass(frozen=True)
class Criterion:
    """When a single probe counts as recalled.

    Args:
        metric: ``"bit_error"`` (success when <= threshold), ``"overlap"`` (success when
            >= threshold) or ``"exact"`` (threshold ignored).
        threshold: the named threshold, e.g. 0.01 for "at most 1% wrong bits".
        level: the success rate (fraction of probes meeting the threshold, averaged over
            trials) that a number of patterns P must reach to count as within capacity;
            used by :func:`find_capacity` when ``over="probes"``.
        over: how :func:`find_capacity` judges a P. ``"probes"``: the per-probe success rate
            must reach ``level``. ``"mean"``: the metric averaged over every probe and trial
            must meet ``threshold`` (``level`` unused), e.g. "mean bit-error rate <= 1%",
            the quantity of signal-to-noise analyses. At small N a per-probe 1% threshold
            means zero wrong bits, which adds a log N factor to P*; the mean does not.
    """

    metric: str = "bit_error"
    threshold: float = 0.01
    level: float = 0.5
    over: str = "probes"

    def __post_init__(self):
        if self.metric not in METRICS:
            raise ValueError(f"metric: expected one of {METRICS}, got {self.metric!r}")
        if not 0.0 <= self.level <= 1.0:
            raise ValueError(f"level: expected a success rate in [0, 1], got {self.level}")
        if self.over not in ("probes", "mean"):
            raise ValueError(f"over: expected 'probes' or 'mean', got {self.over!r}")
        if self.over == "mean" and self.metric == "exact":
            raise ValueError("over: 'mean' needs metric 'bit_error' or 'overlap', not 'exact'")

    @property
    def name(self) -> str:
        """A readable name, e.g. ``bit_error<=0.01`` or ``mean bit_error<=0.01``."""
        if self.metric == "exact":
            return "exact"
        op = "<=" if self.metric == "bit_error" else ">="
        prefix = "mean " if self.over == "mean" else ""
        return f"{prefix}{self.metric}{op}{self.threshold:g}"

    def holds(self, table: pd.DataFrame) -> bool:
        """Whether a :func:`probe` table counts as within capacity under this criterion."""
        if self.over == "probes":
            return float(table["success"].mean()) >= self.level
        value = float(table[self.metric].mean())
        return value <= self.threshold if self.metric == "bit_error" else value >= self.threshold

    def success(self, scores: dict[str, torch.Tensor]) -> torch.Tensor:
        """Boolean success per probe from the scores of :func:`score`."""
        if self.metric == "exact":
            return scores["exact"]
        if self.metric == "bit_error":
            return scores["bit_error"] <= self.threshold
        return scores["overlap"] >= self.threshold


def make_patterns(
    trials: int,
    p: int,
    n: int,
    kind: PatternKind = "bipolar",
    *,
    coding_level: float = 0.5,
    seed: int | torch.Generator | None = 0,
    dtype: torch.dtype = torch.float32,
) -> torch.Tensor:
    """Random patterns ``[trials, p, n]``: +-1, {0, 1} with P(1) = coding_level, or N(0, 1)."""
    trials, p, n = check_int(trials, "trials"), check_int(p, "p"), check_int(n, "n")
    if kind not in KINDS:
        raise ValueError(f"kind: expected one of {KINDS}, got {kind!r}")
    if not 0.0 < coding_level < 1.0:
        raise ValueError(f"coding_level: expected a value in (0, 1), got {coding_level}")
    gen = make_generator(seed)
    if kind == "gaussian":
        return torch.randn(trials, p, n, generator=gen, dtype=dtype)
    u = torch.rand(trials, p, n, generator=gen, dtype=torch.float64)
    if kind == "sparse":
        return (u < coding_level).to(dtype)
    return torch.where(u < 0.5, 1.0, -1.0).to(dtype)


def decode(output: torch.Tensor, kind: PatternKind) -> torch.Tensor:
    """Map a memory's output back onto the pattern alphabet (see the module docstring)."""
    if kind == "bipolar":
        return torch.where(output >= 0, 1.0, -1.0).to(output.dtype)
    if kind == "sparse":
        return (output > 0.5).to(output.dtype)
    return output


def score(output: torch.Tensor, target: torch.Tensor, kind: PatternKind, *, coding_level: float = 0.5) -> dict[str, torch.Tensor]:
    """Per-probe scores ``[..., P]``: bit_error, overlap and exact (see the module docstring)."""
    if output.shape != target.shape:
        raise ValueError(f"output: expected shape {tuple(target.shape)}, got {tuple(output.shape)}")
    if kind == "gaussian":
        rel = (output - target).norm(dim=-1) / target.norm(dim=-1).clamp_min(1e-12)
        cos = torch.nn.functional.cosine_similarity(output, target, dim=-1)
        return {"bit_error": rel, "overlap": cos, "exact": rel <= 1e-6}
    decoded = decode(output, kind)
    wrong = (decoded != target).to(torch.float64).mean(-1)
    if kind == "bipolar":
        overlap = (decoded * target).to(torch.float64).mean(-1)
    else:
        f = coding_level
        overlap = ((decoded - f) * (target - f)).to(torch.float64).mean(-1) / (f * (1 - f))
    return {"bit_error": wrong, "overlap": overlap, "exact": wrong == 0}


def recall(
    memory: Any,
    patterns: torch.Tensor,
    cues: torch.Tensor,
    *,
    steps: int = 100,
    clamp: torch.Tensor | None = None,
    **retrieve_kwargs: Any,
) -> torch.Tensor:
    """Store ``patterns`` in ``memory`` and answer each cue: dynamics if it has them, else one read.

    ``retrieve_kwargs`` (e.g. ``mode="async"``) go to ``retrieve``; a memory without
    dynamics rejects them.
    """
    if hasattr(memory, "retrieve"):
        memory.write(patterns)
        kwargs = {"steps": steps, **retrieve_kwargs}
        if clamp is not None:
            kwargs["clamp"] = clamp
        return memory.retrieve(cues, **kwargs).states
    if retrieve_kwargs:
        raise TypeError(f"{type(memory).__name__} has no retrieve dynamics; unexpected {sorted(retrieve_kwargs)}")
    memory.write(patterns, patterns)
    return memory.read(cues)


def probe(
    factory: Callable[[int], Any],
    *,
    n: int,
    p: int,
    trials: int = 100,
    kind: PatternKind = "bipolar",
    coding_level: float = 0.5,
    corrupt: Callable[[torch.Tensor, torch.Generator], torch.Tensor] | None = None,
    criterion: Criterion = Criterion(),
    steps: int = 100,
    seed: int = 0,
    max_probes: int | None = None,
    device: Any = None,
    **retrieve_kwargs: Any,
) -> pd.DataFrame:
    """Store ``p`` random patterns in ``trials`` memories and probe each with a (corrupted) cue.

    Args:
        factory: ``factory(n) -> memory``; called once, the memory holds all trials.
        n: pattern dimension N.
        p: patterns stored per trial P.
        trials: independent memories (the leading batch dimension).
        kind, coding_level: the patterns (see :func:`make_patterns`).
        corrupt: ``corrupt(patterns, generator) -> cues``; None probes with the patterns.
        criterion: the success rule of a probe.
        steps: most iterations of the dynamics.
        seed: seeds patterns and corruption.
        max_probes: probe only the first ``max_probes`` stored patterns of each trial
            (None: all P). Patterns are exchangeable, so this estimates the same rates at a
            cost that does not grow with P: dense associative memories at P >> N need it.
        device: where the memory writes and runs its dynamics (None: the CPU). Patterns
            and cues are drawn and scored on the CPU, so a seed gives the same probes on
            every device.
        **retrieve_kwargs: passed on to ``retrieve`` (e.g. ``mode="async"``, ``seed``).

    Returns:
        One row per trial: n, p, alpha = p / n, bit_error, overlap, exact (means over the
        trial's P probes), success (fraction of probes meeting the criterion).
    """
    gen = make_generator(seed)
    patterns = make_patterns(trials, p, n, kind, coding_level=coding_level, seed=gen)
    m = p if max_probes is None else min(p, check_int(max_probes, "max_probes"))
    targets = patterns[..., :m, :]
    cues = targets if corrupt is None else corrupt(targets, gen)
    memory = factory(n)
    if device is None:
        out = recall(memory, patterns, cues, steps=steps, **retrieve_kwargs)
    else:
        device = torch.device(device)
        if hasattr(memory, "to"):
            memory = memory.to(device)  # buffers drawn at construction (SDM addresses) too
        out = recall(memory, patterns.to(device), cues.to(device), steps=steps, **retrieve_kwargs).cpu()
    scores = score(out, targets, kind, coding_level=coding_level)
    success = criterion.success(scores)
    return pd.DataFrame(
        {
            "trial": range(trials),
            "n": n,
            "p": p,
            "alpha": p / n,
            "bit_error": scores["bit_error"].mean(-1).cpu().numpy(),
            "overlap": scores["overlap"].mean(-1).cpu().numpy(),
            "exact": scores["exact"].to(torch.float64).mean(-1).cpu().numpy(),
            "success": success.to(torch.float64).mean(-1).cpu().numpy(),
        }
    )


def capacity_curve(factory: Callable[[int], Any], *, n: int, ps: list[int] | tuple[int, ...], **kwargs: Any) -> pd.DataFrame:
    """:func:`probe` at every P in ``ps``, averaged over trials: one row per P (``kwargs``,
    ``device=`` included, go to :func:`probe`)."""
    rows = []
    for i, p in enumerate(ps):
        kwargs.setdefault("seed", 0)
        table = probe(factory, n=n, p=p, **{**kwargs, "seed": kwargs["seed"] + i})
        rows.append(table.drop(columns="trial").mean(numeric_only=True).to_dict() | {"trials": len(table)})
    out = pd.DataFrame(rows)
    out[["n", "p"]] = out[["n", "p"]].astype(int)
    return out


def find_capacity(
    factory: Callable[[int], Any],
    *,
    n: int,
    criterion: Criterion = Criterion(),
    lo: int = 1,
    hi: int | None = None,
    **kwargs: Any,
) -> tuple[int, pd.DataFrame]:
    """Largest P in [lo, hi] within capacity under ``criterion`` (:meth:`Criterion.holds`), by bisection.

    Assumes recall gets worse as P grows. Returns (P*, the table of every P probed); P* = lo - 1
    when even ``lo`` fails. ``kwargs`` (``device=`` included) go to :func:`probe`.
    """
    hi = 2 * n if hi is None else hi
    if not 1 <= lo <= hi:
        raise ValueError(f"lo, hi: expected 1 <= lo <= hi, got lo={lo}, hi={hi}")
    probed: dict[int, bool] = {}
    rows = []

    def ok(p: int) -> bool:
        if p not in probed:
            table = probe(factory, n=n, p=p, criterion=criterion, **kwargs)
            probed[p] = criterion.holds(table)
            rows.append({
                "p": p, "alpha": p / n, "success": float(table["success"].mean()),
                "bit_error": float(table["bit_error"].mean()), "overlap": float(table["overlap"].mean()),
                "within": probed[p],
            })
        return probed[p]

    if not ok(lo):
        return lo - 1, pd.DataFrame(rows)
    if ok(hi):
        return hi, pd.DataFrame(rows)
    good, bad = lo, hi
    while bad - good > 1:
        mid = (good + bad) // 2
        if ok(mid):
            good = mid
        else:
            bad = mid
    return good, pd.DataFrame(rows).sort_values("p", ignore_index=True)


def expected_hebbian_bit_error(n: int, p: int, *, zero_diagonal: bool = True) -> float:
    """One-step bit-error rate of a Hebbian memory probed with a stored +-1 pattern.

    Signal-to-noise with Gaussian crosstalk (Amit, Gutfreund & Sompolinsky 1985; Hertz,
    Krogh & Palmer 1991): with a zero diagonal the error is Phi(-sqrt(N / (P - 1))); with the
    self-couplings kept (``MatrixMemory`` with keys = values), each of the P - 1 other
    patterns adds +xi_i to the signal, giving Phi(-(N + P - 1) / sqrt((P - 1)(N - 1))).
    """
    if p <= 1:
        return 0.0
    z = math.sqrt(n / (p - 1)) if zero_diagonal else (n + p - 1) / math.sqrt((p - 1) * (n - 1))
    return 0.5 * math.erfc(z / math.sqrt(2.0))
