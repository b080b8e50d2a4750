"""Experiment ``errors-are-memorable``: a trained linear layer stores its errors as values.

By the dual form (paper Eqs. 10-11; Irie, Csordas & Schmidhuber 2022) a linear layer
trained by gradient descent is a key-value memory whose keys are its training inputs and
whose values are its error signals, ``v_n = e_n = -eta dL/dy_n``. The paper (Sec. 2.3) links
this to the salience of errors and surprise in human memory (von Restorff; Green 1956;
Hirshman et al. 1989; Rouhani, Norman & Niv 2018; Bein, Plotkin & Davachi 2021): an event
the layer predicted well leaves a small value, a surprising one a large value, and a large
value dominates what the memory returns when the event's key is used as a query.

Mapping. The learner already knows a rule (a schema): a linear layer ``y = x W`` starts at
``W0 = W_rule``. It then studies a list of events ``(x_n, y_n)``, one plain SGD step each
(loss ``|y - x W|^2 / 2``, learning rate eta), recorded by
:class:`kvmem.learning.dual_form.DualFormRecorder`. Events differ only in how much their
outcome departs from the rule:

    y_n = x_n W_rule + s_n |x_n W_rule| u_n + outcome_noise xi_n / sqrt(Dout)

with u_n a random unit vector and the surprise s_n taken from ``surprise_levels`` (equal
numbers of events per level, in random order). Recall of event n: its key cues the
memory, ``r = sum_m (q . k_m) v_m`` (the pairs as a :class:`kvmem.SlotMemory` with dot
similarity and identity separation, the second term of Eq. 11), and the event counts as
recalled when its own value is the stored value most similar (cosine) to r.

Classical comparison: a Hebbian correlation matrix of the same events
(:class:`kvmem.MatrixMemory`, ``M = eta sum_n x_n^T y_n``, Eq. 1) stores the outcomes
themselves as values. Their size grows only as sqrt(1 + s^2) with surprise, and their
rule-consistent part is shared by every event; the memory is read and scored the same way
against its own stored values.

Claims checked (tolerances in :func:`claims`): the recorded pairs rebuild the trained layer
(Eq. 10); value norms equal eta times the prediction error and grow with surprise;
surprising events are recalled better from the dual form; the Hebbian memory shows no such
advantage.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import pandas as pd
import torch

from .._checks import check_int, check_positive
from ..learning.dual_form import DualFormRecorder
from ..memory import MatrixMemory
from .base import Claim, Experiment, Progress, Result, register, resolve_device, torch_threads
from .base import mean_ci

MODELS = ("dual-form", "hebbian")


@dataclass(frozen=True)
class Config:
    """Settings of ``errors-are-memorable``.

    Attributes:
        replicates: independent learners (layer, rule and list; the unit of the bands).
        events: events in the study list (a multiple of the number of surprise levels).
        input_dim: Din, the layer's input dimension (keys).
        output_dim: Dout, the layer's output dimension (values).
        surprise_levels: s, the departure of an outcome from the rule, relative to the rule's
            prediction.
        outcome_noise: norm (about) of the noise on every outcome.
        lr: eta, the SGD learning rate (one step per event, batch size 1).
        cue_noise: norm (about) of the noise added to a key when it is used as a recall cue.
        device: torch device of the computation: 'cpu', 'cuda' or 'cuda:N'; random draws stay
            on the CPU, so results match across devices to rounding.
    """

    replicates: int = 20
    events: int = 60
    input_dim: int = 32
    output_dim: int = 16
    surprise_levels: tuple[float, ...] = (0.0, 0.25, 0.5, 1.0, 2.0)
    outcome_noise: float = 0.1
    lr: float = 0.5
    cue_noise: float = 0.0
    device: str = "cpu"


QUICK = Config(replicates=8)


def _check(config: Config) -> torch.device:
    """Validate the settings; return the device of the computation."""
    check_int(config.replicates, "replicates", minimum=2)
    check_int(config.input_dim, "input_dim")
    check_int(config.output_dim, "output_dim")
    levels = config.surprise_levels
    if len(levels) < 2 or any(check_positive(s, "surprise_levels", allow_zero=True) < 0 for s in levels):
        raise ValueError(f"surprise_levels: expected at least two levels >= 0, got {levels!r}")
    if check_int(config.events, "events", minimum=2) % len(levels):
        raise ValueError(f"events: expected a multiple of the {len(levels)} surprise levels, got {config.events}")
    check_positive(config.outcome_noise, "outcome_noise", allow_zero=True)
    # Unit-norm inputs make each step shrink the error by (1 - lr): 0 < lr < 2 keeps SGD stable.
    if not 0 < check_positive(config.lr, "lr") < 2:
        raise ValueError(f"lr: expected 0 < lr < 2 (stable for unit-norm inputs), got {config.lr}")
    check_positive(config.cue_noise, "cue_noise", allow_zero=True)
    return resolve_device(config.device)


def study_list(config: Config, generator: torch.Generator) -> dict[str, torch.Tensor]:
    """One learner's rule and study list.

    Returns:
        ``rule [Din, Dout]``, ``inputs [N, Din]`` (unit norm), ``surprise [N]``,
        ``outcomes [N, Dout]``.
    """
    n, din, dout = config.events, config.input_dim, config.output_dim
    rule = torch.randn(din, dout, generator=generator) / math.sqrt(din)
    x = torch.randn(n, din, generator=generator)
    x = x / x.norm(dim=-1, keepdim=True)
    levels = torch.tensor(config.surprise_levels, dtype=torch.float32)
    surprise = levels[torch.arange(n) % len(levels)][torch.randperm(n, generator=generator)]
    u = torch.randn(n, dout, generator=generator)
    u = u / u.norm(dim=-1, keepdim=True)
    predicted = x @ rule
    y = predicted + surprise[:, None] * predicted.norm(dim=-1, keepdim=True) * u
    y = y + config.outcome_noise * torch.randn(n, dout, generator=generator) / math.sqrt(dout)
    return {"rule": rule, "inputs": x, "surprise": surprise, "outcomes": y}


def replicate_generator(seed: int, replicate: int) -> torch.Generator:
    """The generator of one replicate: its draws do not depend on how many replicates run."""
    return torch.Generator().manual_seed(int(np.random.SeedSequence([seed, replicate]).generate_state(1)[0]))


def identify(read: torch.Tensor, values: torch.Tensor) -> torch.Tensor:
    """Which stored value each read-out is most similar to (cosine): ``[M, Dv], [N, Dv] -> [M]``."""
    r = read / read.norm(dim=-1, keepdim=True).clamp_min(1e-30)
    v = values / values.norm(dim=-1, keepdim=True).clamp_min(1e-30)
    return (r @ v.T).argmax(dim=-1)


def run(config: Config, *, seed: int = 0, progress: Progress | None = None) -> Result:
    """Train one layer per replicate on its study list, record its pairs, test recall."""
    with torch_threads(1):
        return _run(config, seed=check_int(seed, "seed", minimum=0), progress=progress or Progress())


def _run(config: Config, *, seed: int, progress: Progress) -> Result:
    dev = _check(config)
    progress.total(config.replicates)
    rows, checks = [], []
    for rep in range(config.replicates):
        gen = replicate_generator(seed, rep)
        # The study list is drawn (and built) on the CPU, then moved: the same list on every device.
        data = study_list(config, gen)
        x, y = data["inputs"].to(dev), data["outcomes"].to(dev)
        weight = torch.nn.Parameter(data["rule"].to(dev).clone())
        opt = torch.optim.SGD([weight], lr=config.lr)
        rec = DualFormRecorder(weight, opt, tag="study")
        errors = []
        for i in range(config.events):
            opt.zero_grad()
            pred = rec(x[i : i + 1])
            errors.append(float((y[i] - pred[0].detach()).norm()))
            (0.5 * ((pred - y[i : i + 1]) ** 2).sum()).backward()
            opt.step()
        rec.remove()
        pairs = rec.pairs()
        cues = x + config.cue_noise * torch.randn(x.shape, generator=gen).to(dev) / math.sqrt(config.input_dim)
        with torch.no_grad():
            dual_read = rec.as_slot_memory().read(cues)
            hebb = MatrixMemory(config.input_dim, config.output_dim, rule="hebbian", lr=config.lr)
            hebb.write(x, y)
            hebb_read = hebb.read(cues)
        target = torch.arange(config.events, device=dev)
        dual_ok = (identify(dual_read, pairs.values) == target).cpu()
        hebb_ok = (identify(hebb_read, config.lr * y) == target).cpu()
        value_norm = pairs.values.norm(dim=-1)
        checks.append({"replicate": rep,
                       "weight_error": float((rec.weight("pairs") - weight.detach()).abs().max()),
                       "value_vs_error": float((value_norm - config.lr * torch.tensor(errors, device=dev)).abs().max()
                                               / max(float(value_norm.max()), 1e-30))})
        value_norm, y_cpu = value_norm.cpu(), y.cpu()  # one transfer each, not one per table cell
        for i in range(config.events):
            rows.append({"replicate": rep, "event": i, "surprise": float(data["surprise"][i]),
                         "prediction_error": errors[i], "value_norm": float(value_norm[i]),
                         "hebbian_value_norm": float(config.lr * y_cpu[i].norm()),
                         "recalled_dual": bool(dual_ok[i]), "recalled_hebbian": bool(hebb_ok[i])})
        progress.advance()
    events = pd.DataFrame(rows)
    summary = _summary(events)
    scalars = _scalars(summary, pd.DataFrame(checks))
    return Result(tables={"events": events, "summary": summary, "checks": pd.DataFrame(checks)},
                  scalars=scalars, config=asdict(config))


def _summary(events: pd.DataFrame) -> pd.DataFrame:
    per = events.groupby(["surprise", "replicate"]).mean(numeric_only=True).reset_index()
    rows = []
    for level, part in per.groupby("surprise"):
        row = {"surprise": level, "replicates": len(part)}
        for col in ("prediction_error", "value_norm", "hebbian_value_norm", "recalled_dual", "recalled_hebbian"):
            row[col], row[f"{col}_lo"], row[f"{col}_hi"] = mean_ci(part[col])
        rows.append(row)
    return pd.DataFrame(rows)


def _scalars(summary: pd.DataFrame, checks: pd.DataFrame) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for _, r in summary.iterrows():
        s = f"{r['surprise']:g}"
        out[f"value_norm/s={s}"] = round(float(r["value_norm"]), 4)
        out[f"recall/dual-form/s={s}"] = round(float(r["recalled_dual"]), 4)
        out[f"recall/hebbian/s={s}"] = round(float(r["recalled_hebbian"]), 4)
    out["weight_error_max"] = float(checks["weight_error"].max())
    out["value_vs_error_max"] = float(checks["value_vs_error"].max())
    return out


# -- claims ---------------------------------------------------------------------------------------
def claims(result: Result) -> list[Claim]:
    """Eq. 10 holds, values grow with surprise, surprise helps recall from the dual form only."""
    s = result.tables["summary"].sort_values("surprise")
    sc = result.scalars
    out = []
    out.append(Claim(
        "dual_form_rebuilds_the_layer",
        "W0 + sum_n x_n^T e_n equals the trained weight to <= 1e-5 (float32) in every replicate (Eq. 10)",
        f"max |difference| {sc['weight_error_max']:.1e}",
        sc["weight_error_max"] <= 1e-5,
    ))
    v0, v1 = float(s["value_norm"].iloc[0]), float(s["value_norm"].iloc[-1])
    out.append(Claim(
        "surprising_inputs_leave_larger_values",
        "|v_n| = eta |y_n - x_n W_(n-1)| (relative difference <= 1e-5) and the mean |v| of the most surprising events "
        ">= 3x that of the least surprising",
        f"relative difference {sc['value_vs_error_max']:.1e}; |v| {v0:.3f} -> {v1:.3f} ({v1 / v0:.1f}x)",
        sc["value_vs_error_max"] <= 1e-5 and v1 >= 3 * v0,
    ))
    r0, r1 = float(s["recalled_dual"].iloc[0]), float(s["recalled_dual"].iloc[-1])
    worst_dip = float(-s["recalled_dual"].diff().min())
    out.append(Claim(
        "surprising_inputs_recalled_better",
        "dual form: recall of the most surprising events >= 0.5 above that of the least surprising, and mean recall "
        "never falls by more than 0.05 from one surprise level to the next",
        f"{' -> '.join(f'{v:.3f}' for v in s['recalled_dual'])} (largest dip {max(worst_dip, 0.0):.3f})",
        r1 - r0 >= 0.5 and worst_dip <= 0.05,
    ))
    h0, h1 = float(s["recalled_hebbian"].iloc[0]), float(s["recalled_hebbian"].iloc[-1])
    out.append(Claim(
        "hebbian_control_no_surprise_advantage",
        "Hebbian memory of the outcomes (values = targets): recall of the most surprising events at most 0.1 above that "
        "of the least surprising",
        f"{h0:.3f} -> {h1:.3f}",
        h1 - h0 <= 0.1,
    ))
    return out


# -- figures ----------------------------------------------------------------------------------------
def plot(result: Result) -> dict[str, Any]:
    """Value size and recall against surprise, for the dual form and the Hebbian control."""
    import matplotlib.pyplot as plt

    s = result.tables["summary"].sort_values("surprise")
    events = result.tables["events"]
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.8), constrained_layout=True)
    ax = axes[0]
    ax.scatter(events["prediction_error"], events["value_norm"], s=6, c=events["surprise"], cmap="viridis")
    ax.set_xlabel("prediction error |y - x W| at study")
    ax.set_ylabel("|value| stored (dual form)")
    ax.set_title(f"v = eta e (eta = {result.config['lr']:g})")
    ax = axes[1]
    for col, label, color in (("value_norm", "dual form: |e_n|", "tab:blue"), ("hebbian_value_norm", "Hebbian: |eta y_n|", "tab:red")):
        ax.plot(s["surprise"], s[col], color=color, marker="o", label=label)
        ax.fill_between(s["surprise"], s[f"{col}_lo"], s[f"{col}_hi"], color=color, alpha=0.2, lw=0)
    ax.set_xlabel("surprise s")
    ax.set_ylabel("mean |stored value|")
    ax.legend(fontsize=8)
    ax = axes[2]
    for col, label, color in (("recalled_dual", "dual form (values = errors)", "tab:blue"),
                              ("recalled_hebbian", "Hebbian (values = outcomes)", "tab:red")):
        ax.plot(s["surprise"], s[col], color=color, marker="o", label=label)
        ax.fill_between(s["surprise"], s[f"{col}_lo"], s[f"{col}_hi"], color=color, alpha=0.2, lw=0)
    ax.axhline(1.0 / result.config["events"], color="k", ls=":", lw=1, label="chance")
    ax.set_xlabel("surprise s")
    ax.set_ylabel("recall (own value identified)")
    ax.set_ylim(-0.02, 1.02)
    ax.legend(fontsize=8)
    ax.set_title(f"{result.config['replicates']} learners, 95% CI", fontsize=9)
    return {"errors_are_memorable": fig}


EXPERIMENT = register(
    Experiment(
        name="errors-are-memorable",
        description="A linear layer trained by SGD stores its errors as values (Eq. 11): surprising events are recalled better.",
        config_type=Config,
        profiles={"quick": QUICK, "full": Config()},
        run=run,
        plot=plot,
        claims=claims,
    )
)
