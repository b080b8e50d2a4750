"""Experiment ``semantic-dementia-vs-amnesia``: degraded values against lesioned keys, a double dissociation.

The review (Gershman, Fiete & Irie 2025, phenomena rows 12-14; section "Biological
implementation") places keys and key-query matching in the hippocampus and values (content,
semantic regularities) in the neocortex. Two patient groups then damage different halves
of one memory:

- **Semantic dementia** (Graham, Patterson & Hodges 1999): degeneration of anterior
  temporal cortex gives profound semantic loss with relatively intact recognition of recent
  experiences: the values are degraded, keys and addressing are spared.
- **Hippocampal amnesia**: the keys are lost; the content stored in cortex (semantic
  knowledge) is spared, but no cue reaches the episodes.

Mapping. Each of ``memories`` episodes has a cortical input x (the episode's context and
event, D numbers; the key's source) and a value v, the cortical content it reinstates
(its concept's semantic features, Dv numbers). Three tests:

- *Recognition* (old/new): key match alone, :meth:`~kvmem.bio.index.HippocampalIndex.familiarity`
  of noisy old cues (x + N(0, cue_noise^2)) against new inputs; the area under the ROC
  curve (0.5 = chance).
- *Recall* (cued recall of content): the index reinstates a value from the noisy cue; it
  counts when the reinstated value is nearest (cosine) to the episode's original value.
- *Semantic knowledge* (e.g. naming a pictured concept), a cortical route that does not go
  through the index: a probe v + N(0, probe_noise^2) is named by the nearest (cosine)
  stored cortical value.

Damage, in ``seeds`` replicates of ``trials`` memory sets each:

- semantic dementia: :meth:`~kvmem.bio.index.HippocampalIndex.degrade_values` with sd
  ``value_noises`` (values have unit variance);
- amnesia: :meth:`~kvmem.bio.index.HippocampalIndex.lesion_keys` of a random fraction
  ``lesion_fractions`` of the episodes (drawn per memory set, nested across fractions).

The classical comparison (keys = values) stores one trace per episode, the concatenation
[x, v], in a :class:`kvmem.SlotMemory` (cosine similarity, hard max). Recognition matches
[cue, 0] against the traces (the best cosine), the semantic probe [0, probe] names the
episode of the best-matching trace. Damage can only hit the one store: noise of sd
``value_noises`` on whole traces, or removal (zeroing) of a fraction of the traces.

Example:
    >>> import dataclasses
    >>> from kvmem.experiments import semantic_dementia_vs_amnesia as sda
    >>> small = dataclasses.replace(sda.QUICK, trials=2, memories=10)
    >>> result = sda.run(small, seed=0)
    >>> sorted(result.tables["damage"]["damage"].unique())
    ['keys lesioned', 'traces degraded', 'traces removed', 'values degraded']
"""

from __future__ import annotations

import copy
from dataclasses import asdict, dataclass
from typing import Any

import pandas as pd
import torch

from ..bio.index import HippocampalIndex
from ..memory import SlotMemory
from .base import Claim, Experiment, Progress, Result, register, resolve_device, torch_threads
from .base import auc, plot_band as _band
from .base import config_error as _fail, is_int as _is_int, is_real as _is_real
from .base import summarise_over_seeds as _summary


@dataclass(frozen=True)
class Config:
    """Settings of ``semantic-dementia-vs-amnesia``.

    Attributes:
        input_dim: D, dimension of an episode's cortical input.
        value_dim: Dv, dimension of a value (semantic features).
        memories: episodes stored per memory set.
        cue_noise: sd of the noise of a recognition or recall cue.
        probe_noise: sd of the noise of a semantic probe.
        num_units: U, index units.
        active: k, winners of the k-WTA.
        value_noises: sd of the degradation of the values (semantic dementia) and of the
            classical traces; must hold 0.
        lesion_fractions: fractions of episodes whose keys are lesioned (amnesia) or whose
            classical traces are removed; must hold 0 and 1.
        trials: independent memory sets per replicate (a batch dimension).
        seeds: independent replicates (new expansion, new episodes); bands are over them.
        device: torch device of the computation: 'cpu', 'cuda' or 'cuda:N'; random draws stay
            on the CPU, so results match across devices to rounding.
    """

    input_dim: int = 100
    value_dim: int = 50
    memories: int = 50
    cue_noise: float = 0.5
    probe_noise: float = 1.0
    num_units: int = 1000
    active: int = 50
    value_noises: tuple[float, ...] = (0.0, 0.5, 1.0, 1.5, 2.0, 3.0, 4.0, 6.0)
    lesion_fractions: tuple[float, ...] = (0.0, 0.2, 0.4, 0.6, 0.8, 1.0)
    trials: int = 20
    seeds: int = 5
    device: str = "cpu"


QUICK = Config(trials=8, seeds=2, memories=40, value_noises=(0.0, 1.0, 2.0, 6.0), lesion_fractions=(0.0, 0.5, 1.0))





def validate(config: Config) -> torch.device:
    """Raise ``ValueError`` (naming the setting) for a config ``run`` cannot use.

    Args:
        config: the settings to check.

    Returns:
        the ``torch.device`` of the computation (``config.device``, checked).

    Example:
        >>> import dataclasses
        >>> validate(dataclasses.replace(QUICK, lesion_fractions=(0.0, 0.5)))
        Traceback (most recent call last):
        ...
        ValueError: lesion_fractions: expected a tuple of numbers in [0, 1] holding 0 and 1, got (0.0, 0.5)
    """
    if not isinstance(config, Config):
        raise TypeError(f"config: expected a semantic_dementia_vs_amnesia.Config, got {type(config).__name__}")
    for field, lo in (("input_dim", 1), ("value_dim", 2), ("memories", 2), ("num_units", 2), ("active", 1),
                      ("trials", 2), ("seeds", 2)):
        value = getattr(config, field)
        if not _is_int(value) or value < lo:
            _fail(field, f"an integer >= {lo}", value)
    if config.active > config.num_units:
        _fail("active", f"at most num_units = {config.num_units}", config.active)
    for field in ("cue_noise", "probe_noise"):
        value = getattr(config, field)
        if not _is_real(value) or value < 0:
            _fail(field, "a finite number >= 0", value)
    noises = config.value_noises
    if not isinstance(noises, tuple) or any(not _is_real(s) or s < 0 for s in noises) or 0.0 not in noises:
        _fail("value_noises", "a tuple of numbers >= 0 holding 0", noises)
    fr = config.lesion_fractions
    if not isinstance(fr, tuple) or any(not _is_real(f) or not 0 <= f <= 1 for f in fr) or 0.0 not in fr or 1.0 not in fr:
        _fail("lesion_fractions", "a tuple of numbers in [0, 1] holding 0 and 1", fr)
    return resolve_device(config.device)


def nearest_is_own(queries: torch.Tensor, stored: torch.Tensor) -> torch.Tensor:
    """``[T, N]`` bool: row n of ``queries`` is nearest (cosine) to row n of ``stored``.

    A zero stored row has cosine 0 with everything; a query is never counted as naming it.

    Args:
        queries: ``[T, N, Dv]``.
        stored: ``[T, N, Dv]``.
    """
    unit = stored / stored.norm(dim=-1, keepdim=True).clamp_min(1e-12)
    scores = queries @ unit.transpose(-1, -2)
    best = scores.argmax(-1)
    return (best == torch.arange(stored.shape[-2], device=stored.device)) & (scores.amax(-1) > 0)


def _replicate(config: Config, rep: int, gen: torch.Generator, dev: torch.device) -> list[dict[str, Any]]:
    t, n, d, dv = config.trials, config.memories, config.input_dim, config.value_dim
    f32 = torch.float32
    x = torch.randn(t, n, d, generator=gen, dtype=f32)
    v = torch.randn(t, n, dv, generator=gen, dtype=f32)
    lures = torch.randn(t, n, d, generator=gen, dtype=f32)
    cues = x + config.cue_noise * torch.randn(t, n, d, generator=gen, dtype=f32)
    probes = v + config.probe_noise * torch.randn(t, n, dv, generator=gen, dtype=f32)
    order = torch.rand(t, n, generator=gen).argsort(-1).argsort(-1)  # a random rank per episode: nested lesions
    trace_noise = torch.randn(t, n, d + dv, generator=gen, dtype=f32)
    index_seed = int(torch.randint(0, 2**31 - 1, (1,), generator=gen))
    # Drawn on the CPU in a fixed order, then moved: the same episodes on every device.
    x, v, lures, cues, probes, order, trace_noise = (a.to(dev) for a in (x, v, lures, cues, probes, order, trace_noise))

    base = HippocampalIndex(config.num_units, config.active, seed=index_seed)
    base.write(x, v)
    codes = base.encode(torch.cat([cues, lures], -2))  # encoded once for every damage
    rows = []

    def kv_row(damage: str, level: float, index: HippocampalIndex) -> dict[str, Any]:
        old = index.read_codes(codes[..., :n, :], details=True)
        fam_lure = index.read_codes(codes[..., n:, :], details=True).scores.amax(-1)
        return {"seed": rep, "model": "key-value", "damage": damage, "level": level,
                "recognition_auc": auc(old.scores.amax(-1), fam_lure),
                "recall": float(nearest_is_own(old.values, v).double().mean()),
                "semantic": float(nearest_is_own(probes, index.values).double().mean())}

    for noise in config.value_noises:
        index = copy.deepcopy(base)
        if noise > 0:
            index.degrade_values(noise, seed=index_seed)
        rows.append(kv_row("values degraded", noise, index))
    for frac in config.lesion_fractions:
        index = copy.deepcopy(base)
        lesioned = order < round(frac * n)
        if bool(lesioned.any()):
            index.lesion_keys(lesioned)
        rows.append(kv_row("keys lesioned", frac, index))

    zeros_x, zeros_v = torch.zeros(t, n, d, dtype=f32, device=dev), torch.zeros(t, n, dv, dtype=f32, device=dev)
    old_q, lure_q = torch.cat([cues, zeros_v], -1), torch.cat([lures, zeros_v], -1)
    probe_q = torch.cat([zeros_x, probes], -1)
    clean = torch.cat([x, v], -1)

    def classical_row(damage: str, level: float, traces: torch.Tensor) -> dict[str, Any]:
        slots = SlotMemory(similarity="cosine", separation="hardmax")
        slots.write(traces, traces)  # one trace is key and content
        fam_old = slots.read(old_q, details=True).scores.amax(-1)
        fam_lure = slots.read(lure_q, details=True).scores.amax(-1)
        named = slots.read(probe_q, details=True).scores
        semantic = (named.argmax(-1) == torch.arange(n, device=dev)) & (named.amax(-1) > 0)
        recalled = slots.read(old_q)[..., d:]
        return {"seed": rep, "model": "classical", "damage": damage, "level": level,
                "recognition_auc": auc(fam_old, fam_lure),
                "recall": float(nearest_is_own(recalled, v).double().mean()),
                "semantic": float(semantic.double().mean())}

    for noise in config.value_noises:
        rows.append(classical_row("traces degraded", noise, clean + noise * trace_noise))
    for frac in config.lesion_fractions:
        removed = (order < round(frac * n)).unsqueeze(-1)
        rows.append(classical_row("traces removed", frac, clean.masked_fill(removed, 0.0)))
    return rows


METRICS = ["recognition_auc", "recall", "semantic"]


def run(config: Config, *, seed: int = 0, progress: Progress | None = None) -> Result:
    """Every damage level for both models in every replicate; summaries over seeds.

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
    progress.total(config.seeds)
    gen = torch.Generator().manual_seed(seed)
    rows = []
    with torch_threads(1):
        for rep in range(config.seeds):
            rows.extend(_replicate(config, rep, gen, dev))
            progress.advance()
    table = pd.DataFrame(rows)
    summary = _summary(table, ["model", "damage", "level"], METRICS)
    scalars = {"seeds": config.seeds, "trials": config.trials, "memories": config.memories,
               "chance_semantic": 1.0 / config.memories}
    return Result(tables={"damage": table, "damage_summary": summary}, scalars=scalars, config=asdict(config))


def plot(result: Result) -> dict[str, Any]:
    """Four panels (two damages x two models), each task against damage severity.

    Args:
        result: what :func:`run` returned.
    """
    import matplotlib.pyplot as plt

    s = result.tables["damage_summary"]
    fig, axes = plt.subplots(1, 4, figsize=(19, 4.3), constrained_layout=True, sharey=True)
    panels = [("key-value", "values degraded", "value noise (sd)", "semantic dementia: values degraded"),
              ("key-value", "keys lesioned", "fraction of keys lesioned", "amnesia: keys lesioned"),
              ("classical", "traces degraded", "trace noise (sd)", "keys = values: traces degraded"),
              ("classical", "traces removed", "fraction of traces removed", "keys = values: traces removed")]
    for ax, (model, damage, xlabel, title) in zip(axes, panels):
        part = s[(s["model"] == model) & (s["damage"] == damage)]
        for metric, label in (("recognition_auc", "recognition (AUC)"), ("recall", "cued recall"),
                              ("semantic", "semantic naming")):
            _band(ax, part["level"], part, metric, label)
        ax.axhline(0.5, color="grey", lw=0.6, ls=":")
        ax.set_xlabel(xlabel)
        ax.set_title(title, fontsize=10)
        ax.set_ylim(-0.03, 1.03)
    axes[0].set_ylabel("accuracy / AUC")
    axes[0].legend(fontsize=8)
    fig.suptitle(f"semantic dementia vs amnesia (mean over {result.scalars['seeds']} seeds, 95% t bands)", fontsize=10)
    return {"semantic_dementia_vs_amnesia": fig}


def claims(result: Result) -> list[Claim]:
    """Semantic dementia, amnesia, the double dissociation, and its absence with keys = values.

    Args:
        result: what :func:`run` returned (its summary tables).
    """
    table = result.tables["damage"]
    s = result.tables["damage_summary"]

    def get(model, damage, level, metric):
        row = s[(s["model"] == model) & (s["damage"] == damage) & (s["level"] == level)]
        return float(row[metric].iloc[0])

    def exact_same(damage: str, metric: str) -> float:
        part = table[(table["model"] == "key-value") & (table["damage"] == damage)]
        return float(part.groupby("seed")[metric].agg(lambda c: c.max() - c.min()).max())

    kv, cl = "key-value", "classical"
    noise_top = float(max(result.config["value_noises"]))
    intact = {m: get(kv, "values degraded", 0.0, m) for m in METRICS}
    sd = {m: get(kv, "values degraded", noise_top, m) for m in METRICS}
    am = {m: get(kv, "keys lesioned", 1.0, m) for m in METRICS}
    rec_spread, sem_spread = exact_same("values degraded", "recognition_auc"), exact_same("keys lesioned", "semantic")
    sem_cross = (intact["semantic"] - sd["semantic"]) - (intact["semantic"] - am["semantic"])
    rec_cross = (intact["recognition_auc"] - am["recognition_auc"]) - (intact["recognition_auc"] - sd["recognition_auc"])

    cl_intact = {m: get(cl, "traces degraded", 0.0, m) for m in METRICS}
    cl_noisy = {m: get(cl, "traces degraded", noise_top, m) for m in METRICS}
    removed = s[(s["model"] == cl) & (s["damage"] == "traces removed") & (s["level"] > 0)]
    # Removing a fraction f of the traces should cost semantic naming about f of its accuracy.
    sem_loss_ratio = float(((cl_intact["semantic"] - removed["semantic"]) / (removed["level"] * cl_intact["semantic"])).min())

    return [
        Claim("semantic_dementia",
              f"degraded values (noise sd {noise_top:g}): semantic naming falls to <= 0.3 (from >= 0.95) while "
              "recognition is spared exactly (in every seed the same AUC at every value noise)",
              f"semantic {intact['semantic']:.3f} -> {sd['semantic']:.3f}; recognition AUC {sd['recognition_auc']:.3f}, "
              f"largest spread {rec_spread:g}",
              intact["semantic"] >= 0.95 and sd["semantic"] <= 0.3 and rec_spread == 0.0),
        Claim("amnesia",
              "lesioned keys (all episodes): cued recall <= 0.05 and recognition near chance (AUC <= 0.6) while "
              "semantic knowledge is spared exactly (in every seed the same naming accuracy at every lesion size)",
              f"recall {intact['recall']:.3f} -> {am['recall']:.3f}, AUC {intact['recognition_auc']:.3f} -> "
              f"{am['recognition_auc']:.3f}; semantic {am['semantic']:.3f}, largest spread {sem_spread:g}",
              am["recall"] <= 0.05 and am["recognition_auc"] <= 0.6 and sem_spread == 0.0),
        Claim("double_dissociation",
              "the two damages cross: semantic naming is lost by at least 0.5 more after degraded values than after "
              "lesioned keys, recognition by at least 0.3 more after lesioned keys than after degraded values",
              f"semantic difference {sem_cross:.3f}, recognition difference {rec_cross:.3f}",
              sem_cross >= 0.5 and rec_cross >= 0.3),
        Claim("classical_damage_hits_both",
              "with keys = values every damage of the one store impairs both tasks: trace noise that takes semantic "
              "naming to <= 0.3 also lowers recognition (AUC down by >= 0.1), and removing a fraction f of the "
              "traces costs semantic naming at least 0.8 f of its accuracy (the amnesic pattern cannot arise)",
              f"noise: semantic {cl_noisy['semantic']:.3f}, AUC {cl_intact['recognition_auc']:.3f} -> "
              f"{cl_noisy['recognition_auc']:.3f}; removal: smallest semantic loss / (f x intact) {sem_loss_ratio:.3f}",
              cl_noisy["semantic"] <= 0.3 and cl_intact["recognition_auc"] - cl_noisy["recognition_auc"] >= 0.1
              and sem_loss_ratio >= 0.8),
    ]


EXPERIMENT = register(
    Experiment(
        name="semantic-dementia-vs-amnesia",
        description="Degraded values (semantic loss, recognition spared) vs lesioned keys (recall lost, semantics spared).",
        config_type=Config,
        profiles={"quick": QUICK, "full": Config()},
        run=run,
        plot=plot,
        claims=claims,
    )
)
