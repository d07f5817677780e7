"""Serving: sockets, the server process, the supervisor of server copies, the runners.

``sockets`` binds and accepts; ``runners`` is the application side of a server (one
interface, a runner per mode); ``server`` is one serving process (HTTP and a runner);
``supervisor`` runs copies of it for ``--processes N`` in embedded mode; ``host`` is what
those two share (signals, the control socket); ``lifecycle`` starts one and stops it.
"""

from asyncwsgi.server.lifecycle import run, serve

__all__ = ["run", "serve"]
