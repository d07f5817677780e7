"""Daemon mode: the subprocess pool, and the front<->daemon wire protocol.

In daemon mode the server's event loop (the *front*) keeps accepting and parsing HTTP and
forwards each request to a process group of daemon processes, which run the application
with the same WSGI bridge and thread pool as embedded mode.

Rules of this room (DESIGN.md section 2):

- ``daemon/`` may use ``wsgi/`` and ``scripts/``: a daemon process runs the WSGI bridge and
  loads the script.
- The pool manager never imports ``http/``; requests reach it as values, not connections.
- ``daemon/wire.py`` is sans-IO: it turns values into bytes and bytes into values, and
  nothing in it imports asyncio, threads or sockets.
"""
