"""Parameter sweeps: the Cartesian product of a grid of settings times seeds, resumable.

``kvmem sweep NAME --grid key=v1,v2 --seeds 0-9 --out DIR`` (or :func:`run_sweep`) turns
every (grid point, seed) into one task, identified by a hash of the experiment name, the
canonical JSON of its full config and the seed. The driver:

1. builds every grid point's config with the experiment's typed
   ``Experiment.config(profile, overrides)`` (so a bad value fails before anything runs);
2. records the sweep and its planned tasks in ``DIR/sweep.sqlite`` (:mod:`.store`);
3. submits only the tasks not yet ``done`` to the backend (:mod:`.executor`);
4. stores each finished task, with all its tables, in one transaction as it completes.

A sweep killed at any moment, ``kill -9`` included, therefore resumes by rerunning the same
command: finished tasks are skipped, nothing is stored twice and nothing finished is lost.
Tasks that raised are recorded as ``failed`` with their error and are retried on the next run.

Tasks are submitted seed by seed (every grid point for the first seed, then the next seed),
so an interrupted sweep holds whole grids for its first seeds.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import importlib
import io
import itertools
import json
import os
import socket
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..experiments import Progress, get
from ..experiments.base import torch_threads
from .executor import Call, check_backend, open_executor
from .local import _jsonable, _versions, run_experiment
from .store import PlannedTask, Store


@dataclass(frozen=True)
class SweepSpec:
    """What a sweep runs.

    Attributes:
        experiment: registered experiment name.
        profile: ``quick`` or ``full``; grid values and ``fixed`` override it.
        grid: ``(key, (value text, ...))`` pairs in the order given; the product is swept.
        seeds: the seeds, in order.
        fixed: ``--set`` overrides shared by every task (strings).
    """

    experiment: str
    profile: str
    grid: tuple[tuple[str, tuple[str, ...]], ...]
    seeds: tuple[int, ...]
    fixed: tuple[tuple[str, str], ...] = ()

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (stored in the ``sweeps`` table)."""
        return {"experiment": self.experiment, "profile": self.profile,
                "grid": [[k, list(v)] for k, v in self.grid], "seeds": list(self.seeds),
                "fixed": dict(self.fixed)}

    @property
    def sweep_id(self) -> str:
        """Hash of the canonical spec."""
        return _hash(json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":")))

    @property
    def size(self) -> int:
        """Number of tasks: grid points x seeds."""
        n = len(self.seeds)
        for _, values in self.grid:
            n *= len(values)
        return n


@dataclass
class SweepReport:
    """What :func:`run_sweep` did.

    Attributes:
        experiment: the experiment swept.
        store: path of the SQLite store.
        planned: tasks in the sweep (grid points x seeds).
        skipped: tasks already ``done`` before this run (not rerun).
        finished: tasks this run stored.
        failed: tasks that raised in this run (stored as ``failed``; retried next time).
        errors: ``(task_id, params, seed, one-line error)`` of the failed tasks.
        seconds: wall time of this run.
        backend: where the tasks ran ("in-process", "local cluster, 2 workers", ...).
    """

    experiment: str
    store: Path
    planned: int
    skipped: int = 0
    finished: int = 0
    failed: int = 0
    errors: list[tuple[str, dict[str, Any], int, str]] = field(default_factory=list)
    seconds: float = 0.0
    backend: str = "in-process"

    @property
    def complete(self) -> bool:
        """True when every planned task is now ``done``."""
        return self.skipped + self.finished == self.planned


def _hash(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:32]


def canonical_config(config: Any) -> str:
    """The config as canonical JSON: sorted keys, no spaces, tuples as lists.

    Example:
        >>> from kvmem.experiments import get
        >>> canonical_config(get("retrieval-basics").config("quick", {"trials": "2"}))[:40]
        '{"decay":0.9,"delta_passes":100000000000'
    """
    data = dataclasses.asdict(config) if dataclasses.is_dataclass(config) else dict(config)
    return json.dumps(_jsonable(data), sort_keys=True, separators=(",", ":"))


def task_id(experiment: str, config_json: str, seed: int) -> str:
    """The id of one task: a hash of experiment name, canonical config JSON and seed.

    Example:
        >>> task_id("retrieval-basics", '{"trials":2}', 0) == task_id("retrieval-basics", '{"trials":2}', 0)
        True
        >>> task_id("retrieval-basics", '{"trials":2}', 0) == task_id("retrieval-basics", '{"trials":2}', 1)
        False
    """
    return _hash(f"{experiment}\0{config_json}\0{int(seed)}")


def parse_seeds(text: str | int | Iterable[int]) -> tuple[int, ...]:
    """Seeds from ``"0-9"``, ``"0,3,7"``, ``"0-4,10"``, an int or an iterable of ints.

    Raises:
        ValueError: empty, negative, reversed range, repeated seed or not a number.

    Example:
        >>> parse_seeds("0-3,7")
        (0, 1, 2, 3, 7)
    """
    if isinstance(text, bool):
        raise ValueError(f"--seeds: expected seeds like 0-9 or 0,3,7, got {text!r}")
    if isinstance(text, int):
        seeds: list[int] = [text]
    elif isinstance(text, str):
        seeds = []
        for part in (p.strip() for p in text.split(",")):
            lo, sep, hi = part.partition("-")
            try:
                if sep:
                    a, b = int(lo), int(hi)
                    if b < a:
                        raise ValueError
                    seeds.extend(range(a, b + 1))
                else:
                    seeds.append(int(part))
            except ValueError:
                raise ValueError(f"--seeds: expected seeds like 0-9 or 0,3,7, got {text!r}") from None
    else:
        seeds = list(text)
        if not all(isinstance(s, int) and not isinstance(s, bool) for s in seeds):
            raise ValueError(f"--seeds: expected integers, got {seeds!r}")
    if not seeds:
        raise ValueError("--seeds: expected at least one seed")
    if min(seeds) < 0:
        raise ValueError(f"--seeds: expected non-negative seeds, got {min(seeds)}")
    if len(set(seeds)) != len(seeds):
        raise ValueError(f"--seeds: seed listed twice in {text!r}")
    return tuple(seeds)


def _text(value: Any) -> str:
    # Python values to the strings Experiment.config parses (the --set syntax).
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "none"
    if isinstance(value, (list, tuple)):
        return ",".join(_text(v) for v in value)
    return repr(value) if isinstance(value, float) else str(value)


def parse_grid(grid: Sequence[str] | Mapping[str, Any]) -> tuple[tuple[str, tuple[str, ...]], ...]:
    """Grid entries ``"key=v1,v2,..."`` (or a mapping key -> values) as ``(key, values)`` pairs.

    Values are separated by commas; for a setting whose values contain commas themselves
    (a tuple such as ``n_pairs``) separate the values with ``;`` instead:
    ``n_pairs=4,8;16,32`` sweeps the two tuples (4, 8) and (16, 32).

    Raises:
        ValueError: missing ``=``, empty key or value, a key given twice.

    Example:
        >>> parse_grid(["key_dim=8,16", "n_pairs=4,8;16"])
        (('key_dim', ('8', '16')), ('n_pairs', ('4,8', '16')))
        >>> parse_grid({"trials": [2, 3]})
        (('trials', ('2', '3')),)
    """
    pairs: list[tuple[str, tuple[str, ...]]] = []
    if isinstance(grid, Mapping):
        for key, values in grid.items():
            if isinstance(values, (str, bytes)) or not isinstance(values, Iterable):
                raise ValueError(f"--grid {key}: expected a list of values, got {values!r}")
            pairs.append((str(key), tuple(_text(v) for v in values)))
    else:
        if isinstance(grid, str):
            raise ValueError(f"--grid: expected a list of key=v1,v2 entries, got the string {grid!r}")
        for entry in grid:
            if not isinstance(entry, str) or "=" not in entry:
                raise ValueError(f"--grid expects key=v1,v2,..., got {entry!r}")
            key, text = entry.split("=", 1)
            sep = ";" if ";" in text else ","
            pairs.append((key.strip(), tuple(v.strip() for v in text.split(sep))))
    seen = set()
    for key, values in pairs:
        if not key:
            raise ValueError("--grid: empty setting name")
        if key in seen:
            raise ValueError(f"--grid {key}: given twice; list all its values in one --grid")
        seen.add(key)
        if not values or any(v == "" for v in values):
            raise ValueError(f"--grid {key}: empty value in {','.join(values)!r}")
    return tuple(pairs)


def make_spec(experiment: str, grid: Sequence[str] | Mapping[str, Any] = (), seeds: Any = "0", *,
              profile: str = "quick", fixed: Mapping[str, Any] | None = None) -> SweepSpec:
    """Validate a sweep's inputs into a :class:`SweepSpec` (nothing is run or written).

    Raises:
        ValueError: unknown experiment or profile, bad grid or seeds, a key both fixed and swept.
    """
    get(experiment)
    fixed_pairs = tuple((str(k), _text(v)) for k, v in (fixed or {}).items())
    spec = SweepSpec(experiment, profile, parse_grid(grid), parse_seeds(seeds), fixed_pairs)
    both = {k for k, _ in spec.grid} & {k for k, _ in spec.fixed}
    if both:
        raise ValueError(f"--grid {sorted(both)[0]}: also given with --set; give it in one place")
    return spec


def plan_sweep(spec: SweepSpec) -> list[PlannedTask]:
    """Every task of the sweep, seed by seed, each with its typed config checked.

    Raises:
        ValueError: a grid value that the experiment's config does not accept (the message
            names the setting), or two grid values that give the same config.

    Example:
        >>> spec = make_spec("retrieval-basics", ["key_dim=8,16"], "0-1", fixed={"trials": 2})
        >>> tasks = plan_sweep(spec)
        >>> [(t.params["key_dim"], t.seed) for t in tasks]
        [(8, 0), (16, 0), (8, 1), (16, 1)]
    """
    experiment = get(spec.experiment)
    keys = [k for k, _ in spec.grid]
    points = []
    seen: dict[str, dict[str, str]] = {}
    for combo in itertools.product(*(values for _, values in spec.grid)):
        overrides = {**dict(spec.fixed), **dict(zip(keys, combo))}
        try:
            config = experiment.config(spec.profile, overrides)
        except ValueError as err:
            # Experiment.config speaks of --set; name --grid when a swept value is at fault.
            message = str(err)
            if any(message.startswith(f"--set {k}:") or f"setting {k!r}" in message for k in keys):
                message = message.replace("--set", "--grid", 1)
            raise ValueError(message) from None
        cfg = canonical_config(config)
        if cfg in seen:
            a = ", ".join(f"{k}={v}" for k, v in seen[cfg].items())
            b = ", ".join(f"{k}={v}" for k, v in zip(keys, combo))
            raise ValueError(f"--grid: {a} and {b} give the same config; list each value once")
        seen[cfg] = dict(zip(keys, combo))
        params = {k: _jsonable(getattr(config, k)) for k in keys}
        points.append((cfg, params, overrides))
    tasks = []
    for seed in spec.seeds:
        for cfg, params, overrides in points:
            tasks.append(PlannedTask(
                task_id=task_id(spec.experiment, cfg, seed), experiment=spec.experiment, profile=spec.profile,
                config=cfg, config_hash=_hash(f"{spec.experiment}\0{cfg}"), params=params, overrides=overrides,
                seed=seed))
    return tasks


def _table_bytes(table: Any) -> bytes:
    """A DataFrame as Parquet bytes (exact dtypes and floats); mixed object columns as text."""
    buf = io.BytesIO()
    try:
        table.to_parquet(buf, index=False, engine="pyarrow")
    except Exception:  # noqa: BLE001 - pyarrow raises several types for columns it cannot hold
        fixed = table.copy()
        for col in fixed.columns:
            if fixed[col].dtype == object:
                fixed[col] = fixed[col].map(lambda v: v if v is None or isinstance(v, str) else str(v))
        buf = io.BytesIO()
        fixed.to_parquet(buf, index=False, engine="pyarrow")
    return buf.getvalue()


def run_task(experiment: str, profile: str, overrides: Mapping[str, str], seed: int, *,
             module: str | None = None, threads: int = 1) -> dict[str, Any]:
    """Run one sweep task and return a plain, picklable payload (the worker function).

    Args:
        experiment: registered experiment name.
        profile: the profile the overrides apply to.
        overrides: ``--set``-style strings that build the task's config.
        seed: the random seed.
        module: module to import first so the experiment is registered on a fresh worker
            (experiments register themselves on import).
        threads: torch threads while the task runs (restored afterwards). One thread on
            every backend keeps results identical between in-process and Dask runs; the
            parallelism of a sweep comes from running tasks side by side.

    Returns:
        ``{"config", "claims", "scalars", "tables", "table_rows", "seconds", "versions",
        "worker"}``: the canonical config JSON, claims as dicts, JSON-ready scalars, each
        table as Parquet bytes with its row count, the run time, package versions and
        ``host:pid`` of the process that ran it.

    Example:
        >>> out = run_task("retrieval-basics", "quick",
        ...                {"trials": "2", "n_pairs": "4,8", "noise_levels": "0.0"}, 0)
        >>> sorted(out["tables"]), out["table_rows"]["retrieval"], out["scalars"]
        (['retrieval'], 30, {'key_dim': 32})
    """
    if module:
        importlib.import_module(module)
    with torch_threads(threads):
        run = run_experiment(experiment, profile=profile, overrides=dict(overrides), seed=seed)
    tables = {name: _table_bytes(t) for name, t in run.result.tables.items()}
    return {
        "config": canonical_config(run.result.config),
        "claims": [c.to_dict() for c in run.claims],
        "scalars": _jsonable(run.result.scalars),
        "tables": tables,
        "table_rows": {name: len(t) for name, t in run.result.tables.items()},
        "seconds": run.seconds,
        "versions": {**_versions(), "torch_threads": str(threads)},
        "worker": f"{socket.gethostname()}:{os.getpid()}",
    }


def _one_line(err: BaseException) -> str:
    text = f"{type(err).__name__}: {err}".strip()
    return text.splitlines()[0] if text else type(err).__name__


def run_sweep(
    experiment: str,
    grid: Sequence[str] | Mapping[str, Any] = (),
    seeds: Any = "0",
    *,
    out: str | Path,
    profile: str = "quick",
    fixed: Mapping[str, Any] | None = None,
    workers: int | None = None,
    scheduler: str | None = None,
    connect_timeout: float = 5.0,
    threads: int = 1,
    progress: Progress | None = None,
) -> SweepReport:
    """Run (or resume) a sweep into ``out``; only tasks not yet ``done`` are run.

    Args:
        experiment: registered experiment name.
        grid: ``["key=v1,v2", ...]`` or ``{"key": [v1, v2]}``; the product is swept.
        seeds: ``"0-9"``, ``"0,3"``, an int or a list of ints.
        out: output folder; the store is ``out/sweep.sqlite``.
        profile: base profile of every task.
        fixed: settings shared by every task (the ``--set`` of ``kvmem run``).
        workers: run on a Dask ``LocalCluster`` with this many single-threaded workers.
        scheduler: run on the existing Dask cluster at this address.
        connect_timeout: seconds to wait for ``scheduler``.
        threads: torch threads per task (see :func:`run_task`).
        progress: ``total(n)`` is called with the number of tasks to run, ``advance()``
            after each task is stored.

    Raises:
        ValueError: unknown experiment, bad grid value or seeds, bad backend choice.
        StoreError: the output folder or store cannot be written.
        BackendUnavailable: the scheduler cannot be reached / the cluster cannot start.
        KeyboardInterrupt: passed on after the backend is shut down; every task stored
            until then stays stored.

    Example:
        >>> report = run_sweep("retrieval-basics", ["key_dim=8,16"], "0-1", out="example-sweep",
        ...                    fixed={"trials": 2, "n_pairs": "4,8", "noise_levels": "0.0"})
        >>> report.planned, report.finished, report.complete
        (4, 4, True)
        >>> run_sweep("retrieval-basics", ["key_dim=8,16"], "0-1", out="example-sweep",
        ...           fixed={"trials": 2, "n_pairs": "4,8", "noise_levels": "0.0"}).skipped
        4
    """
    start = time.perf_counter()
    progress = progress or Progress()
    spec = make_spec(experiment, grid, seeds, profile=profile, fixed=fixed)
    tasks = plan_sweep(spec)
    check_backend(workers, scheduler)
    if not isinstance(threads, int) or isinstance(threads, bool) or threads < 1:
        raise ValueError(f"threads: expected a positive integer, got {threads!r}")
    module = getattr(get(experiment).run, "__module__", None)

    with Store(out) as store:
        store.add_sweep(spec.sweep_id, spec.experiment, spec.profile, spec.to_dict(), tasks)
        done = store.finished_ids()
        todo = [t for t in tasks if t.task_id not in done]
        report = SweepReport(experiment, store.path, len(tasks), skipped=len(tasks) - len(todo))
        progress.total(len(todo))
        if todo:
            by_id = {t.task_id: t for t in todo}
            calls = [Call(t.task_id, (t.experiment, t.profile, dict(t.overrides), t.seed),
                          {"module": module, "threads": threads}) for t in todo]
            with open_executor(workers, scheduler, connect_timeout=connect_timeout) as executor:
                report.backend = executor.description
                outcomes = executor.imap_unordered(run_task, calls)
                with contextlib.closing(outcomes):
                    for outcome in outcomes:
                        task = by_id[outcome.key]
                        payload = outcome.value
                        if outcome.ok and payload.get("config") != task.config:
                            outcome.error = RuntimeError(
                                "the worker built a different config than the driver (different kvmem versions?)")
                        if outcome.ok:
                            stored = store.finish(
                                task.task_id, seconds=payload["seconds"], claims=payload["claims"],
                                scalars=payload["scalars"], tables=payload["tables"],
                                table_rows=payload["table_rows"], versions=payload["versions"],
                                worker=payload["worker"], backend=executor.backend)
                            report.finished += int(stored)
                        else:
                            message = _one_line(outcome.error)
                            store.fail(task.task_id, message, backend=executor.backend)
                            report.failed += 1
                            report.errors.append((task.task_id, dict(task.params), task.seed, message))
                        progress.advance()
    report.seconds = time.perf_counter() - start
    return report
