"""Experiment ``associative-retrieval-capacity``: how many pairs a fast-weight memory holds.

The synthetic setting of Schlag, Irie & Schmidhuber (2021, Sec. 6.1): N key-to-value pairs
are presented as a sequence and written into a fast-weight matrix, which is then queried
with each key. Values are one-hot codes of N value symbols and the loss of a query is
``0.5 |v - v_hat|^2`` (0.5 is the loss of returning nothing), as in that paper.

Keys are learned, as the paper's embeddings and projections are: each of the N key symbols
owns a vector in R^d, trained by full-batch Adam on the retrieval loss of the sum rule
(exact, order-free). This finds how many pairs each feature map phi can separate, which is
what the paper's capacity curves measure. Then, with the same learned keys:

- **capacity setting** (every key once, in a random order): the sum rule (Hebbian,
  ``kvmem.ops.linear_attention`` with the attention normaliser) and the delta rule
  (``kvmem.ops.delta_rule`` with L2-normalised features and beta = 1) are read with every key;
  softmax attention (Eq. 5-6, scaled dot product) is the upper reference;
- **replace setting** (2N pairs drawn with replacement from the N keys, each with a fresh
  random value; the answer is the key's latest value): the sum rule averages old and new
  values, the delta rule overwrites them.

Feature maps (by name): ``elu+1`` (Katharopoulos et al. 2020, F = d), ``dpfpNU``
(Schlag et al. 2021, F = 2 d nu), ``favorM`` (FAVOR+ with M positive random features,
inputs scaled by d^-1/4 as for attention; Choromanski et al. 2021) and ``softmax``.

Claims checked:
- the sum-rule capacity (the largest N up to which the loss stays <= ``loss_threshold``)
  grows with DPFP's nu;
- in the replace setting the delta rule has a lower loss than the sum rule for every
  feature map and every N up to that map's capacity (beyond it, keys share features and
  overwriting one overwrites its neighbours: there the sum rule can do better);
- softmax attention bounds the fast-weight memories from above in the capacity setting.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass
from typing import Any

import pandas as pd
import torch
import torch.nn.functional as F

from .. import features
from ..ops import delta_rule, linear_attention
from .base import Claim, Experiment, Progress, Result, register, resolve_device


@dataclass(frozen=True)
class Config:
    """Settings of ``associative-retrieval-capacity``.

    Attributes:
        key_dim: d, dimension of the learned keys before the feature map (64 in the paper).
        n_pairs: numbers N of key symbols (= stored pairs) of the capacity setting.
        feature_maps: names: ``elu+1``, ``dpfpNU``, ``favorM``, ``softmax``.
        train_steps: full-batch Adam steps that learn the keys for each (map, N).
        stop_loss: training stops early once the loss is below this for every N trained together.
        lr: Adam learning rate of the keys.
        delta_orders: random write orders averaged over for the delta rule.
        replace_n_pairs: numbers N of key symbols of the replace setting (each must be in
            ``n_pairs``: it reuses those learned keys); sequences have 2N pairs.
        replace_sequences: random sequences per N in the replace setting.
        loss_threshold: a map holds N pairs while its mean loss is at most this.
        device: torch device of the computation: 'cpu', 'cuda' or 'cuda:N'; random draws
            (initial keys, write orders, replace sequences, FAVOR+ features) stay on the CPU,
            so results match across devices to rounding.
    """

    key_dim: int = 64
    n_pairs: tuple[int, ...] = (20, 40, 60, 80, 100, 120, 160, 200, 260, 300, 400, 500)
    feature_maps: tuple[str, ...] = ("elu+1", "dpfp1", "dpfp2", "dpfp3", "favor64", "favor128", "favor512", "softmax")
    train_steps: int = 200
    stop_loss: float = 1e-6
    lr: float = 0.2
    delta_orders: int = 4
    replace_n_pairs: tuple[int, ...] = (20, 40, 60, 80, 100, 120, 160, 200)
    replace_sequences: int = 32
    loss_threshold: float = 0.01
    device: str = "cpu"


QUICK = Config(key_dim=16, n_pairs=(8, 16, 24, 32, 48, 64, 96),
               feature_maps=("elu+1", "dpfp1", "dpfp2", "dpfp3", "favor32", "softmax"),
               train_steps=120, delta_orders=2, replace_n_pairs=(8, 16, 32), replace_sequences=16)


@dataclass(frozen=True)
class _Map:
    name: str
    phi: features.FeatureMap | None  # None: softmax attention
    scale: float  # applied to the keys before phi

    def feature_dim(self, d: int) -> int:
        return d if self.phi is None else self.phi.out_dim(d)

    def __call__(self, keys: torch.Tensor) -> torch.Tensor:
        return self.phi(keys * self.scale)


def parse_map(name: str, key_dim: int, seed: int = 0) -> _Map:
    """A feature-map name of the config as a callable (raises ``ValueError`` for unknown names)."""
    if name == "softmax":
        return _Map(name, None, key_dim**-0.5)
    if name == "elu+1":
        return _Map(name, features.get("elu_plus_one"), 1.0)
    m = re.fullmatch(r"dpfp(\d+)", name)
    if m and int(m.group(1)) >= 1:
        return _Map(name, features.get({"name": "dpfp", "nu": int(m.group(1))}), 1.0)
    m = re.fullmatch(r"favor(\d+)", name)
    if m and int(m.group(1)) >= 1:
        # Performer scales inputs by d^-1/4 so that phi(q) . phi(k) estimates exp(q . k / sqrt(d)).
        return _Map(name, features.get({"name": "favor", "num_features": int(m.group(1)), "seed": seed}),
                    key_dim**-0.25)
    raise ValueError(f"feature_maps: unknown name {name!r}; expected 'elu+1', 'dpfpNU', 'favorM' or 'softmax'")


# -- the retrieval losses ---------------------------------------------------------------------------
def _weights(keys: torch.Tensor, fmap: _Map, mask: torch.Tensor | None = None) -> torch.Tensor:
    """Retrieval weights of every stored pair for every query (queries are the keys): [..., N, N].

    Sum rule with the normaliser: w_qj = phi(k_q) . phi(k_j) / sum_l phi(k_q) . phi(k_l);
    softmax: w_q = softmax(k_q K^T / sqrt(d)). With one-hot values, v_hat_q = w_q.
    ``mask [..., N]`` marks the real keys of a padded batch; the others are never read.
    """
    if fmap.phi is None:
        scores = keys @ keys.transpose(-1, -2) * fmap.scale
        if mask is not None:
            scores = scores.masked_fill(~mask.unsqueeze(-2), float("-inf"))
        return torch.softmax(scores, dim=-1)
    f = fmap(keys)
    gram = f @ f.transpose(-1, -2)
    if mask is not None:
        gram = gram * mask.unsqueeze(-2)
    return gram / gram.sum(-1, keepdim=True).clamp_min(1e-6)


def _loss_and_accuracy(v_hat: torch.Tensor, target: torch.Tensor, mask: torch.Tensor | None = None):
    """Mean ``0.5 |onehot - v_hat|^2`` and argmax accuracy over the queries (``mask``: which count)."""
    onehot = F.one_hot(target, v_hat.shape[-1]).to(v_hat.dtype)
    loss = 0.5 * ((onehot - v_hat) ** 2).sum(-1)
    hit = (v_hat.argmax(-1) == target).to(v_hat.dtype)
    if mask is None:
        return float(loss.mean()), float(hit.mean())
    m = mask.to(v_hat.dtype)
    return float((loss * m).sum() / m.sum()), float((hit * m).sum() / m.sum())


def learn_keys(ns: list[int], fmap: _Map, config: Config, gens: list[torch.Generator]) -> list[torch.Tensor]:
    """Keys [N, d] for each N of ``ns``, trained by full-batch Adam on the sum-rule (or softmax) loss.

    The problems are independent; they are padded to the largest N and trained as one batch
    (Adam acts coordinate by coordinate and padded keys get no gradient), which saves
    Python-level steps where N is small. Each N draws its start from its own generator
    (on the CPU); training runs on ``config.device``.
    """
    dev = resolve_device(config.device)
    n_max = max(ns)
    start = torch.zeros(len(ns), n_max, config.key_dim)
    mask = torch.zeros(len(ns), n_max, dtype=torch.bool)
    for i, (n, gen) in enumerate(zip(ns, gens)):
        start[i, :n] = torch.randn(n, config.key_dim, generator=gen)
        mask[i, :n] = True
    start, mask = start.to(dev), mask.to(dev)
    keys = start.requires_grad_()
    opt = torch.optim.Adam([keys], lr=config.lr)
    eye = torch.eye(n_max, device=dev)
    sizes = torch.tensor(ns, dtype=start.dtype, device=dev)
    for step in range(config.train_steps):
        per_query = 0.5 * ((eye - _weights(keys, fmap, mask)) ** 2).sum(-1) * mask
        losses = per_query.sum(-1) / sizes
        # Stop once every problem is solved: further steps only sharpen the weights until
        # they underflow (the paper's training also stops at a loss criterion).
        if step % 10 == 0 and bool((losses < config.stop_loss).all()):
            break
        loss = losses.sum()  # the sum of each problem's mean loss
        opt.zero_grad()
        loss.backward()
        opt.step()
    return [keys.detach()[i, :n].clone() for i, n in enumerate(ns)]


def _groups(ns: tuple[int, ...], waste: float = 2.5, largest: int = 128) -> list[list[int]]:
    """Consecutive sizes batched together while padding costs at most ``waste`` times the work.

    Only sizes up to ``largest`` are batched: above it each step's products are big enough
    that the per-step overhead no longer matters and padding would only add work.
    """
    groups: list[list[int]] = []
    for n in sorted(ns):
        if groups and n <= largest:
            cand = groups[-1] + [n]
            if len(cand) * n**2 <= waste * sum(m**2 for m in cand):
                groups[-1] = cand
                continue
        groups.append([n])
    return groups


def _l2(f: torch.Tensor) -> torch.Tensor:
    return f / f.norm(dim=-1, keepdim=True).clamp_min(1e-12)


def capacity_rows(keys: torch.Tensor, fmap: _Map, config: Config, gen: torch.Generator) -> list[dict[str, Any]]:
    """Capacity setting: every key once. Sum rule and delta rule (or softmax) read with every key.

    Computes on the device of ``keys``; the write orders are drawn from ``gen`` on the CPU.
    """
    n = keys.shape[0]
    idx = torch.arange(n, device=keys.device)
    rows = []
    if fmap.phi is None:
        loss, acc = _loss_and_accuracy(_weights(keys, fmap), idx)
        return [{"rule": "softmax", "loss": loss, "accuracy": acc}]
    f = fmap(keys)
    orders = torch.stack([torch.randperm(n, generator=gen) for _ in range(config.delta_orders)]).to(keys.device)  # [O, N]
    values = F.one_hot(orders, n).to(f.dtype)  # the value of key j is the one-hot code of j
    with torch.no_grad():
        # Sum rule through the op (the order does not matter): read phi(k) M / phi(k) . z.
        fo = f[orders]
        _, state = linear_attention(fo, fo, values, normalize=True)
        read = f @ state  # [O, N, N + 1]
        v_hat = read[..., :n] / read[..., n:].clamp_min(1e-6)
        loss, acc = _loss_and_accuracy(v_hat, idx.expand(len(orders), n))
        rows.append({"rule": "sum", "loss": loss, "accuracy": acc})
        # Delta rule: unit features and beta = 1 make each write replace the value of its key.
        fu = _l2(f)
        _, state = delta_rule(fu[orders], fu[orders], values, 1.0)
        loss, acc = _loss_and_accuracy(fu @ state, idx.expand(len(orders), n))
        rows.append({"rule": "delta", "loss": loss, "accuracy": acc})
    return rows


def make_replace_sequences(n: int, count: int, gen: torch.Generator):
    """``count`` sequences of 2N (key, value) symbols drawn with replacement from N keys and N values.

    Returns keys, values ``[count, 2N]``, the latest value of every key ``[count, N]`` and
    whether the key occurs at all ``[count, N]``.
    """
    keys = torch.randint(n, (count, 2 * n), generator=gen)
    values = torch.randint(n, (count, 2 * n), generator=gen)
    latest = torch.zeros(count, n, dtype=torch.long)
    present = torch.zeros(count, n, dtype=torch.bool)
    rows = torch.arange(count)[:, None].expand_as(keys)
    # Writing in time order leaves the latest value of each key in place.
    for t in range(2 * n):
        latest[rows[:, t], keys[:, t]] = values[:, t]
    present[rows.flatten(), keys.flatten()] = True
    return keys, values, latest, present


def replace_rows(keys: torch.Tensor, fmap: _Map, seqs) -> list[dict[str, Any]]:
    """Replace setting: read every key after the 2N writes; the target is its latest value.

    Computes on the device of ``keys`` (the sequences are moved there).
    """
    k_idx, v_idx, latest, present = (t.to(keys.device) for t in seqs)
    n = keys.shape[0]
    values = F.one_hot(v_idx, n).to(keys.dtype)  # [S, 2N, N]
    rows = []
    with torch.no_grad():
        if fmap.phi is None:
            scores = keys @ keys[k_idx].transpose(-1, -2) * fmap.scale  # [S, N, 2N]
            v_hat = torch.softmax(scores, dim=-1) @ values
            loss, acc = _loss_and_accuracy(v_hat, latest, present)
            return [{"rule": "softmax", "loss": loss, "accuracy": acc}]
        f = fmap(keys)
        _, state = linear_attention(f[k_idx], f[k_idx], values, normalize=True)
        read = f @ state
        loss, acc = _loss_and_accuracy(read[..., :n] / read[..., n:].clamp_min(1e-6), latest, present)
        rows.append({"rule": "sum", "loss": loss, "accuracy": acc})
        fu = _l2(f)
        _, state = delta_rule(fu[k_idx], fu[k_idx], values, 1.0)
        loss, acc = _loss_and_accuracy(fu @ state, latest, present)
        rows.append({"rule": "delta", "loss": loss, "accuracy": acc})
    return rows


def _capacity(part: pd.DataFrame, threshold: float) -> int:
    """Largest N such that the loss is <= threshold at N and at every smaller N of the sweep (0 if none)."""
    cap = 0
    for n, loss in zip(part["n_pairs"], part["loss"]):
        if loss > threshold:
            break
        cap = int(n)
    return cap


def run(config: Config, *, seed: int = 0, progress: Progress | None = None) -> Result:
    """Learn keys for every (map, N); evaluate both settings with the ops.

    Float32 subnormals are flushed to zero while it runs (and the default, off, is restored
    after): the exponentials of FAVOR+ and the Adam moments otherwise produce subnormal
    numbers that make the CPU up to ten times slower, for a change below 1e-38.
    """
    supported = torch.set_flush_denormal(True)
    try:
        return _run(config, seed, progress or Progress())
    finally:
        if supported:
            torch.set_flush_denormal(False)


def _run(config: Config, seed: int, progress: Progress) -> Result:
    missing = [n for n in config.replace_n_pairs if n not in config.n_pairs]
    if missing:
        raise ValueError(f"replace_n_pairs: {missing} are not in n_pairs (the replace setting reuses those keys)")
    resolve_device(config.device)
    maps = [parse_map(name, config.key_dim, seed) for name in config.feature_maps]
    progress.total(len(maps) * len(config.n_pairs))
    # The replace sequences are shared by every map, so the maps face the same data.
    seq_gen = torch.Generator().manual_seed(seed + 1)
    sequences = {n: make_replace_sequences(n, config.replace_sequences, seq_gen) for n in config.replace_n_pairs}
    cap_rows, rep_rows = [], []
    for j, fmap in enumerate(maps):
        for ns in _groups(config.n_pairs):
            gens = [torch.Generator().manual_seed(seed * 1_000_003 + 7919 * j + n) for n in ns]
            for n, gen, keys in zip(ns, gens, learn_keys(ns, fmap, config, gens)):
                base = {"feature_map": fmap.name, "feature_dim": fmap.feature_dim(config.key_dim), "n_pairs": n}
                cap_rows += [{**base, **row} for row in capacity_rows(keys, fmap, config, gen)]
                if n in sequences:
                    rep_rows += [{**base, **row} for row in replace_rows(keys, fmap, sequences[n])]
                progress.advance()
    capacity = pd.DataFrame(cap_rows)
    replace = pd.DataFrame(rep_rows)
    summary = []
    for (name, rule), part in capacity.groupby(["feature_map", "rule"], sort=False):
        summary.append({"feature_map": name, "rule": rule, "feature_dim": int(part["feature_dim"].iloc[0]),
                        "capacity": _capacity(part.sort_values("n_pairs"), config.loss_threshold)})
    scalars = {"key_dim": config.key_dim, "loss_threshold": config.loss_threshold}
    return Result(tables={"capacity": capacity, "replace": replace, "summary": pd.DataFrame(summary)},
                  scalars=scalars, config=asdict(config))


def plot(result: Result) -> dict[str, Any]:
    """Loss vs N in the capacity setting (sum and delta rule) and in the replace setting."""
    import matplotlib.pyplot as plt

    cap, rep = result.tables["capacity"], result.tables["replace"]
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.2), constrained_layout=True, sharey=True)
    panels = ((axes[0], cap, ("sum", "softmax"), "capacity setting, sum rule"),
              (axes[1], cap, ("delta", "softmax"), "capacity setting, delta rule"),
              (axes[2], rep, ("sum", "delta", "softmax"), "replace setting"))
    for ax, table, rules, title in panels:
        for (name, rule), part in table[table["rule"].isin(rules)].groupby(["feature_map", "rule"], sort=False):
            style = {"sum": "-", "delta": "--", "softmax": ":"}[rule]
            label = name if len(rules) == 2 else f"{name} ({rule})"
            ax.plot(part["n_pairs"], part["loss"], style, marker="o", ms=3, label=label)
        ax.set_title(title)
        ax.set_xlabel("key symbols N")
        ax.axhline(result.scalars["loss_threshold"], color="grey", lw=0.7, ls=":")
        ax.legend(fontsize=7)
    axes[0].set_ylabel("retrieval loss 0.5 |v - v_hat|^2")
    return {"capacity": fig}


def claims(result: Result) -> list[Claim]:
    """Capacity grows with DPFP's nu; delta beats sum when keys recur; softmax bounds from above."""
    cap, rep, summary = result.tables["capacity"], result.tables["replace"], result.tables["summary"]
    out = []

    sums = summary[summary["rule"] == "sum"].set_index("feature_map")["capacity"]
    nus = [f"dpfp{nu}" for nu in (1, 2, 3)]
    if all(name in sums.index for name in nus):
        c = [int(sums[name]) for name in nus]
        ok = c[0] <= c[1] <= c[2] and c[2] > c[0]
        measured = ", ".join(f"nu={nu}: N={v}" for nu, v in zip((1, 2, 3), c))
    else:
        ok, measured = False, "dpfp1, dpfp2 and dpfp3 are not all in feature_maps"
    out.append(Claim("capacity_grows_with_dpfp_nu",
                     f"sum-rule capacity (largest N with loss <= {result.scalars['loss_threshold']}) "
                     "non-decreasing in nu = 1, 2, 3 and larger at nu = 3 than at nu = 1", measured, ok))

    # The replace setting tests the write rule, so it is judged where the keys fit: N up to
    # the map's sum-rule capacity. Beyond it keys share features and no rule can keep them apart.
    fits = rep.merge(summary[summary["rule"] == "sum"][["feature_map", "capacity"]], on="feature_map")
    fits = fits[fits["n_pairs"] <= fits["capacity"]]
    pivot = fits[fits["rule"].isin(["sum", "delta"])].pivot_table(index=["feature_map", "n_pairs"], columns="rule",
                                                                   values=["loss", "accuracy"])
    if len(pivot):
        gap = pivot[("loss", "sum")] - pivot[("loss", "delta")]
        worst = gap.idxmin()
        ok = bool((gap > 0).all())
        measured = (f"{len(gap)} (map, N) cases; smallest loss gap sum - delta {float(gap.min()):+.3f} ({worst[0]}, "
                    f"N={worst[1]}); mean accuracy delta {float(pivot[('accuracy', 'delta')].mean()):.3f} vs sum "
                    f"{float(pivot[('accuracy', 'sum')].mean()):.3f}")
    else:
        ok, measured = False, "no fast-weight map has a replace-setting N within its capacity"
    out.append(Claim("delta_beats_sum_when_keys_recur",
                     "replace setting: delta-rule loss < sum-rule loss for every feature map and every N up to "
                     "the map's sum-rule capacity", measured, ok))

    soft = cap[cap["rule"] == "softmax"].set_index("n_pairs")
    fast = cap[cap["rule"] != "softmax"]
    if len(soft) and len(fast):
        best = fast.groupby("n_pairs").agg(loss=("loss", "min"), accuracy=("accuracy", "max"))
        both = best.join(soft[["loss", "accuracy"]].add_suffix("_softmax"), how="inner")
        margin = both["loss"] - both["loss_softmax"]
        ok = bool((margin >= -1e-3).all() and (both["accuracy_softmax"] >= both["accuracy"] - 1e-9).all())
        measured = (f"softmax loss - best fast-weight loss: max {float(-margin.min()):+.2e}; softmax loss at most "
                    f"{float(both['loss_softmax'].max()):.3g}, smallest accuracy "
                    f"{float(both['accuracy_softmax'].min()):.3f}")
    else:
        ok, measured = False, "softmax or fast-weight maps missing"
    out.append(Claim("softmax_bounds_fast_weights",
                     "capacity setting: softmax loss <= the best fast-weight loss + 1e-3 and accuracy >= the best, "
                     "at every N", measured, ok))
    return out


EXPERIMENT = register(
    Experiment(
        name="associative-retrieval-capacity",
        description="Schlag et al. 2021 synthetic retrieval: loss vs stored pairs for feature maps x {sum, delta}, "
                    "and the replace setting.",
        config_type=Config,
        profiles={"quick": QUICK, "full": Config()},
        run=run,
        plot=plot,
        claims=claims,
    )
)
