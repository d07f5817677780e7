"""asyncwsgi: an asyncio server for WSGI applications, with mod_wsgi's script reloading.

Public API: :func:`serve`, :func:`run`, :class:`Config` and :class:`WSGIApp` (an ASGI
application serving a WSGI one).
"""

from asyncwsgi.asgi import WSGIApp
from asyncwsgi.config import Config
from asyncwsgi.server import run, serve

__version__ = "0.1.0"

__all__ = ["Config", "WSGIApp", "__version__", "run", "serve"]
