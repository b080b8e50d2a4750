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
) -> None:
    """Run one experiment; write CSV tables, PNG figures and claims.json; exit 1 if a claim fails."""
    if name not in experiments.REGISTRY:
        raise _fail(f"unknown experiment {name!r}; known: {', '.join(experiments.names())}")
    if profile not in PROFILES:
        raise _fail(f"--profile: expected one of {', '.join(PROFILES)}, got {profile!r}")
    result = _run_one(name, profile, _parse_sets(set_ or []), seed, out or Path("kvmem-results") / name, quiet)
    if not result.passed:
        raise typer.Exit(code=1)


@app.command("reproduce")
def reproduce(
    profile: Annotated[str, typer.Option(help="Settings profile: quick or full.")] = "quick",
    out: Annotated[Path, typer.Option(help="Output folder; one sub-folder per experiment.")] = Path("kvmem-results"),
    only: Annotated[Optional[list[str]], typer.Option("--only", help="Run only these experiments (repeatable).")] = None,
    seed: Annotated[int, typer.Option(help="Random seed.")] = 0,
    quiet: Annotated[bool, typer.Option("--quiet", help="No progress bars or tables.")] = False,
) -> None:
    """Run every registered experiment (or those named) and summarise the claims."""
    if profile not in PROFILES:
        raise _fail(f"--profile: expected one of {', '.join(PROFILES)}, got {profile!r}")
    names = only or experiments.names()
    unknown = [n for n in names if n not in experiments.REGISTRY]
    if unknown:
        raise _fail(f"--only: unknown experiment(s) {', '.join(unknown)}; known: {', '.join(experiments.names())}")
    summary = Table(title=f"kvmem reproduce ({profile})")
    for col in ("experiment", "claims passed", "seconds"):
        summary.add_column(col)
    failed = 0
    for name in names:
        run = _run_one(name, profile, {}, seed, out / name, quiet)
        n_ok = sum(c.passed for c in run.claims)
        failed += len(run.claims) - n_ok
        summary.add_row(name, f"{n_ok}/{len(run.claims)}", f"{run.seconds:.1f}")
    console.print(summary)
    console.print(f"results in {out}")
    if failed:
        raise typer.Exit(code=1)


def main() -> None:
    """Console-script entry point."""
    app()


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
