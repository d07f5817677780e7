"""A site from an Apache-style config file, end to end: ``python -m asyncwsgi --config``
with two virtual hosts, mounts in embedded mode and in a daemon group, and a .htaccess
that turns reloading off for one folder -- over real sockets."""

from __future__ import annotations

import asyncio
import os
import socket
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from asyncwsgi.control import send_command
from tests.conftest import ROOT, ServerProcess, run_cli

SCRIPT = """\
import os
NAME = {name!r}
VERSION = {version!r}

def application(environ, start_response):
    body = " ".join([NAME, VERSION, str(os.getpid()), environ["SCRIPT_NAME"] or "-",
                     environ["PATH_INFO"] or "-"])
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [body.encode()]
"""

SITE = """\
# Two virtual hosts on every address; the first is the default.
Listen 127.0.0.1:0
WSGIScriptReloading On

WSGIDaemonProcess shop processes=2 threads=4 \\
    graceful-timeout=5 display-name=%{{GROUP}}

<VirtualHost *:*>
    ServerName www.test
    WSGIScriptAlias /shop shop/app.wsgi process-group=shop
    WSGIScriptAlias / "www/app.wsgi"
</VirtualHost>

<VirtualHost *:*>
    ServerName docs.test
    ServerAlias *.docs.test
    WSGIScriptAlias / docs/app.wsgi
</VirtualHost>

<Directory {docs}>
    AllowOverride FileInfo
</Directory>
"""


def write_script(path: Path, name: str, version: str) -> None:
    before = path.stat() if path.exists() else None
    path.write_text(SCRIPT.format(name=name, version=version))
    if before is not None:
        # A new mtime even on a filesystem with coarse timestamps.
        os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns + 1_000_000_000))


def make_site(root: Path, extra: str = "") -> Path:
    for name in ("www", "shop", "docs"):
        (root / name).mkdir(exist_ok=True)
        write_script(root / name / "app.wsgi", name, "v1")
    (root / "docs" / ".htaccess").write_text(
        "# this folder is deployed by hand\nWSGIScriptReloading Off\n"
    )
    conf = root / "site.conf"
    conf.write_text(SITE.format(docs=root / "docs") + extra)
    return conf


def wait_until(condition: Callable[[], Any], timeout: float = 15.0, what: str = "") -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what or condition}")
        time.sleep(0.05)


class Site:
    def __init__(self, server: ServerProcess, root: Path, control: Path) -> None:
        self.server = server
        self.root = root
        self.control = control
        self.client = httpx.Client(base_url=server.url, timeout=10.0)

    def get(self, host: str, path: str = "/") -> httpx.Response:
        return self.client.get(path, headers={"Host": host})

    def body(self, host: str, path: str = "/") -> list[str]:
        response = self.get(host, path)
        assert response.status_code == 200, (response.status_code, response.text)
        return response.text.split()

    def status(self) -> dict[str, Any]:
        import json

        answer = send_command(str(self.control), ["status"])
        assert answer.startswith("ok "), answer
        result: dict[str, Any] = json.loads(answer[3:])
        return result

    def mount(self, vhost: str, path: str) -> dict[str, Any]:
        for mount in self.status()["mounts"]:
            if mount["vhost"] == vhost and mount["path"] == path:
                found: dict[str, Any] = mount
                return found
        raise AssertionError(f"no mount {vhost} {path}")


@pytest.fixture
def site(tmp_path: Path) -> Iterator[Site]:
    make_site(tmp_path)
    control = tmp_path / "control.sock"
    server = ServerProcess(
        ["--config", "site.conf", "--no-access-log", "--control-socket", str(control)],
        tmp_path,
    ).wait_ready(30)
    running = Site(server, tmp_path, control)
    try:
        yield running
    finally:
        running.client.close()
        server.stop()


def test_virtual_hosts_and_mounts_route_by_host_and_longest_prefix(site: Site) -> None:
    server_pid = site.server.proc.pid
    name, version, pid, script_name, path_info = site.body("www.test", "/about")
    assert (name, version, script_name, path_info) == ("www", "v1", "-", "/about")
    assert int(pid) == server_pid  # embedded: the server's own process
    name, _, pid, script_name, path_info = site.body("www.test:8080", "/shop/cart")
    assert (name, script_name, path_info) == ("shop", "/shop", "/cart")
    assert int(pid) != server_pid  # the daemon group
    assert site.body("www.test", "/shop")[:1] == ["shop"]
    assert site.body("www.test", "/shopping")[0] == "www"  # whole segments only
    assert site.body("docs.test", "/shop/cart")[0] == "docs"  # another host's mounts
    assert site.body("api.docs.test")[0] == "docs"  # a ServerAlias wildcard
    assert site.body("DOCS.test.")[0] == "docs"  # case and a trailing dot
    assert site.body("unknown.test")[0] == "www"  # the first host is the default
    # HTTP/1.0 without a Host header: the default host too.
    with socket.create_connection(("127.0.0.1", site.server.port), timeout=10) as sock:
        sock.sendall(b"GET /x HTTP/1.0\r\n\r\n")
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    assert data.startswith(b"HTTP/1.1 200") and data.split(b"\r\n\r\n", 1)[1].startswith(b"www v1")


def test_each_mount_reloads_as_its_contexts_say(site: Site) -> None:
    root = site.root
    shop_pids = {site.body("www.test", "/shop/")[2] for _ in range(6)}
    # Embedded mount, reloading on (server config): the next request runs the new code.
    write_script(root / "www" / "app.wsgi", "www", "v2")
    assert site.body("www.test")[1] == "v2"
    # Daemon group, reloading on: a rolling restart; no request fails meanwhile.
    write_script(root / "shop" / "app.wsgi", "shop", "v2")
    versions = []
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        answer = site.body("www.test", "/shop/")
        versions.append(answer[1])
        if answer[1] == "v2" and answer[2] not in shop_pids:
            break
    assert versions[-1] == "v2"
    # The .htaccess turned reloading off for docs: the change is not picked up, and that
    # mount never stats its script.
    write_script(root / "docs" / "app.wsgi", "docs", "v2")
    for _ in range(20):
        assert site.body("docs.test")[1] == "v1"
    docs = site.mount("docs.test", "/")
    assert docs["script_reloading"] is False
    assert docs["script_stats"] == 0
    assert docs["requests"] >= 20
    assert docs["htaccess_stats"] >= 1  # the .htaccess itself is watched
    www = site.mount("www.test", "/")
    assert www["script_stats"] >= 1


def test_htaccess_is_reread_when_it_changes(site: Site) -> None:
    root = site.root
    write_script(root / "docs" / "app.wsgi", "docs", "v2")
    assert site.body("docs.test")[1] == "v1"
    htaccess = root / "docs" / ".htaccess"
    before = htaccess.stat()
    htaccess.write_text("WSGIScriptReloading On\n")
    os.utime(htaccess, ns=(before.st_atime_ns, before.st_mtime_ns + 1_000_000_000))
    # The .htaccess is re-read off the request path; requests after that reload.
    wait_until(lambda: site.body("docs.test")[1] == "v2", what="docs to serve v2")
    assert site.mount("docs.test", "/")["script_reloading"] is True

    # A .htaccess that no longer parses: 500 and one logged error, until it is fixed.
    htaccess.write_text("WSGIScriptReloading On\nWSGIScriptReloading Maybe\n")
    os.utime(htaccess, ns=(before.st_atime_ns, before.st_mtime_ns + 2_000_000_000))
    wait_until(lambda: site.get("docs.test").status_code == 500, what="a 500")
    for _ in range(5):
        assert site.get("docs.test").status_code == 500
    assert site.body("www.test")[0] == "www"  # other mounts are not affected
    assert site.server.stderr().count("WSGIScriptReloading takes On or Off") == 1
    assert f"{htaccess}:2:" in site.server.stderr()
    htaccess.write_text("WSGIScriptReloading Off\n")
    os.utime(htaccess, ns=(before.st_atime_ns, before.st_mtime_ns + 3_000_000_000))
    wait_until(lambda: site.get("docs.test").status_code == 200, what="a 200 again")


def test_daemon_group_title_and_control_command(site: Site) -> None:
    pids = {int(site.body("www.test", "/shop/")[2]) for _ in range(8)}
    for pid in pids:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            assert f.read().split(b"\0")[0] == b"(wsgi:shop)"
    answer = send_command(str(site.control), ["reload", "shop"])
    assert answer == "ok reloading shop"
    wait_until(
        lambda: int(site.body("www.test", "/shop/")[2]) not in pids, what="new shop processes"
    )
    answer = send_command(str(site.control), ["reload", "nope"])
    assert answer.startswith("error no process group named 'nope'")
    assert "embedded" in answer and "shop" in answer


def test_check_config_prints_effective_settings_and_their_origins(tmp_path: Path) -> None:
    make_site(tmp_path)
    result = run_cli(tmp_path, "--config", "site.conf", "--check-config")
    assert result.returncode == 0, result.stderr
    out = result.stdout
    docs = out[out.index("<VirtualHost> docs.test") :]
    assert f"/ -> {tmp_path / 'docs' / 'app.wsgi'}  (site.conf:17)" in docs
    origin = f"{tmp_path / 'docs' / '.htaccess'}:2"
    assert ["WSGIScriptReloading", "Off", origin] in [line.split() for line in docs.splitlines()]
    www = out[out.index("<VirtualHost> www.test") : out.index("<VirtualHost> docs.test")]
    lines = [line.split() for line in www.splitlines()]
    assert ["WSGIScriptReloading", "On", "site.conf:3"] in lines
    assert ["WSGIProcessGroup", "shop", "site.conf:10", "(process-group=)"] in lines
    assert "WSGIDaemonProcess shop  (site.conf:5)" in out
    assert "processes=2" in out and "threads=4" in out and "shutdown-timeout=5 (default)" in out
    # The command line wins over the file, .htaccess included.
    result = run_cli(
        tmp_path, "--config", "site.conf", "--check-config", "--script-reloading", "on"
    )
    docs = result.stdout[result.stdout.index("<VirtualHost> docs.test") :]
    assert ["WSGIScriptReloading", "On", "command", "line"] in [
        line.split() for line in docs.splitlines()
    ]


@pytest.mark.parametrize(
    ("extra", "line", "message"),
    [
        ("WSGIScriptAlias /x missing.wsgi\n", 23, "the script"),
        ("WSGIProcessGroup nosuch\n", 23, "no WSGIDaemonProcess named 'nosuch'"),
        ("<Directory /srv>\nServerName x\n</Directory>\n", 24, "not allowed in <Directory>"),
        ("RewriteEngine On\n", 23, "unknown directive 'RewriteEngine'"),
        ("WSGIDaemonProcess other threads=many\n", 23, "threads='many'"),
    ],
    ids=["missing-script", "missing-group", "wrong-context", "unknown", "bad-value"],
)
def test_config_errors_name_file_and_line_and_nothing_starts(
    tmp_path: Path, extra: str, line: int, message: str
) -> None:
    make_site(tmp_path, extra)
    for args in (("--check-config",), ("--bind", "127.0.0.1:0")):
        result = run_cli(tmp_path, "--config", "site.conf", *args)
        assert result.returncode == 2
        assert result.stderr.startswith(f"site.conf:{line}: "), result.stderr
        assert message in result.stderr
        assert "Listening" not in result.stdout


def test_command_line_options_override_the_file(tmp_path: Path) -> None:
    make_site(tmp_path)
    server = ServerProcess(
        [
            "--config",
            "site.conf",
            "--bind",
            "127.0.0.1:0",
            "--script-reloading",
            "off",
            "--no-access-log",
            "--control-socket",
            "none",
        ],
        tmp_path,
    ).wait_ready(30)
    try:
        with httpx.Client(base_url=server.url, timeout=10) as client:
            write_script(tmp_path / "www" / "app.wsgi", "www", "v2")
            for _ in range(5):
                assert client.get("/", headers={"Host": "www.test"}).text.split()[1] == "v1"
    finally:
        server.stop()
    # Reloading off from the command line: neither the scripts nor the .htaccess (which
    # could change nothing) are stat'ed.
    assert "0 stat(s) of the WSGI script; 0 of .htaccess" in server.stderr()


def test_the_readme_migration_example_is_a_valid_site(tmp_path: Path) -> None:
    readme = (ROOT / "README.md").read_text("utf-8")
    start = readme.index("```apache\n# site.conf\n") + len("```apache\n")
    text = readme[start : readme.index("```", start)]
    srv = tmp_path / "srv"
    for name, script in (("www", "site"), ("shop", "shop"), ("docs", "docs")):
        (srv / name).mkdir(parents=True)
        write_script(srv / name / f"{script}.wsgi", name, "v1")
    (srv / "www" / "static").mkdir()
    (srv / "www" / "static" / "site.css").write_text("body{}")
    (tmp_path / "site.conf").write_text(
        # A free port instead of 80, so the virtual hosts take any port.
        text.replace("/srv/", f"{srv}/")
        .replace("Listen 80", "Listen 127.0.0.1:0")
        .replace("*:80", "*:*")
    )
    result = run_cli(tmp_path, "--config", "site.conf", "--check-config")
    assert result.returncode == 0, result.stderr
    docs = result.stdout[result.stdout.index("<VirtualHost> docs.example.com") :]
    lines = text.splitlines()
    off = lines.index("        WSGIScriptReloading Off") + 1
    assert ["WSGIScriptReloading", "Off", f"site.conf:{off}"] in [
        line.split() for line in docs.splitlines()
    ]
    group = next(i for i, line in enumerate(lines, 1) if line.startswith("WSGIDaemonProcess"))
    assert f"WSGIDaemonProcess shop  (site.conf:{group})" in result.stdout
    # Apache's own lines are read and ignored, with a notice each.
    assert "notice: LoadModule ignored" in result.stdout
    assert "notice: <Files> ignored" in result.stdout
    # And it serves: the Host header picks the virtual host, the path the mount.
    server = ServerProcess(
        ["--config", "site.conf", "--no-access-log", "--control-socket", "none"], tmp_path
    ).wait_ready(30)
    try:
        with httpx.Client(base_url=server.url, timeout=10) as client:
            for host, path, name in (
                ("example.com", "/shop/x", "shop"),
                ("www.example.com", "/", "www"),
                ("docs.example.com", "/shop/x", "docs"),
            ):
                assert client.get(path, headers={"Host": host}).text.split()[0] == name
            css = client.get("/static/site.css", headers={"Host": "www.example.com"})
            assert css.text == "body{}"
    finally:
        server.stop()


def test_one_daemon_group_at_two_mount_points_and_any_port_with_bind(tmp_path: Path) -> None:
    # The file's ports (80) are not where --bind listens: with --bind, any port matches.
    write_script(tmp_path / "shop.wsgi", "shop", "v1")
    write_script(tmp_path / "café.wsgi", "café", "v1")
    (tmp_path / "site.conf").write_text(
        "Listen 80\nWSGIDaemonProcess shop processes=1 threads=2\n"
        "<VirtualHost *:80>\n  ServerName www.test\n"
        "  WSGIScriptAlias /app shop.wsgi process-group=shop\n"
        "  WSGIScriptAlias / shop.wsgi process-group=shop\n"
        "  WSGIScriptAlias /café café.wsgi\n</VirtualHost>\n"
    )
    server = ServerProcess(
        [
            "--config",
            "site.conf",
            "--bind",
            "127.0.0.1:0",
            "--no-access-log",
            "--control-socket",
            "none",
            "--maximum-requests",
            "1000",
        ],
        tmp_path,
    ).wait_ready(30)
    try:
        with httpx.Client(base_url=server.url, timeout=10) as client:

            def fields(path: str) -> list[str]:
                response = client.get(path, headers={"Host": "www.test"})
                assert response.status_code == 200, (path, response.text)
                return response.content.decode("utf-8").split()

            # One group, two mount points: each request has its own SCRIPT_NAME, and the
            # root mount's is empty.
            assert fields("/foo")[3:] == ["-", "/foo"]
            assert fields("/app/foo")[3:] == ["/app", "/foo"]
            assert fields("/foo")[2] == fields("/app/x")[2]  # the same daemon process
            # A UTF-8 mount point matches the percent-encoded request path.
            name, _, _, script_name, path_info = fields("/caf%C3%A9/x")
            assert name == "café"
            # SCRIPT_NAME is a PEP 3333 string: the UTF-8 bytes as latin-1.
            assert script_name == "/café".encode().decode("latin-1") and path_info == "/x"
            # Dot segments and encoded slashes never choose a mount.
            raw = b"GET /app/../foo HTTP/1.1\r\nHost: www.test\r\nConnection: close\r\n\r\n"
            with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
                sock.sendall(raw)
                assert sock.recv(100).startswith(b"HTTP/1.1 400 ")
            assert client.get("/app%2Ffoo", headers={"Host": "www.test"}).status_code == 404
    finally:
        server.stop()


def _daemon_children() -> list[int]:
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", encoding="latin-1") as f:
                ppid = int(f.read().rpartition(")")[2].split()[1])
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                cmdline = f.read()
        except OSError:
            continue
        if ppid == os.getpid() and cmdline.startswith(b"asyncwsgi: daemon leak"):
            found.append(int(entry))
    return found


async def test_a_failed_start_leaves_no_daemon_processes(tmp_path: Path) -> None:
    from asyncwsgi import serve
    from asyncwsgi.config import Config
    from asyncwsgi.errors import ConfigError
    from asyncwsgi.sites.directives import read_site

    write_script(tmp_path / "app.wsgi", "app", "v1")
    (tmp_path / "site.conf").write_text(
        "WSGIDaemonProcess leak processes=2\nWSGIScriptAlias / app.wsgi process-group=leak\n"
    )
    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen()
    try:
        port = taken.getsockname()[1]
        site = read_site(str(tmp_path / "site.conf"))
        config = Config.build(site=site, bind=(f"127.0.0.1:{port}",), control_socket="none")
        # The daemon group starts (READY) before the address turns out to be taken.
        with pytest.raises(ConfigError, match=r"bind 127\.0\.0\.1"):
            await serve(config=config, shutdown_trigger=asyncio.Event().wait)
    finally:
        taken.close()
    assert _daemon_children() == []
