"""Daemon mode: the front's side of a process group, the wire, and the daemon process.

In daemon mode the server's event loop (the *front*) keeps accepting and parsing HTTP and
forwards each request to a process group of daemon processes, which run the application
with the same WSGI bridge and thread pool as embedded mode (docs/DESIGN.md, "Daemon
mode").

- ``runner``: the front's runner of one group: spawning daemons (through the process pool
  manager, ``asyncwsgi.processes``), picking one per request, script checks, timeouts.
- ``link``: the front's connection to one daemon and the requests in flight on it.
- ``wire``: the front<->daemon protocol, sans-IO: values to bytes and bytes to values.
- ``process`` and ``stream``: the daemon process itself, and one request in it.

Rules of this room: ``daemon/`` may use ``wsgi/``, ``scripts/`` and the request core (a
daemon process runs the WSGI bridge and loads the script); it never imports ``http/``:
the front answers the HTTP layer's exchanges through their loop side.
"""
