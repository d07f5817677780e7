"""The worker pool as a server runs it: with the default settings, requests that wait on
I/O get more threads than ``--threads``, and CPU-bound ones do not (over a real socket)."""

from __future__ import annotations

import os
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx

from tests.conftest import APPS

APP = APPS / "waiting_app.wsgi"


def burst(url: str, count: int, clients: int) -> list[int]:
    with ThreadPoolExecutor(clients) as pool:
        return list(pool.map(lambda _: httpx.get(url, timeout=30).status_code, range(count)))


def test_requests_waiting_on_io_get_more_threads(start_server: Any) -> None:
    server = start_server(APP)  # the default settings: --threads 8, --max-threads 256
    assert set(burst(server.url + "/", 16, 8)) == {200}  # the pool learns the jobs are long
    time.sleep(0.2)
    assert set(burst(server.url + "/", 192, 64)) == {200}
    most = int(httpx.get(server.url + "/most").text)
    assert most > 8, "more requests waited at once than there are --threads"


def test_requests_that_compute_keep_the_threads(start_server: Any) -> None:
    server = start_server(APP, "--max-threads", "64")
    assert set(burst(server.url + "/spin", 40, 16)) == {200}
    time.sleep(0.2)
    assert set(burst(server.url + "/spin", 80, 32)) == {200}
    # The server's threads: its 8 workers, the loop's and a few helpers; not 32 workers.
    threads = len(os.listdir(f"/proc/{server.proc.pid}/task"))
    assert threads <= 16, threads
