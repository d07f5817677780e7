"""How the benchmarks start asyncwsgi: every ``python -m asyncwsgi`` command line is built here.

``run.py`` (through ``servers.py``), ``reload_under_load.py`` and ``stat_calls.py`` all
call :func:`argv`, so a change to how asyncwsgi is started (a renamed option, a new
default) is made once. Three setups, the ones docs/DESIGN.md ("Performance") sets
targets for:

- ``embedded``: one process, the app in 8 threads of it (the default);
- ``processes``: embedded mode, ``--processes 2``: two copies of the whole server sharing
  the listening socket, each reloading its script in-process;
- ``daemon``: ``--mode daemon --processes 2``: the main process's event loop parses HTTP
  and feeds a daemon process group of 2 processes x 8 threads, restarted one process at a
  time when the script changes (and all of them on SIGHUP).

and two with ``--reload-on-changes`` (every file the app imported is watched), for
``reload_under_load.py --change helper|broken``:

- ``changes``: embedded mode, which then runs a supervisor and one copy of the server; a
  change starts a new copy, which takes over before the old one stops;
- ``daemon-changes``: ``daemon`` plus ``--reload-on-changes``: a change replaces the group
  one process at a time, each replacement ready before the process it replaces stops.

Each setup also says how many processes the server must have once it answers
(:attr:`Setup.min_processes`): the benchmarks count the server's process tree and refuse
to report numbers under a setup's name when the setup is not what is running (an
asyncwsgi that ignores ``--mode daemon`` would otherwise be measured as one process).
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

THREADS = 8  # WSGI threads per process, in every setup


@dataclass(frozen=True)
class Setup:
    name: str
    options: tuple[str, ...]  # added to the command line
    min_processes: int  # processes in the server's tree once it answers
    description: str


SETUPS: dict[str, Setup] = {
    s.name: s
    for s in (
        Setup("embedded", (), 1, f"1 process x {THREADS} threads"),
        Setup(
            "processes",
            ("--processes", "2"),
            2,
            f"embedded mode, 2 copies of the server on one socket, {THREADS} threads each",
        ),
        Setup(
            "daemon",
            ("--mode", "daemon", "--processes", "2"),
            3,  # the main process + 2 daemon processes
            f"daemon mode: event loop in the main process, daemon group 2 processes x "
            f"{THREADS} threads",
        ),
        Setup(
            "changes",
            ("--reload-on-changes",),
            2,  # the supervisor + 1 copy of the server
            f"embedded mode reloading on changes: a supervisor and 1 copy of the server, "
            f"{THREADS} threads",
        ),
        Setup(
            "daemon-changes",
            ("--mode", "daemon", "--processes", "2", "--reload-on-changes"),
            3,  # the main process + 2 daemon processes
            f"daemon mode reloading on changes: daemon group 2 processes x {THREADS} threads",
        ),
    )
}


def argv(
    app: str | Path,
    host: str,
    port: int,
    setup: str = "embedded",
    *,
    extra: Sequence[str] = (),
    python: str | None = None,
    threads: int | None = THREADS,
) -> list[str]:
    """``python -m asyncwsgi APP --bind HOST:PORT --threads 8 [setup options] --no-access-log``.

    ``extra`` goes last (e.g. ``("--script-reloading", "off")``). ``threads``: the
    ``--threads`` value (default :data:`THREADS`); None leaves the option out, so the
    server runs with its own default thread count.
    """
    return [
        python or sys.executable,
        "-m",
        "asyncwsgi",
        str(app),
        "--bind",
        f"{host}:{port}",
        *(() if threads is None else ("--threads", str(threads))),
        *SETUPS[setup].options,
        "--no-access-log",
        *extra,
    ]


# A site as a config file: the app mounted at / of the second of two virtual hosts (wrk's
# Host header names it through a ServerAlias), its folder allowing .htaccess overrides,
# so each request pays for choosing the host and the mount and for watching .htaccess.
SITE_CONF = """\
Listen {host}:{port}
<VirtualHost *:{port}>
    ServerName other.test
    WSGIScriptAlias /other "{app}"
</VirtualHost>
<VirtualHost *:{port}>
    ServerName localhost
    ServerAlias {host}
    WSGIScriptAlias / "{app}"
</VirtualHost>
<Directory "{folder}">
    AllowOverride FileInfo
</Directory>
"""


def site_argv(
    app: str | Path,
    host: str,
    port: int,
    workdir: Path,
    *,
    reloading: str = "",
    extra: Sequence[str] = (),
    python: str | None = None,
) -> list[str]:
    """``python -m asyncwsgi --config site.conf --threads 8 --no-access-log``, with
    :data:`SITE_CONF` written to ``workdir``; ``reloading`` ("on"/"off") adds a
    server-wide ``WSGIScriptReloading`` line (given on the command line instead, it would
    win over the .htaccess, which is then not watched)."""
    app = Path(app).resolve()
    conf = workdir / "site.conf"
    text = SITE_CONF.format(host=host, port=port, app=app, folder=app.parent)
    if reloading:
        text = f"WSGIScriptReloading {reloading.capitalize()}\n" + text
    conf.write_text(text)
    return [
        python or sys.executable,
        "-m",
        "asyncwsgi",
        "--config",
        str(conf),
        "--threads",
        str(THREADS),
        "--no-access-log",
        *extra,
    ]
