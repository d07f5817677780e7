"""Real-world-shaped Apache configurations (``tests/sites/corpus/``), each as its authors
would have written it for Apache and mod_wsgi: it passes ``--check-config``, starts,
serves its applications and its static files over a real socket, and reloads an
application when its script is touched.

``{root}`` in a corpus file stands for the folder the test lays the site out in; every
other line is left as written (``${APACHE_LOG_DIR}``, ``%{GROUP}`` and all).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from tests.conftest import ServerProcess

CORPUS = Path(__file__).parent / "corpus"

SCRIPT = """\
NAME = {name!r}
VERSION = {version!r}

def application(environ, start_response):
    body = " ".join([NAME, VERSION, environ["SCRIPT_NAME"] or "-",
                     environ["PATH_INFO"] or "-", environ.get("HTTP_AUTHORIZATION", "-")])
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [body.encode()]

app = application
"""


@dataclass
class Case:
    scripts: dict[str, str]  # path below the root -> the application's name
    requests: list[tuple[str, str, str]]  # Host, path, the name that answers
    static: dict[str, str] = field(default_factory=dict)  # path below the root -> content
    fetch: list[tuple[str, str, str]] = field(default_factory=list)  # Host, path, content
    reload: tuple[str, str, str] = ("", "", "")  # script touched, Host, path
    venvs: tuple[str, ...] = ()
    folders: tuple[str, ...] = ()
    files: dict[str, str] = field(default_factory=dict)  # other files (e.g. .htaccess)
    warnings: int = 0  # access rules that restrict someone
    statuses: list[tuple[str, str, int]] = field(default_factory=list)


CASES: dict[str, Case] = {
    "01-django-venv": Case(
        scripts={"mysite/mysite/wsgi.py": "mysite"},
        static={
            "static/robots.txt": "User-agent: *\n",
            "static/favicon.ico": "ICON",
            "static/admin/css/base.css": "body{}",
            "media/uploads/a.txt": "uploaded",
        },
        venvs=("venv",),
        requests=[
            ("mysite.example.com", "/", "mysite"),
            ("mysite.example.com", "/polls/", "mysite"),
        ],
        fetch=[
            ("mysite.example.com", "/static/admin/css/base.css", "body{}"),
            ("mysite.example.com", "/robots.txt", "User-agent: *\n"),
            ("mysite.example.com", "/favicon.ico", "ICON"),
            ("mysite.example.com", "/media/uploads/a.txt", "uploaded"),
        ],
        reload=("mysite/mysite/wsgi.py", "mysite.example.com", "/"),
    ),
    "02-flask-subpath": Case(
        scripts={"flaskapp/flaskapp.wsgi": "flaskapp"},
        static={"flaskapp/static/style.css": "h1{}"},
        requests=[("example.com", "/app", "flaskapp"), ("example.com", "/app/hello", "flaskapp")],
        fetch=[("example.com", "/app/static/style.css", "h1{}")],
        statuses=[("example.com", "/", 404)],
        reload=("flaskapp/flaskapp.wsgi", "example.com", "/app/"),
    ),
    "03-vhosts-own-groups": Case(
        scripts={"one/app.wsgi": "one", "two/app.wsgi": "two"},
        static={"one/static/logo.svg": "<svg/>"},
        requests=[
            ("www.site-one.test", "/", "one"),
            ("site-one.test", "/x", "one"),
            ("www.site-two.test", "/", "two"),
            ("cdn.site-two.test", "/y", "two"),
        ],
        fetch=[("site-one.test", "/static/logo.svg", "<svg/>")],
        reload=("two/app.wsgi", "www.site-two.test", "/"),
    ),
    "04-debian-includes": Case(
        scripts={"blog/blog.wsgi": "blog"},
        static={"blog/static/main.js": "let x;"},
        requests=[("blog.example.org", "/2026/12/post", "blog")],
        fetch=[("blog.example.org", "/static/main.js", "let x;")],
        reload=("blog/blog.wsgi", "blog.example.org", "/"),
    ),
    "05-modwsgi-quickconfig": Case(
        scripts={"wsgi-scripts/myapp.wsgi": "myapp"},
        requests=[("localhost", "/myapp", "myapp"), ("localhost", "/myapp/a/b", "myapp")],
        statuses=[("localhost", "/other", 404)],
        reload=("wsgi-scripts/myapp.wsgi", "localhost", "/myapp"),
    ),
    "06-modwsgi-daemon-guide": Case(
        scripts={"wsgi-scripts/myapp.wsgi": "myapp"},
        static={
            "documents/robots.txt": "Disallow:",
            "documents/favicon.ico": "ICO",
            "documents/media/pic.png": "PNG",
        },
        requests=[("www.example.com", "/", "myapp"), ("example.com", "/about", "myapp")],
        fetch=[
            ("www.example.com", "/robots.txt", "Disallow:"),
            ("www.example.com", "/favicon.ico", "ICO"),
            ("www.example.com", "/media/pic.png", "PNG"),
        ],
        reload=("wsgi-scripts/myapp.wsgi", "www.example.com", "/"),
    ),
    "07-debian-default-site": Case(
        scripts={"app/app.wsgi": "app"},
        requests=[("anything.test", "/", "app")],
        reload=("app/app.wsgi", "anything.test", "/"),
    ),
    "08-http-and-ssl-pair": Case(
        scripts={"shop/shop.wsgi": "shop"},
        static={"shop/assets/app.css": "a{}"},
        requests=[("shop.example.com", "/cart", "shop")],
        fetch=[("shop.example.com", "/assets/app.css", "a{}")],
        reload=("shop/shop.wsgi", "shop.example.com", "/"),
    ),
    "09-drf-api": Case(
        scripts={"api/api/wsgi.py": "api"},
        static={"api/static/rest_framework/api.css": "api{}"},
        requests=[("api.example.com", "/api/items/", "api")],
        fetch=[("api.example.com", "/api/static/rest_framework/api.css", "api{}")],
        warnings=1,
        reload=("api/api/wsgi.py", "api.example.com", "/api/"),
    ),
    "10-restrict-embedded": Case(
        scripts={"main/main.wsgi": "main", "reports/reports.wsgi": "reports"},
        requests=[("localhost", "/", "main"), ("localhost", "/reports/q1", "reports")],
        reload=("reports/reports.wsgi", "localhost", "/reports"),
    ),
    "11-htaccess-reloading": Case(
        scripts={"alice/app.wsgi": "alice", "bob/app.wsgi": "bob"},
        files={"bob/.htaccess": "WSGIScriptReloading Off\n"},
        requests=[("users.example.com", "/alice", "alice"), ("users.example.com", "/bob", "bob")],
        reload=("alice/app.wsgi", "users.example.com", "/alice"),
    ),
    "12-several-apps-one-host": Case(
        scripts={"blog/blog.wsgi": "blog", "shop/shop.wsgi": "shop", "www/www.wsgi": "www"},
        static={"www/static/site.css": "site{}"},
        requests=[
            ("www.example.net", "/blog/1", "blog"),
            ("www.example.net", "/shop", "shop"),
            ("www.example.net", "/", "www"),
        ],
        fetch=[("www.example.net", "/static/site.css", "site{}")],
        reload=("www/www.wsgi", "www.example.net", "/"),
    ),
    "13-python-path-home-locale": Case(
        scripts={"app/app.wsgi": "app"},
        folders=("lib",),
        requests=[("localhost", "/", "app")],
        reload=("app/app.wsgi", "localhost", "/"),
    ),
    "14-tuned-production-group": Case(
        scripts={"prod/prod.wsgi": "prod"},
        static={"prod/static/app.js": "js"},
        requests=[("prod.example.com", "/dashboard", "prod")],
        fetch=[("prod.example.com", "/static/app.js", "js")],
        reload=("prod/prod.wsgi", "prod.example.com", "/"),
    ),
    "15-server-python-settings": Case(
        scripts={"site/site.wsgi": "site"},
        venvs=("venv",),
        folders=("lib",),
        requests=[("localhost", "/", "site")],
        reload=("site/site.wsgi", "localhost", "/"),
    ),
    "16-status-and-locations": Case(
        scripts={"intranet/intranet.wsgi": "intranet"},
        static={"intranet/static/i.css": "i{}"},
        requests=[("intranet.example.com", "/", "intranet")],
        fetch=[("intranet.example.com", "/static/i.css", "i{}")],
        warnings=6,  # Require local, Require ip, AuthType, AuthName, AuthUserFile, valid-user
        reload=("intranet/intranet.wsgi", "intranet.example.com", "/"),
    ),
}


def write_script(path: Path, name: str, version: str) -> None:
    before = path.stat() if path.exists() else None
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(SCRIPT.format(name=name, version=version))
    if before is not None:  # a new mtime even where timestamps are coarse
        os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns + 1_000_000_000))


def lay_out(name: str, case: Case, root: Path) -> None:
    shutil.copytree(CORPUS / name, root, dirs_exist_ok=True)
    for conf in root.rglob("*.conf"):
        conf.write_text(conf.read_text().replace("{root}", str(root)))
    for path, app in case.scripts.items():
        write_script(root / path, app, "v1")
    for path, text in {**case.static, **case.files}.items():
        (root / path).parent.mkdir(parents=True, exist_ok=True)
        (root / path).write_text(text)
    for folder in case.folders:
        (root / folder).mkdir(parents=True, exist_ok=True)
    for venv in case.venvs:
        subprocess.run(
            [sys.executable, "-m", "venv", "--without-pip", str(root / venv)], check=True
        )


def test_the_corpus_has_a_case_for_every_configuration() -> None:
    assert sorted(CASES) == sorted(p.name for p in CORPUS.iterdir() if p.is_dir())
    assert len(CASES) >= 15


@pytest.mark.parametrize("name", sorted(CASES))
def test_a_real_configuration_checks_starts_serves_and_reloads(name: str, tmp_path: Path) -> None:
    case = CASES[name]
    root = tmp_path / "site"
    lay_out(name, case, root)
    checked = subprocess.run(
        [sys.executable, "-m", "asyncwsgi", "--config", "site.conf", "--check-config"],
        cwd=root,
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(Path(__file__).parents[2])},
        timeout=60,
    )
    assert checked.returncode == 0, checked.stderr
    assert checked.stdout.count("\nwarning: ") == case.warnings, checked.stdout
    server = ServerProcess(
        ["--config", "site.conf", "--bind", "127.0.0.1:0", "--no-access-log"], root
    ).wait_ready(30)
    try:
        with httpx.Client(base_url=server.url, timeout=10) as client:
            for host, path, app in case.requests:
                response = client.get(path, headers={"Host": host})
                assert response.status_code == 200, (host, path, response.text)
                assert response.text.split()[:2] == [app, "v1"], (host, path)
            for host, path, content in case.fetch:
                response = client.get(path, headers={"Host": host})
                assert (response.status_code, response.text) == (200, content), (host, path)
            for host, path, status in case.statuses:
                assert client.get(path, headers={"Host": host}).status_code == status
            script, host, path = case.reload
            write_script(root / script, case.scripts[script], "v2")
            deadline = time.monotonic() + 20
            while True:
                words = client.get(path, headers={"Host": host}).text.split()
                if words[:2] == [case.scripts[script], "v2"]:
                    break
                assert time.monotonic() < deadline, f"{script} was not reloaded: {words}"
                time.sleep(0.1)
    finally:
        server.stop()
