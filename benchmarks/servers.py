"""The servers that ``run.py`` benchmarks, each as a named, self-describing entry.

Within a scenario every server runs the same WSGI script: hello world
(``examples/hello.wsgi``, or the fallback copy ``benchmarks/apps/hello.wsgi``) unless
the scenario names another one in ``benchmarks/apps/`` (:attr:`Scenario.app`).
asyncwsgi loads it by path, the peers import it through ``benchmarks/apps/hello_app.py``
(``hello_app:application``), which re-executes the script named by
``$BENCH_APP_SCRIPT``.

All peers are started as ``sys.executable -m PACKAGE`` so that the interpreter
running the benchmark (and its virtualenv) is the one serving, without relying
on console scripts being on PATH. asyncwsgi's command lines come from
``asyncwsgi_cmd.py``, the one place every benchmark builds them.

The servers come in scenarios (``run.py --scenario NAME``), each compared against
its own asyncwsgi row:

- ``single`` (the default): one process each, ``SERVERS``;
- ``processes``: two processes each, the app in them (asyncwsgi ``--processes 2``,
  mod_wsgi embedded mode under the event MPM, gunicorn ``-w 2`` sync, granian
  ``--workers 2``);
- ``daemon``: a front end feeding a group of 2 processes x 8 threads (asyncwsgi
  ``--mode daemon``, mod_wsgi daemon mode), with gunicorn ``-w 2 --threads 8`` as a
  familiar reference;
- ``site``: asyncwsgi serving the app from a config file beside the command line;
- ``io``: an I/O-bound app (``apps/sleep_app.py``, 10 ms of ``time.sleep`` per
  request) at 256 connections: asyncwsgi with its default settings and with
  ``--threads 256``, granian, gunicorn gthread x 256 threads; the ideal is
  256 / 0.010 s = 25,600 req/s;
- ``flask``: a Flask app rendering a Jinja2 template from a SQLite query
  (``apps/flask_app.py``) at 50 connections: asyncwsgi with its default settings,
  granian, gunicorn gthread x 8 threads.

mod_wsgi runs as ``apache2 -f CONF -DFOREGROUND`` on a config that
``apache/modwsgi.py`` writes (a ServerRoot in the run's temporary folder), serving
a world-readable copy of the script; those rows are skipped, with the reason, when
Apache or mod_wsgi is not installed.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

import asyncwsgi_cmd

APP_MODULE = "hello_app:application"
# Apache worker threads per child process (event MPM ThreadsPerChild), mod_wsgi rows.
# Apache's own default; 2 children x 25 = MaxRequestWorkers 50.
MODWSGI_THREADS_PER_CHILD = 25


@dataclass(frozen=True)
class LaunchContext:
    """What a server's command line may depend on."""

    python: str
    host: str
    port: int
    app_script: Path
    apps_dir: Path
    workdir: Path  # this run's temporary folder (0755: Apache's children read below it)


@dataclass(frozen=True)
class ServerSpec:
    """One benchmarked server configuration."""

    name: str
    description: str
    package: str  # distribution name, for reporting its version
    argv: Callable[[LaunchContext], list[str]]
    requires: tuple[str, ...] = ()  # modules that must be importable for a fair run
    # Processes the server must have once it answers (its tree and process group); fewer
    # means it is not running as described, and it is reported as not run.
    min_processes: int = 1
    apache: bool = False  # needs Apache + mod_wsgi (skipped with the reason when absent)
    env: tuple[tuple[str, str], ...] = ()  # added to the environment


@dataclass(frozen=True)
class Scenario:
    """A set of servers compared in one table, and the row the ratios are taken against."""

    name: str
    description: str
    # The servers, given ThreadsPerChild for the mod_wsgi rows (run.py --modwsgi-threads).
    servers: Callable[[int], tuple[ServerSpec, ...]]
    baseline: str  # name of the asyncwsgi row
    results_prefix: str  # benchmarks/results/PREFIX-YYYYMMDD-HHMM.{md,json}
    server_cpus: int = 1  # CPUs --pin gives the server when the machine has enough
    uses_apache: bool = False  # has mod_wsgi rows (run.py --modwsgi-threads applies)
    # The WSGI script, a file in benchmarks/apps/; None: the hello-world script.
    app: str | None = None
    title: str = "Hello-world WSGI benchmark"
    connections: tuple[int, ...] = (50, 1000)  # wrk -c values unless --connections is given
    # Seconds each request waits in the app (the io scenario's sleep), None: no such wait.
    # The ideal req/s at c connections is then c / app_wait_s (every connection always
    # waiting in the app, the server costing nothing).
    app_wait_s: float | None = None

    def by_name(self, modwsgi_threads: int = MODWSGI_THREADS_PER_CHILD) -> dict[str, ServerSpec]:
        return {spec.name: spec for spec in self.servers(modwsgi_threads)}


def _asyncwsgi(
    setup: str = "embedded", *extra: str, threads: int | None = asyncwsgi_cmd.THREADS
) -> Callable[[LaunchContext], list[str]]:
    """``threads``: ``--threads`` (None: not given, the server's default)."""

    def build(ctx: LaunchContext) -> list[str]:
        return asyncwsgi_cmd.argv(
            ctx.app_script,
            ctx.host,
            ctx.port,
            setup,
            extra=extra,
            python=ctx.python,
            threads=threads,
        )

    return build


def _gunicorn(*worker_args: str, workers: int = 1) -> Callable[[LaunchContext], list[str]]:
    # gunicorn writes no access log unless --access-logfile is given.
    def build(ctx: LaunchContext) -> list[str]:
        return [
            ctx.python,
            "-m",
            "gunicorn",
            "--workers",
            str(workers),
            *worker_args,
            "--bind",
            f"{ctx.host}:{ctx.port}",
            "--chdir",
            str(ctx.apps_dir),
            APP_MODULE,
        ]

    return build


def _waitress(ctx: LaunchContext) -> list[str]:
    # waitress-serve logs no requests by default.
    return [
        ctx.python,
        "-m",
        "waitress",
        f"--listen={ctx.host}:{ctx.port}",
        "--threads=8",
        APP_MODULE,
    ]


def _uvicorn_a2wsgi(ctx: LaunchContext) -> list[str]:
    # uvicorn's --interface wsgi wraps the app in uvicorn.middleware.wsgi.WSGIMiddleware,
    # which is `from a2wsgi import WSGIMiddleware` whenever a2wsgi is importable (uvicorn
    # >= 0.30 only falls back to its own, deprecated, implementation without it).
    # run.py checks that a2wsgi is importable before starting this server.
    return [
        ctx.python,
        "-m",
        "uvicorn",
        "--interface",
        "wsgi",
        "--loop",
        "auto",
        "--http",
        "httptools",
        "--no-access-log",
        "--workers",
        "1",
        "--host",
        ctx.host,
        "--port",
        str(ctx.port),
        "--app-dir",
        str(ctx.apps_dir),
        APP_MODULE,
    ]


def _granian(workers: int = 1) -> Callable[[LaunchContext], list[str]]:
    # Access log is off by default; the WSGI blocking-thread pool keeps its default size
    # (granian 2.x: half its backpressure, i.e. backlog 1024 / workers / 2, per worker).
    def build(ctx: LaunchContext) -> list[str]:
        return [
            ctx.python,
            "-m",
            "granian",
            "--interface",
            "wsgi",
            "--workers",
            str(workers),
            "--host",
            ctx.host,
            "--port",
            str(ctx.port),
            "--working-dir",
            str(ctx.apps_dir),
            APP_MODULE,
        ]

    return build


def _modwsgi(mode: str, threads_per_child: int) -> Callable[[LaunchContext], list[str]]:
    """``apache2 -f CONF -DFOREGROUND`` on a fresh ServerRoot under the run's folder.

    Both modes: event MPM, 2 child processes of ``threads_per_child`` threads
    (``StartServers``/``ServerLimit`` 2, ``MaxRequestWorkers`` 2 x that), keep-alive
    without a request limit, ``WSGIScriptReloading On``, ``WSGIApplicationGroup
    %{GLOBAL}``; daemon mode adds ``WSGIDaemonProcess bench processes=2 threads=8`` and
    ``WSGIProcessGroup bench``. Apache logs errors to its stdout, i.e. the server log.
    """

    def build(ctx: LaunchContext) -> list[str]:
        from apache import modwsgi

        root = ctx.workdir / f"apache-{mode}-{ctx.port}"
        app_dir = root / "app"
        app_dir.mkdir(parents=True, exist_ok=True)
        script = app_dir / ctx.app_script.name
        shutil.copyfile(ctx.app_script, script)
        os.chmod(script, 0o644)
        os.chmod(app_dir, 0o755)
        launch = modwsgi.prepare_launch(
            script,
            mode=mode,
            port=ctx.port,
            server_root=root,
            processes=2,
            threads_per_child=threads_per_child,
            daemon_threads=asyncwsgi_cmd.THREADS,
            error_log="/dev/stderr",
        )
        return launch.argv

    return build


def _asyncwsgi_spec(
    name: str,
    setup: str,
    description: str,
    *extra: str,
    threads: int | None = asyncwsgi_cmd.THREADS,
) -> ServerSpec:
    return ServerSpec(
        name,
        description,
        "asyncwsgi",
        _asyncwsgi(setup, *extra, threads=threads),
        min_processes=asyncwsgi_cmd.SETUPS[setup].min_processes,
    )


_MODWSGI_ENV = (("LANG", "C.UTF-8"),)

SERVERS: tuple[ServerSpec, ...] = (
    _asyncwsgi_spec(
        "asyncwsgi",
        "embedded",
        "asyncwsgi, 1 process, asyncio event loop + 8 WSGI threads, script reloading on",
    ),
    _asyncwsgi_spec(
        "asyncwsgi-noreload",
        "embedded",
        "asyncwsgi as above with --script-reloading off",
        "--script-reloading",
        "off",
    ),
    _asyncwsgi_spec(
        "asyncwsgi-affinity",
        "embedded",
        "asyncwsgi as the first row with --cpu-affinity (the process held to one core)",
        "--cpu-affinity",
    ),
    _asyncwsgi_spec(
        "asyncwsgi-metrics",
        "embedded",
        "asyncwsgi as the first row with --metrics-bind (every request counted for "
        "Prometheus; nothing scrapes during the run)",
        "--metrics-bind",
        "127.0.0.1:0",
    ),
    ServerSpec(
        "gunicorn-sync",
        "gunicorn, 1 sync worker (one request at a time, Connection: close; the rest queue)",
        "gunicorn",
        _gunicorn("--worker-class", "sync"),
    ),
    ServerSpec(
        "gunicorn-gthread",
        "gunicorn, 1 gthread worker x 8 threads (keep-alive)",
        "gunicorn",
        _gunicorn("--worker-class", "gthread", "--threads", "8"),
    ),
    ServerSpec(
        "waitress",
        "waitress, 1 process, 8 threads (default connection limit 100)",
        "waitress",
        _waitress,
    ),
    ServerSpec(
        "uvicorn-a2wsgi",
        "uvicorn --interface wsgi (a2wsgi), 1 worker, httptools, loop auto",
        "uvicorn",
        _uvicorn_a2wsgi,
        requires=("a2wsgi",),
    ),
    ServerSpec(
        "granian",
        "granian --interface wsgi, 1 worker (Rust HTTP, default thread pools)",
        "granian",
        _granian(),
    ),
)

SERVERS_BY_NAME: dict[str, ServerSpec] = {spec.name: spec for spec in SERVERS}


def processes_servers(
    modwsgi_threads: int = MODWSGI_THREADS_PER_CHILD,
) -> tuple[ServerSpec, ...]:
    """The ``processes`` scenario; ``modwsgi_threads``: Apache's ThreadsPerChild."""
    return (
        _asyncwsgi_spec(
            "asyncwsgi-processes",
            "processes",
            "asyncwsgi --processes 2 (embedded mode): 2 copies of the server sharing the "
            "listening port, each an event loop + 8 WSGI threads, script reloading on",
        ),
        _asyncwsgi_spec(
            "asyncwsgi-processes-affinity",
            "processes",
            "asyncwsgi --processes 2 --cpu-affinity: as above, each copy held to its own core",
            "--cpu-affinity",
        ),
        ServerSpec(
            "modwsgi-embedded",
            f"Apache event MPM, 2 child processes x {modwsgi_threads} threads "
            f"(StartServers 2, ServerLimit 2, MaxRequestWorkers {2 * modwsgi_threads}), "
            "mod_wsgi embedded mode, WSGIScriptReloading On, WSGIApplicationGroup %{GLOBAL}",
            "mod_wsgi",
            _modwsgi("embedded", modwsgi_threads),
            min_processes=3,  # the parent + 2 children
            apache=True,
            env=_MODWSGI_ENV,
        ),
        ServerSpec(
            "gunicorn-sync-2w",
            "gunicorn, 2 sync workers (one request at a time each, Connection: close)",
            "gunicorn",
            _gunicorn("--worker-class", "sync", workers=2),
            min_processes=3,  # the arbiter + 2 workers
        ),
        ServerSpec(
            "granian-2w",
            "granian --interface wsgi, 2 workers (Rust HTTP, default thread pools)",
            "granian",
            _granian(workers=2),
            min_processes=3,  # the main process + 2 workers
        ),
    )


def daemon_servers(modwsgi_threads: int = MODWSGI_THREADS_PER_CHILD) -> tuple[ServerSpec, ...]:
    """The ``daemon`` scenario; ``modwsgi_threads``: ThreadsPerChild of Apache's front end."""
    return (
        _asyncwsgi_spec(
            "asyncwsgi-daemon",
            "daemon",
            "asyncwsgi --mode daemon --processes 2 --threads 8: HTTP on the main process's "
            "event loop, the app in a daemon group of 2 processes x 8 threads, reloading on",
        ),
        ServerSpec(
            "modwsgi-daemon",
            f"Apache event MPM front end (2 children x {modwsgi_threads} threads, "
            f"MaxRequestWorkers {2 * modwsgi_threads}) + mod_wsgi WSGIDaemonProcess "
            "processes=2 threads=8, WSGIProcessGroup, WSGIApplicationGroup %{GLOBAL}, "
            "WSGIScriptReloading On",
            "mod_wsgi",
            _modwsgi("daemon", modwsgi_threads),
            min_processes=5,  # the parent + 2 children + 2 daemon processes
            apache=True,
            env=_MODWSGI_ENV,
        ),
        ServerSpec(
            "gunicorn-gthread-2w",
            "gunicorn, 2 gthread workers x 8 threads (keep-alive)",
            "gunicorn",
            _gunicorn("--worker-class", "gthread", "--threads", "8", workers=2),
            min_processes=3,  # the arbiter + 2 workers
        ),
    )


def _asyncwsgi_site(ctx: LaunchContext) -> list[str]:
    return asyncwsgi_cmd.site_argv(
        ctx.app_script, ctx.host, ctx.port, ctx.workdir, python=ctx.python
    )


def site_servers(_threads: int = MODWSGI_THREADS_PER_CHILD) -> tuple[ServerSpec, ...]:
    """The ``site`` scenario: the same app served from a config file and from the command
    line, to show what choosing a virtual host and a mount costs."""
    return (
        ServerSpec(
            "asyncwsgi-site",
            "asyncwsgi --config site.conf: 2 virtual hosts, the app at / of the second "
            "(matched by ServerAlias), AllowOverride FileInfo on its folder, reloading on; "
            "1 process x 8 threads",
            "asyncwsgi",
            _asyncwsgi_site,
        ),
        SERVERS_BY_NAME["asyncwsgi"],
        SERVERS_BY_NAME["gunicorn-sync"],
        SERVERS_BY_NAME["uvicorn-a2wsgi"],
    )


# The io scenario's app waits this long per request (apps/sleep_app.py: SLEEP_S).
IO_SLEEP_S = 0.010
IO_THREADS = 256  # threads of the rows sized for the io scenario's 256 connections
_DEFAULT_ASYNCWSGI = _asyncwsgi_spec(
    "asyncwsgi-default",
    "embedded",
    "asyncwsgi with its default settings (--threads not given: the default thread count "
    "of the version run), 1 process, script reloading on; access log off, as in every row",
    threads=None,
)

_DEFAULT_AFFINITY = _asyncwsgi_spec(
    "asyncwsgi-default-affinity",
    "embedded",
    "asyncwsgi with its default settings and --cpu-affinity (the process held to one core)",
    "--cpu-affinity",
    threads=None,
)


def io_servers(_threads: int = MODWSGI_THREADS_PER_CHILD) -> tuple[ServerSpec, ...]:
    """The ``io`` scenario: an app that sleeps 10 ms per request, at 256 connections."""
    return (
        _DEFAULT_ASYNCWSGI,
        _asyncwsgi_spec(
            f"asyncwsgi-{IO_THREADS}t",
            "embedded",
            f"asyncwsgi --threads {IO_THREADS}, 1 process, script reloading on",
            threads=IO_THREADS,
        ),
        _DEFAULT_AFFINITY,
        SERVERS_BY_NAME["granian"],
        ServerSpec(
            f"gunicorn-gthread-{IO_THREADS}t",
            f"gunicorn, 1 gthread worker x {IO_THREADS} threads (keep-alive)",
            "gunicorn",
            _gunicorn("--worker-class", "gthread", "--threads", str(IO_THREADS)),
        ),
    )


def flask_servers(_threads: int = MODWSGI_THREADS_PER_CHILD) -> tuple[ServerSpec, ...]:
    """The ``flask`` scenario: Flask + Jinja2 + SQLite, one process per server."""
    need_flask = ("flask",)
    return tuple(
        replace(spec, requires=spec.requires + need_flask)
        for spec in (
            _DEFAULT_ASYNCWSGI,
            _DEFAULT_AFFINITY,
            SERVERS_BY_NAME["granian"],
            SERVERS_BY_NAME["gunicorn-gthread"],
        )
    )


SCENARIOS: dict[str, Scenario] = {
    s.name: s
    for s in (
        Scenario(
            "single",
            "one process per server",
            lambda _threads: SERVERS,
            baseline="asyncwsgi",
            results_prefix="hello",
        ),
        Scenario(
            "processes",
            "two processes per server, the app running in them (no daemon processes)",
            processes_servers,
            baseline="asyncwsgi-processes",
            results_prefix="hello-processes",
            server_cpus=2,
            uses_apache=True,
        ),
        Scenario(
            "daemon",
            "a front end feeding a group of 2 processes x 8 threads",
            daemon_servers,
            baseline="asyncwsgi-daemon",
            results_prefix="hello-daemon",
            server_cpus=2,
            uses_apache=True,
        ),
        Scenario(
            "site",
            "one process per server; asyncwsgi from a config file and from the command line",
            site_servers,
            baseline="asyncwsgi-site",
            results_prefix="hello-site",
        ),
        Scenario(
            "io",
            f"one process per server; an I/O-bound app: {IO_SLEEP_S * 1000:.0f} ms of "
            "time.sleep per request (threads blocked, CPU free)",
            io_servers,
            baseline="asyncwsgi-default",
            results_prefix="io",
            app="sleep_app.py",
            title=f"I/O-bound WSGI benchmark ({IO_SLEEP_S * 1000:.0f} ms sleep per request)",
            connections=(256,),
            app_wait_s=IO_SLEEP_S,
        ),
        Scenario(
            "flask",
            "one process per server; a Flask app rendering a Jinja2 template with 20 rows "
            "of a SQLite query per request",
            flask_servers,
            baseline="asyncwsgi-default",
            results_prefix="flask",
            app="flask_app.py",
            title="Flask + Jinja2 + SQLite WSGI benchmark",
            connections=(50,),
        ),
    )
}
DEFAULT_SCENARIO = "single"
