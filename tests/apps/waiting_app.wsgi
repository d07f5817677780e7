"""An application that waits 50 ms on "I/O" per request and counts how many requests
wait at once (tests/server/test_threads.py): ``/`` waits, ``/most`` answers the most
seen at once, ``/spin`` computes for 20 ms instead."""

import threading
import time

_lock = threading.Lock()
_now = 0
_most = 0


def application(environ, start_response):
    global _now, _most
    path = environ["PATH_INFO"]
    if path == "/most":
        body = str(_most).encode()
    elif path == "/spin":
        end = time.thread_time() + 0.02
        while time.thread_time() < end:
            pass
        body = b"spun"
    else:
        with _lock:
            _now += 1
            _most = max(_most, _now)
        time.sleep(0.05)
        with _lock:
            _now -= 1
        body = b"waited"
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]
