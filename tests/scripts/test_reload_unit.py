"""ScriptSource in-process: the per-tick stat cache and the reload rules (docs/DESIGN.md,
"Script reloading").

``ticket()`` runs on the event loop, so the tests that take tickets are ``async``;
``resolve()`` runs on worker threads, so the tests call it from plain threads.
"""

from __future__ import annotations

import asyncio
import logging
import os
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from asyncwsgi.errors import ScriptLoadError
from asyncwsgi.scripts.loader import module_name_for
from asyncwsgi.scripts.reloader import ScriptSource
from asyncwsgi.scripts.watch import TickStat

pytestmark = pytest.mark.timeout(30)

ONE_SECOND = 1_000_000_000


def script_text(version: str, *, import_sleep: float = 0.0, after: str = "") -> str:
    return f"""\
import time

VERSION = {version!r}
time.sleep({import_sleep!r})


def application(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [VERSION.encode()]
{after}
"""


def write(path: Path, text: str, *, mtime_ns: int | None = None) -> None:
    """Rewrite in place; by default the mtime moves one second on, so the edit shows."""
    old = path.stat() if path.exists() else None
    path.write_text(text)
    if mtime_ns is None:
        mtime_ns = old.st_mtime_ns + ONE_SECOND if old is not None else time.time_ns()
    os.utime(path, ns=(mtime_ns, mtime_ns))


def version(app: Any) -> str:
    return b"".join(app({}, lambda *a: None)).decode()


@pytest.fixture
def isolated(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[Path]]:
    """Scripts written here are forgotten afterwards (sys.path and sys.modules restored)."""
    monkeypatch.setattr(sys, "path", list(sys.path))
    scripts: list[Path] = []
    yield scripts
    for script in scripts:
        sys.modules.pop(module_name_for(str(script)), None)


@pytest.fixture
def make_source(tmp_path: Path, isolated: list[Path]) -> Callable[..., ScriptSource]:
    def make(text: str | None = None, *, name: str = "app.wsgi", **kw: Any) -> ScriptSource:
        script = tmp_path / name
        script.parent.mkdir(parents=True, exist_ok=True)
        if text is not None or not script.exists():
            write(script, text if text is not None else script_text("v1"))
        isolated.append(script)
        return ScriptSource(str(script), **kw)

    return make


def resolve_in_threads(source: ScriptSource, tickets: list[Any]) -> list[Any]:
    """``resolve`` each ticket on its own thread, all released at once."""
    barrier = threading.Barrier(len(tickets))
    results: list[Any] = [None] * len(tickets)

    def work(i: int) -> None:
        barrier.wait(10)
        try:
            results[i] = source.resolve(tickets[i])
        except BaseException as exc:
            results[i] = exc

    threads = [threading.Thread(target=work, args=(i,)) for i in range(len(tickets))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(20)
    return results


# -- the per-tick stat cache ---------------------------------------------------------------


async def test_tickets_of_one_tick_are_one_stat(make_source: Callable[..., ScriptSource]) -> None:
    source = make_source()
    tickets = [source.ticket() for _ in range(10)]
    assert isinstance(tickets[0], TickStat)
    assert all(t is tickets[0] for t in tickets)
    before = source.stat_calls
    apps = resolve_in_threads(source, tickets)
    assert source.stat_calls == before + 1
    assert all(app is apps[0] for app in apps)
    assert version(apps[0]) == "v1"


async def test_tickets_of_different_ticks_differ(make_source: Callable[..., ScriptSource]) -> None:
    source = make_source()
    first = source.ticket()
    await asyncio.sleep(0)
    second = source.ticket()
    await asyncio.sleep(0)
    third = source.ticket()
    assert first is not second
    assert second is not third
    before = source.stat_calls
    for ticket in (first, second, third):
        source.resolve(ticket)
    assert source.stat_calls == before + 3


async def test_ticket_does_not_stat_on_the_loop(make_source: Callable[..., ScriptSource]) -> None:
    source = make_source()
    before = source.stat_calls
    for _ in range(3):
        source.ticket()
        await asyncio.sleep(0)
    assert source.stat_calls == before


async def test_unchanged_script_gives_the_same_app(
    make_source: Callable[..., ScriptSource],
) -> None:
    source = make_source()
    app = source.resolve(source.ticket())
    for _ in range(5):
        await asyncio.sleep(0)
        assert source.resolve(source.ticket()) is app
    assert source.imports == 1


# -- reloading -----------------------------------------------------------------------------


async def test_change_gives_a_new_app(make_source: Callable[..., ScriptSource]) -> None:
    source = make_source()
    old = source.resolve(source.ticket())
    await asyncio.sleep(0)
    write(Path(source.path), script_text("v2"))
    new = source.resolve(source.ticket())
    assert new is not old
    assert version(new) == "v2"
    assert version(old) == "v1"  # an app already handed out keeps its code
    assert source.imports == 2
    await asyncio.sleep(0)
    assert source.resolve(source.ticket()) is new
    assert source.imports == 2


async def test_one_import_for_ten_threads_of_one_tick(
    make_source: Callable[..., ScriptSource],
) -> None:
    source = make_source()
    source.resolve(source.ticket())
    await asyncio.sleep(0)
    write(Path(source.path), script_text("v2", import_sleep=0.2))
    ticket = source.ticket()
    apps = resolve_in_threads(source, [ticket] * 10)
    assert source.imports == 2
    assert all(app is apps[0] for app in apps), apps
    assert version(apps[0]) == "v2"


async def test_one_import_for_ten_threads_of_different_ticks(
    make_source: Callable[..., ScriptSource],
) -> None:
    source = make_source()
    source.resolve(source.ticket())
    await asyncio.sleep(0)
    write(Path(source.path), script_text("v2", import_sleep=0.2))
    tickets = []
    for _ in range(10):
        tickets.append(source.ticket())
        await asyncio.sleep(0)
    apps = resolve_in_threads(source, tickets)
    assert source.imports == 2
    assert all(app is apps[0] for app in apps), apps
    assert version(apps[0]) == "v2"


async def test_stale_ticket_does_not_import_again(
    make_source: Callable[..., ScriptSource],
) -> None:
    source = make_source()
    stale = source.ticket()
    old = source.resolve(stale)  # this tick's stat is taken now, before the edit
    await asyncio.sleep(0)
    write(Path(source.path), script_text("v2"))
    new = source.resolve(source.ticket())
    assert version(new) == "v2"
    assert source.imports == 2
    # A request of the old tick, resolved only now, gets the current app: no import.
    assert source.resolve(stale) is new
    assert source.imports == 2
    assert old is not new


async def test_stale_unstatted_ticket_does_not_import_again(
    make_source: Callable[..., ScriptSource],
) -> None:
    source = make_source()
    source.resolve(source.ticket())
    await asyncio.sleep(0)
    stale = source.ticket()  # taken, but nobody has resolved it yet
    await asyncio.sleep(0)
    write(Path(source.path), script_text("v2"))
    new = source.resolve(source.ticket())
    assert source.imports == 2
    assert source.resolve(stale) is new
    assert source.imports == 2


async def test_force_reload_reimports_once(make_source: Callable[..., ScriptSource]) -> None:
    source = make_source(script_text("v1", after="import os\nTOKEN = os.urandom(8)"))
    first = source.resolve(source.ticket())
    await asyncio.sleep(0)
    source.force_reload()
    ticket = source.ticket()
    apps = resolve_in_threads(source, [ticket] * 5)
    assert source.imports == 2
    assert all(app is apps[0] for app in apps)
    assert apps[0] is not first
    assert apps[0].__globals__["TOKEN"] != first.__globals__["TOKEN"]
    await asyncio.sleep(0)
    assert source.resolve(source.ticket()) is apps[0]
    assert source.imports == 2


def test_force_reload_without_tickets(make_source: Callable[..., ScriptSource]) -> None:
    source = make_source(reloading=False)
    first = source.resolve(None)
    source.force_reload()
    second = source.resolve(None)
    assert second is not first
    assert source.imports == 2
    assert source.resolve(None) is second


# -- failures ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "broken",
    [
        "def broken(:\n    pass\n",
        "import reload_no_such_module_51c2\n",
        "raise RuntimeError('boom')\n",
        "application = None\n",
        "application = 42\n",
    ],
    ids=["syntax", "import", "raises", "none", "not-callable"],
)
async def test_failed_load_is_remembered(
    make_source: Callable[..., ScriptSource], caplog: pytest.LogCaptureFixture, broken: str
) -> None:
    source = make_source(keep_last_good=False)  # mod_wsgi's behaviour: the error until fixed
    source.resolve(source.ticket())
    await asyncio.sleep(0)
    write(Path(source.path), script_text("bad", after=broken))
    caplog.set_level(logging.INFO, logger="asyncwsgi.error")

    results = resolve_in_threads(source, [source.ticket()] * 4)
    assert all(isinstance(r, ScriptLoadError) for r in results), results
    assert source.imports == 2
    for _ in range(3):
        await asyncio.sleep(0)
        with pytest.raises(ScriptLoadError):
            source.resolve(source.ticket())
    assert source.imports == 2
    failures = [r for r in caplog.records if "Failed to reload" in r.getMessage()]
    assert len(failures) == 1
    assert failures[0].levelno == logging.ERROR

    await asyncio.sleep(0)
    write(Path(source.path), script_text("v3"))
    assert version(source.resolve(source.ticket())) == "v3"
    assert source.imports == 3


async def test_a_failed_load_keeps_the_last_good_version(
    make_source: Callable[..., ScriptSource], caplog: pytest.LogCaptureFixture
) -> None:
    source = make_source()
    first = source.resolve(source.ticket())
    assert source.degraded is None
    await asyncio.sleep(0)
    write(Path(source.path), script_text("bad", after="raise ValueError('nope')\n"))
    caplog.set_level(logging.INFO, logger="asyncwsgi.error")
    results = resolve_in_threads(source, [source.ticket()] * 4)
    assert all(r is first for r in results), results
    assert source.imports == 2
    degraded = source.degraded
    assert degraded is not None and "ValueError: nope" in str(degraded["error"])
    failures = [r.getMessage() for r in caplog.records if "Failed to reload" in r.getMessage()]
    assert len(failures) == 1 and "keeps serving" in failures[0]
    # What serves is still its module in sys.modules (pickle, typing and frameworks
    # look classes up by their module's name).
    assert sys.modules[first.__module__].application is first
    await asyncio.sleep(0)
    write(Path(source.path), script_text("v3"))
    assert version(source.resolve(source.ticket())) == "v3"
    assert source.degraded is None


async def test_vanished_script(
    make_source: Callable[..., ScriptSource], caplog: pytest.LogCaptureFixture
) -> None:
    source = make_source(keep_last_good=False)
    source.resolve(source.ticket())
    caplog.set_level(logging.INFO, logger="asyncwsgi.error")
    Path(source.path).unlink()
    for _ in range(3):
        await asyncio.sleep(0)
        with pytest.raises(ScriptLoadError):
            source.resolve(source.ticket())
    vanished = [r for r in caplog.records if "has vanished" in r.getMessage()]
    assert len(vanished) == 1
    await asyncio.sleep(0)
    write(Path(source.path), script_text("v2-back"))
    assert version(source.resolve(source.ticket())) == "v2-back"


# -- what counts as a change ---------------------------------------------------------------


async def test_same_second_same_size_edit_with_bytecode_cache(
    make_source: Callable[..., ScriptSource], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """Python's default: __pycache__ is written. Its .pyc is keyed on whole-second mtime and
    size, so a reload must not trust it to tell an edit from the old code."""
    monkeypatch.setattr(sys, "dont_write_bytecode", False)
    base = (time.time_ns() // ONE_SECOND) * ONE_SECOND + 100_000_000
    write(tmp_path / "app.wsgi", script_text("v1"), mtime_ns=base)
    source = make_source(None)
    assert version(source.resolve(source.ticket())) == "v1"
    await asyncio.sleep(0)
    write(Path(source.path), script_text("v2"), mtime_ns=base + 1_000_000)
    assert version(source.resolve(source.ticket())) == "v2"


async def test_mtime_backwards_is_a_change(make_source: Callable[..., ScriptSource]) -> None:
    source = make_source()
    path = Path(source.path)
    source.resolve(source.ticket())
    await asyncio.sleep(0)
    write(path, script_text("v0"), mtime_ns=path.stat().st_mtime_ns - 3600 * ONE_SECOND)
    assert version(source.resolve(source.ticket())) == "v0"


async def test_same_mtime_other_size_is_a_change(make_source: Callable[..., ScriptSource]) -> None:
    source = make_source()
    path = Path(source.path)
    source.resolve(source.ticket())
    await asyncio.sleep(0)
    write(path, script_text("v2-longer"), mtime_ns=path.stat().st_mtime_ns)
    assert version(source.resolve(source.ticket())) == "v2-longer"


# -- reloading off -------------------------------------------------------------------------


async def test_reloading_off_no_ticket_no_stat_on_requests(
    make_source: Callable[..., ScriptSource],
) -> None:
    source = make_source(reloading=False)
    at_start = source.stat_calls
    app = source.resolve(source.ticket())
    write(Path(source.path), script_text("v2-longer"))
    for _ in range(20):
        ticket = source.ticket()
        assert ticket is None
        assert source.resolve(ticket) is app
        await asyncio.sleep(0)
    assert version(app) == "v1"
    assert source.imports == 1
    assert source.stat_calls == at_start


def test_reloading_off_never_stats(make_source: Callable[..., ScriptSource]) -> None:
    source = make_source(reloading=False)
    source.resolve(None)
    assert source.stat_calls == 0


# -- module names --------------------------------------------------------------------------


async def test_two_scripts_of_one_name_do_not_collide(
    make_source: Callable[..., ScriptSource],
) -> None:
    a = make_source(script_text("a1"), name="a/app.wsgi")
    b = make_source(script_text("b1"), name="b/app.wsgi")
    assert module_name_for(a.path) != module_name_for(b.path)
    assert version(a.resolve(a.ticket())) == "a1"
    assert version(b.resolve(b.ticket())) == "b1"
    await asyncio.sleep(0)
    write(Path(a.path), script_text("a2"))
    assert version(a.resolve(a.ticket())) == "a2"
    assert version(b.resolve(b.ticket())) == "b1"
    assert (a.imports, b.imports) == (2, 1)
