"""Importable ``module:attr`` wrapper around the benchmark's WSGI script.

Peer servers (gunicorn, waitress, uvicorn, granian) need ``hello_app:application``.
So that every server runs the very same code as asyncwsgi, this module executes
the script named by ``$BENCH_APP_SCRIPT`` (set by ``benchmarks/run.py``) and
re-exports its ``application``; without it, the sibling ``hello.wsgi`` is used.
"""

from __future__ import annotations

import os
import runpy
from pathlib import Path

_SCRIPT = os.environ.get("BENCH_APP_SCRIPT") or str(Path(__file__).with_name("hello.wsgi"))

application = runpy.run_path(_SCRIPT, run_name="hello_wsgi")["application"]
