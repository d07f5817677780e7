"""asyncwsgi: an asyncio server for WSGI applications, with mod_wsgi's script reloading.

Public API: :func:`serve`, :func:`run` and :class:`Config`.
"""

from asyncwsgi.config import Config
from asyncwsgi.server import run, serve

__version__ = "0.1.0"

__all__ = ["Config", "__version__", "run", "serve"]
