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
import logging
import os
import re
import threading
import time
from collections.abc import Callable, Iterable
from typing import Any

from asyncwsgi.scripts.loader import is_script_path
from asyncwsgi.scripts.watch import StatKey, stat_key

logger = logging.getLogger("asyncwsgi.error")

# Seconds without another change before the changes seen are reported.
QUIET = 0.05
# The polling fallback looks this often (seconds).
POLL_INTERVAL = 0.5
# A watch is set up within this long of being asked for (seconds).
_WATCH_SETTLED = 0.2
# When a watch is replaced, files changed this long before are looked at by stat (its
# debounce may have held them back).
_HANDOVER = 1.0


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


def _reaches_down(pattern: str) -> bool:
    """Whether a glob can match below the folder :func:`compile_glob` roots it at."""
    folders = os.path.normpath(pattern).split(os.sep)[:-1]
    return "**" in pattern or any(_magic(part) for part in folders)


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
        # Roots watched with their subfolders: those of globs that reach into subfolders
        # ("**", or a wildcard in a folder part); the others need their root folder only.
        self._deep_roots = {
            root for g, (root, _) in zip(globs, self.globs, strict=True) if _reaches_down(g)
        }
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
        self._watch_began = 0.0  # when the current watch was asked for (wall clock)
        self._added_at: dict[str, float] = {}  # path -> when add() got it (wall clock)
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
        """Watch these files too (a process reported new imports; the paths are real,
        resolved by the process). A file changed after ``since`` (the wall-clock time the
        process that imported it started) is reported: the change came before the watch,
        or before the process imported it."""
        new = set(files) - self.files
        if not new:
            return
        added = time.time()
        with self._lock:
            self.files |= new
            for path in new:
                self._added_at[path] = added
        if self._loop is None:
            return
        if self.backend != "polling" and {os.path.dirname(f) for f in new} - self._dirs:
            self._restart()  # (the polling thread reads the set anew on each look)
        if since:
            self._check_later(new, since)

    def _check_later(self, files: set[str], since: float) -> None:
        # Once the watch is surely set up, anything later is the watcher's to see.
        loop = self._loop
        assert loop is not None
        loop.call_later(
            _WATCH_SETTLED, loop.run_in_executor, None, self._changed_since, files, since
        )

    def close(self) -> None:
        self._closed = True
        if self._stop is not None:
            self._stop.set()
        if self._timer is not None:
            self._timer.cancel()

    def seen_since(self, path: str, moment: float) -> bool:
        """Whether a change to ``path`` was seen after ``moment`` (wall clock)."""
        return self._last_seen.get(path, 0.0) > moment or path in self._pending

    def wanted(self, path: str) -> bool:
        if path in self.excluded:
            return False
        if path in self.files:
            return True
        return any(regex.match(path) for _, regex in self.globs)

    def _restart(self) -> None:
        if self._closed:
            return
        now = time.time()
        if self._stop is not None:
            self._stop.set()
            # What the stopped watch held back (its debounce) or missed while the new
            # one was being set up: looked for by stat. (Changes from before it began
            # are the per-process check's, in add().)
            with self._lock:
                files = set(self.files)
            self._check_later(files, max(now - _HANDOVER, self._watch_began))
        self._watch_began = now
        stop = self._stop = threading.Event()
        with self._lock:
            self._dirs = {os.path.dirname(f) for f in self.files}
        shallow = {root for root, _ in self.globs} - self._deep_roots
        dirs = sorted(d for d in self._dirs | shallow if os.path.isdir(d))
        roots = sorted(r for r in self._deep_roots if os.path.isdir(r))
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
        now = time.time()
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

    def _changed_since(self, files: set[str], since: float) -> None:
        found: dict[str, float] = {}  # path -> when it changed
        for path in sorted(files - self.excluded):
            try:
                st = os.stat(path)
            except OSError:
                found[path] = time.time()  # gone since it was imported
                continue
            # The ctime: a write, a rename or a copy that keeps (or sets) the mtime all
            # move it to when it happened; the mtime can say anything.
            changed = st.st_ctime
            if changed > since:
                found[path] = changed
        if found and not self._closed and self._loop is not None:
            with contextlib.suppress(RuntimeError):  # the loop closed meanwhile
                self._loop.call_soon_threadsafe(self._seen_by_stat, found)

    def _seen_by_stat(self, found: dict[str, float]) -> None:
        # A change the watch reported already (after it happened) is not new.
        paths = [p for p, at in found.items() if self._last_seen.get(p, 0.0) < at]
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
                found = set()
                with self._lock:
                    for _, path in changes:
                        # Module files are real paths; a glob may be under a symlink.
                        real = os.path.realpath(path)
                        if self.wanted(real):
                            found.add(real)
                        elif self.wanted(path):
                            found.add(path)
                self._tell(stop, sorted(found))
        except Exception as exc:  # inotify missing, or its watch limit reached
            if not stop.is_set() and self._loop is not None:
                with contextlib.suppress(RuntimeError):
                    self._loop.call_soon_threadsafe(self._fall_back, f"watchfiles failed: {exc}")

    def _snapshot(self) -> dict[str, StatKey | None]:
        with self._lock:
            files = set(self.files)
        for root, regex in self.globs:
            for folder, subfolders, names in os.walk(root):  # (dotfiles too, unlike glob)
                if root not in self._deep_roots:
                    subfolders.clear()
                for name in names:
                    path = os.path.join(folder, name)
                    if regex.match(path):
                        files.add(path)
        return {path: stat_key(path) for path in files}

    def _poll(self, stop: threading.Event) -> None:
        before = self._snapshot()
        while not stop.wait(POLL_INTERVAL):
            now = self._snapshot()
            changed = [p for p in before if now.get(p) != before[p] and self.wanted(p)]
            changed += [p for p in now.keys() - before.keys() if self._new_and_changed(p)]
            before = now
            self._tell(stop, sorted(changed))

    def _new_and_changed(self, path: str) -> bool:
        """Not in the last look: a file a glob now matches, or one added since that
        changed after it was added."""
        if path in self.excluded:
            return False
        if any(r.match(path) for _, r in self.globs):
            return True
        try:
            st = os.stat(path)
        except OSError:
            return False
        return st.st_ctime > self._added_at.get(path, float("inf"))


def script_folder(app: str) -> str:
    """Where relative ``--reload-extra`` globs start: the script's folder (the current
    folder for ``module:attr``)."""
    if is_script_path(app):
        return os.path.dirname(os.path.abspath(app))
    return os.getcwd()


def changed_reason(paths: list[str]) -> str:
    """The reason a restart logs for changed ``paths``: the first few, quoted."""
    return ", ".join(repr(p) for p in paths[:3]) + (" ..." if len(paths) > 3 else "") + " changed"
