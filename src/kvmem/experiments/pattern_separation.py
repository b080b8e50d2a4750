"""Experiment ``pattern-separation``: sparse expanded keys separate similar inputs; attractors complete noisy cues.

The review (Gershman, Fiete & Irie 2025, phenomena rows 19 and 22; section 5.7) asks for
keys that are sparse and conjunctive, so that similar experiences get discriminable
addresses, and notes that noisy cues may activate the wrong keys, so keys need clean-up:
attractor dynamics complete nearby inputs (it leaves open whether this happens in the
hippocampal-entorhinal loop or by dentate-gyrus separation and CA3 completion, Rolls 2013).
Three measurements with :class:`kvmem.bio.index.HippocampalIndex`, in ``seeds``
replicates (new expansion, new inputs):

1. **Separation curve.** For Gaussian input pairs at set cosines
   (:func:`kvmem.bio.index.pattern_separation`), the overlap of their index codes (shared
   fraction of the k active units) against the overlap of the inputs, for several
   sparsities k / U.
2. **Interference in a Hebbian (dual-form) memory.** ``groups`` groups of ``group_size``
   similar inputs (within-group input cosine ``rho``; inputs sqrt(rho) p + sqrt(1 - rho) z)
   each store an independent random value. The read is linear (identity separation, the
   Hebbian hetero-associative matrix sum_mu k_mu^T v_mu), so every stored pair adds
   crosstalk in proportion to its key overlap with the cue. A stored input, used as the
   cue, is recalled when the read is nearer (cosine) to its own value than to any other
   stored value. Three key codes: the raw input (keys = inputs, unit norm: the classical
   correlation-matrix memory), the random expansion W x without the k-WTA (unit norm: as
   many units as the index, no sparsity), and the sparse expanded code.
3. **Completion by attractor clean-up.** Cues x + N(0, noise^2) of stored inputs (groups
   at within-group cosine ``completion_rho``) are encoded, then cleaned up by
   :meth:`~kvmem.bio.index.HippocampalIndex.complete` (a CA3-like network over the stored
   keys: h = sum_mu (c . c_mu / k)^n c_mu, c <- kWTA(h)) with n = 1 (the classical
   Hebbian weights) and with n = ``completion_power`` (dense associative form). Measured:
   the overlap of the code with the cue's own stored key before and after clean-up, and
   Hebbian recall (as in 2) from the raw and the cleaned code.

Example:
    >>> import dataclasses
    >>> from kvmem.experiments import pattern_separation as ps
    >>> small = dataclasses.replace(ps.QUICK, trials=2, pairs=20, num_units=300, active=15, sparsities=(5, 15))
    >>> result = ps.run(small, seed=0)
    >>> ps.claims(result)[0].name, ps.claims(result)[0].passed
    ('sparse_keys_separate', True)
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import pandas as pd
import torch

from ..bio.index import HippocampalIndex, code_overlap, pattern_separation
from ..memory import SlotMemory
from .base import Claim, Experiment, Progress, Result, register, resolve_device, torch_threads
from .base import plot_band as _band
from .base import config_error as _fail, is_int as _is_int, is_real as _is_real
from .base import summarise_over_seeds as _summary


@dataclass(frozen=True)
class Config:
    """Settings of ``pattern-separation``.

    Attributes:
        input_dim: D, dimension of the cortical inputs.
        value_dim: Dv, dimension of the random values.
        num_units: U, index units.
        active: k, winners of the k-WTA in measurements 2 and 3.
        sparsities: values of k for the separation curve (each <= U).
        similarities: input cosines of the separation curve's pairs.
        pairs: input pairs per similarity.
        groups: groups of similar inputs per memory set (measurements 2 and 3).
        group_size: inputs per group.
        rhos: within-group input cosines of measurement 2.
        completion_rho: within-group input cosine of measurement 3.
        cue_noises: sd of the cue noise of measurement 3 (inputs have unit variance).
        completion_power: n of the dense clean-up (n = 1 is always run as well).
        completion_steps: the most synchronous clean-up updates.
        trials: independent memory sets per replicate (a batch dimension).
        seeds: independent replicates; bands are over them.
        device: torch device of the computation: 'cpu', 'cuda' or 'cuda:N'; random draws stay
            on the CPU, so results match across devices to rounding.
    """

    input_dim: int = 100
    value_dim: int = 50
    num_units: int = 1000
    active: int = 50
    sparsities: tuple[int, ...] = (10, 50, 200)
    similarities: tuple[float, ...] = (0.0, 0.2, 0.4, 0.6, 0.8, 0.9, 0.95, 0.99)
    pairs: int = 100
    groups: int = 10
    group_size: int = 5
    rhos: tuple[float, ...] = (0.0, 0.3, 0.5, 0.7, 0.8, 0.9, 0.95)
    completion_rho: float = 0.5
    cue_noises: tuple[float, ...] = (0.0, 0.5, 1.0, 1.5, 2.0, 3.0)
    completion_power: int = 3
    completion_steps: int = 5
    trials: int = 20
    seeds: int = 5
    device: str = "cpu"


QUICK = Config(pairs=50, similarities=(0.0, 0.4, 0.8, 0.95), rhos=(0.0, 0.5, 0.8, 0.95), cue_noises=(0.0, 1.0, 2.0),
               trials=4, seeds=2)





def validate(config: Config) -> torch.device:
    """Raise ``ValueError`` (naming the setting) for a config ``run`` cannot use.

    Args:
        config: the settings to check.

    Returns:
        the ``torch.device`` of the computation (``config.device``, checked).

    Example:
        >>> import dataclasses
        >>> validate(dataclasses.replace(QUICK, rhos=(0.5, 1.2)))
        Traceback (most recent call last):
        ...
        ValueError: rhos: expected a non-empty tuple of numbers in [0, 1), got (0.5, 1.2)
    """
    if not isinstance(config, Config):
        raise TypeError(f"config: expected a pattern_separation.Config, got {type(config).__name__}")
    for field, lo in (("input_dim", 1), ("value_dim", 2), ("num_units", 2), ("active", 1), ("pairs", 2),
                      ("groups", 1), ("group_size", 2), ("completion_power", 2), ("completion_steps", 1),
                      ("trials", 2), ("seeds", 2)):
        value = getattr(config, field)
        if not _is_int(value) or value < lo:
            _fail(field, f"an integer >= {lo}", value)
    if config.active > config.num_units:
        _fail("active", f"at most num_units = {config.num_units}", config.active)
    sp = config.sparsities
    if not isinstance(sp, tuple) or not sp or any(not _is_int(k) or not 1 <= k <= config.num_units for k in sp):
        _fail("sparsities", f"a non-empty tuple of integers in [1, num_units = {config.num_units}]", sp)
    for field, lo_open in (("similarities", False), ("rhos", True)):
        value = getattr(config, field)
        hi = "1)" if lo_open else "1]"
        if not isinstance(value, tuple) or not value or any(
            not _is_real(r) or r < 0 or (r >= 1 if lo_open else r > 1) for r in value
        ):
            _fail(field, f"a non-empty tuple of numbers in [0, {hi}", value)
    if not _is_real(config.completion_rho) or not 0 <= config.completion_rho < 1:
        _fail("completion_rho", "a number in [0, 1)", config.completion_rho)
    cn = config.cue_noises
    if not isinstance(cn, tuple) or not cn or any(not _is_real(s) or s < 0 for s in cn) or 0.0 not in cn:
        _fail("cue_noises", "a tuple of numbers >= 0 holding 0", cn)
    return resolve_device(config.device)


def grouped_inputs(config: Config, rho: float, gen: torch.Generator) -> torch.Tensor:
    """``[T, G * m, D]`` inputs sqrt(rho) p_g + sqrt(1 - rho) z: unit variance, within-group cosine ~ rho."""
    t, g, m, d = config.trials, config.groups, config.group_size, config.input_dim
    proto = torch.randn(t, g, 1, d, generator=gen)
    own = torch.randn(t, g, m, d, generator=gen)
    return (math.sqrt(rho) * proto + math.sqrt(1 - rho) * own).reshape(t, g * m, d)


def recalled(out: torch.Tensor, values: torch.Tensor) -> torch.Tensor:
    """``[T, N]`` bool: each read is nearest (cosine) to its own value among the stored values.

    Args:
        out: reads ``[T, N, Dv]``.
        values: the stored values ``[T, N, Dv]``.
    """
    unit = values / values.norm(dim=-1, keepdim=True)
    return (out @ unit.transpose(-1, -2)).argmax(-1) == torch.arange(values.shape[-2], device=values.device)


def _unit(x: torch.Tensor) -> torch.Tensor:
    return x / x.norm(dim=-1, keepdim=True).clamp_min(1e-12)


def _replicate(config: Config, rep: int, gen: torch.Generator, progress: Progress,
               dev: torch.device) -> dict[str, list[dict[str, Any]]]:
    rows: dict[str, list[dict[str, Any]]] = {"separation": [], "interference": [], "completion": []}
    index_seed = int(torch.randint(0, 2**31 - 1, (1,), generator=gen))
    pair_seed = int(torch.randint(0, 2**31 - 1, (1,), generator=gen))

    # 1. Separation curve at each sparsity (the same input pairs for every k).
    for k in config.sparsities:
        out = pattern_separation(HippocampalIndex(config.num_units, k, seed=index_seed), config.similarities,
                                 dim=config.input_dim, num_pairs=config.pairs, seed=pair_seed, device=dev)
        for target, inp, key in zip(out["target"].tolist(), out["input_overlap"].tolist(), out["key_overlap"].tolist()):
            f = k / config.num_units
            rows["separation"].append({"seed": rep, "active": k, "sparsity": f, "target": target,
                                       "input_overlap": inp, "key_overlap": key,
                                       "key_above_chance": (key - f) / (1 - f) if f < 1 else float("nan")})
    progress.advance()

    # 2. Hebbian interference among similar inputs, three key codes.
    n = config.groups * config.group_size
    for rho in config.rhos:
        x = grouped_inputs(config, rho, gen).to(dev)
        v = torch.randn(config.trials, n, config.value_dim, generator=gen).to(dev)
        index = HippocampalIndex(config.num_units, config.active, separation="identity", seed=index_seed)
        index.write(x, v)
        dense = _unit(x)
        expanded = _unit(x @ index.projection.T)
        row = {"seed": rep, "rho": rho,
               "input_overlap": _mean_within_group(code_overlap, x, config.group_size),
               "key_overlap": _mean_within_group(code_overlap, index.keys, config.group_size),
               "sparse": float(recalled(index.read(x), v).double().mean())}
        for name, keys in (("dense", dense), ("expanded", expanded)):
            hebbian = SlotMemory(similarity="dot", separation="identity")
            hebbian.write(keys, v)
            row[name] = float(recalled(hebbian.read(keys), v).double().mean())
        rows["interference"].append(row)
    progress.advance()

    # 3. Completion: clean-up of noisy cues' codes by attractor dynamics over the stored keys.
    x = grouped_inputs(config, config.completion_rho, gen)
    v = torch.randn(config.trials, n, config.value_dim, generator=gen)
    eps = torch.randn(x.shape, generator=gen)
    x, v, eps = x.to(dev), v.to(dev), eps.to(dev)
    index = HippocampalIndex(config.num_units, config.active, separation="identity", seed=index_seed)
    index.write(x, v)
    own_key = index.keys
    for noise in config.cue_noises:
        cues = x + noise * eps
        codes = index.encode(cues)
        row = {"seed": rep, "noise": noise, "cue_cosine": float(code_overlap(cues, x).mean()),
               "overlap_raw": float(((codes * own_key).sum(-1) / config.active).mean()),
               "recall_raw": float(recalled(index.read_codes(codes), v).double().mean())}
        for label, power in (("classical", 1), ("dense", config.completion_power)):
            clean = index.complete(codes, steps=config.completion_steps, power=power)
            row[f"overlap_{label}"] = float(((clean * own_key).sum(-1) / config.active).mean())
            row[f"exact_{label}"] = float((clean == own_key).all(-1).double().mean())
            row[f"recall_{label}"] = float(recalled(index.read_codes(clean), v).double().mean())
        rows["completion"].append(row)
    progress.advance()
    return rows


def _mean_within_group(overlap, codes: torch.Tensor, m: int) -> float:
    """Mean overlap of distinct members of the same group (codes ``[T, G * m, U]``)."""
    t, n, u = codes.shape
    grouped = codes.reshape(t, n // m, m, u)
    pairs = overlap(grouped.unsqueeze(-2), grouped.unsqueeze(-3))  # [T, G, m, m]
    off = ~torch.eye(m, dtype=torch.bool, device=codes.device)
    return float(pairs[..., off].mean())


def run(config: Config, *, seed: int = 0, progress: Progress | None = None) -> Result:
    """The three measurements for every replicate; per-seed tables and summaries over seeds.

    Args:
        config: the settings (validated first).
        seed: seeds the one ``torch.Generator`` every draw comes from (replicates, expansions).
        progress: told the number of tasks once, then advanced per task.

    Returns:
        a :class:`~kvmem.experiments.base.Result`: per-seed tables, ``*_summary`` tables
        (mean over seeds with 95% t bounds ``*_lo`` / ``*_hi``), scalars and the config.
    """
    dev = validate(config)
    progress = progress or Progress()
    progress.total(3 * config.seeds)
    gen = torch.Generator().manual_seed(seed)
    collected: dict[str, list[dict[str, Any]]] = {"separation": [], "interference": [], "completion": []}
    with torch_threads(1):
        for rep in range(config.seeds):
            for name, rows in _replicate(config, rep, gen, progress, dev).items():
                collected[name].extend(rows)
    tables = {name: pd.DataFrame(rows) for name, rows in collected.items()}
    tables["separation_summary"] = _summary(tables["separation"], ["active", "target"],
                                            ["input_overlap", "key_overlap", "key_above_chance"])
    tables["interference_summary"] = _summary(tables["interference"], ["rho"],
                                              ["input_overlap", "key_overlap", "dense", "expanded", "sparse"])
    completion_metrics = ["cue_cosine", "overlap_raw", "recall_raw"] + [
        f"{m}_{label}" for label in ("classical", "dense") for m in ("overlap", "exact", "recall")]
    tables["completion_summary"] = _summary(tables["completion"], ["noise"], completion_metrics)
    scalars = {"seeds": config.seeds, "trials": config.trials, "num_units": config.num_units, "active": config.active,
               "memories": config.groups * config.group_size, "completion_power": config.completion_power}
    return Result(tables=tables, scalars=scalars, config=asdict(config))


def plot(result: Result) -> dict[str, Any]:
    """Separation curve, Hebbian interference by key code, and completion before/after clean-up.

    Args:
        result: what :func:`run` returned.
    """
    import matplotlib.pyplot as plt

    sc = result.scalars
    fig, axes = plt.subplots(1, 4, figsize=(20, 4.3), constrained_layout=True)
    ax = axes[0]
    s = result.tables["separation_summary"]
    for k, part in s.groupby("active", sort=True):
        line = ax.plot(part["input_overlap"], part["key_above_chance"], marker="o", ms=3,
                       label=f"k/U = {k / sc['num_units']:.0%}")[0]
        ax.fill_between(part["input_overlap"], part["key_above_chance_lo"], part["key_above_chance_hi"],
                        color=line.get_color(), alpha=0.2, lw=0)
    ax.plot([0, 1], [0, 1], color="grey", lw=0.8, ls=":", label="no separation")
    ax.set_xlabel("input overlap (cosine)")
    ax.set_ylabel("key overlap above chance, (o - k/U) / (1 - k/U)")
    ax.set_title("sparse expansion separates")
    ax.legend(fontsize=8)

    ax = axes[1]
    i = result.tables["interference_summary"]
    for metric, label in (("dense", "keys = inputs (dense)"), ("expanded", "expanded, not sparse"),
                          ("sparse", f"sparse expanded (k/U = {sc['active'] / sc['num_units']:.0%})")):
        _band(ax, i["rho"], i, metric, label)
    ax.set_xlabel("similarity of inputs within a group (cosine)")
    ax.set_ylabel("Hebbian recall")
    ax.set_title(f"interference among similar inputs ({sc['memories']} pairs)")
    ax.set_ylim(-0.03, 1.03)
    ax.legend(fontsize=8)

    c = result.tables["completion_summary"]
    ax = axes[2]
    _band(ax, c["noise"], c, "overlap_raw", "cue code")
    _band(ax, c["noise"], c, "overlap_classical", "after clean-up, n = 1 (Hebbian)", ls="--")
    _band(ax, c["noise"], c, "overlap_dense", f"after clean-up, n = {sc['completion_power']}")
    ax.set_xlabel("cue noise (sd)")
    ax.set_ylabel("overlap with the cue's own stored key")
    ax.set_title("pattern completion")
    ax.set_ylim(-0.03, 1.03)
    ax.legend(fontsize=8)
    ax = axes[3]
    _band(ax, c["noise"], c, "recall_raw", "from the cue code")
    _band(ax, c["noise"], c, "recall_classical", "after clean-up, n = 1", ls="--")
    _band(ax, c["noise"], c, "recall_dense", f"after clean-up, n = {sc['completion_power']}")
    ax.set_xlabel("cue noise (sd)")
    ax.set_ylabel("Hebbian recall")
    ax.set_title("clean-up before the read")
    ax.set_ylim(-0.03, 1.03)
    ax.legend(fontsize=8)
    fig.suptitle(f"pattern separation and completion (mean over {sc['seeds']} seeds, 95% t bands)", fontsize=10)
    return {"pattern_separation": fig}


def claims(result: Result) -> list[Claim]:
    """Separation, sparsity ordering, interference, completion, and the classical attractor's failure.

    Args:
        result: what :func:`run` returned (its summary tables).
    """
    cfg = result.config
    s = result.tables["separation_summary"]
    inside = s[(s["target"] > 0.05) & (s["target"] < 0.999)]
    gap = float((inside["input_overlap"] - inside["key_above_chance"]).min())
    # Sparser codes separate more: key overlap above chance at each similarity rises with k.
    wide = s.pivot(index="target", columns="active", values="key_above_chance").sort_index(axis=1)
    inner = wide.loc[(wide.index > 0.05) & (wide.index < 0.999)]
    order_ok = bool((inner.diff(axis=1).iloc[:, 1:] > 0).all().all()) if inner.shape[1] > 1 else True

    i = result.tables["interference_summary"].sort_values("rho")
    hi = i[i["rho"] <= 0.9].iloc[-1]
    rho_hi = float(hi["rho"])
    sparse_gain = float(hi["sparse"] - hi["dense"])
    expand_gain = float((i["expanded"] - i["dense"]).abs().max())
    low = i.iloc[0]

    c = result.tables["completion_summary"].sort_values("noise")
    mid = c[c["noise"] <= 1.0].iloc[-1]
    noise_mid = float(mid["noise"])
    zero = c[c["noise"] == 0.0].iloc[0]

    return [
        Claim("sparse_keys_separate",
              "for every input similarity strictly between 0 and 1, the key overlap above chance, (o - k/U) / (1 - k/U), "
              "lies below the input overlap at every sparsity (by > 0), and sparser codes separate more (it rises "
              "with k)",
              f"smallest input overlap - key overlap above chance {gap:.3f}; ordered by k: {order_ok}", gap > 0 and order_ok),
        Claim("sparse_keys_reduce_interference",
              f"in a Hebbian memory of similar inputs (within-group cosine {rho_hi:g}) sparse expanded keys recall at "
              "least 0.3 more than keys = inputs, all key codes recall >= 0.95 for unrelated inputs, and expansion "
              "without sparsity changes recall by <= 0.1 at every similarity (the k-WTA does the separating)",
              f"sparse {hi['sparse']:.3f} vs dense {hi['dense']:.3f} (gain {sparse_gain:.3f}); unrelated "
              f"{min(low['sparse'], low['dense'], low['expanded']):.3f}; expansion alone at most {expand_gain:.3f}",
              sparse_gain >= 0.3 and min(low["sparse"], low["dense"], low["expanded"]) >= 0.95 and expand_gain <= 0.1),
        Claim("attractor_completes_noisy_cues",
              f"clean-up with n = {cfg['completion_power']} completes the codes of noisy cues (noise sd {noise_mid:g}: "
              "overlap with the own key >= 0.95 from <= 0.6) and raises Hebbian recall by >= 0.1",
              f"overlap {mid['overlap_raw']:.3f} -> {mid['overlap_dense']:.3f}, recall {mid['recall_raw']:.3f} -> "
              f"{mid['recall_dense']:.3f} (cue cosine {mid['cue_cosine']:.2f})",
              mid["overlap_dense"] >= 0.95 and mid["overlap_raw"] <= 0.6 and mid["recall_dense"] - mid["recall_raw"] >= 0.1),
        Claim("classical_attractor_merges_similar_keys",
              f"with the classical Hebbian weights (n = 1) and similar inputs (within-group cosine "
              f"{cfg['completion_rho']:g}) clean-up is no completion: even exact cues are pulled off their keys "
              "(overlap <= 0.9) and recall falls below the uncleaned read at every noise",
              f"exact cues: overlap {zero['overlap_classical']:.3f}; recall falls by at least "
              f"{float((c['recall_raw'] - c['recall_classical']).min()):.3f}",
              zero["overlap_classical"] <= 0.9 and bool((c["recall_classical"] < c["recall_raw"]).all())),
    ]


EXPERIMENT = register(
    Experiment(
        name="pattern-separation",
        description="Sparse expanded keys reduce interference between similar inputs; attractor clean-up completes noisy cues.",
        config_type=Config,
        profiles={"quick": QUICK, "full": Config()},
        run=run,
        plot=plot,
        claims=claims,
    )
)
