"""``kvmem reproduce``: run experiments in-process or on Dask, write their outputs and the report.

Each experiment is one task. A task runs the experiment (on a worker when a Dask backend
is used) and returns its :class:`~kvmem.runner.local.RunOutput`; the driver writes the
tables, figures and claims into ``DIR/NAME/`` and, at the end, ``DIR/index.html``
(:func:`kvmem.report.write_report`). An experiment that raises is recorded with its
traceback (in the report and in ``DIR/NAME/error.txt``) and the others still run.

Example:
    >>> from kvmem.runner.reproduce import reproduce
    >>> out = reproduce(["retrieval-basics"], out="demo-reproduce", overrides={"trials": "2"})
    >>> out.ok, out.report.name
    (True, 'index.html')
"""

from __future__ import annotations

import time
import traceback
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from ..experiments import Progress
from ..experiments.base import torch_threads
from .executor import Call, open_executor
from .local import RunOutput, run_experiment, write_outputs


@dataclass
class ReproduceOutput:
    """What :func:`reproduce` did.

    Attributes:
        runs: the finished runs, in the order of the names given.
        failures: experiment name -> traceback text, for those that raised.
        report: the path of ``index.html``.
        seconds: wall time of the whole command.
        backend: where the experiments ran ("in-process", "local cluster, 2 workers", ...).
    """

    runs: list[RunOutput]
    failures: dict[str, str] = field(default_factory=dict)
    report: Path | None = None
    seconds: float = 0.0
    backend: str = "in-process"

    @property
    def ok(self) -> bool:
        """True when no experiment raised and every claim held."""
        return not self.failures and all(run.passed for run in self.runs)


def run_on_worker(name: str, profile: str, overrides: Mapping[str, str], seed: int, threads: int | None) -> RunOutput:
    """One experiment as a task; ``threads`` pins torch's thread count (Dask workers: 1)."""
    with torch_threads(threads or 0):
        return run_experiment(name, profile=profile, overrides=dict(overrides), seed=seed)


def reproduce(
    names: Sequence[str],
    *,
    profile: str = "quick",
    seed: int = 0,
    out: str | Path = "kvmem-results",
    overrides: Mapping[str, str] | None = None,
    workers: int | None = None,
    scheduler: str | None = None,
    connect_timeout: float = 5.0,
    progress: Callable[[str], Progress] | None = None,
    on_done: Callable[[str, RunOutput | None, str | None], None] | None = None,
) -> ReproduceOutput:
    """Run the experiments ``names`` and write ``out/NAME/*`` and ``out/index.html``.

    Args:
        names: registered experiment names (see :func:`kvmem.experiments.names`).
        profile: ``"quick"`` or ``"full"``.
        seed: the seed of every experiment.
        out: the output folder.
        overrides: ``--set``-style settings applied to every experiment (mainly for tests).
        workers, scheduler, connect_timeout: the backend (:func:`~kvmem.runner.open_executor`):
            in-process by default, a Dask ``LocalCluster`` with ``workers`` processes, or an
            existing cluster at ``scheduler``. On Dask each experiment runs with one torch
            thread per worker.
        progress: ``progress(name) -> Progress`` for in-process runs (per-task bars).
        on_done: called as each experiment finishes: ``(name, run or None, error or None)``.

    Raises:
        ValueError: an unknown experiment or profile, or a bad backend choice.
        BackendUnavailable: the Dask backend cannot be reached or started.
    """
    from .. import experiments
    from ..report import write_report

    unknown = [n for n in names if n not in experiments.REGISTRY]
    if unknown:
        raise ValueError(f"unknown experiment(s) {', '.join(unknown)}; known: {', '.join(experiments.names())}")
    if profile not in experiments.PROFILES:
        raise ValueError(f"profile: expected one of {experiments.PROFILES}, got {profile!r}")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    overrides = dict(overrides or {})
    start = time.perf_counter()
    runs: dict[str, RunOutput] = {}
    failures: dict[str, str] = {}

    def finish(name: str, run: RunOutput | None, error: str | None) -> None:
        if run is not None:
            try:
                write_outputs(run, out / name)
                runs[name] = run
            except Exception:  # noqa: BLE001 - a plotting error is this experiment's failure
                error = traceback.format_exc()
        if error is not None:
            failures[name] = error
        if on_done is not None:
            on_done(name, runs.get(name), failures.get(name))

    with open_executor(workers, scheduler, connect_timeout=connect_timeout) as executor:
        backend = executor.description
        if executor.backend == "in-process":
            for name in names:
                try:
                    bar = progress(name) if progress is not None else None
                    run = run_experiment(name, profile=profile, overrides=overrides, seed=seed, progress=bar)
                except Exception:  # noqa: BLE001 - recorded; the other experiments still run
                    finish(name, None, traceback.format_exc())
                else:
                    finish(name, run, None)
        else:
            calls = [Call(name, (name, profile, overrides, seed, 1)) for name in names]
            for outcome in executor.imap_unordered(run_on_worker, calls):
                if outcome.ok:
                    finish(outcome.key, outcome.value, None)
                else:
                    err = outcome.error
                    text = "".join(traceback.format_exception(type(err), err, err.__traceback__))
                    finish(outcome.key, None, text)
    seconds = time.perf_counter() - start
    ordered = [runs[n] for n in names if n in runs]
    meta = {"command": "kvmem reproduce", "profile": profile, "seed": seed, "backend": backend,
            "experiments": ", ".join(names), "wall_seconds": round(seconds, 3)}
    report = write_report(out, ordered, failures=failures, meta=meta)
    return ReproduceOutput(ordered, failures, report, seconds, backend)
