"""Host glue: the one way from a worker thread back to the host's event loop.

Rule: the only module of ``asgi/`` that knows which event loop it runs on. A link is one
event loop as the requests served on it see it: a :class:`~asyncwsgi.core.inbox.LoopInbox`
that batches the wake-ups of every request into one thread-safe call, and the one-shot
things the loop side waits on. :class:`AsyncioLink` serves asyncio hosts (uvicorn,
granian, hypercorn's asyncio worker); :class:`AnyioLink` serves trio hosts through anyio.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, Protocol

import anyio
import anyio.lowlevel

from asyncwsgi.asgi.scope import Receive
from asyncwsgi.core.inbox import LoopInbox


class Link(Protocol):
    """One event loop, as the requests served on it see it."""

    inbox: LoopInbox  # worker side: post(fn, a, b) runs fn(a, b) on the loop soon

    def waiter(self) -> Any:
        """Loop side: a new one-shot thing to wait on."""

    def wake(self, waiter: Any) -> None:
        """Loop side: release whoever waits on ``waiter``."""

    def wait(self, waiter: Any) -> Awaitable[Any]:
        """Loop side: the awaitable that waits on ``waiter``."""


class AsyncioLink:
    """asyncio: ``call_soon_threadsafe`` to wake the loop, futures to wait on."""

    __slots__ = ("inbox", "loop")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.inbox = LoopInbox(loop.call_soon_threadsafe)

    def waiter(self) -> asyncio.Future[None]:
        return self.loop.create_future()

    def wake(self, waiter: asyncio.Future[None]) -> None:
        if not waiter.done():  # it may have been cancelled with its task
            waiter.set_result(None)

    def wait(self, waiter: asyncio.Future[None]) -> Awaitable[None]:
        return waiter


class AnyioLink:
    """A loop that is not asyncio's (trio): its event loop token to wake it, anyio events.

    anyio runs on asyncio (served by :class:`AsyncioLink`) and trio, so the native token
    it hands out here is a ``TrioToken``, whose ``run_sync_soon`` is the loop's
    thread-safe door.
    """

    __slots__ = ("inbox",)

    def __init__(self, token: anyio.lowlevel.EventLoopToken) -> None:
        native: Any = token.native_token
        self.inbox = LoopInbox(native.run_sync_soon)

    def waiter(self) -> anyio.Event:
        return anyio.Event()

    def wake(self, waiter: anyio.Event) -> None:
        waiter.set()

    def wait(self, waiter: anyio.Event) -> Awaitable[None]:
        return waiter.wait()


class Cancellable(Protocol):
    def cancel(self) -> Any: ...


# Starts a task on the host's loop that runs fn(receive): the request's receiver.
Spawn = Callable[[Callable[[Receive], Coroutine[Any, Any, None]], Receive], Cancellable]


def asyncio_spawn(fn: Callable[[Receive], Coroutine[Any, Any, None]], arg: Receive) -> Any:
    return asyncio.get_running_loop().create_task(fn(arg))
