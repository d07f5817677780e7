"""``--reload-on-changes`` in-process: which imported files are watched
(``scripts/sources.py``), the glob patterns of ``--reload-extra``, and the watcher
(``scripts/changes.py``) with both backends, watchfiles and polling, on real files."""

from __future__ import annotations

import asyncio
import importlib
import json
import os
import sys
import time
import types
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from asyncwsgi.scripts.changes import ChangeWatcher, compile_glob, script_folder
from asyncwsgi.scripts.sources import ImportedFiles, watched_files

# -- which imported files are watched ------------------------------------------------------


@pytest.fixture
def module_in(tmp_path: Path) -> Iterator[Path]:
    """A module ``probe_mod_<n>`` in tmp_path, importable while the test runs."""
    path = tmp_path / f"probe_mod_{os.getpid()}.py"
    path.write_text("X = 1\n")
    sys.path.insert(0, str(tmp_path))
    yield path
    sys.path.remove(str(tmp_path))
    sys.modules.pop(path.stem, None)


def test_an_application_module_is_watched_and_libraries_are_not(module_in: Path) -> None:
    importlib.import_module(module_in.stem)
    files = watched_files()
    assert str(module_in.resolve()) in files
    assert json.__file__ not in files and os.__file__ not in files, "the standard library"
    assert os.path.realpath(httpx.__file__) not in files, "site-packages, by default"
    import asyncwsgi.scripts.changes as ours

    assert os.path.realpath(ours.__file__) not in files, "the server's own code"
    with_site = watched_files(site_packages=True)
    assert os.path.realpath(httpx.__file__) in with_site


def test_imported_files_reports_only_what_is_new(module_in: Path) -> None:
    imported = ImportedFiles()
    first = imported.new()
    assert first and imported.new() == [], "nothing imported since"
    importlib.import_module(module_in.stem)
    assert imported.new() == [str(module_in.resolve())]


def test_modules_without_a_source_file_are_skipped(tmp_path: Path) -> None:
    fake = {
        "builtin": sys,  # no __file__
        "made": types.ModuleType("made"),
        "gone": types.SimpleNamespace(__file__=str(tmp_path / "gone.py")),
        "none": None,
    }
    assert watched_files(fake) == []  # type: ignore[arg-type]


# -- globs ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("pattern", "root", "matches", "misses"),
    [
        (
            "templates/**/*.html",
            "/srv/app/templates",
            ["/srv/app/templates/a.html", "/srv/app/templates/x/y/b.html"],
            ["/srv/app/templates/a.txt", "/srv/app/a.html", "/srv/app/templatesx/a.html"],
        ),
        ("*.toml", "/srv/app", ["/srv/app/settings.toml"], ["/srv/app/conf/settings.toml"]),
        ("/etc/app/*.ini", "/etc/app", ["/etc/app/a.ini"], ["/srv/app/a.ini"]),
        ("conf/[!_]*.py", "/srv/app/conf", ["/srv/app/conf/a.py"], ["/srv/app/conf/_a.py"]),
        ("**", "/srv/app", ["/srv/app/a", "/srv/app/x/y"], ["/srv/other/a"]),
    ],
)
def test_a_glob_gives_its_root_and_what_it_matches(
    pattern: str, root: str, matches: list[str], misses: list[str]
) -> None:
    found_root, regex = compile_glob(pattern, "/srv/app")
    assert found_root == root
    for path in matches:
        assert regex.match(path), path
    for path in misses:
        assert not regex.match(path), path


def test_relative_globs_start_at_the_script_folder(tmp_path: Path) -> None:
    assert script_folder(str(tmp_path / "app.wsgi")) == str(tmp_path)
    assert script_folder("package.module:app") == os.getcwd()


# -- the watcher -----------------------------------------------------------------------------


class Seen:
    """What a watcher reported, and a way to wait for it."""

    def __init__(self) -> None:
        self.batches: list[list[str]] = []
        self.event = asyncio.Event()

    def __call__(self, paths: list[str]) -> None:
        self.batches.append(paths)
        self.event.set()

    async def next(self, timeout: float = 5.0) -> list[str]:
        await asyncio.wait_for(self.event.wait(), timeout)
        self.event.clear()
        return self.batches[-1]

    async def nothing(self, wait: float = 1.2) -> None:
        await asyncio.sleep(wait)
        assert not self.event.is_set(), self.batches


def replace(path: Path, text: str) -> None:
    aside = path.with_name(path.name + ".tmp")
    aside.write_text(text)
    os.replace(aside, path)


@pytest.fixture(params=["watchfiles", "polling"])
def poll(request: pytest.FixtureRequest) -> bool:
    return bool(request.param == "polling")


@pytest.fixture
def project(tmp_path: Path) -> Path:
    (tmp_path / "helper.py").write_text("X = 1\n")
    (tmp_path / "other.py").write_text("Y = 1\n")
    (tmp_path / "app.wsgi").write_text("import helper\n")
    (tmp_path / "templates" / "deep").mkdir(parents=True)
    (tmp_path / "templates" / "page.html").write_text("<p>1</p>\n")
    return tmp_path


async def test_a_watched_file_edited_in_place_or_replaced_is_reported(
    project: Path, poll: bool
) -> None:
    seen = Seen()
    watcher = ChangeWatcher(seen, base=str(project), poll=poll)
    watcher.start()
    try:
        watcher.add([str(project / "helper.py")])
        await asyncio.sleep(0.4)  # the watch is set up
        assert watcher.backend == ("polling" if poll else "watchfiles")
        (project / "helper.py").write_text("X = 2\n")
        assert await seen.next() == [str(project / "helper.py")]
        replace(project / "helper.py", "X = 3\n")
        assert await seen.next() == [str(project / "helper.py")]
        # Beside it, but not imported: nothing.
        (project / "other.py").write_text("Y = 2\n")
        await seen.nothing()
    finally:
        watcher.close()


async def test_extra_globs_see_edits_and_new_files_and_nothing_else(
    project: Path, poll: bool
) -> None:
    seen = Seen()
    watcher = ChangeWatcher(seen, globs=["templates/**/*.html"], base=str(project), poll=poll)
    watcher.start()
    try:
        await asyncio.sleep(0.4)
        (project / "templates" / "page.html").write_text("<p>2</p>\n")
        assert await seen.next() == [str(project / "templates" / "page.html")]
        (project / "templates" / "deep" / "new.html").write_text("<p>new</p>\n")
        assert await seen.next() == [str(project / "templates" / "deep" / "new.html")]
        (project / "templates" / "notes.txt").write_text("not matched\n")
        await seen.nothing()
    finally:
        watcher.close()


async def test_an_excluded_file_is_never_reported(project: Path, poll: bool) -> None:
    seen = Seen()
    watcher = ChangeWatcher(seen, base=str(project), poll=poll)
    watcher.exclude([str(project / "app.wsgi")])
    watcher.start()
    try:
        watcher.add([str(project / "app.wsgi"), str(project / "helper.py")])
        await asyncio.sleep(0.4)
        (project / "app.wsgi").write_text("import helper  # edited\n")
        await seen.nothing()
    finally:
        watcher.close()


async def test_a_change_before_the_watch_began_is_reported(project: Path, poll: bool) -> None:
    # The process started, imported helper.py, and the file changed before the
    # supervising process heard of it: reported once the watch is set up.
    started = time.time()
    await asyncio.sleep(0.05)
    (project / "helper.py").write_text("X = 2\n")
    seen = Seen()
    watcher = ChangeWatcher(seen, base=str(project), poll=poll)
    watcher.start()
    try:
        watcher.add([str(project / "helper.py")], since=started)
        assert await seen.next() == [str(project / "helper.py")]
        # A file unchanged since the process started is not.
        watcher.add([str(project / "other.py")], since=time.time() + 1)
        await seen.nothing()
    finally:
        watcher.close()


async def test_changes_that_come_together_are_reported_once(project: Path) -> None:
    seen = Seen()
    watcher = ChangeWatcher(seen, base=str(project))
    watcher.start()
    try:
        watcher.add([str(project / "helper.py"), str(project / "other.py")])
        await asyncio.sleep(0.4)
        (project / "helper.py").write_text("X = 2\n")
        (project / "other.py").write_text("Y = 2\n")
        batch = await seen.next()
        assert batch == sorted([str(project / "helper.py"), str(project / "other.py")])
        await seen.nothing(0.5)
    finally:
        watcher.close()


async def test_a_change_is_not_lost_when_the_watch_is_replaced(
    project: Path, poll: bool, tmp_path_factory: pytest.TempPathFactory
) -> None:
    # A process reports a module in a folder not watched yet: the watch is set up anew.
    # An edit made just before must still be reported.
    elsewhere = tmp_path_factory.mktemp("elsewhere") / "lib.py"
    elsewhere.write_text("Z = 1\n")
    seen = Seen()
    watcher = ChangeWatcher(seen, base=str(project), poll=poll)
    watcher.start()
    try:
        watcher.add([str(project / "helper.py")])
        await asyncio.sleep(0.4)
        (project / "helper.py").write_text("X = 2\n")
        watcher.add([str(elsewhere)])
        assert await seen.next() == [str(project / "helper.py")]
        await seen.nothing(1.0)
    finally:
        watcher.close()


async def test_globs_under_a_symlinked_folder_and_dotfiles(project: Path, poll: bool) -> None:
    # Deploys often serve from a symlink (current -> releases/N).
    current = project.parent / f"{project.name}-current"
    current.symlink_to(project, target_is_directory=True)
    seen = Seen()
    watcher = ChangeWatcher(seen, globs=["templates/*.html", ".env"], base=str(current), poll=poll)
    watcher.start()
    try:
        await asyncio.sleep(0.4)
        (project / "templates" / "page.html").write_text("<p>2</p>\n")
        assert await seen.next() == [str(current / "templates" / "page.html")]
        (project / ".env").write_text("DEBUG=1\n")
        assert await seen.next() == [str(current / ".env")]
    finally:
        watcher.close()
        current.unlink()
