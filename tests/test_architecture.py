"""The import rules of DESIGN.md section 2, checked on the source with ``ast``."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "asyncwsgi"

# room -> rooms of the package it must never import
FORBIDDEN = {
    "config": {"http", "wsgi", "scripts", "daemon", "server", "asgi", "cli"},
    "chunks": {"http", "wsgi", "scripts", "daemon", "server", "asgi", "cli", "config", "errors"},
    "errors": {"http", "wsgi", "scripts", "daemon", "server", "asgi", "cli", "config"},
    "http": {"wsgi", "scripts", "daemon", "server", "asgi", "cli"},
    "wsgi": {"http", "server", "daemon", "asgi", "cli"},
    "scripts": {"http", "server", "daemon", "asgi", "cli"},
    # A daemon process runs the WSGI bridge; the pool manager and the front never see HTTP
    # (the front reaches the HTTP layer's exchanges through a structural protocol).
    "daemon": {"http", "server", "asgi", "cli"},
    # Reading a config file and choosing a mount are values in, values out.
    "apache": {"http", "wsgi", "scripts", "daemon", "server", "asgi", "cli", "routing", "sites"},
    "routing": {
        "http",
        "wsgi",
        "scripts",
        "daemon",
        "server",
        "asgi",
        "cli",
        "apache",
        "sites",
        "errors",
    },
    # A running site wires mounts to runners; it reaches HTTP exchanges structurally.
    "sites": {"http", "server", "asgi", "cli"},
}


def room_of(path: Path) -> str:
    relative = path.relative_to(PACKAGE)
    return relative.parts[0].removesuffix(".py")


def imported_rooms(path: Path) -> set[str]:
    tree = ast.parse(path.read_text("utf-8"))
    rooms: set[str] = set()
    for node in ast.walk(tree):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module]
            if node.module == "asyncwsgi":
                names = [f"asyncwsgi.{alias.name}" for alias in node.names]
        for name in names:
            parts = name.split(".")
            if parts[0] == "asyncwsgi" and len(parts) > 1:
                rooms.add(parts[1])
    return rooms


SOURCES = sorted(p for p in PACKAGE.rglob("*.py"))


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: str(p.relative_to(PACKAGE)))
def test_import_rules(path: Path) -> None:
    room = room_of(path)
    forbidden = FORBIDDEN.get(room, set())
    bad = imported_rooms(path) & forbidden
    assert not bad, f"{path.relative_to(PACKAGE)} ({room}) imports {sorted(bad)}"


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
