"""Experiment ``repulsion``: keys learned to tell overlapping routes apart repel, reversibly.

Chanales, Oza, Favila & Kuhl (2017) had people learn routes through a virtual city; pairs of
routes overlapped (a shared segment) and led to different destinations. With learning,
hippocampal patterns for overlapping routes became *less* similar than those for unrelated
routes (the objective similarity reversed), and the more they repelled, the better people
told the routes apart. Wanjia et al. (2021) saw the repulsion appear abruptly as the
interference was resolved. The paper (Secs. 4.2 and 6) explains this by keys optimised for
discriminability (cf. its Fig. 2) and makes its one explicit prediction: **repulsion should be
reversible**, because it lives in the keys, while the values are untouched.

Mapping. A route is a cortical input pattern; a pair shares a segment c and differs by a turn
d taken in opposite directions: ``x = sqrt((1 + rho) / 2) c +- sqrt((1 - rho) / 2) d`` (unit
norm, input cosine exactly rho within a pair, about 0 between pairs). Each route's value is
its destination (a random unit vector). Keys and queries come from one learned linear map
W (``kvmem.learning.key_maps.LearnedLinearMap``, initialised to the identity, so keys start
with the input similarity): ``k = x W``, ``q = cue W``. Retrieval is
``softmax(beta cos(q, K)) V`` in a :class:`kvmem.SlotMemory`; cues are routes plus Gaussian
noise.

Learning phases (Adam on W only; the values are never parameters):

1. discriminate: at the overlapping segment, choose the route's own destination over its
   partner's: loss ``-log p``, ``p = softmax over the two keys of the pair``, the route-choice
   task of Chanales et al.;
2. integrate: the two routes now lead to one goal: loss ``-(log p + log(1 - p)) / 2`` (either
   memory is right; the demand to tell them apart is gone);
3. discriminate again.

Measured at checkpoints: cosine of the two keys of a pair, mean cosine between keys of
different pairs (unrelated routes), the same for inputs and for the stored values, and
discrimination accuracy: the fraction of noisy test cues whose read-out destination is
closer to the route's own destination than to the partner's.

Claims checked (tolerances in :func:`claims`): similarity reversal at the end of phase 1;
the keys move apart beyond their input similarity; repulsion tracks discrimination accuracy
over learning; the repulsion reverses in phase 2 and the keys repel again in phase 3; the stored values
and their similarity are untouched throughout.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import pandas as pd
import torch
from scipy import stats

from .. import similarity as _similarity
from .._checks import check_int, check_positive
from ..learning.key_maps import LearnedLinearMap
from ..memory import SlotMemory
from ..separation import Softmax
from .base import Claim, Experiment, Progress, Result, register, resolve_device, torch_threads
from .base import mean_ci

PHASES = ("discriminate", "integrate", "discriminate-again")


@dataclass(frozen=True)
class Config:
    """Settings of ``repulsion``.

    Attributes:
        learners: independent learners (memories; a batch dimension, the unit of the bands).
        pairs: pairs of overlapping routes per learner.
        input_dim: D, dimension of the route patterns (and of the keys).
        value_dim: dimension of the destination values.
        overlap: rho, input cosine of the two routes of a pair.
        beta: softmax inverse temperature on the cosine similarity.
        train_noise: norm (about) of the Gaussian noise of a training cue.
        test_noise: norm (about) of the noise of a test cue (harder than training).
        lr: Adam learning rate.
        steps: Adam steps per phase.
        cues_per_route: fresh training cues per route per step.
        checkpoint_every: steps between measurements.
        eval_cues: test cues per route at each checkpoint (drawn once, reused).
        device: torch device of the computation: 'cpu', 'cuda' or 'cuda:N'; random draws stay
            on the CPU, so results match across devices to rounding.
    """

    learners: int = 16
    pairs: int = 8
    input_dim: int = 32
    value_dim: int = 16
    overlap: float = 0.6
    beta: float = 8.0
    train_noise: float = 0.5
    test_noise: float = 1.0
    lr: float = 3e-3
    steps: int = 150
    cues_per_route: int = 4
    checkpoint_every: int = 10
    eval_cues: int = 50
    device: str = "cpu"


QUICK = Config(learners=4, steps=80, lr=1e-2, eval_cues=20)


def _check(config: Config) -> torch.device:
    """Validate the settings; return the device of the computation."""
    check_int(config.learners, "learners", minimum=2)
    check_int(config.pairs, "pairs", minimum=2)
    if check_int(config.input_dim, "input_dim", minimum=2) < 2 * config.pairs:
        raise ValueError(f"input_dim: expected at least 2 * pairs = {2 * config.pairs} (a shared and a turn direction per pair), got {config.input_dim}")
    check_int(config.value_dim, "value_dim")
    if not 0 <= check_positive(config.overlap, "overlap", allow_zero=True) < 1:
        raise ValueError(f"overlap: expected an input cosine in [0, 1), got {config.overlap}")
    for name in ("beta", "lr"):
        check_positive(getattr(config, name), name)
    for name in ("train_noise", "test_noise"):
        check_positive(getattr(config, name), name, allow_zero=True)
    check_int(config.steps, "steps")
    check_int(config.cues_per_route, "cues_per_route")
    check_int(config.checkpoint_every, "checkpoint_every")
    check_int(config.eval_cues, "eval_cues")
    return resolve_device(config.device)


def routes(learners: int, pairs: int, dim: int, overlap: float, generator: torch.Generator) -> torch.Tensor:
    """Route inputs ``[learners, 2 * pairs, dim]``: route 2p and 2p + 1 form pair p.

    ``x = sqrt((1 + rho) / 2) c_p +- sqrt((1 - rho) / 2) d_p`` with c_p, d_p orthonormal, and
    the 2 * pairs directions of a learner orthonormal too (a QR of a Gaussian draw), so each
    route has unit norm, a pair's cosine is exactly rho and different pairs are orthogonal.

    Example:
        >>> x = routes(1, 2, 8, 0.6, torch.Generator().manual_seed(0))
        >>> round(float(x[0, 0] @ x[0, 1]), 6), abs(float(x[0, 0] @ x[0, 2])) < 1e-6
        (0.6, True)
    """
    basis = torch.linalg.qr(torch.randn(learners, dim, 2 * pairs, generator=generator)).Q  # [T, D, 2P] orthonormal columns
    shared = basis[..., 0::2].transpose(-1, -2)
    turn = basis[..., 1::2].transpose(-1, -2)
    a, b = math.sqrt((1 + overlap) / 2), math.sqrt((1 - overlap) / 2)
    x = torch.stack([a * shared + b * turn, a * shared - b * turn], dim=-2)  # [T, P, 2, D]
    return x.reshape(learners, 2 * pairs, dim)


def _pair_cos(z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Cosine of each pair ``[T, P]`` and mean cosine between routes of different pairs ``[T]``."""
    zn = z / z.norm(dim=-1, keepdim=True).clamp_min(1e-12)
    c = zn @ zn.transpose(-1, -2)
    n = z.shape[-2]
    pair = c[..., torch.arange(0, n, 2, device=z.device), torch.arange(1, n, 2, device=z.device)]
    group = torch.arange(n, device=z.device) // 2
    other = group[:, None] != group[None, :]
    return pair, c[..., other].mean(-1)


def run(config: Config, *, seed: int = 0, progress: Progress | None = None) -> Result:
    """Three learning phases for every learner, measured at every checkpoint."""
    with torch_threads(1):
        return _run(config, seed=check_int(seed, "seed", minimum=0), progress=progress or Progress())


def _run(config: Config, *, seed: int, progress: Progress) -> Result:
    dev = _check(config)
    t, p, d = config.learners, config.pairs, config.input_dim
    n = 2 * p
    progress.total(len(PHASES))
    gen = torch.Generator().manual_seed(seed)
    # Draws on the CPU from the seeded generator, then moved: the same numbers on every device.
    x = routes(t, p, d, config.overlap, gen).to(dev)
    values = torch.randn(t, n, config.value_dim, generator=gen).to(dev)
    values = values / values.norm(dim=-1, keepdim=True)
    values_at_start = values.clone()
    partner = torch.arange(n, device=dev) ^ 1
    target = torch.arange(n, device=dev).repeat(config.cues_per_route)
    eval_target = torch.arange(n, device=dev).repeat(config.eval_cues)
    eval_noise = torch.randn(t, config.eval_cues * n, d, generator=gen).to(dev)
    eval_cues = x.repeat(1, config.eval_cues, 1) + config.test_noise * eval_noise / math.sqrt(d)
    # Moved before the optimiser is built, so Adam's state lives on the same device.
    key_map = LearnedLinearMap(d, d, init="identity", batch_shape=(t,)).to(dev)
    sim = _similarity.get("cosine")
    opt = torch.optim.Adam(key_map.parameters(), lr=config.lr)
    input_pair, input_unrel = (c.cpu() for c in _pair_cos(x))

    rows, pair_rows = [], []
    step_total = 0

    def measure(phase: str, step: int) -> None:
        with torch.no_grad():
            keys = key_map(x)
            mem = SlotMemory(similarity="cosine", separation=Softmax(beta=config.beta))
            mem.write(keys, values)
            read = mem.read(key_map(eval_cues), details=True)
            # Choice between the pair's two destinations by the retrieval weights (Luce's rule).
            w_own = read.weights.gather(-1, eval_target.expand(t, -1).unsqueeze(-1))[..., 0]
            w_rival = read.weights.gather(-1, partner[eval_target].expand(t, -1).unsqueeze(-1))[..., 0]
            choice = (w_own / (w_own + w_rival)).to(torch.float64)
            correct = choice.reshape(t, config.eval_cues, p, 2).mean(dim=(1, 3))  # [T, P]
            # The whole read-out (all routes' destinations blended) nearer the own destination than the partner's.
            near = ((read.values - values[:, eval_target]).norm(dim=-1) < (read.values - values[:, partner[eval_target]]).norm(dim=-1))
            readout = near.to(torch.float64).reshape(t, config.eval_cues, p, 2).mean(dim=(1, 3))
            kpair, kunrel = _pair_cos(keys)
            vpair, _ = _pair_cos(values)
            vchange = float((values - values_at_start).abs().max())
            # One transfer each instead of a device sync per table cell (no-ops on the CPU).
            kpair, kunrel, vpair, correct, readout = kpair.cpu(), kunrel.cpu(), vpair.cpu(), correct.cpu(), readout.cpu()
        for i in range(t):
            rows.append({"phase": phase, "step": step, "global_step": step_total, "learner": i,
                         "key_pair_cos": float(kpair[i].mean()), "key_unrelated_cos": float(kunrel[i]),
                         "input_pair_cos": float(input_pair[i].mean()), "input_unrelated_cos": float(input_unrel[i]),
                         "value_pair_cos": float(vpair[i].mean()), "value_change": vchange,
                         "accuracy": float(correct[i].mean()), "readout_accuracy": float(readout[i].mean())})
            for j in range(p):
                pair_rows.append({"phase": phase, "step": step, "global_step": step_total, "learner": i, "pair": j,
                                  "key_pair_cos": float(kpair[i, j]), "input_pair_cos": float(input_pair[i, j]),
                                  "value_pair_cos": float(vpair[i, j]), "accuracy": float(correct[i, j])})

    measure(PHASES[0], 0)
    for phase in PHASES:
        integrate = phase == "integrate"
        for step in range(1, config.steps + 1):
            noise = torch.randn(t, config.cues_per_route * n, d, generator=gen).to(dev)
            cues = x.repeat(1, config.cues_per_route, 1) + config.train_noise * noise / math.sqrt(d)
            # _map skips the per-call input checks (inputs are built here), which cost more than the product.
            scores = config.beta * sim(key_map._map(cues), key_map._map(x))
            # The route choice: softmax over the two keys of the pair, i.e. a logistic of the score difference.
            own = scores.gather(-1, target.expand(t, -1).unsqueeze(-1))[..., 0]
            rival = scores.gather(-1, partner[target].expand(t, -1).unsqueeze(-1))[..., 0]
            log_p = torch.nn.functional.logsigmoid(own - rival)
            if integrate:
                log_q = torch.nn.functional.logsigmoid(rival - own)
                loss = -(0.5 * (log_p + log_q)).mean(-1)
            else:
                loss = -log_p.mean(-1)
            opt.zero_grad(set_to_none=True)
            # Summing the learners' mean losses keeps each learner's gradient its own.
            loss.sum().backward()
            opt.step()
            step_total += 1
            if step % config.checkpoint_every == 0 or step == config.steps:
                measure(phase, step)
        progress.advance()
    learning = pd.DataFrame(rows)
    pairs_table = pd.DataFrame(pair_rows)
    summary = _summary(learning)
    return Result(tables={"learning": learning, "pairs": pairs_table, "summary": summary},
                  scalars=_scalars(learning, pairs_table, config), config=asdict(config))


def _summary(learning: pd.DataFrame) -> pd.DataFrame:
    rows = []
    cols = ("key_pair_cos", "key_unrelated_cos", "value_pair_cos", "accuracy")
    for (phase, step, gstep), part in learning.groupby(["phase", "step", "global_step"], sort=False):
        row = {"phase": phase, "step": step, "global_step": gstep,
               "input_pair_cos": float(part["input_pair_cos"].mean()), "input_unrelated_cos": float(part["input_unrelated_cos"].mean())}
        for col in cols:
            row[col], row[f"{col}_lo"], row[f"{col}_hi"] = mean_ci(part[col])
        diff = part["key_pair_cos"] - part["key_unrelated_cos"]
        row["reversal"], row["reversal_lo"], row["reversal_hi"] = mean_ci(diff)
        rows.append(row)
    return pd.DataFrame(rows)


def _phase_end(learning: pd.DataFrame, phase: str) -> pd.DataFrame:
    part = learning[learning["phase"] == phase]
    return part[part["step"] == part["step"].max()]


def _scalars(learning: pd.DataFrame, pairs_table: pd.DataFrame, config: Config) -> dict[str, Any]:
    out: dict[str, Any] = {}
    start = learning[(learning["phase"] == PHASES[0]) & (learning["step"] == 0)]
    out["input_pair_cos"] = round(float(start["input_pair_cos"].mean()), 4)
    out["input_unrelated_cos"] = round(float(start["input_unrelated_cos"].mean()), 4)
    out["accuracy/start"] = round(float(start["accuracy"].mean()), 4)
    out["key_pair_cos/start"] = round(float(start["key_pair_cos"].mean()), 4)
    for phase in PHASES:
        end = _phase_end(learning, phase)
        for col in ("key_pair_cos", "key_unrelated_cos", "accuracy", "value_pair_cos"):
            out[f"{col}/{phase}"] = round(float(end[col].mean()), 4)
        m, lo, hi = mean_ci(end["key_pair_cos"] - end["key_unrelated_cos"])
        out[f"reversal/{phase}"], out[f"reversal_ci_hi/{phase}"] = round(m, 4), round(hi, 4)
    # Repulsion (drop of the pair's key cosine below its input cosine) against discrimination
    # accuracy, over the checkpoints of the first learning phase: learner means per checkpoint.
    learn = learning[learning["phase"] == PHASES[0]]
    rep = (learn["input_pair_cos"] - learn["key_pair_cos"]).to_numpy()
    out["spearman_repulsion_accuracy/learning"] = round(float(stats.spearmanr(rep, learn["accuracy"]).statistic), 4)
    end = _phase_end(learning, PHASES[0])
    out["spearman_repulsion_accuracy/across_learners_end"] = round(float(stats.spearmanr(
        end["input_pair_cos"] - end["key_pair_cos"], end["accuracy"]).statistic), 4)
    pend = pairs_table[(pairs_table["phase"] == PHASES[0]) & (pairs_table["step"] == pairs_table[pairs_table["phase"] == PHASES[0]]["step"].max())]
    out["spearman_repulsion_accuracy/across_pairs_end"] = round(float(stats.spearmanr(
        pend["input_pair_cos"] - pend["key_pair_cos"], pend["accuracy"]).statistic), 4)
    out["value_change_max"] = float(learning["value_change"].max())
    out["value_pair_cos_range"] = float(learning.groupby("learner")["value_pair_cos"].agg(lambda v: v.max() - v.min()).max())
    out["key_pair_cos_range"] = round(float(learning.groupby("global_step")["key_pair_cos"].mean().agg(lambda v: v.max() - v.min())), 4)
    return out


# -- claims -------------------------------------------------------------------------------------
def claims(result: Result) -> list[Claim]:
    """Similarity reversal, its link to discrimination, its reversal, and untouched values."""
    s = result.scalars
    p1, p2, p3 = PHASES
    out = []
    rev, rev_hi = s[f"reversal/{p1}"], s[f"reversal_ci_hi/{p1}"]
    out.append(Claim(
        "similarity_reversal",
        "end of learning: key cosine of overlapping routes minus that of unrelated routes <= -0.1, 95% CI upper bound < 0 "
        f"(inputs: {s['input_pair_cos'] - s['input_unrelated_cos']:+.2f})",
        f"{rev:+.3f} (CI upper {rev_hi:+.3f})",
        rev <= -0.1 and rev_hi < 0,
    ))
    kp, ip = s[f"key_pair_cos/{p1}"], s["input_pair_cos"]
    out.append(Claim(
        "keys_repel_beyond_input_similarity",
        "end of learning: the pair's key cosine is >= 0.3 below its input cosine",
        f"input {ip:.3f} -> keys {kp:.3f}",
        ip - kp >= 0.3,
    ))
    rho, a0, a1 = s["spearman_repulsion_accuracy/learning"], s["accuracy/start"], s[f"accuracy/{p1}"]
    out.append(Claim(
        "repulsion_tracks_discrimination",
        "over the checkpoints of learning (every learner), Spearman(repulsion, discrimination accuracy) >= 0.5, "
        "and accuracy rises by >= 0.03",
        f"Spearman {rho:.3f}; accuracy {a0:.3f} -> {a1:.3f}",
        rho >= 0.5 and a1 - a0 >= 0.03,
    ))
    k2, k3 = s[f"key_pair_cos/{p2}"], s[f"key_pair_cos/{p3}"]
    out.append(Claim(
        "repulsion_is_reversible",
        "after the integration phase the pair's key cosine is back to >= its input cosine - 0.05; discriminating again "
        "repels the keys again to >= 0.2 below the input cosine",
        f"keys {kp:.3f} -> {k2:.3f} -> {k3:.3f} (input {ip:.3f})",
        k2 >= ip - 0.05 and ip - k3 >= 0.2,
    ))
    vch, vr, kr = s["value_change_max"], s["value_pair_cos_range"], s["key_pair_cos_range"]
    out.append(Claim(
        "values_untouched",
        "stored values identical at every checkpoint (max |change| == 0) and their pair cosine constant, while the "
        "mean key cosine of the pair swings by >= 0.5",
        f"value change {vch:.1e}, value cosine range {vr:.1e}, key cosine range {kr:.3f}",
        vch == 0.0 and vr == 0.0 and kr >= 0.5,
    ))
    return out


# -- figures --------------------------------------------------------------------------------------
def plot(result: Result) -> dict[str, Any]:
    """Similarity time course over the three phases; repulsion against accuracy."""
    import matplotlib.pyplot as plt

    s = result.tables["summary"].sort_values("global_step")
    learning = result.tables["learning"]
    figs: dict[str, Any] = {}
    fig, axes = plt.subplots(1, 2, figsize=(12, 4), constrained_layout=True, gridspec_kw={"width_ratios": [2, 1]})
    ax = axes[0]
    x = s["global_step"]
    for col, label, color in (("key_pair_cos", "keys: overlapping routes", "tab:blue"),
                              ("key_unrelated_cos", "keys: unrelated routes", "tab:gray"),
                              ("value_pair_cos", "values: overlapping routes", "tab:green")):
        ax.plot(x, s[col], color=color, label=label)
        ax.fill_between(x, s[f"{col}_lo"], s[f"{col}_hi"], color=color, alpha=0.2, lw=0)
    ax.plot(x, s["input_pair_cos"], color="tab:blue", ls=":", lw=1, label="inputs: overlapping routes")
    ax.plot(x, s["input_unrelated_cos"], color="tab:gray", ls=":", lw=1, label="inputs: unrelated routes")
    ax2 = ax.twinx()
    ax2.plot(x, s["accuracy"], color="tab:orange", lw=1.2, label="discrimination accuracy")
    ax2.fill_between(x, s["accuracy_lo"], s["accuracy_hi"], color="tab:orange", alpha=0.15, lw=0)
    ax2.set_ylim(0.4, 1.02)
    ax2.set_ylabel("discrimination accuracy", color="tab:orange")
    bounds = s.groupby("phase", sort=False)["global_step"].max().tolist()
    for b in bounds[:-1]:
        ax.axvline(b, color="k", lw=0.6)
    starts = [0] + bounds[:-1]
    for name, a, b in zip(s["phase"].unique(), starts, bounds):
        ax.text((a + b) / 2, 1.04, name, ha="center", va="bottom", fontsize=8, transform=ax.get_xaxis_transform())
    ax.set_xlabel("Adam step")
    ax.set_ylabel("cosine similarity")
    ax.set_ylim(-1.02, 1.02)
    ax.legend(fontsize=7, loc="lower left")
    ax = axes[1]
    learn = learning[learning["phase"] == PHASES[0]]
    sc = ax.scatter(learn["input_pair_cos"] - learn["key_pair_cos"], learn["accuracy"], c=learn["step"], s=8, cmap="viridis")
    fig.colorbar(sc, ax=ax, label="step (learning phase)")
    ax.set_xlabel("repulsion: input cos - key cos (pair)")
    ax.set_ylabel("discrimination accuracy")
    ax.set_title(f"Spearman {result.scalars['spearman_repulsion_accuracy/learning']:.2f} (learner x checkpoint)", fontsize=9)
    figs["repulsion"] = fig
    return figs


EXPERIMENT = register(
    Experiment(
        name="repulsion",
        description="Keys learned to discriminate overlapping routes repel past unrelated ones, reversibly; values untouched.",
        config_type=Config,
        profiles={"quick": QUICK, "full": Config()},
        run=run,
        plot=plot,
        claims=claims,
    )
)
