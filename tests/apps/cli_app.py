"""The application of tests/server/test_cli.py (``cli_app:application``).

``/slow?s=N`` sleeps N seconds; it appends ``slow started`` to the file named by
``CLI_TEST_EVENTS`` first, so a test can signal the server while the request is in flight.
"""

from __future__ import annotations

import os
import time
from urllib.parse import parse_qs


def application(environ, start_response):
    if environ["PATH_INFO"] == "/slow":
        seconds = float(parse_qs(environ["QUERY_STRING"]).get("s", ["1"])[0])
        events = os.environ.get("CLI_TEST_EVENTS")
        if events:
            with open(events, "a", encoding="utf-8") as f:
                f.write("slow started\n")
        time.sleep(seconds)
        body = b"slow done"
    else:
        body = b"hello from cli_app"
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]
