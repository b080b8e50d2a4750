"""The dependency rule of docs/architecture.md, checked on the source's imports."""

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parent.parent / "src" / "kvmem"
CORE = ["similarity.py", "features.py", "separation.py", "memory", "_registry.py", "_checks.py", "context.py", "ops"]
FORBIDDEN = {"experiments", "runner", "report", "cli", "bench", "matplotlib", "typer", "rich", "pandas"}


def imported_names(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            names.add((node.module or "").split(".")[0])
            names |= {a.name for a in node.names}
    return names


def test_core_imports_no_files_plots_or_cli():
    files = []
    for entry in CORE:
        p = SRC / entry
        files += sorted(p.rglob("*.py")) if p.is_dir() else [p]
    assert len(files) >= 6
    for path in files:
        bad = imported_names(path) & FORBIDDEN
        assert not bad, f"{path.relative_to(SRC)} imports {bad}"
