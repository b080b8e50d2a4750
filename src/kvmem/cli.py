"""The ``kvmem`` command line: list and run experiments.

Exit codes: 0 success; 1 a checked claim failed; 2 bad usage (unknown experiment,
unknown setting, ill-typed value), reported in one line without a traceback.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress as RichProgress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.table import Table

from . import experiments
from .experiments import PROFILES, Progress

app = typer.Typer(
    help="kvmem: key-value memory models and the experiments of 'Key-value memory in the brain'.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
console = Console()
errors = Console(stderr=True)


class _BarProgress(Progress):
    """Adapts the experiment progress callback to a rich progress bar."""

    def __init__(self, bar: RichProgress, description: str) -> None:
        self.bar = bar
        self.task = bar.add_task(description, total=None)

    def total(self, n: int) -> None:
        self.bar.update(self.task, total=n)

    def advance(self, n: int = 1) -> None:
        self.bar.advance(self.task, n)


def _bar(quiet: bool) -> RichProgress:
    return RichProgress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=errors,
        disable=quiet,
        transient=True,
    )


def _fail(message: str) -> typer.Exit:
    errors.print(f"error: {message}", highlight=False, soft_wrap=True)
    return typer.Exit(code=2)


def _parse_sets(pairs: list[str]) -> dict[str, str]:
    overrides = {}
    for pair in pairs:
        if "=" not in pair:
            raise _fail(f"--set expects key=value, got {pair!r}")
        key, value = pair.split("=", 1)
        overrides[key.strip()] = value.strip()
    return overrides


def _check_device(device: str) -> None:
    """Exit 2 with the reason when ``--device`` names no usable device here."""
    from .experiments.base import resolve_device

    try:
        resolve_device(device, "--device")
    except ValueError as err:
        raise _fail(str(err)) from None


def _claims_table(name: str, claims) -> Table:
    table = Table(title=f"claims: {name}", show_lines=False)
    for col in ("claim", "expected", "measured", "result"):
        table.add_column(col, overflow="fold")
    for c in claims:
        table.add_row(c.name, c.expected, str(c.measured), "[green]pass[/]" if c.passed else "[red]FAIL[/]")
    return table


def _run_one(name: str, profile: str, overrides: dict[str, str], seed: int, out: Path, quiet: bool):
    from .runner import run_experiment, write_outputs

    try:
        with _bar(quiet) as bar:
            run = run_experiment(name, profile=profile, overrides=overrides, seed=seed,
                                 progress=_BarProgress(bar, f"{name} ({profile})"))
    except ValueError as err:
        raise _fail(str(err)) from None
    write_outputs(run, out)
    if not quiet:
        console.print(_claims_table(name, run.claims))
        console.print(f"wrote {out} in {run.seconds:.1f} s")
    return run


@app.command("list")
def list_experiments(
    names: Annotated[bool, typer.Option("--names", help="Print bare names, one per line.")] = False,
) -> None:
    """List the registered experiments."""
    if names:
        for name in experiments.names():
            print(name)
        return
    table = Table(title="experiments")
    table.add_column("name")
    table.add_column("description")
    for name in experiments.names():
        table.add_row(name, experiments.get(name).description)
    console.print(table)


@app.command("run")
def run(
    name: Annotated[str, typer.Argument(help="Experiment name (see `kvmem list`).")],
    profile: Annotated[str, typer.Option(help="Settings profile: quick or full.")] = "quick",
    set_: Annotated[Optional[list[str]], typer.Option("--set", help="Override a setting: key=value (repeatable).")] = None,
    seed: Annotated[int, typer.Option(help="Random seed.")] = 0,
    out: Annotated[Optional[Path], typer.Option(help="Output folder (default: kvmem-results/NAME).")] = None,
    quiet: Annotated[bool, typer.Option("--quiet", help="No progress bar or tables.")] = False,
    device: Annotated[Optional[str], typer.Option(help="Torch device: cpu, cuda or cuda:N (same as --set device=...).")] = None,
) -> None:
    """Run one experiment; write CSV tables, PNG figures and claims.json; exit 1 if a claim fails."""
    if name not in experiments.REGISTRY:
        raise _fail(f"unknown experiment {name!r}; known: {', '.join(experiments.names())}")
    if profile not in PROFILES:
        raise _fail(f"--profile: expected one of {', '.join(PROFILES)}, got {profile!r}")
    sets = _parse_sets(set_ or [])
    if device is not None:
        _check_device(device)
        sets["device"] = device
    result = _run_one(name, profile, sets, seed, out or Path("kvmem-results") / name, quiet)
    if not result.passed:
        raise typer.Exit(code=1)


@app.command("reproduce")
def reproduce(
    profile: Annotated[str, typer.Option(help="Settings profile: quick or full.")] = "quick",
    out: Annotated[Path, typer.Option(help="Output folder: index.html and one sub-folder per experiment.")] = Path("kvmem-results"),
    only: Annotated[Optional[list[str]], typer.Option("--only", help="Run only these experiments (repeatable).")] = None,
    seed: Annotated[int, typer.Option(help="Random seed.")] = 0,
    workers: Annotated[Optional[int], typer.Option(help="Run the experiments on a Dask LocalCluster with N workers.")] = None,
    scheduler: Annotated[Optional[str], typer.Option(help="Run them on an existing Dask cluster: tcp://host:port.")] = None,
    connect_timeout: Annotated[float, typer.Option(help="Seconds to wait for --scheduler.")] = 5.0,
    quiet: Annotated[bool, typer.Option("--quiet", help="No progress bars or tables.")] = False,
    device: Annotated[Optional[str], typer.Option(help="Torch device of every experiment: cpu, cuda or cuda:N.")] = None,
) -> None:
    """Run every registered experiment (or those named) and write the HTML report DIR/index.html.

    Exit codes: 0 every claim held; 1 a claim failed or an experiment raised (the others
    still run; the report shows which); 2 bad usage, unwritable folder or unreachable
    scheduler; 130 interrupted.
    """
    from .runner.executor import BackendUnavailable, check_backend
    from .runner.reproduce import reproduce as run_all

    if profile not in PROFILES:
        raise _fail(f"--profile: expected one of {', '.join(PROFILES)}, got {profile!r}")
    names = only or experiments.names()
    unknown = [n for n in names if n not in experiments.REGISTRY]
    if unknown:
        raise _fail(f"--only: unknown experiment(s) {', '.join(unknown)}; known: {', '.join(experiments.names())}")
    if device is not None:
        _check_device(device)
    try:
        check_backend(workers, scheduler)
        out.mkdir(parents=True, exist_ok=True)
        probe = out / ".kvmem-write-test"
        probe.write_text("")
        probe.unlink()
    except ValueError as err:
        raise _fail(str(err)) from None
    except OSError as err:
        raise _fail(f"--out: cannot write to {out}: {err.strerror or err}") from None

    summary = Table(title=f"kvmem reproduce ({profile})")
    for col in ("experiment", "claims passed", "seconds"):
        summary.add_column(col)
    with _bar(quiet) as bar:
        overall = bar.add_task(f"experiments ({profile})", total=len(names))

        def on_done(name, run, error):
            bar.advance(overall)
            if run is not None:
                n_ok = sum(c.passed for c in run.claims)
                summary.add_row(name, f"{n_ok}/{len(run.claims)}", f"{run.seconds:.1f}")
            else:
                summary.add_row(name, "[red]raised[/]", "-")

        def progress(name):
            return _BarProgress(bar, f"{name} ({profile})")

        try:
            result = run_all(names, profile=profile, seed=seed, out=out, workers=workers, scheduler=scheduler,
                             connect_timeout=connect_timeout, progress=progress, on_done=on_done,
                             overrides=None if device is None else {"device": device})
        except (ValueError, BackendUnavailable) as err:
            raise _fail(str(err)) from None
        except KeyboardInterrupt:
            errors.print("interrupted; experiments already written are kept in their folders", highlight=False)
            raise typer.Exit(code=130) from None
    if not quiet:
        console.print(summary)
        for name, error in result.failures.items():
            last = error.strip().splitlines()[-1] if error.strip() else "error"
            errors.print(f"{name} raised: {last}", highlight=False, soft_wrap=True)
        console.print(f"report: {result.report} ({result.seconds:.1f} s, {result.backend})", highlight=False)
    if not result.ok:
        raise typer.Exit(code=1)


def _frame_table(title: str, df, floats: str = "{:.4g}") -> Table:
    table = Table(title=title)
    for col in df.columns:
        table.add_column(str(col), overflow="fold")
    for row in df.itertuples(index=False):
        table.add_row(*(floats.format(v) if isinstance(v, float) else str(v) for v in row))
    return table


@app.command("sweep")
def sweep(
    name: Annotated[str, typer.Argument(help="Experiment name (see `kvmem list`).")],
    grid: Annotated[Optional[list[str]], typer.Option("--grid", help="Swept setting: key=v1,v2,... (repeatable; "
                                                      "use ';' between values that contain commas).")] = None,
    seeds: Annotated[str, typer.Option(help="Seeds: 0-9, 0,3,7 or 0-4,10.")] = "0",
    profile: Annotated[str, typer.Option(help="Settings profile: quick or full.")] = "quick",
    set_: Annotated[Optional[list[str]], typer.Option("--set", help="Fixed setting for every task: key=value (repeatable).")] = None,
    out: Annotated[Optional[Path], typer.Option(help="Output folder holding sweep.sqlite (default: kvmem-sweeps/NAME).")] = None,
    workers: Annotated[Optional[int], typer.Option(help="Run on a Dask LocalCluster with N single-threaded workers.")] = None,
    scheduler: Annotated[Optional[str], typer.Option(help="Join an existing Dask cluster: tcp://host:port.")] = None,
    connect_timeout: Annotated[float, typer.Option(help="Seconds to wait for --scheduler.")] = 5.0,
    quiet: Annotated[bool, typer.Option("--quiet", help="No progress bar.")] = False,
) -> None:
    """Run the grid x seeds of an experiment into a resumable SQLite store; rerun to resume.

    Exit codes: 0 every task done; 1 some task raised (recorded, retried on rerun);
    2 bad usage, unwritable folder or unreachable scheduler; 130 interrupted.
    """
    from .runner.executor import BackendUnavailable
    from .runner.store import StoreError
    from .runner.sweep import make_spec, run_sweep

    if name not in experiments.REGISTRY:
        raise _fail(f"unknown experiment {name!r}; known: {', '.join(experiments.names())}")
    if profile not in PROFILES:
        raise _fail(f"--profile: expected one of {', '.join(PROFILES)}, got {profile!r}")
    fixed = _parse_sets(set_ or [])
    out = out or Path("kvmem-sweeps") / name
    try:
        spec = make_spec(name, grid or [], seeds, profile=profile, fixed=fixed)
    except ValueError as err:
        raise _fail(str(err)) from None
    try:
        with _bar(quiet) as bar:
            report = run_sweep(name, grid or [], seeds, out=out, profile=profile, fixed=fixed, workers=workers,
                               scheduler=scheduler, connect_timeout=connect_timeout,
                               progress=_BarProgress(bar, f"sweep {name} ({spec.size} tasks)"))
    except (ValueError, StoreError, BackendUnavailable) as err:
        raise _fail(str(err)) from None
    except KeyboardInterrupt:
        errors.print(f"interrupted; finished tasks are kept in {out}; rerun the same command to resume",
                     highlight=False, soft_wrap=True)
        raise typer.Exit(code=130) from None
    if not quiet:
        console.print(f"sweep {name}: {report.planned} tasks, {report.skipped} already done, {report.finished} run, "
                      f"{report.failed} failed in {report.seconds:.1f} s ({report.backend}); store {report.store}",
                      highlight=False, soft_wrap=True)
    for task_id, params, seed, message in report.errors:
        errors.print(f"task {task_id} ({params}, seed {seed}) failed: {message}", highlight=False, soft_wrap=True)
    if report.failed:
        raise typer.Exit(code=1)


@app.command("bench")
def bench(
    quick: Annotated[bool, typer.Option("--quick", help="Small sizes: seconds per case instead of minutes.")] = False,
    out: Annotated[Optional[Path], typer.Option(help="Write bench.json and bench.md (Markdown table) here.")] = None,
    only: Annotated[Optional[str], typer.Option(help="Comma-separated case names (default: all).")] = None,
    device: Annotated[str, typer.Option(help="cpu or cuda[:N].")] = "cpu",
    threads: Annotated[Optional[int], typer.Option(help="torch threads (default: torch's choice).")] = None,
) -> None:
    """Run the benchmark suite: each case checks correctness, then reports a ratio against a bound
    measured in the same run. Exit codes: 0 all checks passed; 1 a correctness check failed; 2 bad usage.
    """
    import torch

    from .bench import CASES, markdown_table, run_suite

    names = [n.strip() for n in only.split(",") if n.strip()] if only else None
    if threads is not None:
        if threads < 1:
            raise _fail(f"--threads: expected a positive integer, got {threads}")
        torch.set_num_threads(threads)
    try:
        suite = run_suite(quick=quick, only=names, device=device, out=out,
                          echo=lambda line: errors.print(line, highlight=False, soft_wrap=True, markup=False))
    except ValueError as err:
        raise _fail(f"{err} (cases: {', '.join(CASES)})" if "only" in str(err) else str(err)) from None
    console.print(markdown_table(suite), highlight=False, soft_wrap=True, markup=False)
    if out is not None:
        console.print(f"wrote {out / 'bench.json'} and {out / 'bench.md'} in {suite.seconds:.0f} s", highlight=False)
    if not suite.all_checks_passed:
        raise typer.Exit(code=1)


@app.command("results")
def results(
    folder: Annotated[Path, typer.Argument(help="Sweep output folder (holding sweep.sqlite).")],
    csv: Annotated[Optional[Path], typer.Option("--csv", help="Export to this CSV file.")] = None,
    parquet: Annotated[Optional[Path], typer.Option("--parquet", help="Export to this Parquet file.")] = None,
    table: Annotated[Optional[str], typer.Option(help="Export this result table (over tasks) instead of the task list.")] = None,
    plot: Annotated[Optional[Path], typer.Option(help="Write a sweep figure (PNG) of --metric against --x.")] = None,
    metric: Annotated[Optional[str], typer.Option(help="Column plotted by --plot (task list, or --table).")] = None,
    x: Annotated[Optional[str], typer.Option("--x", help="Swept parameter on the x axis of --plot.")] = None,
    by: Annotated[Optional[list[str]], typer.Option("--by", help="Columns separating lines in --plot (repeatable; "
                                                    "default: the other swept parameters).")] = None,
    quiet: Annotated[bool, typer.Option("--quiet", help="No summary tables.")] = False,
) -> None:
    """Summarise a sweep store; export tasks or a result table to CSV / Parquet; plot a metric."""
    from .runner.results import export, load_results, load_table, plot_sweep, summarize
    from .runner.store import StoreError

    if csv is not None and parquet is not None:
        raise _fail("--csv and --parquet: give one, not both")
    if plot is not None and (metric is None or x is None):
        raise _fail("--plot needs --metric and --x")
    try:
        if not quiet:
            summary = summarize(folder)
            console.print(_frame_table(f"sweep store {folder}", summary["tasks"]))
            if len(summary["claims"]):
                console.print(_frame_table("claims passed (finished tasks)", summary["claims"]))
            if len(summary["means"]):
                console.print(_frame_table("means over finished tasks, by parameter value", summary["means"]))
        target = csv or parquet
        if target is not None:
            path = export(folder, target, table=table, format="csv" if csv is not None else "parquet")
            if not quiet:
                console.print(f"wrote {path}", highlight=False)
        if plot is not None:
            import matplotlib

            matplotlib.use("Agg")
            import matplotlib.pyplot as plt

            frame = load_table(folder, table) if table is not None else load_results(folder)
            fig = plot_sweep(frame, metric, x, by=by)
            plot.parent.mkdir(parents=True, exist_ok=True)
            fig.savefig(plot, dpi=120)
            plt.close(fig)
            if not quiet:
                console.print(f"wrote {plot}", highlight=False)
    except (ValueError, StoreError) as err:
        raise _fail(str(err)) from None


def main() -> None:
    """Console-script entry point."""
    app()


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
