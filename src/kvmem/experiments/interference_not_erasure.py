"""Experiment ``interference-not-erasure``: list length, the list before last, and reinstated keys.

The review (Gershman, Fiete & Irie 2025, Sec. 4; phenomena 1, 4, 5, 33) argues that
forgetting over short intervals is interference at retrieval, not erasure: Shiffrin (1970,
"Forgetting: trace erosion or retrieval failure?") found that recall of the list before
last depends on that list's own length and not on the length of the list in between.
Here list context enters the keys.

Task -> key-value memory:

- Each studied word n is one slot. Its key is ``k_n = [w_i f_n ; w_c c_n]``: the item
  features f_n (random +-1 / sqrt(Di)) and the temporal context c_n at study, a random walk
  on the unit sphere (:func:`kvmem.context.random_drift`) that drifts by ``drift_rate`` per
  word and jumps by ``boundary_rate`` between lists, with ``w_i^2 + w_c^2 = 1``. Its value
  is the word's identity (one-hot).
- List A (length ``LA``) is studied, then list B (length ``LB``); the test asks for list A.
- Free recall of the list before last: the query is the reinstated list-A context,
  ``q = [0 ; w_c cbar_A]`` with ``cbar_A`` the normalised mean of list A's study contexts.
  Each of ``attempts`` retrieval attempts samples one slot by the Luce / softmax rule
  with a "nothing comes to mind" option of score ``threshold`` (as SAM does; Raaijmakers &
  Shiffrin 1981): ``p_n = exp(beta s_n) / (exp(beta theta) + sum_m exp(beta s_m))`` with
  ``s_n = q . k_n``. Sampling with replacement, word n is recalled with probability
  ``1 - (1 - p_n)^attempts`` (exact, so no sampling noise enters the tables).
- Reinstated key (cued recall): the query is the word's own study context with a fragment
  of its features (fraction ``fragment`` of the item entries right, the rest random +-1),
  read by hard max; recalled when the best-matching slot holds the word.

Models on the same lists:

- ``kv``: :class:`~kvmem.SlotMemory`, unlimited slots (nothing is ever removed);
- ``buffer``: the same with ``capacity`` slots and the oldest overwritten: a displacement
  (erasure) store, the hypothesis Shiffrin's experiment tested against;
- ``hopfield`` (reinstated-key test only): the classical model with keys equal to values,
  a :class:`~kvmem.ClassicalHopfield` (pseudo-inverse rule) storing ``[f_n ; sign(c_n)]``
  as +-1 patterns, cued with the same fragment and study context; recalled when the item
  part of the fixed point has overlap >= ``hopfield_match`` with the word and with no
  other word more.

Claims checked: the list-length effect; list-A recall independent of LB in the key-value
model; a clear LB effect in the displacement store (so the measure can see one); every
list-A word still recalled (>= 0.95) from its reinstated key, even where free recall is
poor; and in the keys-equal-values network the intervening list does wipe out reinstated
recall of list A (storage interference). Several seeds give 95% t confidence bands.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import pandas as pd
import torch

from ..context import random_drift
from ..memory import ClassicalHopfield, SlotMemory
from .base import Claim, Experiment, Progress, Result, register, resolve_device, torch_threads

MODELS_FREE = ("kv", "buffer")
MODELS_CUED = ("kv", "buffer", "hopfield")

# Tolerances of the claims (chosen before the full run; see docs/experiments/interference-not-erasure.md).
LENGTH_DROP_MIN = 0.3      # recall(LA shortest) - recall(LA longest) in the kv model
LB_EFFECT_MAX = 0.03       # |recall(LB longest) - recall(LB shortest)| for every LA, kv model
BUFFER_LB_EFFECT_MIN = 0.2  # the displacement store's LB effect at the shortest LA
REINSTATED_MIN = 0.95      # kv recall from the reinstated key, every cell
FREE_POOR_MAX = 0.5        # free recall at the longest LA is at most this ("forgotten")
HOPFIELD_DROP_MIN = 0.5    # classical net: reinstated recall falls by this from LB shortest to longest


@dataclass(frozen=True)
class Config:
    """Settings of ``interference-not-erasure``.

    Attributes:
        item_dim: Di, item features (+-1 / sqrt(Di)).
        context_dim: Dc, the temporal context.
        drift_rate: context step per studied word (cosine of neighbours sqrt(1 - rate^2)).
        boundary_rate: context jump between the lists (and the end of list B).
        context_weight: w_c, the context's share of each key (item share sqrt(1 - w_c^2)).
        beta: inverse temperature of the sampling rule.
        threshold: score of the "nothing comes to mind" option (in units of q . k).
        attempts: retrieval attempts (samples) in free recall.
        list_lengths_a: lengths of the list before last (LA).
        list_lengths_b: lengths of the intervening list (LB).
        buffer_capacity: slots of the displacement store.
        fragment: fraction of item entries right in the reinstated-key cue.
        hopfield_steps: synchronous update budget of the classical network.
        hopfield_match: item-part overlap that counts as recall in the classical network.
        seeds: independent replications (confidence bands are across them).
        trials: lists per replication and cell (a batch dimension).
        device: torch device of the computation: 'cpu', 'cuda' or 'cuda:N'; random draws
            stay on the CPU, so results match across devices to rounding.
    """

    item_dim: int = 64
    context_dim: int = 64
    drift_rate: float = 0.15
    boundary_rate: float = 0.9
    context_weight: float = 0.8
    beta: float = 25.0
    threshold: float = 0.5
    attempts: int = 10
    list_lengths_a: tuple[int, ...] = (5, 10, 20, 40)
    list_lengths_b: tuple[int, ...] = (5, 10, 20, 40)
    buffer_capacity: int = 20
    fragment: float = 0.5
    hopfield_steps: int = 30
    hopfield_match: float = 0.9
    seeds: int = 5
    trials: int = 40
    device: str = "cpu"


QUICK = Config(list_lengths_a=(5, 20), list_lengths_b=(5, 40), seeds=3, trials=12)


def _check(config: Config) -> torch.device:
    """Raise ``ValueError`` naming the first bad setting; return the torch device of the computation."""
    for name in ("item_dim", "context_dim"):
        if getattr(config, name) < 2:
            raise ValueError(f"{name}: expected an integer >= 2, got {getattr(config, name)}")
    for name in ("attempts", "buffer_capacity", "hopfield_steps", "trials"):
        if getattr(config, name) < 1:
            raise ValueError(f"{name}: expected an integer >= 1, got {getattr(config, name)}")
    if config.seeds < 2:
        raise ValueError(f"seeds: expected at least 2 replications (for confidence bands), got {config.seeds}")
    for name in ("drift_rate", "boundary_rate", "fragment"):
        value = getattr(config, name)
        if not 0.0 <= value <= 1.0:
            raise ValueError(f"{name}: expected a number in [0, 1], got {value}")
    if not 0.0 < config.context_weight < 1.0:
        raise ValueError(f"context_weight: expected a number in (0, 1), got {config.context_weight}")
    if not (config.beta > 0 and math.isfinite(config.beta)):
        raise ValueError(f"beta: expected a finite number > 0, got {config.beta}")
    if not math.isfinite(config.threshold):
        raise ValueError(f"threshold: expected a finite number, got {config.threshold}")
    if not 0.0 < config.hopfield_match <= 1.0:
        raise ValueError(f"hopfield_match: expected a number in (0, 1], got {config.hopfield_match}")
    for name in ("list_lengths_a", "list_lengths_b"):
        lengths = getattr(config, name)
        if not lengths or any(not isinstance(n, int) or n < 1 for n in lengths) or len(set(lengths)) != len(lengths):
            raise ValueError(f"{name}: expected distinct list lengths >= 1, got {lengths!r}")
    return resolve_device(config.device)


# -- shared helpers (also used by memory-recovery and context-generalisation) ---------------------
def luce_recall(scores: torch.Tensor, beta: float, threshold: float, attempts: int) -> torch.Tensor:
    """Probability that each slot is recalled in ``attempts`` samples with a null option.

    One attempt picks slot n with ``p_n = exp(beta s_n) / (exp(beta theta) + sum_m exp(beta s_m))``
    and nothing with the remaining probability; attempts are independent (sampling with
    replacement), so slot n is recalled at least once with ``1 - (1 - p_n)^attempts``.

    Args:
        scores: match scores s ``[..., N]``.
        beta: inverse temperature, > 0.
        threshold: theta, the score of the null option.
        attempts: number of samples, >= 1.

    Shapes:
        scores ``[..., N]`` -> ``[..., N]``.

    Example:
        >>> p = luce_recall(torch.tensor([0.0, 0.0]), beta=1.0, threshold=0.0, attempts=1)
        >>> [round(v, 4) for v in p.tolist()]  # three equal options: 1/3 each
        [0.3333, 0.3333]
    """
    null = torch.full(scores.shape[:-1] + (1,), float(threshold), dtype=scores.dtype, device=scores.device)
    p = torch.softmax(beta * torch.cat([null, scores], dim=-1), dim=-1)[..., 1:]
    return 1.0 - (1.0 - p) ** attempts


def summarise_seeds(frame: pd.DataFrame, by: list[str], value: str) -> pd.DataFrame:
    """Mean over replications with a 95% Student-t confidence interval, per group.

    Args:
        frame: one row per replication (``seed`` column) and condition.
        by: the condition columns.
        value: the measured column.

    Returns:
        ``by`` + ``mean, sd, n, ci_lo, ci_hi`` (the interval is the mean when n = 1).

    Example:
        >>> df = pd.DataFrame({"cell": ["a"] * 3, "seed": [0, 1, 2], "x": [1.0, 2.0, 3.0]})
        >>> row = summarise_seeds(df, ["cell"], "x").iloc[0]
        >>> round(float(row["mean"]), 3), round(float(row["ci_hi"] - row["mean"]), 3)  # t(0.975, 2) = 4.303
        (2.0, 2.484)
    """
    from scipy import stats

    rows = []
    for key, group in frame.groupby(by, sort=False):
        x = group[value].to_numpy(dtype=float)
        n = len(x)
        mean = float(x.mean())
        sd = float(x.std(ddof=1)) if n > 1 else 0.0
        half = float(stats.t.ppf(0.975, n - 1)) * sd / math.sqrt(n) if n > 1 else 0.0
        key = key if isinstance(key, tuple) else (key,)
        rows.append({**dict(zip(by, key)), "mean": mean, "sd": sd, "n": n, "ci_lo": mean - half, "ci_hi": mean + half})
    return pd.DataFrame(rows)


def _seed_generator(seed: int, *parts: int) -> torch.Generator:
    """A generator for one (seed, replication, cell ...) tuple; the same tuple, the same draws."""
    h = seed
    for p in parts:
        h = (h * 1_000_003 + p + 1) % (2**62)
    return torch.Generator().manual_seed(h)


def _plot_band(ax, x, summary: pd.DataFrame, label: str, **style) -> None:
    ax.plot(x, summary["mean"], marker="o", ms=3, label=label, **style)
    ax.fill_between(x, summary["ci_lo"], summary["ci_hi"], alpha=0.2, color=style.get("color"))


# -- the simulation --------------------------------------------------------------------------------
def _draw(config: Config, la: int, lb: int, gen_a: torch.Generator, gen_b: torch.Generator) -> dict[str, torch.Tensor]:
    """The lists of one replication: list A from ``gen_a`` only (the same for every LB), list B from ``gen_b``."""
    t, di, dc = config.trials, config.item_dim, config.context_dim
    f64 = torch.float64
    ctx_a = random_drift(la, dc, rate=config.drift_rate, batch_shape=(t,), generator=gen_a, dtype=f64)
    items_a = torch.randint(0, 2, (t, la, di), generator=gen_a).to(f64) * 2 - 1
    keep = torch.rand(t, la, di, generator=gen_a) < config.fragment
    fill = torch.randint(0, 2, (t, la, di), generator=gen_a).to(f64) * 2 - 1
    jump = random_drift(2, dc, rate=config.boundary_rate, batch_shape=(t,), initial=ctx_a[:, -1], generator=gen_b, dtype=f64)
    ctx_b = random_drift(lb, dc, rate=config.drift_rate, batch_shape=(t,), initial=jump[:, 1], generator=gen_b, dtype=f64)
    items_b = torch.randint(0, 2, (t, lb, di), generator=gen_b).to(f64) * 2 - 1
    return {"items": torch.cat([items_a, items_b], 1), "contexts": torch.cat([ctx_a, ctx_b], 1),
            "cued_items": torch.where(keep, items_a, fill)}


def simulate_cell(config: Config, la: int, lb: int, generators: list[tuple[torch.Generator, torch.Generator]]) -> dict[str, Any]:
    """One (LA, LB) cell: ``config.trials`` lists per replication, all replications in one batch.

    Each replication r draws its lists from its pair ``generators[r] = (gen_a, gen_b)``:
    list A's words, contexts and reinstated-key cues from ``gen_a`` only, so every LB sees
    the same list A (a paired design); the context jump and list B from ``gen_b``. The
    draws are made on the CPU and the memories run on ``config.device``.

    Args:
        config: the settings.
        la, lb: the two list lengths.
        generators: one (gen_a, gen_b) pair per replication.

    Returns:
        dict with (T = replications x trials, replication-major) ``keys [T, LA+LB, Di+Dc]``,
        ``items`` (+-1) ``[T, LA+LB, Di]``, ``contexts [T, LA+LB, Dc]``, ``free_query
        [T, 1, Di+Dc]``, ``cued_items [T, LA, Di]`` (the +-1 fragments), and per model
        ``free_<model>`` (recall probability of every word ``[T, LA+LB]``, 0 for displaced
        words) and ``cued_<model>`` (bool ``[T, LA]``).
    """
    di = config.item_dim
    f64 = torch.float64
    wc = config.context_weight
    wi = math.sqrt(1.0 - wc * wc)
    draws = [_draw(config, la, lb, ga, gb) for ga, gb in generators]
    dev = resolve_device(config.device)
    items, contexts, cued_items = (
        torch.cat([d[k] for d in draws]).to(dev) for k in ("items", "contexts", "cued_items")
    )
    t = items.shape[0]
    ctx_a = contexts[:, :la]
    n = la + lb
    keys = torch.cat([wi * items / math.sqrt(di), wc * contexts], -1)
    ids = torch.eye(n, dtype=f64, device=dev).expand(t, n, n)
    cbar = ctx_a.mean(1)
    cbar = cbar / cbar.norm(dim=-1, keepdim=True)
    free_query = torch.cat([torch.zeros(t, di, dtype=f64, device=dev), wc * cbar], -1).unsqueeze(1)
    cued_query = torch.cat([wi * cued_items / math.sqrt(di), wc * ctx_a], -1)
    out: dict[str, Any] = {"keys": keys, "items": items, "contexts": contexts, "free_query": free_query,
                           "cued_items": cued_items}
    for model in MODELS_FREE:
        capacity = config.buffer_capacity if model == "buffer" else None
        mem = SlotMemory(similarity="dot", separation="hardmax", capacity=capacity)
        mem.write(keys, ids)
        slot_item = mem.values.argmax(-1)  # which word each surviving slot holds
        scores = mem.read(free_query, details=True).scores[:, 0]
        per_slot = luce_recall(scores, config.beta, config.threshold, config.attempts)
        out[f"free_{model}"] = torch.zeros(t, n, dtype=f64, device=dev).scatter_add_(1, slot_item, per_slot)
        best = mem.read(cued_query, details=True).weights.argmax(-1)
        out[f"cued_{model}"] = torch.gather(slot_item, 1, best) == torch.arange(la, device=dev)
    net = ClassicalHopfield(rule="pseudo_inverse")
    net.write(torch.cat([items, torch.sign(contexts)], -1))
    cue = torch.cat([cued_items, torch.sign(ctx_a)], -1)
    state = net.retrieve(cue, steps=config.hopfield_steps).states[..., :di]
    overlap = state @ items.transpose(-1, -2) / di  # [T, LA, LA+LB]
    target = overlap[..., :la].diagonal(dim1=-2, dim2=-1)
    out["cued_hopfield"] = (target >= config.hopfield_match) & (overlap.argmax(-1) == torch.arange(la, device=dev))
    return out


def run(config: Config, *, seed: int = 0, progress: Progress | None = None) -> Result:
    """Every (LA, LB) cell, all replications batched; one call per model and cell."""
    _check(config)
    progress = progress or Progress()
    progress.total(len(config.list_lengths_a) * len(config.list_lengths_b))
    free_rows, cued_rows = [], []
    reps = range(config.seeds)
    with torch_threads(1):
        for la in config.list_lengths_a:
            for lb in config.list_lengths_b:
                gens = [(_seed_generator(seed, r, la), _seed_generator(seed, r, la, lb)) for r in reps]
                cell = simulate_cell(config, la, lb, gens)
                per_rep = lambda x: x.to(torch.float64).reshape(config.seeds, config.trials, *x.shape[1:])  # noqa: E731
                for model in MODELS_FREE:
                    rec = per_rep(cell[f"free_{model}"])
                    for r in reps:
                        free_rows.append({"model": model, "la": la, "lb": lb, "seed": r,
                                          "recall_a": float(rec[r, :, :la].mean()),
                                          "intrusions_b": float(rec[r, :, la:].sum(-1).mean())})
                for model in MODELS_CUED:
                    hit = per_rep(cell[f"cued_{model}"])
                    for r in reps:
                        cued_rows.append({"model": model, "la": la, "lb": lb, "seed": r, "recall": float(hit[r].mean())})
                progress.advance()
    free = pd.DataFrame(free_rows)
    cued = pd.DataFrame(cued_rows)
    free_summary = summarise_seeds(free, ["model", "la", "lb"], "recall_a")
    cued_summary = summarise_seeds(cued, ["model", "la", "lb"], "recall")
    return Result(
        tables={"free_recall": free, "reinstated": cued, "free_summary": free_summary, "reinstated_summary": cued_summary},
        scalars={"trials_per_cell": config.seeds * config.trials},
        config=asdict(config),
    )


def plot(result: Result) -> dict[str, Any]:
    """Three panels: list-A free recall vs LB (kv, buffer), and reinstated-key recall."""
    import matplotlib.pyplot as plt

    free = result.tables["free_summary"]
    cued = result.tables["reinstated_summary"]
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.4), constrained_layout=True)
    titles = {"kv": "A  key-value memory (context in the keys)", "buffer": "B  displacement store (erasure)"}
    for ax, model in zip(axes[:2], MODELS_FREE):
        part = free[free["model"] == model]
        for i, (la, group) in enumerate(part.groupby("la")):
            group = group.sort_values("lb")
            _plot_band(ax, group["lb"], group, f"LA = {la}", color=colors[i % len(colors)])
        ax.set_xlabel("length of the intervening list (LB)")
        ax.set_ylabel("recall of the list before last")
        ax.set_ylim(-0.03, 1.03)
        ax.set_title(titles[model])
        ax.legend(fontsize=8)
    ax = axes[2]
    styles = {"kv": "-", "buffer": ":", "hopfield": "--"}
    las = sorted(cued["la"].unique())
    for i, la in enumerate((las[0], las[-1]) if len(las) > 1 else las):
        for model in MODELS_CUED:
            group = cued[(cued["model"] == model) & (cued["la"] == la)].sort_values("lb")
            _plot_band(ax, group["lb"], group, f"{model}, LA = {la}", color=colors[i], ls=styles[model])
    ax.set_xlabel("length of the intervening list (LB)")
    ax.set_ylabel("cued recall of list A (reinstated context key)")
    ax.set_ylim(-0.03, 1.03)
    ax.set_title("C  the right key still retrieves list A")
    ax.legend(fontsize=7)
    return {"interference_not_erasure": fig}


def _mean(summary: pd.DataFrame, model: str, **where: int) -> pd.DataFrame:
    part = summary[summary["model"] == model]
    for k, v in where.items():
        part = part[part[k] == v]
    return part


def claims(result: Result) -> list[Claim]:
    """Shiffrin's (1970) findings in the key-value model, the displacement contrast, and reinstatement."""
    free = result.tables["free_summary"]
    cued = result.tables["reinstated_summary"]
    la_min, la_max = int(free["la"].min()), int(free["la"].max())
    lb_min, lb_max = int(free["lb"].min()), int(free["lb"].max())

    kv_by_la = _mean(free, "kv").groupby("la")["mean"].mean().sort_index()
    drop = float(kv_by_la.iloc[0] - kv_by_la.iloc[-1])
    monotone = bool((kv_by_la.diff().dropna() < 0).all())

    kv = _mean(free, "kv")
    effects = []
    for la in sorted(kv["la"].unique()):
        lo = float(kv[(kv["la"] == la) & (kv["lb"] == lb_min)]["mean"].iloc[0])
        hi = float(kv[(kv["la"] == la) & (kv["lb"] == lb_max)]["mean"].iloc[0])
        effects.append(hi - lo)
    worst = max(effects, key=abs)

    buf = _mean(free, "buffer", la=la_min)
    buf_effect = float(buf[buf["lb"] == lb_min]["mean"].iloc[0] - buf[buf["lb"] == lb_max]["mean"].iloc[0])

    kv_cued_min = float(_mean(cued, "kv")["mean"].min())
    free_at_max = float(kv_by_la.iloc[-1])

    hop = _mean(cued, "hopfield", la=la_min)
    hop_lo = float(hop[hop["lb"] == lb_min]["mean"].iloc[0])
    hop_hi = float(hop[hop["lb"] == lb_max]["mean"].iloc[0])
    kv_cell = float(_mean(cued, "kv", la=la_min, lb=lb_max)["mean"].iloc[0])

    return [
        Claim("list_length_effect",
              f"kv: recall of the list before last falls with its own length LA, strictly from each LA to the next, "
              f"by >= {LENGTH_DROP_MIN} from LA = {la_min} to {la_max} (mean over LB)",
              f"{kv_by_la.iloc[0]:.3f} -> {kv_by_la.iloc[-1]:.3f} (drop {drop:.3f}, monotone {monotone})",
              drop >= LENGTH_DROP_MIN and monotone),
        Claim("list_before_last_independent_of_intervening_list",
              f"kv: for every LA, |recall(LB = {lb_max}) - recall(LB = {lb_min})| <= {LB_EFFECT_MAX} (Shiffrin 1970)",
              f"largest change {worst:+.4f}", abs(worst) <= LB_EFFECT_MAX),
        Claim("displacement_store_depends_on_intervening_list",
              f"buffer ({result.config['buffer_capacity']} slots, oldest overwritten): recall of a list of {la_min} falls by "
              f">= {BUFFER_LB_EFFECT_MIN} from LB = {lb_min} to {lb_max} (the erosion prediction Shiffrin rejected)",
              f"drop {buf_effect:.3f}", buf_effect >= BUFFER_LB_EFFECT_MIN),
        Claim("forgotten_words_retrievable_with_reinstated_key",
              f"kv: cued recall from the reinstated context key >= {REINSTATED_MIN} in every (LA, LB) cell, while free "
              f"recall at LA = {la_max} is <= {FREE_POOR_MAX}",
              f"cued min {kv_cued_min:.3f}; free recall at LA = {la_max}: {free_at_max:.3f}",
              kv_cued_min >= REINSTATED_MIN and free_at_max <= FREE_POOR_MAX),
        Claim("keys_equal_values_network_erased_by_intervening_list",
              f"classical Hopfield (pseudo-inverse, keys = values): reinstated-key recall of a list of {la_min} falls by "
              f">= {HOPFIELD_DROP_MIN} from LB = {lb_min} to {lb_max}, where kv stays >= {REINSTATED_MIN}",
              f"hopfield {hop_lo:.3f} -> {hop_hi:.3f}; kv {kv_cell:.3f}",
              hop_lo - hop_hi >= HOPFIELD_DROP_MIN and kv_cell >= REINSTATED_MIN),
    ]


EXPERIMENT = register(
    Experiment(
        name="interference-not-erasure",
        description="List-length effect and Shiffrin's list before last with context in the keys; reinstated keys recover 'forgotten' words.",
        config_type=Config,
        profiles={"quick": QUICK, "full": Config()},
        run=run,
        plot=plot,
        claims=claims,
    )
)
