"""The WSGI app of ``reload_under_load.py``: every response body is ``version=N``.

The benchmark copies this file to ``reload_app.py`` in a fresh temporary folder,
serves it (asyncwsgi and mod_wsgi load it as a script file; gunicorn and uvicorn
import it as ``reload_app:application``), and under load rewrites the line
``VERSION = 1`` to ``VERSION = 2``, so each response tells which code served it.
"""

VERSION = 1
BODY = b"version=%d" % VERSION
HEADERS = [("Content-Type", "text/plain"), ("Content-Length", str(len(BODY)))]


def application(environ, start_response):
    start_response("200 OK", HEADERS)
    return [BODY]
