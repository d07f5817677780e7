"""Script reloading in embedded mode: the reload itself.

The rules (docs/DESIGN.md, "Script reloading"):

* The script's status is checked when each request arrives, one stat per event-loop tick
  shared by the requests of that tick (:class:`~asyncwsgi.scripts.watch.FileWatch`). The
  stat is taken by the first worker thread that needs it, never on the loop, so a slow
  filesystem stalls only requests that must wait for the answer anyway.
* A change re-imports the script in the request that saw it; exactly one import per change.
  Requests that see the change while the import runs wait for it and get the new code.
* A failed load is remembered with the stat it was seen at: until the file changes again,
  no new import and no new log entry. Meanwhile the last version that loaded keeps
  serving (``keep_last_good``, the default), or requests get the error (500, mod_wsgi's
  behaviour); :attr:`ScriptSource.degraded` says which failure, since when.
"""

from __future__ import annotations

import logging
import os
import sys
import threading
import time
from dataclasses import dataclass

from asyncwsgi.errors import ScriptLoadError
from asyncwsgi.scripts.loader import load_script, module_name_for
from asyncwsgi.scripts.watch import FileWatch, StatKey, TickStat
from asyncwsgi.wsgi.types import WSGIApplication

logger = logging.getLogger("asyncwsgi.error")


@dataclass(frozen=True, slots=True)
class _Loaded:
    """What the script gave when loaded at ``key``: an app, or the error it raised."""

    app: WSGIApplication | None
    error: ScriptLoadError | None
    key: StatKey | None
    taken_at: float
    generation: int


class ScriptSource:
    """A WSGI script file as an application source, reloaded as docs/DESIGN.md
    ("Script reloading") says."""

    def __init__(
        self,
        path: str,
        *,
        callable_name: str = "application",
        reloading: bool = True,
        mode: str = "embedded",
        keep_last_good: bool = True,
    ) -> None:
        self.path = os.path.abspath(path)
        self.callable_name = callable_name
        self.reloading = reloading
        self.mode = mode
        self.keep_last_good = keep_last_good
        self.imports = 0
        # The failure the last good version is serving through (None: none).
        self.degraded: dict[str, object] | None = None
        self._watch = FileWatch(self.path)
        self._lock = threading.Lock()  # one load at a time
        self._generation = 0  # bumped by force_reload()
        taken_at = time.monotonic()
        key = self._watch.stat() if reloading else None
        _, app = load_script(self.path, callable_name)  # at start-up, errors propagate
        self.imports += 1
        self._current = _Loaded(app, None, key, taken_at, 0)
        self._good = app
        self._good_at = time.time()

    @property
    def stat_calls(self) -> int:
        return self._watch.stat_calls

    def force_reload(self) -> None:
        """Make the next request re-import the script even though it has not changed."""
        self._generation += 1

    # -- event loop thread -------------------------------------------------------------

    def ticket(self) -> TickStat | None:
        if not self.reloading:
            return None
        return self._watch.ticket()

    # -- worker thread -----------------------------------------------------------------

    def resolve(self, ticket: object) -> WSGIApplication:
        current = self._current
        if current.generation == self._generation:
            if ticket is None:
                return self._result(current)
            assert isinstance(ticket, TickStat)
            key = ticket.get()
            if key == current.key or ticket.taken_at < current.taken_at:
                # Unchanged, or a stat older than the one the current code was loaded at.
                return self._result(current)
        return self._reload(ticket)

    def _result(self, loaded: _Loaded) -> WSGIApplication:
        if loaded.app is None:
            assert loaded.error is not None
            raise loaded.error
        return loaded.app

    def _reload(self, ticket: object) -> WSGIApplication:
        with self._lock:
            generation = self._generation
            current = self._current
            if (
                isinstance(ticket, TickStat)
                and current.generation == generation
                and current.taken_at >= ticket.taken_at
            ):
                # Loaded (or found broken) while we waited, from a newer stat than ours.
                return self._result(current)
            taken_at = time.monotonic()
            if not self.reloading or ticket is None:
                # Only a forced reload gets here, for a request that does not check the
                # script (reloading off, here or for its mount): nothing is stat'ed.
                key = None if not self.reloading else current.key
                if current.generation == generation:
                    return self._result(current)
            else:
                key = self._watch.stat()
                if key == current.key and current.generation == generation:
                    # Someone else's import, done while we waited, is already this version.
                    return self._result(current)
            if key is None and self.reloading:
                error = ScriptLoadError(self.path, "the script file does not exist")
                if current.key is not None or current.error is None:
                    logger.error("WSGI script '%s' has vanished; %s", self.path, self._fallback)
                return self._failed(error, None, taken_at, generation)
            started = time.perf_counter()
            if not self.keep_last_good:
                # mod_wsgi drops the module first; kept, a failed load puts it back
                # (load_script), so what serves can still be found by its module's name.
                sys.modules.pop(module_name_for(self.path), None)
            self.imports += 1
            try:
                _, app = load_script(self.path, self.callable_name)
            except ScriptLoadError as exc:
                logger.error(
                    "Failed to reload WSGI script '%s' (%s mode): %s; %s",
                    self.path,
                    self.mode,
                    exc.message,
                    self._fallback,
                    exc_info=exc.__cause__ or exc,
                )
                return self._failed(exc, key, taken_at, generation)
            elapsed = (time.perf_counter() - started) * 1000
            logger.info(
                "Reloading WSGI script '%s' (%s mode, %.1f ms)", self.path, self.mode, elapsed
            )
            self._current = _Loaded(app, None, key, taken_at, generation)
            self._good, self._good_at, self.degraded = app, time.time(), None
            return app

    @property
    def _fallback(self) -> str:
        if self.keep_last_good:
            loaded = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(self._good_at))
            return f"the version loaded at {loaded} keeps serving"
        return "answering 500 until it changes"

    def _failed(
        self, error: ScriptLoadError, key: StatKey | None, taken_at: float, generation: int
    ) -> WSGIApplication:
        # Remembered with the stat it was seen at: no new import until the file changes.
        kept = self._good if self.keep_last_good else None
        self._current = _Loaded(kept, error, key, taken_at, generation)
        self.degraded = {"error": str(error), "since": time.time(), "last_good": self._good_at}
        return self._result(self._current)


class StaticSource:
    """An application that is never reloaded (a callable, or ``module:attr``)."""

    def __init__(self, app: WSGIApplication) -> None:
        self.app = app
        self.stat_calls = 0
        self.degraded: dict[str, object] | None = None  # never: nothing re-loads

    def ticket(self) -> None:
        return None

    def resolve(self, ticket: object) -> WSGIApplication:
        return self.app

    def force_reload(self) -> None:
        """Nothing to reload: a callable has no file behind it."""
