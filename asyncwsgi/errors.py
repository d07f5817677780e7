"""Exception types raised by asyncwsgi.

Rule: library code raises these; only ``asyncwsgi.cli`` turns them into exit codes.
"""

from __future__ import annotations


class AsyncWSGIError(Exception):
    """Base class of every error asyncwsgi raises on purpose."""


class ConfigError(AsyncWSGIError, ValueError):
    """A setting has a bad value, or an unknown setting was given."""


class ConfigFileError(ConfigError):
    """A line of a config file is wrong; the message starts with ``FILE:LINE:``."""


class ScriptLoadError(AsyncWSGIError):
    """The WSGI script or module could not be loaded, or has no usable callable."""

    def __init__(self, target: str, message: str) -> None:
        super().__init__(f"cannot load WSGI application from {target!r}: {message}")
        self.target = target
        self.message = message


class ProtocolError(AsyncWSGIError):
    """A peer of the front<->daemon wire protocol sent bytes that are not a valid frame.

    The connection it came from cannot be trusted past that point and must be closed.
    """


class ClientDisconnected(OSError):
    """The client went away; raised inside the application by ``wsgi.input`` or ``write()``."""


class BadRequestBody(OSError):
    """The request body turned out malformed while the application read it.

    Raised inside the application by ``wsgi.input``; if the application lets it propagate,
    the server answers with the matching 4xx instead of a 500.
    """


class RequestBodyTimeout(BadRequestBody):
    """The request body arrived too slowly (``body_timeout``); the answer is 408."""


class RequestBodyTooLarge(BadRequestBody):
    """The request body grew past ``limit_request_body`` while the application read it."""
