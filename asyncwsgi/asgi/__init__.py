"""``asyncwsgi.WSGIApp``: a WSGI application mounted in an ASGI host, reloaded safely.

``app`` is the ASGI application (lifespan, the pool, the script); ``scope`` the pure
translation between ASGI and WSGI values; ``links`` the host glue (asyncio or trio);
``exchange`` one request answered from a pool thread; ``daemon`` the same request sent
to a daemon process group instead.
"""

from asyncwsgi.asgi.app import WSGIApp

__all__ = ["WSGIApp"]
