"""The two logs every process of a server writes: errors (``asyncwsgi.error``, stderr)
and the access log (``asyncwsgi.access``, stdout).

Rule: the standard library only; nothing of the package. The command line and a daemon
process set them up the same way through :func:`setup_logging`.
"""

from __future__ import annotations

import logging
import sys

ERROR_FORMAT = "[%(asctime)s] [%(process)d] [%(levelname)s] %(message)s"


def setup_logging(level: str, *, access: bool = True) -> None:
    """Send the error log at ``level`` to stderr and (``access``) the access log to
    stdout; handlers already there (an embedding application's) are kept."""
    error = logging.getLogger("asyncwsgi.error")
    if not error.handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter(ERROR_FORMAT))
        error.addHandler(handler)
        error.propagate = False
    error.setLevel(level.upper())
    if not access:
        return
    access_log = logging.getLogger("asyncwsgi.access")
    if not access_log.handlers:
        handler = logging.StreamHandler(sys.stdout)
        handler.setFormatter(logging.Formatter("%(message)s"))
        access_log.addHandler(handler)
        access_log.propagate = False
    access_log.setLevel(logging.INFO)
