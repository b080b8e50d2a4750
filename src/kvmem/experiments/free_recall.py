"""Experiment ``free-recall``: CMR, a drifting-context key-value memory, fitted to PEERS.

The context maintenance and retrieval model (CMR; Polyn, Norman & Kahana 2009) stores each
studied item as the value of a slowly drifting context key (:mod:`kvmem.context`,
:mod:`kvmem.paradigms.free_recall`). Its parameters are fitted by maximum likelihood
(differential evolution over the exact likelihood of every recall and stop event,
:mod:`kvmem.paradigms.free_recall_fit`) to each subject of the PEERS no-task data shipped
with psifr (126 subjects x 28 lists of 16 words), and to all fitted subjects pooled. Each
subject's lists are then re-run through the model with the subject's own parameters
(``n_rep`` times), and the serial position curve, the probability of first recall and the
lag-CRP of observed and simulated data are computed by psifr, with 95% confidence bands
over subjects. The list-length effect is simulated with the pooled parameters; for
reference, the proportion recalled in the two psifr data sets (PEERS, 16 words; Morton
2013, 24 words; different subjects and procedures) is reported beside it.

Claims checked:
- the simulated serial position curve shows primacy and recency;
- the simulated SPC, PFR and lag-CRP (lags -5..+5) lie inside the observed bands at most
  (>= half of the) points;
- forward asymmetry: lag-CRP(+1) > lag-CRP(-1), in the data and in the simulation;
- list-length effect (simulation with the pooled parameters): the proportion recalled
  falls with every increase in list length.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import pandas as pd

from ..paradigms import free_recall as frm
from ..paradigms import free_recall_fit as fitm
from .base import Claim, Experiment, Progress, Result, register, torch_threads

INSIDE_MIN = 0.5  # "most points": at least half
EFFECT_MIN = 0.05  # primacy / recency: position 1 / L above the middle positions by this much
CRP_LAGS = 5
PSIFR_COLUMNS = ("subject", "list", "position", "trial_type", "item")


@dataclass(frozen=True)
class Config:
    """Settings of ``free-recall``.

    Attributes:
        dataset: psifr sample data to fit (``"peers_notask"``).
        n_subjects: fit the first ``n_subjects`` subjects (sorted by id); None: all.
        popsize: differential evolution population per free parameter (10 free).
        maxiter: generations at most per subject.
        tol: DE's relative convergence tolerance.
        pooled_seeds: the pooled fit starts from the best per-subject parameter sets of this
            many subjects (spread over the range of fit quality), as its population.
        pooled_maxiter: generations of the pooled fit.
        n_rep: simulated replications of each subject's lists.
        list_lengths: list lengths of the list-length simulation (pooled parameters).
        length_lists: simulated lists per list length.
        workers: Dask local-cluster workers for the per-subject fits (None: in-process).
        warm_start: start each subject's search with PEERS' pooled fit
            (:data:`kvmem.paradigms.free_recall_fit.PEERS_POOLED`, from the full profile)
            as one member of the first population; for short searches (quick profile).
        confidence: level of the bands over subjects (t interval of the mean).
    """

    dataset: str = "peers_notask"
    n_subjects: int | None = None
    popsize: int = 6
    maxiter: int = 100
    tol: float = 0.002
    pooled_seeds: int = 20
    pooled_maxiter: int = 30
    n_rep: int = 3
    list_lengths: tuple[int, ...] = (8, 12, 16, 24, 32, 40)
    length_lists: int = 1000
    workers: int | None = 2
    warm_start: bool = False
    confidence: float = 0.95


QUICK = Config(n_subjects=3, popsize=3, maxiter=15, tol=0.01, pooled_seeds=3, pooled_maxiter=3, n_rep=2,
               list_lengths=(8, 16, 32), length_lists=200, workers=None, warm_start=True)


def _check_config(config: Config) -> None:
    if config.dataset not in ("peers_notask", "Morton2013"):
        raise ValueError(f"dataset: expected 'peers_notask' or 'Morton2013', got {config.dataset!r}")
    if config.n_subjects is not None and config.n_subjects < 2:
        raise ValueError(f"n_subjects: expected None or at least 2 (bands over subjects), got {config.n_subjects}")
    for name in ("popsize", "maxiter", "pooled_seeds", "pooled_maxiter", "n_rep", "length_lists"):
        if getattr(config, name) < 1:
            raise ValueError(f"{name}: expected a positive integer, got {getattr(config, name)}")
    if not config.list_lengths or min(config.list_lengths) < 2 or list(config.list_lengths) != sorted(set(config.list_lengths)):
        raise ValueError(f"list_lengths: expected increasing lengths >= 2, got {config.list_lengths}")
    if not 0 < config.confidence < 1:
        raise ValueError(f"confidence: expected a level in (0, 1), got {config.confidence}")


def _band(per_subject: pd.DataFrame, x: str, y: str, confidence: float) -> pd.DataFrame:
    """Mean over subjects with a t confidence interval, at each ``x``."""
    from scipy import stats

    g = per_subject.dropna(subset=[y]).groupby(x)[y]
    out = g.agg(mean="mean", sd="std", n_subjects="count").reset_index()
    t = stats.t.ppf(0.5 + confidence / 2, np.maximum(out["n_subjects"] - 1, 1))
    half = t * out["sd"].fillna(0.0) / np.sqrt(out["n_subjects"])
    out["lo"], out["hi"] = out["mean"] - half, out["mean"] + half
    return out.drop(columns="sd")


def _curves(table: pd.DataFrame, source: str, confidence: float) -> dict[str, pd.DataFrame]:
    """psifr's SPC, PFR and lag-CRP per subject, summarised over subjects."""
    from psifr import fr

    table = table[list(PSIFR_COLUMNS)]
    merged = fr.merge_free_recall(table)
    spc = fr.spc(merged)
    # PFR is the first row of psifr's pnr. pnr tabulates every output position, so it is
    # handed each list's first valid recall only (same first-output result, far faster).
    valid = merged[merged["recall"].astype(bool) & ~merged["intrusion"] & (merged["repeat"] == 0)]
    first = valid.sort_values("output").groupby(["subject", "list"]).head(1)
    keep = table[(table["trial_type"] == "study")]
    first_rows = first[["subject", "list", "item"]].assign(trial_type="recall", position=1)
    pfr = fr.pnr(fr.merge_free_recall(pd.concat([keep, first_rows[list(PSIFR_COLUMNS)]], ignore_index=True)))
    pfr = pfr[pfr["output"] == 1]
    crp = fr.lag_crp(merged)
    crp = crp[(crp["lag"].abs() <= CRP_LAGS) & (crp["lag"] != 0)]
    out = {
        "spc": _band(spc, "input", "recall", confidence).rename(columns={"input": "position"}),
        "pfr": _band(pfr, "input", "prob", confidence).rename(columns={"input": "position"}),
        "crp": _band(crp, "lag", "prob", confidence),
    }
    for name, frame in out.items():
        frame.insert(0, "source", source)
        out[name] = frame
    return out


def _pooled_init(fits: dict[Any, fitm.FitResult], n: int, seed: int) -> np.ndarray:
    """The pooled fit's first population: per-subject best parameters spread over the range
    of fit quality, topped up with uniform draws to at least five members (DE's minimum).

    DE keeps a member until a trial beats it, so the pooled fit is never worse than the
    best of these per-subject parameter sets on the pooled data.
    """
    names = list(fitm.DEFAULT_BOUNDS)
    lo = np.array([fitm.DEFAULT_BOUNDS[k][0] for k in names])
    hi = np.array([fitm.DEFAULT_BOUNDS[k][1] for k in names])
    ranked = sorted(fits.values(), key=lambda r: r.logl / r.n)
    idx = np.unique(np.linspace(0, len(ranked) - 1, min(n, len(ranked))).round().astype(int))
    pop = np.array([[getattr(ranked[i].params, k) for k in names] for i in idx])
    extra = max(0, 5 - len(pop))
    if extra:
        rng = np.random.default_rng(seed)
        pop = np.vstack([pop, lo + rng.random((extra, len(names))) * (hi - lo)])
    return np.clip(pop, lo, hi)


def _list_length_effect(params: frm.CMRParams, config: Config, seed: int) -> pd.DataFrame:
    rows = []
    for i, length in enumerate(config.list_lengths):
        rec = frm.generate(params, length, config.length_lists, generator=seed + 1000 * (i + 1))[0]
        n_rec = (rec >= 0).sum(-1).double()
        rows.append({"list_length": length, "lists": config.length_lists, "p_recall": float(n_rec.mean()) / length,
                     "n_recalled": float(n_rec.mean()), "n_recalled_sd": float(n_rec.std())})
    return pd.DataFrame(rows)


def _observed_list_lengths(tables: dict[str, pd.DataFrame]) -> pd.DataFrame:
    """Proportion and number recalled per subject, averaged, in each psifr data set (psifr's SPC)."""
    from psifr import fr

    rows = []
    for name, table in tables.items():
        spc = fr.spc(fr.merge_free_recall(table[list(PSIFR_COLUMNS)])).groupby("subject")["recall"].mean()
        length = int(table[table["trial_type"] == "study"].groupby(["subject", "list"]).size().iloc[0])
        rows.append({"dataset": name, "list_length": length, "n_subjects": int(spc.size),
                     "p_recall": float(spc.mean()), "n_recalled": float(spc.mean()) * length})
    return pd.DataFrame(rows).sort_values("list_length").reset_index(drop=True)


def run(config: Config, *, seed: int = 0, progress: Progress | None = None) -> Result:
    """Fit every subject and the pooled data, simulate, and compare curves."""
    _check_config(config)
    progress = progress or Progress()
    table = fitm.load_sample(config.dataset)
    subjects = sorted(table["subject"].unique().tolist())
    if config.n_subjects is not None:
        subjects = subjects[: config.n_subjects]
    table = table[table["subject"].isin(subjects)].reset_index(drop=True)
    data = fitm.prepare_data(table)
    progress.total(len(subjects) + 3)
    fit_kwargs = {"popsize": config.popsize, "maxiter": config.maxiter, "tol": config.tol,
                  "x0": fitm.PEERS_POOLED if config.warm_start else None}
    with torch_threads(1):
        fits = fitm.fit_subjects(data, subjects, workers=config.workers, seed=seed,
                                 on_result=lambda s, r: progress.advance(), **fit_kwargs)
        pooled = fitm.fit(data, maxiter=config.pooled_maxiter, tol=config.tol, seed=seed,
                          init=_pooled_init(fits, config.pooled_seeds, seed))
        progress.advance()
        baseline = fitm.baseline_log_likelihood(data)
        sim = frm.simulate({s: fits[s].params for s in subjects}, study_table=table, n_rep=config.n_rep, seed=seed)
        progress.advance()
        lengths = _list_length_effect(pooled.params, config, seed)
    observed = _curves(table, "observed", config.confidence)
    other = "Morton2013" if config.dataset == "peers_notask" else "peers_notask"
    observed_lengths = _observed_list_lengths({config.dataset: table, other: fitm.load_sample(other)})
    simulated = _curves(sim, "simulated", config.confidence)
    progress.advance()

    fit_rows = []
    for s in subjects:
        r = fits[s]
        fit_rows.append({"subject": s, **r.row(), "baseline_logl": baseline[s], "logl_per_event": r.logl / r.n,
                         "gain_per_event": (r.logl - baseline[s]) / r.n, "bic": r.k * math.log(r.n) - 2 * r.logl})
    fits_table = pd.DataFrame(fit_rows)
    sum_indiv = float(fits_table["logl"].sum())
    pooled_table = pd.DataFrame([{**pooled.row(), "sum_individual_logl": sum_indiv,
                                  "n_subjects": len(subjects)}])
    tables = {
        "fits": fits_table,
        "pooled": pooled_table,
        "spc": pd.concat([observed["spc"], simulated["spc"]], ignore_index=True),
        "pfr": pd.concat([observed["pfr"], simulated["pfr"]], ignore_index=True),
        "crp": pd.concat([observed["crp"], simulated["crp"]], ignore_index=True),
        "list_length": lengths,
        "observed_list_length": observed_lengths,
    }
    obs_len = int(data.groups[0].list_length)
    scalars = {
        "dataset": config.dataset,
        "n_subjects": len(subjects),
        "list_length": obs_len,
        "n_lists": data.n_lists,
        "n_events": data.n_events,
        "logl_total_individual": sum_indiv,
        "logl_pooled": pooled.logl,
        "fits_converged": int(fits_table["success"].sum()),
        # Individual fits against one pooled parameter set (k = 10 per fit, n = all events).
        "aic_individual": 2 * float(fits_table["k"].sum()) - 2 * sum_indiv,
        "aic_pooled": 2 * pooled.k - 2 * pooled.logl,
        "bic_individual": float(fits_table["k"].sum()) * math.log(data.n_events) - 2 * sum_indiv,
        "bic_pooled": pooled.k * math.log(data.n_events) - 2 * pooled.logl,
        "fit_cpu_seconds_total": float(fits_table["cpu_seconds"].sum()),
        "median_gain_per_event": float(fits_table["gain_per_event"].median()),
        "fit_seconds_total": float(fits_table["seconds"].sum()),
    }
    return Result(tables=tables, scalars=scalars, config=asdict(config))


def plot(result: Result) -> dict[str, Any]:
    """Four panels: SPC, PFR, lag-CRP (observed bands, simulated lines) and list length."""
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 4, figsize=(16, 3.8), constrained_layout=True)
    for ax, name, x, label in ((axes[0], "spc", "position", "serial position"),
                               (axes[1], "pfr", "position", "serial position"),
                               (axes[2], "crp", "lag", "lag")):
        t = result.tables[name]
        for source, color in (("observed", "k"), ("simulated", "tab:red")):
            part = t[t["source"] == source]
            if name == "crp":
                for side in (part[part[x] < 0], part[part[x] > 0]):
                    ax.plot(side[x], side["mean"], "-o", ms=3, color=color, label=source if side[x].iloc[0] < 0 else None)
                    ax.fill_between(side[x], side["lo"], side["hi"], color=color, alpha=0.2)
            else:
                ax.plot(part[x], part["mean"], "-o", ms=3, color=color, label=source)
                ax.fill_between(part[x], part["lo"], part["hi"], color=color, alpha=0.2)
        ax.set_xlabel(label)
        ax.set_ylim(0, None)
    axes[0].set_ylabel("recall probability")
    axes[0].set_title("serial position curve")
    axes[1].set_title("probability of first recall")
    axes[2].set_title("lag-CRP")
    axes[0].legend(fontsize=8)
    ll = result.tables["list_length"]
    axes[3].plot(ll["list_length"], ll["p_recall"], "-o", color="tab:red", label="simulated (pooled fit)")
    obs = result.tables.get("observed_list_length")
    if obs is not None:
        axes[3].plot(obs["list_length"], obs["p_recall"], "ks", label="observed (PEERS; Morton 2013)")
    axes[3].legend(fontsize=8)
    axes[3].set_xlabel("list length")
    axes[3].set_ylabel("proportion recalled")
    axes[3].set_title("list-length effect")
    return {"free-recall": fig}


def _inside(t: pd.DataFrame, x: str) -> tuple[float, int]:
    obs = t[t["source"] == "observed"].set_index(x)
    sim = t[t["source"] == "simulated"].set_index(x)
    common = obs.index.intersection(sim.index)
    inside = (sim.loc[common, "mean"] >= obs.loc[common, "lo"]) & (sim.loc[common, "mean"] <= obs.loc[common, "hi"])
    return float(inside.mean()), len(common)


def _primacy_recency(spc: pd.DataFrame) -> tuple[float, float]:
    spc = spc.sort_values("position")
    y = spc["mean"].to_numpy()
    L = len(y)
    middle = y[L // 3: L - L // 3].mean()
    return float(y[0] - middle), float(y[-1] - middle)


def claims(result: Result) -> list[Claim]:
    """Primacy/recency, curves within the observed bands, forward asymmetry, list length."""
    out = []
    spc = result.tables["spc"]
    prim_sim, rec_sim = _primacy_recency(spc[spc["source"] == "simulated"])
    prim_obs, rec_obs = _primacy_recency(spc[spc["source"] == "observed"])
    out.append(Claim(
        "simulated_primacy_and_recency",
        f"simulated SPC at the first and at the last position above the middle third's mean by >= {EFFECT_MIN}",
        f"primacy {prim_sim:+.3f}, recency {rec_sim:+.3f} (observed {prim_obs:+.3f}, {rec_obs:+.3f})",
        prim_sim >= EFFECT_MIN and rec_sim >= EFFECT_MIN))
    for name, x, what in (("spc", "position", "serial positions"), ("pfr", "position", "serial positions"),
                          ("crp", "lag", f"lags -{CRP_LAGS}..+{CRP_LAGS}")):
        frac, n = _inside(result.tables[name], x)
        out.append(Claim(
            f"{name}_inside_observed_band",
            f"simulated {name.upper()} mean inside the observed 95% band over subjects at >= {INSIDE_MIN:.0%} of the {what}",
            f"{frac:.0%} of {n}", frac >= INSIDE_MIN))
    crp = result.tables["crp"]
    values = {}
    for source in ("observed", "simulated"):
        part = crp[crp["source"] == source].set_index("lag")["mean"]
        values[source] = (float(part.get(1.0, np.nan)), float(part.get(-1.0, np.nan)))
    ok = all(f > b for f, b in values.values())
    out.append(Claim(
        "forward_asymmetry",
        "lag-CRP(+1) > lag-CRP(-1) in the data and in the simulation",
        "; ".join(f"{s}: +1 {f:.3f} vs -1 {b:.3f}" for s, (f, b) in values.items()), ok))
    ll = result.tables["list_length"].sort_values("list_length")
    p = ll["p_recall"].to_numpy()
    steps = np.diff(p)
    out.append(Claim(
        "list_length_effect",
        "simulated (pooled fit) proportion recalled falls with every increase in list length",
        ", ".join(f"L={int(a)}: {b:.3f}" for a, b in zip(ll["list_length"], p)),
        bool(len(p) >= 2 and (steps < 0).all())))
    return out


EXPERIMENT = register(
    Experiment(
        name="free-recall",
        description="CMR (drifting-context key-value memory) fitted to PEERS free recall: SPC, PFR, lag-CRP, list length.",
        config_type=Config,
        profiles={"quick": QUICK, "full": Config()},
        run=run,
        plot=plot,
        claims=claims,
    )
)
