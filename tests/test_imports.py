"""The import graph of ganbench: no module imports itself back, and no function-local import hides a circle.

Every module under ganbench/ is parsed (not imported). A module-level `import`/`from ... import` of a ganbench module
is an edge; importing `a.b.c` from outside package `a.b` also runs `a.b`'s __init__, so that is an edge too. Imports
under `if TYPE_CHECKING:` never run and are left out. A function-local import is allowed when the imported module
does not lead back to the importing one (through any import, module-level or local): otherwise it only hides a
circle. cli.py is exempt as an importer: it imports lazily so that `--help` stays fast, and nothing imports it.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass, field
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "ganbench"
LAZY_IMPORTERS = {"cli", "__main__"}  # modules of the package, by their name inside it


@dataclass
class Graph:
    modules: dict[str, Path]
    top: dict[str, set[str]] = field(default_factory=dict)  # module-level edges
    local: dict[str, list[tuple[str, int]]] = field(default_factory=dict)  # function-local edges with line numbers

    def reaches(self, start: str) -> set[str]:
        """Every module `start` leads to through any edge, module-level or local."""
        seen: set[str] = set()
        todo = [start]
        while todo:
            here = todo.pop()
            for nxt in self.top.get(here, set()) | {t for t, _ in self.local.get(here, [])}:
                if nxt not in seen:
                    seen.add(nxt)
                    todo.append(nxt)
        return seen

    def cycles(self) -> list[list[str]]:
        """The strongly connected components of the module-level graph with more than one module (or a self-loop)."""
        index: dict[str, int] = {}
        low: dict[str, int] = {}
        stack: list[str] = []
        found: list[list[str]] = []

        def visit(node: str) -> None:
            index[node] = low[node] = len(index)
            stack.append(node)
            for nxt in sorted(self.top[node]):
                if nxt not in index:
                    visit(nxt)
                    low[node] = min(low[node], low[nxt])
                elif nxt in stack:
                    low[node] = min(low[node], index[nxt])
            if low[node] == index[node]:
                component = []
                while True:
                    item = stack.pop()
                    component.append(item)
                    if item == node:
                        break
                if len(component) > 1 or node in self.top[node]:
                    found.append(sorted(component))

        for node in sorted(self.modules):
            if node not in index:
                visit(node)
        return found

    def hidden_cycles(self) -> list[tuple[str, str, int]]:
        """(importer, imported, line) for each function-local import whose target leads back to its importer."""
        return [
            (module, target, line)
            for module in sorted(self.local)
            if module.partition(".")[2] not in LAZY_IMPORTERS
            for target, line in self.local[module]
            if target == module or module in self.reaches(target)
        ]


def module_name(path: Path, root: Path) -> str:
    parts = list(path.relative_to(root.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _ancestors(name: str) -> list[str]:
    parts = name.split(".")
    return [".".join(parts[:i]) for i in range(1, len(parts))]


def _imported(node: ast.Import | ast.ImportFrom, module: str, is_package: bool, known: dict[str, Path]) -> list[str]:
    """The ganbench modules an import statement names (a `from X import name` names X.name when that is a module)."""
    if isinstance(node, ast.Import):
        return [alias.name for alias in node.names]
    base = node.module or ""
    if node.level:
        package = module.split(".") if is_package else module.split(".")[:-1]
        package = package[: len(package) - (node.level - 1)]
        base = ".".join(package + ([base] if base else []))
    return [f"{base}.{alias.name}" if f"{base}.{alias.name}" in known else base for alias in node.names]


def _is_type_checking(node: ast.If) -> bool:
    return ast.unparse(node.test) in ("TYPE_CHECKING", "typing.TYPE_CHECKING")


def _imports(node: ast.AST, in_function: bool = False) -> list[tuple[ast.Import | ast.ImportFrom, bool]]:
    """Every import statement under `node` that can run, with whether it sits inside a function."""
    found: list[tuple[ast.Import | ast.ImportFrom, bool]] = []
    for child in ast.iter_child_nodes(node):
        if isinstance(child, ast.If) and _is_type_checking(child):
            continue
        inner = in_function or isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda)
        if isinstance(child, ast.Import | ast.ImportFrom):
            found.append((child, inner))
        found += _imports(child, inner)
    return found


def build_graph(root: Path) -> Graph:
    """The import graph of the package in folder `root` (its internal edges only)."""
    modules = {module_name(path, root): path for path in sorted(root.rglob("*.py"))}
    graph = Graph(modules)
    for module, path in modules.items():
        graph.top[module], graph.local[module] = set(), []
        own = {module, *_ancestors(module)}
        for statement, in_function in _imports(ast.parse(path.read_text(), str(path))):
            for target in _imported(statement, module, path.name == "__init__.py", modules):
                # importing a.b.c from outside a.b first runs a.b's __init__
                for name in [target, *_ancestors(target)]:
                    if name in modules and (name == target or name not in own):
                        if in_function:
                            graph.local[module].append((name, statement.lineno))
                        else:
                            graph.top[module].add(name)
    return graph


def _show(found: list[tuple[str, str, int]]) -> str:
    return "\n".join(f"  {importer} -> {imported} (line {line})" for importer, imported, line in found)


GRAPH = build_graph(PACKAGE)


def test_no_module_level_import_cycle() -> None:
    assert GRAPH.cycles() == []


def test_no_function_local_import_hides_a_cycle() -> None:
    found = GRAPH.hidden_cycles()
    assert not found, "function-local imports whose module imports the importer back:\n" + _show(found)


def test_config_is_a_leaf() -> None:
    assert GRAPH.reaches("ganbench.config") == set()


# The checker itself, on small packages written for it: it must see circles through a package's __init__ and through
# a function-local import, and must not see one where there is none.


def write_package(root: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        path = root / "pkg" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root / "pkg"


def test_checker_finds_a_module_level_cycle_through_a_package_init(tmp_path: Path) -> None:
    package = write_package(
        tmp_path,
        {
            "__init__.py": "",
            "reg/__init__.py": "from pkg.reg import one\nTABLE = {}\n",
            "reg/one.py": "from pkg.reg import TABLE\n",  # the __init__ itself, which imports this module
            "user.py": "from pkg.reg.one import TABLE\n",
        },
    )
    graph = build_graph(package)
    assert graph.cycles() == [["pkg.reg", "pkg.reg.one"]]
    assert graph.top["pkg.user"] == {"pkg.reg.one", "pkg.reg"}  # the __init__ runs first


def test_checker_finds_a_cycle_hidden_in_a_function(tmp_path: Path) -> None:
    package = write_package(
        tmp_path,
        {
            "__init__.py": "",
            "config.py": "import json\n",
            "recipe.py": "from pkg.config import X\n\ndef validate():\n    from pkg import data\n",
            "data/__init__.py": "from pkg.data import base\n",
            "data/base.py": "from pkg.recipe import X\n",
            "report.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from pkg import recipe\n",
            "cli.py": "def main():\n    from pkg import recipe\n",
        },
    )
    graph = build_graph(package)
    assert graph.cycles() == []
    assert graph.hidden_cycles() == [("pkg.recipe", "pkg.data", 4)]
    assert graph.top["pkg.report"] == set()  # typing-only imports never run
    (package / "data" / "base.py").write_text("from pkg.config import X\n")
    assert build_graph(package).hidden_cycles() == []
