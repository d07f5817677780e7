"""Building the WSGI environ of one request.

Rule: nothing here imports asyncio or touches a socket; values in, a dict out.
"""

from __future__ import annotations

import sys
from typing import Any
from urllib.parse import unquote_to_bytes

from asyncwsgi.core.exchange import Exchange
from asyncwsgi.wsgi.input import WSGIInput
from asyncwsgi.wsgi.types import Environ


def base_environ(
    *, file_wrapper: Any, multiprocess: bool, script_name: str = "", errors: Any = None
) -> Environ:
    """The keys that are the same for every request of one application."""
    return {
        "wsgi.version": (1, 0),
        "wsgi.multithread": True,
        "wsgi.multiprocess": multiprocess,
        "wsgi.run_once": False,
        "wsgi.errors": errors if errors is not None else sys.stderr,
        "wsgi.file_wrapper": file_wrapper,
        "wsgi.input_terminated": True,
        "SCRIPT_NAME": script_name,
    }


def decode_path(raw: bytes) -> str:
    """PEP 3333: PATH_INFO is the percent-decoded path, as latin-1 text."""
    if b"%" in raw:
        raw = unquote_to_bytes(raw)
    return raw.decode("latin-1")


def split_host(value: str) -> tuple[str, str]:
    """``host[:port]`` or ``[v6]:port`` into host and port (port may be empty)."""
    if value.startswith("["):
        host, _, rest = value.partition("]")
        return host + "]", rest[1:] if rest.startswith(":") else ""
    host, _, port = value.partition(":")
    return host, port


# Header name (as the client spelled it) -> environ key. Clients send the same few names
# over and over; caching the mapping saves three string operations per header.
_ENVIRON_KEYS: dict[bytes, str] = {}
_ENVIRON_KEYS_MAX = 1024


def _environ_key(name: bytes) -> str | None:
    if b"_" in name:
        # "X_Forwarded_For" would otherwise pose as "X-Forwarded-For": drop it.
        return None
    key = name.decode("latin-1").upper().replace("-", "_")
    if key != "CONTENT_TYPE" and key != "CONTENT_LENGTH":
        key = "HTTP_" + key
    if len(_ENVIRON_KEYS) < _ENVIRON_KEYS_MAX:
        _ENVIRON_KEYS[name] = key
    return key


def build_environ(exchange: Exchange, base: Environ) -> Environ:
    """The environ of one request. The exchange's ``script_name``, when set, overrides the
    base's SCRIPT_NAME (a site's mount, an ASGI host's ``root_path``)."""
    environ = base.copy()
    script_name = exchange.script_name
    if script_name is None:
        script_name = base["SCRIPT_NAME"]
    else:
        environ["SCRIPT_NAME"] = script_name
    path = decode_path(exchange.path)
    if script_name and (path == script_name or path.startswith(script_name + "/")):
        path = path[len(script_name) :]
    environ["REQUEST_METHOD"] = exchange.method
    environ["PATH_INFO"] = path
    query = exchange.query
    environ["QUERY_STRING"] = query.decode("latin-1") if query else ""
    raw_uri = exchange.path + b"?" + query if query else exchange.path
    environ["REQUEST_URI"] = environ["RAW_URI"] = raw_uri.decode("latin-1")
    environ["SERVER_PROTOCOL"] = "HTTP/" + exchange.http_version
    environ["wsgi.url_scheme"] = exchange.scheme

    host_header = None
    keys = _ENVIRON_KEYS
    for name, value in exchange.headers:
        key = keys.get(name)
        if key is None:
            key = _environ_key(name)
            if key is None:
                continue
        text = value.decode("latin-1")
        if key in environ and key[0] == "H":  # CONTENT_* repeat only as identical copies
            environ[key] += ("; " if key == "HTTP_COOKIE" else ",") + text
        else:
            environ[key] = text
            if key == "HTTP_HOST":
                host_header = text

    server = exchange.server
    if server is not None:
        environ["SERVER_NAME"] = server[0]
        environ["SERVER_PORT"] = str(server[1])
    else:  # a UNIX socket has no address of its own to report
        host, port = split_host(host_header or "localhost")
        environ["SERVER_NAME"] = host
        environ["SERVER_PORT"] = port or ("443" if exchange.scheme == "https" else "80")
    client = exchange.client
    if client is not None:
        environ["REMOTE_ADDR"] = client[0]
        environ["REMOTE_PORT"] = str(client[1])
    else:
        environ["REMOTE_ADDR"] = ""
    environ["wsgi.input"] = WSGIInput(exchange.read_body)
    return environ
