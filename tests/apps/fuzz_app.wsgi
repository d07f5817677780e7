"""Echo application for the HTTP fuzz suite (tests/http/test_fuzz.py).

Every request is answered ``200`` with a JSON object saying what reached the
application: method, PATH_INFO, RAW_URI, QUERY_STRING, SERVER_PROTOCOL, Host,
CONTENT_LENGTH, every ``X-`` header (``HTTP_X_*``), and the length and SHA-256 of the
body read from ``wsgi.input`` -- which it does not touch when the request says
``X-Read: no`` (length ``None``, hash ``unread``), so that the server must get rid of
the body itself. The id sent in ``X-Fuzz-Id`` and the body's length and hash are
repeated in the ``X-Echo-Id`` and ``X-Echo-Body`` response headers, so that an answer to
HEAD (which has no body) still says which request it answers.

When ``FUZZ_APP_LOG`` names a file, the application appends one JSON line per request
to it (one ``write`` of an ``O_APPEND`` file: whole lines, also from several daemon
processes) *before* reading the body: the test reads it to see every request the
application was ever handed, answered or not.
"""

import hashlib
import json
import os
import re

LOG = os.environ.get("FUZZ_APP_LOG")
_ID = re.compile(r"[A-Za-z0-9.-]{1,80}")


def _log(record):
    fd = os.open(LOG, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, (json.dumps(record, sort_keys=True) + "\n").encode("ascii"))
    finally:
        os.close(fd)


def application(environ, start_response):
    fuzz_id = environ.get("HTTP_X_FUZZ_ID", "")
    if LOG:
        _log(
            {
                "id": fuzz_id,
                "method": environ["REQUEST_METHOD"],
                "uri": environ.get("RAW_URI", ""),
            }
        )
    if environ.get("HTTP_X_READ") == "no":
        body_length, digest = None, "unread"
    else:
        body = environ["wsgi.input"].read()
        body_length, digest = len(body), hashlib.sha256(body).hexdigest()
    echo = {
        "id": fuzz_id,
        "method": environ["REQUEST_METHOD"],
        "path": environ["PATH_INFO"],
        "uri": environ.get("RAW_URI", ""),
        "query": environ.get("QUERY_STRING", ""),
        "protocol": environ["SERVER_PROTOCOL"],
        "host": environ.get("HTTP_HOST"),
        "content_length": environ.get("CONTENT_LENGTH", ""),
        "headers": {k: v for k, v in environ.items() if k.startswith("HTTP_X_")},
        "body_length": body_length,
        "body_sha256": digest,
    }
    out = json.dumps(echo, sort_keys=True).encode("ascii")
    start_response(
        "200 OK",
        [
            ("Content-Type", "application/json"),
            ("X-Echo-Id", fuzz_id if _ID.fullmatch(fuzz_id) else "-"),
            ("X-Echo-Body", f"{body_length} {digest}"),
        ],
    )
    return [out]
