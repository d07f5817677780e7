"""Worker threads hand work back to an event loop, in batches.

Rule: nothing here imports asyncio or trio; the loop is reached through one thread-safe
``schedule(callback)`` (``loop.call_soon_threadsafe``, or a trio token's
``run_sync_soon``), given at construction.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Callable
from typing import Any

logger = logging.getLogger("asyncwsgi.error")


class LoopInbox:
    """Worker threads post callables here; the loop runs them in batches.

    One scheduled drain runs however many callables were posted before the loop got round
    to them, instead of one wake-up per completion (docs/DESIGN.md, "The request path").
    """

    __slots__ = ("_items", "_schedule", "_scheduled")

    def __init__(self, schedule: Callable[[Callable[[], None]], object]) -> None:
        self._items: deque[tuple[Callable[[Any, Any], None], Any, Any]] = deque()
        self._scheduled = False
        self._schedule = schedule

    def post(self, fn: Callable[[Any, Any], None], a: Any, b: Any) -> None:
        """Any thread: have ``fn(a, b)`` run on the loop soon."""
        self._items.append((fn, a, b))
        if not self._scheduled:
            self._scheduled = True
            try:
                self._schedule(self._drain)
            except Exception:  # the loop is closed: nobody is left to answer
                self._scheduled = False

    def _drain(self) -> None:
        # Reset first: an item posted from now on either is seen by this drain or
        # schedules a new one.
        self._scheduled = False
        items = self._items
        popleft = items.popleft
        while items:
            fn, a, b = popleft()
            try:
                fn(a, b)
            except Exception:
                logger.exception("error in event loop callback")
