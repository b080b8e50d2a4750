"""Experiment ``separation-robustness``: max separation is ideal without noise, fragile with it.

The review (Gershman, Fiete & Irie 2025, Sec. 2.1, after Millidge et al. 2022) states that
without noise the ideal separation function is max, which always returns the value of the
matching key, but that max is not robust to noise, so a memory must trade separability
against robustness. This experiment measures that trade-off for a single-shot
auto-associative memory (a universal Hopfield network, Millidge et al. 2022)

    z = w(q) K,   w(q) = sep(sim(q, K)) / sum_n sep(sim(q, K))_n,

where the rows of K are the P stored items, q is a corrupted copy of one of them and the
weights are renormalised to sum to one so that every output lies on the items' own scale
(for softmax, hard max and top-k this changes nothing; for the identity separation it is
the linear-attention normaliser; threshold and polynomial use their ``normalize`` option;
the exponential separation is left as registered, largest weight 1).

Data: random binary patterns (entries 1 with probability ``density``) and scikit-learn's
bundled handwritten digits (1797 8x8 images, pixel values 0..16 divided by 16, so both data
sets live in [0, 1]^64). Each trial stores P items drawn at random (digits: without
replacement) and reads every one of them back from a corrupted cue:

- ``gaussian``: q = x + std * N(0, 1) per entry (:func:`kvmem.paradigms.gaussian_noise`);
- ``flip``: a fraction f of entries x -> 1 - x (positions from
  :func:`kvmem.paradigms.mask`; on binary patterns exactly
  :func:`kvmem.paradigms.flip_bits` with ``code="binary"``);
- ``mask``: a fraction f of entries set to 0 (:func:`kvmem.paradigms.mask`).

The same random draws serve every level of one corruption (common random numbers: the
Gaussian direction is shared, the corrupted positions are nested), so curves over the level
are smooth and every model sees exactly the same cues.

Scores per read: *accuracy* (z is nearer, in Euclidean distance, to the right stored item
than to any other: nearest-stored-item decoding), *mse* (mean squared error of z against
the right item, per entry) and *cosine* (cosine between z and the right item). A hard-max
read returns one stored item whole, so a wrong match costs a full inter-item distance;
a smoother read blends items and its error grows gradually. Trials are a leading batch
dimension and every table row carries the standard error of its mean over trials.

Two comparisons share one table:

- separation sweep: every separation of :mod:`kvmem.separation` (identity, softmax at
  several inverse temperatures, hard max, top-k, threshold, rectified polynomial,
  exponential) with the cosine similarity, whose self-match is exactly 1 for every item;
- similarity comparison (Millidge et al. 2022): dot, cosine, negative Euclidean and
  negative Manhattan similarity, each with hard max and the softmax grid.

Softmax, top-k and exponential inverse temperatures are given in units of 1/g, where g
is the mean score gap sim(x_i, x_i) - sim(x_i, x_j) (i != j) between a stored item's
match with itself and with another stored item, measured on the clean stored items of
that data set, P and similarity. This makes one beta comparable across similarities whose
scores have very different scales (a cosine lies in [-1, 1], a Manhattan distance of
64-entry items is tens).
"""

from __future__ import annotations

import functools
import math
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import pandas as pd
import torch

from .. import separation as _separation
from .. import similarity as _similarity
from ..paradigms import gaussian_noise, mask
from .base import Claim, Experiment, Progress, Result, register, resolve_device, torch_threads

DATASETS = ("random", "digits")
CORRUPTIONS = ("gaussian", "flip", "mask")
SIMILARITIES = ("dot", "cosine", "neg_euclidean", "neg_manhattan")
DISTANCE_SIMILARITIES = ("neg_euclidean", "neg_manhattan")
DIGITS_COUNT = 1797
DIGITS_DIM = 64
# Below this (relative) MSE advantage a smooth separation is not counted as beating max.
MSE_MARGIN = 0.8


@dataclass(frozen=True)
class Config:
    """Settings of ``separation-robustness``.

    Attributes:
        datasets: which data sets: ``"random"`` (binary patterns) and/or ``"digits"``
            (``sklearn.datasets.load_digits``).
        n_items: numbers P of items stored per trial (one block of rows per P).
        dim: dimension of the random patterns (the digits have 64 pixels).
        density: probability of a 1 in a random pattern, in (0, 1).
        trials: independent memories per condition (a batch dimension).
        corruptions: cue corruptions, from ``("gaussian", "flip", "mask")``.
        gaussian_levels: noise standard deviations for ``gaussian`` (>= 0).
        flip_levels: flipped fractions for ``flip`` (in [0, 1]; at 0.5 a binary cue is
            independent of its item, beyond it the cue is anti-correlated with it).
        mask_levels: masked fractions for ``mask`` (in [0, 1]).
        similarities: similarities of the comparison, from ``kvmem.similarity``.
        sweep_similarity: the similarity of the separation sweep (every separation).
        softmax_betas: softmax inverse temperatures in units of 1/g (see module doc).
        topk: k of the top-k separation.
        topk_beta: its inverse temperature, in units of 1/g.
        threshold: theta of the threshold separation, on the sweep similarity's scale
            (a cosine for the default).
        poly_ns: powers of the rectified-polynomial separation.
        exp_beta: inverse temperature of the exponential separation, in units of 1/g.
        device: torch device of the computation: 'cpu', 'cuda' or 'cuda:N'; random draws
            stay on the CPU, so results match across devices to rounding.
    """

    datasets: tuple[str, ...] = DATASETS
    n_items: tuple[int, ...] = (16, 64)
    dim: int = 64
    density: float = 0.5
    trials: int = 100
    corruptions: tuple[str, ...] = CORRUPTIONS
    gaussian_levels: tuple[float, ...] = (0.0, 0.1, 0.2, 0.35, 0.5, 0.75, 1.0, 1.5, 2.0)
    flip_levels: tuple[float, ...] = (0.0, 0.1, 0.2, 0.3, 0.35, 0.4)
    mask_levels: tuple[float, ...] = (0.0, 0.2, 0.4, 0.6, 0.8, 0.9, 0.95)
    similarities: tuple[str, ...] = SIMILARITIES
    sweep_similarity: str = "cosine"
    softmax_betas: tuple[float, ...] = (1.0, 3.0, 10.0, 30.0)
    topk: int = 3
    topk_beta: float = 3.0
    threshold: float = 0.75
    poly_ns: tuple[int, ...] = (3, 10)
    exp_beta: float = 10.0
    device: str = "cpu"


QUICK = Config(
    n_items=(16,),
    trials=24,
    gaussian_levels=(0.0, 0.35, 1.0, 2.0),
    flip_levels=(0.0, 0.2, 0.4),
    mask_levels=(0.0, 0.6, 0.95),
    softmax_betas=(1.0, 10.0),
    poly_ns=(3,),
)


def _fail(name: str, expected: str, got: Any) -> None:
    raise ValueError(f"{name}: expected {expected}, got {got!r}")


def _is_int(x: Any) -> bool:
    return isinstance(x, (int, np.integer)) and not isinstance(x, bool)


def _is_real(x: Any) -> bool:
    return isinstance(x, (int, float, np.integer, np.floating)) and not isinstance(x, bool) and math.isfinite(x)


def validate(config: Config) -> None:
    """Raise ``ValueError`` (naming the setting) for a config ``run`` cannot use.

    Args:
        config: the settings to check.

    Example:
        >>> import dataclasses
        >>> validate(dataclasses.replace(QUICK, trials=0))
        Traceback (most recent call last):
        ...
        ValueError: trials: expected an integer >= 2, got 0
    """
    if not isinstance(config, Config):
        raise TypeError(f"config: expected a separation_robustness.Config, got {type(config).__name__}")

    def names(field: str, allowed: tuple[str, ...]) -> None:
        value = getattr(config, field)
        if not isinstance(value, tuple) or not value or len(set(value)) != len(value) or any(v not in allowed for v in value):
            _fail(field, f"a non-empty tuple of distinct names from {allowed}", value)

    names("datasets", DATASETS)
    names("corruptions", CORRUPTIONS)
    known = tuple(_similarity.registry.names())
    names("similarities", known)
    if config.sweep_similarity not in known:
        _fail("sweep_similarity", f"one of {known}", config.sweep_similarity)
    for field, lo in (("trials", 2), ("dim", 2), ("topk", 1)):
        value = getattr(config, field)
        if not _is_int(value) or value < lo:
            _fail(field, f"an integer >= {lo}", value)
    max_items = DIGITS_COUNT if "digits" in config.datasets else 1_000_000
    if (not isinstance(config.n_items, tuple) or not config.n_items
            or any(not _is_int(n) or not 2 <= n <= max_items for n in config.n_items)):
        _fail("n_items", f"a non-empty tuple of integers in [2, {max_items}]", config.n_items)
    if not _is_real(config.density) or not 0 < config.density < 1:
        _fail("density", "a number in (0, 1)", config.density)
    for field, hi in (("gaussian_levels", math.inf), ("flip_levels", 1.0), ("mask_levels", 1.0)):
        value = getattr(config, field)
        if not isinstance(value, tuple) or not value or any(not _is_real(v) or not 0 <= v <= hi for v in value):
            _fail(field, f"a non-empty tuple of numbers in [0, {hi}]", value)
    if not isinstance(config.softmax_betas, tuple) or not config.softmax_betas or any(
        not _is_real(b) or b <= 0 for b in config.softmax_betas
    ):
        _fail("softmax_betas", "a non-empty tuple of numbers > 0", config.softmax_betas)
    for field in ("topk_beta", "exp_beta"):
        value = getattr(config, field)
        if not _is_real(value) or value <= 0:
            _fail(field, "a number > 0", value)
    if not _is_real(config.threshold):
        _fail("threshold", "a finite number", config.threshold)
    if not isinstance(config.poly_ns, tuple) or any(not _is_int(n) or n < 1 for n in config.poly_ns):
        _fail("poly_ns", "a tuple of integers >= 1", config.poly_ns)
    resolve_device(config.device)


@functools.lru_cache(maxsize=1)
def load_digits_unit() -> torch.Tensor:
    """scikit-learn's bundled digits as a ``[1797, 64]`` float32 tensor in [0, 1] (pixels / 16).

    Example:
        >>> x = load_digits_unit()
        >>> tuple(x.shape), float(x.min()), float(x.max())
        ((1797, 64), 0.0, 1.0)
    """
    from sklearn.datasets import load_digits

    data = load_digits().data.astype(np.float32) / 16.0
    return torch.from_numpy(data)


def _items(dataset: str, trials: int, n: int, config: Config, gen: torch.Generator) -> torch.Tensor:
    """Stored items ``[trials, n, D]`` in [0, 1]."""
    if dataset == "random":
        return (torch.rand(trials, n, config.dim, generator=gen) < config.density).float()
    digits = load_digits_unit()
    # An independent random subset per trial: the first n of a random permutation.
    idx = torch.rand(trials, digits.shape[0], generator=gen).argsort(dim=-1)[:, :n]
    return digits[idx]


def corrupt(x: torch.Tensor, kind: str, level: float, seed: int) -> torch.Tensor:
    """A corrupted copy of ``x`` (entries in [0, 1]); the same ``seed`` gives nested corruptions.

    Args:
        x: items ``[..., D]``.
        kind: ``"gaussian"`` (std ``level``), ``"flip"`` (fraction ``level`` of entries
            x -> 1 - x) or ``"mask"`` (fraction ``level`` of entries set to 0).
        level: the noise std or the corrupted fraction.
        seed: seed of the corruption's draws; one seed gives the same Gaussian direction,
            and nested corrupted positions, at every level.

    Shapes:
        x ``[..., D]`` -> ``[..., D]``.

    Example:
        >>> x = torch.ones(2, 10)
        >>> (corrupt(x, "flip", 0.3, seed=0) == 0).sum(-1).tolist()
        [3, 3]
    """
    if kind == "gaussian":
        return gaussian_noise(x, level, seed=seed)
    if kind not in ("flip", "mask"):
        raise ValueError(f"kind: expected one of {CORRUPTIONS}, got {kind!r}")
    hidden_filled, known = mask(x, level, seed=seed)
    return hidden_filled if kind == "mask" else torch.where(known, x, 1.0 - x)


def score_gap(similarity: Any, items: torch.Tensor) -> float:
    """g: mean of sim(x_i, x_i) - sim(x_i, x_j) over all trials and ordered pairs i != j.

    Args:
        similarity: a similarity spec.
        items: clean stored items ``[trials, P, D]`` with P >= 2.

    Example:
        >>> score_gap("dot", torch.eye(3)[None])
        1.0
    """
    s = _similarity.get(similarity)(items, items).double()
    p = s.shape[-1]
    diag = torch.diagonal(s, dim1=-2, dim2=-1)
    # Every row holds one self-match and p - 1 others.
    gap = (diag * p - s.sum(-1)) / (p - 1)
    return float(gap.mean())


def separations(config: Config, gap: float, full_sweep: bool) -> list[tuple[str, str, float, Any]]:
    """(label, kind, parameter, spec) of the separations read with one similarity.

    Inverse temperatures are converted from units of 1/g to raw ones with ``gap`` = g.
    ``full_sweep`` adds identity, top-k, threshold, polynomial and exponential to the
    hard max and softmax grid that every similarity gets.
    """
    out: list[tuple[str, str, float, Any]] = [("hardmax", "hardmax", math.inf, "hardmax")]
    for b in config.softmax_betas:
        out.append((f"softmax(b={b:g})", "softmax", float(b), {"name": "softmax", "beta": b / gap}))
    if full_sweep:
        out.append(("identity", "identity", math.nan, "identity"))
        out.append((f"topk(k={config.topk},b={config.topk_beta:g})", "topk", float(config.topk_beta),
                    {"name": "topk", "k": config.topk, "beta": config.topk_beta / gap}))
        out.append((f"threshold(t={config.threshold:g})", "threshold", float(config.threshold),
                    {"name": "threshold", "theta": config.threshold, "normalize": True}))
        for n in config.poly_ns:
            out.append((f"polynomial(n={n})", "polynomial", float(n), {"name": "polynomial", "n": n, "normalize": True}))
        out.append((f"exponential(b={config.exp_beta:g})", "exponential", float(config.exp_beta),
                    {"name": "exponential", "beta": config.exp_beta / gap}))
    return out


def read(similarity: Any, separation: Any, items: torch.Tensor, cues: torch.Tensor, *,
         normalize: bool = False, scores: torch.Tensor | None = None) -> torch.Tensor:
    """One auto-associative read z = w K with w = sep(sim(q, K)), optionally sum-normalised.

    Without ``normalize`` this is :class:`kvmem.UniversalHopfield` (projection ``"auto"``).
    With it, each row of weights is divided by its sum where that sum is positive and set
    to zero elsewhere (the identity separation's linear-attention normaliser).

    Args:
        similarity: a similarity spec.
        separation: a separation spec.
        items: stored items K ``[..., P, D]``.
        cues: queries ``[..., M, D]``.
        normalize: divide the weights by their sum.
        scores: precomputed sim(cues, items) ``[..., M, P]`` to reuse.

    Shapes:
        -> ``[..., M, D]``.

    Example:
        >>> k = torch.tensor([[[1.0, 0.0], [0.0, 1.0]]])
        >>> read("dot", "identity", k, torch.tensor([[[3.0, 1.0]]]), normalize=True).tolist()
        [[[0.75, 0.25]]]
    """
    if scores is None:
        scores = _similarity.get(similarity)(cues, items)
    w = _separation.get(separation)(scores)
    if normalize:
        total = w.sum(-1, keepdim=True)
        w = torch.where(total > 0, w / torch.where(total > 0, total, torch.ones_like(total)), torch.zeros_like(w))
    return w @ items


def score(out: torch.Tensor, items: torch.Tensor) -> dict[str, torch.Tensor]:
    """Per-trial scores of reads ``out`` whose targets are ``items`` (row i of out targets item i).

    Args:
        out: reads ``[T, P, D]``, row i read from a cue of item i.
        items: stored items ``[T, P, D]``.

    Returns:
        ``accuracy`` (fraction of rows whose nearest stored item, in Euclidean distance,
        is the target; ties count as wrong unless the target is the first of them),
        ``mse`` (mean over rows and entries of (out - target)^2) and ``cosine`` (mean
        cosine between out and target; 0 for an all-zero read), each ``[T]``.
    """
    # Squared distances [T, P(reads), P(items)] by |z|^2 + |x|^2 - 2 z.x: one batched product
    # instead of a [T, P, P, D] difference. Its rounding (~1e-6 |x|^2) is far below the squared
    # distance of any two distinct items here (>= 0.1 for the digits, >= 1 for binary patterns).
    dist = (out * out).sum(-1, keepdim=True) + (items * items).sum(-1).unsqueeze(-2) - 2.0 * out @ items.transpose(-1, -2)
    target = torch.arange(items.shape[-2], device=items.device)
    correct = (dist.argmin(-1) == target).double()
    mse = (out - items).pow(2).mean(-1).double()
    cos = torch.nn.functional.cosine_similarity(out, items, dim=-1, eps=1e-12).double()
    return {"accuracy": correct.mean(-1), "mse": mse.mean(-1), "cosine": cos.mean(-1)}


def _levels(config: Config, kind: str) -> tuple[float, ...]:
    return getattr(config, f"{kind}_levels")


def run(config: Config, *, seed: int = 0, progress: Progress | None = None) -> Result:
    """Read every stored item back from corrupted cues, for every similarity and separation.

    One batched read per (data set, P, corruption, level, similarity, separation); the
    similarity scores are computed once per (cue set, similarity) and shared.

    Args:
        config: the settings (checked by :func:`validate`).
        seed: seeds the one ``torch.Generator`` every draw comes from.
        progress: told the number of (data set, P, corruption, level) tasks, then each one.

    Returns:
        :class:`Result` with tables ``robustness`` (one row per read condition: mean and
        standard error over trials of accuracy, mse and cosine), ``crossover``
        (:func:`crossover`), ``best`` (:func:`best_by_level`) and ``gaps`` (g per data
        set, P and similarity), and scalars with the similarity rankings.

    Example:
        >>> import dataclasses
        >>> cfg = dataclasses.replace(QUICK, datasets=("random",), trials=4, corruptions=("mask",))
        >>> table = run(cfg, seed=0).tables["robustness"]
        >>> float(table.query("level == 0 and separation == 'hardmax'")["accuracy"].min())
        1.0
    """
    validate(config)
    # Thousands of small reads: one thread (see torch_threads).
    with torch_threads(1):
        return _run(config, seed, progress or Progress())


def _run(config: Config, seed: int, progress: Progress) -> Result:
    dev = resolve_device(config.device)
    gen = torch.Generator().manual_seed(seed)
    sims = list(dict.fromkeys((*config.similarities, config.sweep_similarity)))
    progress.total(len(config.datasets) * len(config.n_items)
                   * sum(len(_levels(config, k)) for k in config.corruptions))
    rows, gap_rows = [], []
    for dataset in config.datasets:
        for n in config.n_items:
            # Drawn on the CPU (the same items on every device); the corruptions draw on the
            # CPU too and follow the items to the device.
            items = _items(dataset, config.trials, n, config, gen).to(dev)
            gaps = {s: score_gap(s, items) for s in sims}
            gap_rows += [{"dataset": dataset, "n_items": n, "similarity": s, "gap": g} for s, g in gaps.items()]
            seps = {s: separations(config, gaps[s], s == config.sweep_similarity) for s in sims}
            for kind in config.corruptions:
                kind_seed = int(torch.randint(0, 2**62, (1,), generator=gen))
                for level in _levels(config, kind):
                    cues = corrupt(items, kind, float(level), kind_seed)
                    for sim in sims:
                        scores = _similarity.get(sim)(cues, items)
                        for label, sep_kind, param, spec in seps[sim]:
                            out = read(sim, spec, items, cues, normalize=sep_kind != "exponential", scores=scores)
                            per_trial = score(out, items)
                            row = {"dataset": dataset, "n_items": n, "corruption": kind, "level": float(level),
                                   "similarity": sim, "separation": label, "sep_kind": sep_kind, "sep_param": param,
                                   "sweep": sim == config.sweep_similarity}
                            for metric, values in per_trial.items():
                                row[metric] = float(values.mean())
                                row[f"{metric}_sem"] = float(values.std() / math.sqrt(values.numel()))
                            rows.append(row)
                    progress.advance()
    table = pd.DataFrame(rows)
    table["trials"] = config.trials
    scalars: dict[str, Any] = {"digits_preprocessing": "load_digits().data / 16 (pixels in [0, 1])"}
    scalars.update(_rankings(table))
    tables = {"robustness": table, "crossover": crossover(table), "best": best_by_level(table),
              "gaps": pd.DataFrame(gap_rows)}
    return Result(tables=tables, scalars=scalars, config=asdict(config))


# -- analysis -----------------------------------------------------------------------------
def _best_softmax(part: pd.DataFrame) -> pd.DataFrame:
    """Per similarity, the rows of the softmax beta with the highest mean accuracy over ``part``."""
    soft = part[part["sep_kind"] == "softmax"]
    best = soft.groupby(["similarity", "separation"])["accuracy"].mean().reset_index()
    best = best.loc[best.groupby("similarity")["accuracy"].idxmax()]
    keep = set(zip(best["similarity"], best["separation"]))
    return soft[[(s, p) in keep for s, p in zip(soft["similarity"], soft["separation"])]]


def similarity_ranking(table: pd.DataFrame, dataset: str, separation: str) -> pd.Series:
    """Mean accuracy under noise (level > 0, every corruption and P) per similarity, best first.

    Args:
        table: the ``robustness`` table.
        dataset: ``"random"`` or ``"digits"``.
        separation: ``"hardmax"`` or ``"softmax"`` (each similarity at its best beta).
    """
    part = table[(table["dataset"] == dataset) & (table["level"] > 0)]
    part = part[part["sep_kind"] == "hardmax"] if separation == "hardmax" else _best_softmax(part)
    return part.groupby("similarity")["accuracy"].mean().sort_values(ascending=False)


def _rankings(table: pd.DataFrame) -> dict[str, Any]:
    out: dict[str, Any] = {}
    zero = table[(table["level"] == 0.0) & (table["sep_kind"] == "hardmax")]
    for (dataset, sim), part in zero.groupby(["dataset", "similarity"], sort=False):
        # Dot product favours items of large norm, so even a clean cue can pick another item.
        out[f"zero_noise_hardmax_recall_{dataset}_{sim}"] = float(part["accuracy"].min())
    for dataset in table["dataset"].unique():
        for sep in ("hardmax", "softmax"):
            ranking = similarity_ranking(table, dataset, sep)
            out[f"ranking_{dataset}_{sep}"] = " > ".join(f"{s} {a:.3f}" for s, a in ranking.items())
    return out


def best_by_level(table: pd.DataFrame) -> pd.DataFrame:
    """Per (data set, P, corruption, level) of the separation sweep: the separation with the
    lowest MSE (``best_mse``, ``best_mse_separation``) and the highest recall
    (``best_accuracy``, ``best_accuracy_separation``; the first listed wins a tie), with hard
    max's ``hardmax_mse`` and ``hardmax_accuracy`` beside them."""
    rows = []
    keys = ["dataset", "n_items", "corruption", "level"]
    for key, part in table[table["sweep"]].groupby(keys, sort=False):
        hard = part[part["sep_kind"] == "hardmax"].iloc[0]
        lo, hi = part.loc[part["mse"].idxmin()], part.loc[part["accuracy"].idxmax()]
        rows.append({**dict(zip(keys, key)), "best_mse_separation": lo["separation"], "best_mse": lo["mse"],
                     "hardmax_mse": hard["mse"], "best_accuracy_separation": hi["separation"],
                     "best_accuracy": hi["accuracy"], "hardmax_accuracy": hard["accuracy"]})
    return pd.DataFrame(rows)


def crossover(table: pd.DataFrame) -> pd.DataFrame:
    """Per (data set, P, corruption) of the separation sweep: hard max against the smooth separations.

    Columns: ``hardmax_mse_at_zero`` and ``smooth_min_mse_at_zero`` (level 0, if measured),
    ``top_level``, ``hardmax_mse_top`` and ``smooth_mse_top`` (the smooth separation with the
    lowest MSE at the largest level, named in ``smooth_best_top``), ``ratio_top``
    (smooth / hard max at the largest level), ``first_level_smooth_wins`` (the least level
    with some smooth MSE <= ``MSE_MARGIN`` x hard max's; NaN if none), and accuracies
    ``hardmax_acc_top`` and ``smooth_best_acc_top`` (the most accurate smooth separation
    there), ``max_acc_excess`` (the largest amount by which any smooth separation's
    accuracy exceeds hard max's at any one level) and ``mean_acc_excess`` (the same for
    accuracies averaged over the levels).
    """
    sweep = table[table["sweep"]]
    rows = []
    for (dataset, n, kind), part in sweep.groupby(["dataset", "n_items", "corruption"], sort=False):
        hard = part[part["sep_kind"] == "hardmax"].set_index("level")
        smooth = part[part["sep_kind"] != "hardmax"]
        top = float(part["level"].max())
        by_level = smooth.groupby("level")
        smooth_min = by_level["mse"].min()
        wins = [lvl for lvl in smooth_min.index if lvl > 0 and smooth_min[lvl] <= MSE_MARGIN * hard.loc[lvl, "mse"]]
        at_top = smooth[smooth["level"] == top]
        best_top = at_top.loc[at_top["mse"].idxmin()]
        excess = (by_level["accuracy"].max() - hard["accuracy"]).max()
        mean_excess = smooth.groupby("separation")["accuracy"].mean().max() - hard["accuracy"].mean()
        rows.append({
            "dataset": dataset, "n_items": n, "corruption": kind,
            "hardmax_mse_at_zero": float(hard.loc[0.0, "mse"]) if 0.0 in hard.index else math.nan,
            "smooth_min_mse_at_zero": float(smooth_min.get(0.0, math.nan)),
            "top_level": top,
            "hardmax_mse_top": float(hard.loc[top, "mse"]),
            "smooth_mse_top": float(best_top["mse"]),
            "smooth_best_top": best_top["separation"],
            "ratio_top": float(best_top["mse"] / hard.loc[top, "mse"]) if hard.loc[top, "mse"] > 0 else math.inf,
            "first_level_smooth_wins": min(wins) if wins else math.nan,
            "hardmax_acc_top": float(hard.loc[top, "accuracy"]),
            "smooth_best_acc_top": float(by_level["accuracy"].max()[top]),
            "max_acc_excess": float(excess),
            "mean_acc_excess": float(mean_excess),
        })
    return pd.DataFrame(rows)


# -- figures -------------------------------------------------------------------------------
def plot(result: Result) -> dict[str, Any]:
    """Accuracy and MSE vs cue corruption per separation, and the similarity comparison.

    Rows are (data set, P) for the separation figures and data sets (largest P) for the
    similarity figure; columns are corruptions. Bands: +-1.96 standard errors over trials.
    """
    import matplotlib.pyplot as plt

    table = result.tables["robustness"]
    figs = {}
    sweep = table[table["sweep"]]
    blocks = list(sweep.groupby(["dataset", "n_items"], sort=False).groups)
    kinds = list(dict.fromkeys(table["corruption"]))
    sim_name = result.config.get("sweep_similarity", "cosine")
    for metric, ylabel in (("accuracy", "recall (nearest stored item)"), ("mse", "MSE to the stored item")):
        fig, axes = plt.subplots(len(blocks), len(kinds), figsize=(4.2 * len(kinds), 3.1 * len(blocks)),
                                 squeeze=False, constrained_layout=True)
        for r, (dataset, n) in enumerate(blocks):
            for c, kind in enumerate(kinds):
                ax = axes[r][c]
                part = sweep[(sweep["dataset"] == dataset) & (sweep["n_items"] == n) & (sweep["corruption"] == kind)]
                for label, g in part.groupby("separation", sort=False):
                    hard = label == "hardmax"
                    line, = ax.plot(g["level"], g[metric], "-", color="k" if hard else None, lw=2.2 if hard else 1.1,
                                    marker="o", ms=2.5, label=label)
                    band = 1.96 * g[f"{metric}_sem"]
                    ax.fill_between(g["level"], g[metric] - band, g[metric] + band, color=line.get_color(), alpha=0.15)
                ax.set_title(f"{dataset}, P = {n}: {kind}", fontsize=9)
                ax.set_xlabel("noise std" if kind == "gaussian" else f"fraction {'flipped' if kind == 'flip' else 'masked'}")
                ax.set_ylabel(ylabel, fontsize=8)
                if metric == "accuracy":
                    ax.set_ylim(-0.03, 1.03)
                else:
                    # Errors span 0 (exact recall) to blow-ups of the unnormalised reads.
                    ax.set_yscale("symlog", linthresh=1e-3)
                    ax.set_ylim(0, 1.0)
        axes[0][0].legend(fontsize=6, ncol=2)
        fig.suptitle(f"separation sweep ({sim_name} similarity): {metric}", fontsize=10)
        figs[f"separation_{metric}"] = fig

    n_max = int(table["n_items"].max())
    datasets = list(dict.fromkeys(table["dataset"]))
    fig, axes = plt.subplots(len(datasets), len(kinds), figsize=(4.2 * len(kinds), 3.1 * len(datasets)),
                             squeeze=False, constrained_layout=True)
    for r, dataset in enumerate(datasets):
        for c, kind in enumerate(kinds):
            ax = axes[r][c]
            part = table[(table["dataset"] == dataset) & (table["n_items"] == n_max) & (table["corruption"] == kind)]
            soft = _best_softmax(part)
            for sim, g in part[part["sep_kind"] == "hardmax"].groupby("similarity", sort=False):
                line, = ax.plot(g["level"], g["accuracy"], "-", marker="o", ms=2.5, label=f"{sim} + hardmax")
                s = soft[soft["similarity"] == sim]
                ax.plot(s["level"], s["accuracy"], "--", color=line.get_color(), marker="x", ms=3,
                        label=f"{sim} + {s['separation'].iloc[0]}")
            ax.set_title(f"{dataset}, P = {n_max}: {kind}", fontsize=9)
            ax.set_xlabel("noise std" if kind == "gaussian" else "fraction corrupted")
            ax.set_ylabel("recall (nearest stored item)", fontsize=8)
            ax.set_ylim(-0.03, 1.03)
    axes[0][0].legend(fontsize=6)
    fig.suptitle("similarity functions (Millidge et al. 2022): solid hard max, dashed best softmax", fontsize=10)
    figs["similarity"] = fig
    return figs


# -- claims --------------------------------------------------------------------------------
def claims(result: Result) -> list[Claim]:
    """The trade-off claims and the similarity comparison, each with its threshold."""
    table = result.tables["robustness"]
    out = []

    zero = table[(table["level"] == 0.0) & (table["sep_kind"] == "hardmax")
                 & (table["similarity"].isin(("cosine", *DISTANCE_SIMILARITIES)))]
    if len(zero):
        acc, mse = float(zero["accuracy"].min()), float(zero["mse"].max())
        out.append(Claim("hardmax_perfect_without_noise",
                         "hard max with cosine / Euclidean / Manhattan similarity: recall == 1.0 and MSE == 0 "
                         "at zero noise, on every data set and P",
                         f"min recall {acc:.4f}, max MSE {mse:.2e}", acc == 1.0 and mse == 0.0))
    else:
        out.append(Claim("hardmax_perfect_without_noise", "zero-noise level measured", "no level 0 in the run", False))

    cross = crossover(table)
    at_zero = cross.dropna(subset=["hardmax_mse_at_zero"])
    best_zero = bool(len(at_zero)) and bool((at_zero["hardmax_mse_at_zero"] <= at_zero["smooth_min_mse_at_zero"]).all())
    out.append(Claim("max_lowest_error_without_noise",
                     "at zero noise hard max's MSE <= every other separation's (separation sweep), "
                     "on every data set, P and corruption",
                     (f"hard max {at_zero['hardmax_mse_at_zero'].max():.2e} vs least other "
                      f"{at_zero['smooth_min_mse_at_zero'].min():.2e}") if len(at_zero) else "no level 0",
                     best_zero))

    worst = cross.loc[cross["ratio_top"].idxmax()]
    out.append(Claim("max_fragile_with_noise",
                     f"at the largest level of every corruption some smooth separation's MSE <= {MSE_MARGIN} x "
                     "hard max's (separation sweep), on every data set and P",
                     f"largest ratio {worst['ratio_top']:.3f} ({worst['dataset']}, P = {int(worst['n_items'])}, "
                     f"{worst['corruption']} {worst['top_level']:g}: {worst['smooth_best_top']})",
                     bool((cross["ratio_top"] <= MSE_MARGIN).all())))

    # Averaged over levels, so that one noisy level among hundreds of comparisons does not decide.
    excess, single = float(cross["mean_acc_excess"].max()), float(cross["max_acc_excess"].max())
    out.append(Claim("max_recall_not_beaten",
                     "averaged over the levels of each corruption, no smooth separation recalls more items than "
                     "hard max by more than 0.02 (nearest-stored-item decoding: max's fragility is in the size "
                     "of its errors, not their number)",
                     f"largest excess {excess:+.4f} (at a single level {single:+.3f})", excess <= 0.02))

    if "digits" in set(table["dataset"]) and "dot" in set(table["similarity"]) and (
            set(DISTANCE_SIMILARITIES) & set(table["similarity"])):
        parts, ok = [], True
        for sep in ("hardmax", "softmax"):
            ranking = similarity_ranking(table, "digits", sep)
            dist = max(ranking.get(s, -math.inf) for s in DISTANCE_SIMILARITIES)
            ok = ok and dist >= ranking["dot"] + 0.05
            parts.append(f"{sep}: " + " > ".join(f"{s} {a:.3f}" for s, a in ranking.items()))
        out.append(Claim("distance_beats_dot_on_digits",
                         "Millidge et al. (2022): on digits under noise the better of Euclidean / Manhattan "
                         "similarity recalls >= 0.05 more than dot product (mean over noisy levels, "
                         "with hard max and with softmax at each similarity's best beta)",
                         "; ".join(parts), bool(ok)))
    else:
        out.append(Claim("distance_beats_dot_on_digits", "digits, dot and a distance similarity measured",
                         "not in this run", False))
    return out


EXPERIMENT = register(
    Experiment(
        name="separation-robustness",
        description="Max separation is ideal without noise and fragile with it; similarity functions compared "
        "(random patterns and sklearn digits).",
        config_type=Config,
        profiles={"quick": QUICK, "full": Config()},
        run=run,
        plot=plot,
        claims=claims,
    )
)
