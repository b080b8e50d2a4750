"""Experiment ``tem-grid-world``: a TEM-style key-value memory walking a 2-D grid world.

An agent does a random walk until it has visited every place of a small grid world (walk
1), then walks on along an independently drawn second random walk (walk 2). Each place
shows a fixed random observation out of ``n_obs`` categories, so observations repeat. At
every step the memory predicts the observation *before* storing it (causal attention):

- ``tem``: keys and queries are the position code g_t = W_{a_{t-1}} g_{t-1} (plane-wave
  code, 2-D rotation blocks, exact path integration; :class:`kvmem.bio.tem.GridCode`),
  values the one-hot observations (Whittington, Warren & Behrens 2022; Whittington et al.
  2020);
- ``tem-onehot``: the same with a one-hot place code and permutation matrices;
- ``random-keys``: a fresh random key per step (no place information);
- ``sensory-keys``: the key is onehot(previous observation, action) (senses and own move
  only, no path integration).

Claims checked:
1. after one visit, observations at revisited places are predicted (accuracy >= 0.99),
   first visits stay at chance (1 / n_obs within a binomial band);
2. the same along new paths: walk-2 steps that reach a known place by a transition never
   taken before are predicted (>= 0.99);
3. memory slots (the softmax "memory neurons") are place cells: the spatial information
   of their rate maps (attention weight vs the agent's position, over walk 2) exceeds a
   circular-shift shuffle;
4. without path integration it fails: random keys stay near the base rate, sensory keys
   alias on revisits and fail on new paths, and random-key slots are not spatially tuned.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import pandas as pd
import torch

from ..bio.tem import GridWorld, TEMMemory, peak_concentration, rate_maps, shuffled_information
from .base import Claim, Experiment, Progress, Result, register, resolve_device, torch_threads

#: model name -> TEMMemory keyword arguments.
MODELS: dict[str, dict[str, Any]] = {
    "tem": {"keys": "position", "code_kind": "plane_wave"},
    "tem-onehot": {"keys": "position", "code_kind": "onehot"},
    "random-keys": {"keys": "random"},
    "sensory-keys": {"keys": "sensory"},
}
WORLDS = ("periodic", "bounded")
CATEGORIES = ("first", "revisit", "known", "new_path", "known_edge")
DTYPES = {"float32": torch.float32, "float64": torch.float64}


@dataclass(frozen=True)
class Config:
    """Settings of ``tem-grid-world``.

    Attributes:
        height, width: grid size.
        n_obs: observation categories (fewer than places: observations repeat).
        worlds: ``"periodic"`` (torus) and/or ``"bounded"`` (walled arena).
        n_modules: plane-wave modules of the ``tem`` code (key dimension 2 * n_modules).
        beta: softmax inverse temperature on unit-norm keys, every model.
        second_walk: steps of walk 2.
        trials: independent (world, walks, code) draws per world.
        n_shuffles: circular shifts per slot for the shuffled spatial information.
        min_shift: smallest shift (steps) of the shuffle.
        max_visit: visit numbers above this are pooled in the accuracy-vs-visit table.
        max_cover_steps: walk 1 must cover the world within this many steps.
        tuning_models: models whose slots get rate maps and the shuffle test.
        example_slots: rate maps kept (trial 0 of each world) for the figure.
        dtype: ``"float32"`` or ``"float64"``.
        device: torch device of every tensor (``"cpu"``, ``"cuda"``, ...).
    """

    height: int = 8
    width: int = 8
    n_obs: int = 16
    worlds: tuple[str, ...] = WORLDS
    n_modules: int = 16
    beta: float = 50.0
    second_walk: int = 500
    trials: int = 16
    n_shuffles: int = 50
    min_shift: int = 20
    max_visit: int = 6
    max_cover_steps: int = 50_000
    tuning_models: tuple[str, ...] = ("tem", "random-keys", "sensory-keys")
    example_slots: int = 8
    dtype: str = "float32"
    device: str = "cpu"


QUICK = Config(worlds=("periodic",), trials=4, second_walk=300, n_shuffles=20)


def _check(config: Config) -> None:
    resolve_device(config.device)
    bad = [w for w in config.worlds if w not in WORLDS]
    if bad or not config.worlds:
        raise ValueError(f"worlds: expected a non-empty subset of {WORLDS}, got {config.worlds}")
    bad = [m for m in config.tuning_models if m not in MODELS]
    if bad:
        raise ValueError(f"tuning_models: expected names from {tuple(MODELS)}, got {bad}")
    if config.dtype not in DTYPES:
        raise ValueError(f"dtype: expected one of {tuple(DTYPES)}, got {config.dtype!r}")
    if config.trials < 1 or config.second_walk < 2 * config.min_shift + 1:
        raise ValueError(
            f"trials, second_walk: expected trials >= 1 and second_walk > 2 * min_shift "
            f"({2 * config.min_shift}), got {config.trials} and {config.second_walk}"
        )


def _trial(config: Config, world_kind: str, trial: int, seeds: np.ndarray, rng: np.random.Generator):
    """One world, two walks, every model: rows of the summary, visit, tuning and example tables."""
    dtype = DTYPES[config.dtype]
    world = GridWorld(config.height, config.width, config.n_obs, periodic=world_kind == "periodic",
                      seed=int(seeds[0]), device=config.device)
    walk1 = world.walk_until_covered(seed=int(seeds[1]), max_steps=config.max_cover_steps)
    walk2 = world.random_walk(config.second_walk, start=int(walk1.places[-1]), seed=int(seeds[2]))
    walk = walk1.then(walk2)
    t1 = walk1.steps
    steps = torch.arange(walk.steps + 1)
    visits = walk.visit_numbers().cpu()
    novel = walk.novel_transitions().cpu()
    in2 = steps > t1
    masks = {
        "first": (visits == 0) & (steps > 0),
        "revisit": (visits > 0) & ~in2,
        "known": (visits > 0) & in2,
        "new_path": (visits > 0) & in2 & novel,
        "known_edge": (visits > 0) & in2 & ~novel,
    }
    key = {"world": world_kind, "trial": trial}
    summary, by_visit, tuning, examples, slots = [], [], [], [], []
    gap = None
    places2 = walk.places[t1 + 1:]
    shifts = rng.integers(config.min_shift, walk2.steps + 1 - config.min_shift, size=config.n_shuffles)
    for name, kwargs in MODELS.items():
        model = TEMMemory(world, n_modules=config.n_modules, beta=config.beta, seed=int(seeds[3]),
                          dtype=dtype, device=config.device, **kwargs)
        if name == "tem":
            gap = model.code.aliasing_gap
        pred = model.predict(walk)
        correct = pred.correct.cpu()
        for cat, mask in masks.items():
            n = int(mask.sum())
            summary.append({**key, "model": name, "category": cat, "n": n, "correct": int(correct[mask].sum()),
                            "accuracy": float(correct[mask].float().mean()) if n else math.nan})
        capped = visits.clamp(max=config.max_visit)
        for walk_id, wmask in ((1, ~in2 & (steps > 0)), (2, in2)):
            for v in range(config.max_visit + 1):
                mask = wmask & (capped == v)
                n = int(mask.sum())
                if n:
                    by_visit.append({**key, "model": name, "walk": walk_id, "visit": v, "n": n,
                                     "accuracy": float(correct[mask].float().mean())})
        if name not in config.tuning_models:
            continue
        # Memory neurons: the walk-1 slots; their activity is the attention walk-2 queries pay them.
        act = pred.weights[t1 + 1:, : t1 + 1]
        info = shuffled_information(act, places2, world.n_places, [0])[0].cpu()
        shuffled = shuffled_information(act, places2, world.n_places, shifts).cpu()
        maps, _ = rate_maps(act, places2, world.n_places)
        peak = peak_concentration(maps).cpu()
        maps_sh, _ = rate_maps(act, torch.roll(places2, int(shifts[0])), world.n_places)
        peak_sh = peak_concentration(maps_sh).cpu()
        live = ~torch.isnan(info)
        p95 = torch.nanquantile(shuffled, 0.95, dim=0)
        sig = (info > p95)[live]
        pooled = shuffled[:, live].flatten()
        pooled = pooled[~torch.isnan(pooled)]
        tuning.append({
            **key, "model": name, "slots": int(live.sum()),
            "si_median": float(info[live].median()), "si_mean": float(info[live].mean()),
            "shuffle_median": float(pooled.median()), "shuffle_p95": float(torch.quantile(pooled, 0.95)),
            "shuffle_p99": float(torch.quantile(pooled, 0.99)),
            "frac_significant": float(sig.float().mean()),
            "peak_median": float(peak[live].median()), "peak_shuffled_median": float(peak_sh[live].median()),
        })
        if trial == 0:
            slot_place = walk.places[: t1 + 1].cpu()
            for j in torch.nonzero(live).flatten().tolist():
                slots.append({**key, "model": name, "slot": j, "place": int(slot_place[j]),
                              "si": float(info[j]), "shuffle_p95": float(p95[j]), "peak": float(peak[j])})
            chosen = np.linspace(1, t1, config.example_slots).round().astype(int)
            maps_cpu = maps.cpu()
            for j in chosen.tolist():
                for place in range(world.n_places):
                    r, c = divmod(place, world.width)
                    examples.append({**key, "model": name, "slot": j, "slot_place": int(slot_place[j]),
                                     "row": r, "col": c, "rate": float(maps_cpu[j, place])})
    cover = {**key, "walk1_steps": t1, "walk2_steps": walk2.steps, "new_path_steps": int(masks["new_path"].sum()),
             "aliasing_gap": gap}
    return summary, by_visit, tuning, examples, slots, cover


def run(config: Config, *, seed: int = 0, progress: Progress | None = None) -> Result:
    """Every world x trial: build the world, walk it twice, run every model and measure."""
    _check(config)
    progress = progress or Progress()
    progress.total(len(config.worlds) * config.trials)
    root = np.random.default_rng(seed)
    seeds = root.integers(0, 2**31 - 1, size=(len(config.worlds), config.trials, 4))
    tables: dict[str, list] = {k: [] for k in ("summary", "by_visit", "tuning", "examples", "slots", "coverage")}
    with torch_threads(1):
        for w, kind in enumerate(config.worlds):
            for trial in range(config.trials):
                rng = np.random.default_rng(seeds[w, trial, 0] + 7919)
                out = _trial(config, kind, trial, seeds[w, trial], rng)
                for name, rows in zip(("summary", "by_visit", "tuning", "examples", "slots"), out[:5]):
                    tables[name].extend(rows)
                tables["coverage"].append(out[5])
                progress.advance()
    result_tables = {k: pd.DataFrame(v) for k, v in tables.items()}
    scalars = {"chance": 1.0 / config.n_obs, "places": config.height * config.width, "n_obs": config.n_obs}
    return Result(tables=result_tables, scalars=scalars, config=asdict(config))


# --------------------------------------------------------------------------------------
# Aggregation, claims and figures
# --------------------------------------------------------------------------------------
def _pooled(summary: pd.DataFrame, world: str, model: str, category: str) -> tuple[float, int]:
    part = summary[(summary["world"] == world) & (summary["model"] == model) & (summary["category"] == category)]
    n = int(part["n"].sum())
    return (float(part["correct"].sum()) / n if n else math.nan), n


def claims(result: Result) -> list[Claim]:
    """The four claims of the issue, each required in every world of the run."""
    s = result.tables["summary"]
    tun = result.tables["tuning"]
    chance = result.scalars["chance"]
    trials = result.config["trials"]
    worlds = list(dict.fromkeys(s["world"]))
    out: list[Claim] = []

    parts, ok = [], True
    for w in worlds:
        for m in ("tem", "tem-onehot"):
            acc, n = _pooled(s, w, m, "revisit")
            ok &= n > 0 and acc >= 0.99
            parts.append(f"{w}/{m} {acc:.4f} (n={n})")
    out.append(Claim("revisits_predicted_after_one_visit",
                     "tem and tem-onehot accuracy >= 0.99 on walk-1 revisits (pooled over trials), every world",
                     "; ".join(parts), bool(ok)))

    parts, ok = [], True
    for w in worlds:
        acc, n = _pooled(s, w, "tem", "first")
        band = 3 * math.sqrt(chance * (1 - chance) / max(n, 1))
        ok &= n > 0 and abs(acc - chance) <= band
        parts.append(f"{w} {acc:.4f} (n={n}, chance {chance:.4f} +- {band:.4f})")
    out.append(Claim("first_visits_at_chance",
                     "tem accuracy on first visits within 3 binomial s.e. of chance 1/n_obs (pooled), every world",
                     "; ".join(parts), bool(ok)))

    parts, ok = [], True
    for w in worlds:
        acc, n = _pooled(s, w, "tem", "new_path")
        ok &= n >= 5 * trials and acc >= 0.99
        parts.append(f"{w} {acc:.4f} (n={n})")
    out.append(Claim("new_paths_through_known_places",
                     "tem accuracy >= 0.99 on walk-2 steps reaching a known place by a never-taken transition, "
                     f"with >= 5 such steps per trial ({5 * trials}), every world",
                     "; ".join(parts), bool(ok)))

    parts, ok = [], True
    for w in worlds:
        t = tun[(tun["world"] == w) & (tun["model"] == "tem")]
        med, sh = float(t["si_median"].median()), float(t["shuffle_median"].median())
        frac, peak, peak_sh = float(t["frac_significant"].min()), float(t["peak_median"].median()), float(t["peak_shuffled_median"].median())
        ok &= len(t) > 0 and frac >= 0.9 and med >= sh + 1.0 and peak >= 2 * peak_sh
        parts.append(f"{w}: significant slots >= {frac:.3f} per trial; SI median {med:.2f} bits vs shuffled {sh:.2f}; "
                     f"peak share {peak:.2f} vs shuffled {peak_sh:.2f}")
    out.append(Claim("slots_are_place_cells",
                     "tem slots (rate maps over walk 2): >= 90% of slots above their own shuffled 95th percentile "
                     "(5% expected without tuning) in every trial, median spatial information >= 1 bit above the "
                     "shuffled median, and median peak share >= 2x the shuffled one; every world",
                     "; ".join(parts), bool(ok)))

    parts, ok = [], True
    for w in worlds:
        tem_rev, _ = _pooled(s, w, "tem", "revisit")
        tem_new, _ = _pooled(s, w, "tem", "new_path")
        rnd_rev, _ = _pooled(s, w, "random-keys", "revisit")
        sen_rev, _ = _pooled(s, w, "sensory-keys", "revisit")
        sen_new, _ = _pooled(s, w, "sensory-keys", "new_path")
        t = tun[(tun["world"] == w) & (tun["model"] == "random-keys")]
        rnd_sig = float(t["frac_significant"].mean()) if len(t) else math.nan
        ok &= (rnd_rev <= chance + 0.1 and sen_rev <= tem_rev - 0.3 and sen_new <= chance + 0.15
               and (not len(t) or rnd_sig <= 0.2))
        parts.append(f"{w}: random revisits {rnd_rev:.3f}; sensory revisits {sen_rev:.3f} (tem {tem_rev:.3f}), "
                     f"new paths {sen_new:.3f} (tem {tem_new:.3f}); random slots significant {rnd_sig:.3f}")
    out.append(Claim("position_code_required",
                     f"random-keys revisit accuracy <= chance + 0.1 ({chance + 0.1:.3f}); sensory-keys revisit accuracy "
                     f"<= tem - 0.3 (aliasing) and new-path accuracy <= chance + 0.15 ({chance + 0.15:.3f}); "
                     "<= 20% of random-key slots spatially significant; every world",
                     "; ".join(parts), bool(ok)))
    return out


def _band(values: np.ndarray) -> tuple[float, float]:
    """Mean and half-width of the 95% t confidence interval over trials."""
    from scipy import stats

    values = values[~np.isnan(values)]
    if len(values) < 2:
        return (float(values.mean()) if len(values) else math.nan), 0.0
    half = stats.t.ppf(0.975, len(values) - 1) * values.std(ddof=1) / math.sqrt(len(values))
    return float(values.mean()), float(half)


def plot(result: Result) -> dict[str, Any]:
    """Accuracy vs visit number with 95% bands over trials; example slot rate maps; SI vs shuffle."""
    import matplotlib.pyplot as plt

    cfg = result.config
    chance = result.scalars["chance"]
    vis = result.tables["by_visit"]
    worlds = list(dict.fromkeys(vis["world"]))
    colors = {"tem": "C0", "tem-onehot": "C2", "random-keys": "C3", "sensory-keys": "C1"}
    figs: dict[str, Any] = {}

    fig, axes = plt.subplots(1, len(worlds), figsize=(5.5 * len(worlds), 4.0), squeeze=False, constrained_layout=True)
    for ax, w in zip(axes[0], worlds):
        part = vis[(vis["world"] == w) & (vis["walk"] == 1)]
        for m in MODELS:
            xs, mean, half = [], [], []
            for v in range(cfg["max_visit"] + 1):
                vals = part[(part["model"] == m) & (part["visit"] == v)]["accuracy"].to_numpy(dtype=float)
                if len(vals):
                    mu, h = _band(vals)
                    xs.append(v), mean.append(mu), half.append(h)
            xs, mean, half = np.array(xs), np.array(mean), np.array(half)
            ax.plot(xs, mean, marker="o", ms=3, color=colors[m], label=m)
            ax.fill_between(xs, mean - half, mean + half, color=colors[m], alpha=0.2)
        ax.axhline(chance, color="grey", ls=":", lw=1, label="chance")
        ax.set_xticks(range(cfg["max_visit"] + 1))
        ax.set_xticklabels([str(v) for v in range(cfg["max_visit"])] + [f"{cfg['max_visit']}+"])
        ax.set_xlabel("earlier visits to the place (walk 1)")
        ax.set_ylabel("next-observation accuracy")
        ax.set_ylim(-0.03, 1.03)
        ax.set_title(f"{w} {cfg['height']}x{cfg['width']}, {cfg['n_obs']} observations (95% CI, {cfg['trials']} trials)")
    axes[0][0].legend(fontsize=8)
    figs["accuracy_vs_visit"] = fig

    ex = result.tables["examples"]
    if len(ex):
        w0 = worlds[0]
        models = [m for m in MODELS if m in set(ex["model"])]
        slots = sorted(set(ex[(ex["world"] == w0)]["slot"]))
        cmap = plt.get_cmap("viridis").with_extremes(bad="lightgrey")  # grey: not visited in walk 2
        fig, axes = plt.subplots(len(models), len(slots), figsize=(1.6 * len(slots), 1.8 * len(models)),
                                 squeeze=False, constrained_layout=True)
        for i, m in enumerate(models):
            for j, slot in enumerate(slots):
                ax = axes[i][j]
                part = ex[(ex["world"] == w0) & (ex["model"] == m) & (ex["slot"] == slot)]
                grid = np.full((cfg["height"], cfg["width"]), np.nan)
                grid[part["row"].to_numpy(), part["col"].to_numpy()] = part["rate"].to_numpy()
                ax.imshow(np.ma.masked_invalid(grid), cmap=cmap, interpolation="nearest")
                r, c = divmod(int(part["slot_place"].iloc[0]), cfg["width"])
                ax.plot(c, r, marker="x", color="white", ms=5)
                ax.set_xticks([]), ax.set_yticks([])
                if j == 0:
                    ax.set_ylabel(m, fontsize=8)
                if i == 0:
                    ax.set_title(f"slot {slot}", fontsize=8)
        fig.suptitle(f"rate maps of memory slots (attention during walk 2; x = where the slot was written), {w0}, trial 0",
                     fontsize=9)
        figs["rate_maps"] = fig

    sl = result.tables["slots"]
    if len(sl):
        fig, axes = plt.subplots(1, len(worlds), figsize=(5.5 * len(worlds), 3.8), squeeze=False, constrained_layout=True)
        for ax, w in zip(axes[0], worlds):
            for m in MODELS:
                part = sl[(sl["world"] == w) & (sl["model"] == m)]
                if len(part):
                    ax.hist(part["si"] - part["shuffle_p95"], bins=40, alpha=0.5, color=colors[m], label=f"{m} slots")
            ax.axvline(0.0, color="k", ls="--", lw=1)
            ax.set_xlabel("spatial information - own shuffled 95th percentile (bits)")
            ax.set_ylabel("slots (trial 0)")
            ax.set_title(f"{w}: slot tuning vs circular-shift shuffle (right of 0: significant)", fontsize=9)
        axes[0][0].legend(fontsize=8)
        figs["spatial_information"] = fig
    return figs


EXPERIMENT = register(
    Experiment(
        name="tem-grid-world",
        description="TEM-style memory (path-integrated position keys, observation values, causal softmax) in a grid world.",
        config_type=Config,
        profiles={"quick": QUICK, "full": Config()},
        run=run,
        plot=plot,
        claims=claims,
    )
)
