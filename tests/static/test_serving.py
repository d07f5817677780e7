"""Static files over a real socket: ``--static`` in front of an application (embedded and
daemon mode) and ``Alias`` in a config file, sharing longest-prefix matching with
``WSGIScriptAlias``."""

from __future__ import annotations

import os
import socket
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import EXAMPLES, ServerProcess, read_response

HELLO = EXAMPLES / "hello.wsgi"
BIG = bytes(range(256)) * 4096  # 1 MiB


def make_files(root: Path) -> Path:
    static = root / "static"
    (static / "css").mkdir(parents=True)
    (static / "css" / "site.css").write_text("body{color:red}")
    (static / "big.bin").write_bytes(BIG)
    (static / "index.html").write_text("<p>hi</p>")
    (root / "secret.txt").write_text("secret")
    os.symlink(root / "secret.txt", static / "out.txt")
    return static


def raw_get(port: int, target: bytes) -> bytes:
    """The status line of a GET sent exactly as given (no client normalises the path)."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(b"GET " + target + b" HTTP/1.1\r\nHost: x\r\n\r\n")
        status, _, _ = read_response(sock)
        return status


@pytest.fixture(params=["embedded", "daemon"])
def server(request: Any, tmp_path: Path, start_server: Any) -> Any:
    static = make_files(tmp_path)
    mode = ["--mode", "daemon", "--processes", "1"] if request.param == "daemon" else []
    return start_server(HELLO, "--static", f"/static={static}", *mode)


def test_files_with_validators_and_the_application_beside_them(server: Any) -> None:
    with httpx.Client(base_url=server.url) as client:
        css = client.get("/static/css/site.css")
        assert css.status_code == 200 and css.text == "body{color:red}"
        assert css.headers["content-type"] == "text/css; charset=utf-8"
        assert css.headers["accept-ranges"] == "bytes"
        assert css.headers["etag"].startswith('"') and "last-modified" in css.headers
        big = client.get("/static/big.bin")
        assert big.content == BIG and big.headers["content-length"] == str(len(BIG))
        assert client.get("/").text == "Hello, world!\n"  # not under /static: the app
        assert client.get("/staticky").text == "Hello, world!\n"  # whole segments only


def test_conditional_requests(server: Any) -> None:
    with httpx.Client(base_url=server.url) as client:
        first = client.get("/static/css/site.css")
        etag, modified = first.headers["etag"], first.headers["last-modified"]
        same = client.get("/static/css/site.css", headers={"If-None-Match": etag})
        assert same.status_code == 304 and same.content == b""
        assert same.headers["etag"] == etag
        since = client.get("/static/css/site.css", headers={"If-Modified-Since": modified})
        assert since.status_code == 304
        other = client.get("/static/css/site.css", headers={"If-None-Match": '"nope"'})
        assert other.status_code == 200 and other.text == "body{color:red}"
        failed = client.get("/static/css/site.css", headers={"If-Match": '"nope"'})
        assert failed.status_code == 412


def test_ranges_and_head(server: Any) -> None:
    with httpx.Client(base_url=server.url) as client:
        part = client.get("/static/big.bin", headers={"Range": "bytes=1000-1999"})
        assert part.status_code == 206 and part.content == BIG[1000:2000]
        assert part.headers["content-range"] == f"bytes 1000-1999/{len(BIG)}"
        tail = client.get("/static/big.bin", headers={"Range": "bytes=-10"})
        assert tail.status_code == 206 and tail.content == BIG[-10:]
        beyond = client.get("/static/big.bin", headers={"Range": f"bytes={len(BIG)}-"})
        assert beyond.status_code == 416
        assert beyond.headers["content-range"] == f"bytes */{len(BIG)}"
        stale = client.get("/static/big.bin", headers={"Range": "bytes=0-9", "If-Range": '"old"'})
        assert stale.status_code == 200 and len(stale.content) == len(BIG)
        head = client.head("/static/big.bin")
        assert head.status_code == 200 and head.content == b""
        assert head.headers["content-length"] == str(len(BIG))
        # Ranges are for GET: a HEAD with one gets the whole file's head.
        ranged_head = client.head("/static/big.bin", headers={"Range": "bytes=0-9"})
        assert ranged_head.status_code == 200
        assert ranged_head.headers["content-length"] == str(len(BIG))
        # The connection is still good after a HEAD and a range.
        assert client.get("/static/css/site.css").status_code == 200
        assert client.post("/static/css/site.css").status_code == 405


@pytest.mark.parametrize(
    ("target", "status"),
    [
        (b"/static/../secret.txt", b"400"),
        (b"/static/%2e%2e/secret.txt", b"400"),
        (b"/static/css/%2E%2E/%2E%2E/secret.txt", b"400"),
        (b"/static/..%2fsecret.txt", b"404"),
        (b"/static/css%2fsite.css", b"404"),
        (b"/static/out.txt", b"404"),  # a symlink out of the folder
        (b"/static/css/", b"404"),  # no folder listing
        (b"/static/", b"404"),
        (b"/static/css/site.css/", b"404"),
        (b"/static/%00", b"400"),
    ],
)
def test_nothing_outside_the_folder_and_no_listings(
    tmp_path: Path, start_server: Any, target: bytes, status: bytes
) -> None:
    static = make_files(tmp_path)
    server = start_server(HELLO, "--static", f"/static={static}")
    answer = raw_get(server.port, target)
    assert answer.split()[1] == status, answer
    assert b"secret" not in answer


def test_a_bad_static_option_is_an_error_naming_it(tmp_path: Path) -> None:
    server = ServerProcess(
        [str(HELLO), "--bind", "127.0.0.1:0", "--static", f"/s={tmp_path / 'none'}"], tmp_path
    )
    assert server.proc.wait(15) == 2
    assert "--static /s=" in server.stderr() and "not a folder or a file" in server.stderr()
    server.stop()


SITE = """\
Listen 127.0.0.1:0
<VirtualHost *:*>
    ServerName www.test
    Alias /robots.txt "{static}/css/site.css"
    Alias /static/ {static}/
    Alias /app/media {static}/css
    <Directory {static}>
        Require all granted
        Options -Indexes
    </Directory>
    WSGIScriptAlias /app {hello}
    WSGIScriptAlias / {hello}
</VirtualHost>
"""


def test_alias_in_a_config_file_shares_longest_prefix_with_the_mounts(tmp_path: Path) -> None:
    static = make_files(tmp_path)
    (tmp_path / "site.conf").write_text(SITE.format(static=static, hello=HELLO))
    server = ServerProcess(["--config", "site.conf", "--no-access-log"], tmp_path).wait_ready()
    try:
        with httpx.Client(base_url=server.url, headers={"Host": "www.test"}) as client:
            assert client.get("/static/big.bin").content == BIG
            assert client.get("/robots.txt").text == "body{color:red}"  # one file
            assert client.get("/robots.txt/x").status_code == 404
            assert client.get("/app/media/site.css").text == "body{color:red}"  # longer
            assert client.get("/app/other").text == "Hello, world!\n"
            assert client.get("/").text == "Hello, world!\n"
        assert raw_get(server.port, b"/static/%2e%2e/secret.txt").split()[1] == b"400"
    finally:
        server.stop()
    log = server.stderr()
    assert "static /static -> " in log
    assert "Require ignored" in log and "Options ignored" in log
