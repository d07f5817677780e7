"""The servers that ``run.py`` benchmarks, each as a named, self-describing entry.

Every server runs the same WSGI script (``examples/hello.wsgi``, or the fallback
copy ``benchmarks/apps/hello.wsgi``): asyncwsgi loads it by path, the peers
import it through ``benchmarks/apps/hello_app.py`` (``hello_app:application``),
which re-executes the script named by ``$ASYNCWSGI_BENCH_APP``.

All peers are started as ``sys.executable -m PACKAGE`` so that the interpreter
running the benchmark (and its virtualenv) is the one serving, without relying
on console scripts being on PATH.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

APP_MODULE = "hello_app:application"


@dataclass(frozen=True)
class LaunchContext:
    """What a server's command line may depend on."""

    python: str
    host: str
    port: int
    app_script: Path
    apps_dir: Path


@dataclass(frozen=True)
class ServerSpec:
    """One benchmarked server configuration."""

    name: str
    description: str
    package: str  # distribution name, for reporting its version
    argv: Callable[[LaunchContext], list[str]]
    requires: tuple[str, ...] = ()  # modules that must be importable for a fair run


def _asyncwsgi(*extra: str) -> Callable[[LaunchContext], list[str]]:
    def build(ctx: LaunchContext) -> list[str]:
        return [
            ctx.python,
            "-m",
            "asyncwsgi",
            str(ctx.app_script),
            "--bind",
            f"{ctx.host}:{ctx.port}",
            "--threads",
            "8",
            "--no-access-log",
            *extra,
        ]

    return build


def _gunicorn(*worker_args: str) -> Callable[[LaunchContext], list[str]]:
    # gunicorn writes no access log unless --access-logfile is given.
    def build(ctx: LaunchContext) -> list[str]:
        return [
            ctx.python,
            "-m",
            "gunicorn",
            "--workers",
            "1",
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


def _granian(ctx: LaunchContext) -> list[str]:
    # Access log is off by default; the WSGI blocking-thread pool keeps its default size.
    return [
        ctx.python,
        "-m",
        "granian",
        "--interface",
        "wsgi",
        "--workers",
        "1",
        "--host",
        ctx.host,
        "--port",
        str(ctx.port),
        "--working-dir",
        str(ctx.apps_dir),
        APP_MODULE,
    ]


SERVERS: tuple[ServerSpec, ...] = (
    ServerSpec(
        "asyncwsgi",
        "asyncwsgi, 1 process, asyncio event loop + 8 WSGI threads, script reloading on",
        "asyncwsgi",
        _asyncwsgi(),
    ),
    ServerSpec(
        "asyncwsgi-noreload",
        "asyncwsgi as above with --script-reloading off",
        "asyncwsgi",
        _asyncwsgi("--script-reloading", "off"),
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
        _granian,
    ),
)

SERVERS_BY_NAME: dict[str, ServerSpec] = {spec.name: spec for spec in SERVERS}
