"""Executable documentation: docs' python blocks and the modules' docstring examples run."""

import doctest
import importlib
import pkgutil
import re
from pathlib import Path

import pytest

import kvmem

DOCS = Path(__file__).resolve().parent.parent / "docs"


def python_blocks(path: Path) -> list[str]:
    return re.findall(r"```python\n(.*?)```", path.read_text(), flags=re.S)


def test_memory_page_examples_run(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    blocks = python_blocks(DOCS / "memory.md")
    assert len(blocks) >= 5
    namespace: dict = {}
    for block in blocks:
        exec(compile(block, "docs/memory.md", "exec"), namespace)


def test_capacity_page_example_runs():
    namespace: dict = {}
    for block in python_blocks(DOCS / "capacity.md"):
        exec(compile(block, "docs/capacity.md", "exec"), namespace)


def test_experiments_page_example_runs(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (block,) = python_blocks(DOCS / "experiments.md")
    exec(compile(block, "docs/experiments.md", "exec"), {})
    assert (tmp_path / "my-run" / "claims.json").exists()


MODULES = sorted(m.name for m in pkgutil.walk_packages(kvmem.__path__, "kvmem.") if m.name != "kvmem.cli")


@pytest.mark.parametrize("name", ["kvmem", *MODULES])
def test_docstring_examples(name, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    module = importlib.import_module(name)
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    assert result.failed == 0
