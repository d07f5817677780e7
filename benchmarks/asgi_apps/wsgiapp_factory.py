"""uvicorn factory: ``asyncwsgi.WSGIApp`` serving the script named by ``$ASGI_BENCH_SCRIPT``.

Run as ``uvicorn --factory wsgiapp_factory:create``; reloading stays on, as in embedded
mode, so each request pays its share of the per-tick stat.
"""

from __future__ import annotations

import os

from asyncwsgi import WSGIApp


def create() -> WSGIApp:
    return WSGIApp(os.environ["ASGI_BENCH_SCRIPT"], threads=8)
