"""Experiment ``fig2-key-value-optimization``: keys and values optimised jointly (paper Fig. 2).

The paper's "minimal key-value model" (Gershman, Fiete & Irie 2025, Figure 2; notebooks
``2classes_key_value_optimization.ipynb`` and ``3classes_key_value_optimization.ipynb`` of
kazuki-irie/kv-memory-brain). Its only parameters are N two-dimensional keys ``k_i`` and
N value logits ``v_i``. Every stored key is used as a query::

    out_j = sum_i softmax_i(k_i . k_j / sqrt(2)) * sigmoid(v_i)
    loss  = mean_{j, d} (out_j[d] - f_{c(j)}[d])^2

where ``f_c`` is the feature vector of item j's class: (1, 0) and (0, 1), and (1, 1) for a
third class. As in the notebooks, the softmax runs over the keys (index i) and the key side
``k_i`` is detached, so a key gets gradient only through its role as a query ``k_j``.

Two modes are run from the same random draws:

- ``faithful``: the notebooks' training loop, which never calls ``zero_grad`` (gradients
  accumulate over steps before Adam sees them);
- ``clean``: the same model with the gradients zeroed every step (the key side stays
  detached unless ``clean_detach_keys=False``).

Claims checked for every (classes, mode): values end near their class feature (mean MSE
<= 0.05); the model's own retrieval over the final keys reads out the class (>= 99 %);
the classes' keys end in separate quadrants (opposite quadrants for two classes); keys and
values end in different geometries (between-class centroid cosines of keys at least 0.5
below those of values).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import pandas as pd
import torch

from .._checks import as_tensor, check_int, check_positive
from .base import Claim, Experiment, Progress, Result, register, resolve_device, torch_threads

MODES = ("faithful", "clean")
"""Training modes: ``faithful`` keeps the notebooks' accumulating gradients; ``clean`` zeroes them."""

CLASS_FEATURES = ((1.0, 0.0), (0.0, 1.0), (1.0, 1.0))
"""Class feature vectors of the notebooks: class 0 (red) (1, 0), class 1 (blue/green) (0, 1), class 2 (1, 1)."""

NOTEBOOK_SEED = 42
"""The notebooks' seed; ``run(seed=s)`` draws with ``NOTEBOOK_SEED + s`` (by default), so seed 0 is the paper's run."""

KEY_DIM = 2

# Claim thresholds (stated in the claims and in docs/experiments/fig2-key-value-optimization.md).
VALUE_MSE_MAX = 0.05
READOUT_MIN = 0.99
QUADRANT_FRACTION_MIN = 0.99
COSINE_GAP_MIN = 0.5


@dataclass(frozen=True)
class Config:
    """Settings of ``fig2-key-value-optimization``.

    Attributes:
        classes: the class counts to run (each 2 or 3); one "case" per entry.
        n_pairs: N, stored key-value pairs, one per case (paper: 200 and 300).
        steps: Adam steps, one per case (paper: 5,000 and 10,000).
        lr: Adam learning rate (paper: 3e-4).
        modes: which of ``faithful`` and ``clean`` to run.
        record_every: steps between recorded snapshots of keys and values (step 0 and
            the last step are always recorded).
        base_seed: the draws use a generator seeded with ``base_seed + seed``; 42 with
            seed 0 reproduces the notebooks' draws.
        clean_detach_keys: whether the clean mode also detaches the key side (True keeps
            the model identical to the notebooks and changes only the zeroing).
        threads: torch intra-op threads while training (restored afterwards); 0 leaves
            the setting alone. One thread is fastest for these small matrices and avoids
            thread oversubscription on a busy machine; it does not change the maths.
        device: torch device of the computation: 'cpu', 'cuda' or 'cuda:N'; random draws
            stay on the CPU, so results match across devices to rounding.
    """

    classes: tuple[int, ...] = (2, 3)
    n_pairs: tuple[int, ...] = (200, 300)
    steps: tuple[int, ...] = (5000, 10000)
    lr: float = 3e-4
    modes: tuple[str, ...] = MODES
    record_every: int = 100
    base_seed: int = NOTEBOOK_SEED
    clean_detach_keys: bool = True
    threads: int = 1
    device: str = "cpu"


QUICK = Config(n_pairs=(40, 60), steps=(600, 800), lr=3e-3, record_every=20)
"""Seconds: fewer pairs and steps with a 10x learning rate so that the claims can still be checked."""


def _check_config(config: Config) -> None:
    if not isinstance(config, Config):
        raise TypeError(f"config: expected a fig2_key_value_optimization.Config, got {type(config).__name__}")
    if not config.classes:
        raise ValueError("classes: expected at least one class count (2 or 3), got ()")
    for c in config.classes:
        if isinstance(c, bool) or c not in (2, 3):
            raise ValueError(f"classes: expected entries 2 or 3, got {config.classes}")
    for name in ("n_pairs", "steps"):
        values = getattr(config, name)
        if len(values) != len(config.classes):
            raise ValueError(f"{name}: expected one entry per entry of classes ({len(config.classes)}), got {values}")
    for n in config.n_pairs:
        check_int(n, "n_pairs", minimum=2)
    for s in config.steps:
        check_int(s, "steps", minimum=1)
    check_positive(config.lr, "lr")
    if not config.modes or any(m not in MODES for m in config.modes) or len(set(config.modes)) != len(config.modes):
        raise ValueError(f"modes: expected distinct entries from {MODES}, got {config.modes}")
    check_int(config.record_every, "record_every", minimum=1)
    check_int(config.base_seed, "base_seed", minimum=0)
    if not isinstance(config.clean_detach_keys, bool):
        raise TypeError(f"clean_detach_keys: expected a bool, got {type(config.clean_detach_keys).__name__}")
    check_int(config.threads, "threads", minimum=0)
    resolve_device(config.device)


def draw_task(n_pairs: int, n_classes: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Initial keys, value logits and classes, drawn in the notebooks' order.

    The notebooks call ``torch.randn([N, 2]).uniform_(0, 1)`` (the normal draw is
    overwritten but still advances the generator), then ``torch.rand([N, 2])`` and
    ``torch.randint(0, C, [N])``. A fresh ``torch.Generator`` seeded with 42 gives the same
    numbers as the notebooks' ``torch.manual_seed(42)`` without touching the global RNG.

    Args:
        n_pairs: N, the number of key-value pairs.
        n_classes: C, 2 or 3.
        generator: the CPU generator to draw from (advanced in place).

    Returns:
        ``(keys, value_logits, classes)``.

    Shapes:
        keys: (N, 2), Uniform[0, 1); value_logits: (N, 2), Uniform[0, 1) (pre-sigmoid);
        classes: (N,), int64 in [0, C).

    Example:
        >>> keys, values, classes = draw_task(5, 2, torch.Generator().manual_seed(42))
        >>> keys.shape, values.shape, classes.shape
        (torch.Size([5, 2]), torch.Size([5, 2]), torch.Size([5]))
    """
    n_pairs = check_int(n_pairs, "n_pairs", minimum=1)
    if isinstance(n_classes, bool) or n_classes not in (2, 3):
        raise ValueError(f"n_classes: expected 2 or 3, got {n_classes!r}")
    if not isinstance(generator, torch.Generator):
        raise TypeError(f"generator: expected a torch.Generator, got {type(generator).__name__}")
    keys = torch.randn([n_pairs, KEY_DIM], generator=generator).uniform_(0, 1, generator=generator)
    values = torch.rand([n_pairs, KEY_DIM], generator=generator)
    classes = torch.randint(0, n_classes, [n_pairs], generator=generator)
    return keys, values, classes


def class_targets(classes: torch.Tensor, n_classes: int, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """The class feature vector of every item.

    Args:
        classes: integer class of each item, in [0, n_classes).
        n_classes: C, 2 or 3.
        dtype: floating dtype of the result.

    Shapes:
        classes: (N,) -> (N, 2).

    Example:
        >>> class_targets(torch.tensor([0, 1, 2]), 3)
        tensor([[1., 0.],
                [0., 1.],
                [1., 1.]])
    """
    if isinstance(n_classes, bool) or n_classes not in (2, 3):
        raise ValueError(f"n_classes: expected 2 or 3, got {n_classes!r}")
    if not isinstance(classes, torch.Tensor) or classes.dtype not in (torch.int64, torch.int32) or classes.dim() != 1:
        raise TypeError("classes: expected a 1-D integer torch.Tensor")
    if classes.numel() and (int(classes.min()) < 0 or int(classes.max()) >= n_classes):
        raise ValueError(f"classes: expected entries in [0, {n_classes}), got range [{int(classes.min())}, {int(classes.max())}]")
    return torch.tensor(CLASS_FEATURES[:n_classes], dtype=dtype)[classes]


def kv_readout(keys: torch.Tensor, value_logits: torch.Tensor, *, detach_keys: bool = True) -> torch.Tensor:
    """Each stored key queries the memory: ``out_j = sum_i softmax_i(k_i . k_j / sqrt(D)) sigmoid(v_i)``.

    The softmax normalises over the stored keys i for each query j (the notebooks'
    ``softmax(dim=0)``) and includes the self-match i = j.

    Args:
        keys: the stored keys, also used as the queries.
        value_logits: pre-sigmoid values.
        detach_keys: detach the key side ``k_i`` (the notebooks do), so gradient reaches a
            key only through its role as a query.

    Shapes:
        keys: (N, D); value_logits: (N, Dv) -> (N, Dv).

    Example:
        >>> k = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
        >>> out = kv_readout(k, torch.zeros(2, 2))
        >>> torch.allclose(out, torch.full((2, 2), 0.5))
        True
    """
    if not isinstance(keys, torch.Tensor) or not isinstance(value_logits, torch.Tensor):
        raise TypeError("keys, value_logits: expected torch.Tensors")
    if keys.dim() != 2 or value_logits.dim() != 2 or keys.shape[0] != value_logits.shape[0]:
        raise ValueError(f"keys, value_logits: expected shapes (N, D) and (N, Dv), got {tuple(keys.shape)} and {tuple(value_logits.shape)}")
    stored = keys.detach() if detach_keys else keys
    scores = stored @ keys.T * keys.shape[1] ** -0.5  # scores[i, j] = k_i . k_j / sqrt(D)
    attention = torch.softmax(scores, dim=0)
    return attention.T @ torch.sigmoid(value_logits)


@dataclass
class Trajectory:
    """One training run: snapshots of keys and sigmoid(values), and the loss of every step.

    Attributes:
        steps: the recorded steps (0 = initialisation).
        keys: keys at each recorded step, shape (S, N, 2).
        values: sigmoid(value logits) at each recorded step, shape (S, N, 2).
        loss: the loss of the forward pass of steps 1..T, shape (T,).
    """

    steps: np.ndarray
    keys: np.ndarray
    values: np.ndarray
    loss: np.ndarray


def train(
    keys: torch.Tensor,
    value_logits: torch.Tensor,
    targets: torch.Tensor,
    *,
    steps: int,
    lr: float = 3e-4,
    zero_grad: bool = True,
    detach_keys: bool = True,
    record_every: int = 100,
    on_record: Any = None,
) -> Trajectory:
    """Optimise keys and value logits with full-batch Adam on the retrieval MSE.

    Runs on the device of ``keys`` (the other inputs are moved there); the trajectory comes
    back as CPU numpy arrays.

    Args:
        keys: initial keys (copied, not modified).
        value_logits: initial pre-sigmoid values (copied, not modified).
        targets: the feature vector each query must retrieve.
        steps: T, number of Adam steps.
        lr: Adam learning rate.
        zero_grad: zero the gradients before each step. ``False`` reproduces the notebooks,
            whose loop never zeroes them, so Adam sees the running sum of all gradients.
        detach_keys: see :func:`kv_readout`.
        record_every: record keys and values every this many steps (plus steps 0 and T).
        on_record: optional callable, called with no argument after each recorded
            snapshot except step 0 (a progress hook).

    Shapes:
        keys: (N, D); value_logits, targets: (N, Dv).

    Example:
        >>> g = torch.Generator().manual_seed(42)
        >>> k, v, c = draw_task(8, 2, g)
        >>> traj = train(k, v, class_targets(c, 2), steps=3, record_every=2)
        >>> traj.steps.tolist(), traj.keys.shape, traj.loss.shape
        ([0, 2, 3], (3, 8, 2), (3,))
    """
    keys = as_tensor(keys, "keys", min_rank=2)
    value_logits = as_tensor(value_logits, "value_logits", min_rank=2, dtype=keys.dtype, device=keys.device)
    targets = as_tensor(targets, "targets", min_rank=2, dtype=keys.dtype, device=keys.device)
    if keys.dim() != 2 or value_logits.shape != targets.shape or value_logits.shape[0] != keys.shape[0]:
        raise ValueError(
            "keys, value_logits, targets: expected shapes (N, D), (N, Dv), (N, Dv), got "
            f"{tuple(keys.shape)}, {tuple(value_logits.shape)}, {tuple(targets.shape)}"
        )
    steps = check_int(steps, "steps", minimum=1)
    lr = check_positive(lr, "lr")
    record_every = check_int(record_every, "record_every", minimum=1)

    k = torch.nn.Parameter(keys.detach().clone())
    v = torch.nn.Parameter(value_logits.detach().clone())
    optimizer = torch.optim.Adam([k, v], lr=lr)
    recorded, key_snaps, value_snaps = [0], [k.detach().clone()], [torch.sigmoid(v.detach())]
    losses = torch.empty(steps, dtype=torch.float64, device=keys.device)  # no per-step copy to the host
    for step in range(1, steps + 1):
        if zero_grad:
            optimizer.zero_grad()
        loss = torch.nn.functional.mse_loss(kv_readout(k, v, detach_keys=detach_keys), targets)
        loss.backward()
        optimizer.step()
        losses[step - 1] = loss.detach()
        if step % record_every == 0 or step == steps:
            recorded.append(step)
            key_snaps.append(k.detach().clone())
            value_snaps.append(torch.sigmoid(v.detach()))
            if on_record is not None:
                on_record()
    return Trajectory(
        steps=np.asarray(recorded),
        keys=torch.stack(key_snaps).cpu().numpy(),
        values=torch.stack(value_snaps).cpu().numpy(),
        loss=losses.cpu().numpy(),
    )


def retrieval_readout(keys: np.ndarray, classes: np.ndarray, n_classes: int) -> float:
    """Fraction of items whose class the model's own retrieval reads out from the keys.

    Item j queries the memory with its key; the softmax attention (scale 1/sqrt(D)) runs
    over the *other* keys (self-match excluded), and the predicted class is the class with
    the largest total attention weight.

    Args:
        keys: final keys.
        classes: class of each item.
        n_classes: C.

    Shapes:
        keys: (N, D); classes: (N,).

    Example:
        >>> k = np.array([[2.0, 2.0], [2.1, 1.9], [-2.0, -2.0], [-1.9, -2.1]])
        >>> retrieval_readout(k, np.array([0, 0, 1, 1]), 2)
        1.0
    """
    k = torch.as_tensor(np.asarray(keys, dtype=np.float64))
    scores = k @ k.T * k.shape[1] ** -0.5
    scores.fill_diagonal_(-math.inf)
    attention = torch.softmax(scores, dim=0).numpy()  # column j: weights over stored keys i
    mass = np.stack([attention[classes == c].sum(0) for c in range(n_classes)], axis=1)
    return float(np.mean(mass.argmax(1) == classes))


def centroid_readout(keys: np.ndarray, classes: np.ndarray, n_classes: int) -> float:
    """Leave-one-out nearest-class-centroid accuracy (Euclidean) on the keys.

    Shapes:
        keys: (N, D); classes: (N,).

    Example:
        >>> centroid_readout(np.array([[0.0], [0.2], [5.0], [5.2]]), np.array([0, 0, 1, 1]), 2)
        1.0
    """
    keys = np.asarray(keys, dtype=np.float64)
    sums = np.stack([keys[classes == c].sum(0) for c in range(n_classes)])
    counts = np.bincount(classes, minlength=n_classes).astype(np.float64)
    correct = 0
    for j in range(len(keys)):
        s, n = sums.copy(), counts.copy()
        s[classes[j]] -= keys[j]
        n[classes[j]] -= 1
        valid = n > 0
        cent = np.where(valid[:, None], s / np.maximum(n, 1)[:, None], np.nan)
        dist = np.where(valid, np.linalg.norm(cent - keys[j], axis=1), np.inf)
        correct += int(np.argmin(dist) == classes[j])
    return correct / len(keys)


def _cosine_rsm(x: np.ndarray) -> np.ndarray:
    norm = np.linalg.norm(x, axis=1, keepdims=True)
    unit = x / np.where(norm > 0, norm, 1.0)
    return unit @ unit.T


def _rank(x: np.ndarray) -> np.ndarray:
    from scipy.stats import rankdata

    return rankdata(x)


def _pearson(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a - a.mean(), b - b.mean()
    denom = math.sqrt(float(a @ a) * float(b @ b))
    return float(a @ b / denom) if denom > 0 else float("nan")


def _quadrant(v: np.ndarray) -> str:
    return "".join("+" if x > 0 else "-" if x < 0 else "0" for x in v)


def _summarise(traj: Trajectory, classes: np.ndarray, n_classes: int, targets: np.ndarray) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Final-state measures of one run and its class centroids."""
    k0, k, v = traj.keys[0].astype(np.float64), traj.keys[-1].astype(np.float64), traj.values[-1].astype(np.float64)
    per_item_mse = ((v - targets) ** 2).mean(1)
    iu = np.triu_indices(len(k), 1)
    rk, rv = _cosine_rsm(k)[iu], _cosine_rsm(v)[iu]
    centroids, rows = {}, []
    for what, x in (("key", k), ("value", v)):
        cents = np.stack([x[classes == c].mean(0) if np.any(classes == c) else np.full(2, np.nan) for c in range(n_classes)])
        centroids[what] = cents
        for c in range(n_classes):
            members = x[classes == c]
            quad = _quadrant(cents[c])
            in_quad = float(np.mean([_quadrant(m) == quad for m in members])) if len(members) else float("nan")
            rows.append({"representation": what, "class": c, "count": int(len(members)), "x": cents[c, 0], "y": cents[c, 1],
                         "quadrant": quad, "fraction_in_quadrant": in_quad})
    pairs = [(a, b) for a in range(n_classes) for b in range(a + 1, n_classes)]
    cos = {w: [float(_cosine_rsm(centroids[w])[a, b]) for a, b in pairs] for w in centroids}
    kc = centroids["key"]
    quads = [_quadrant(c) for c in kc]
    in_quad = min(r["fraction_in_quadrant"] for r in rows if r["representation"] == "key")
    summary = {
        "final_loss": float(traj.loss[-1]),
        "value_mse": float(per_item_mse.mean()),
        "value_mse_max": float(per_item_mse.max()),
        "readout_retrieval": retrieval_readout(k, classes, n_classes),
        "readout_retrieval_init": retrieval_readout(k0, classes, n_classes),
        "readout_centroid": centroid_readout(k, classes, n_classes),
        "key_quadrants": " ".join(quads),
        "keys_in_quadrant_min": in_quad,
        "distinct_quadrants": len(set(quads)) == n_classes and all("0" not in q for q in quads),
        "opposite_quadrants": n_classes == 2 and all(a != b for a, b in zip(quads[0], quads[1])) and "0" not in quads[0] + quads[1],
        "key_centroid_angle_deg": float(np.degrees(np.arccos(np.clip(cos["key"][0], -1, 1)))) if n_classes == 2 else float("nan"),
        "key_between_class_cosine": float(np.mean(cos["key"])),
        "value_between_class_cosine": float(np.mean(cos["value"])),
        "rsm_pearson": _pearson(rk, rv),
        "rsm_spearman": _pearson(_rank(rk), _rank(rv)),
    }
    return summary, rows





def run(config: Config, *, seed: int = 0, progress: Progress | None = None) -> Result:
    """Train the minimal key-value model for each class count and mode; tabulate trajectories.

    For each class count a fresh ``torch.Generator`` seeded with ``config.base_seed + seed``
    draws keys, value logits and classes in the notebooks' order; every mode starts from
    these same draws. The global RNG is not touched.

    Tables:
        ``trajectories``: mode, classes, step, item, class, key_x, key_y, value_x, value_y
        (value = sigmoid of the value logit), at the recorded steps.
        ``loss``: mode, classes, step, loss (every step; the loss of step s is computed
        before its update).
        ``summary``: one row per (classes, mode) with the final measures the claims use.
        ``centroids``: class centroids of final keys and values with their quadrants.
    """
    _check_config(config)
    check_int(seed, "seed", minimum=0)
    dev = resolve_device(config.device)
    progress = progress or Progress()
    cases = list(zip(config.classes, config.n_pairs, config.steps))
    progress.total(sum(math.ceil(s / config.record_every) for _, _, s in cases) * len(config.modes))
    traj_frames, loss_frames, summary_rows, centroid_rows = [], [], [], []
    with torch_threads(config.threads):
        for n_classes, n_pairs, steps in cases:
            gen = torch.Generator().manual_seed(config.base_seed + seed)
            keys, values, classes = draw_task(n_pairs, n_classes, gen)
            targets = class_targets(classes, n_classes)
            cls = classes.numpy()
            for mode in config.modes:
                # Drawn on the CPU (the notebooks' numbers on every device), trained on the device.
                traj = train(
                    keys.to(dev), values.to(dev), targets.to(dev), steps=steps, lr=config.lr, zero_grad=(mode == "clean"),
                    detach_keys=True if mode == "faithful" else config.clean_detach_keys,
                    record_every=config.record_every, on_record=progress.advance,
                )
                s, n = len(traj.steps), n_pairs
                traj_frames.append(pd.DataFrame({
                    "mode": mode, "classes": n_classes,
                    "step": np.repeat(traj.steps, n), "item": np.tile(np.arange(n), s), "class": np.tile(cls, s),
                    "key_x": traj.keys[..., 0].ravel(), "key_y": traj.keys[..., 1].ravel(),
                    "value_x": traj.values[..., 0].ravel(), "value_y": traj.values[..., 1].ravel(),
                }))
                loss_frames.append(pd.DataFrame({"mode": mode, "classes": n_classes,
                                                 "step": np.arange(1, steps + 1), "loss": traj.loss}))
                summary, rows = _summarise(traj, cls, n_classes, targets.numpy().astype(np.float64))
                summary_rows.append({"classes": n_classes, "mode": mode, "n_pairs": n_pairs, "steps": steps, **summary})
                centroid_rows += [{"classes": n_classes, "mode": mode, **r} for r in rows]
    summary_table = pd.DataFrame(summary_rows)
    scalars: dict[str, Any] = {"draw_seed": config.base_seed + seed}
    for row in summary_rows:
        tag = f"{row['classes']}c_{row['mode']}"
        for key in ("final_loss", "value_mse", "readout_retrieval", "rsm_pearson", "rsm_spearman"):
            scalars[f"{key}_{tag}"] = row[key]
    return Result(
        tables={
            "trajectories": pd.concat(traj_frames, ignore_index=True),
            "loss": pd.concat(loss_frames, ignore_index=True),
            "summary": summary_table,
            "centroids": pd.DataFrame(centroid_rows),
        },
        scalars=scalars,
        config=asdict(config),
    )


def _colours(n_classes: int) -> np.ndarray:
    from matplotlib import cm

    return cm.hsv(np.linspace(0, 0.7, n_classes))


def plot(result: Result) -> dict[str, Any]:
    """The paper's Figure 2 for each (classes, mode), plus the loss curves.

    Each Figure-2 panel set has two rows (keys; sigmoid(values)) and three columns:
    initialisation, the trajectories (opacity rising from 0.01 to 0.1 over training, final
    positions as grey "+") and the final configuration. Colours: ``cm.hsv(linspace(0, 0.7, C))``.
    A recorded snapshot stands for the steps since the previous one, so its opacity is that
    of that many overlapping points of the notebooks' per-step opacity.
    """
    import matplotlib.pyplot as plt

    traj = result.tables["trajectories"]
    figures: dict[str, Any] = {}
    for (n_classes, mode), part in traj.groupby(["classes", "mode"], sort=False):
        colours = _colours(int(n_classes))
        steps = np.sort(part["step"].unique())
        first, last = part[part["step"] == steps[0]], part[part["step"] == steps[-1]]
        gap = float(np.median(np.diff(steps))) if len(steps) > 1 else 1.0
        fig, axes = plt.subplots(2, 3, figsize=(13.5, 8), constrained_layout=True)
        for row, (what, label) in enumerate((("key", "keys"), ("value", "sigmoid(values)"))):
            x, y = f"{what}_x", f"{what}_y"
            ax0, ax1, ax2 = axes[row]
            ax0.scatter(first[x], first[y], color=colours[first["class"].to_numpy()], s=14)
            rgba = colours[part["class"].to_numpy()].copy()
            # The notebooks draw every step with opacity 0.01 -> 0.1; one recorded snapshot
            # stands for the `gap` steps since the previous one, so it gets the opacity of
            # `gap` overlapping points, which keeps the look of the paper's panels.
            alpha = 0.01 + 0.09 * part["step"].to_numpy() / max(int(steps[-1]), 1)
            rgba[:, 3] = 1.0 - (1.0 - alpha) ** gap
            ax1.scatter(part[x], part[y], color=rgba, s=14, linewidths=0)
            ax1.scatter(last[x], last[y], c="grey", marker="+", s=24)
            ax2.scatter(last[x], last[y], color=colours[last["class"].to_numpy()], s=14)
            for ax, title in ((ax0, "initialisation"), (ax1, "trajectory"), (ax2, f"after {int(steps[-1])} steps")):
                ax.set_title(f"{label}: {title}", fontsize=10)
                ax.set_xlabel(f"{label} dim 1")
                ax.set_ylabel(f"{label} dim 2")
        fig.suptitle(f"Figure 2: {int(n_classes)} classes, {mode} mode")
        figures[f"fig2_{int(n_classes)}classes_{mode}"] = fig

    loss = result.tables["loss"]
    fig, ax = plt.subplots(figsize=(6.5, 4.2), constrained_layout=True)
    for (n_classes, mode), part in loss.groupby(["classes", "mode"], sort=False):
        ax.plot(part["step"], part["loss"], ls="-" if mode == "faithful" else "--", label=f"{int(n_classes)} classes, {mode}")
    ax.set_xlabel("Adam step")
    ax.set_ylabel("retrieval MSE")
    ax.set_yscale("log")
    ax.legend(fontsize=8)
    figures["loss"] = fig
    return figures


def claims(result: Result) -> list[Claim]:
    """Four claims for every (classes, mode) of the run, from the ``summary`` table."""
    out = []
    for row in result.tables["summary"].to_dict("records"):
        c, mode = int(row["classes"]), row["mode"]
        tag = f"{c}c_{mode}"
        out.append(Claim(
            f"values_reach_class_features_{tag}",
            f"mean over items of the MSE between final sigmoid(value) and its class feature <= {VALUE_MSE_MAX}",
            f"{row['value_mse']:.4f} (worst item {row['value_mse_max']:.3f})",
            bool(row["value_mse"] <= VALUE_MSE_MAX),
        ))
        out.append(Claim(
            f"keys_separate_classes_{tag}",
            f"model's own retrieval (query k_j, softmax over the other keys, class with the largest attention mass) "
            f"reads out the class for >= {READOUT_MIN:.0%} of items",
            f"{row['readout_retrieval']:.3f} (at initialisation {row['readout_retrieval_init']:.3f})",
            bool(row["readout_retrieval"] >= READOUT_MIN),
        ))
        if c == 2:
            out.append(Claim(
                f"keys_opposite_quadrants_{tag}",
                "the two classes' key centroids lie in diagonally opposite quadrants (every sign differs) and "
                f">= {QUADRANT_FRACTION_MIN:.0%} of each class's keys lie in their centroid's quadrant",
                f"quadrants {row['key_quadrants']}, angle {row['key_centroid_angle_deg']:.1f} deg, "
                f"in quadrant {row['keys_in_quadrant_min']:.3f}",
                bool(row["opposite_quadrants"] and row["keys_in_quadrant_min"] >= QUADRANT_FRACTION_MIN),
            ))
        else:
            out.append(Claim(
                f"keys_distinct_quadrants_{tag}",
                f"the {c} classes' key centroids lie in {c} different quadrants and "
                f">= {QUADRANT_FRACTION_MIN:.0%} of each class's keys lie in their centroid's quadrant",
                f"quadrants {row['key_quadrants']}, in quadrant {row['keys_in_quadrant_min']:.3f}",
                bool(row["distinct_quadrants"] and row["keys_in_quadrant_min"] >= QUADRANT_FRACTION_MIN),
            ))
        gap = row["value_between_class_cosine"] - row["key_between_class_cosine"]
        out.append(Claim(
            f"keys_values_differ_{tag}",
            "keys and values end in different geometries: the mean between-class cosine of the key centroids is "
            f"at least {COSINE_GAP_MIN} below that of the value centroids",
            f"keys {row['key_between_class_cosine']:+.3f}, values {row['value_between_class_cosine']:+.3f} "
            f"(item cosine-RSM Pearson {row['rsm_pearson']:.3f}, Spearman {row['rsm_spearman']:.3f})",
            bool(gap >= COSINE_GAP_MIN),
        ))
    return out


EXPERIMENT = register(
    Experiment(
        name="fig2-key-value-optimization",
        description="Paper Fig. 2: keys and values of a minimal softmax KV memory optimised jointly end in different configurations.",
        config_type=Config,
        profiles={"quick": QUICK, "full": Config()},
        run=run,
        plot=plot,
        claims=claims,
    )
)
