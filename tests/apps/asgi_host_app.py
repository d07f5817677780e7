"""ASGI applications that real hosts (uvicorn, hypercorn, granian) serve in
tests/asgi/test_asgi_hosts.py.

``app``: a Starlette application with the WSGI test apps (``asgi_wsgi_apps``) mounted
at ``/legacy`` through ``asyncwsgi.WSGIApp``, a WSGI script (``$ASGI_TEST_SCRIPT``, if
set) mounted at ``/script``, and ``/_stats``: the bridge's busy worker threads, the
process's thread count and the apps' events, as JSON.
"""

from __future__ import annotations

import os
import threading

import asgi_wsgi_apps
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Mount, Route

from asyncwsgi import WSGIApp

legacy = WSGIApp(asgi_wsgi_apps.application, threads=4)
SCRIPT = os.environ.get("ASGI_TEST_SCRIPT", "")
script = WSGIApp(SCRIPT, threads=2) if SCRIPT else None
LIFESPAN = os.environ.get("ASGI_TEST_LIFESPAN_LOG", "")


async def stats(request: Request) -> JSONResponse:
    return JSONResponse(
        {
            "busy": legacy.busy_threads,
            "threads": threading.active_count(),
            "bridge_threads": sum(
                t.name.startswith("asyncwsgi-asgi") for t in threading.enumerate()
            ),
            "events": list(asgi_wsgi_apps.EVENTS),
            "imports": getattr(script.source, "imports", 0) if script else 0,
        }
    )


routes = [Route("/_stats", stats), Mount("/legacy", app=legacy)]
if script is not None:
    routes.append(Mount("/script", app=script))

app = Starlette(routes=routes)


async def bare(scope, receive, send):  # type: ignore[no-untyped-def]
    """The bridge with no framework around it, lifespan included (``asgi_host_app:bare``)."""
    if scope["type"] == "lifespan" and LIFESPAN:

        async def logged_receive():  # type: ignore[no-untyped-def]
            message = await receive()
            with open(LIFESPAN, "a") as f:
                f.write(message["type"] + "\n")
            return message

        async def logged_send(message):  # type: ignore[no-untyped-def]
            with open(LIFESPAN, "a") as f:
                f.write(message["type"] + "\n")
            await send(message)

        await legacy(scope, logged_receive, logged_send)
        return
    if scope["type"] == "http" and scope["path"] == "/_stats":
        await app(scope, receive, send)
        return
    await legacy(scope, receive, send)
