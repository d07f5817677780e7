"""Echo application for the raw HTTP tests (tests/http/test_http_raw.py).

Routes, chosen by the first segment of PATH_INFO:

* ``/stream``  -- a generator body without Content-Length: ``a``, ``""``, ``bb``, ``ccc``.
* ``/noread``  -- answers without touching ``wsgi.input``.
* ``/static``  -- a fixed body whatever the method, no Content-Length (the server
  computes it); ``/static-length`` sets Content-Length itself.
* anything else -- reads ``wsgi.input`` to the end and answers
  ``METHOD PATH_INFO LENGTH:BODY`` with no Content-Length (the server computes it).
"""


def application(environ, start_response):
    path = environ["PATH_INFO"]
    method = environ["REQUEST_METHOD"]

    if path.startswith("/stream"):
        start_response("200 OK", [("Content-Type", "text/plain")])

        def parts():
            yield b"a"
            yield b""  # an empty chunk must not end a chunked body early
            yield b"bb"
            yield b"ccc"

        return parts()

    if path.startswith("/noread"):
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"did not read the body\n"]

    if path.startswith("/static"):
        out = b"the same body for GET and HEAD\n"
        headers = [("Content-Type", "text/plain; charset=utf-8")]
        if path.startswith("/static-length"):
            headers.append(("Content-Length", str(len(out))))
        start_response("200 OK", headers)
        return [out]

    body = environ["wsgi.input"].read()
    out = b"%s %s %d:%s" % (method.encode(), path.encode("latin-1"), len(body), body)
    start_response("200 OK", [("Content-Type", "application/octet-stream")])
    return [out]
