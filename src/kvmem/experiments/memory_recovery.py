"""Experiment ``memory-recovery``: better cues, hypermnesia, spontaneous recovery and reinstatement.

The review (Gershman, Fiete & Irie 2025, Sec. 4; phenomena 1, 7, 10, 33) argues that
"lost" memories come back with the right cue, with more retrieval attempts, after a long
delay (spontaneous recovery) or after a reminder, because forgetting is a failure to
address intact pairs. Two paradigms, both with drifting temporal context in the keys
(:mod:`kvmem.context`):

**Cued recall** (better cues, hypermnesia). ``n_other_lists`` lists and then the target list
of ``list_length`` words are studied; the context drifts by ``drift_rate`` per word, jumps by
``boundary_rate`` between lists and changes by ``test_shift`` before the test. Word n is a
slot of a :class:`~kvmem.SlotMemory` with key ``[w_i f_n ; w_c c_n]`` (features f_n = +-1 /
sqrt(Di), study context c_n) and its identity as value. A retrieval attempt reads the noisy
query

    q = [w_i m * f_n ; w_c c_cue] + sigma e / sqrt(Di + Dc),   e ~ N(0, I)

by hard max (m keeps a fraction ``phi`` of the features, the rest are 0; c_cue is the
drifted test context or the reinstated study context, the normalised mean of the target
list's contexts). The word is recalled when the winning slot holds it.

- Better cues: recall against phi with and without context reinstatement, and the share of
  words missed with the weakest cue that a better cue recovers.
- Hypermnesia (Buschke 1974; Payne 1987): ``tests`` attempts with the same cue and fresh
  retrieval noise; cumulative recall rises while recall per test stays flat.

**Conditioning** (Estes 1955; Rescorla & Heth 1975). ``n_acq`` CS-US trials then ``n_ext``
CS-alone trials; trial t is a slot with key ``[w_x x_CS ; w_c c_t]`` and value 1 (US) or 0.
The conditioned response to the CS is the softmax read ``r = softmax(beta q K^T) V`` with
``q = [w_x x_CS ; w_c c_test]``: the retrieved US expectation.

- Spontaneous recovery: right after extinction the test context is nearest the extinction
  trials (r near 0); as it drifts away, acquisition and extinction keys become equally far
  and r returns toward Estes' asymptote ``n_acq / (n_acq + n_ext)``.
- Reinstatement: ``reminder_delay`` steps after extinction one US is presented alone. It
  retrieves the contexts it was experienced in (a second slot memory, key = outcome code,
  value = context), and the current context takes them in by the TCM update
  (:func:`kvmem.context.tcm_update` with ``reminder_beta``); the CS is tested at once.
- Comparison: an error-correcting matrix memory (delta rule, Rescorla & Wagner 1972) on the
  same keys, for which extinction overwrites the association ("unlearning").

Several seeds give 95% t confidence bands.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import pandas as pd
import torch

from ..context import random_drift, tcm_update
from ..memory import MatrixMemory, SlotMemory
from .base import Claim, Experiment, Progress, Result, register, resolve_device, torch_threads
from .interference_not_erasure import _plot_band, _seed_generator, summarise_seeds

CUE_CONTEXTS = ("test", "reinstated")
COND_MODELS = ("kv", "rw")

# Tolerances of the claims (see docs/experiments/memory-recovery.md).
FULL_CUE_MIN = 0.9           # recall with every feature and the reinstated context
REINSTATE_GAIN_MIN = 0.1     # largest gain of context reinstatement over the cue fractions
REINSTATE_SLACK = 0.02       # reinstatement may not lower recall by more than this anywhere
RECOVERED_MIN = 0.9          # share of baseline-missed words recalled with the best cue
HYPER_GAIN_MIN = 0.15        # cumulative recall after all tests minus recall on test 1
HYPER_FLAT_MAX = 0.05        # |recall on the last test - recall on the first|
EXTINGUISHED_MAX = 0.15      # response right after extinction
RECOVERED_RESPONSE_MIN = 0.4  # response at the longest delay
MONOTONE_SLACK = 0.02        # largest allowed fall between successive delays
ASYMPTOTE_TOL = 0.05         # |response at the longest delay - n_acq / (n_acq + n_ext)|
RW_RATIO_MAX = 0.5           # delta-rule recovery / key-value recovery
REINSTATEMENT_GAIN_MIN = 0.2  # reminder response - no-reminder response


@dataclass(frozen=True)
class Config:
    """Settings of ``memory-recovery``.

    Attributes:
        item_dim: Di, word features.
        context_dim: Dc, the temporal context of the cued-recall study.
        list_length: words in the target list.
        n_other_lists: lists studied before it (competitors from other contexts).
        drift_rate: context step per studied word.
        boundary_rate: context jump between lists.
        test_shift: context change between the end of study and the test (one random-drift
            step of this rate; cosine sqrt(1 - rate^2)): tested later, elsewhere.
        context_weight: w_c of the word keys (item share sqrt(1 - w_c^2)).
        query_noise: sigma, the retrieval noise of each attempt.
        cue_fractions: fractions phi of the word's features in the cue.
        recovery_fraction: phi of the better cue (with the reinstated context) whose recall of
            the words missed with the weakest cue is claimed; one of ``cue_fractions``.
        hyper_fraction: phi of the repeated hypermnesia tests (test context).
        tests: repeated retrieval attempts (hypermnesia).
        cs_dim: features of the conditioned stimulus.
        cond_context_dim: context dimension of the conditioning paradigm.
        cond_drift_rate: context step per conditioning trial and per delay step.
        cond_context_weight: w_c of the conditioning keys (CS share sqrt(1 - w_c^2)).
        cond_beta: inverse temperature of the conditioned-response read.
        n_acq: acquisition (CS-US) trials.
        n_ext: extinction (CS alone) trials.
        delays: drift steps between the end of extinction and the test.
        reminder_delay: steps between extinction and the reminder US (then the test).
        reminder_beta: TCM integration rate of the context the US retrieves.
        rw_lr: write strength of the delta-rule comparison (in (0, 2); keys have unit norm).
        seeds: independent replications (confidence bands are across them).
        trials: subjects per replication (a batch dimension).
        device: torch device of the computation: 'cpu', 'cuda' or 'cuda:N'; random draws
            stay on the CPU, so results match across devices to rounding.
    """

    item_dim: int = 64
    context_dim: int = 64
    list_length: int = 24
    n_other_lists: int = 6
    drift_rate: float = 0.15
    boundary_rate: float = 0.9
    test_shift: float = 0.95
    context_weight: float = 0.6
    query_noise: float = 1.0
    cue_fractions: tuple[float, ...] = (0.05, 0.1, 0.2, 0.35, 0.5, 0.75, 1.0)
    recovery_fraction: float = 0.5
    hyper_fraction: float = 0.2
    tests: int = 8
    cs_dim: int = 32
    cond_context_dim: int = 128
    cond_drift_rate: float = 0.2
    cond_context_weight: float = 0.8
    cond_beta: float = 20.0
    n_acq: int = 20
    n_ext: int = 20
    delays: tuple[int, ...] = (0, 1, 2, 5, 10, 20, 50, 100, 200)
    reminder_delay: int = 5
    reminder_beta: float = 0.6
    rw_lr: float = 0.3
    seeds: int = 5
    trials: int = 40
    device: str = "cpu"


QUICK = Config(cue_fractions=(0.05, 0.2, 0.5, 1.0), tests=5, delays=(0, 5, 50, 200), seeds=3, trials=24)


def _check(config: Config) -> torch.device:
    """Raise ``ValueError`` naming the first bad setting; return the torch device of the computation."""
    for name in ("item_dim", "context_dim", "cs_dim", "cond_context_dim"):
        if getattr(config, name) < 2:
            raise ValueError(f"{name}: expected an integer >= 2, got {getattr(config, name)}")
    for name in ("list_length", "tests", "n_acq", "n_ext", "trials"):
        if getattr(config, name) < 1:
            raise ValueError(f"{name}: expected an integer >= 1, got {getattr(config, name)}")
    for name in ("n_other_lists", "reminder_delay"):
        if getattr(config, name) < 0:
            raise ValueError(f"{name}: expected an integer >= 0, got {getattr(config, name)}")
    if config.seeds < 2:
        raise ValueError(f"seeds: expected at least 2 replications (for confidence bands), got {config.seeds}")
    for name in ("drift_rate", "boundary_rate", "test_shift", "cond_drift_rate", "reminder_beta", "hyper_fraction"):
        value = getattr(config, name)
        if not 0.0 <= value <= 1.0:
            raise ValueError(f"{name}: expected a number in [0, 1], got {value}")
    for name in ("context_weight", "cond_context_weight"):
        if not 0.0 < getattr(config, name) < 1.0:
            raise ValueError(f"{name}: expected a number in (0, 1), got {getattr(config, name)}")
    if not (config.query_noise >= 0 and math.isfinite(config.query_noise)):
        raise ValueError(f"query_noise: expected a finite number >= 0, got {config.query_noise}")
    if not (config.cond_beta > 0 and math.isfinite(config.cond_beta)):
        raise ValueError(f"cond_beta: expected a finite number > 0, got {config.cond_beta}")
    if not 0.0 < config.rw_lr < 2.0:
        raise ValueError(f"rw_lr: expected a number in (0, 2) (a stable delta rule on unit keys), got {config.rw_lr}")
    fr = config.cue_fractions
    if not fr or any(not 0.0 < f <= 1.0 for f in fr) or list(fr) != sorted(set(fr)):
        raise ValueError(f"cue_fractions: expected increasing distinct fractions in (0, 1], got {fr!r}")
    if config.recovery_fraction not in fr or config.recovery_fraction == fr[0]:
        raise ValueError(f"recovery_fraction: expected one of cue_fractions above the weakest {fr!r}, got {config.recovery_fraction}")
    d = config.delays
    if not d or any(not isinstance(x, int) or x < 0 for x in d) or list(d) != sorted(set(d)):
        raise ValueError(f"delays: expected increasing distinct integers >= 0, got {d!r}")
    return resolve_device(config.device)


# -- cued recall: better cues and hypermnesia --------------------------------------------------------
def _draw_study(config: Config, gen: torch.Generator) -> dict[str, torch.Tensor]:
    """Words and contexts of one replication: other lists first, the target list last."""
    t, di, dc = config.trials, config.item_dim, config.context_dim
    f64 = torch.float64
    lists, start = [], None
    for _ in range(config.n_other_lists + 1):
        if start is not None:
            start = random_drift(2, dc, rate=config.boundary_rate, batch_shape=(t,), initial=start, generator=gen, dtype=f64)[:, 1]
        ctx = random_drift(config.list_length, dc, rate=config.drift_rate, batch_shape=(t,), initial=start, generator=gen, dtype=f64)
        lists.append(ctx)
        start = ctx[:, -1]
    contexts = torch.cat(lists, 1)
    test_ctx = random_drift(2, dc, rate=config.test_shift, batch_shape=(t,), initial=start, generator=gen, dtype=f64)[:, -1]
    items = (torch.randint(0, 2, (t, contexts.shape[1], di), generator=gen).to(f64) * 2 - 1) / math.sqrt(di)
    # One random feature order per word: a cue with fraction phi keeps the first phi of it,
    # so the cues are nested (a better cue contains the weaker one).
    order = torch.rand(t, config.list_length, di, generator=gen).argsort(-1).argsort(-1)
    return {"items": items, "contexts": contexts, "test_context": test_ctx, "order": order}


def cue_queries(config: Config, study: dict[str, torch.Tensor], fraction: float, context: str) -> torch.Tensor:
    """Noise-free queries for every target-list word: a fraction of its features and a context.

    Args:
        config: the settings.
        study: one replication's draw (``items [T, N, Di]``, ``contexts [T, N, Dc]``,
            ``test_context [T, Dc]``, ``order [T, L, Di]``).
        fraction: phi, share of the word's features kept (the first ``round(phi Di)`` of its
            random order).
        context: ``"test"`` (the drifted context) or ``"reinstated"`` (the target list's study context).

    Returns:
        ``[T, L, Di + Dc]``.
    """
    if context not in CUE_CONTEXTS:
        raise ValueError(f"context: expected one of {CUE_CONTEXTS}, got {context!r}")
    wc = config.context_weight
    wi = math.sqrt(1.0 - wc * wc)
    length = config.list_length
    target = study["items"][:, -length:]
    kept = study["order"] < round(fraction * config.item_dim)
    feats = torch.where(kept, target, torch.zeros_like(target))
    if context == "test":
        ctx = study["test_context"]
    else:
        ctx = study["contexts"][:, -length:].mean(1)
        ctx = ctx / ctx.norm(dim=-1, keepdim=True)
    ctx = ctx.unsqueeze(1).expand(-1, length, -1)
    return torch.cat([wi * feats, wc * ctx], -1)


def study_keys(config: Config, study: dict[str, torch.Tensor]) -> torch.Tensor:
    """Keys ``[w_i f ; w_c c]`` of every studied word: ``[T, N, Di + Dc]``."""
    wc = config.context_weight
    return torch.cat([math.sqrt(1.0 - wc * wc) * study["items"], wc * study["contexts"]], -1)


def _attempts(mem: SlotMemory, queries: torch.Tensor, n: int, sigma: float, gen: torch.Generator,
              target: torch.Tensor) -> torch.Tensor:
    """``n`` independent noisy hard-max reads of each query: hits ``[n, T, L]`` (bool).

    The noise is drawn from the CPU generator ``gen`` and moved to the queries' device.
    """
    t, length, dim = queries.shape
    noise = torch.randn((n, t, length, dim), generator=gen, dtype=queries.dtype).to(queries.device)
    noise = noise * (sigma / math.sqrt(dim))
    noisy = (queries.unsqueeze(0) + noise).permute(1, 0, 2, 3).reshape(t, n * length, dim)
    best = mem.read(noisy, details=True).weights.argmax(-1).reshape(t, n, length).permute(1, 0, 2)
    return best == target


def simulate_cued(config: Config, gen: torch.Generator) -> dict[str, Any]:
    """One replication of the cued-recall study.

    Returns:
        dict with ``study`` (the draw), ``keys``, ``cues`` ({(phi, context): hits ``[T, L]``}),
        ``hyper`` (hits ``[tests, T, L]``) and ``noise_seed`` (the seed of the noise generator),
        on ``config.device`` (the draws are made on the CPU).
    """
    dev = resolve_device(config.device)
    study = {name: value.to(dev) for name, value in _draw_study(config, gen).items()}
    keys = study_keys(config, study)
    n = keys.shape[1]
    mem = SlotMemory(similarity="dot", separation="hardmax")
    mem.write(keys, torch.eye(n, dtype=keys.dtype, device=dev).expand(keys.shape[0], n, n))
    target = torch.arange(n - config.list_length, n, device=dev)
    noise_seed = int(torch.randint(0, 2**62, (1,), generator=gen))
    noise_gen = torch.Generator().manual_seed(noise_seed)
    cues = {}
    for context in CUE_CONTEXTS:
        for phi in config.cue_fractions:
            cues[(phi, context)] = _attempts(mem, cue_queries(config, study, phi, context), 1, config.query_noise,
                                             noise_gen, target)[0]
    hyper = _attempts(mem, cue_queries(config, study, config.hyper_fraction, "test"), config.tests,
                      config.query_noise, noise_gen, target)
    return {"study": study, "keys": keys, "cues": cues, "hyper": hyper, "noise_seed": noise_seed}


# -- conditioning: spontaneous recovery and reinstatement ----------------------------------------------
def simulate_conditioning(config: Config, gen: torch.Generator) -> dict[str, Any]:
    """One replication of acquisition, extinction, delayed tests and the reminder.

    Returns:
        dict with ``contexts [T, S, Dc]`` (trial and delay contexts), ``keys [T, A+E, Dcs+Dc]``,
        ``values [T, A+E, 1]``, ``test_queries [T, len(delays), Dcs+Dc]``, the responses
        ``kv_delay``/``rw_delay`` ``[T, len(delays)]`` and, after ``reminder_delay`` steps,
        ``kv_reminder``/``rw_reminder``/``kv_no_reminder``/``rw_no_reminder`` ``[T]`` and
        ``reminded_context [T, Dc]``; on ``config.device`` (the draws are made on the CPU).
    """
    dev = resolve_device(config.device)
    t, dx, dc = config.trials, config.cs_dim, config.cond_context_dim
    f64 = torch.float64
    wc = config.cond_context_weight
    wx = math.sqrt(1.0 - wc * wc)
    trials = config.n_acq + config.n_ext
    horizon = max(max(config.delays), config.reminder_delay)
    contexts = random_drift(trials + horizon, dc, rate=config.cond_drift_rate, batch_shape=(t,), generator=gen,
                            dtype=f64).to(dev)
    cs = torch.randn(t, 1, dx, generator=gen, dtype=f64).to(dev)
    cs = cs / cs.norm(dim=-1, keepdim=True)

    def query(ctx: torch.Tensor) -> torch.Tensor:
        return torch.cat([wx * cs.expand(-1, ctx.shape[1], -1), wc * ctx], -1)

    keys = query(contexts[:, :trials])
    values = torch.cat([torch.ones(t, config.n_acq, 1, device=dev), torch.zeros(t, config.n_ext, 1, device=dev)], 1)
    values = values.to(f64)
    kv = SlotMemory(similarity="dot", separation={"name": "softmax", "beta": config.cond_beta})
    kv.write(keys, values)
    rw = MatrixMemory(dx + dc, 1, rule="delta", beta=config.rw_lr)
    rw.write(keys, values)  # in trial order: acquisition, then extinction
    last = trials - 1
    delay_idx = torch.tensor([last + d for d in config.delays], device=dev)
    test_queries = query(contexts[:, delay_idx])
    out: dict[str, Any] = {"contexts": contexts, "keys": keys, "values": values, "test_queries": test_queries,
                           "kv_delay": kv.read(test_queries)[..., 0], "rw_delay": rw.read(test_queries)[..., 0]}
    # The reminder US retrieves the contexts it was met in: key = outcome code, value = context.
    outcome = torch.cat([values, 1.0 - values], -1)  # [US, no US] one-hot
    us_memory = SlotMemory(similarity="dot", separation={"name": "softmax", "beta": config.cond_beta})
    us_memory.write(outcome, contexts[:, :trials])
    us_cue = torch.tensor([[1.0, 0.0]], dtype=f64, device=dev)
    retrieved = us_memory.read(us_cue)[:, 0]
    now = contexts[:, last + config.reminder_delay]
    reminded = tcm_update(now, retrieved, config.reminder_beta)
    out["reminded_context"] = reminded
    for name, ctx in (("reminder", reminded), ("no_reminder", now)):
        q = query(ctx.unsqueeze(1))
        out[f"kv_{name}"] = kv.read(q)[:, 0, 0]
        out[f"rw_{name}"] = rw.read(q)[:, 0, 0]
    return out


def run(config: Config, *, seed: int = 0, progress: Progress | None = None) -> Result:
    """Both paradigms for every replication."""
    _check(config)  # also checks the device; the simulations place their tensors on it
    progress = progress or Progress()
    progress.total(2 * config.seeds)
    cue_rows, recovery_rows, hyper_rows, delay_rows, reminder_rows = [], [], [], [], []
    phi0 = config.cue_fractions[0]
    with torch_threads(1):
        for rep in range(config.seeds):
            cued = simulate_cued(config, _seed_generator(seed, rep, 0))
            base_missed = ~cued["cues"][(phi0, "test")]
            for (phi, context), hits in cued["cues"].items():
                hits = hits.to(torch.float64)
                cue_rows.append({"fraction": phi, "context": context, "seed": rep, "recall": float(hits.mean())})
                recovered = hits[base_missed]
                recovery_rows.append({"fraction": phi, "context": context, "seed": rep,
                                      "recovered": float(recovered.mean()) if recovered.numel() else float("nan")})
            hyper = cued["hyper"].to(torch.float64)
            cumulative = torch.cummax(hyper, dim=0).values
            for k in range(config.tests):
                hyper_rows.append({"test": k + 1, "seed": rep, "per_test": float(hyper[k].mean()),
                                   "cumulative": float(cumulative[k].mean())})
            progress.advance()

            cond = simulate_conditioning(config, _seed_generator(seed, rep, 1))
            for model in COND_MODELS:
                resp = cond[f"{model}_delay"].mean(0)
                for d, r in zip(config.delays, resp.tolist()):
                    delay_rows.append({"model": model, "delay": d, "seed": rep, "response": r})
                for name in ("no_reminder", "reminder"):
                    reminder_rows.append({"model": model, "condition": name, "seed": rep,
                                          "response": float(cond[f"{model}_{name}"].mean())})
            progress.advance()
    tables = {
        "cues": pd.DataFrame(cue_rows),
        "recovery": pd.DataFrame(recovery_rows),
        "hypermnesia": pd.DataFrame(hyper_rows),
        "spontaneous": pd.DataFrame(delay_rows),
        "reinstatement": pd.DataFrame(reminder_rows),
    }
    tables["cues_summary"] = summarise_seeds(tables["cues"], ["fraction", "context"], "recall")
    tables["recovery_summary"] = summarise_seeds(tables["recovery"].dropna(), ["fraction", "context"], "recovered")
    per = summarise_seeds(tables["hypermnesia"], ["test"], "per_test").assign(measure="per_test")
    cum = summarise_seeds(tables["hypermnesia"], ["test"], "cumulative").assign(measure="cumulative")
    tables["hypermnesia_summary"] = pd.concat([per, cum], ignore_index=True)
    tables["spontaneous_summary"] = summarise_seeds(tables["spontaneous"], ["model", "delay"], "response")
    tables["reinstatement_summary"] = summarise_seeds(tables["reinstatement"], ["model", "condition"], "response")
    scalars = {"estes_asymptote": config.n_acq / (config.n_acq + config.n_ext),
               "subjects_per_condition": config.seeds * config.trials}
    return Result(tables=tables, scalars=scalars, config=asdict(config))


def plot(result: Result) -> dict[str, Any]:
    """Four panels: cues, hypermnesia, spontaneous recovery, reinstatement."""
    import matplotlib.pyplot as plt

    t = result.tables
    fig, axes = plt.subplots(1, 4, figsize=(19, 4.3), constrained_layout=True)
    ax = axes[0]
    for context, color in zip(CUE_CONTEXTS, ("tab:blue", "tab:red")):
        part = t["cues_summary"][t["cues_summary"]["context"] == context].sort_values("fraction")
        _plot_band(ax, part["fraction"], part, f"{context} context", color=color)
        rec = t["recovery_summary"][t["recovery_summary"]["context"] == context].sort_values("fraction")
        _plot_band(ax, rec["fraction"], rec, f"{context}: words missed with the weakest cue", color=color, ls="--")
    ax.set_xlabel("fraction of the word's features in the cue")
    ax.set_ylabel("cued recall")
    ax.set_ylim(-0.03, 1.03)
    ax.set_title("A  better cues")
    ax.legend(fontsize=7)

    ax = axes[1]
    h = t["hypermnesia_summary"]
    for measure, color in (("cumulative", "tab:purple"), ("per_test", "tab:gray")):
        part = h[h["measure"] == measure].sort_values("test")
        _plot_band(ax, part["test"], part, measure.replace("_", " "), color=color)
    ax.set_xlabel("retrieval attempt (test)")
    ax.set_ylabel("recall")
    ax.set_ylim(-0.03, 1.03)
    ax.set_title("B  hypermnesia")
    ax.legend(fontsize=8)

    ax = axes[2]
    s = t["spontaneous_summary"]
    for model, color, label in (("kv", "tab:green", "key-value (slots)"), ("rw", "tab:orange", "delta rule (Rescorla-Wagner)")):
        part = s[s["model"] == model].sort_values("delay")
        _plot_band(ax, part["delay"] + 1, part, label, color=color)
    ax.axhline(result.scalars["estes_asymptote"], color="grey", ls=":", lw=0.8, label="n_acq / (n_acq + n_ext)")
    ax.set_xscale("log")
    ax.set_xlabel("steps since extinction + 1")
    ax.set_ylabel("conditioned response")
    ax.set_ylim(-0.03, 1.03)
    ax.set_title("C  spontaneous recovery (drifting context)")
    ax.legend(fontsize=8)

    ax = axes[3]
    r = t["reinstatement_summary"]
    labels, xs = [], []
    for i, model in enumerate(COND_MODELS):
        for j, cond in enumerate(("no_reminder", "reminder")):
            row = r[(r["model"] == model) & (r["condition"] == cond)].iloc[0]
            x = i * 3 + j
            ax.bar(x, row["mean"], color=("tab:green" if model == "kv" else "tab:orange"), alpha=0.5 + 0.4 * j)
            ax.errorbar(x, row["mean"], yerr=[[row["mean"] - row["ci_lo"]], [row["ci_hi"] - row["mean"]]], color="k", capsize=3)
            labels.append(f"{model}\n{cond.replace('_', ' ')}")
            xs.append(x)
    ax.set_xticks(xs, labels, fontsize=8)
    ax.set_ylabel("conditioned response")
    ax.set_ylim(0, 1.03)
    ax.set_title("D  reinstatement by a reminder US")
    return {"memory_recovery": fig}


def _row(summary: pd.DataFrame, **where: Any) -> pd.Series:
    part = summary
    for k, v in where.items():
        part = part[part[k] == v]
    return part.iloc[0]


def claims(result: Result) -> list[Claim]:
    """Recovery of 'lost' memories by cues, attempts, delay and reminders."""
    t = result.tables
    cues = t["cues_summary"]
    fracs = sorted(cues["fraction"].unique())
    curve = {c: cues[cues["context"] == c].sort_values("fraction")["mean"].to_numpy() for c in CUE_CONTEXTS}
    monotone = all(bool((curve[c][1:] >= curve[c][:-1] - MONOTONE_SLACK).all()) for c in CUE_CONTEXTS)
    full = float(curve["reinstated"][-1])
    gains = curve["reinstated"] - curve["test"]
    rec = t["recovery_summary"]
    phi_r = result.config["recovery_fraction"]
    best = float(_row(rec, fraction=phi_r, context="reinstated")["mean"])

    h = t["hypermnesia_summary"]
    per = h[h["measure"] == "per_test"].sort_values("test")["mean"].to_numpy()
    cum = h[h["measure"] == "cumulative"].sort_values("test")["mean"].to_numpy()

    s = t["spontaneous_summary"]
    kv = s[s["model"] == "kv"].sort_values("delay")["mean"].to_numpy()
    rw = s[s["model"] == "rw"].sort_values("delay")["mean"].to_numpy()
    asym = result.scalars["estes_asymptote"]
    kv_gain, rw_gain = float(kv[-1] - kv[0]), float(rw[-1] - rw[0])
    kv_monotone = bool((kv[1:] >= kv[:-1] - MONOTONE_SLACK).all())

    r = t["reinstatement_summary"]
    with_r = float(_row(r, model="kv", condition="reminder")["mean"])
    without = float(_row(r, model="kv", condition="no_reminder")["mean"])
    delays = sorted(s["delay"].unique())

    return [
        Claim("better_cues_raise_recall",
              f"cued recall rises with the share of cue features (never falling by > {MONOTONE_SLACK}) in both contexts, "
              f"reaching >= {FULL_CUE_MIN} with every feature and the reinstated context",
              f"test {curve['test'][0]:.3f} -> {curve['test'][-1]:.3f}; reinstated {curve['reinstated'][0]:.3f} -> {full:.3f}",
              monotone and full >= FULL_CUE_MIN),
        Claim("reinstated_context_raises_recall",
              f"reinstating the study context never lowers recall by > {REINSTATE_SLACK} and raises it by >= "
              f"{REINSTATE_GAIN_MIN} at some cue fraction (it cannot below floor or at ceiling)",
              f"gains {', '.join(f'{g:+.3f}' for g in gains)} over phi = {', '.join(f'{f:g}' for f in fracs)}",
              bool((gains >= -REINSTATE_SLACK).all()) and float(gains.max()) >= REINSTATE_GAIN_MIN),
        Claim("forgotten_words_recovered_by_better_cue",
              f">= {RECOVERED_MIN} of the words missed with the weakest cue (phi = {fracs[0]:g}, test context) are recalled "
              f"with a better cue (phi = {phi_r:g}, reinstated context): they were not erased",
              round(best, 3), best >= RECOVERED_MIN),
        Claim("hypermnesia",
              f"cumulative recall after {len(cum)} noisy attempts >= recall on attempt 1 + {HYPER_GAIN_MIN}, while recall per "
              f"attempt stays flat (|last - first| <= {HYPER_FLAT_MAX})",
              f"cumulative {cum[0]:.3f} -> {cum[-1]:.3f}; per attempt {per[0]:.3f} -> {per[-1]:.3f}",
              cum[-1] - cum[0] >= HYPER_GAIN_MIN and abs(per[-1] - per[0]) <= HYPER_FLAT_MAX),
        Claim("spontaneous_recovery",
              f"key-value response <= {EXTINGUISHED_MAX} right after extinction, >= {RECOVERED_RESPONSE_MIN} after "
              f"{delays[-1]} steps, never falling by > {MONOTONE_SLACK} between delays (Estes 1955)",
              f"{kv[0]:.3f} -> {kv[-1]:.3f} (monotone {kv_monotone})",
              kv[0] <= EXTINGUISHED_MAX and kv[-1] >= RECOVERED_RESPONSE_MIN and kv_monotone),
        Claim("estes_asymptote",
              f"response at the longest delay within {ASYMPTOTE_TOL} of n_acq / (n_acq + n_ext) = {asym:.3f}",
              round(float(kv[-1]), 3), abs(float(kv[-1]) - asym) <= ASYMPTOTE_TOL),
        Claim("unlearning_model_recovers_less",
              f"delta-rule (Rescorla-Wagner) memory on the same keys: recovery <= {RW_RATIO_MAX} x the key-value recovery",
              f"rw {rw[0]:.3f} -> {rw[-1]:.3f} (gain {rw_gain:+.3f}); kv gain {kv_gain:+.3f}",
              rw_gain <= RW_RATIO_MAX * kv_gain),
        Claim("reinstatement_by_reminder",
              f"a US alone (retrieving its contexts) raises the key-value response by >= {REINSTATEMENT_GAIN_MIN} over "
              "no reminder (Rescorla & Heth 1975)",
              f"{without:.3f} -> {with_r:.3f}", with_r - without >= REINSTATEMENT_GAIN_MIN),
    ]


EXPERIMENT = register(
    Experiment(
        name="memory-recovery",
        description="Recovering 'lost' memories: better cues, hypermnesia, spontaneous recovery and reinstatement with drifting context keys.",
        config_type=Config,
        profiles={"quick": QUICK, "full": Config()},
        run=run,
        plot=plot,
        claims=claims,
    )
)
