"""Experiment ``metamemory``: knowing that you know, from the key match alone.

The paper's third claim (Sec. 4.3): information in keys is not available for recall, but the
key-query match is available to metamemory. A key can match while its value is not
retrieved (tip-of-the-tongue; Brown & McNeill 1966), the match predicts later recognition of
answers that could not be recalled (feeling-of-knowing; Hart 1965), answerability can be
judged before, and without, the answer (Reder 1987), and a familiar cue inflates the feeling
of knowing without raising recall (Reder & Ritter 1992). Models without separate keys judge
familiarity by matching the cue against the stored *content*, so they cannot tell that
something is stored without (partly) retrieving it.

Mapping (trivia questions). A question is a cortical pattern x (D dimensions); its answer is
a word of a lexicon (random +-1 codes). Studying a question stores, in a
:class:`kvmem.bio.index.HippocampalIndex`, the sparse index code of x as the key and the
answer code as the value. Cortical values are laid down with a per-memory degradation: the
stored value is ``a + s_n xi / sqrt(Dv)`` with s_n ~ U[0, value_noise]. At test the question
comes back as ``x + e_m xi / sqrt(D)`` with e_m ~ U[0, cue_noise] (rephrasing, attention).

- feeling of knowing (FOK) = ``HippocampalIndex.familiarity``: the best key match, computed
  without touching any value;
- recall = the read-out value cleaned up to its nearest lexicon word, which must be the
  answer with cosine >= ``recall_threshold`` (enough of the word to say it);
- recognition = 4-alternative forced choice: the answer and 3 lexicon lures, the one closest
  to the read-out chosen;
- "know" judgement = FOK >= the criterion that 5 % of never-studied questions exceed.

Classical comparison (keys equal to values): one trace per fact, the pattern ``[x, a]``,
degraded as a whole by the same per-memory amount, stored in a :class:`kvmem.SlotMemory`
(cosine similarity, hard max) that is both key and value. Its FOK is the best match of
``[cue, 0]`` against the stored content.

Cue familiarity (Reder & Ritter 1992): after the first test, a relative of every second
question (input cosine ``prime_similarity``, e.g. 23 + 14 for 23 x 14) is studied with its own
answer, and all questions are tested again.

Claims checked (tolerances in :func:`claims`): tip-of-the-tongue states are frequent among
recall failures, the cued key won the match in them and their answers are recognised above
chance, while the classical model has few; FOK predicts recognition among unrecalled
questions; answerability is judged from keys alone (high AUC, fewer operations, unchanged
when every value is destroyed, unlike the classical model); priming related cues raises
"know" judgements but not recall.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import pandas as pd
import torch

from .._checks import check_int, check_positive
from ..bio.index import HippocampalIndex
from ..memory import SlotMemory
from .base import Claim, Experiment, Progress, Result, register, resolve_device, torch_threads
from .base import auc, mean_ci

MODELS = ("key-value", "classical")


@dataclass(frozen=True)
class Config:
    """Settings of ``metamemory``.

    Attributes:
        participants: independent memories (a batch dimension; the unit of the confidence bands).
        n_studied: questions studied per participant.
        n_new: never-studied questions tested per participant.
        input_dim: D, dimension of the cortical question patterns.
        answer_dim: Dv, dimension of the answer codes.
        lexicon: words in the lexicon (every question's answer is a distinct word).
        index_units: U, units of the hippocampal index.
        active: k, winners of the index's k-WTA.
        value_noise: largest per-memory degradation s of a stored answer (s ~ U[0, value_noise]).
        cue_noise: largest per-cue test noise e (e ~ U[0, cue_noise]).
        recall_threshold: cosine the cleaned-up word must reach to be said.
        alternatives: answers offered in the recognition test (1 correct, the rest lures).
        false_know_rate: the "know" criterion is the FOK that this fraction of new questions exceed.
        prime_similarity: input cosine between a question and its primed relative.
        destroy_noise: value noise that "destroys" every value in the ablation.
        device: torch device of the computation: 'cpu', 'cuda' or 'cuda:N'; random draws stay
            on the CPU, so results match across devices to rounding.
    """

    participants: int = 20
    n_studied: int = 100
    n_new: int = 100
    input_dim: int = 64
    answer_dim: int = 32
    lexicon: int = 300
    index_units: int = 1000
    active: int = 50
    value_noise: float = 3.0
    cue_noise: float = 2.0
    recall_threshold: float = 0.5
    alternatives: int = 4
    false_know_rate: float = 0.05
    prime_similarity: float = 0.5
    destroy_noise: float = 100.0
    device: str = "cpu"


QUICK = Config(participants=6)


def _check(config: Config) -> torch.device:
    """Validate the settings; return the device of the computation."""
    check_int(config.participants, "participants", minimum=2)
    check_int(config.n_studied, "n_studied", minimum=4)
    check_int(config.n_new, "n_new", minimum=4)
    check_int(config.input_dim, "input_dim", minimum=2)
    check_int(config.answer_dim, "answer_dim", minimum=2)
    check_int(config.index_units, "index_units")
    if not 1 <= check_int(config.active, "active") <= config.index_units:
        raise ValueError(f"active: expected 1 <= active <= index_units = {config.index_units}, got {config.active}")
    if check_int(config.lexicon, "lexicon") < config.n_studied + config.n_new + 1:
        raise ValueError(f"lexicon: expected more words than questions ({config.n_studied + config.n_new}), got {config.lexicon}")
    if not 2 <= check_int(config.alternatives, "alternatives") <= config.lexicon:
        raise ValueError(f"alternatives: expected 2 <= alternatives <= lexicon, got {config.alternatives}")
    for name in ("value_noise", "cue_noise", "destroy_noise"):
        check_positive(getattr(config, name), name, allow_zero=True)
    if not 0 < check_positive(config.recall_threshold, "recall_threshold") <= 1:
        raise ValueError(f"recall_threshold: expected a cosine in (0, 1], got {config.recall_threshold}")
    if not 0 < check_positive(config.false_know_rate, "false_know_rate") < 1:
        raise ValueError(f"false_know_rate: expected a number in (0, 1), got {config.false_know_rate}")
    if not 0 <= check_positive(config.prime_similarity, "prime_similarity", allow_zero=True) < 1:
        raise ValueError(f"prime_similarity: expected a cosine in [0, 1), got {config.prime_similarity}")
    return resolve_device(config.device)


# -- measures -------------------------------------------------------------------------------
def goodman_kruskal_gamma(x: Any, y: Any) -> float:
    """Goodman-Kruskal gamma between a score ``x`` and a binary outcome ``y`` (ties dropped).

    gamma = (C - D) / (C + D) over pairs with different outcomes: C counts pairs where the
    item with outcome 1 has the larger score, D the reverse; pairs tied on the score count
    for neither. The standard measure of metamemory resolution (Nelson 1984).

    Args:
        x: scores ``[n]``.
        y: outcomes ``[n]`` (0/1 or bool).

    Returns:
        gamma in [-1, 1], or nan when no pair is untied.

    Example:
        >>> goodman_kruskal_gamma([0.1, 0.4, 0.4, 0.9], [0, 0, 1, 1])
        1.0
    """
    x = np.asarray(x, dtype=np.float64).ravel()
    y = np.asarray(y).astype(bool).ravel()
    if x.shape != y.shape:
        raise ValueError(f"y: expected {x.shape[0]} outcomes (as many as scores), got {y.shape[0]}")
    neg = np.sort(x[~y])
    pos = x[y]
    below = np.searchsorted(neg, pos, side="left").sum()
    above = (neg.size - np.searchsorted(neg, pos, side="right")).sum()
    total = below + above
    return float((below - above) / total) if total else math.nan


def operation_counts(config: Config, n_keys: int | None = None) -> dict[str, int]:
    """Multiply-adds of one FOK judgement and of one recall, as the code computes them.

    FOK: expand the cue (U x D) and match its code against every key (N x U, dense).
    Recall: the same, then read the value (N x Dv: weights times values) and clean it up
    against the lexicon (L x Dv). Comparisons (k-WTA, max, argmax) are not counted.
    """
    n = config.n_studied if n_keys is None else n_keys
    encode = config.index_units * config.input_dim
    match = n * config.index_units
    read = n * config.answer_dim
    cleanup = config.lexicon * config.answer_dim
    return {"encode": encode, "match": match, "read": read, "cleanup": cleanup,
            "fok": encode + match, "recall": encode + match + read + cleanup}


def _unit(x: torch.Tensor) -> torch.Tensor:
    return x / x.norm(dim=-1, keepdim=True).clamp_min(1e-12)


# -- one run ----------------------------------------------------------------------------------
def run(config: Config, *, seed: int = 0, progress: Progress | None = None) -> Result:
    """Study, test (both models), destroy values, prime relatives and test again."""
    with torch_threads(1):
        return _run(config, seed=check_int(seed, "seed", minimum=0), progress=progress or Progress())


def _answers(read: torch.Tensor, lexicon: torch.Tensor, answer: torch.Tensor, options: torch.Tensor,
             threshold: float) -> dict[str, torch.Tensor]:
    """Recall and recognition from read-out values ``[T, M, Dv]``."""
    cos = _unit(read) @ _unit(lexicon).transpose(-1, -2)
    conf, pick = cos.max(dim=-1)
    recalled = (pick == answer) & (conf >= threshold)
    recognised = torch.gather(cos, -1, options).argmax(dim=-1) == 0
    return {"recalled": recalled, "recognised": recognised, "word": pick, "confidence": conf}


def _run(config: Config, *, seed: int, progress: Progress) -> Result:
    dev = _check(config)
    progress.total(5)
    t, n, m_new = config.participants, config.n_studied, config.n_new
    m = n + m_new
    d, dv, lex_n = config.input_dim, config.answer_dim, config.lexicon
    gen = torch.Generator().manual_seed(seed)
    # Every draw is made on the CPU from the seeded generator, in the same order, then moved:
    # the same numbers on every device.
    questions = _unit(torch.randn(t, m, d, generator=gen).to(dev))
    lexicon = torch.where(torch.rand(t, lex_n, dv, generator=gen).to(dev) < 0.5, -1.0, 1.0) / math.sqrt(dv)
    answer = torch.stack([torch.randperm(lex_n, generator=gen)[:m] for _ in range(t)]).to(dev)
    answer_codes = torch.gather(lexicon, 1, answer.unsqueeze(-1).expand(t, m, dv))
    strength_noise = torch.rand(t, n, 1, generator=gen).to(dev) * config.value_noise
    eps_v = torch.randn(t, n, dv, generator=gen).to(dev) / math.sqrt(dv)
    values = answer_codes[:, :n] + strength_noise * eps_v
    cue_noise = torch.rand(t, m, 1, generator=gen).to(dev) * config.cue_noise
    cues = _unit(questions + cue_noise * torch.randn(t, m, d, generator=gen).to(dev) / math.sqrt(d))
    # Lures: distinct from the answer (draw among the other L - 1 words, skipping the answer).
    lures = torch.randint(0, lex_n - 1, (t, m, config.alternatives - 1), generator=gen).to(dev)
    lures = lures + (lures >= answer.unsqueeze(-1)).long()
    options = torch.cat([answer.unsqueeze(-1), lures], dim=-1)
    own = torch.arange(m, device=dev)
    studied = own < n
    index_seed = int(torch.randint(0, 2**31 - 1, (1,), generator=gen))

    # -- key-value: hippocampal index keys, cortical values.
    index = HippocampalIndex(num_units=config.index_units, active=config.active, separation="hardmax", seed=index_seed)
    index.write(questions[:, :n], values)
    read = index.read(cues, details=True)
    kv = {"fok": read.scores.amax(dim=-1), "key_won": read.scores.argmax(dim=-1) == own,
          **_answers(read.values, lexicon, answer, options, config.recall_threshold)}
    progress.advance()

    # -- classical: one trace [x, a] per fact, key and value at once, degraded as a whole.
    patterns = torch.cat([questions[:, :n], answer_codes[:, :n]], dim=-1)
    eps_c = torch.randn(t, n, d + dv, generator=gen).to(dev) * math.sqrt(2.0 / (d + dv))
    traces = patterns + strength_noise * eps_c
    classical_mem = SlotMemory(similarity="cosine", separation="hardmax")
    classical_mem.write(traces, traces)
    probe = torch.cat([cues, torch.zeros(t, m, dv, device=dev)], dim=-1)
    cread = classical_mem.read(probe, details=True)
    cl = {"fok": cread.scores.amax(dim=-1), "key_won": cread.scores.argmax(dim=-1) == own,
          **_answers(cread.values[..., d:], lexicon, answer, options, config.recall_threshold)}
    progress.advance()

    # -- ablation: destroy every stored value (KV) / every trace (classical) and test again.
    wrecked = HippocampalIndex(num_units=config.index_units, active=config.active, separation="hardmax", seed=index_seed)
    wrecked.write(questions[:, :n], values)
    wrecked.degrade_values(config.destroy_noise, seed=index_seed % (2**31 - 2) + 1)
    wread = wrecked.read(cues, details=True)
    kv_destroyed = {"fok": wrecked.familiarity(cues),
                    **_answers(wread.values, lexicon, answer, options, config.recall_threshold)}
    ctraces = patterns + config.destroy_noise * torch.randn(t, n, d + dv, generator=gen).to(dev) * math.sqrt(2.0 / (d + dv))
    cmem = SlotMemory(similarity="cosine", separation="hardmax")
    cmem.write(ctraces, ctraces)
    cwread = cmem.read(probe, details=True)
    cl_destroyed = {"fok": cwread.scores.amax(dim=-1),
                    **_answers(cwread.values[..., d:], lexicon, answer, options, config.recall_threshold)}
    progress.advance()

    # -- cue familiarity: study a relative of every second question, with the relative's own answer.
    primed = torch.zeros(m, dtype=torch.bool, device=dev)
    primed[::2] = True
    rho = config.prime_similarity
    other = _unit(torch.randn(t, m, d, generator=gen).to(dev))
    relatives = _unit(math.sqrt(rho) * questions + math.sqrt(1 - rho) * other)
    rel_words = torch.randint(0, lex_n - 1, (t, m), generator=gen).to(dev)
    rel_words = rel_words + (rel_words >= answer).long()
    rel_codes = torch.gather(lexicon, 1, rel_words.unsqueeze(-1).expand(t, m, dv))
    index.write(relatives[:, primed], rel_codes[:, primed])
    pread = index.read(cues, details=True)
    kv_primed = {"fok": pread.scores.amax(dim=-1), "key_won": pread.scores.argmax(dim=-1) == own,
                 **_answers(pread.values, lexicon, answer, options, config.recall_threshold)}
    progress.advance()

    # -- tables (pandas and numpy need CPU tensors; .cpu() is a no-op on the CPU)
    frames = []
    outcomes = {("key-value", "intact"): kv, ("classical", "intact"): cl,
                ("key-value", "values destroyed"): kv_destroyed, ("classical", "values destroyed"): cl_destroyed,
                ("key-value", "after priming"): kv_primed}
    p_idx, q_idx = np.meshgrid(np.arange(t), np.arange(m), indexing="ij")
    vnoise = np.full((t, m), math.nan)
    vnoise[:, :n] = strength_noise[..., 0].cpu().numpy()
    studied_np, primed_np = studied.cpu().numpy(), primed.cpu().numpy()
    for (model, phase), res in outcomes.items():
        res = {k: v.cpu() for k, v in res.items()}
        key_won = res["key_won"].numpy().astype(np.float64) if "key_won" in res else np.full((t, m), math.nan)
        frames.append(pd.DataFrame({
            "model": model, "phase": phase, "participant": p_idx.ravel(), "question": q_idx.ravel(),
            "studied": studied_np[q_idx.ravel()], "primed": primed_np[q_idx.ravel()],
            "value_noise": vnoise.ravel(), "cue_noise": cue_noise[..., 0].cpu().numpy().ravel().astype(np.float64),
            "fok": res["fok"].numpy().ravel().astype(np.float64), "key_won": key_won.ravel(),
            "recalled": res["recalled"].numpy().ravel(), "recognised": res["recognised"].numpy().ravel(),
        }))
    trials = pd.concat(frames, ignore_index=True)
    participants = _participant_table(trials, config)
    ops = operation_counts(config)
    ops_primed = operation_counts(config, n + int(primed.sum()))
    scalars = _scalars(trials, participants, config, ops)
    scalars["ops_fok_after_priming"] = ops_primed["fok"]
    scalars["ops_recall_after_priming"] = ops_primed["recall"]
    scalars["fok_unchanged_by_value_destruction"] = float((kv_destroyed["fok"] - kv["fok"]).abs().max())
    progress.advance()
    return Result(tables={"trials": trials, "participants": participants,
                          "operations": pd.DataFrame([{"judgement": k, "multiply_adds": v} for k, v in ops.items()])},
                  scalars=scalars, config=asdict(config))


def _criterion(trials: pd.DataFrame, model: str, config: Config) -> float:
    """The FOK that ``false_know_rate`` of never-studied questions exceed (intact memory)."""
    new = trials[(trials["model"] == model) & (trials["phase"] == "intact") & ~trials["studied"]]
    return float(np.quantile(new["fok"], 1 - config.false_know_rate))


def _measures(part: pd.DataFrame, criterion: float) -> dict[str, float]:
    """Per-group metamemory measures on one phase of one model."""
    st = part[part["studied"]]
    new = part[~part["studied"]]
    failed = st[~st["recalled"]]
    tot = failed[failed["fok"] >= criterion]
    hi = failed[failed["fok"] > failed["fok"].median()]
    lo = failed[failed["fok"] <= failed["fok"].median()]
    return {
        "recall": float(st["recalled"].mean()),
        "auc": auc(st["fok"], new["fok"]),
        "tot_share": float(len(tot) / len(failed)) if len(failed) else math.nan,
        "tot_key_won": float(tot["key_won"].mean()) if len(tot) and tot["key_won"].notna().all() else math.nan,
        "tot_recognition": float(tot["recognised"].mean()) if len(tot) else math.nan,
        "recog_high_fok": float(hi["recognised"].mean()) if len(hi) else math.nan,
        "recog_low_fok": float(lo["recognised"].mean()) if len(lo) else math.nan,
        "gamma": goodman_kruskal_gamma(failed["fok"], failed["recognised"]) if len(failed) else math.nan,
        "know_new": float((new["fok"] >= criterion).mean()),
        "know_studied": float((st["fok"] >= criterion).mean()),
    }


def _participant_table(trials: pd.DataFrame, config: Config) -> pd.DataFrame:
    rows = []
    for model in MODELS:
        crit = _criterion(trials, model, config)
        for phase in trials[trials["model"] == model]["phase"].unique():
            for p, part in trials[(trials["model"] == model) & (trials["phase"] == phase)].groupby("participant"):
                rows.append({"model": model, "phase": phase, "participant": p, "criterion": crit, **_measures(part, crit)})
    return pd.DataFrame(rows)


def _priming_effects(trials: pd.DataFrame, criterion: float) -> dict[str, float]:
    """Within-question changes from the first test to the test after priming (key-value)."""
    before = trials[(trials["model"] == "key-value") & (trials["phase"] == "intact")].set_index(["participant", "question"])
    after = trials[(trials["model"] == "key-value") & (trials["phase"] == "after priming")].set_index(["participant", "question"])
    out = {}
    for group, sel in (("primed", before["primed"]), ("unprimed", ~before["primed"])):
        for st_name, st in (("new", ~before["studied"]), ("studied", before["studied"])):
            mask = sel & st
            b, a = before[mask], after[mask]
            out[f"{group}/{st_name}/fok"] = float(a["fok"].mean() - b["fok"].mean())
            out[f"{group}/{st_name}/know"] = float((a["fok"] >= criterion).mean() - (b["fok"] >= criterion).mean())
            out[f"{group}/{st_name}/recall"] = float(a["recalled"].mean() - b["recalled"].mean())
            out[f"{group}/{st_name}/key_won"] = float(a["key_won"].mean() - b["key_won"].mean())
    return out


def _scalars(trials: pd.DataFrame, parts: pd.DataFrame, config: Config, ops: dict[str, int]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for model in MODELS:
        crit = _criterion(trials, model, config)
        out[f"criterion/{model}"] = round(crit, 4)
        for phase in ("intact", "values destroyed"):
            part = trials[(trials["model"] == model) & (trials["phase"] == phase)]
            for k, v in _measures(part, crit).items():
                out[f"{k}/{model}/{phase}"] = round(v, 4) if isinstance(v, float) and math.isfinite(v) else v
    for k, v in _priming_effects(trials, _criterion(trials, "key-value", config)).items():
        out[f"priming/{k}"] = round(v, 4)
    out["ops_fok"] = ops["fok"]
    out["ops_recall"] = ops["recall"]
    out["ops_ratio"] = round(ops["fok"] / ops["recall"], 4)
    return out


# -- claims -------------------------------------------------------------------------------------
def claims(result: Result) -> list[Claim]:
    """The metamemory phenomena of Sec. 4.3, measured on pooled participants."""
    s = result.scalars
    g = lambda k: s[k]  # noqa: E731 - short accessor
    out = []
    share, won, recog = g("tot_share/key-value/intact"), g("tot_key_won/key-value/intact"), g("tot_recognition/key-value/intact")
    chance = 1.0 / result.config["alternatives"]
    out.append(Claim(
        "tip_of_the_tongue",
        f"key-value: >= 30% of recall failures come with a 'know' FOK; in those the cued key won the match >= 90% of "
        f"the time and the answer is recognised >= 2x chance ({2 * chance:.2f})",
        f"TOT share {share:.3f}, key won {won:.3f}, recognition {recog:.3f}",
        share >= 0.3 and won >= 0.9 and recog >= 2 * chance,
    ))
    c_share = g("tot_share/classical/intact")
    out.append(Claim(
        "classical_has_few_tip_of_the_tongue_states",
        "classical (keys = values): share of recall failures with a 'know' FOK <= half the key-value share",
        f"{c_share:.3f} vs key-value {share:.3f}",
        c_share <= 0.5 * share,
    ))
    hi, lo, gamma = g("recog_high_fok/key-value/intact"), g("recog_low_fok/key-value/intact"), g("gamma/key-value/intact")
    out.append(Claim(
        "fok_predicts_recognition",
        "key-value, unrecalled studied questions: recognition after high FOK (above the median) exceeds that after low FOK "
        "by >= 0.1, and Goodman-Kruskal gamma(FOK, recognised) >= 0.2",
        f"high {hi:.3f} vs low {lo:.3f}, gamma {gamma:.3f}",
        hi - lo >= 0.1 and gamma >= 0.2,
    ))
    a, dv = g("auc/key-value/intact"), s["fok_unchanged_by_value_destruction"]
    rec_d, ratio = g("recall/key-value/values destroyed"), s["ops_ratio"]
    out.append(Claim(
        "answerability_from_keys_alone",
        "key-value: FOK separates studied from new questions with AUC >= 0.9, costs fewer multiply-adds than recall, "
        "and is identical (max |change| == 0) after every value is destroyed while recall falls to <= 0.02",
        f"AUC {a:.3f}, ops FOK/recall {ratio:.3f}, FOK change {dv:.1e}, recall after destruction {rec_d:.3f}",
        a >= 0.9 and ratio < 1.0 and dv == 0.0 and rec_d <= 0.02,
    ))
    ca, cad = g("auc/classical/intact"), g("auc/classical/values destroyed")
    out.append(Claim(
        "classical_answerability_needs_content",
        "classical (keys = values): destroying the stored content drops the FOK AUC to <= 0.6",
        f"AUC intact {ca:.3f} -> destroyed {cad:.3f}",
        cad <= 0.6,
    ))
    know = s["priming/primed/new/know"]
    fok = s["priming/primed/new/fok"]
    d_rec = max(s["priming/primed/studied/recall"], s["priming/primed/new/recall"])
    d_key = s["priming/primed/studied/key_won"]
    out.append(Claim(
        "cue_familiarity_inflates_fok_not_recall",
        "key-value, questions whose relative was studied: 'know' judgements on new questions rise by >= 0.2 (mean FOK "
        "by >= 0.03), recall (studied and new) rises by <= 0.02 and the cued key wins no more often (change <= 0.02)",
        f"know +{know:.3f}, FOK {fok:+.3f}, recall change <= {d_rec:+.3f}, key won {d_key:+.3f}",
        know >= 0.2 and fok >= 0.03 and d_rec <= 0.02 and d_key <= 0.02,
    ))
    return out


# -- figures ------------------------------------------------------------------------------------
def plot(result: Result) -> dict[str, Any]:
    """FOK distributions, TOT and recognition bars, recognition vs FOK, and priming effects."""
    import matplotlib.pyplot as plt

    trials, parts = result.tables["trials"], result.tables["participants"]
    figs: dict[str, Any] = {}
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.8), constrained_layout=True)
    for ax, model in zip(axes[:2], MODELS):
        part = trials[(trials["model"] == model) & (trials["phase"] == "intact")]
        crit = float(parts[parts["model"] == model]["criterion"].iloc[0])
        bins = np.linspace(part["fok"].min(), part["fok"].max(), 30)
        for label, sel, color in (("studied, recalled", part["studied"] & part["recalled"], "tab:green"),
                                  ("studied, not recalled", part["studied"] & ~part["recalled"], "tab:orange"),
                                  ("new", ~part["studied"], "tab:gray")):
            ax.hist(part[sel]["fok"], bins=bins, density=True, histtype="step", color=color, label=label)
        ax.axvline(crit, color="k", ls=":", lw=1, label="'know' criterion")
        ax.set_title(f"{model}: feeling of knowing")
        ax.set_xlabel("FOK (best key match)" if model == "key-value" else "FOK (best content match)")
    axes[0].legend(fontsize=7)
    ax = axes[2]
    measures = ["recall", "tot_share", "tot_recognition", "auc"]
    x = np.arange(len(measures))
    for i, model in enumerate(MODELS):
        part = parts[(parts["model"] == model) & (parts["phase"] == "intact")]
        stats_ = [mean_ci(part[m]) for m in measures]
        means = [s_[0] for s_ in stats_]
        err = np.array([[s_[0] - s_[1], s_[2] - s_[0]] for s_ in stats_]).T
        ax.bar(x + (i - 0.5) * 0.38, means, 0.38, yerr=np.nan_to_num(err), capsize=3, label=model)
    ax.axhline(1.0 / result.config["alternatives"], color="k", ls=":", lw=1)
    ax.set_xticks(x, ["recall", "TOT share\nof failures", "recognition\nin TOT", "answerability\nAUC"], fontsize=8)
    ax.set_ylim(0, 1.05)
    ax.legend(fontsize=8)
    ax.set_title("mean over participants, 95% CI")
    figs["tip_of_the_tongue"] = fig

    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8), constrained_layout=True)
    ax = axes[0]
    for model, color in zip(MODELS, ("tab:blue", "tab:red")):
        part = trials[(trials["model"] == model) & (trials["phase"] == "intact") & trials["studied"] & ~trials["recalled"]]
        if not len(part):
            continue
        edges = np.unique(np.quantile(part["fok"], np.linspace(0, 1, 6)))
        which = np.clip(np.searchsorted(edges, part["fok"], side="right") - 1, 0, len(edges) - 2)
        per = part.assign(bin=which).groupby(["bin", "participant"])["recognised"].mean().reset_index()
        stats_ = per.groupby("bin")["recognised"].apply(lambda v: mean_ci(v))
        centres = [part["fok"][which == b].mean() for b in stats_.index]
        ax.plot(centres, [v[0] for v in stats_], color=color, marker="o", label=model)
        ax.fill_between(centres, [v[1] for v in stats_], [v[2] for v in stats_], color=color, alpha=0.2, lw=0)
    ax.axhline(1.0 / result.config["alternatives"], color="k", ls=":", lw=1, label="chance")
    ax.set_xlabel("FOK quintile (mean)")
    ax.set_ylabel("later recognition, unrecalled questions")
    ax.legend(fontsize=8)
    ax = axes[1]
    s = result.scalars
    labels, vals = [], []
    for group in ("primed", "unprimed"):
        for st in ("new", "studied"):
            labels.append(f"{group}\n{st}")
            vals.append([s[f"priming/{group}/{st}/{k}"] for k in ("know", "recall", "key_won")])
    vals = np.array(vals)
    x = np.arange(len(labels))
    for i, name in enumerate(("'know' judgements", "recall", "cued key wins")):
        ax.bar(x + (i - 1) * 0.27, vals[:, i], 0.27, label=name)
    ax.axhline(0, color="k", lw=0.8)
    ax.set_xticks(x, labels, fontsize=8)
    ax.set_ylabel("change after studying relatives")
    ax.set_title("cue familiarity (Reder & Ritter 1992)")
    ax.legend(fontsize=8)
    figs["fok_and_priming"] = fig
    return figs


EXPERIMENT = register(
    Experiment(
        name="metamemory",
        description="Tip-of-the-tongue, feeling-of-knowing, answerability and cue familiarity from the key match alone.",
        config_type=Config,
        profiles={"quick": QUICK, "full": Config()},
        run=run,
        plot=plot,
        claims=claims,
    )
)
