"""TLS (``--certfile``/``--keyfile``) and trusted proxy headers (``--forwarded-allow-ips``),
end to end over real sockets."""

from __future__ import annotations

import ssl
from pathlib import Path

import httpx
import pytest

from asyncwsgi.config import Config
from asyncwsgi.errors import ConfigError
from asyncwsgi.wsgi.proxy import ProxyTrust

trustme = pytest.importorskip("trustme")

APP = "tls_proxy_app:application"


@pytest.fixture
def certificate(tmp_path: Path) -> tuple[Path, Path, ssl.SSLContext]:
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1", "localhost")
    certfile = tmp_path / "cert.pem"
    keyfile = tmp_path / "key.pem"
    cert.cert_chain_pems[0].write_to_path(str(certfile))
    for pem in cert.cert_chain_pems[1:]:
        with open(certfile, "ab") as f:
            f.write(pem.bytes())
    cert.private_key_pem.write_to_path(str(keyfile))
    client = ssl.create_default_context()
    ca.configure_trust(client)
    return certfile, keyfile, client


def test_https(start_server, certificate) -> None:  # type: ignore[no-untyped-def]
    certfile, keyfile, client = certificate
    server = start_server(APP, "--certfile", str(certfile), "--keyfile", str(keyfile))
    assert server.url.startswith("https://127.0.0.1:")
    with httpx.Client(verify=client) as http:
        for _ in range(3):  # keep-alive over TLS
            response = http.get(server.url + "/")
            assert response.status_code == 200
            assert response.text.split()[0] == "https"
    with pytest.raises(httpx.HTTPError):
        httpx.get(server.url.replace("https://", "http://") + "/", timeout=3)


def test_missing_certificate_is_a_config_error(start_server, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    server = start_server(APP, "--certfile", str(tmp_path / "nope.pem"), wait=False)
    assert server.proc.wait(timeout=15) == 2
    assert "certfile" in server.stderr()


def test_forwarded_headers_from_a_trusted_proxy(start_server) -> None:  # type: ignore[no-untyped-def]
    server = start_server(APP)  # default: 127.0.0.1 and ::1 are trusted
    headers = {"X-Forwarded-For": "203.0.113.9, 127.0.0.1", "X-Forwarded-Proto": "https"}
    response = httpx.get(server.url + "/", headers=headers)
    scheme, remote, _ = response.text.split()
    assert (scheme, remote) == ("https", "203.0.113.9")


def test_forwarded_headers_ignored_from_an_untrusted_peer(start_server) -> None:  # type: ignore[no-untyped-def]
    server = start_server(APP, "--forwarded-allow-ips", "10.0.0.1")
    headers = {"X-Forwarded-For": "203.0.113.9", "X-Forwarded-Proto": "https"}
    response = httpx.get(server.url + "/", headers=headers)
    scheme, remote, _ = response.text.split()
    assert (scheme, remote) == ("http", "127.0.0.1")


def test_proxy_trust_walks_back_to_the_first_untrusted_hop() -> None:
    trust = ProxyTrust("127.0.0.1, 10.0.0.0/8")
    environ = {
        "REMOTE_ADDR": "127.0.0.1",
        "REMOTE_PORT": "5000",
        "HTTP_X_FORWARDED_FOR": "6.6.6.6, 198.51.100.7, 10.1.2.3",
        "wsgi.url_scheme": "http",
    }
    trust.apply(environ)
    # 6.6.6.6 could have been written by the client itself; 198.51.100.7 is the client
    # as seen by our trusted 10.x proxy.
    assert environ["REMOTE_ADDR"] == "198.51.100.7"
    assert "REMOTE_PORT" not in environ
    assert environ["wsgi.url_scheme"] == "http"


def test_proxy_trust_rejects_a_bad_scheme_and_bad_config() -> None:
    environ = {
        "REMOTE_ADDR": "::1",
        "HTTP_X_FORWARDED_PROTO": "javascript",
        "wsgi.url_scheme": "http",
    }
    ProxyTrust("::1").apply(environ)
    assert environ["wsgi.url_scheme"] == "http"
    with pytest.raises(ConfigError, match="forwarded_allow_ips"):
        Config.build(app=APP, forwarded_allow_ips="not-an-ip")
