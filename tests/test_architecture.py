"""The package's import graph: no cycles, no upward imports, one command-line module.

Reads src/hpstudy/*.py with `ast` (nothing is imported, no torch): every import counts,
at module level, inside functions and under `if TYPE_CHECKING:`, because a function-level
import is still a dependency, only a later one. A new module goes into LAYERS below, at the
lowest layer whose modules it does not need to import from above.
"""

from __future__ import annotations

import ast
import functools
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "hpstudy"

# Bottom to top: a module may import modules of its own layer and of the layers below,
# never of a layer above. Within a layer, any import that does not close a cycle is fine.
LAYERS: tuple[tuple[str, frozenset[str]], ...] = tuple(
    (name, frozenset(modules.split()))
    for name, modules in (
        (
            "facts and helpers",
            "paths atomic formatting logs embed provenance device seeding metrics models "
            "augment diagnostics tensorboard raw_data microbead_folder datasets microbeads "
            "gpuslots failures checkpoint integrity",
        ),
        (
            "configs, data, run records",
            "config prepare loaders optim task attempts stats extract scheduler_jobs",
        ),
        ("training", "progress train fused seeds"),
        ("statistics", "analysis sequential sequential_simulation rounds figures figure_plan"),
        (
            "study files and their cost",
            "studyfile expand study_checks data_checks study calibration cost",
        ),
        ("a study's jobs and attempts", "rule_inputs timeline"),
        ("whole-study stages and views", "analyze aggregate report status"),
        ("the command", "cli __main__ analyze.__main__"),
    )
)
LAYER_OF = {module: i for i, (_, modules) in enumerate(LAYERS) for module in modules}
# the only modules that may parse a command line (`python -m hpstudy.analyze` calls cli)
COMMAND_LINE = {"cli", "__main__", "analyze.__main__"}


def _parse(path: Path) -> ast.Module:
    return ast.parse(path.read_text(), filename=str(path))


@functools.cache
def package_modules() -> dict[str, ast.Module]:
    """Every module: a file of the package, or a subpackage (hpstudy.analysis) as one module
    with the imports of all its files, its `__main__.py` apart as `NAME.__main__`."""
    modules = {
        path.stem: _parse(path) for path in sorted(PACKAGE.glob("*.py")) if path.stem != "__init__"
    }
    for init in sorted(PACKAGE.glob("*/__init__.py")):
        files = [p for p in sorted(init.parent.glob("*.py")) if p.stem != "__main__"]
        body = [node for p in files for node in _parse(p).body]
        modules[init.parent.name] = ast.Module(body=body, type_ignores=[])
        if (init.parent / "__main__.py").is_file():
            modules[f"{init.parent.name}.__main__"] = _parse(init.parent / "__main__.py")
    return modules


def imported(tree: ast.Module) -> dict[str, int]:
    """The hpstudy modules `tree` imports anywhere in its body -> the first line doing so."""
    found: dict[str, int] = {}

    def add(name: str, line: int) -> None:
        found.setdefault(name, line)

    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                parts = alias.name.split(".")
                if parts[0] == "hpstudy" and len(parts) > 1:
                    add(parts[1], node.lineno)
        elif isinstance(node, ast.ImportFrom):
            module = node.module or ""
            if node.level:  # relative: `from . import x`, `from .x import y`
                module = "hpstudy" + ("." + module if module else "")
            parts = module.split(".")
            if parts[0] != "hpstudy":
                continue
            if len(parts) > 1:
                add(parts[1], node.lineno)
            else:  # `from hpstudy import x, y`: each name is a module of the package
                for alias in node.names:
                    add(alias.name, node.lineno)
    return found


@functools.cache
def import_graph() -> dict[str, dict[str, int]]:
    modules = package_modules()
    return {
        name: {dep: line for dep, line in imported(tree).items() if dep != name and dep in modules}
        for name, tree in modules.items()
    }


def find_cycles(graph: dict[str, dict[str, int]]) -> list[list[str]]:
    """One cycle (as a path a -> ... -> a) per strongly connected component (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(graph[node]):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                top = stack.pop()
                on_stack.discard(top)
                component.append(top)
                if top == node:
                    break
            if len(component) > 1:
                components.append(component)

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return [_cycle_through(graph, sorted(c)) for c in components]


def _cycle_through(graph: dict[str, dict[str, int]], component: list[str]) -> list[str]:
    """A path from the component's first module back to itself, inside the component."""
    start, members = component[0], set(component)
    paths = [[start]]
    while paths:
        path = paths.pop(0)
        for nxt in sorted(graph[path[-1]]):
            if nxt == start:
                return [*path, start]
            if nxt in members and nxt not in path:
                paths.append([*path, nxt])
    return component


# --------------------------------------------------------------------------- the walker


def test_walker_sees_module_level_function_level_and_relative_imports():
    source = (
        "import hpstudy.train\n"
        "from hpstudy import atomic, checkpoint as ck\n"
        "from hpstudy.config import TrainConfig\n"
        "import torch\n"
        "def f():\n"
        "    from hpstudy.study import load_study\n"
        "    from . import status\n"
        "    from .cost import report\n"
    )
    assert imported(ast.parse(source)) == {
        "train": 1,
        "atomic": 2,
        "checkpoint": 2,
        "config": 3,
        "study": 6,
        "status": 7,
        "cost": 8,
    }


def test_cycle_finder_names_the_cycle():
    graph = {"a": {"b": 1}, "b": {"c": 1}, "c": {"a": 1}, "d": {"a": 1}}
    assert find_cycles(graph) == [["a", "b", "c", "a"]]
    assert find_cycles({"a": {"b": 1}, "b": {}}) == []


def test_graph_holds_the_known_edges():
    """Read from the real files: the loop imports its parts; the command imports status
    inside a function (a walker that missed function-level imports would fail here)."""
    graph = import_graph()
    assert {"checkpoint", "progress", "task", "optim", "seeding"} <= set(graph["train"])
    assert "status" in graph["cli"] and "train" in graph["seeds"]


# --------------------------------------------------------------------------- the rules


def test_no_import_cycles():
    cycles = find_cycles(import_graph())
    assert not cycles, "import cycles: " + "; ".join(" -> ".join(c) for c in cycles)


def subpackage_graph(package: str) -> dict[str, dict[str, int]]:
    """The imports among one subpackage's files (`__init__` is the package itself): the
    package-level graph above sees a subpackage as one module, so a circle between two of
    its files shows only here. `from hpstudy.pkg import mod` depends on the package (it runs
    its __init__ first) as well as on `mod`; `import hpstudy.pkg.mod as m` names `mod` only."""
    folder = PACKAGE / package
    files = {p.stem: _parse(p) for p in sorted(folder.glob("*.py")) if p.stem != "__main__"}
    graph: dict[str, dict[str, int]] = {}
    for name, tree in files.items():
        deps: dict[str, int] = {}
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom):
                module = node.module or ""
                if node.level:  # `from .x import y` inside the subpackage
                    module = f"hpstudy.{package}" + ("." + module if module else "")
                parts = module.split(".")
                if parts[:2] != ["hpstudy", package]:
                    continue
                if len(parts) > 2:
                    targets = [parts[2]]
                else:  # `from hpstudy.pkg import a, f`: the package itself, and the submodules
                    targets = ["__init__", *(a.name for a in node.names if a.name in files)]
            elif isinstance(node, ast.Import):
                targets = [
                    (a.name.split(".") + ["__init__"])[2]
                    for a in node.names
                    if a.name.split(".")[:2] == ["hpstudy", package]
                ]
            else:
                continue
            for target in targets:
                if target != name and target in files:
                    deps.setdefault(target, node.lineno)
        graph[name] = deps
    return graph


@pytest.mark.parametrize("package", sorted(p.parent.name for p in PACKAGE.glob("*/__init__.py")))
def test_no_import_cycles_inside_subpackages(package):
    cycles = find_cycles(subpackage_graph(package))
    assert not cycles, f"import cycles in hpstudy.{package}: " + "; ".join(
        " -> ".join(c) for c in cycles
    )


def test_every_module_has_a_layer():
    missing = sorted(set(package_modules()) - set(LAYER_OF))
    assert not missing, (
        f"modules without a layer: {missing}; add each to LAYERS in tests/test_architecture.py "
        "(the lowest layer it can sit in without importing from above)"
    )


def test_no_upward_imports():
    upward = [
        f"{module}.py:{line} imports {dep} ({LAYERS[LAYER_OF[dep]][0]}, above "
        f"{LAYERS[LAYER_OF[module]][0]})"
        for module, deps in sorted(import_graph().items())
        for dep, line in sorted(deps.items())
        if module in LAYER_OF and dep in LAYER_OF and LAYER_OF[dep] > LAYER_OF[module]
    ]
    assert not upward, "upward imports:\n" + "\n".join(upward)


@pytest.mark.parametrize("module", sorted(set(package_modules()) - COMMAND_LINE))
def test_library_modules_parse_no_command_line(module):
    """One command-line module (hpstudy.cli): library modules take arguments."""
    tree = package_modules()[module]
    offences = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import | ast.ImportFrom):
            names = [a.name for a in node.names] + [getattr(node, "module", None) or ""]
            if "argparse" in names:
                offences.append(f"line {node.lineno}: imports argparse")
        elif isinstance(node, ast.Attribute) and node.attr == "argv":
            if isinstance(node.value, ast.Name) and node.value.id == "sys":
                offences.append(f"line {node.lineno}: reads sys.argv")
        elif isinstance(node, ast.Compare) and isinstance(node.left, ast.Name):
            constants = [c.value for c in node.comparators if isinstance(c, ast.Constant)]
            if node.left.id == "__name__" and "__main__" in constants:
                offences.append(f"line {node.lineno}: runs as a script (`__main__`)")
    assert not offences, f"{module}.py: " + "; ".join(offences) + " (move it to hpstudy.cli)"


# --------------------------------------------------------------------------- room sizes

MODULE_LINES, FUNCTION_LINES = 500, 80  # a module read in one sitting, a function on a screen
LONG = "# long:"  # `# long: why` near the top of a module or function keeps it whole
# Rooms of code another branch owns, until it splits them (then the entry goes); none now:
# sequential.py's simulation moved to sequential_simulation.py, decide_round and recommend
# were split into their steps
WAIVED: dict[str, str] = {}


def _source_files() -> list[Path]:
    return sorted(p for p in PACKAGE.rglob("*.py") if "__pycache__" not in p.parts)


def _says_why(lines: list[str]) -> bool:
    return any(line.strip().startswith(LONG) for line in lines)


def _rooms() -> list[tuple[str, int, list[str]]]:
    """(name, lines, its first lines) of every module and every function of the package."""
    rooms = []
    for path in _source_files():
        rel = path.relative_to(PACKAGE).with_suffix("").as_posix()
        text = path.read_text().splitlines()
        rooms.append((f"{rel}.py", len(text), text[:40]))
        for node in ast.walk(ast.parse("\n".join(text))):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                size = node.end_lineno - node.lineno + 1
                rooms.append((f"{rel}.{node.name}", size, text[node.lineno - 1 : node.lineno + 12]))
    return rooms


def test_rooms_a_reader_can_walk():
    """No module over MODULE_LINES and no function over FUNCTION_LINES lines, unless a
    `# long: why` comment at its top says why it stays whole."""
    too_long = [
        f"{name}: {size} lines"
        for name, size, top in _rooms()
        if size > (MODULE_LINES if name.endswith(".py") else FUNCTION_LINES)
        and name not in WAIVED
        and not _says_why(top)
    ]
    assert not too_long, (
        "split these, or give each a `# long: why` comment at its top:\n" + "\n".join(too_long)
    )


def test_the_size_rule_sees_a_long_function_and_its_reason():
    body = "\n".join(f"    x{i} = {i}" for i in range(FUNCTION_LINES))
    tree = ast.parse(f"def f():\n{body}\n")
    (node,) = tree.body
    assert node.end_lineno - node.lineno + 1 > FUNCTION_LINES
    assert _says_why(["def f():", "    # long: one table of checks, read top to bottom"])
    assert not _says_why(["def f():", "    x = 1  # long: not at the start of a line"])
    assert all(name in {n for n, _, _ in _rooms()} for name in WAIVED), "a waiver names nothing"
