"""Running experiments and writing their outputs."""

from .local import RunOutput, run_experiment, write_outputs

__all__ = ["RunOutput", "run_experiment", "write_outputs"]

# Sweeps: the SQLite store, the execution backends, the driver and the readers.
from .executor import BackendUnavailable, Call, Executor, Outcome, open_executor
from .results import export, load_results, load_table, plot_sweep, summarize, sweep_band
from .store import Store, StoreError
from .sweep import SweepReport, SweepSpec, make_spec, plan_sweep, run_sweep, run_task

__all__ += [
    "BackendUnavailable",
    "Call",
    "Executor",
    "Outcome",
    "Store",
    "StoreError",
    "SweepReport",
    "SweepSpec",
    "export",
    "load_results",
    "load_table",
    "make_spec",
    "open_executor",
    "plan_sweep",
    "plot_sweep",
    "run_sweep",
    "run_task",
    "summarize",
    "sweep_band",
]
