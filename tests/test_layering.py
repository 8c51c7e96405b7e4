"""One layer order: no module of the package imports a part above its own, nor another
module's private names, and no two modules import each other, directly or round a cycle.

The order is the drawing in README.md's Development section (between the ``layers`` markers),
read here, so the picture a newcomer sees is the rule the suite enforces. Every import is
checked: module level and inside functions, ``import x`` and ``from x import y``, relative and
absolute, and ``importlib.import_module("...")`` with a constant name.
"""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = "cifarnets"
FACADE = "__init__.py"  # cifarnets/__init__.py: the users' API, imported by no module of the package


@dataclass(frozen=True)
class Part:
    name: str
    level: int  # 0 is the bottom of the drawing
    paths: tuple[str, ...]  # relative to the package folder: "hub.py", "analysis/"


def parse_drawing(text: str) -> list[Part]:
    """The parts of the README drawing, bottom level first."""
    block = re.search(r"<!-- layers:start -->\n(.*?)<!-- layers:end -->", text, re.S)
    if block is None:
        raise AssertionError("README.md has no <!-- layers:start --> ... <!-- layers:end --> drawing")
    lines = [line.strip() for line in block.group(1).splitlines()]
    rows = [line for line in lines if re.match(r"\w+ \(", line)]
    parts = []
    for level, line in enumerate(reversed(rows)):
        head = re.match(r"((?:\w+ \([^)]*\)(?: \| )?)+)", line).group(1)
        for name, paths in re.findall(r"(\w+) \(([^)]*)\)", head):
            parts.append(Part(name, level, tuple(p.strip() for p in paths.split(","))))
    return parts


def part_of(relative: str, parts: list[Part]) -> Part | None:
    """The part that owns a file given relative to the package folder (``analysis/_erf.py``)."""
    for part in parts:
        for path in part.paths:
            if relative == path or (path.endswith("/") and relative.startswith(path)):
                return part
    return None


def module_name(relative: str) -> str:
    dotted = relative[:-3].replace("/", ".")
    if dotted == "__init__":
        return PACKAGE
    return f"{PACKAGE}.{dotted.removesuffix('.__init__')}"


def module_file(name: str, package_dir: Path) -> str | None:
    """``cifarnets.analysis.receptive_field`` -> ``analysis/receptive_field/__init__.py``; None if not ours."""
    if name != PACKAGE and not name.startswith(PACKAGE + "."):
        return None
    rest = name[len(PACKAGE):].lstrip(".").replace(".", "/")
    for candidate in ([f"{rest}.py", f"{rest}/__init__.py"] if rest else ["__init__.py"]):
        if (package_dir / candidate).is_file():
            return candidate
    return None


def imported_modules(tree: ast.Module, name: str, is_package: bool, package_dir: Path):
    """(line, imported module name, imported names) for every import in the module."""
    base = name if is_package else name.rpartition(".")[0]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name, ()
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                anchor = base
                for _ in range(node.level - 1):
                    anchor = anchor.rpartition(".")[0]
                target = f"{anchor}.{node.module}" if node.module else anchor
            else:
                target = node.module or ""
            names = []
            for alias in node.names:
                # `from .. import plots` imports the submodule cifarnets.plots.
                if module_file(f"{target}.{alias.name}", package_dir) is not None:
                    yield node.lineno, f"{target}.{alias.name}", ()
                else:
                    names.append(alias.name)
            if names:
                yield node.lineno, target, tuple(names)
        elif isinstance(node, ast.Call) and node.args and isinstance(node.args[0], ast.Constant) and \
                isinstance(node.args[0].value, str):
            func = node.func
            called = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
            if called in ("import_module", "__import__"):
                yield node.lineno, node.args[0].value, ()


def violations(package_dir: Path, parts: list[Part]) -> list[str]:
    """Every upward import, import of a peer part, of the facade or of a private name, and module without a part."""
    found = []
    for path in sorted(package_dir.rglob("*.py")):
        relative = path.relative_to(package_dir).as_posix()
        own = part_of(relative, parts)
        if own is None:
            found.append(f"{PACKAGE}/{relative} has no place in the layer order: add it to the drawing in README.md")
            continue
        name = module_name(relative)
        tree = ast.parse(path.read_text(), filename=str(path))
        for line, target, names in imported_modules(tree, name, path.name == "__init__.py", package_dir):
            target_file = module_file(target, package_dir)
            if target_file is None:
                continue  # not a module of the package
            where = f"{PACKAGE}/{relative}:{line}"
            private = [n for n in names if n.startswith("_") and not n.endswith("__")]
            if private:
                found.append(f"{where} imports the private name(s) {', '.join(private)} of {target}: make what "
                             f"modules share public within the package, or move it to the module that uses it")
            if target_file == FACADE and relative != FACADE:
                if names and all(n.startswith("__") and n.endswith("__") for n in names):
                    continue  # package metadata such as __version__
                found.append(f"{where} imports the package's public API ({target}); import the part that "
                             f"defines the name instead (e.g. `from ..registry import create`)")
                continue
            other = part_of(target_file, parts)
            if other is None or other.name == own.name:
                continue
            if other.level > own.level:
                found.append(f"{where}: {own.name} imports {target} from {other.name}, a part above it")
            elif other.level == own.level:
                found.append(f"{where}: {own.name} imports {target} from {other.name}, a part on its own level")
    return found


def import_graph(package_dir: Path) -> dict[str, set[str]]:
    """Module -> the package modules it imports anywhere (module level or in a function)."""
    graph: dict[str, set[str]] = {}
    for path in sorted(package_dir.rglob("*.py")):
        relative = path.relative_to(package_dir).as_posix()
        name = module_name(relative)
        tree = ast.parse(path.read_text(), filename=str(path))
        targets = graph.setdefault(name, set())
        for _, target, _ in imported_modules(tree, name, path.name == "__init__.py", package_dir):
            target_file = module_file(target, package_dir)
            if target_file is not None and module_name(target_file) != name:
                targets.add(module_name(target_file))
    return graph


def import_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Every import cycle, once each, as ``[a, b, ..., a]`` starting at its smallest module (depth-first search)."""
    cycles, seen = [], set()

    def visit(node: str, path: list[str], on_path: set[str]) -> None:
        for nxt in sorted(graph.get(node, ())):
            if nxt in on_path:
                cycle = path[path.index(nxt):]
                start = cycle.index(min(cycle))
                key = tuple(cycle[start:] + cycle[:start])
                if key not in seen:
                    seen.add(key)
                    cycles.append([*key, key[0]])
            elif nxt not in done:
                visit(nxt, [*path, nxt], on_path | {nxt})
        done.add(node)

    done: set[str] = set()
    for start in sorted(graph):
        if start not in done:
            visit(start, [start], {start})
    return sorted(cycles)


def test_no_import_cycles():
    cycles = import_cycles(import_graph(ROOT / PACKAGE))
    assert cycles == [], "import cycles (break each by moving what both sides need below them):\n" + "\n".join(
        " -> ".join(c) for c in cycles)


def test_the_cycle_check_finds_function_level_and_package_cycles(tmp_path):
    root = _package(tmp_path, {
        "a.py": "from . import b\n",
        "b.py": "def f():\n    from .c import g\n",  # function level
        "c.py": "import cifarnets.a\n",
        "pkg/__init__.py": "from .mod import x\n",
        "pkg/mod.py": "from . import helper\nfrom cifarnets.pkg import y\n",  # back to its own package
        "pkg/helper.py": "",
        "ok.py": "from .pkg import helper\n",
    })
    assert import_cycles(import_graph(root)) == [
        ["cifarnets.a", "cifarnets.b", "cifarnets.c", "cifarnets.a"],
        ["cifarnets.pkg", "cifarnets.pkg.mod", "cifarnets.pkg"],
    ]


@pytest.fixture(scope="module")
def parts() -> list[Part]:
    return parse_drawing((ROOT / "README.md").read_text())


def test_the_drawing_orders_the_parts_the_brief_names(parts):
    order = [p.name for p in sorted(parts, key=lambda p: (p.level, p.name))]
    assert order == ["_utils", "layers", "models", "data", "analysis", "tracking", "train", "plots", "hub", "sweep",
                     "cli"]
    levels = {p.name: p.level for p in parts}
    assert levels["hub"] == levels["sweep"] == levels["plots"] + 1 == levels["cli"] - 1


def test_no_module_imports_upward(parts):
    assert violations(ROOT / PACKAGE, parts) == []


def _package(tmp_path: Path, files: dict[str, str]) -> Path:
    root = tmp_path / PACKAGE
    for relative, text in {"__init__.py": "", **files}.items():
        (root / relative).parent.mkdir(parents=True, exist_ok=True)
        (root / relative).write_text(text)
    return root


def test_the_check_finds_every_kind_of_upward_import(tmp_path, parts):
    root = _package(tmp_path, {
        "_utils.py": "",
        "plots/__init__.py": "",
        "registry.py": "",
        "cli/__init__.py": "from .. import plots\nfrom ..analysis import erf\n",  # both fine: downward
        "analysis/__init__.py": "",
        "analysis/erf.py": "def f():\n    from .. import plots\n",  # function-level, `from .. import module`
        "analysis/deep/tracer.py": "import cifarnets.train.loop\n",  # absolute
        "train/__init__.py": "",
        "train/loop.py": "from ..cli import main\nfrom .. import __version__\n",  # relative; dunder is fine
        "data/__init__.py": "import importlib\nimportlib.import_module('cifarnets.train')\n",
        "layers/__init__.py": "import cifarnets\nfrom .. import registry\n",  # facade; models level is above
        "hub.py": "from .sweep import grid\n",  # a peer on its own level
        "sweep/__init__.py": "", "sweep/grid.py": "from ._pick import _best, best\n", "sweep/_pick.py": "",
        "extra.py": "",
    })
    found = violations(root, parts)
    expected = [
        "cifarnets/analysis/deep/tracer.py:1: analysis imports cifarnets.train.loop from train, a part above it",
        "cifarnets/analysis/erf.py:2: analysis imports cifarnets.plots from plots, a part above it",
        "cifarnets/data/__init__.py:2: data imports cifarnets.train from train, a part above it",
        "cifarnets/extra.py has no place in the layer order: add it to the drawing in README.md",
        "cifarnets/hub.py:1: hub imports cifarnets.sweep.grid from sweep, a part on its own level",
        "cifarnets/layers/__init__.py:1 imports the package's public API (cifarnets); import the part that "
        "defines the name instead (e.g. `from ..registry import create`)",
        "cifarnets/layers/__init__.py:2: layers imports cifarnets.registry from models, a part above it",
        "cifarnets/sweep/grid.py:1 imports the private name(s) _best of cifarnets.sweep._pick: make what modules "
        "share public within the package, or move it to the module that uses it",
        "cifarnets/train/loop.py:1: train imports cifarnets.cli from cli, a part above it",
    ]
    assert found == expected


def test_the_drawing_parser_reads_levels_and_peers():
    text = "<!-- layers:start -->\n```\ntop (top/)   the top\n ↓\na (a.py) | b (b/, c.py)   peers (here)\n ↓\n" \
           "low (low.py)   bottom\n```\n<!-- layers:end -->\n"
    assert parse_drawing(text) == [Part("low", 0, ("low.py",)), Part("a", 1, ("a.py",)), Part("b", 1, ("b/", "c.py")),
                                   Part("top", 2, ("top/",))]
