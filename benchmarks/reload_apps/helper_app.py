"""The WSGI app of ``reload_under_load.py --change helper|broken``: ``version=N`` from a helper.

The benchmark copies this file to ``reload_app.py`` in a fresh temporary folder and
``helper_module.py`` beside it as ``reload_helper.py``, then under load rewrites only
the helper (``VERSION = 1`` -> ``VERSION = 2``; with ``--change broken``, first a
version that raises at import). The script itself never changes, so only a server
that reloads the modules its application imported serves the new version.

asyncwsgi and mod_wsgi load the script by its path, so it puts its own folder on
``sys.path`` to find the helper; gunicorn, uvicorn and granian import it as
``reload_app:application`` from that folder, which is on the path already.
"""

import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
if HERE not in sys.path:
    sys.path.insert(0, HERE)

import reload_helper  # noqa: E402 (needs the folder on sys.path)

BODY = b"version=%d" % reload_helper.VERSION
HEADERS = [("Content-Type", "text/plain"), ("Content-Length", str(len(BODY)))]


def application(environ, start_response):
    start_response("200 OK", HEADERS)
    return [BODY]
