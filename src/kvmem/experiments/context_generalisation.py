"""Experiment ``context-generalisation``: context-specific fear becomes generic; a reminder restores it.

Winocur, Frankland, Sekeres, Fogel & Moscovitch (2009): rats shocked in context A froze
only in A when tested soon after, but in A and in a similar context B after a long delay. A
brief return to A before the test restored context specificity, and after a hippocampal
lesion that reminder effect was gone. The review (Gershman, Fiete & Irie 2025, Sec. 4,
phenomenon 15) reads this as: the hippocampus holds the keys needed to address a specific
memory.

Task -> key-value memory, per animal:

- Contexts are feature vectors ``x = [sqrt(g) u ; sqrt(1 - g) s]``: ``u`` the features a test
  chamber shares with similar chambers (A and B have the same u), ``s`` its specific features
  (cue, odour, shape), so ``x_A . x_B ~ g`` (``generic_share``). A neutral context N has its
  own u and s (``x_N . x_A ~ 0``).
- The animal's temporal context c(t) drifts (:func:`kvmem.context.random_drift`,
  ``steps_per_day`` steps a day, daily cosine ``sqrt(1 - daily_drift^2)``).
- Hippocampus (:class:`~kvmem.SlotMemory`): conditioning writes one slot, key
  ``[w_x x_A ; w_c c(0)]`` and value ``[x_A ; 1]`` (where it happened; the shock).
- Neocortex (:class:`~kvmem.MatrixMemory`, Hebbian): the generic association ``u_A -> shock``,
  consolidated slowly: its write strength at delay d is ``kappa(d) = 1 - exp(-d / tau)``.
  Consolidation keeps the gist: the specific features never reach it.
- Test in context X at time t: the query is ``[w_x x~_X ; w_c c(t)]`` (x~: x with perceptual
  noise). The hippocampal read retrieves the slots by the Luce rule with a null option
  (:func:`~kvmem.experiments.interference_not_erasure.luce_recall`, one attempt):
  ``p_hpc = sum_n p_n``. A retrieved episode says where the shock was: fear follows when that
  place matches the present one, ``m = sigmoid(beta_m (cos(x~_X, place) - theta_m))``. When
  the hippocampus retrieves nothing, behaviour follows the cortex:

      freezing = p_hpc * m * shock + (1 - p_hpc) * clip(kappa(d) u~_X . u_A, 0, 1)

- Delay: c(t) drifts from c(0), the key's context part no longer matches, retrieval fails
  and the generic cortical association, which A and B share, drives freezing in both.
- Reminder (``reminder_lead`` steps before the test): the animal is put in A; if its query
  matches the stored key at least ``rebind_threshold``, the retrieved episode is written again
  under the present context, ``[w_x x_A ; w_c c(t_r)]`` (reconsolidation re-binds the key).
- Lesion (after the reminder, before the test): the hippocampal slots are gone; the cortex
  remains.

Claims checked: specificity at the short delay, generalisation at the long delay, the
reminder restoring specificity, no reminder effect after the lesion (with the remote memory
spared), no fear in the unrelated context N, and (beyond the paper) temporally graded
retrograde amnesia after the lesion. Several seeds give 95% t confidence bands.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import pandas as pd
import torch

from ..context import random_drift
from ..memory import MatrixMemory, SlotMemory
from .base import Claim, Experiment, Progress, Result, register, resolve_device, torch_threads
from .interference_not_erasure import _plot_band, _seed_generator, luce_recall, summarise_seeds

TEST_CONTEXTS = ("A", "B", "N")
GROUPS = (("intact", False), ("intact", True), ("lesion", False), ("lesion", True))  # (brain, reminder)

# Tolerances of the claims (see docs/experiments/context-generalisation.md).
SHORT_A_MIN = 0.7           # freezing in A at the short delay
SPECIFIC_MIN = 0.5          # A - B counts as context-specific at or above this
GENERAL_RATIO_MIN = 0.8     # B / A counts as generalised at or above this
REMOTE_A_MIN = 0.6          # freezing in A at the long delay (the memory is kept)
REMINDER_GAIN_MIN = 0.4     # (A - B) with reminder minus without, intact animals
LESION_EFFECT_MAX = 0.05    # |(A - B) with reminder - without| after the lesion
NEUTRAL_MAX = 0.1           # freezing in the unrelated context N, every group and delay
AMNESIA_RATIO_MAX = 0.5     # lesioned / intact freezing in A at the short delay


@dataclass(frozen=True)
class Config:
    """Settings of ``context-generalisation``.

    Attributes:
        generic_dim: features shared by similar chambers (u).
        specific_dim: features specific to one chamber (s).
        generic_share: g, the share of a context vector in its generic part (A . B ~ g).
        context_dim: dimension of the temporal context.
        steps_per_day: drift steps per day.
        daily_drift: drift rate over one day (daily cosine sqrt(1 - rate^2)).
        context_weight: w_c of the hippocampal keys (feature share w_x = sqrt(1 - w_c^2)).
        beta: inverse temperature of the hippocampal read.
        threshold: score of the null option ("nothing retrieved").
        place_beta: slope of the place match m.
        place_threshold: theta_m, the cosine at which the place match is 1/2.
        consolidation_days: tau of the cortical consolidation kappa(d) = 1 - exp(-d / tau).
        perception_noise: norm of the noise added to a perceived context (relative to 1).
        rebind_threshold: best key match the reminder needs to re-bind the episode.
        reminder_lead: steps between the reminder and the test.
        delays: test delays in days (the first is the short delay).
        long_delay: the delay of the generalisation and reminder claims (one of ``delays``).
        seeds: independent replications (confidence bands are across them).
        trials: animals per replication (a batch dimension).
        device: torch device of the computation: 'cpu', 'cuda' or 'cuda:N'; random draws
            stay on the CPU, so results match across devices to rounding.
    """

    generic_dim: int = 64
    specific_dim: int = 64
    generic_share: float = 0.5
    context_dim: int = 128
    steps_per_day: int = 4
    daily_drift: float = 0.54
    context_weight: float = math.sqrt(0.7)
    beta: float = 20.0
    threshold: float = 0.68
    place_beta: float = 20.0
    place_threshold: float = 0.75
    consolidation_days: float = 3.0
    perception_noise: float = 0.3
    rebind_threshold: float = 0.2
    reminder_lead: int = 1
    delays: tuple[int, ...] = (1, 2, 4, 7, 14, 28)
    long_delay: int = 7
    seeds: int = 5
    trials: int = 40
    device: str = "cpu"


QUICK = Config(delays=(1, 7, 28), seeds=3, trials=16)


def _check(config: Config) -> torch.device:
    """Raise ``ValueError`` naming the first bad setting; return the torch device of the computation."""
    for name in ("generic_dim", "specific_dim", "context_dim"):
        if getattr(config, name) < 2:
            raise ValueError(f"{name}: expected an integer >= 2, got {getattr(config, name)}")
    for name in ("steps_per_day", "trials"):
        if getattr(config, name) < 1:
            raise ValueError(f"{name}: expected an integer >= 1, got {getattr(config, name)}")
    if config.seeds < 2:
        raise ValueError(f"seeds: expected at least 2 replications (for confidence bands), got {config.seeds}")
    for name in ("generic_share", "daily_drift"):
        if not 0.0 <= getattr(config, name) <= 1.0:
            raise ValueError(f"{name}: expected a number in [0, 1], got {getattr(config, name)}")
    if not 0.0 < config.context_weight < 1.0:
        raise ValueError(f"context_weight: expected a number in (0, 1), got {config.context_weight}")
    for name in ("beta", "place_beta", "consolidation_days"):
        value = getattr(config, name)
        if not (value > 0 and math.isfinite(value)):
            raise ValueError(f"{name}: expected a finite number > 0, got {value}")
    for name in ("threshold", "place_threshold", "rebind_threshold"):
        if not math.isfinite(getattr(config, name)):
            raise ValueError(f"{name}: expected a finite number, got {getattr(config, name)}")
    if not (config.perception_noise >= 0 and math.isfinite(config.perception_noise)):
        raise ValueError(f"perception_noise: expected a finite number >= 0, got {config.perception_noise}")
    d = config.delays
    if not d or any(not isinstance(x, int) or x < 1 for x in d) or list(d) != sorted(set(d)):
        raise ValueError(f"delays: expected increasing distinct whole days >= 1, got {d!r}")
    if config.long_delay not in d or config.long_delay == d[0]:
        raise ValueError(f"long_delay: expected one of delays other than the first {d!r}, got {config.long_delay}")
    if not 0 <= config.reminder_lead < d[0] * config.steps_per_day:
        raise ValueError(
            f"reminder_lead: expected 0 <= steps < the shortest delay ({d[0] * config.steps_per_day} steps), "
            f"got {config.reminder_lead}"
        )
    return resolve_device(config.device)


def step_rate(config: Config) -> float:
    """Drift rate per step that gives the daily cosine ``sqrt(1 - daily_drift^2)``.

    Example:
        >>> round(step_rate(Config(steps_per_day=1, daily_drift=0.6)), 6)
        0.6
    """
    rho_day = math.sqrt(1.0 - config.daily_drift**2)
    return math.sqrt(1.0 - rho_day ** (2.0 / config.steps_per_day))


def kappa(config: Config, days: float) -> float:
    """Consolidated share of the cortical association after ``days``: ``1 - exp(-days / tau)``."""
    return 1.0 - math.exp(-days / config.consolidation_days)


def _unit(x: torch.Tensor) -> torch.Tensor:
    return x / x.norm(dim=-1, keepdim=True)


def _draw(config: Config, gen: torch.Generator) -> dict[str, torch.Tensor]:
    """Contexts, temporal walk and perceptual noise of one replication's animals."""
    t, dg, ds = config.trials, config.generic_dim, config.specific_dim
    f64 = torch.float64
    g = config.generic_share
    u = _unit(torch.randn(t, 2, dg, generator=gen, dtype=f64))        # chamber family of A/B, of N
    s = _unit(torch.randn(t, 3, ds, generator=gen, dtype=f64))        # A, B, N specific
    fam = torch.stack([u[:, 0], u[:, 0], u[:, 1]], 1)
    places = torch.cat([math.sqrt(g) * fam, math.sqrt(1.0 - g) * s], -1)  # [T, 3, Dx]: A, B, N
    steps = max(config.delays) * config.steps_per_day + 1
    walk = random_drift(steps, config.context_dim, rate=step_rate(config), batch_shape=(t,), generator=gen, dtype=f64)
    dx = dg + ds
    # One perceptual noise draw per (delay, test context) and one for each reminder.
    noise = torch.randn(t, len(config.delays), 4, dx, generator=gen, dtype=f64) / math.sqrt(dx)
    return {"places": places, "walk": walk, "noise": noise}


def _perceive(config: Config, x: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
    return _unit(x + config.perception_noise * noise)


def _key(config: Config, place: torch.Tensor, ctx: torch.Tensor) -> torch.Tensor:
    wc = config.context_weight
    return torch.cat([math.sqrt(1.0 - wc * wc) * place, wc * ctx], -1)


def hippocampal_read(config: Config, memory: SlotMemory | None, query: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Retrieval probability and the expected retrieved value given retrieval.

    Args:
        config: the settings.
        memory: the hippocampal slots (None after a lesion).
        query: ``[T, M, Dx + Dc]``.

    Returns:
        ``p_hpc [T, M]`` and value ``[T, M, Dx + 1]`` (zeros where nothing can be retrieved).
    """
    t, m = query.shape[:2]
    if memory is None:
        return query.new_zeros(t, m), query.new_zeros(t, m, query.shape[-1] - config.context_dim + 1)
    scores = memory.read(query, details=True).scores
    p = luce_recall(scores, config.beta, config.threshold, 1)
    total = p.sum(-1)
    value = (p @ memory.values) / total.clamp_min(1e-300).unsqueeze(-1)
    return total, value


def simulate(config: Config, gen: torch.Generator) -> dict[str, Any]:
    """One replication: every group, delay and test context.

    Returns:
        dict with the draw (``places [T, 3, Dx]``, ``walk [T, S, Dc]``, ``noise``) and
        ``freezing``: {(brain, reminder, delay): ``[T, 3]`` (tests in A, B, N)}, plus
        ``parts``: the same keys -> dict of ``p_hpc``, ``place_match``, ``cortex`` ``[T, 3]``
        and ``rebound [T]`` (whether the reminder re-bound the episode). Everything is on
        ``config.device``; the draw is made on the CPU (the same animals on every device).
    """
    dev = resolve_device(config.device)
    draw = {name: value.to(dev) for name, value in _draw(config, gen).items()}
    places, walk, noise = draw["places"], draw["walk"], draw["noise"]
    t, dg = config.trials, config.generic_dim
    f64 = torch.float64
    x_a = places[:, 0:1]
    value0 = torch.cat([x_a, torch.ones(t, 1, 1, dtype=f64, device=dev)], -1)
    freezing, parts = {}, {}
    for di, d in enumerate(config.delays):
        test_step = d * config.steps_per_day
        cortex_memory = MatrixMemory(dg, 1, rule="hebbian", lr=kappa(config, d))
        cortex_memory.write(_unit(x_a[..., :dg]), torch.ones(t, 1, 1, dtype=f64, device=dev))
        seen = _perceive(config, places, noise[:, di, :3])            # [T, 3, Dx]
        query = _key(config, seen, walk[:, test_step].unsqueeze(1).expand(-1, 3, -1))
        cortex = cortex_memory.read(_unit(seen[..., :dg]))[..., 0].clamp(0.0, 1.0)
        for brain, reminder in GROUPS:
            hpc = SlotMemory(similarity="dot", separation="hardmax")
            hpc.write(_key(config, x_a, walk[:, 0:1]), value0)
            rebound = torch.zeros(t, dtype=torch.bool, device=dev)
            if reminder:
                r_step = test_step - config.reminder_lead
                cue = _key(config, _perceive(config, x_a, noise[:, di, 3:4]), walk[:, r_step:r_step + 1])
                _, retrieved = hippocampal_read(config, hpc, cue)
                rebound = hpc.read(cue, details=True).scores.amax(-1)[:, 0] >= config.rebind_threshold
                # An animal that recognises A re-binds the retrieved episode to its present
                # context; one that does not gets a slot it can never match (a zero key).
                new_key = _key(config, x_a, walk[:, r_step:r_step + 1]) * rebound.to(f64).view(t, 1, 1)
                hpc.write(new_key, retrieved)
            memory = None if brain == "lesion" else hpc
            p_hpc, value = hippocampal_read(config, memory, query)
            cos = torch.nn.functional.cosine_similarity(seen, value[..., :-1], dim=-1)
            match = torch.sigmoid(config.place_beta * (cos - config.place_threshold))
            fear = p_hpc * match * value[..., -1] + (1.0 - p_hpc) * cortex
            freezing[(brain, reminder, d)] = fear
            parts[(brain, reminder, d)] = {"p_hpc": p_hpc, "place_match": match, "cortex": cortex, "rebound": rebound}
    return {**draw, "freezing": freezing, "parts": parts}


def run(config: Config, *, seed: int = 0, progress: Progress | None = None) -> Result:
    """Every replication; all groups and delays of one replication share its animals."""
    _check(config)  # also checks the device; simulate places its tensors on it
    progress = progress or Progress()
    progress.total(config.seeds)
    rows = []
    with torch_threads(1):
        for rep in range(config.seeds):
            sim = simulate(config, _seed_generator(seed, rep))
            for (brain, reminder, d), fear in sim["freezing"].items():
                mean = fear.mean(0)
                for i, ctx in enumerate(TEST_CONTEXTS):
                    rows.append({"brain": brain, "reminder": reminder, "delay": d, "test": ctx, "seed": rep,
                                 "freezing": float(mean[i])})
            progress.advance()
    table = pd.DataFrame(rows)
    summary = summarise_seeds(table, ["brain", "reminder", "delay", "test"], "freezing")
    wide = table.pivot_table(index=["brain", "reminder", "delay", "seed"], columns="test", values="freezing").reset_index()
    wide["discrimination"] = wide["A"] - wide["B"]
    disc = summarise_seeds(wide, ["brain", "reminder", "delay"], "discrimination")
    scalars = {"kappa_short": kappa(config, config.delays[0]), "kappa_long": kappa(config, config.long_delay),
               "step_rate": step_rate(config), "animals_per_group": config.seeds * config.trials}
    return Result(tables={"freezing": table, "freezing_summary": summary, "discrimination": disc},
                  scalars=scalars, config=asdict(config))


def plot(result: Result) -> dict[str, Any]:
    """Freezing against delay for the four groups, and the discrimination index A - B."""
    import matplotlib.pyplot as plt

    s = result.tables["freezing_summary"]
    fig, axes = plt.subplots(1, 5, figsize=(21, 4.2), constrained_layout=True)
    colors = {"A": "tab:red", "B": "tab:blue", "N": "tab:gray"}
    for ax, (brain, reminder) in zip(axes[:4], GROUPS):
        for ctx in TEST_CONTEXTS:
            part = s[(s["brain"] == brain) & (s["reminder"] == reminder) & (s["test"] == ctx)].sort_values("delay")
            _plot_band(ax, part["delay"], part, f"tested in {ctx}", color=colors[ctx])
        ax.set_xscale("log")
        ax.set_xlabel("delay after conditioning (days)")
        ax.set_ylabel("freezing")
        ax.set_ylim(-0.03, 1.03)
        ax.set_title(f"{brain}, {'reminder in A' if reminder else 'no reminder'}")
        ax.legend(fontsize=8)
    ax = axes[4]
    disc = result.tables["discrimination"]
    styles = {("intact", False): ("tab:purple", "-"), ("intact", True): ("tab:purple", "--"),
              ("lesion", False): ("tab:brown", "-"), ("lesion", True): ("tab:brown", "--")}
    for (brain, reminder), (color, ls) in styles.items():
        part = disc[(disc["brain"] == brain) & (disc["reminder"] == reminder)].sort_values("delay")
        _plot_band(ax, part["delay"], part, f"{brain}{', reminder' if reminder else ''}", color=color, ls=ls)
    ax.axhline(0, color="grey", lw=0.8)
    ax.set_xscale("log")
    ax.set_xlabel("delay after conditioning (days)")
    ax.set_ylabel("discrimination: freezing A - B")
    ax.set_ylim(-0.1, 1.03)
    ax.set_title("context specificity")
    ax.legend(fontsize=8)
    return {"context_generalisation": fig}


def _mean(summary: pd.DataFrame, brain: str, reminder: bool, delay: int, test: str | None = None) -> float:
    part = summary[(summary["brain"] == brain) & (summary["reminder"] == reminder) & (summary["delay"] == delay)]
    if test is not None:
        part = part[part["test"] == test]
    return float(part["mean"].iloc[0])


def claims(result: Result) -> list[Claim]:
    """Winocur et al. (2009) in the key-value reading, plus a control and one prediction beyond the paper."""
    s = result.tables["freezing_summary"]
    disc = result.tables["discrimination"]
    short = int(s["delay"].min())
    long = int(result.config["long_delay"])

    a_short, b_short = _mean(s, "intact", False, short, "A"), _mean(s, "intact", False, short, "B")
    a_long, b_long = _mean(s, "intact", False, long, "A"), _mean(s, "intact", False, long, "B")
    d_no = _mean(disc, "intact", False, long)
    d_rem = _mean(disc, "intact", True, long)
    l_no, l_rem = _mean(disc, "lesion", False, long), _mean(disc, "lesion", True, long)
    l_a = _mean(s, "lesion", True, long, "A")
    neutral = float(s[s["test"] == "N"]["mean"].max())
    les_short = _mean(s, "lesion", False, short, "A")

    return [
        Claim("specific_at_short_delay",
              f"intact, day {short}: freezing in A >= {SHORT_A_MIN} and A - B >= {SPECIFIC_MIN}",
              f"A {a_short:.3f}, B {b_short:.3f}", a_short >= SHORT_A_MIN and a_short - b_short >= SPECIFIC_MIN),
        Claim("generalised_at_long_delay",
              f"intact, day {long}: freezing in B >= {GENERAL_RATIO_MIN} x freezing in A, and A >= {REMOTE_A_MIN}",
              f"A {a_long:.3f}, B {b_long:.3f} (ratio {b_long / max(a_long, 1e-12):.3f})",
              b_long >= GENERAL_RATIO_MIN * a_long and a_long >= REMOTE_A_MIN),
        Claim("reminder_restores_specificity",
              f"intact, day {long}: a reminder in A gives A - B >= {SPECIFIC_MIN}, at least {REMINDER_GAIN_MIN} above no reminder",
              f"A - B: {d_no:.3f} without, {d_rem:.3f} with the reminder",
              d_rem >= SPECIFIC_MIN and d_rem - d_no >= REMINDER_GAIN_MIN),
        Claim("no_reminder_effect_after_hippocampal_lesion",
              f"lesioned after the reminder, day {long}: |(A - B) with reminder - without| <= {LESION_EFFECT_MAX}, "
              f"freezing still generalised (A - B < {SPECIFIC_MIN}) and the remote memory kept (A >= {REMOTE_A_MIN})",
              f"A - B: {l_no:.3f} without, {l_rem:.3f} with; A {l_a:.3f}",
              abs(l_rem - l_no) <= LESION_EFFECT_MAX and l_rem < SPECIFIC_MIN and l_a >= REMOTE_A_MIN),
        Claim("no_fear_in_unrelated_context",
              f"freezing in the unrelated context N <= {NEUTRAL_MAX} for every group and delay (generalisation follows similarity)",
              round(neutral, 3), neutral <= NEUTRAL_MAX),
        Claim("temporally_graded_amnesia_after_lesion",
              f"beyond the paper: lesioned freezing in A at day {short} <= {AMNESIA_RATIO_MAX} x intact (recent memory "
              f"needs the hippocampus), while at day {long} it is >= {REMOTE_A_MIN}",
              f"day {short}: {les_short:.3f} vs intact {a_short:.3f}; day {long}: {_mean(s, 'lesion', False, long, 'A'):.3f}",
              les_short <= AMNESIA_RATIO_MAX * a_short and _mean(s, "lesion", False, long, "A") >= REMOTE_A_MIN),
    ]


EXPERIMENT = register(
    Experiment(
        name="context-generalisation",
        description="Winocur et al. 2009: context-specific fear generalises with delay; a reminder in A restores specificity unless the hippocampal keys are lesioned.",
        config_type=Config,
        profiles={"quick": QUICK, "full": Config()},
        run=run,
        plot=plot,
        claims=claims,
    )
)
