"""uvicorn factory: ``a2wsgi.WSGIMiddleware`` serving the script named by
``$ASGI_BENCH_SCRIPT``, loaded once (a2wsgi has no reloading)."""

from __future__ import annotations

import os
from typing import Any

from a2wsgi import WSGIMiddleware

from asyncwsgi.scripts.loader import load_script


def create() -> Any:
    _, application = load_script(os.environ["ASGI_BENCH_SCRIPT"])
    # a2wsgi's default pool is 10 threads; give it the same 8 as WSGIApp.
    return WSGIMiddleware(application, workers=8)
