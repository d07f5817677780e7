"""The I/O-bound app of ``run.py --scenario io``: each request waits 10 ms, then answers.

``time.sleep`` stands for a call to a database or another service: the thread serving
the request is blocked, but the CPU is free. A server can therefore serve at most
``threads / 0.010`` requests per second however fast it is, and with enough threads
``connections / 0.010`` (25,600 req/s at 256 connections): what the run compares
against. Loaded by path like ``examples/hello.wsgi`` (peers through ``hello_app.py``).
"""

import time

SLEEP_S = 0.010  # the wait per request; servers.IO_SLEEP_S must say the same
BODY = b"Slept 10 ms.\n"


def application(environ, start_response):
    time.sleep(SLEEP_S)
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(BODY)))])
    return [BODY]
