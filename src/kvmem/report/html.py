"""The HTML report of ``kvmem reproduce``: one self-contained ``index.html`` per results folder.

Two ways in, one renderer. :func:`write_report` takes the :class:`~kvmem.runner.RunOutput`
objects of a ``reproduce`` run (already written with
:func:`~kvmem.runner.write_outputs` into ``DIR/NAME/``) and the error text of the
experiments that raised; :func:`build_report_from_dir` reads the same facts back from the
files alone (``run.json``, ``claims.json``, ``*.csv``, ``*.png``, ``error.txt``,
``report.json``). Both fill the plain data model :class:`ReportData`, and
:func:`render_html` turns that into the page, so the two give the same page for the same
run (the generation time aside).

Folder layout read and written::

    DIR/index.html          the report (written here)
    DIR/report.json         meta and environment recorded by write_report
    DIR/NAME/run.json       experiment, profile, seed, seconds, config, scalars, versions
    DIR/NAME/claims.json    [{"name", "expected", "measured", "passed"}, ...]
    DIR/NAME/TABLE.csv      result tables; ``published`` and ``paper_*`` are the paper's numbers
    DIR/NAME/FIGURE.png     figures, linked by relative paths so DIR can be moved
    DIR/NAME/error.txt      the traceback of an experiment that raised (written here)

The page is self-contained: inline CSS, no script, no external font or stylesheet. Every
piece of text coming from an experiment is HTML-escaped.

Example:
    >>> from kvmem.report import build_report_from_dir, write_report
    >>> page = write_report("demo-report", [], failures={"demo": "RuntimeError: <boom>"})
    >>> page.name
    'index.html'
    >>> "RuntimeError: &lt;boom&gt;" in page.read_text()
    True
    >>> build_report_from_dir("demo-report") == page
    True
"""

from __future__ import annotations

import datetime as _dt
import html
import json
import math
import os
import platform
import re
import struct
import subprocess
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

import numpy as np
import pandas as pd

from ..runner.local import RunOutput, _jsonable

#: Rows of a result table shown on the page; the CSV link has the rest.
MAX_ROWS = 25
#: Name of the result table holding the paper's numbers beside ours.
PUBLISHED_TABLE = "published"
#: Columns the ``published`` table must have (``source`` and any others are optional).
PUBLISHED_COLUMNS = ("quantity", "published", "measured")
#: Prefix of result tables (and scalars) that hold numbers taken from the paper.
PAPER_PREFIX = "paper_"
REPORT_JSON = "report.json"
ERROR_FILE = "error.txt"
INDEX = "index.html"
DEFAULT_TITLE = "kvmem reproduce report"


# --------------------------------------------------------------------------- data model


@dataclass(frozen=True)
class ClaimRow:
    """One checked claim as shown on the page (``measured`` already formatted)."""

    name: str
    expected: str
    measured: str
    passed: bool


@dataclass(frozen=True)
class TableView:
    """A result table, formatted and cut to the rows shown.

    Attributes:
        name: table name (the CSV's stem).
        csv: relative path of the full CSV (``NAME/TABLE.csv``), or None when absent.
        columns: column names.
        rows: the first rows, every cell a display string.
        n_rows: rows in the full table.
        note: a remark shown above the table (e.g. a convention it does not follow).
    """

    name: str
    csv: str | None
    columns: tuple[str, ...]
    rows: tuple[tuple[str, ...], ...]
    n_rows: int
    note: str = ""


@dataclass(frozen=True)
class PublishedRow:
    """One of the paper's numbers beside ours."""

    quantity: str
    published: str
    measured: str
    source: str


@dataclass(frozen=True)
class Figure:
    """A PNG figure: relative path, pixel size (0 when the file is not a readable PNG), alt text."""

    src: str
    width: int
    height: int
    alt: str


@dataclass(frozen=True)
class Section:
    """Everything the page says about one experiment.

    ``status`` is ``"pass"`` (every claim holds), ``"fail"`` (some claim fails),
    ``"error"`` (the experiment raised; ``error`` holds the text) or ``"no-claims"``.
    """

    name: str
    folder: str
    description: str
    status: str
    profile: str | None = None
    seed: int | None = None
    seconds: float | None = None
    claims: tuple[ClaimRow, ...] = ()
    figures: tuple[Figure, ...] = ()
    tables: tuple[TableView, ...] = ()
    published: tuple[PublishedRow, ...] = ()
    published_extra_columns: tuple[str, ...] = ()
    published_extra: tuple[tuple[str, ...], ...] = ()
    paper_tables: tuple[TableView, ...] = ()
    config: tuple[tuple[str, str], ...] = ()
    scalars: tuple[tuple[str, str], ...] = ()
    versions: tuple[tuple[str, str], ...] = ()
    error: str | None = None

    @property
    def n_passed(self) -> int:
        return sum(c.passed for c in self.claims)

    @property
    def n_failed(self) -> int:
        return sum(not c.passed for c in self.claims)


@dataclass(frozen=True)
class ReportData:
    """The whole page as plain data: what :func:`render_html` renders.

    Attributes:
        title: page title.
        generated: ISO 8601 time (UTC) the page was built.
        sections: one per experiment, sorted by folder name.
        environment: (key, value) pairs: package versions, threads, BLAS, CPU, git commit.
        environment_recorded: ISO time the environment was recorded, or None when it was
            collected while rebuilding (then it may not be the one that ran the experiments).
        meta: (key, value) pairs handed to :func:`write_report` by the caller.
        wall_seconds: total wall time when the caller gave it (``meta["wall_seconds"]``).
    """

    title: str
    generated: str
    sections: tuple[Section, ...]
    environment: tuple[tuple[str, str], ...] = ()
    environment_recorded: str | None = None
    meta: tuple[tuple[str, str], ...] = ()
    wall_seconds: float | None = None

    @property
    def n_claims(self) -> int:
        return sum(len(s.claims) for s in self.sections)

    @property
    def n_passed(self) -> int:
        return sum(s.n_passed for s in self.sections)

    @property
    def n_failed(self) -> int:
        return sum(s.n_failed for s in self.sections)

    @property
    def errors(self) -> list[str]:
        """Names of the experiments that raised."""
        return [s.name for s in self.sections if s.status == "error"]

    @property
    def ok(self) -> bool:
        """True when no experiment raised and every claim holds (exit code 0)."""
        return not self.errors and self.n_failed == 0

    @property
    def seconds(self) -> float:
        """Sum of the experiments' own durations."""
        return sum(s.seconds or 0.0 for s in self.sections)


# --------------------------------------------------------------------------- formatting


def _cell(value: Any, digits: int = 4) -> str:
    """A table cell as text: floats to ``digits`` significant digits, missing values empty.

    Integral floats print as integers, so a column that went through a CSV (where an int
    column with a gap becomes float) reads the same as in memory.
    """
    if value is None:
        return ""
    if isinstance(value, (bool, np.bool_)):
        return str(bool(value))
    if isinstance(value, (int, np.integer)):
        return str(int(value))
    if isinstance(value, (float, np.floating)):
        x = float(value)
        if math.isnan(x):
            return ""
        if math.isinf(x):
            return "inf" if x > 0 else "-inf"
        if x.is_integer() and abs(x) < 1e15:
            return str(int(x))
        return format(x, f".{digits}g")
    if value is pd.NA or value is pd.NaT:
        return ""
    return str(value)


def _value(value: Any) -> str:
    """A config or scalar value (already JSON-plain) as text."""
    if isinstance(value, float):
        return _cell(value, 6)
    if isinstance(value, str):
        return value
    if isinstance(value, (list, dict)):
        return json.dumps(value)
    if value is None:
        return "None"
    return str(value)


def _plain(value: Any) -> Any:
    # Exactly what write_outputs puts in run.json, so memory and disk give the same page.
    return json.loads(json.dumps(_jsonable(value)))


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "unknown"
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, sec = divmod(int(round(seconds)), 60)
    if minutes < 60:
        return f"{minutes} min {sec:02d} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min"


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).replace(microsecond=0).isoformat()


def _png_size(path: Path) -> tuple[int, int]:
    """(width, height) from a PNG's IHDR chunk; (0, 0) when the file is not a PNG."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(24)
    except OSError:
        return 0, 0
    if len(head) < 24 or head[:8] != b"\x89PNG\r\n\x1a\n" or head[12:16] != b"IHDR":
        return 0, 0
    return struct.unpack(">II", head[16:24])


def _table_view(name: str, frame: pd.DataFrame, csv: str | None, max_rows: int, note: str = "") -> TableView:
    head = frame.head(max_rows)
    rows = tuple(tuple(_cell(v) for v in row) for row in head.itertuples(index=False, name=None))
    return TableView(name, csv, tuple(str(c) for c in frame.columns), rows, len(frame), note)


# --------------------------------------------------------------------------- environment


def _package_version(name: str) -> str:
    from importlib import metadata

    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return "not installed"


def _torch_blas() -> dict[str, str]:
    import torch

    shown = torch.__config__.show()
    out = {}
    for key in ("BLAS_INFO", "LAPACK_INFO"):
        m = re.search(rf"{key}=([^,\s]+)", shown)
        if m:
            out[f"torch {key.split('_')[0]}"] = m.group(1)
    library = [ln.strip(" -") for ln in shown.splitlines() if re.search(r"Math Kernel Library|OpenBLAS|BLIS|Accelerate", ln)]
    if library:
        out["torch BLAS library"] = library[0]
    m = re.search(r"CPU capability usage:\s*(\S+)", shown)
    if m:
        out["torch CPU capability"] = m.group(1)
    m = re.search(r"ATen parallel backend:\s*(.+)", torch.__config__.parallel_info())
    if m:
        out["torch parallel backend"] = m.group(1).strip()
    return out


def _numpy_blas() -> dict[str, str]:
    import numpy

    try:
        deps = numpy.show_config(mode="dicts")["Build Dependencies"]  # numpy >= 1.26
    except Exception:  # older numpy prints instead of returning; not worth failing a report
        return {}
    out = {}
    for key in ("blas", "lapack"):
        dep = deps.get(key) or {}
        if dep:
            out[f"numpy {key.upper()}"] = f"{dep.get('name', '?')} {dep.get('version', '')}".strip()
    return out


def _threadpools() -> dict[str, str]:
    # threadpoolctl (a scikit-learn dependency) sees the BLAS/OpenMP libraries actually
    # loaded and their thread counts, which build flags cannot tell.
    try:
        import threadpoolctl
    except ImportError:
        return {}
    pools = []
    for info in threadpoolctl.threadpool_info():
        version = info.get("version") or ""
        pools.append(f"{info.get('internal_api')} {version} ({info.get('num_threads')} threads, {info.get('prefix')})".replace("  ", " "))
    return {"loaded thread pools": "; ".join(pools)} if pools else {}


def _git() -> dict[str, str]:
    here = Path(__file__).resolve().parent
    try:
        commit = subprocess.run(["git", "-C", str(here), "rev-parse", "HEAD"], capture_output=True, text=True,
                                timeout=10, check=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(here), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=10, check=True).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return {"git commit": "unavailable (not a git checkout, or git missing)"}
    return {"git commit": commit + (" (with uncommitted changes)" if dirty else "")}


def collect_environment() -> dict[str, str]:
    """Versions, threads, BLAS/LAPACK, CPU and git commit of this process, as text.

    Example:
        >>> env = collect_environment()
        >>> {"python", "torch", "torch threads", "CPU count"} <= set(env)
        True
    """
    import torch

    env = {
        "python": f"{platform.python_version()} ({platform.python_implementation()})",
        "platform": platform.platform(),
        "machine": platform.machine(),
        "CPU count": str(os.cpu_count()),
    }
    if hasattr(os, "sched_getaffinity"):
        env["CPUs usable by this process"] = str(len(os.sched_getaffinity(0)))
    for name in ("kvmem", "torch", "numpy", "scipy", "pandas", "matplotlib", "scikit-learn"):
        env[name] = _package_version(name)
    # The distribution's version drops torch's build tag ("2.11.0+cu130"): keep the tag, and
    # say whether this process can use a GPU, since results may come from one.
    env["torch"] = torch.__version__
    env["torch CUDA"] = torch.version.cuda or "none (CPU build)"
    env["GPU"] = (
        ", ".join(torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count()))
        if torch.cuda.is_available()
        else "none"
    )
    env["torch threads"] = str(torch.get_num_threads())
    env["torch inter-op threads"] = str(torch.get_num_interop_threads())
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        env[var] = os.environ.get(var, "not set")
    env.update(_torch_blas())
    env.update(_numpy_blas())
    env.update(_threadpools())
    env.update(_git())
    return env


# --------------------------------------------------------------------------- collecting


def _published(folder: str, tables: Mapping[str, pd.DataFrame], scalars: Mapping[str, Any], max_rows: int):
    """Split out the paper's numbers: the ``published`` table (else ``paper_*`` scalars) and ``paper_*`` tables."""
    rows: list[PublishedRow] = []
    extra_cols: tuple[str, ...] = ()
    extra: list[tuple[str, ...]] = []
    paper_tables: list[TableView] = []
    table = tables.get(PUBLISHED_TABLE)
    if table is not None:
        missing = [c for c in PUBLISHED_COLUMNS if c not in table.columns]
        if missing:
            note = (f"This table does not follow the 'published' convention (missing columns: {', '.join(missing)}; "
                    f"expected {', '.join(PUBLISHED_COLUMNS)} and source); shown as it is.")
            paper_tables.append(_table_view(PUBLISHED_TABLE, table, f"{folder}/{PUBLISHED_TABLE}.csv", max_rows, note))
        else:
            extra_cols = tuple(str(c) for c in table.columns if c not in (*PUBLISHED_COLUMNS, "source"))
            for rec in table.to_dict("records"):
                rows.append(PublishedRow(_cell(rec["quantity"]), _cell(rec["published"], 6), _cell(rec["measured"], 6),
                                         _cell(rec.get("source"))))
                extra.append(tuple(_cell(rec[c], 6) for c in extra_cols))
    # Fallback for experiments without a ``published`` table: pair scalar paper_NAME with NAME.
    for key, value in (scalars.items() if table is None else ()):
        if key.startswith(PAPER_PREFIX):
            ours = key[len(PAPER_PREFIX):]
            measured = _value(scalars[ours]) if ours in scalars else "not measured by this run"
            rows.append(PublishedRow(ours, _value(value), measured, f"scalar {key}"))
            extra.append(tuple("" for _ in extra_cols))
    for tname, frame in sorted(tables.items()):  # sorted: memory and CSV folder give one order
        if tname.startswith(PAPER_PREFIX):
            paper_tables.append(_table_view(tname, frame, f"{folder}/{tname}.csv", max_rows))
    return tuple(rows), extra_cols, tuple(extra), tuple(paper_tables)


def _description(name: str) -> str:
    from .. import experiments

    return experiments.REGISTRY[name].description if name in experiments.REGISTRY else ""


def _section(name: str, folder: str, out_dir: Path, *, profile, seed, seconds, claims, tables, scalars, config,
             versions, max_rows: int) -> Section:
    claim_rows = tuple(ClaimRow(str(c["name"]), str(c["expected"]), _value(c["measured"]) if c["measured"] is not None else "",
                                bool(c["passed"])) for c in claims)
    if not claim_rows:
        status = "no-claims"
    else:
        status = "pass" if all(c.passed for c in claim_rows) else "fail"
    figures = tuple(
        Figure(f"{folder}/{p.name}", *_png_size(p), f"Figure '{p.stem}' of experiment {name}")
        for p in sorted((out_dir / folder).glob("*.png"))
    )
    published, extra_cols, extra, paper_tables = _published(folder, tables, scalars, max_rows)
    views = tuple(
        _table_view(t, frame, f"{folder}/{t}.csv" if (out_dir / folder / f"{t}.csv").exists() else None, max_rows)
        for t, frame in sorted(tables.items()) if t != PUBLISHED_TABLE and not t.startswith(PAPER_PREFIX)
    )
    return Section(
        name=name, folder=folder, description=_description(name), status=status,
        profile=profile, seed=seed, seconds=seconds, claims=claim_rows, figures=figures, tables=views,
        published=published, published_extra_columns=extra_cols, published_extra=extra, paper_tables=paper_tables,
        config=tuple((k, _value(v)) for k, v in config.items()),
        scalars=tuple((k, _value(v)) for k, v in scalars.items()),
        versions=tuple((k, str(v)) for k, v in versions.items()),
    )


def _error_section(name: str, folder: str, error: str) -> Section:
    return Section(name=name, folder=folder, description=_description(name), status="error", error=error)


def _check_folder_name(name: Any, what: str) -> str:
    if not isinstance(name, str):
        raise TypeError(f"{what}: expected an experiment name (str), got {type(name).__name__}")
    if not name or name in (".", "..") or "/" in name or "\\" in name or name != name.strip():
        raise ValueError(f"{what}: expected a plain folder name for the experiment, got {name!r}")
    return name


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise ValueError(f"{path}: not valid JSON ({err})") from None


def _meta_pairs(meta: Mapping[str, Any]) -> tuple[tuple[str, str], ...]:
    return tuple((str(k), _value(v)) for k, v in meta.items())


def _wall(meta: Mapping[str, Any]) -> float | None:
    wall = meta.get("wall_seconds")
    return float(wall) if isinstance(wall, (int, float)) and not isinstance(wall, bool) else None


def _check_meta(meta: Any) -> dict[str, Any]:
    if meta is None:
        return {}
    if not isinstance(meta, Mapping) or not all(isinstance(k, str) for k in meta):
        raise TypeError(f"meta: expected a mapping with str keys, got {type(meta).__name__}")
    return _plain(dict(meta))


def report_from_runs(out_dir: str | Path, runs: Iterable[RunOutput], *, failures: Mapping[str, str] | None = None,
                     meta: Mapping[str, Any] | None = None, title: str = DEFAULT_TITLE, max_rows: int = MAX_ROWS,
                     environment: Mapping[str, str] | None = None) -> ReportData:
    """The report's data from in-memory runs (figures and ``run.json`` read from ``out_dir``).

    Args:
        out_dir: the results folder; run ``r`` must have been written to ``out_dir / r.experiment``.
        runs: the finished runs.
        failures: experiment name -> error text (a traceback) of the experiments that raised.
        meta: extra facts about the invocation (command, profile, ``wall_seconds``...), shown as is.
        title: page title.
        max_rows: rows shown per result table.
        environment: the environment to show; None collects this process's.

    Raises:
        TypeError: ``runs`` is not an iterable of RunOutput, ``failures`` or ``meta`` not a mapping.
        ValueError: a run's folder has no ``run.json``, or a name is both a run and a failure.

    Example:
        >>> report_from_runs("empty-report", [], failures={"x": "boom"}).errors
        ['x']
    """
    out_dir = Path(out_dir)
    if isinstance(runs, (RunOutput, str, bytes)) or not isinstance(runs, Iterable):
        raise TypeError(f"runs: expected an iterable of RunOutput, got {type(runs).__name__}")
    runs = list(runs)
    for r in runs:
        if not isinstance(r, RunOutput):
            raise TypeError(f"runs: expected RunOutput items (from kvmem.runner.run_experiment), got {type(r).__name__}")
    if failures is not None and not isinstance(failures, Mapping):
        raise TypeError(f"failures: expected a mapping of experiment name -> error text, got {type(failures).__name__}")
    failures = dict(failures or {})
    for name, text in failures.items():
        _check_folder_name(name, "failures")
        if not isinstance(text, str):
            raise TypeError(f"failures[{name!r}]: expected the error text (str), got {type(text).__name__}")
    if not isinstance(max_rows, int) or isinstance(max_rows, bool) or max_rows < 1:
        raise ValueError(f"max_rows: expected an integer >= 1, got {max_rows!r}")
    meta = _check_meta(meta)
    names = [r.experiment for r in runs]
    dupes = sorted({n for n in names if names.count(n) > 1} | (set(names) & set(failures)))
    if dupes:
        raise ValueError(f"runs/failures: each experiment may appear once, got {', '.join(dupes)} more than once")

    sections = []
    for r in runs:
        folder = _check_folder_name(r.experiment, "runs")
        run_json = out_dir / folder / "run.json"
        if not run_json.exists():
            raise ValueError(f"runs: {r.experiment} has no {run_json}; write it first with "
                             f"write_outputs(run, out_dir / run.experiment)")
        recorded = _read_json(run_json)
        sections.append(_section(
            r.experiment, folder, out_dir, profile=r.profile, seed=r.seed, seconds=round(r.seconds, 3),
            claims=[c.to_dict() for c in r.claims], tables=r.result.tables, scalars=_plain(r.result.scalars),
            config=_plain(r.result.config), versions=recorded.get("versions", {}), max_rows=max_rows))
    sections += [_error_section(name, name, text) for name, text in failures.items()]
    sections.sort(key=lambda s: s.folder)
    now = _now()
    env = collect_environment() if environment is None else dict(environment)
    return ReportData(title=title, generated=now, sections=tuple(sections), environment=tuple(env.items()),
                      environment_recorded=now, meta=_meta_pairs(meta), wall_seconds=_wall(meta))


def _read_csv(path: Path) -> pd.DataFrame:
    try:
        return pd.read_csv(path)
    except pd.errors.EmptyDataError:
        return pd.DataFrame()


def report_from_dir(out_dir: str | Path, *, title: str | None = None, max_rows: int = MAX_ROWS) -> ReportData:
    """The report's data read back from a results folder alone.

    Every sub-folder holding ``run.json`` or ``error.txt`` is an experiment; an
    ``error.txt`` newer than the folder's ``run.json`` marks it as failed. Meta and
    environment come from ``report.json`` when :func:`write_report` left one, otherwise
    the environment is this process's (and the page says so). ``title`` None: the title
    :func:`write_report` recorded, else the default.

    Raises:
        ValueError: ``out_dir`` is not a folder, or a JSON file in it is malformed.

    Example:
        >>> report_from_dir("empty-report-2") # doctest: +IGNORE_EXCEPTION_DETAIL
        Traceback (most recent call last):
        ValueError: out_dir: expected an existing results folder, got 'empty-report-2'
    """
    out = Path(out_dir)
    if not out.is_dir():
        raise ValueError(f"out_dir: expected an existing results folder, got {str(out_dir)!r}")
    if not isinstance(max_rows, int) or isinstance(max_rows, bool) or max_rows < 1:
        raise ValueError(f"max_rows: expected an integer >= 1, got {max_rows!r}")
    sections = []
    for folder in sorted(p for p in out.iterdir() if p.is_dir()):
        run_json, error = folder / "run.json", folder / ERROR_FILE
        if error.exists() and (not run_json.exists() or error.stat().st_mtime >= run_json.stat().st_mtime):
            sections.append(_error_section(folder.name, folder.name, error.read_text(encoding="utf-8")))
            continue
        if not run_json.exists():
            continue
        recorded = _read_json(run_json)
        claims_path = folder / "claims.json"
        claims = _read_json(claims_path) if claims_path.exists() else []
        tables = {p.stem: _read_csv(p) for p in sorted(folder.glob("*.csv"))}
        name = str(recorded.get("experiment", folder.name))
        sections.append(_section(
            name, folder.name, out, profile=recorded.get("profile"), seed=recorded.get("seed"),
            seconds=recorded.get("seconds"), claims=claims, tables=tables, scalars=recorded.get("scalars", {}),
            config=recorded.get("config", {}), versions=recorded.get("versions", {}), max_rows=max_rows))
    saved = _read_json(out / REPORT_JSON) if (out / REPORT_JSON).exists() else None
    if saved is not None:
        meta = saved.get("meta", {})
        env, recorded_at = saved.get("environment", {}), saved.get("generated")
    else:
        meta, env, recorded_at = {}, collect_environment(), None
    if title is None:
        title = str(saved.get("title", DEFAULT_TITLE)) if saved is not None else DEFAULT_TITLE
    return ReportData(title=title, generated=_now(), sections=tuple(sections), environment=tuple(env.items()),
                      environment_recorded=recorded_at, meta=_meta_pairs(meta), wall_seconds=_wall(meta))


# --------------------------------------------------------------------------- rendering

_CSS = """
:root { --pass: #116329; --pass-bg: #dafbe1; --fail: #a40e26; --fail-bg: #ffebe9; --muted: #57606a; --line: #d0d7de; }
* { box-sizing: border-box; }
body { font-family: system-ui, -apple-system, "Segoe UI", Roboto, Helvetica, Arial, sans-serif; line-height: 1.45;
       color: #1f2328; background: #fff; margin: 0 auto; padding: 1rem 1.5rem 3rem; max-width: 72rem; }
h1 { margin-bottom: .2rem; } h2 { border-bottom: 1px solid var(--line); padding-bottom: .2rem; margin-top: 2.2rem; }
h3 { margin-top: 1.6rem; } h4 { margin: 1.2rem 0 .3rem; }
.generated, .note, .description { color: var(--muted); }
.description { font-size: 1.05rem; }
dl.facts { display: grid; grid-template-columns: max-content 1fr; gap: .15rem 1rem; margin: .6rem 0; }
dl.facts dt { font-weight: 600; } dl.facts dd { margin: 0; overflow-wrap: anywhere; }
.summary { border: 1px solid var(--line); border-radius: 6px; padding: .6rem 1rem; background: #f6f8fa; }
.badge { display: inline-block; font-size: .8rem; font-weight: 600; border-radius: 1rem; padding: .05rem .6rem;
         vertical-align: middle; border: 1px solid currentColor; }
.badge.pass { color: var(--pass); background: var(--pass-bg); }
.badge.fail, .badge.error { color: var(--fail); background: var(--fail-bg); }
.badge.no-claims { color: var(--muted); background: #f6f8fa; }
table { border-collapse: collapse; margin: .4rem 0 1rem; font-size: .9rem; }
caption { text-align: left; padding: .2rem 0; }
th, td { border: 1px solid var(--line); padding: .25rem .5rem; text-align: left; vertical-align: top; }
thead th { background: #f6f8fa; }
td.result { font-weight: 700; white-space: nowrap; }
tr.pass td.result { color: var(--pass); background: var(--pass-bg); }
tr.fail td.result { color: var(--fail); background: var(--fail-bg); }
tr.fail td { border-left-color: var(--fail); }
.table-wrap { overflow-x: auto; max-width: 100%; }
figure { margin: 1rem 0; }
figure img { display: block; max-width: min(100%, 60rem); height: auto; border: 1px solid var(--line); }
figcaption { color: var(--muted); font-size: .85rem; }
.error-box { border: 2px solid var(--fail); background: var(--fail-bg); color: #1f2328; border-radius: 6px;
             padding: .6rem 1rem; margin: 1rem 0; }
.error-box strong { color: var(--fail); }
.error-box pre { white-space: pre-wrap; overflow-wrap: anywhere; font-size: .85rem; margin: .4rem 0 0; }
details { margin: .6rem 0; } summary { cursor: pointer; font-weight: 600; }
nav ol { padding-left: 1.4rem; } nav li { margin: .15rem 0; }
footer { margin-top: 3rem; color: var(--muted); font-size: .85rem; }
"""

_STATUS_TEXT = {"error": "error: no results", "no-claims": "no claims"}


def _e(text: Any) -> str:
    return html.escape(str(text), quote=True)


def _url(path: str) -> str:
    """A relative URL for a file path inside the results folder, escaped for an attribute."""
    return _e(quote(path, safe="/"))


def _time(iso: str) -> str:
    return f'<time datetime="{_e(iso)}">{_e(iso.replace("T", " "))}</time>'


def _anchor(section: Section, used: set[str]) -> str:
    base = "exp-" + (re.sub(r"[^A-Za-z0-9_-]+", "-", section.folder).strip("-") or "x")
    anchor, i = base, 2
    while anchor in used:
        anchor, i = f"{base}-{i}", i + 1
    used.add(anchor)
    return anchor


def _badge(section: Section) -> str:
    if section.status == "pass":
        text = f"pass: {section.n_passed}/{len(section.claims)} claims"
    elif section.status == "fail":
        text = f"FAIL: {section.n_failed} of {len(section.claims)} claims fail"
    else:
        text = _STATUS_TEXT[section.status]
    return f'<span class="badge {section.status}">{_e(text)}</span>'


def _frame_html(columns: tuple[str, ...], rows: tuple[tuple[str, ...], ...], css_class: str) -> str:
    frame = pd.DataFrame(list(rows), columns=list(columns)) if columns else pd.DataFrame()
    body = frame.to_html(index=False, escape=True, border=0, classes=[css_class], na_rep="", justify="left")
    return f'<div class="table-wrap">{body}</div>'


def _table_html(view: TableView, level: int = 4) -> str:
    parts = [f"<h{level}>{_e(view.name)}</h{level}>"]
    if view.note:
        parts.append(f'<p class="note">{_e(view.note)}</p>')
    link = f'<a href="{_url(view.csv)}">{_e(view.csv.rsplit("/", 1)[-1])}</a>' if view.csv else "no CSV file"
    if view.n_rows > len(view.rows):
        parts.append(f'<p class="note">Showing the first {len(view.rows)} of {view.n_rows} rows '
                     f"(numbers to 4 significant digits); full table: {link}.</p>")
    else:
        parts.append(f'<p class="note">{view.n_rows} rows (numbers to 4 significant digits); CSV: {link}.</p>')
    parts.append(_frame_html(view.columns, view.rows, "data"))
    return "\n".join(parts)


def _pairs_table(pairs: tuple[tuple[str, str], ...], key: str, value: str) -> str:
    rows = "".join(f"<tr><th scope=\"row\">{_e(k)}</th><td>{_e(v)}</td></tr>" for k, v in pairs)
    return (f'<div class="table-wrap"><table class="pairs"><thead><tr><th scope="col">{_e(key)}</th>'
            f'<th scope="col">{_e(value)}</th></tr></thead><tbody>{rows}</tbody></table></div>')


def _claims_html(section: Section) -> str:
    if not section.claims:
        return "<p>This experiment checks no claims.</p>"
    rows = []
    for c in section.claims:
        status = "pass" if c.passed else "fail"
        mark = "\u2713 pass" if c.passed else "\u2717 FAIL"
        rows.append(f'<tr class="{status}"><td>{_e(c.name)}</td><td>{_e(c.expected)}</td><td>{_e(c.measured)}</td>'
                    f'<td class="result {status}">{mark}</td></tr>')
    return ('<div class="table-wrap"><table class="claims"><caption class="note">'
            f"{section.n_passed} of {len(section.claims)} claims pass</caption><thead><tr>"
            '<th scope="col">claim</th><th scope="col">expected</th><th scope="col">measured</th>'
            '<th scope="col">result</th></tr></thead><tbody>' + "".join(rows) + "</tbody></table></div>")


def _published_html(section: Section) -> str:
    if not section.published and not section.paper_tables:
        return ""
    parts = ["<h3>Published numbers beside ours</h3>"]
    if section.published:
        cols = ("quantity", "published", "measured", "source", *section.published_extra_columns)
        rows = tuple((p.quantity, p.published, p.measured, p.source, *x)
                     for p, x in zip(section.published, section.published_extra))
        parts.append('<p class="note">"published" is the paper\'s number, "measured" is this run\'s; '
                     "settings may differ (see the source column and the experiment's documentation).</p>")
        parts.append(_frame_html(cols, rows, "published"))
    for view in section.paper_tables:
        parts.append(_table_html(view))
    return "\n".join(parts)


def _section_html(section: Section, anchor: str) -> str:
    parts = [f'<section id="{anchor}" aria-labelledby="{anchor}-title">',
             f'<h2 id="{anchor}-title">{_e(section.name)} {_badge(section)}</h2>']
    if section.description:
        parts.append(f'<p class="description">{_e(section.description)}</p>')
    if section.status == "error":
        parts.append('<div class="error-box"><p><strong>This experiment failed with an error</strong> '
                     "and produced no results; the other experiments still ran.</p>"
                     f"<pre>{_e(section.error)}</pre></div>")
        parts.append("</section>")
        return "\n".join(parts)
    facts = [("profile", section.profile), ("seed", section.seed), ("duration", _duration(section.seconds))]
    versions = dict(section.versions)
    if "torch_threads" in versions:
        facts.append(("torch threads", versions["torch_threads"]))
    shown = [f"{k} {v}" for k, v in versions.items() if k != "torch_threads"]
    if shown:
        facts.append(("versions used", ", ".join(shown)))
    parts.append('<dl class="facts">' + "".join(f"<dt>{_e(k)}</dt><dd>{_e(v)}</dd>" for k, v in facts) + "</dl>")
    parts.append("<h3>Claims</h3>")
    parts.append(_claims_html(section))
    parts.append(_published_html(section))
    if section.figures:
        parts.append("<h3>Figures</h3>")
        for fig in section.figures:
            size = f' width="{fig.width}" height="{fig.height}"' if fig.width and fig.height else ""
            parts.append(f'<figure><a href="{_url(fig.src)}"><img src="{_url(fig.src)}" alt="{_e(fig.alt)}"{size}></a>'
                         f"<figcaption>{_e(fig.src)}</figcaption></figure>")
    if section.tables:
        parts.append("<h3>Tables</h3>")
        parts.extend(_table_html(view) for view in section.tables)
    if section.config or section.scalars:
        parts.append("<h3>Settings and scalars</h3>")
    if section.config:
        parts.append(f"<details><summary>Configuration ({len(section.config)} settings)</summary>"
                     f"{_pairs_table(section.config, 'setting', 'value')}</details>")
    if section.scalars:
        parts.append(f"<details><summary>Scalars ({len(section.scalars)})</summary>"
                     f"{_pairs_table(section.scalars, 'scalar', 'value')}</details>")
    parts.append("</section>")
    return "\n".join(p for p in parts if p)


def render_html(report: ReportData) -> str:
    """The page for ``report``: one self-contained HTML document (inline CSS, no script).

    Example:
        >>> page = render_html(ReportData(title="t <1>", generated="2025-01-01T00:00:00+00:00", sections=()))
        >>> page.startswith("<!DOCTYPE html>") and "t &lt;1&gt;" in page
        True
    """
    used: set[str] = set()
    anchors = [_anchor(s, used) for s in report.sections]
    n_pass = sum(s.status == "pass" for s in report.sections)
    n_fail = sum(s.status == "fail" for s in report.sections)
    n_none = sum(s.status == "no-claims" for s in report.sections)
    n_err = len(report.errors)
    total = (f"{_duration(report.wall_seconds)} wall time; {_duration(report.seconds)} in the experiments"
             if report.wall_seconds is not None else f"{_duration(report.seconds)} (sum of the experiments' durations)")
    profiles = sorted({str(s.profile) for s in report.sections if s.profile is not None})
    seeds = sorted({s.seed for s in report.sections if s.seed is not None})
    verdict = "everything passed" if report.ok else "something failed"
    summary = [
        ("result", f"{'PASS' if report.ok else 'FAIL'}: {verdict}"),
        ("experiments", f"{len(report.sections)} ({n_pass} all claims pass, {n_fail} with failing claims, "
                        f"{n_err} failed with an error" + (f", {n_none} without claims" if n_none else "") + ")"),
        ("claims", f"{report.n_passed} passed, {report.n_failed} failed, of {report.n_claims}"),
        ("total time", total),
        ("profile", ", ".join(profiles) or "none"),
        ("seeds", ", ".join(str(s) for s in seeds) or "none"),
    ]
    head = f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{_e(report.title)}</title>
<link rel="icon" href="data:,">
<style>{_CSS}</style>
</head>
<body>
<header>
<h1>{_e(report.title)}</h1>
<p class="generated">Generated {_time(report.generated)}</p>
<dl class="facts summary" id="summary">{"".join(f"<dt>{_e(k)}</dt><dd>{_e(v)}</dd>" for k, v in summary)}</dl>
</header>"""
    toc = ['<nav aria-labelledby="toc-title">', '<h2 id="toc-title">Contents</h2>', "<ol>"]
    for section, anchor in zip(report.sections, anchors):
        toc.append(f'<li><a href="#{anchor}">{_e(section.name)}</a> {_badge(section)}</li>')
    toc.append('<li><a href="#environment">Run environment</a></li>')
    toc += ["</ol>", "</nav>"]
    body = ["<main>"]
    if not report.sections:
        body.append("<p>No experiment results were found.</p>")
    body += [_section_html(s, a) for s, a in zip(report.sections, anchors)]
    body.append('<section id="environment" aria-labelledby="environment-title">')
    body.append('<h2 id="environment-title">Run environment</h2>')
    if report.environment_recorded:
        body.append(f'<p class="note">Recorded {_time(report.environment_recorded)} by the process that wrote the report.</p>')
    else:
        body.append('<p class="note">No report.json was found: this is the environment of the process that rebuilt '
                    "the page, which may differ from the one that ran the experiments.</p>")
    if report.meta:
        body.append("<h3>Invocation</h3>")
        body.append(_pairs_table(report.meta, "item", "value"))
    body.append("<h3>Software and hardware</h3>")
    body.append(_pairs_table(report.environment, "item", "value"))
    body.append("</section>")
    body.append("</main>")
    foot = ('<footer><p>Written by kvmem.report. Figures and CSV files are linked by relative paths: '
            "keep this file beside the experiment folders.</p></footer>\n</body>\n</html>\n")
    return "\n".join([head, *toc, *body, foot])


# --------------------------------------------------------------------------- writing


def _write_atomic(path: Path, text: str) -> None:
    # A crash while writing must not leave a half page where a good one was.
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def write_report(out_dir: str | Path, runs: Iterable[RunOutput], *, failures: Mapping[str, str] | None = None,
                 meta: Mapping[str, Any] | None = None, title: str = DEFAULT_TITLE, max_rows: int = MAX_ROWS) -> Path:
    """Write ``out_dir/index.html`` for the runs of a ``reproduce`` and the experiments that raised.

    Also writes ``NAME/error.txt`` for each failure (and removes a stale one for each
    run) and ``report.json`` (meta and environment), so :func:`build_report_from_dir`
    can rebuild the same page later.

    Args:
        out_dir: results folder; each run already written with
            ``write_outputs(run, out_dir / run.experiment)``.
        runs: the finished :class:`~kvmem.runner.RunOutput` objects.
        failures: experiment name -> error text (e.g. ``traceback.format_exc()``).
        meta: facts about the invocation shown in the report (JSON-able values); a
            numeric ``wall_seconds`` is used as the total time.
        title: page title.
        max_rows: rows shown per result table (the CSV link has all).

    Returns:
        The path of ``index.html``.

    Raises:
        TypeError: ``runs``, ``failures`` or ``meta`` of the wrong type.
        ValueError: a run not yet written to ``out_dir``, or an experiment named twice.

    Example:
        >>> write_report("report-example", [], meta={"command": "kvmem reproduce"}).exists()
        True
    """
    out = Path(out_dir)
    data = report_from_runs(out, runs, failures=failures, meta=meta, title=title, max_rows=max_rows)
    out.mkdir(parents=True, exist_ok=True)
    for section in data.sections:
        error = out / section.folder / ERROR_FILE
        if section.status == "error":
            error.parent.mkdir(parents=True, exist_ok=True)
            error.write_text(section.error or "", encoding="utf-8")
        elif error.exists():
            error.unlink()
    saved = {"generated": data.environment_recorded, "title": data.title,
             "meta": _check_meta(meta), "environment": dict(data.environment)}
    _write_atomic(out / REPORT_JSON, json.dumps(saved, indent=2))
    page = out / INDEX
    _write_atomic(page, render_html(data))
    return page


def build_report_from_dir(out_dir: str | Path, *, title: str | None = None, max_rows: int = MAX_ROWS) -> Path:
    """Rebuild ``out_dir/index.html`` from the files in the results folder alone.

    Useful after a crash (the experiments that finished have their folders) and for
    ``kvmem results``. See :func:`report_from_dir` for what is read.

    Returns:
        The path of ``index.html``.

    Raises:
        ValueError: ``out_dir`` is not a folder, or a JSON file in it is malformed.

    Example:
        >>> import os; os.makedirs("rebuilt", exist_ok=True)
        >>> build_report_from_dir("rebuilt").name
        'index.html'
    """
    data = report_from_dir(out_dir, title=title, max_rows=max_rows)
    page = Path(out_dir) / INDEX
    _write_atomic(page, render_html(data))
    return page
