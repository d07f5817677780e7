"""The documents say what the code is: the module map of docs/DESIGN.md lists every module
of the package and nothing else, and the README's set-up commands are the two CI runs."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "asyncwsgi"


def module_map() -> set[str]:
    """The paths the "Module map" section lists, from the indentation of its tree."""
    text = (ROOT / "docs" / "DESIGN.md").read_text("utf-8")
    section = text.split("## Module map", 1)[1]
    block = section.split("```", 2)[1]
    found: set[str] = set()
    folders: list[str] = []
    for line in block.splitlines():
        stripped = line.strip()
        if not stripped:
            continue
        depth = (len(line) - len(line.lstrip(" "))) // 2
        name = stripped.split()[0]
        if not re.fullmatch(r"[\w]+(\.py|/)", name):
            continue  # a description running on
        del folders[depth:]
        if name.endswith("/"):
            folders.append(name)
        else:
            found.add("".join(folders) + name)
    return found


def package_modules() -> set[str]:
    found = set()
    for path in PACKAGE.rglob("*.py"):
        relative = path.relative_to(ROOT).as_posix()
        # A subpackage's __init__ is the package's docstring: the folder's line covers it.
        if path.name == "__init__.py" and path.parent != PACKAGE:
            continue
        found.add(relative)
    return found


def test_the_module_map_matches_the_tree() -> None:
    listed = module_map()
    actual = package_modules()
    assert sorted(actual - listed) == [], "modules missing from docs/DESIGN.md's map"
    assert sorted(listed - actual) == [], "the map lists modules that do not exist"


def test_the_readme_starts_with_the_two_commands() -> None:
    text = (ROOT / "README.md").read_text("utf-8")
    block = text.split("```sh\n", 1)[1].split("```", 1)[0].strip().splitlines()
    assert block == [
        "python3 -m pip install . && python3 -m asyncwsgi examples/hello.wsgi",
        "python3 -m pip install '.[test]' && python3 -m pytest",
    ]


def test_the_readme_lists_every_option_of_the_command_line() -> None:
    from asyncwsgi.cli import build_parser

    text = (ROOT / "README.md").read_text("utf-8")
    table = text.split("### Options", 1)[1].split("\n\n", 2)[1]
    listed = set(re.findall(r"`(--[a-z][a-z-]*)", table))
    parser = build_parser()
    flags = {
        flag
        for action in parser._actions
        for flag in action.option_strings
        if flag.startswith("--") and flag not in ("--help", "--version")
    }
    # --no-access-log is listed with --access-log, as one row (and so on).
    flags -= {f for f in flags if f.startswith("--no-") and "--" + f[5:] in listed}
    assert sorted(flags - listed) == [], "options missing from the README's table"
    assert sorted(listed - flags) == [], "the README lists options that do not exist"
