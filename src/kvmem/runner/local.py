"""Run one experiment in-process and write its tables, figures and claims to a folder.

Output folder layout (``kvmem run NAME --out DIR``)::

    DIR/NAME.csv ...      one CSV per result table
    DIR/NAME.png ...      one PNG per figure
    DIR/claims.json       [{"name", "expected", "measured", "passed"}, ...]
    DIR/run.json          experiment, profile, seed, config, scalars, duration, versions
"""

from __future__ import annotations

import json
import platform
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from ..experiments import Claim, Progress, Result, get


@dataclass
class RunOutput:
    """An experiment run: its result, its checked claims and how long it took."""

    experiment: str
    profile: str
    seed: int
    result: Result
    claims: list[Claim]
    seconds: float

    @property
    def passed(self) -> bool:
        """True when every claim holds."""
        return all(c.passed for c in self.claims)


def run_experiment(
    name: str,
    *,
    profile: str = "quick",
    overrides: Mapping[str, str] | None = None,
    seed: int = 0,
    progress: Progress | None = None,
) -> RunOutput:
    """Run the experiment ``name`` with a profile and ``--set``-style overrides.

    Raises:
        ValueError: unknown experiment, profile, setting or ill-typed value.
    """
    experiment = get(name)
    config = experiment.config(profile, overrides)
    start = time.perf_counter()
    result = experiment.run(config, seed=seed, progress=progress or Progress())
    result.config = result.config or asdict(config)
    claims = experiment.claims(result)
    return RunOutput(name, profile, seed, result, claims, time.perf_counter() - start)


def _versions() -> dict[str, str]:
    import matplotlib
    import numpy
    import pandas
    import torch

    from .. import __version__

    return {
        "kvmem": __version__,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "numpy": numpy.__version__,
        "pandas": pandas.__version__,
        "matplotlib": matplotlib.__version__,
        "torch_threads": str(torch.get_num_threads()),
    }


def _jsonable(value: Any) -> Any:
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if hasattr(value, "item"):
        return value.item()
    return str(value)


def write_outputs(run: RunOutput, out: str | Path, *, figures: bool = True) -> Path:
    """Write CSV tables, PNG figures, ``claims.json`` and ``run.json`` into ``out``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    for name, table in run.result.tables.items():
        table.to_csv(out / f"{name}.csv", index=False)
    if figures:
        for name, fig in get(run.experiment).plot(run.result).items():
            fig.savefig(out / f"{name}.png", dpi=120)
            plt.close(fig)
    (out / "claims.json").write_text(json.dumps([c.to_dict() for c in run.claims], indent=2))
    meta = {
        "experiment": run.experiment,
        "profile": run.profile,
        "seed": run.seed,
        "seconds": round(run.seconds, 3),
        "config": _jsonable(run.result.config),
        "scalars": _jsonable(run.result.scalars),
        "versions": _versions(),
    }
    (out / "run.json").write_text(json.dumps(meta, indent=2))
    return out
