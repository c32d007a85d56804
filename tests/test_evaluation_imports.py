"""Evaluation stands apart from training: neither metrics nor the evaluator import the trainer."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import ganbench

PACKAGE = Path(ganbench.__file__).parent
FILES = [
    *sorted((PACKAGE / "metrics").glob("*.py")),
    *(PACKAGE / f"{name}.py" for name in ("evaluation", "checkpoints")),
]


def _imported(path: Path) -> set[str]:
    """Every module a file imports, at top level or inside a function."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return names


def test_no_metric_or_evaluation_file_imports_the_trainer() -> None:
    offending = {
        path.name: sorted(name for name in _imported(path) if name.startswith("ganbench.train"))
        for path in FILES
        if any(name.startswith("ganbench.train") for name in _imported(path))
    }
    assert offending == {}


def test_importing_them_loads_no_trainer_module() -> None:
    dotted = [path.relative_to(PACKAGE).with_suffix("").as_posix().replace("/", ".") for path in FILES]
    modules = [f"ganbench.{name}".removesuffix(".__init__") for name in dotted]
    probe = (
        "import importlib, sys\n"
        f"for name in {modules!r}:\n"
        "    importlib.import_module(name)\n"
        "print(sorted(m for m in sys.modules if m.startswith('ganbench.train')))\n"
    )
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
