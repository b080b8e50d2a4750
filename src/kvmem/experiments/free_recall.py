"""Experiment ``free-recall``: CMR, a drifting-context key-value memory, fitted to PEERS.

The context maintenance and retrieval model (CMR; Polyn, Norman & Kahana 2009) stores each
studied item as the value of a slowly drifting context key (:mod:`kvmem.context`,
:mod:`kvmem.paradigms.free_recall`). ``Config.model`` picks standard CMR (``"cmr"``) or
an extension of it (:data:`kvmem.paradigms.free_recall_fit.MODELS`): associative chaining
at recall (``"cmr-chain"``), chaining plus a return to the start-of-list context after
each recall (``"cmr-chain-restart"``, chosen because standard CMR failed the SPC and
lag-CRP claims), and that model with semantic associations between the studied words
(GloVe cosines in the pre-experimental context-to-item weights, ``"cmr-chain-restart-sem"``,
the full profile's model, added because ``"cmr-chain-restart"`` still failed the lag-CRP
claim). With ``Config.compare`` a second model is fitted to the same subjects for a
likelihood comparison (AIC, BIC) and its own simulated curves.
Its parameters are fitted by maximum likelihood
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
from .base import Claim, Experiment, Progress, Result, register, resolve_device, torch_threads

INSIDE_MIN = 0.5  # "most points": at least half
EFFECT_MIN = 0.05  # primacy / recency: position 1 / L above the middle positions by this much
CRP_LAGS = 5
PSIFR_COLUMNS = ("subject", "list", "position", "trial_type", "item")


@dataclass(frozen=True)
class Config:
    """Settings of ``free-recall``.

    Attributes:
        dataset: psifr sample data to fit (``"peers_notask"``).
        model: the model fitted, simulated and judged by the claims: a name in
            :data:`kvmem.paradigms.free_recall_fit.MODELS` (``"cmr"``, ``"cmr-chain"``,
            ``"cmr-chain-restart"``, and with semantic associations ``"cmr-sem"``,
            ``"cmr-chain-restart-sem"`` (in ``M_cf``), ``"cmr-sem-ff"``,
            ``"cmr-chain-restart-sem-ff"`` (cued by the last recall); these use the GloVe
            similarities of the study words, :mod:`kvmem.data.semantic`).
        compare: another model name, fitted per subject with the same search for a
            likelihood comparison and its own simulated curves (not used by the claims);
            None: no comparison.
        n_subjects: fit the first ``n_subjects`` subjects (sorted by id); None: all.
        popsize: differential evolution population per free parameter.
        maxiter: generations at most per subject. 200: at 100, about 35% of the full profile's
            fits stopped before meeting ``tol``; at 200, 120 and 125 of 126 (the two models) met it.
        tol: DE's relative convergence tolerance.
        pooled_seeds: the pooled fit starts from the best per-subject parameter sets of this
            many subjects (spread over the range of fit quality), as its population.
        pooled_maxiter: generations of the pooled fit.
        n_rep: simulated replications of each subject's lists. The claims compare the mean
            simulated curve with bands about +-0.005 wide at the CRP's outer lags; 30
            replications keep the simulation's own noise well below that (with 3, the
            fraction of lags inside the band moved by 10-20 points between simulation seeds).
        list_lengths: list lengths of the list-length simulation (pooled parameters).
        length_lists: simulated lists per list length.
        workers: Dask local-cluster workers for the per-subject fits (None: in-process).
        warm_start: start each subject's search with PEERS' pooled standard-CMR fit
            (:data:`kvmem.paradigms.free_recall_fit.PEERS_POOLED`, with any extension's
            parameters at 0, i.e. off) as one member of the first population; for short
            searches (quick profile).
        nested_start: when the comparison model is nested in ``model`` (its free parameters
            a subset of ``model``'s), fit it first and start each subject's search for
            ``model`` from that subject's comparison fit (the extra parameters at their
            lower bound, 0, i.e. off). DE keeps that member until a trial beats it, so
            ``model``'s fit is never worse than the nested one's.
        confidence: level of the bands over subjects (t interval of the mean).
        device: checked like every experiment's (``'cpu'``, ``'cuda'`` or ``'cuda:N'``), but
            this experiment computes on the CPU whatever the device: its fits are many small
            float64 likelihood evaluations spread over CPU (Dask) workers, and the likelihood
            has no GPU path yet.
    """

    dataset: str = "peers_notask"
    model: str = "cmr"
    compare: str | None = None
    n_subjects: int | None = None
    popsize: int = 6
    maxiter: int = 200
    tol: float = 0.002
    pooled_seeds: int = 20
    pooled_maxiter: int = 30
    n_rep: int = 30
    list_lengths: tuple[int, ...] = (8, 12, 16, 24, 32, 40)
    length_lists: int = 1000
    workers: int | None = 2
    warm_start: bool = False
    nested_start: bool = False
    confidence: float = 0.95
    device: str = "cpu"


QUICK = Config(n_subjects=3, popsize=3, maxiter=15, tol=0.01, pooled_seeds=3, pooled_maxiter=3, n_rep=2,
               list_lengths=(8, 16, 32), length_lists=200, workers=None, warm_start=True)
# The full profile's model carries semantic associations (GloVe similarities of the study
# words in M_cf): added after the localist models, standard and extended, failed the lag-CRP
# claim. The localist extended model is fitted beside it, and each subject's semantic fit
# starts from that subject's localist fit (nested_start).
FULL = Config(model="cmr-chain-restart-sem", compare="cmr-chain-restart", nested_start=True)


def _check_config(config: Config) -> None:
    resolve_device(config.device)
    if config.dataset not in ("peers_notask", "Morton2013"):
        raise ValueError(f"dataset: expected 'peers_notask' or 'Morton2013', got {config.dataset!r}")
    fitm.model_bounds(config.model)
    if config.compare is not None:
        if config.compare == config.model:
            raise ValueError(f"compare: expected a model other than model = {config.model!r}, or None")
        try:
            fitm.model_bounds(config.compare)
        except ValueError:
            raise ValueError(f"compare: expected None or one of {sorted(fitm.MODELS)}, got {config.compare!r}") from None
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


def _pooled_init(fits: dict[Any, fitm.FitResult], n: int, seed: int,
                 bounds: dict[str, tuple[float, float]] | None = None) -> np.ndarray:
    """The pooled fit's first population: per-subject best parameters spread over the range
    of fit quality, topped up with uniform draws to at least five members (DE's minimum).

    DE keeps a member until a trial beats it, so the pooled fit is never worse than the
    best of these per-subject parameter sets on the pooled data.

    Args:
        bounds: the model's free parameters and bounds, in the fit's order (default
            standard CMR's, :data:`kvmem.paradigms.free_recall_fit.DEFAULT_BOUNDS`).
    """
    bounds = fitm.DEFAULT_BOUNDS if bounds is None else bounds
    names = list(bounds)
    lo = np.array([bounds[k][0] for k in names])
    hi = np.array([bounds[k][1] for k in names])
    ranked = sorted(fits.values(), key=lambda r: r.logl / r.n)
    idx = np.unique(np.linspace(0, len(ranked) - 1, min(n, len(ranked))).round().astype(int))
    pop = np.array([[getattr(ranked[i].params, k) for k in names] for i in idx])
    extra = max(0, 5 - len(pop))
    if extra:
        rng = np.random.default_rng(seed)
        pop = np.vstack([pop, lo + rng.random((extra, len(names))) * (hi - lo)])
    return np.clip(pop, lo, hi)


def _random_list_similarity(word_vectors: tuple[list[str], Any], length: int, n_lists: int, seed: int) -> Any:
    """Similarity matrices ``[n_lists, L, L]`` of random lists of distinct words drawn from
    the vocabulary of ``word_vectors`` (for simulations without study lists)."""
    from ..data.semantic import semantic_similarity

    words, vectors = word_vectors
    rng = np.random.default_rng(seed)
    items = np.array([rng.choice(len(words), length, replace=False) for _ in range(n_lists)])
    return semantic_similarity(np.asarray(words, dtype=object)[items], words, vectors)


def _list_length_effect(params: frm.CMRParams, config: Config, seed: int,
                        word_vectors: tuple[list[str], Any] | None = None) -> pd.DataFrame:
    rows = []
    semantic = params.Scf != 0 or params.Sff != 0
    for i, length in enumerate(config.list_lengths):
        # With semantics, each simulated list is a random draw of PEERS study words.
        sim = (_random_list_similarity(word_vectors, length, config.length_lists, seed + 1000 * (i + 1))
               if semantic else None)
        rec = frm.generate(params, length, config.length_lists, generator=seed + 1000 * (i + 1), similarity=sim)[0]
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


def _warm_start(bounds: dict[str, tuple[float, float]]) -> dict[str, float]:
    """PEERS' pooled standard-CMR fit as a starting point in ``bounds``' space: the
    parameters of an extension start at their lower bound (0, i.e. off)."""
    return {n: fitm.PEERS_POOLED.get(n, b[0]) for n, b in bounds.items()}


def _fit_rows(fits: dict[Any, fitm.FitResult], baseline: dict[Any, float], model: str) -> pd.DataFrame:
    rows = []
    for s, r in fits.items():
        rows.append({"subject": s, "model": model, **r.row(), "baseline_logl": baseline[s],
                     "logl_per_event": r.logl / r.n, "gain_per_event": (r.logl - baseline[s]) / r.n,
                     "bic": r.k * math.log(r.n) - 2 * r.logl})
    return pd.DataFrame(rows)


def _model_summary(model: str, fits_table: pd.DataFrame, curves: dict[str, pd.DataFrame],
                   observed: dict[str, pd.DataFrame], n_events: int) -> dict[str, Any]:
    """Summed likelihood, AIC/BIC of the individual fits, and the curve checks of one model."""
    logl = float(fits_table["logl"].sum())
    k = float(fits_table["k"].sum())
    row: dict[str, Any] = {"model": model, "k_per_subject": int(fits_table["k"].iloc[0]), "logl_total": logl,
                           "aic": 2 * k - 2 * logl, "bic": k * math.log(n_events) - 2 * logl,
                           # Each subject's BIC with its own number of events, summed.
                           "bic_per_subject_sum": float(fits_table["bic"].sum()),
                           "fits_converged": int(fits_table["success"].sum())}
    for name, x in (("spc", "position"), ("pfr", "position"), ("crp", "lag")):
        both = pd.concat([observed[name], curves[name].assign(source="simulated")], ignore_index=True)
        row[f"{name}_inside"] = _inside(both, x)[0]
        obs = observed[name].set_index(x)["mean"]
        sim = curves[name].set_index(x)["mean"]
        common = obs.index.intersection(sim.index)
        row[f"{name}_rmse"] = float(np.sqrt(((obs[common] - sim[common]) ** 2).mean()))
    row["primacy"], row["recency"] = _primacy_recency(curves["spc"])
    return row


def run(config: Config, *, seed: int = 0, progress: Progress | None = None) -> Result:
    """Fit every subject and the pooled data, simulate, and compare curves."""
    _check_config(config)
    progress = progress or Progress()
    table = fitm.load_sample(config.dataset)
    subjects = sorted(table["subject"].unique().tolist())
    if config.n_subjects is not None:
        subjects = subjects[: config.n_subjects]
    table = table[table["subject"].isin(subjects)].reset_index(drop=True)
    models = [config.model] + ([config.compare] if config.compare is not None else [])
    # Semantic models need each list's word similarities (GloVe cosines of the study words;
    # kvmem.data.semantic). Models without semantic weights ignore them.
    word_vectors = None
    if any(fitm.model_uses_semantics(m) for m in models):
        from ..data.semantic import load_word_vectors

        word_vectors = load_word_vectors("peers_glove50")
    data = fitm.prepare_data(table, word_vectors=word_vectors)
    progress.total(len(subjects) * len(models) + 3 + (len(models) - 1))
    baseline = fitm.baseline_log_likelihood(data)
    all_fits: dict[str, dict[Any, fitm.FitResult]] = {}
    sims: dict[str, pd.DataFrame] = {}
    nested = (config.nested_start and config.compare is not None
              and set(fitm.model_bounds(config.compare)) <= set(fitm.model_bounds(config.model)))
    with torch_threads(1):
        for model in (models[::-1] if nested else models):
            bounds = fitm.model_bounds(model)
            fit_kwargs = {"free": bounds, "popsize": config.popsize, "maxiter": config.maxiter, "tol": config.tol,
                          "x0": _warm_start(bounds) if config.warm_start else None}
            starts = None
            if nested and model == config.model:
                # Each subject's nested fit, with the extra parameters at their lower bound (off).
                inner = fitm.model_bounds(config.compare)
                starts = {s: {n: getattr(all_fits[config.compare][s].params, n) if n in inner else b[0]
                              for n, b in bounds.items()} for s in subjects}
            all_fits[model] = fitm.fit_subjects(data, subjects, workers=config.workers, seed=seed,
                                                on_result=lambda s, r: progress.advance(), x0_by_subject=starts,
                                                **fit_kwargs)
            sims[model] = frm.simulate({s: all_fits[model][s].params for s in subjects}, study_table=table,
                                       n_rep=config.n_rep, seed=seed, word_vectors=word_vectors)
            if model != config.model:
                progress.advance()
        fits = all_fits[config.model]
        bounds = fitm.model_bounds(config.model)
        pooled = fitm.fit(data, free=bounds, maxiter=config.pooled_maxiter, tol=config.tol, seed=seed,
                          init=_pooled_init(fits, config.pooled_seeds, seed, bounds))
        progress.advance()
        progress.advance()
        lengths = _list_length_effect(pooled.params, config, seed, word_vectors)
    observed = _curves(table, "observed", config.confidence)
    other = "Morton2013" if config.dataset == "peers_notask" else "peers_notask"
    observed_lengths = _observed_list_lengths({config.dataset: table, other: fitm.load_sample(other)})
    curves = {m: _curves(sims[m], "simulated" if m == config.model else f"simulated ({m})", config.confidence)
              for m in models}
    progress.advance()

    fit_tables = {m: _fit_rows(all_fits[m], baseline, m) for m in models}
    fits_table = fit_tables[config.model]
    sum_indiv = float(fits_table["logl"].sum())
    pooled_table = pd.DataFrame([{"model": config.model, **pooled.row(), "sum_individual_logl": sum_indiv,
                                  "n_subjects": len(subjects)}])
    summary = pd.DataFrame([_model_summary(m, fit_tables[m], curves[m], observed, data.n_events) for m in models])
    tables = {
        "fits": fits_table,
        "pooled": pooled_table,
        "models": summary,
        "spc": pd.concat([observed["spc"]] + [curves[m]["spc"] for m in models], ignore_index=True),
        "pfr": pd.concat([observed["pfr"]] + [curves[m]["pfr"] for m in models], ignore_index=True),
        "crp": pd.concat([observed["crp"]] + [curves[m]["crp"] for m in models], ignore_index=True),
        "list_length": lengths,
        "observed_list_length": observed_lengths,
    }
    if config.compare is not None:
        tables["fits_compare"] = fit_tables[config.compare]
    obs_len = int(data.groups[0].list_length)
    scalars = {
        "dataset": config.dataset,
        "model": config.model,
        "n_params": int(fits_table["k"].iloc[0]),
        "n_subjects": len(subjects),
        "list_length": obs_len,
        "n_lists": data.n_lists,
        "n_events": data.n_events,
        "logl_total_individual": sum_indiv,
        "logl_pooled": pooled.logl,
        "fits_converged": int(fits_table["success"].sum()),
        # Individual fits against one pooled parameter set (k per fit, n = all events).
        "aic_individual": 2 * float(fits_table["k"].sum()) - 2 * sum_indiv,
        "aic_pooled": 2 * pooled.k - 2 * pooled.logl,
        "bic_individual": float(fits_table["k"].sum()) * math.log(data.n_events) - 2 * sum_indiv,
        "bic_pooled": pooled.k * math.log(data.n_events) - 2 * pooled.logl,
        "fit_cpu_seconds_total": float(fits_table["cpu_seconds"].sum()),
        "median_gain_per_event": float(fits_table["gain_per_event"].median()),
        "fit_seconds_total": float(fits_table["seconds"].sum()),
    }
    if config.compare is not None:
        other_row = summary.iloc[1]
        scalars.update({
            "compare": config.compare,
            "compare_fit_cpu_seconds_total": float(fit_tables[config.compare]["cpu_seconds"].sum()),
            "compare_logl_total": float(other_row["logl_total"]),
            # Positive: the claims' model is better by that much (AIC/BIC differences).
            "logl_gain_over_compare": sum_indiv - float(other_row["logl_total"]),
            "aic_gain_over_compare": float(other_row["aic"]) - float(summary.iloc[0]["aic"]),
            "bic_gain_over_compare": float(other_row["bic"]) - float(summary.iloc[0]["bic"]),
            "bic_per_subject_gain_over_compare": float(other_row["bic_per_subject_sum"])
            - float(summary.iloc[0]["bic_per_subject_sum"]),
            "subjects_better_than_compare": int((fits_table["logl"].to_numpy()
                                                 > fit_tables[config.compare]["logl"].to_numpy()).sum()),
        })
    return Result(tables=tables, scalars=scalars, config=asdict(config))


def plot(result: Result) -> dict[str, Any]:
    """Four panels: SPC, PFR, lag-CRP (observed bands, simulated lines; a compared model
    dashed, without band) and list length."""
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 4, figsize=(16, 3.8), constrained_layout=True)
    for ax, name, x, label in ((axes[0], "spc", "position", "serial position"),
                               (axes[1], "pfr", "position", "serial position"),
                               (axes[2], "crp", "lag", "lag")):
        t = result.tables[name]
        for source in t["source"].unique():
            if source not in ("observed", "simulated"):
                part = t[t["source"] == source]
                sides = (part[part[x] < 0], part[part[x] > 0]) if name == "crp" else (part,)
                for i, side in enumerate(sides):
                    ax.plot(side[x], side["mean"], "--", color="tab:blue", label=source if i == 0 else None)
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
        profiles={"quick": QUICK, "full": FULL},
        run=run,
        plot=plot,
        claims=claims,
    )
)
