"""The request core: what the three transports share.

The HTTP server (``http/``), the ASGI adapter (``asgi/``) and daemon mode (``daemon/``,
front and daemon process) each carry requests to the WSGI bridge and answers back. What
they have in common lives here, once: the request fields and the two interfaces an
exchange offers (``exchange``), the request body buffer (``body``), the rules of a
response head (``head``) and the batched wake-up from worker threads to an event loop
(``inbox``).

Rule: imports nothing of the package but ``errors``. No sockets; ``inbox`` is the only
module that knows an event loop exists, and only as a callable that schedules work on it.
"""
