"""The rooms of the package and their doors (docs/DESIGN.md, "Rooms and doors"), checked on
the source with ``ast``: which rooms each room may import, no import cycle, no module
over 700 lines, and only the command line calls ``sys.exit``.

A room is a top-level module or package of ``asyncwsgi`` (``core``, ``http``, ...), or a
module of one where it has rules of its own (``sites.runner``). Imports under ``if
TYPE_CHECKING:`` are for the type checker only and create no dependency, so they do not
count; every other import does, at module level or inside a function.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "asyncwsgi"

_VALUES = {"errors", "settings", "config", "logs"}  # settings and their checks: values only
# room -> the rooms it may import (besides its own)
ALLOWED: dict[str, set[str]] = {
    "errors": set(),
    "settings": {"errors"},
    "config": {"errors", "settings", "logs"},
    # Sans-IO and stdlib-only rooms that every mode uses.
    "core": {"errors"},
    "control": {"errors"},
    "logs": set(),
    "notify": set(),
    "processes": {"errors", "config", "notify"},
    # HTTP knows the request core, never the WSGI bridge or what runs the application.
    "http": {"errors", "core"},
    # The WSGI bridge and the script loader know no transport.
    "wsgi": {"errors", "core"},
    "scripts": {"errors", "wsgi"},
    # A daemon process runs the WSGI bridge; the front answers through the core's loop
    # side and never sees HTTP.
    "daemon": {"errors", "config", "core", "wsgi", "scripts", "processes", "logs"},
    # Reading a config file and choosing a mount are values in, values out ...
    "sites": _VALUES,
    "sites.routing": {"sites.model"},
    # ... while running a site wires its mounts to runners.
    "sites.runner": _VALUES | {"core", "wsgi", "scripts", "daemon", "sites", "static"},
    # Static files: which file and what to answer (values), served from worker threads.
    "static": {"errors", "core", "wsgi"},
    "asgi": _VALUES | {"core", "wsgi", "scripts", "daemon"},
    "server": _VALUES
    | {
        "core",
        "http",
        "wsgi",
        "scripts",
        "daemon",
        "sites",
        "static",
        "processes",
        "control",
        "notify",
    },
}
ALLOWED_ANYTHING = {"cli", "__main__", "__init__"}  # the top: they wire the rest
MAX_LINES = 700

SOURCES = sorted(PACKAGE.rglob("*.py"))


def module_of(path: Path) -> str:
    parts = path.relative_to(PACKAGE).with_suffix("").parts
    if parts[-1] == "__init__" and len(parts) > 1:
        parts = parts[:-1]
    return ".".join(parts)


def room_of(module: str) -> str:
    """The most specific room with rules: ``sites.runner`` before ``sites``."""
    parts = module.split(".")
    for size in range(len(parts), 0, -1):
        name = ".".join(parts[:size])
        if name in ALLOWED or name in ALLOWED_ANYTHING:
            return name
    raise AssertionError(f"{module} is in no room; add it to ALLOWED")


def _type_checking_blocks(tree: ast.AST) -> set[int]:
    """ids of the nodes inside ``if TYPE_CHECKING:`` blocks."""
    inside: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            for child in node.body:
                inside.update(id(n) for n in ast.walk(child))
    return inside


def imported_modules(path: Path) -> Iterator[str]:
    """The package modules ``path`` imports at run time (``asyncwsgi.`` left off)."""
    tree = ast.parse(path.read_text("utf-8"))
    skip = _type_checking_blocks(tree)
    for node in ast.walk(tree):
        if id(node) in skip:
            continue
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module]
            if node.module == "asyncwsgi":
                names = [f"asyncwsgi.{alias.name}" for alias in node.names]
        else:
            continue
        for name in names:
            if name.startswith("asyncwsgi.") and name != "asyncwsgi.__version__":
                yield name.removeprefix("asyncwsgi.")


def _allowed(room: str, target: str) -> bool:
    if room in ALLOWED_ANYTHING or room_of(target) == room:
        return True
    return any(target == a or target.startswith(a + ".") for a in ALLOWED[room])


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: str(p.relative_to(PACKAGE)))
def test_import_rules(path: Path) -> None:
    room = room_of(module_of(path))
    bad = sorted({t for t in imported_modules(path) if not _allowed(room, t)})
    assert not bad, f"{path.relative_to(PACKAGE)} ({room}) imports {bad}"


def test_a_room_that_may_use_its_package_still_keeps_out_of_its_siblings() -> None:
    # The rule for sites.routing names the model alone: the check must see the module.
    assert room_of("sites.routing") == "sites.routing"
    assert not _allowed("sites.routing", "sites.runner")
    assert _allowed("sites.routing", "sites.model")
    assert not _allowed("http", "wsgi.environ")
    assert _allowed("daemon", "wsgi.environ")


def _graph() -> dict[str, set[str]]:
    modules = {module_of(p): p for p in SOURCES}
    graph: dict[str, set[str]] = {}
    for module, path in modules.items():
        targets = set()
        for target in imported_modules(path):
            # `from asyncwsgi.daemon import wire` names a module of the package.
            while target not in modules and "." in target:
                target = target.rsplit(".", 1)[0]
            if target in modules and target != module:
                targets.add(target)
        graph[module] = targets
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """A cycle of ``graph`` (module -> modules it imports), or None. A package importing
    its own modules (its ``__init__`` re-exporting them) is not a cycle."""
    done: set[str] = set()

    def visit(module: str, path: list[str]) -> list[str] | None:
        if module in path:
            return [*path[path.index(module) :], module]
        if module in done:
            return None
        for target in sorted(graph[module]):
            if not target.startswith(module + "."):
                found = visit(target, [*path, module])
                if found:
                    return found
        done.add(module)
        return None

    for module in sorted(graph):
        found = visit(module, [])
        if found:
            return found
    return None


def test_no_import_cycle() -> None:
    cycle = find_cycle(_graph())
    assert cycle is None, "import cycle: " + " -> ".join(cycle or [])


def test_the_cycle_check_finds_cycles() -> None:
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set(), "c": {"a", "b"}}) is None
    assert find_cycle({"p": {"p.m"}, "p.m": set()}) is None


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: str(p.relative_to(PACKAGE)))
def test_no_module_over_the_limit(path: Path) -> None:
    lines = len(path.read_text("utf-8").splitlines())
    assert lines <= MAX_LINES, f"{path.relative_to(PACKAGE)} has {lines} lines"


def test_every_module_states_its_purpose() -> None:
    missing = [
        str(p.relative_to(PACKAGE))
        for p in SOURCES
        if not ast.get_docstring(ast.parse(p.read_text()))
    ]
    assert not missing, f"modules without a docstring: {missing}"


def test_no_relative_imports_hide_from_the_check() -> None:
    for path in SOURCES:
        tree = ast.parse(path.read_text("utf-8"))
        relative = [n for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.level]
        assert not relative, f"{path}: use absolute imports so the room rules see them"


def test_only_cli_calls_sys_exit() -> None:
    for path in SOURCES:
        if path.name in ("cli.py", "__main__.py"):
            continue
        assert "sys.exit(" not in path.read_text("utf-8"), path
