"""Apache's own directives in a config file: ignored with one notice per name, access
rules warned about, sections by URL ignored; WSGIRestrictEmbedded and
WSGIPassAuthorization (over a real socket for the last two)."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from asyncwsgi.errors import ConfigFileError
from asyncwsgi.sites.directives import read_site
from tests.conftest import EXAMPLES, ServerProcess

HELLO = EXAMPLES / "hello.wsgi"

AUTH_APP = """\
def application(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [environ.get("HTTP_AUTHORIZATION", "none").encode()]
"""


def site_file(tmp_path: Path, text: str) -> str:
    path = tmp_path / "site.conf"
    path.write_text(text.format(hello=HELLO))
    return str(path)


def test_each_ignored_directive_gets_one_notice_with_every_place(tmp_path: Path) -> None:
    conf = site_file(
        tmp_path,
        "LoadModule wsgi_module modules/mod_wsgi.so\n"
        "ErrorLog logs/error.log\n"
        "KeepAlive On\n"
        "<VirtualHost *:80>\n"
        "    DocumentRoot /var/www\n"
        "    ErrorLog logs/vhost-error.log\n"
        "    WSGIScriptAlias / {hello}\n"
        "</VirtualHost>\n",
    )
    notices = read_site(conf).notices
    assert [level for level, _ in notices] == ["notice"] * 4
    error_log = next(text for _, text in notices if text.startswith("ErrorLog"))
    assert error_log.endswith(f"{conf}:2, {conf}:6")
    assert any(text.startswith("LoadModule ignored (mod_so") for _, text in notices)


def test_access_rules_that_restrict_are_warned_about(tmp_path: Path) -> None:
    conf = site_file(
        tmp_path,
        "WSGIScriptAlias / {hello}\n"
        "<Directory /srv>\n"
        "    Require all granted\n"
        "    Options FollowSymLinks\n"
        "</Directory>\n"
        "<Location /admin>\n"
        "    AuthType Basic\n"
        "    Require valid-user\n"
        "</Location>\n",
    )
    notices = read_site(conf).notices
    warnings = [text for level, text in notices if level == "warning"]
    assert len(warnings) == 2
    assert warnings[0].startswith(f"{conf}:7: 'AuthType Basic'")
    assert warnings[1].startswith(f"{conf}:8: 'Require valid-user': access control is not")
    notes = [text for level, text in notices if level == "notice"]
    assert any(t.startswith("Require ignored (grants every client") for t in notes)
    assert any(t.startswith("<Location> ignored") for t in notes)


def test_a_wsgi_directive_inside_location_is_an_error(tmp_path: Path) -> None:
    conf = site_file(
        tmp_path,
        "WSGIScriptAlias / {hello}\n<Location /app>\n    WSGIProcessGroup app\n</Location>\n",
    )
    with pytest.raises(ConfigFileError, match=r"site.conf:3: WSGIProcessGroup inside <Location>"):
        read_site(conf)


def test_a_directive_nobody_knows_stays_an_error(tmp_path: Path) -> None:
    conf = site_file(tmp_path, "WSGIScriptAlias / {hello}\nRewriteEngine On\n")
    with pytest.raises(ConfigFileError, match=r"site.conf:2: unknown directive 'RewriteEngine'"):
        read_site(conf)


def test_check_config_lists_the_notices(tmp_path: Path) -> None:
    site_file(tmp_path, "ServerAdmin a@b.c\nWSGIScriptAlias / {hello}\nDeny from all\n")
    server = ServerProcess(["--config", "site.conf", "--check-config"], tmp_path)
    assert server.proc.wait(15) == 0
    server.stop()
    out = "\n".join(server.stdout_lines)
    assert "notice: ServerAdmin ignored (core; " in out
    assert "warning: " in out and "'Deny from all': access control is not applied" in out


def test_restrict_embedded_answers_500_and_pass_authorization_passes(tmp_path: Path) -> None:
    (tmp_path / "auth.wsgi").write_text(AUTH_APP)
    site_file(
        tmp_path,
        "Listen 127.0.0.1:0\n"
        "WSGIRestrictEmbedded On\n"
        "WSGIPassAuthorization On\n"
        "WSGIDaemonProcess auth processes=1 threads=2\n"
        "WSGIScriptAlias /auth auth.wsgi process-group=auth\n"
        "WSGIScriptAlias / {hello}\n",
    )
    server = ServerProcess(["--config", "site.conf", "--no-access-log"], tmp_path).wait_ready(30)
    try:
        with httpx.Client(base_url=server.url) as client:
            assert client.get("/").status_code == 500  # embedded mode is restricted
            answer = client.get("/auth", headers={"Authorization": "Bearer t0ken"})
            assert answer.status_code == 200 and answer.text == "Bearer t0ken"
    finally:
        server.stop()
    log = server.stderr()
    assert "WSGIRestrictEmbedded On" in log and "its requests get 500" in log
    assert "WSGIPassAuthorization accepted, no effect" in log


PATHS_APP = """\
import json, sys

def application(environ, start_response):
    import from_venv, from_python_path
    body = json.dumps([sys.prefix, from_venv.WHERE, from_python_path.WHERE])
    start_response("200 OK", [("Content-Type", "application/json")])
    return [body.encode()]
"""


def test_python_home_and_path_for_embedded_mounts_and_groups(tmp_path: Path) -> None:
    import subprocess
    import sys

    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    version = f"python{sys.version_info[0]}.{sys.version_info[1]}"
    (venv / "lib" / version / "site-packages" / "from_venv.py").write_text("WHERE = 'venv'\n")
    lib = tmp_path / "lib"
    lib.mkdir()
    (lib / "from_python_path.py").write_text("WHERE = 'server path'\n")
    (tmp_path / "paths.wsgi").write_text(PATHS_APP)
    site_file(
        tmp_path,
        f"Listen 127.0.0.1:0\nWSGIPythonHome {venv}\nWSGIPythonPath {lib}\n"
        f"WSGIDaemonProcess g python-path={lib}\n"
        "WSGIScriptAlias /embedded paths.wsgi\n"
        "WSGIScriptAlias /daemon paths.wsgi process-group=g\n"
        "WSGIImportScript paths.wsgi process-group=g application-group=%{{GLOBAL}}\n",
    )
    server = ServerProcess(["--config", "site.conf", "--no-access-log"], tmp_path).wait_ready(30)
    try:
        embedded = httpx.get(server.url + "/embedded", timeout=10).json()
        daemon = httpx.get(server.url + "/daemon", timeout=10).json()
    finally:
        server.stop()
    # Embedded: the server's interpreter, with the environment's packages and the path.
    assert embedded[1:] == ["venv", "server path"] and embedded[0] != str(venv)
    # The group has no python-home= of its own: WSGIPythonHome's interpreter runs it.
    assert daemon == [str(venv), "venv", "server path"]
    assert "WSGIImportScript accepted (every mounted script is loaded" in server.stderr()


def test_import_script_of_no_mount_is_an_error(tmp_path: Path) -> None:
    (tmp_path / "other.wsgi").write_text(AUTH_APP)
    conf = site_file(
        tmp_path,
        "WSGIDaemonProcess g\nWSGIScriptAlias / {hello} process-group=g\n"
        "WSGIImportScript other.wsgi process-group=g\n",
    )
    with pytest.raises(ConfigFileError, match=r"site.conf:3: WSGIImportScript: .* is not the"):
        read_site(conf)


@pytest.mark.skipif(__import__("os").geteuid() != 0, reason="User applies when root")
def test_apache_user_is_the_groups_default_when_root(tmp_path: Path) -> None:
    conf = site_file(
        tmp_path,
        "User nobody\nGroup nogroup\n"
        "WSGIDaemonProcess a\nWSGIDaemonProcess b user=root group=root\n"
        "WSGIScriptAlias /a {hello} process-group=a\nWSGIScriptAlias /b {hello} process-group=b\n",
    )
    a, b = read_site(conf).groups
    assert (a.run_user, a.run_group) == ("nobody", "nogroup")
    assert (b.run_user, b.run_group) == ("root", "root")  # its own user= wins


def test_apache_user_from_an_unset_variable_is_noted(tmp_path: Path) -> None:
    conf = site_file(tmp_path, "User ${{NO_SUCH_VARIABLE_HERE}}\nWSGIScriptAlias / {hello}\n")
    site = read_site(conf)
    assert any("User accepted (${NO_SUCH_VARIABLE_HERE} is not set" in t for _, t in site.notices)
    with pytest.raises(ConfigFileError, match=r"site.conf:1: User: no user 'nosuchuser"):
        read_site(site_file(tmp_path, "User nosuchuser\nWSGIScriptAlias / {hello}\n"))
