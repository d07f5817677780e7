"""Echoes what the server concluded about the client and the scheme."""


def application(environ, start_response):
    body = (
        f"{environ['wsgi.url_scheme']} {environ['REMOTE_ADDR']} {environ.get('HTTPS', '-')}\n"
    ).encode()
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]
