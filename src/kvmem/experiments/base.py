"""The experiment contract: a frozen config with profiles, and run / plot / claims.

An experiment module builds one :class:`Experiment` and registers it::

    EXPERIMENT = register(Experiment(
        name="retrieval-basics",
        description="...",
        config_type=Config,
        profiles={"quick": Config(...), "full": Config()},
        run=run, plot=plot, claims=claims,
    ))

``run(config, *, seed, progress) -> Result`` holds tidy pandas tables and scalars;
``plot(result)`` returns named matplotlib figures; ``claims(result)`` returns
:class:`Claim` objects, each checked against the simulated data.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import types
import typing
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

PROFILES = ("quick", "full")


@contextlib.contextmanager
def torch_threads(n: int = 1) -> Iterator[None]:
    """Run the block with torch on ``n`` intra-op threads, then restore the setting.

    Experiments made of many small products run faster on one thread: handing each tiny
    operation to a thread pool costs more than the work (4-10x slower measured on a busy
    2-core machine), and one thread fixes the reduction order, so a seed gives the same
    numbers on any core count. ``n <= 0`` leaves the setting alone.

    Example:
        >>> import torch
        >>> before = torch.get_num_threads()
        >>> with torch_threads(1):
        ...     torch.get_num_threads()
        1
        >>> torch.get_num_threads() == before
        True
    """
    if n <= 0:
        yield
        return
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


@dataclass(frozen=True)
class Claim:
    """One checked statement: what was expected, what was measured, whether it held.

    Attributes:
        name: short identifier, unique within the experiment.
        expected: the expectation in words with its threshold ("== 1.0 for every N").
        measured: what the run measured (a number or a short description).
        passed: whether the measurement meets the expectation.
    """

    name: str
    expected: str
    measured: Any
    passed: bool

    def to_dict(self) -> dict[str, Any]:
        measured = self.measured
        if not isinstance(measured, (str, int, float, bool, type(None))):
            measured = str(measured)
        return {"name": self.name, "expected": self.expected, "measured": measured, "passed": bool(self.passed)}


@dataclass
class Result:
    """What ``run`` returns.

    Attributes:
        tables: tidy pandas DataFrames by name (written as ``NAME.csv``).
        scalars: named numbers and strings (written to ``scalars.json``).
        config: the config that produced the result, as a dict.
    """

    tables: dict[str, pd.DataFrame] = field(default_factory=dict)
    scalars: dict[str, Any] = field(default_factory=dict)
    config: dict[str, Any] = field(default_factory=dict)


class Progress:
    """Progress callback handed to ``run``: ``total(n)`` once, then ``advance()`` per task.

    The default does nothing; the command line passes one that drives a progress bar.
    """

    def total(self, n: int) -> None:  # noqa: D401 - callback
        """Announce the number of tasks."""

    def advance(self, n: int = 1) -> None:
        """Mark ``n`` more tasks done."""


@dataclass(frozen=True)
class Experiment:
    """A registered experiment.

    Attributes:
        name: the name used on the command line.
        description: one line for ``kvmem list``.
        config_type: the frozen dataclass of its settings.
        profiles: configs by profile name; ``quick`` (seconds) and ``full`` are required.
        run: ``run(config, *, seed, progress) -> Result``.
        plot: ``plot(result) -> dict[str, Figure]``.
        claims: ``claims(result) -> list[Claim]``.
    """

    name: str
    description: str
    config_type: type
    profiles: Mapping[str, Any]
    run: Callable[..., Result]
    plot: Callable[[Result], dict[str, Any]]
    claims: Callable[[Result], list[Claim]]

    def __post_init__(self):
        missing = [p for p in PROFILES if p not in self.profiles]
        if missing:
            raise ValueError(f"experiment {self.name!r}: missing profiles {missing}")

    def config(self, profile: str = "quick", overrides: Mapping[str, str] | None = None) -> Any:
        """The profile's config with ``overrides`` (strings, parsed by field type) applied.

        Raises:
            ValueError: unknown profile, unknown key or a value that does not parse.
        """
        if profile not in self.profiles:
            raise ValueError(f"profile: expected one of {sorted(self.profiles)}, got {profile!r}")
        config = self.profiles[profile]
        if not overrides:
            return config
        fields = {f.name: f for f in dataclasses.fields(config)}
        hints = typing.get_type_hints(type(config))
        changes = {}
        for key, text in overrides.items():
            if key not in fields:
                raise ValueError(f"--set: {self.name} has no setting {key!r}; settings: {', '.join(fields)}")
            changes[key] = parse_value(text, hints[key], key)
        return dataclasses.replace(config, **changes)


def parse_value(text: str, hint: Any, key: str) -> Any:
    """Parse a command-line string into the type ``hint`` (int, float, bool, str, tuples, Optional)."""
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        if text.lower() in ("none", "null") and type(None) in args:
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return parse_value(text, arg, key)
            except ValueError as err:
                errors.append(str(err))
        raise ValueError(errors[0] if errors else f"--set {key}: cannot parse {text!r}")
    if origin is tuple:
        items = [t for t in text.replace(" ", "").split(",") if t]
        inner = args[0] if args else str
        return tuple(parse_value(t, inner, key) for t in items)
    if hint is bool:
        low = text.lower()
        if low in ("true", "1", "yes"):
            return True
        if low in ("false", "0", "no"):
            return False
        raise ValueError(f"--set {key}: expected true or false, got {text!r}")
    if hint in (int, float):
        try:
            return hint(text)
        except ValueError:
            raise ValueError(f"--set {key}: expected {hint.__name__}, got {text!r}") from None
    if hint is str or hint is Any:
        return text
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        raise ValueError(f"--set {key}: cannot parse {text!r} as {hint}") from None


REGISTRY: dict[str, Experiment] = {}


def register(experiment: Experiment) -> Experiment:
    """Add ``experiment`` to the registry by name."""
    if experiment.name in REGISTRY:
        raise ValueError(f"experiment {experiment.name!r} is already registered")
    REGISTRY[experiment.name] = experiment
    return experiment


# -- helpers shared by experiment modules ----------------------------------------------------------
def config_error(field: str, expected: str, value: Any) -> None:
    """Raise the ``ValueError`` every config check gives: the setting, what was expected, the value.

    Example:
        >>> config_error("trials", "a positive integer", 0)
        Traceback (most recent call last):
        ...
        ValueError: trials: expected a positive integer, got 0
    """
    raise ValueError(f"{field}: expected {expected}, got {value!r}")


def resolve_device(value: Any, field: str = "device") -> Any:
    """The ``torch.device`` an experiment's ``device`` setting names, checked.

    Experiments draw their random numbers on the CPU from seeded generators and move the
    tensors to this device, so a seed gives the same draws on every device and results that
    differ only by floating-point rounding.

    Args:
        value: ``"cpu"``, ``"cuda"`` or ``"cuda:N"`` (or a ``torch.device``).
        field: the setting's name, for the error message.

    Raises:
        ValueError: not a CPU or CUDA device, or CUDA (that GPU) is not available here.

    Example:
        >>> resolve_device("cpu")
        device(type='cpu')
        >>> resolve_device("tpu")
        Traceback (most recent call last):
        ...
        ValueError: device: expected 'cpu', 'cuda' or 'cuda:N', got 'tpu'
    """
    import torch

    try:
        device = torch.device(value)
    except (RuntimeError, TypeError, ValueError):
        device = None
    if device is None or device.type not in ("cpu", "cuda"):
        config_error(field, "'cpu', 'cuda' or 'cuda:N'", value)
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"{field}: {value!r} requested but CUDA is not available here")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise ValueError(f"{field}: {value!r} requested but this machine has "
                             f"{torch.cuda.device_count()} CUDA device(s)")
    return device


def is_int(value: Any) -> bool:
    """A Python int that is not a bool."""
    return isinstance(value, int) and not isinstance(value, bool)


def is_real(value: Any) -> bool:
    """A finite Python int or float that is not a bool."""
    import math

    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def summarise_over_seeds(table: pd.DataFrame, keys: list[str], metrics: list[str]) -> pd.DataFrame:
    """Mean of each metric over the rows of each ``keys`` group, with a 95% t interval.

    The rows of a group are the independent replicates (seeds). NaNs are left out; a group
    with one value has a zero-width interval, one with none a NaN mean.

    Args:
        table: one row per replicate and condition.
        keys: the condition columns to group by (order kept as first seen).
        metrics: the columns to summarise.

    Returns:
        one row per group: the keys, and per metric ``metric``, ``metric_lo``, ``metric_hi``.

    Example:
        >>> t = pd.DataFrame({"n": [1, 1, 1], "acc": [0.5, 0.7, 0.6]})
        >>> row = summarise_over_seeds(t, ["n"], ["acc"]).iloc[0]
        >>> round(float(row["acc"]), 6), round(float(row["acc_hi"] - row["acc"]), 3)
        (0.6, 0.248)
    """
    import math

    from scipy import stats

    rows = []
    for key, group in table.groupby(keys, sort=False):
        key = key if isinstance(key, tuple) else (key,)
        row = dict(zip(keys, key))
        for metric in metrics:
            vals = group[metric].dropna().to_numpy(dtype=float)
            mean = float(vals.mean()) if len(vals) else float("nan")
            half = float(stats.t.ppf(0.975, len(vals) - 1) * vals.std(ddof=1) / math.sqrt(len(vals))) if len(vals) > 1 else 0.0
            row[metric] = mean
            row[f"{metric}_lo"], row[f"{metric}_hi"] = mean - half, mean + half
        rows.append(row)
    return pd.DataFrame(rows)


def mean_ci(x: Any, level: float = 0.95) -> tuple[float, float, float]:
    """Mean of the finite values and the t-based confidence interval of that mean.

    Returns ``(mean, low, high)``; the bounds are NaN with fewer than two values, and all
    three are NaN with none.

    Example:
        >>> m, lo, hi = mean_ci([0.5, 0.7, 0.6])
        >>> round(m, 6), round(hi - m, 3)
        (0.6, 0.248)
    """
    import math

    import numpy as np
    from scipy import stats

    x = np.asarray(x, dtype=np.float64)
    x = x[np.isfinite(x)]
    if x.size == 0:
        return math.nan, math.nan, math.nan
    mean = float(x.mean())
    if x.size < 2:
        return mean, math.nan, math.nan
    half = float(stats.t.ppf(0.5 + level / 2, x.size - 1) * x.std(ddof=1) / math.sqrt(x.size))
    return mean, mean - half, mean + half


def auc(positive: Any, negative: Any) -> float:
    """Area under the ROC curve: P(a positive scores above a negative) + P(tie) / 2.

    Args:
        positive, negative: scores, arrays or tensors of any shape (flattened).

    Returns:
        the AUC, or NaN when either side is empty. Sorting makes it O((P + N) log N).

    Example:
        >>> auc([2.0, 3.0], [1.0, 2.0])
        0.875
    """
    import math

    import numpy as np

    def flat(x: Any) -> np.ndarray:
        if hasattr(x, "detach"):
            x = x.detach().cpu().double().numpy()
        return np.asarray(x, dtype=np.float64).ravel()

    pos, neg = flat(positive), np.sort(flat(negative))
    if pos.size == 0 or neg.size == 0:
        return math.nan
    lo = np.searchsorted(neg, pos, side="left")
    hi = np.searchsorted(neg, pos, side="right")
    return float((lo + 0.5 * (hi - lo)).sum() / (pos.size * neg.size))


def plot_band(ax: Any, x: Any, table: pd.DataFrame, metric: str, label: str, **style: Any) -> None:
    """Plot ``table[metric]`` against ``x`` with its ``metric_lo`` / ``metric_hi`` band shaded."""
    line = ax.plot(x, table[metric], marker="o", ms=3, label=label, **style)[0]
    ax.fill_between(x, table[f"{metric}_lo"], table[f"{metric}_hi"], color=line.get_color(), alpha=0.2, lw=0)
