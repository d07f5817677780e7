"""Watching source files for ``--reload-on-changes``: the files an application imported,
and extra globs (templates, settings).

Rule: no stat on the request path. The watching is done by a thread of the supervising
process (the daemon front, or the supervisor of embedded copies) with ``watchfiles``
(inotify on Linux), as uvicorn and granian do; where it is missing or cannot watch, a
thread that polls the files' status twice a second. Changes that come together (an
editor's save, a ``git checkout``) are reported once, after :data:`QUIET` seconds
without another, on the event loop.

Module files are watched through their folders, not one by one, so a file replaced by a
rename (most editors, ``os.replace``) is still seen. A glob is relative to ``base`` (the
script's folder) unless absolute; ``**`` matches any number of folders, ``*`` and ``?``
stay inside one.
"""

from __future__ import annotations

import asyncio
import contextlib
import glob as globbing
import logging
import os
import re
import threading
import time
from collections.abc import Callable, Iterable
from typing import Any

from asyncwsgi.scripts.loader import is_script_path

logger = logging.getLogger("asyncwsgi.error")

# Seconds without another change before the changes seen are reported.
QUIET = 0.05
# The polling fallback looks this often (seconds).
POLL_INTERVAL = 0.5
# A watch is set up within this long of being asked for (seconds).
_WATCH_SETTLED = 0.2

ChangeKey = tuple[int, int, int]


def _magic(part: str) -> bool:
    return any(c in part for c in "*?[")


def compile_glob(pattern: str, base: str) -> tuple[str, re.Pattern[str]]:
    """The folder to watch (recursively) for ``pattern``, and a regex of the absolute
    paths it matches."""
    path = os.path.normpath(os.path.join(base, os.path.expanduser(pattern)))
    parts = path.split(os.sep)
    fixed: list[str] = []
    for part in parts[:-1]:
        if _magic(part):
            break
        fixed.append(part)
    root = os.sep.join(fixed) or os.sep
    regex = ""
    i = 0
    while i < len(path):
        c = path[i]
        if path.startswith("**" + os.sep, i):
            regex += f"(?:[^{re.escape(os.sep)}]*{re.escape(os.sep)})*"
            i += 3
            continue
        if path.startswith("**", i):
            regex += ".*"
            i += 2
            continue
        if c == "*":
            regex += f"[^{re.escape(os.sep)}]*"
        elif c == "?":
            regex += f"[^{re.escape(os.sep)}]"
        elif c == "[":
            end = path.find("]", i + 2)
            if end < 0:
                regex += re.escape(c)
            else:
                body = path[i + 1 : end]
                if body.startswith("!"):
                    body = "^" + body[1:]
                regex += "[" + body.replace("\\", "\\\\") + "]"
                i = end
        else:
            regex += re.escape(c)
        i += 1
    return root, re.compile(regex + r"\Z")


def _key(path: str) -> ChangeKey | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (st.st_mtime_ns, st.st_size, st.st_ino)


class ChangeWatcher:
    """Calls ``on_change(paths)`` on the loop when a watched file or a glob's match is
    written, replaced, created or removed."""

    def __init__(
        self,
        on_change: Callable[[list[str]], None],
        *,
        globs: Iterable[str] = (),
        base: str = ".",
        poll: bool | None = None,
    ) -> None:
        self.on_change = on_change
        self.base = os.path.abspath(base)
        self.globs = [compile_glob(g, self.base) for g in globs]
        self.files: set[str] = set()
        self.excluded: set[str] = set()
        self.backend = "polling" if poll else "watchfiles"
        self._force_poll = bool(poll)
        self._dirs: set[str] = set()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._lock = threading.Lock()
        self._stop: threading.Event | None = None
        self._pending: set[str] = set()
        self._last_seen: dict[str, float] = {}  # path -> when a change to it was seen
        self._timer: asyncio.TimerHandle | None = None
        self._closed = False

    # -- loop thread -------------------------------------------------------------------

    def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        if not self._force_poll:
            try:
                import watchfiles  # noqa: F401
            except ImportError:
                self._use_polling("watchfiles is not installed")
        self._restart()

    def exclude(self, paths: Iterable[str]) -> None:
        """Never report these (the script, when the per-request check owns it)."""
        self.excluded.update(os.path.realpath(p) for p in paths)

    def add(self, files: Iterable[str], since: float = 0.0) -> None:
        """Watch these files too (a process reported new imports). A file changed after
        ``since`` (the wall-clock time the process that imported it started) is reported:
        the change came before the watch, or before the process imported it."""
        new = {os.path.realpath(f) for f in files} - self.files
        if not new:
            return
        with self._lock:
            self.files |= new
        loop = self._loop
        if loop is None:
            return
        if {os.path.dirname(f) for f in new} - self._dirs:
            self._restart()
        if since:
            # Once the watch is surely set up, anything later is the watcher's to see.
            loop.call_later(
                _WATCH_SETTLED,
                loop.run_in_executor,
                None,
                self._changed_since,
                new,
                since,
                time.monotonic(),
            )

    def close(self) -> None:
        self._closed = True
        if self._stop is not None:
            self._stop.set()
        if self._timer is not None:
            self._timer.cancel()

    def wanted(self, path: str) -> bool:
        if path in self.excluded:
            return False
        if path in self.files:
            return True
        return any(regex.match(path) for _, regex in self.globs)

    def _restart(self) -> None:
        if self._closed:
            return
        if self._stop is not None:
            self._stop.set()
        stop = self._stop = threading.Event()
        with self._lock:
            self._dirs = {os.path.dirname(f) for f in self.files}
        dirs = sorted(d for d in self._dirs if os.path.isdir(d))
        roots = sorted({root for root, _ in self.globs if os.path.isdir(root)})
        if self.backend == "polling":
            target: Callable[..., None] = self._poll
            args: tuple[Any, ...] = (stop,)
        else:
            target, args = self._watchfiles, (stop, dirs, roots)
        threading.Thread(target=target, args=args, name="asyncwsgi-watch", daemon=True).start()

    def _use_polling(self, why: str) -> None:
        if self.backend != "polling":
            logger.warning("reload on changes: %s; polling the files instead", why)
            self.backend = "polling"

    def _fall_back(self, why: str) -> None:
        self._use_polling(why)
        self._restart()

    def _seen(self, paths: list[str]) -> None:
        now = time.monotonic()
        for path in paths:
            self._last_seen[path] = now
        self._pending.update(paths)
        if self._timer is not None:
            self._timer.cancel()
        assert self._loop is not None
        self._timer = self._loop.call_later(QUIET, self._report)

    def _report(self) -> None:
        self._timer = None
        paths, self._pending = sorted(self._pending), set()
        if paths and not self._closed:
            self.on_change(paths)

    def _tell(self, stop: threading.Event, paths: list[str]) -> None:
        if paths and not stop.is_set() and self._loop is not None:
            with contextlib.suppress(RuntimeError):  # the loop closed meanwhile
                self._loop.call_soon_threadsafe(self._seen, paths)

    # -- watcher threads ---------------------------------------------------------------

    def _changed_since(self, files: set[str], since: float, added: float) -> None:
        found = []
        for path in sorted(files):
            try:
                st = os.stat(path)
            except OSError:
                found.append(path)  # gone since it was imported
                continue
            # ctime too: a rename or a copy that keeps the old mtime still moves it.
            if max(st.st_mtime, st.st_ctime) > since and path not in self.excluded:
                found.append(path)
        if found and not self._closed and self._loop is not None:
            with contextlib.suppress(RuntimeError):  # the loop closed meanwhile
                self._loop.call_soon_threadsafe(self._seen_before_watch, found, added)

    def _seen_before_watch(self, paths: list[str], added: float) -> None:
        # What the watch itself has reported since the files were added is not new.
        paths = [p for p in paths if self._last_seen.get(p, 0.0) < added]
        if paths:
            self._seen(paths)

    def _watchfiles(self, stop: threading.Event, dirs: list[str], roots: list[str]) -> None:
        import watchfiles

        # Two watchers at most: module folders alone, glob roots with their subfolders.
        threads = []
        if roots:
            threads.append(
                threading.Thread(
                    target=self._watch_tree,
                    args=(watchfiles, stop, roots, True),
                    name="asyncwsgi-watch",
                    daemon=True,
                )
            )
            threads[-1].start()
        if dirs:
            self._watch_tree(watchfiles, stop, dirs, False)
        for thread in threads:
            thread.join()

    def _watch_tree(
        self, watchfiles: Any, stop: threading.Event, paths: list[str], recursive: bool
    ) -> None:
        try:
            for changes in watchfiles.watch(
                *paths,
                watch_filter=None,
                debounce=int(QUIET * 1000),
                step=20,
                stop_event=stop,
                rust_timeout=1000,
                raise_interrupt=False,
                recursive=recursive,
            ):
                with self._lock:
                    found = sorted({p for _, p in changes if self.wanted(os.path.realpath(p))})
                self._tell(stop, found)
        except Exception as exc:  # inotify missing, or its watch limit reached
            if not stop.is_set() and self._loop is not None:
                with contextlib.suppress(RuntimeError):
                    self._loop.call_soon_threadsafe(self._fall_back, f"watchfiles failed: {exc}")

    def _snapshot(self) -> dict[str, ChangeKey | None]:
        with self._lock:
            files = set(self.files)
        for root, regex in self.globs:
            for path in globbing.iglob(os.path.join(root, "**"), recursive=True):
                if regex.match(path):
                    files.add(path)
        return {path: _key(path) for path in files}

    def _poll(self, stop: threading.Event) -> None:
        before = self._snapshot()
        while not stop.wait(POLL_INTERVAL):
            now = self._snapshot()
            changed = [
                p
                for p in set(before) | set(now)
                if (p in before and now.get(p, None) != before[p] and self.wanted(p))
                or (p not in before and p in now and self._is_glob_match(p))
            ]
            before = now
            self._tell(stop, sorted(changed))

    def _is_glob_match(self, path: str) -> bool:
        return path not in self.excluded and any(r.match(path) for _, r in self.globs)


def script_folder(app: str) -> str:
    """Where relative ``--reload-extra`` globs start: the script's folder (the current
    folder for ``module:attr``)."""
    if is_script_path(app):
        return os.path.dirname(os.path.abspath(app))
    return os.getcwd()
