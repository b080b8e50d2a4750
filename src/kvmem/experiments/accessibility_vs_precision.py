"""Experiment ``accessibility-vs-precision``: delay and interference cost recall, not precision.

Berens, Richards & Horner (2020) taught word-location pairs (a location is an angle on a
circle), tested them after delays and fitted the standard mixture model to the angular
errors: a fraction of responses are guesses (uniform on the circle), the rest scatter
around the true angle (von Mises with concentration kappa). Over time the probability of
recall (the non-guess fraction) fell while the precision of what was recalled did not. The
paper (Sec. 4.1) reads this as retrieval failure: "memories do not melt into oblivion, but
rather disappear from view".

Mapping. A word is a key (a random unit vector in D dimensions); its location is the value
``(cos theta, sin theta)``, stored once with encoding noise (the angle the learner actually
encoded). A test cue is the key plus drift: ``q = k + drift sqrt(delay) xi / sqrt(D)`` with
xi standard normal, the retrieval context wandering away from the study context as a random
walk (Estes 1955). Interference is more pairs in the same memory. The reported angle is
``atan2`` of the read-out.

Two memories store exactly the same pairs and read exactly the same cues:

- key-value: :class:`kvmem.SlotMemory` with cosine similarity and a sharp softmax
  (beta = 200): the key match selects one slot and its value comes back whole;
- classical superposition: :class:`kvmem.MatrixMemory` with the Hebbian write (Eq. 1),
  ``v_hat = q sum_n k_n^T v_n``: every stored value is added into every read.

The same mixture model is fitted (EM, fixed zero mean) to each model's errors, in each of
several independent replicate groups of memories, giving confidence bands.

Claims checked (tolerances in :func:`claims`):
- key-value: recall probability falls with delay and with interference;
- key-value: precision (circular s.d. of the von Mises part) stays within 15 % of its value
  at the shortest delay / fewest pairs;
- the fitted recall probability matches the true rate at which the cued key wins the match;
- classical superposition: precision falls (circular s.d. up by at least half).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import pandas as pd
import torch
from scipy import special

from .._checks import check_int, check_positive
from ..memory import MatrixMemory, SlotMemory
from ..separation import Softmax
from .base import Claim, Experiment, Progress, Result, register, resolve_device, torch_threads
from .base import mean_ci

MODELS = ("key-value", "classical")


@dataclass(frozen=True)
class Config:
    """Settings of ``accessibility-vs-precision``.

    Attributes:
        key_dim: D, dimension of the word keys (random unit vectors).
        n_targets: word-location pairs tested in each memory.
        memories: memories per replicate group; their errors are pooled for one fit.
        replicates: independent replicate groups (the seeds behind the confidence bands).
        delays: delays in drift units; the cue drifts by ``drift * sqrt(delay)``.
        drift: cue drift per square-root delay unit (norm of the added noise, about).
        interference: total pairs stored for the interference sweep (the targets first).
        interference_delay: the delay at which the interference sweep is tested.
        beta: softmax inverse temperature of the key-value read (cosine similarity).
        encoding_noise_deg: s.d. in degrees of the angle actually stored for a location.
        em_iterations: the most EM iterations of a mixture fit.
        device: torch device of the computation: 'cpu', 'cuda' or 'cuda:N'; random draws
            stay on the CPU, so results match across devices to rounding. The mixture fits
            (numpy/scipy EM on the angular errors) run on the CPU.
    """

    key_dim: int = 128
    n_targets: int = 16
    memories: int = 20
    replicates: int = 8
    delays: tuple[float, ...] = (0.0, 2.0, 4.0, 8.0, 16.0, 32.0)
    drift: float = 1.0
    interference: tuple[int, ...] = (16, 32, 64, 128, 256)
    interference_delay: float = 8.0
    beta: float = 200.0
    encoding_noise_deg: float = 12.0
    em_iterations: int = 500
    device: str = "cpu"


QUICK = Config(memories=40, replicates=3, delays=(0.0, 8.0, 32.0), interference=(16, 64, 256))


def _check(config: Config) -> torch.device:
    """Raise ``ValueError`` naming the first bad setting; return the torch device of the computation."""
    check_int(config.key_dim, "key_dim", minimum=2)
    check_int(config.n_targets, "n_targets")
    check_int(config.memories, "memories")
    check_int(config.replicates, "replicates", minimum=2)
    check_int(config.em_iterations, "em_iterations")
    if len(config.delays) < 2 or any(check_positive(d, "delays", allow_zero=True) < 0 for d in config.delays):
        raise ValueError(f"delays: expected at least two delays >= 0, got {config.delays!r}")
    if len(config.interference) < 2 or any(check_int(n, "interference") < config.n_targets for n in config.interference):
        raise ValueError(f"interference: expected at least two pair counts >= n_targets = {config.n_targets}, got {config.interference!r}")
    check_positive(config.drift, "drift", allow_zero=True)
    check_positive(config.interference_delay, "interference_delay", allow_zero=True)
    check_positive(config.beta, "beta")
    check_positive(config.encoding_noise_deg, "encoding_noise_deg", allow_zero=True)
    return resolve_device(config.device)


# -- the mixture model ------------------------------------------------------------------
def _mean_resultant(kappa: float) -> float:
    """A(kappa) = I1(kappa) / I0(kappa), the mean resultant length of a von Mises."""
    return float(special.i1e(kappa) / special.i0e(kappa))


def _kappa_from_resultant(r: float) -> float:
    """The kappa with A(kappa) = r: Best & Fisher's (1981) approximation, then Newton steps."""
    r = min(max(r, 0.0), 1.0 - 1e-12)
    if r < 0.53:
        kappa = 2 * r + r**3 + 5 * r**5 / 6
    elif r < 0.85:
        kappa = -0.4 + 1.39 * r + 0.43 / (1 - r)
    else:
        kappa = 1 / (r**3 - 4 * r**2 + 3 * r)
    for _ in range(20):
        a = _mean_resultant(kappa)
        slope = 1.0 - a / kappa - a * a if kappa > 0 else 0.5
        step = (a - r) / max(slope, 1e-12)
        kappa = max(kappa - step, 1e-9)
        if abs(step) < 1e-12 * max(1.0, kappa):
            break
    return kappa


def circular_sd_deg(kappa: float) -> float:
    """Circular standard deviation sqrt(-2 ln A(kappa)) of a von Mises, in degrees.

    Example:
        >>> round(circular_sd_deg(1e6), 3)    # concentrated: about 1 / sqrt(kappa) rad
        0.057
    """
    a = _mean_resultant(max(kappa, 1e-12))
    return math.degrees(math.sqrt(-2.0 * math.log(max(a, 1e-300))))


def fit_mixture(errors: Any, iterations: int = 500, tol: float = 1e-10) -> dict[str, float]:
    """Fit uniform guessing + von Mises(0, kappa) to angular errors by EM (Zhang & Luck 2008).

    The likelihood of an error e is ``g / (2 pi) + (1 - g) exp(kappa cos e) / (2 pi I0(kappa))``.
    E-step: the responsibility of the von Mises part for each error; M-step: g from the mean
    responsibility, kappa from the responsibility-weighted mean of cos e.

    Args:
        errors: angular errors in radians, any shape (flattened); wrapped to (-pi, pi].
        iterations: the most EM iterations.
        tol: stop when g and kappa change by less than this (relative for kappa).

    Returns:
        ``{"p_recall": 1 - g, "kappa": kappa, "sd_deg": circular s.d. of the von Mises part,
        "loglik": log-likelihood, "iterations": iterations run}``.

    Raises:
        ValueError: fewer than 2 errors or non-finite errors.

    Example:
        >>> import numpy as np
        >>> rng = np.random.default_rng(0)
        >>> e = np.where(rng.random(4000) < 0.3, rng.uniform(-np.pi, np.pi, 4000), rng.vonmises(0, 20, 4000))
        >>> fit = fit_mixture(e)
        >>> round(fit["p_recall"], 1), abs(fit["kappa"] - 20) < 3
        (0.7, True)
    """
    e = np.asarray(errors, dtype=np.float64).ravel()
    if e.size < 2 or not np.isfinite(e).all():
        raise ValueError(f"errors: expected at least 2 finite angles, got {e.size} values")
    e = np.angle(np.exp(1j * e))
    cos_e = np.cos(e)
    g = 0.5
    kappa = max(_kappa_from_resultant(float(cos_e.mean())), 1.0)
    it = 0
    for it in range(1, iterations + 1):
        # exp(kappa (cos e - 1)) / i0e(kappa) is the von Mises density times 2 pi, overflow-free.
        vm = np.exp(kappa * (cos_e - 1.0)) / special.i0e(kappa)
        mem = (1.0 - g) * vm
        resp = mem / (mem + g)
        g_new = float(1.0 - resp.mean())
        total = float(resp.sum())
        r = float((resp * cos_e).sum() / total) if total > 0 else 0.0
        kappa_new = _kappa_from_resultant(max(r, 0.0))
        done = abs(g_new - g) < tol and abs(kappa_new - kappa) < tol * max(1.0, kappa)
        g, kappa = g_new, kappa_new
        if done:
            break
    vm = np.exp(kappa * (cos_e - 1.0)) / special.i0e(kappa)
    loglik = float(np.log((g + (1.0 - g) * vm) / (2 * math.pi)).sum())
    return {"p_recall": 1.0 - g, "kappa": kappa, "sd_deg": circular_sd_deg(kappa), "loglik": loglik, "iterations": it}


# -- one condition ------------------------------------------------------------------------
def _wrap(a: torch.Tensor) -> torch.Tensor:
    return torch.remainder(a + math.pi, 2 * math.pi) - math.pi


def _condition(config: Config, n_total: int, delay: float, gen: torch.Generator) -> dict[str, dict[str, Any]]:
    """Store ``n_total`` pairs in each of ``memories`` memories, cue the first ``n_targets``.

    Every draw comes from the CPU generator ``gen`` (the same numbers on any device) and is
    moved to ``config.device``, where the memories compute.
    """
    dev = resolve_device(config.device)
    m, d, t = config.memories, config.key_dim, config.n_targets
    keys = torch.randn(m, n_total, d, generator=gen).to(dev)
    keys = keys / keys.norm(dim=-1, keepdim=True)
    theta = torch.rand(m, n_total, generator=gen).to(dev) * (2 * math.pi)
    stored = theta + math.radians(config.encoding_noise_deg) * torch.randn(m, n_total, generator=gen).to(dev)
    values = torch.stack([stored.cos(), stored.sin()], dim=-1)
    cues = keys[:, :t] + config.drift * math.sqrt(delay) * torch.randn(m, t, d, generator=gen).to(dev) / math.sqrt(d)
    out: dict[str, dict[str, Any]] = {}
    kv = SlotMemory(similarity="cosine", separation=Softmax(beta=config.beta))
    kv.write(keys, values)
    read = kv.read(cues, details=True)
    won = read.weights.argmax(dim=-1) == torch.arange(t, device=dev)
    out["key-value"] = {"read": read.values, "key_match": float(won.to(torch.float64).mean())}
    hebb = MatrixMemory(d, 2, rule="hebbian")
    hebb.write(keys, values)
    out["classical"] = {"read": hebb.read(cues), "key_match": math.nan}
    for entry in out.values():
        r = entry["read"]
        entry["errors"] = _wrap(torch.atan2(r[..., 1], r[..., 0]) - theta[:, :t]).to(torch.float64).cpu().numpy()
    return out


def run(config: Config, *, seed: int = 0, progress: Progress | None = None) -> Result:
    """Both sweeps, both models, ``replicates`` independent groups of memories."""
    with torch_threads(1):
        return _run(config, seed=check_int(seed, "seed", minimum=0), progress=progress or Progress())


def _run(config: Config, *, seed: int, progress: Progress) -> Result:
    _check(config)  # also checks the device; _condition places its tensors on it
    conditions = [("delay", float(dl), config.n_targets) for dl in config.delays]
    conditions += [("interference", float(n), int(n)) for n in config.interference]
    progress.total(config.replicates * len(conditions))
    rows, err_rows = [], []
    for rep in range(config.replicates):
        # One generator per replicate: a replicate's numbers do not depend on how many others run.
        gen = torch.Generator().manual_seed(int(np.random.SeedSequence([seed, rep]).generate_state(1)[0]))
        for sweep, level, n_total in conditions:
            delay = level if sweep == "delay" else config.interference_delay
            for model, entry in _condition(config, n_total, delay, gen).items():
                fit = fit_mixture(entry["errors"], config.em_iterations)
                rows.append({"sweep": sweep, "level": level, "n_pairs": n_total, "delay": delay, "model": model,
                             "replicate": rep, "p_recall": fit["p_recall"], "kappa": fit["kappa"], "sd_deg": fit["sd_deg"],
                             "key_match": entry["key_match"], "loglik": fit["loglik"], "em_iterations": fit["iterations"],
                             "n_errors": int(entry["errors"].size)})
                if rep == 0:
                    for e in entry["errors"].ravel():
                        err_rows.append({"sweep": sweep, "level": level, "model": model, "error_deg": math.degrees(float(e))})
            progress.advance()
    fits = pd.DataFrame(rows)
    summary = _summary(fits)
    return Result(tables={"fits": fits, "summary": summary, "errors": pd.DataFrame(err_rows)},
                  scalars=_scalars(summary), config=asdict(config))


def _summary(fits: pd.DataFrame) -> pd.DataFrame:
    rows = []
    for (sweep, level, model), part in fits.groupby(["sweep", "level", "model"], sort=False):
        row = {"sweep": sweep, "level": level, "model": model, "replicates": len(part)}
        for col in ("p_recall", "sd_deg", "kappa", "key_match"):
            m, lo, hi = mean_ci(part[col])
            row[col], row[f"{col}_lo"], row[f"{col}_hi"] = m, lo, hi
        rows.append(row)
    return pd.DataFrame(rows)


def _scalars(summary: pd.DataFrame) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for _, r in summary.iterrows():
        tag = f"{r['sweep']}={r['level']:g}/{r['model']}"
        out[f"p_recall/{tag}"] = round(float(r["p_recall"]), 4)
        out[f"sd_deg/{tag}"] = round(float(r["sd_deg"]), 3)
    return out


# -- claims -------------------------------------------------------------------------------
def _ends(summary: pd.DataFrame, sweep: str, model: str, col: str) -> tuple[float, float, pd.Series]:
    part = summary[(summary["sweep"] == sweep) & (summary["model"] == model)].sort_values("level")
    return float(part[col].iloc[0]), float(part[col].iloc[-1]), part[col]


def claims(result: Result) -> list[Claim]:
    """The paper's reading of Berens et al. (2020), checked on both sweeps."""
    s = result.tables["summary"]
    out: list[Claim] = []
    for sweep, drop_needed, what in (("delay", 0.25, "longest delay"), ("interference", 0.10, "most pairs")):
        first, last, _ = _ends(s, sweep, "key-value", "p_recall")
        out.append(Claim(
            f"accessibility_falls_with_{sweep}",
            f"key-value: fitted recall probability at the {what} is at least {drop_needed} below the first condition's",
            f"{first:.3f} -> {last:.3f}",
            first - last >= drop_needed,
        ))
        sd0, _, sds = _ends(s, sweep, "key-value", "sd_deg")
        worst = float((sds / sd0 - 1.0).abs().max())
        out.append(Claim(
            f"precision_constant_with_{sweep}",
            f"key-value: circular s.d. of recalled locations within 15% of the first condition's at every {sweep} level",
            f"s.d. {', '.join(f'{v:.1f}' for v in sds)} deg (largest change {worst:.1%})",
            worst <= 0.15,
        ))
    kv = s[s["model"] == "key-value"]
    gap = float((kv["p_recall"] - kv["key_match"]).abs().max())
    out.append(Claim(
        "mixture_recovers_retrieval_rate",
        "key-value: fitted recall probability within 0.05 of the rate at which the cued key wins the match, every condition",
        f"largest gap {gap:.3f}",
        gap <= 0.05,
    ))
    ratios = {}
    for sweep in ("delay", "interference"):
        first, last, _ = _ends(s, sweep, "classical", "sd_deg")
        ratios[sweep] = last / first
    out.append(Claim(
        "superposition_loses_precision",
        "classical (Hebbian superposition): circular s.d. at the last condition >= 1.5x the first, on both sweeps",
        "; ".join(f"{k}: {v:.2f}x" for k, v in ratios.items()),
        min(ratios.values()) >= 1.5,
    ))
    return out


# -- figures ------------------------------------------------------------------------------
_STYLE = {"key-value": ("tab:blue", "-"), "classical": ("tab:red", "--")}


def plot(result: Result) -> dict[str, Any]:
    """Recall probability and precision against delay and interference; error histograms."""
    import matplotlib.pyplot as plt

    s = result.tables["summary"]
    cfg = result.config
    figs: dict[str, Any] = {}
    fig, axes = plt.subplots(2, 2, figsize=(9.5, 7), constrained_layout=True)
    for c, (sweep, xlabel) in enumerate((("delay", "delay (drift units)"), ("interference", "pairs stored"))):
        for r, (col, ylabel) in enumerate((("p_recall", "P(recall) (mixture fit)"), ("sd_deg", "precision: circular s.d. (deg)"))):
            ax = axes[r][c]
            for model in MODELS:
                part = s[(s["sweep"] == sweep) & (s["model"] == model)].sort_values("level")
                color, ls = _STYLE[model]
                ax.plot(part["level"], part[col], color=color, ls=ls, marker="o", ms=3, label=model)
                ax.fill_between(part["level"], part[f"{col}_lo"], part[f"{col}_hi"], color=color, alpha=0.2, lw=0)
                if col == "p_recall" and model == "key-value":
                    ax.plot(part["level"], part["key_match"], color="k", ls=":", lw=1, label="key-value: cued key wins")
            if sweep == "interference":
                ax.set_xscale("log", base=2)
            ax.set_xlabel(xlabel)
            ax.set_ylabel(ylabel)
            if col == "p_recall":
                ax.set_ylim(0, 1.03)
            else:
                ax.set_ylim(bottom=0)
    axes[0][0].legend(fontsize=8)
    axes[0][1].set_title(f"interference sweep at delay {cfg['interference_delay']:g}", fontsize=9)
    fig.suptitle(f"{cfg['replicates']} replicate groups of {cfg['memories']} memories; bands: 95% CI", fontsize=9)
    figs["accessibility_precision"] = fig

    errs = result.tables["errors"]
    if len(errs):
        fig, axes = plt.subplots(1, 2, figsize=(9.5, 3.4), constrained_layout=True, sharey=True)
        bins = np.linspace(-180, 180, 37)
        delays = sorted(errs[errs["sweep"] == "delay"]["level"].unique())
        for ax, model in zip(axes, MODELS):
            for level, color in ((delays[0], "tab:green"), (delays[-1], "tab:purple")):
                part = errs[(errs["sweep"] == "delay") & (errs["level"] == level) & (errs["model"] == model)]
                ax.hist(part["error_deg"], bins=bins, density=True, histtype="step", color=color, label=f"delay {level:g}")
            ax.set_title(model)
            ax.set_xlabel("angular error (deg)")
        axes[0].set_ylabel("density (replicate 0)")
        axes[0].legend(fontsize=8)
        figs["error_distributions"] = fig
    return figs


EXPERIMENT = register(
    Experiment(
        name="accessibility-vs-precision",
        description="Delay and interference lower the probability of recall, not its precision (Berens et al. 2020), vs Hebbian superposition.",
        config_type=Config,
        profiles={"quick": QUICK, "full": Config()},
        run=run,
        plot=plot,
        claims=claims,
    )
)
