"""Running experiments and writing their outputs."""

from .local import RunOutput, run_experiment, write_outputs

__all__ = ["RunOutput", "run_experiment", "write_outputs"]
