"""Experiment ``learned-vs-fixed-keys``: keys learned for discriminability vs fixed and content keys.

The paper's central claim (Abstract, Secs. 1, 2.2 and 4): when keys are separate from
values, the input-to-key map can be optimised for discriminability while values keep the
content; when keys *are* the values (content addressability, Hopfield networks) one
representation has to serve both. Here P items (scikit-learn's 8x8 digits scaled to [0, 1],
or random patterns of the same dimension and range) are stored in a slot memory whose values
are the items themselves, and only the addressing changes:

- ``identity``: keys and queries are the items / cues (content addressing);
- ``scaffold``: a fixed random projection followed by sign, the +-1 random addresses of an
  SDM-like scaffold, shared by keys and queries;
- ``scaffold-wide``: the same with ``wide_scaffold_dim`` (2048) coordinates, the one map
  allowed more than 64: SDM's addresses are many more than the input dimension;
- ``random-linear``: the same fixed projection without the sign;
- ``learned``: separate W_k and W_q (Eqs. 7 and 9) trained by Adam on retrieval itself;
- ``learned-shared``: one trained matrix for both (W_q = W_k);
- ``mixed``: a fixed sign scaffold (half the key) concatenated with a learned part (the other
  half), the learned parts separate for keys and queries.

Every other key is 64-dimensional, the input dimension ("equal dimension"). Retrieval is
``softmax(beta S(q, K)) V`` in :class:`kvmem.SlotMemory` with the paper's scaled dot product
(Eq. 5) and with negative Euclidean distance (Millidge et al. 2022). Fixed maps get the
softmax beta from a grid that minimises the same retrieval loss the learned maps are trained
on; learned maps use beta = ``learned_beta`` and learn the scale through their weights.
Memories (``trials``) run as a batch dimension; evaluation cues are fresh draws, never the
training cues.

Measured: accuracy (the read-out is nearest, in Euclidean distance, to the cued item) against
Gaussian cue noise and against hidden entries (random and bottom-of-image masks); value
fidelity (MSE of the read-out to the item at zero noise); geometry (mean absolute off-diagonal
cosine similarity among inputs, keys and read-out values, and the correlation of the key and
value similarity matrices with the inputs').

Claims checked (on the separately learned map; thresholds in :func:`claims`):
- learned keys are less correlated with each other than the inputs are;
- read-out values keep the inputs' similarity structure;
- with dot-product attention, learned keys retrieve noisy cues better than identity keys;
- learned keys retrieve partial cues better than identity keys, under both similarities;
- control: with Euclidean similarity identity keys are nearest-neighbour decoding, the MAP
  rule for Gaussian noise, which learned keys do not beat on Gaussian noise.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import pandas as pd
import torch

from .._checks import check_int, check_positive
from ..learning.key_maps import (
    FixedRandomMap,
    IdentityMap,
    LearnedLinearMap,
    MixedMap,
    corrupt,
    retrieve,
    train_key_maps,
)
from ..paradigms.corruption import gaussian_noise, mask
from ..separation import Softmax
from .base import Claim, Experiment, Progress, Result, register, resolve_device, torch_threads

DATASETS = ("digits", "random")
SIMILARITIES = ("scaled_dot", "neg_euclidean", "dot", "cosine")
MAPS = ("identity", "scaffold", "scaffold-wide", "random-linear", "learned", "learned-shared", "mixed")
LEARNED = ("learned", "learned-shared", "mixed")
MASK_MODES = ("random", "bottom")
DIM = 64  # the digits' 8 x 8 pixels; every key map but scaffold-wide keeps this dimension


@dataclass(frozen=True)
class Config:
    """Settings of ``learned-vs-fixed-keys``.

    Attributes:
        n_items: P, items stored in each memory (digits drawn without replacement from 1797).
        trials: independent memories per condition (a batch dimension): new items, new maps.
        datasets: any of ``"digits"`` and ``"random"`` (i.i.d. Uniform[0, 1] entries).
        similarities: S used for every map (``"scaled_dot"``: paper Eq. 5). With the bounded
            ``"cosine"`` the learned maps cannot learn the scale: raise ``learned_beta``.
        maps: key maps compared (see the module docstring).
        noise_levels: standard deviations of the Gaussian noise added to evaluation cues.
        mask_fractions: fractions of entries hidden (set to 0) in partial evaluation cues.
        mask_modes: ``"random"`` entries and/or ``"bottom"`` (the last rows of the image).
        eval_cues: fresh evaluation cues per item and condition.
        train_steps: Adam steps for the learned maps.
        lr: Adam learning rate.
        train_cues: fresh training cues per item per step.
        train_noise_std: largest noise std of a training cue (drawn uniformly per cue).
        train_mask_fraction: largest expected hidden fraction of a training cue.
        learned_beta: softmax beta of the learned maps (their weights learn the scale).
        beta_grid: betas tried for the fixed maps; the one with the lowest retrieval loss
            on training-style cues is used.
        scaffold_nonlinearity: of the fixed random scaffold (and the mixed map's fixed part).
        wide_scaffold_dim: key dimension of ``scaffold-wide``, the one map that breaks the
            equal-dimension rule: wide random codes, as SDM's many hard locations are.
        mixed_fixed_dim: key coordinates of the mixed map that are fixed.
        rsm_items: items (of the first digits memory) kept for the similarity-matrix figure.
        device: torch device of the computation: 'cpu', 'cuda' or 'cuda:N'; random draws
            (items, cues, map weights) stay on the CPU, so results match across devices to
            rounding.
    """

    n_items: int = 100
    trials: int = 4
    datasets: tuple[str, ...] = DATASETS
    similarities: tuple[str, ...] = ("scaled_dot", "neg_euclidean")
    maps: tuple[str, ...] = MAPS
    noise_levels: tuple[float, ...] = (0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.8)
    mask_fractions: tuple[float, ...] = (0.25, 0.5, 0.75)
    mask_modes: tuple[str, ...] = MASK_MODES
    eval_cues: int = 4
    train_steps: int = 400
    lr: float = 0.02
    train_cues: int = 2
    train_noise_std: float = 0.6
    train_mask_fraction: float = 0.6
    learned_beta: float = 1.0
    beta_grid: tuple[float, ...] = (0.25, 0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0)
    scaffold_nonlinearity: str = "sign"
    wide_scaffold_dim: int = 2048
    mixed_fixed_dim: int = 32
    rsm_items: int = 40
    device: str = "cpu"


# One memory of 64 items with the full profile's learning rate and 300 steps: the smallest
# setting (about 7 s) in which every claim holds at seed 0, so `kvmem reproduce` (quick)
# checks them all.
QUICK = Config(n_items=64, trials=1, noise_levels=(0.0, 0.3, 0.6), mask_fractions=(0.5,), eval_cues=2,
               train_steps=300, lr=0.02, rsm_items=12, wide_scaffold_dim=512)


def _check(config: Config) -> None:
    check_int(config.n_items, "n_items", minimum=2)
    if config.n_items > 1797:
        raise ValueError(f"n_items: expected at most 1797 (the digits), got {config.n_items}")
    check_int(config.trials, "trials")
    for name, given, allowed in (("datasets", config.datasets, DATASETS), ("similarities", config.similarities, SIMILARITIES),
                                 ("maps", config.maps, MAPS), ("mask_modes", config.mask_modes, MASK_MODES)):
        bad = [g for g in given if g not in allowed]
        if bad or not given:
            raise ValueError(f"{name}: expected a non-empty selection of {allowed}, got {given!r}")
    for level in config.noise_levels:
        check_positive(level, "noise_levels", allow_zero=True)
    for f in config.mask_fractions:
        if not 0 <= check_positive(f, "mask_fractions", allow_zero=True) <= 1:
            raise ValueError(f"mask_fractions: expected numbers in [0, 1], got {f}")
    for b in config.beta_grid:
        check_positive(b, "beta_grid")
    check_int(config.eval_cues, "eval_cues")
    check_int(config.train_steps, "train_steps")
    check_int(config.wide_scaffold_dim, "wide_scaffold_dim")
    if not 1 <= check_int(config.mixed_fixed_dim, "mixed_fixed_dim") < DIM:
        raise ValueError(f"mixed_fixed_dim: expected 1 <= mixed_fixed_dim < {DIM}, got {config.mixed_fixed_dim}")
    if config.scaffold_nonlinearity not in ("sign", "relu", "tanh", None):
        raise ValueError(f"scaffold_nonlinearity: expected 'sign', 'relu' or 'tanh', got {config.scaffold_nonlinearity!r}")
    check_int(config.rsm_items, "rsm_items", minimum=2)
    resolve_device(config.device)


# -- data ----------------------------------------------------------------------------
def _items(dataset: str, config: Config, gen: torch.Generator) -> tuple[torch.Tensor, np.ndarray | None]:
    """``[trials, P, 64]`` items in [0, 1] and, for digits, their labels ``[trials, P]``."""
    t, p = config.trials, config.n_items
    if dataset == "random":
        return torch.rand(t, p, DIM, generator=gen), None
    from sklearn.datasets import load_digits

    digits = load_digits()
    data = torch.tensor(digits.data / 16.0, dtype=torch.float32)
    idx = torch.stack([torch.randperm(len(data), generator=gen)[:p] for _ in range(t)])
    return data[idx], np.asarray(digits.target)[idx.numpy()]


def _eval_cues(items: torch.Tensor, config: Config, gen: torch.Generator) -> dict[tuple[str, float], torch.Tensor]:
    """Evaluation cue sets ``[trials, eval_cues * P, 64]`` (cue ``c P + n`` cues item n), drawn once per dataset."""
    base = items.repeat(1, config.eval_cues, 1)
    cues = {("noise", float(s)): gaussian_noise(base, s, generator=gen) for s in config.noise_levels}
    for mode in config.mask_modes:
        for f in config.mask_fractions:
            cues[(f"mask-{mode}", float(f))] = mask(base, f, mode=mode, generator=gen)[0]
    return cues


# -- maps ------------------------------------------------------------------------------
def _maps(name: str, config: Config, seed: int):
    """(key map, query map or None for shared, trained?) for one map name; ``seed`` fixes the draws."""
    batch = (config.trials,)
    nl = config.scaffold_nonlinearity
    if name == "identity":
        return IdentityMap(DIM), None, False
    if name == "scaffold":
        return FixedRandomMap(DIM, DIM, seed, nl, batch), None, False
    if name == "scaffold-wide":
        return FixedRandomMap(DIM, config.wide_scaffold_dim, seed, nl, batch), None, False
    if name == "random-linear":
        return FixedRandomMap(DIM, DIM, seed, None, batch), None, False
    if name == "learned":
        return LearnedLinearMap(DIM, DIM, seed, batch_shape=batch), LearnedLinearMap(DIM, DIM, seed + 1, batch_shape=batch), True
    if name == "learned-shared":
        return LearnedLinearMap(DIM, DIM, seed, batch_shape=batch), None, True
    # mixed: one scaffold (same seed) for keys and queries, separate learned halves
    fd = config.mixed_fixed_dim
    key = MixedMap(DIM, DIM, seed, fd, nl, "concat", batch, learned_seed=seed + 1)
    query = MixedMap(DIM, DIM, seed, fd, nl, "concat", batch, learned_seed=seed + 2)
    return key, query, True


def _pick_beta(items, key_map, query_map, similarity, config: Config, gen: torch.Generator) -> float:
    """The grid beta with the lowest retrieval MSE on training-style cues (the learned maps' objective)."""
    cues = corrupt(items, config.train_cues, config.train_noise_std, config.train_mask_fraction, gen)
    target = items.repeat(1, config.train_cues, 1)
    losses = []
    with torch.no_grad():
        # The scores S do not depend on beta: read once, then apply each softmax(beta S) V.
        scores = retrieve(cues, items, key_map, query_map, similarity=similarity, beta=1.0, details=True).scores
        for beta in config.beta_grid:
            out = Softmax(beta=beta)(scores) @ items
            losses.append(float(((out - target) ** 2).mean()))
    return float(config.beta_grid[int(np.argmin(losses))])


# -- geometry --------------------------------------------------------------------------
def _cosine_matrix(z: torch.Tensor) -> torch.Tensor:
    zn = z / z.norm(dim=-1, keepdim=True).clamp_min(1e-12)
    return zn @ zn.transpose(-1, -2)


def _upper(c: torch.Tensor) -> torch.Tensor:
    i, j = torch.triu_indices(c.shape[-1], c.shape[-1], offset=1, device=c.device)
    return c[..., i, j]


def _pearson(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    a = a - a.mean(-1, keepdim=True)
    b = b - b.mean(-1, keepdim=True)
    return (a * b).sum(-1) / (a.norm(dim=-1) * b.norm(dim=-1)).clamp_min(1e-12)


def _geometry(items: torch.Tensor, keys: torch.Tensor, values: torch.Tensor) -> dict[str, torch.Tensor]:
    """Per-trial geometry: mean |off-diagonal cosine| and RSM correlation with the inputs."""
    ci, ck, cv = (_upper(_cosine_matrix(z.to(torch.float64))) for z in (items, keys, values))
    ck = ck.expand_as(ci)
    return {
        "input_abs_cos": ci.abs().mean(-1),
        "key_abs_cos": ck.abs().mean(-1),
        "value_abs_cos": cv.abs().mean(-1),
        "key_rsm_corr": _pearson(ck, ci),
        "value_rsm_corr": _pearson(cv, ci),
    }


def _accuracy(out: torch.Tensor, items: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per trial: fraction of read-outs nearest to their own item, and their MSE to it."""
    p = items.shape[-2]
    target = torch.arange(out.shape[-2], device=out.device) % p
    nearest = torch.cdist(out.to(torch.float64), items.to(torch.float64)).argmin(-1)
    mse = ((out - items[..., target, :]) ** 2).mean(dim=(-2, -1))
    return (nearest == target).to(torch.float64).mean(-1), mse


# -- run -------------------------------------------------------------------------------
def _seed(seed: int, *path: Any) -> int:
    """A 31-bit seed for one purpose (data, evaluation cues, maps, training cues, ...) of a run.

    Hashing ``(seed, purpose, indices)`` through numpy's SeedSequence gives every purpose its
    own stream, so evaluation cues can never repeat the draws the learned maps trained on.
    """
    words = [seed] + [sum(ord(ch) << (8 * i) for i, ch in enumerate(p)) if isinstance(p, str) else int(p) for p in path]
    return int(np.random.SeedSequence(words).generate_state(1)[0] >> 1)





def run(config: Config, *, seed: int = 0, progress: Progress | None = None) -> Result:
    """Train / calibrate every map on every dataset and similarity, then evaluate on fresh cues."""
    with torch_threads(1):
        return _run(config, seed=seed, progress=progress)


def _run(config: Config, *, seed: int, progress: Progress | None) -> Result:
    _check(config)
    dev = resolve_device(config.device)
    progress = progress or Progress()
    progress.total(len(config.datasets) * len(config.similarities) * len(config.maps))
    seed = check_int(seed, "seed", minimum=0)
    rows, geo_rows, train_rows, rsm_rows = [], [], [], []
    log_every = max(1, config.train_steps // 50)
    for d_index, dataset in enumerate(config.datasets):
        data_gen = torch.Generator().manual_seed(_seed(seed, "data", d_index))
        items, labels = _items(dataset, config, data_gen)
        # Drawn on the CPU (the same items on every device); the cue draws below stay on the
        # CPU too and follow the items to the device.
        items = items.to(dev)
        # Evaluation cues come from their own generators: never the training draws.
        eval_sets = _eval_cues(items, config, torch.Generator().manual_seed(_seed(seed, "eval", d_index)))
        # Training-style cues (the objective's distribution), one held-out draw shared by all maps.
        objective_cues = corrupt(items, config.train_cues, config.train_noise_std, config.train_mask_fraction,
                                 torch.Generator().manual_seed(_seed(seed, "objective", d_index)))
        objective_target = items.repeat(1, config.train_cues, 1)
        for s_index, sim in enumerate(config.similarities):
            for m_index, name in enumerate(config.maps):
                # One draw per (dataset, similarity) for every map: the scaffold and the random-linear
                # map share their projection, and the learned W_k starts from it, so the maps differ
                # only in the sign and in the learning.
                map_seed = _seed(seed, "maps", d_index, s_index)
                key_map, query_map, trained = _maps(name, config, map_seed)
                # Weights drawn on the CPU from map_seed, moved before the optimiser sees them.
                key_map = key_map.to(dev)
                query_map = None if query_map is None else query_map.to(dev)
                if trained:
                    log = train_key_maps(
                        items, key_map, query_map, similarity=sim, beta=config.learned_beta,
                        steps=config.train_steps, lr=config.lr, cues_per_item=config.train_cues,
                        noise_std=config.train_noise_std, mask_fraction=config.train_mask_fraction,
                        seed=_seed(seed, "train", d_index, s_index, m_index),
                    )
                    beta = config.learned_beta
                    losses = log.losses.to(torch.float64).cpu()
                    for step in range(0, config.train_steps, log_every):
                        train_rows.append({"dataset": dataset, "similarity": sim, "map": name, "step": step,
                                           "loss": float(losses[step].mean()), "loss_std": float(losses[step].std(unbiased=False))})
                else:
                    cal_gen = torch.Generator().manual_seed(_seed(seed, "beta", d_index, s_index, m_index))
                    beta = _pick_beta(items, key_map, query_map, sim, config, cal_gen)
                with torch.no_grad():
                    for (corruption, level), cues in eval_sets.items():
                        out = retrieve(cues, items, key_map, query_map, similarity=sim, beta=beta)
                        acc, mse = _accuracy(out, items)
                        for t in range(config.trials):
                            rows.append({"dataset": dataset, "similarity": sim, "map": name, "corruption": corruption,
                                         "level": level, "trial": t, "accuracy": float(acc[t]), "mse": float(mse[t])})
                    keys = key_map(items)
                    clean = retrieve(items, items, key_map, query_map, similarity=sim, beta=beta)
                    geo = _geometry(items, keys, clean)
                    fidelity = ((clean - items) ** 2).mean(dim=(-2, -1))
                    out = retrieve(objective_cues, items, key_map, query_map, similarity=sim, beta=beta)
                    objective = ((out - objective_target) ** 2).mean(dim=(-2, -1))
                    for t in range(config.trials):
                        geo_rows.append({"dataset": dataset, "similarity": sim, "map": name, "trial": t, "beta": beta,
                                         "fidelity_mse": float(fidelity[t]), "objective_mse": float(objective[t]),
                                         **{k: float(v[t]) for k, v in geo.items()}})
                    if dataset == "digits" and s_index == 0:
                        keys0 = keys.expand(*items.shape[:-1], keys.shape[-1])[0]
                        rsm_rows += _rsm_rows(name, items[0].cpu(), keys0.cpu(), clean[0].cpu(), labels[0],
                                              config.rsm_items, m_index == 0)
                progress.advance()
    tables = {
        "retrieval": pd.DataFrame(rows),
        "geometry": pd.DataFrame(geo_rows),
        "training": pd.DataFrame(train_rows, columns=["dataset", "similarity", "map", "step", "loss", "loss_std"]),
        "rsm": pd.DataFrame(rsm_rows, columns=["kind", "i", "j", "cosine", "label_i", "label_j"]),
    }
    return Result(tables=tables, scalars=_scalars(tables, config), config=asdict(config))


def _rsm_rows(name, items, keys, values, labels, n, with_inputs) -> list[dict[str, Any]]:
    """Cosine matrices of the first ``n`` items (sorted by digit label) for the heatmaps."""
    n = min(n, items.shape[0])
    order = np.argsort(labels[:n], kind="stable")
    idx = torch.as_tensor(order)
    kinds = {"inputs": items} if with_inputs else {}
    if name != "identity":  # identity keys are the inputs
        kinds[f"keys: {name}"] = keys
    if name == "learned":
        kinds["retrieved values: learned"] = values
    out = []
    for kind, z in kinds.items():
        c = _cosine_matrix(z[idx].to(torch.float64))
        for a in range(n):
            for b in range(n):
                out.append({"kind": kind, "i": a, "j": b, "cosine": float(c[a, b]),
                            "label_i": int(labels[order[a]]), "label_j": int(labels[order[b]])})
    return out


# -- summaries and claims -------------------------------------------------------------
def _mean_accuracy(table: pd.DataFrame, dataset: str, sim: str, name: str, corruption: str, positive_only: bool = True) -> float:
    part = table[(table["dataset"] == dataset) & (table["similarity"] == sim) & (table["map"] == name)]
    if corruption == "noise":
        part = part[part["corruption"] == "noise"]
        if positive_only:
            part = part[part["level"] > 0]
    else:
        part = part[part["corruption"].str.startswith("mask")]
    return float(part["accuracy"].mean()) if len(part) else math.nan


def _scalars(tables: dict[str, pd.DataFrame], config: Config) -> dict[str, Any]:
    table, geo = tables["retrieval"], tables["geometry"]
    scalars: dict[str, Any] = {"key_dim": DIM, "n_items": config.n_items, "trials": config.trials}
    for dataset in config.datasets:
        for sim in config.similarities:
            noise = {m: _mean_accuracy(table, dataset, sim, m, "noise") for m in config.maps}
            masked = {m: _mean_accuracy(table, dataset, sim, m, "mask") for m in config.maps}
            for m in config.maps:
                scalars[f"noise_acc/{dataset}/{sim}/{m}"] = round(noise[m], 4)
                scalars[f"mask_acc/{dataset}/{sim}/{m}"] = round(masked[m], 4)
            for scaffold in ("scaffold", "scaffold-wide"):
                if scaffold not in config.maps:
                    continue
                for what, acc in (("noise", noise), ("mask", masked)):
                    ranking = sorted(config.maps, key=lambda m: -acc[m])
                    scalars[f"{scaffold}_rank_{what}/{dataset}/{sim}"] = f"{ranking.index(scaffold) + 1} of {len(ranking)}"
                    if "learned" in config.maps:
                        scalars[f"{scaffold}_minus_learned_{what}/{dataset}/{sim}"] = round(acc[scaffold] - acc["learned"], 4)
    means = geo.groupby(["dataset", "similarity", "map"], sort=False).mean(numeric_only=True)
    for (dataset, sim, m), row in means.iterrows():
        scalars[f"key_abs_cos/{dataset}/{sim}/{m}"] = round(float(row["key_abs_cos"]), 4)
        scalars[f"fidelity_mse/{dataset}/{sim}/{m}"] = float(f"{row['fidelity_mse']:.3g}")
        scalars[f"objective_mse/{dataset}/{sim}/{m}"] = float(f"{row['objective_mse']:.3g}")
    for dataset in config.datasets:
        part = geo[geo["dataset"] == dataset]
        scalars[f"input_abs_cos/{dataset}"] = round(float(part["input_abs_cos"].mean()), 4)
    return scalars


def claims(result: Result) -> list[Claim]:
    """The issue's claims, measured on the separately learned map (W_k and W_q) against the others."""
    table, geo = result.tables["retrieval"], result.tables["geometry"]
    cfg = result.config
    datasets, sims, maps = cfg["datasets"], cfg["similarities"], cfg["maps"]
    out: list[Claim] = []
    if "learned" not in maps:
        return out
    g = geo.groupby(["dataset", "similarity", "map"]).mean(numeric_only=True)

    # 1. Learned keys are less correlated with each other than the inputs are.
    ratios = {(d, s): float(g.loc[(d, s, "learned"), "key_abs_cos"] / g.loc[(d, s, "learned"), "input_abs_cos"])
              for d in datasets for s in sims}
    worst = max(ratios.values())
    out.append(Claim(
        "learned_keys_less_correlated",
        "mean |off-diagonal cosine| among learned keys <= 0.8 x that among the inputs, for every dataset and similarity",
        "; ".join(f"{d}/{s}: {r:.2f}x" for (d, s), r in ratios.items()),
        worst <= 0.8,
    ))

    # 2. Values keep the inputs' similarity structure (read-outs from clean cues).
    vals = {(d, s): (float(g.loc[(d, s, "learned"), "value_rsm_corr"]),
                     float(g.loc[(d, s, "learned"), "value_abs_cos"] - g.loc[(d, s, "learned"), "input_abs_cos"]))
            for d in datasets for s in sims}
    ok = all(r >= 0.95 and abs(diff) <= 0.05 for r, diff in vals.values())
    out.append(Claim(
        "values_keep_input_structure",
        "learned map: read-out values (clean cues) have RSM correlation >= 0.95 with the inputs and mean |cosine| "
        "within 0.05 of the inputs', for every dataset and similarity",
        "; ".join(f"{d}/{s}: r={r:.3f}, d|cos|={diff:+.3f}" for (d, s), (r, diff) in vals.items()),
        ok,
    ))

    # 3. At equal dimension, learned keys retrieve better under noise than identity keys
    #    (dot-product attention, the paper's Eq. 5).
    if "identity" in maps:
        dot_sims = [s for s in sims if s in ("scaled_dot", "dot")]
        if dot_sims:
            gaps = {(d, s): _mean_accuracy(table, d, s, "learned", "noise") - _mean_accuracy(table, d, s, "identity", "noise")
                    for d in datasets for s in dot_sims}
            out.append(Claim(
                "learned_beat_identity_under_noise",
                "dot-product attention: learned minus identity accuracy, averaged over noise std > 0, >= 0.05 "
                "for every dataset",
                "; ".join(f"{d}/{s}: {v:+.3f}" for (d, s), v in gaps.items()),
                min(gaps.values()) >= 0.05,
            ))
        gaps = {(d, s): _mean_accuracy(table, d, s, "learned", "mask") - _mean_accuracy(table, d, s, "identity", "mask")
                for d in datasets for s in sims}
        out.append(Claim(
            "learned_beat_identity_on_partial_cues",
            "learned minus identity accuracy, averaged over masked-cue conditions, >= 0.03 for every dataset and similarity",
            "; ".join(f"{d}/{s}: {v:+.3f}" for (d, s), v in gaps.items()),
            min(gaps.values()) >= 0.03,
        ))
        # Control: with Euclidean similarity, identity keys decode a noisy cue to the nearest stored
        # item, the maximum-a-posteriori rule for isotropic Gaussian noise, so no map can beat them
        # on Gaussian noise by more than sampling error.
        if "neg_euclidean" in sims:
            gaps = {d: _mean_accuracy(table, d, "neg_euclidean", "learned", "noise")
                    - _mean_accuracy(table, d, "neg_euclidean", "identity", "noise") for d in datasets}
            out.append(Claim(
                "identity_optimal_for_gaussian_noise_euclidean",
                "Euclidean similarity, Gaussian noise: learned minus identity accuracy <= 0.01 for every dataset "
                "(identity = nearest-neighbour decoding, the MAP rule)",
                "; ".join(f"{d}: {v:+.3f}" for d, v in gaps.items()),
                max(gaps.values()) <= 0.01,
            ))
    return out


# -- figures ---------------------------------------------------------------------------
_STYLE = {"identity": ("black", "-"), "scaffold": ("tab:orange", "--"), "scaffold-wide": ("tab:red", "--"),
          "random-linear": ("tab:brown", ":"),
          "learned": ("tab:blue", "-"), "learned-shared": ("tab:cyan", "-."), "mixed": ("tab:green", "--")}


def plot(result: Result) -> dict[str, Any]:
    """Accuracy vs noise, accuracy on partial cues, geometry bars, similarity matrices, training loss."""
    import matplotlib.pyplot as plt

    cfg = result.config
    table, geo = result.tables["retrieval"], result.tables["geometry"]
    datasets, sims, maps = cfg["datasets"], cfg["similarities"], cfg["maps"]
    figs: dict[str, Any] = {}

    def grid(ncols_per_dataset: int = 1):
        fig, axes = plt.subplots(len(sims), len(datasets) * ncols_per_dataset, squeeze=False,
                                 figsize=(4.2 * len(datasets) * ncols_per_dataset, 3.4 * len(sims)), constrained_layout=True)
        return fig, axes

    fig, axes = grid()
    for r, sim in enumerate(sims):
        for c, dataset in enumerate(datasets):
            ax = axes[r][c]
            part = table[(table["dataset"] == dataset) & (table["similarity"] == sim) & (table["corruption"] == "noise")]
            for m in maps:
                s = part[part["map"] == m].groupby("level")["accuracy"].agg(["mean", "std"]).reset_index()
                color, ls = _STYLE[m]
                ax.errorbar(s["level"], s["mean"], yerr=s["std"].fillna(0), color=color, ls=ls, marker="o", ms=3, capsize=2, label=m)
            ax.set_title(f"{dataset}, {sim}")
            ax.set_xlabel("cue noise std")
            ax.set_ylabel("accuracy")
            ax.set_ylim(-0.03, 1.03)
    axes[0][0].legend(fontsize=7)
    figs["accuracy_noise"] = fig

    modes = sorted({c.removeprefix("mask-") for c in table["corruption"] if c.startswith("mask-")})
    if modes:
        fig, axes = grid(len(modes))
        for r, sim in enumerate(sims):
            for c, dataset in enumerate(datasets):
                for k, mode in enumerate(modes):
                    ax = axes[r][c * len(modes) + k]
                    part = table[(table["dataset"] == dataset) & (table["similarity"] == sim) & (table["corruption"] == f"mask-{mode}")]
                    for m in maps:
                        s = part[part["map"] == m].groupby("level")["accuracy"].agg(["mean", "std"]).reset_index()
                        color, ls = _STYLE[m]
                        ax.errorbar(s["level"], s["mean"], yerr=s["std"].fillna(0), color=color, ls=ls, marker="o", ms=3, capsize=2, label=m)
                    ax.set_title(f"{dataset}, {sim}, {mode} mask", fontsize=9)
                    ax.set_xlabel("fraction hidden")
                    ax.set_ylabel("accuracy")
                    ax.set_ylim(-0.03, 1.03)
        axes[0][0].legend(fontsize=7)
        figs["accuracy_partial"] = fig

    fig, axes = plt.subplots(2 * len(sims), len(datasets), squeeze=False,
                             figsize=(4.6 * len(datasets), 2.9 * 2 * len(sims)), constrained_layout=True)
    means = geo.groupby(["dataset", "similarity", "map"]).mean(numeric_only=True)
    x = np.arange(len(maps))
    for r, sim in enumerate(sims):
        for c, dataset in enumerate(datasets):
            rows = means.loc[[(dataset, sim, m) for m in maps]]
            ax = axes[2 * r][c]
            ax.bar(x - 0.2, rows["key_abs_cos"], 0.4, label="keys")
            ax.bar(x + 0.2, rows["value_abs_cos"], 0.4, label="read-out values")
            ax.axhline(float(rows["input_abs_cos"].mean()), color="k", ls="--", lw=1, label="inputs")
            ax.set_xticks(x, maps, rotation=30, fontsize=7)
            ax.set_ylabel("mean |off-diag cosine|")
            ax.set_title(f"{dataset}, {sim}", fontsize=9)
            ax = axes[2 * r + 1][c]
            ax.bar(x - 0.2, rows["key_rsm_corr"], 0.4, label="keys vs inputs")
            ax.bar(x + 0.2, rows["value_rsm_corr"], 0.4, label="values vs inputs")
            ax.set_xticks(x, maps, rotation=30, fontsize=7)
            ax.set_ylabel("RSM correlation")
            ax.set_ylim(min(0.0, float(rows[["key_rsm_corr", "value_rsm_corr"]].min().min())), 1.02)
    axes[0][0].legend(fontsize=7)
    axes[1][0].legend(fontsize=7)
    figs["geometry"] = fig

    rsm = result.tables["rsm"]
    if len(rsm):
        kinds = list(dict.fromkeys(rsm["kind"]))
        fig, axes = plt.subplots(1, len(kinds), figsize=(2.9 * len(kinds), 3.1), squeeze=False, constrained_layout=True)
        for ax, kind in zip(axes[0], kinds):
            part = rsm[rsm["kind"] == kind]
            n = int(part["i"].max()) + 1
            mat = np.zeros((n, n))
            mat[part["i"].to_numpy(), part["j"].to_numpy()] = part["cosine"].to_numpy()
            im = ax.imshow(mat, vmin=-1, vmax=1, cmap="RdBu_r")
            ax.set_title(kind, fontsize=8)
            ax.set_xticks([])
            ax.set_yticks([])
        fig.colorbar(im, ax=axes[0].tolist(), shrink=0.8, label="cosine")
        fig.suptitle(f"digits sorted by label, {sims[0]}", fontsize=9)
        figs["rsm"] = fig

    train = result.tables["training"]
    if len(train):
        fig, axes = grid()
        for r, sim in enumerate(sims):
            for c, dataset in enumerate(datasets):
                ax = axes[r][c]
                part = train[(train["dataset"] == dataset) & (train["similarity"] == sim)]
                for m, s in part.groupby("map", sort=False):
                    color, ls = _STYLE[m]
                    ax.plot(s["step"], s["loss"], color=color, ls=ls, label=m)
                fixed = geo[(geo["dataset"] == dataset) & (geo["similarity"] == sim) & ~geo["map"].isin(LEARNED)]
                for m, value in fixed.groupby("map", sort=False)["objective_mse"].mean().items():
                    color, _ = _STYLE[m]
                    ax.axhline(value, color=color, lw=0.8, ls=":", label=f"{m} (fixed, best beta)")
                ax.set_title(f"{dataset}, {sim}")
                ax.set_xlabel("Adam step")
                ax.set_ylabel("retrieval MSE (training-style cues)")
        axes[0][0].legend(fontsize=7)
        figs["training"] = fig
    return figs


EXPERIMENT = register(
    Experiment(
        name="learned-vs-fixed-keys",
        description="Keys learned for retrieval vs fixed random scaffold vs identity (content) keys: accuracy, fidelity, geometry.",
        config_type=Config,
        profiles={"quick": QUICK, "full": Config()},
        run=run,
        plot=plot,
        claims=claims,
    )
)
