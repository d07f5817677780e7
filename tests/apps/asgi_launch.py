"""Start a real ASGI host on a listening socket inherited from the test (fd ``FD``).

``python asgi_launch.py uvicorn FD APP``: uvicorn's ``--fd`` takes every inherited socket
for a UNIX one, so this builds the same ``uvicorn.Server`` the CLI would, on the socket
as it is. Hypercorn and granian are started through their own CLIs by the tests.
"""

from __future__ import annotations

import socket
import sys

import uvicorn


def main() -> None:
    host, fd, app = sys.argv[1:4]
    if host != "uvicorn":
        raise SystemExit(f"unknown host {host!r}")
    sock = socket.socket(fileno=int(fd))
    config = uvicorn.Config(
        app, lifespan="on", access_log=False, log_level="info", http="httptools"
    )
    uvicorn.Server(config).run(sockets=[sock])


if __name__ == "__main__":
    main()
