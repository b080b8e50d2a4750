"""Reading a sweep store back: tasks and result tables as pandas DataFrames, export, figures.

- :func:`load_results` - one row per task: swept parameters, seed, scalars, claims passed,
  duration.
- :func:`load_table` - one result table of the experiment, concatenated over tasks, with
  the swept parameters and the seed as columns.
- :func:`export` - either of the above to CSV or Parquet.
- :func:`summarize` - the tables ``kvmem results DIR`` prints.
- :func:`sweep_band` / :func:`plot_sweep` - a metric against a swept parameter: mean and
  a t confidence band over seeds, one line per combination of the other parameters.

Readers open the store read-only, so they may run while a sweep is still writing.
"""

from __future__ import annotations

import io
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from .store import Store

#: Columns of :func:`load_results` that are not parameters, scalars or claims.
TASK_COLUMNS = ("task_id", "experiment", "profile", "seed", "status", "claims_passed", "claims_total",
                "all_claims_passed", "seconds", "finished", "worker", "backend", "error")


def _value(v: Any) -> Any:
    # JSON lists (tuple settings) become tuples: hashable, so they group and compare.
    return tuple(_value(x) for x in v) if isinstance(v, list) else v


def _sorted(df: pd.DataFrame, keys: list[str]) -> pd.DataFrame:
    keys = [k for k in keys if k in df.columns]
    if df.empty or not keys:
        return df.reset_index(drop=True)
    try:
        return df.sort_values(keys, kind="stable").reset_index(drop=True)
    except TypeError:  # values of mixed types in a key column: keep the store's order
        return df.reset_index(drop=True)


def _param_names(rows: list[dict[str, Any]], sweeps: list[dict[str, Any]]) -> list[str]:
    # In --grid order (the stored params JSON has sorted keys), then any others.
    names: list[str] = []
    for sweep in sweeps:
        for key, _ in sweep["spec"].get("grid", []):
            if key not in names and any(key in row["params"] for row in rows):
                names.append(key)
    for row in rows:
        for key in row["params"]:
            if key not in names:
                names.append(key)
    return names


def load_results(folder: str | Path, *, include_unfinished: bool = False) -> pd.DataFrame:
    """One row per task of the sweep store in ``folder``.

    Columns: ``task_id``, ``experiment``, ``profile``, the swept parameters (typed; tuple
    settings as tuples), ``seed``, ``status``, each scalar of the result (prefixed
    ``scalar_`` when its name is already a column), ``claims_passed``, ``claims_total``,
    ``all_claims_passed``, one boolean column ``claim.NAME`` per claim, ``seconds`` (the
    task's run time), ``finished``, ``worker``, ``backend`` and ``error``. Rows are sorted
    by experiment, parameters and seed, so the frame does not depend on the order in which
    tasks finished. ``df.attrs["params"]`` lists the parameter columns.

    Args:
        folder: a sweep output folder (or its ``sweep.sqlite``).
        include_unfinished: also return ``pending`` and ``failed`` tasks.

    Raises:
        StoreError: no readable store in ``folder``.

    Example:
        >>> from kvmem.runner import run_sweep
        >>> _ = run_sweep("retrieval-basics", ["key_dim=8,16"], "0-1", out="example-results",
        ...               fixed={"trials": 2, "n_pairs": "4,8", "noise_levels": "0.0"})
        >>> df = load_results("example-results")
        >>> df[["key_dim", "seed", "claims_total"]].values.tolist()
        [[8, 0, 3], [8, 1, 3], [16, 0, 3], [16, 1, 3]]
    """
    with Store(folder, readonly=True) as store:
        rows = store.tasks(status=None if include_unfinished else "done")
        sweeps = store.sweeps()
    params = _param_names(rows, sweeps)
    records = []
    for row in rows:
        rec: dict[str, Any] = {"task_id": row["task_id"], "experiment": row["experiment"], "profile": row["profile"]}
        for key in params:
            rec[key] = _value(row["params"].get(key))
        rec["seed"] = row["seed"]
        rec["status"] = row["status"]
        for key, value in (row["scalars"] or {}).items():
            name = key if key not in rec and key not in TASK_COLUMNS else f"scalar_{key}"
            rec[name] = _value(value)
        claims = row["claims"] or []
        rec["claims_passed"] = sum(bool(c["passed"]) for c in claims) if row["status"] == "done" else None
        rec["claims_total"] = len(claims) if row["status"] == "done" else None
        rec["all_claims_passed"] = all(c["passed"] for c in claims) if row["status"] == "done" else None
        for c in claims:
            rec[f"claim.{c['name']}"] = bool(c["passed"])
        rec.update(seconds=row["seconds"], finished=row["finished"], worker=row["worker"], backend=row["backend"],
                   error=row["error"])
        records.append(rec)
    df = pd.DataFrame.from_records(records)
    if df.empty:
        df = pd.DataFrame(columns=["task_id", "experiment", "profile", *params, "seed", "status"])
    df = _sorted(df, ["experiment", *params, "seed"])
    df.attrs["params"] = params
    return df


def _read_table(fmt: str, data: bytes) -> pd.DataFrame:
    if fmt != "parquet":
        raise ValueError(f"table format {fmt!r} is not known to this kvmem (expected parquet)")
    return pd.read_parquet(io.BytesIO(data), engine="pyarrow")


def table_names(folder: str | Path) -> list[str]:
    """Names of the result tables held in the store of ``folder``."""
    with Store(folder, readonly=True) as store:
        return store.table_names()


def load_table(folder: str | Path, name: str) -> pd.DataFrame:
    """The result table ``name`` of every finished task, stacked, with parameters and seed.

    The leading columns are ``task_id``, the swept parameters and ``seed`` (each prefixed
    ``param_`` when the table has a column of that name), followed by the table's own
    columns with their stored dtypes. Tasks appear in the order of :func:`load_results`.

    Raises:
        StoreError: no readable store in ``folder``.
        ValueError: no table ``name`` (the message lists the tables there are).

    Example:
        >>> from kvmem.runner import run_sweep
        >>> _ = run_sweep("retrieval-basics", ["key_dim=8,16"], "0-1", out="example-table",
        ...               fixed={"trials": 2, "n_pairs": "4,8", "noise_levels": "0.0"})
        >>> t = load_table("example-table", "retrieval")
        >>> len(t), list(t.columns[:4])
        (120, ['task_id', 'key_dim', 'seed', 'model'])
    """
    tasks = load_results(folder)
    params = tasks.attrs["params"]
    with Store(folder, readonly=True) as store:
        blobs = store.table_blobs(name)
        known = store.table_names()
    if name not in known:
        raise ValueError(f"table: no table {name!r} in {folder}; tables: {', '.join(known) or 'none'}")
    frames = []
    for _, task in tasks.iterrows():
        if task["task_id"] not in blobs:
            continue
        table = _read_table(*blobs[task["task_id"]])
        lead: dict[str, Any] = {"task_id": task["task_id"]}
        for key in [*params, "seed"]:
            lead[key if key not in table.columns and key != "task_id" else f"param_{key}"] = task[key]
        head = pd.DataFrame({k: [v] * len(table) for k, v in lead.items()}, index=table.index)
        frames.append(pd.concat([head, table], axis=1))
    df = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()
    df.attrs["params"] = [k if k in df.columns else f"param_{k}" for k in params]
    return df


def _tuples_to_text(df: pd.DataFrame) -> pd.DataFrame:
    out = df.copy()
    for col in out.columns:
        if out[col].dtype == object and out[col].map(lambda v: isinstance(v, tuple)).any():
            out[col] = out[col].map(lambda v: ",".join(map(str, v)) if isinstance(v, tuple) else v)
    return out


def export(folder: str | Path, path: str | Path, *, table: str | None = None, format: str | None = None) -> Path:
    """Write :func:`load_results` (or :func:`load_table` when ``table`` is given) to a file.

    Tuple-valued parameters are written as ``"4,8"`` text (the ``--grid`` syntax).

    Args:
        folder: the sweep output folder.
        path: the file to write.
        table: a result table name; default: the task list.
        format: ``"csv"`` or ``"parquet"``; default: from the suffix (``.csv``,
            ``.parquet``, ``.pq``).

    Raises:
        ValueError: an unknown format or suffix, or an unknown table.

    Example:
        >>> from kvmem.runner import run_sweep
        >>> _ = run_sweep("retrieval-basics", ["key_dim=8"], "0", out="example-export",
        ...               fixed={"trials": 2, "n_pairs": "4,8", "noise_levels": "0.0"})
        >>> export("example-export", "tasks.csv").name
        'tasks.csv'
    """
    path = Path(path)
    if format is None:
        format = {".csv": "csv", ".parquet": "parquet", ".pq": "parquet"}.get(path.suffix.lower())
        if format is None:
            raise ValueError(f"path: expected a .csv or .parquet file name, got {str(path)!r}")
    if format not in ("csv", "parquet"):
        raise ValueError(f"format: expected 'csv' or 'parquet', got {format!r}")
    df = load_table(folder, table) if table is not None else load_results(folder)
    df = _tuples_to_text(df)
    path.parent.mkdir(parents=True, exist_ok=True)
    if format == "csv":
        df.to_csv(path, index=False)
    else:
        df.to_parquet(path, index=False, engine="pyarrow")
    return path


def summarize(folder: str | Path) -> dict[str, pd.DataFrame]:
    """The summary ``kvmem results DIR`` prints, as DataFrames.

    Returns:
        ``{"tasks": ..., "claims": ..., "means": ...}``: task counts by experiment and
        status (pending, done, failed); for each claim the number of finished tasks in
        which it passed; and for each swept parameter value the mean of every numeric
        scalar, of ``claims_passed`` and of ``seconds`` over the finished tasks.

    Example:
        >>> from kvmem.runner import run_sweep
        >>> _ = run_sweep("retrieval-basics", ["key_dim=8,16"], "0", out="example-summary",
        ...               fixed={"trials": 2, "n_pairs": "4,8", "noise_levels": "0.0"})
        >>> summarize("example-summary")["tasks"].to_dict("records")
        [{'experiment': 'retrieval-basics', 'tasks': 2, 'done': 2, 'failed': 0, 'pending': 0}]
    """
    everything = load_results(folder, include_unfinished=True)
    params = everything.attrs["params"]
    counts = []
    for exp, group in everything.groupby("experiment", sort=True):
        status = group["status"].value_counts()
        counts.append({"experiment": exp, "tasks": len(group), "done": int(status.get("done", 0)),
                       "failed": int(status.get("failed", 0)), "pending": int(status.get("pending", 0))})
    tasks = pd.DataFrame(counts, columns=["experiment", "tasks", "done", "failed", "pending"])

    done = everything[everything["status"] == "done"]
    claim_cols = [c for c in done.columns if c.startswith("claim.")]
    claim_rows = []
    for exp, group in done.groupby("experiment", sort=True):
        for col in claim_cols:
            known = group[col].dropna()
            if len(known):
                claim_rows.append({"experiment": exp, "claim": col[len("claim."):],
                                   "passed": int(known.astype(bool).sum()), "tasks": len(known)})
    claims = pd.DataFrame(claim_rows, columns=["experiment", "claim", "passed", "tasks"])

    skip = set(TASK_COLUMNS) | set(params) | set(claim_cols)
    numeric = [c for c in done.columns if c not in skip and pd.api.types.is_numeric_dtype(done[c])
               and not pd.api.types.is_bool_dtype(done[c])]
    metrics = [*numeric, "claims_passed", "seconds"]
    mean_rows = []
    for key in params:
        for value, group in done.groupby(key, sort=True, dropna=False):
            row = {"parameter": key, "value": value, "tasks": len(group)}
            for m in metrics:
                row[m] = float(pd.to_numeric(group[m], errors="coerce").mean())
            mean_rows.append(row)
    means = pd.DataFrame(mean_rows, columns=["parameter", "value", "tasks", *metrics])
    return {"tasks": tasks, "claims": claims, "means": means}


def sweep_band(df: pd.DataFrame, metric: str, x: str, *, by: Sequence[str] | None = None,
               seed: str = "seed", ci: float = 0.95) -> pd.DataFrame:
    """Mean and t confidence interval of ``metric`` over seeds, per ``by`` group and ``x``.

    Rows sharing (``by``, ``x``, seed) are first averaged (a result table may hold many
    rows per task); the seeds are then the samples: ``mean +- t_{(1+ci)/2, n-1} * sd / sqrt(n)``
    with the sample standard deviation (ddof 1). With one seed the band is NaN.

    Args:
        df: :func:`load_results` or :func:`load_table` output (or any frame with these columns).
        metric: the column to average (booleans count as 0/1).
        x: the swept parameter on the horizontal axis.
        by: columns that separate lines; default: the other swept parameters
            (``df.attrs["params"]`` without ``x``).
        seed: the column holding the seed.
        ci: confidence level in (0, 1).

    Returns:
        Columns ``*by, x, n, mean, sd, low, high``, sorted by ``by`` and ``x``.

    Raises:
        ValueError: a column is missing or ``ci`` is not in (0, 1).

    Example:
        >>> frame = pd.DataFrame({"d": [8, 8, 16, 16], "seed": [0, 1, 0, 1], "acc": [1.0, 0.0, 0.5, 0.5]})
        >>> sweep_band(frame, "acc", "d", by=[])[["d", "n", "mean", "sd"]].values.tolist()
        [[8.0, 2.0, 0.5, 0.7071067811865476], [16.0, 2.0, 0.5, 0.0]]
    """
    from scipy import stats

    if not 0 < ci < 1:
        raise ValueError(f"ci: expected a level in (0, 1), got {ci!r}")
    if by is None:
        by = [p for p in df.attrs.get("params", []) if p != x]
    by = list(by)
    for col in (metric, x, seed, *by):
        if col not in df.columns:
            raise ValueError(f"column {col!r} is not in the frame; columns: {', '.join(map(str, df.columns))}")
    values = pd.to_numeric(df[metric].astype(float) if df[metric].dtype == bool else df[metric], errors="raise")
    frame = df[[*by, x, seed]].assign(_metric=values)
    per_seed = frame.groupby([*by, x, seed], sort=True, dropna=False)["_metric"].mean().reset_index()
    rows = []
    for keys, group in per_seed.groupby([*by, x], sort=True, dropna=False):
        keys = keys if isinstance(keys, tuple) else (keys,)
        samples = group["_metric"].to_numpy(dtype=float)
        n = len(samples)
        mean = float(samples.mean())
        sd = float(samples.std(ddof=1)) if n > 1 else math.nan
        half = float(stats.t.ppf((1 + ci) / 2, n - 1)) * sd / math.sqrt(n) if n > 1 else math.nan
        rows.append({**dict(zip([*by, x], keys)), "n": n, "mean": mean, "sd": sd,
                     "low": mean - half, "high": mean + half})
    return pd.DataFrame(rows, columns=[*by, x, "n", "mean", "sd", "low", "high"])


def plot_sweep(df: pd.DataFrame, metric: str, x: str, *, by: Sequence[str] | None = None, seed: str = "seed",
               ci: float = 0.95, ax: Any = None, title: str | None = None) -> Any:
    """Plot ``metric`` against the swept ``x``: mean over seeds with a ``ci`` band.

    One line per combination of the ``by`` columns (default: the other swept parameters).
    Numeric ``x`` values are placed at their value; others (tuples, text) at equal spacing
    in sorted order. The numbers come from :func:`sweep_band`.

    Returns:
        The matplotlib Figure.

    Example:
        >>> frame = pd.DataFrame({"d": [8, 8, 16, 16], "seed": [0, 1, 0, 1], "acc": [1.0, 0.8, 0.5, 0.4]})
        >>> fig = plot_sweep(frame, "acc", "d", by=[])
        >>> fig.axes[0].lines[0].get_ydata().tolist()
        [0.9, 0.45]
    """
    import matplotlib.pyplot as plt

    band = sweep_band(df, metric, x, by=by, seed=seed, ci=ci)
    by = [c for c in band.columns if c not in (x, "n", "mean", "sd", "low", "high")]
    if ax is None:
        fig, ax = plt.subplots(figsize=(6.4, 4.2), constrained_layout=True)
    else:
        fig = ax.figure
    numeric = pd.api.types.is_numeric_dtype(band[x])
    levels = sorted(band[x].unique(), key=lambda v: (str(type(v)), v)) if not numeric else None
    groups = band.groupby(by, sort=True, dropna=False) if by else [((), band)]
    for keys, group in groups:
        keys = keys if isinstance(keys, tuple) else (keys,)
        xs = group[x].to_numpy(dtype=float) if numeric else [levels.index(v) for v in group[x]]
        label = ", ".join(f"{k}={v}" for k, v in zip(by, keys)) or metric
        (line,) = ax.plot(xs, group["mean"].to_numpy(), marker="o", ms=3, label=label)
        ax.fill_between(xs, group["low"].to_numpy(), group["high"].to_numpy(), color=line.get_color(), alpha=0.2,
                        linewidth=0)
    if not numeric:
        ax.set_xticks(range(len(levels)))
        ax.set_xticklabels([",".join(map(str, v)) if isinstance(v, tuple) else str(v) for v in levels])
    ax.set_xlabel(x)
    ax.set_ylabel(metric)
    n_seeds = int(band["n"].max()) if len(band) else 0
    ax.set_title(title or f"{metric} vs {x}: mean and {ci:.0%} CI over {n_seeds} seeds")
    if by:
        ax.legend(fontsize=7)
    return fig
