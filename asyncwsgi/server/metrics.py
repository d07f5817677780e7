"""``--metrics-bind``: Prometheus metrics, ``/healthz`` and ``/readyz``, from the front.

Rule: wiring, like the rest of ``server``; ``prometheus_client`` (the library its users
know) is imported only when metrics are asked for.

The front sees every request of every daemon process, so its numbers are exact with no
sidecar and no ``PROMETHEUS_MULTIPROC_DIR``. Requests are counted as they finish (on
whichever thread finishes them, through ``prometheus_client``'s own locks); everything
else is read when Prometheus scrapes: connections, requests in flight and queued, time
spent queued, threads busy and idle, processes and generation per group, replacements by
reason, reloads, stat calls. The endpoints are served on their own address, never on the
application's port: ``/metrics`` (text format 0.0.4), ``/healthz`` (200 while the event
loop answers) and ``/readyz`` (200 once started, with every daemon group ready and the
server not draining; 503 with the reason otherwise).
"""

from __future__ import annotations

import asyncio
import bisect
import logging
import threading
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

from asyncwsgi.daemon.runner import DaemonRunner
from asyncwsgi.errors import ConfigError
from asyncwsgi.processes import ChildState
from asyncwsgi.scripts.reloader import ScriptSource
from asyncwsgi.settings import BindAddress
from asyncwsgi.sites.runner import SiteRunner
from asyncwsgi.static.mount import StaticFront
from asyncwsgi.wsgi.pool import ThreadPool
from asyncwsgi.wsgi.running import RunningRequests

if TYPE_CHECKING:
    from asyncwsgi.http.exchange import HttpExchange
    from asyncwsgi.server.server import Server

logger = logging.getLogger("asyncwsgi.error")

# (mount, status class) -> [requests, seconds, per-bucket counts, the last for +Inf]
_Table = dict[tuple[str | None, int], list[Any]]

BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
_MAX_HEAD = 8192


class RequestMetrics:
    """Counts each finished request by mount and status class, and its duration.

    Each thread that finishes requests keeps its own table (only it writes there: no
    lock, no hand-off); a scrape sums the tables, so the request path pays about a
    microsecond and the counts are exact. A thread that has ended has its table merged
    into the retired totals at the next scrape."""

    def __init__(self, root_path: str) -> None:
        try:
            import prometheus_client
            import prometheus_client.core
        except ImportError:
            raise ConfigError(
                "--metrics-bind needs prometheus_client: pip install 'asyncwsgi[metrics]'"
            ) from None
        self.client = prometheus_client
        self.registry = prometheus_client.CollectorRegistry(auto_describe=True)
        self.root = root_path or "/"
        self._local = threading.local()
        self._tables: list[tuple[threading.Thread, _Table]] = []
        self._registering = threading.Lock()  # a thread's first request; a scrape's prune
        self._retired: _Table = {}

    def observe(self, exchange: HttpExchange, took: float) -> None:
        """Any thread: one finished request."""
        try:
            table: _Table = self._local.table
        except AttributeError:
            table = self._local.table = {}
            with self._registering:
                self._tables.append((threading.current_thread(), table))
        key = (exchange.script_name, exchange.status_code // 100)
        entry = table.get(key)
        if entry is None:
            entry = table[key] = [0, 0.0, [0] * (len(BUCKETS) + 1)]
        entry[0] += 1
        entry[1] += took
        entry[2][bisect.bisect_left(BUCKETS, took)] += 1

    def totals(self) -> _Table:
        """Event loop: every thread's counts summed, by (mount, status class)."""
        live = []
        with self._registering:
            for thread, table in self._tables:
                if thread.is_alive():
                    live.append((thread, table))
                else:
                    _merge(self._retired, table)
            self._tables[:] = live
        summed: _Table = {}
        _merge(summed, self._retired)
        for _, table in live:
            _merge(summed, table)
        return summed

    def collect(self) -> Iterator[Any]:
        import prometheus_client.core as core

        requests = core.CounterMetricFamily(
            "asyncwsgi_requests",
            "Requests answered, by mount and status class",
            labels=["mount", "status"],
        )
        duration = core.HistogramMetricFamily(
            "asyncwsgi_request_duration_seconds",
            "From the request head to the end of the response, by mount",
            labels=["mount"],
        )
        by_mount: dict[str, list[Any]] = {}
        for (mount, status), (count, seconds, buckets) in sorted(
            self.totals().items(), key=lambda item: (item[0][0] or "", item[0][1])
        ):
            label = (mount if mount is not None else self.root) or "/"
            requests.add_metric([label, f"{status}xx"], count)
            merged = by_mount.setdefault(label, [0.0, [0] * len(buckets)])
            merged[0] += seconds
            merged[1] = [a + b for a, b in zip(merged[1], buckets, strict=True)]
        for label, (seconds, buckets) in by_mount.items():
            cumulative, running = [], 0
            for bound, count in zip([*map(str, BUCKETS), "+Inf"], buckets, strict=True):
                running += count
                cumulative.append((bound, running))
            duration.add_metric([label], cumulative, seconds)
        yield requests
        yield duration

    def text(self) -> bytes:
        return bytes(self.client.generate_latest(self.registry))


def _merge(into: _Table, table: _Table) -> None:
    for key, (count, seconds, buckets) in list(table.items()):
        entry = into.get(key)
        if entry is None:
            into[key] = [count, seconds, list(buckets)]
        else:
            entry[0] += count
            entry[1] += seconds
            entry[2] = [a + b for a, b in zip(entry[2], buckets, strict=True)]


def _behind_static(runner: object) -> object:
    """The application's runner, behind the --static mounts if any."""
    return runner.inner if isinstance(runner, StaticFront) else runner


def daemon_runners(runner: object) -> list[DaemonRunner]:
    """The daemon groups behind a server's runner, whatever its kind."""
    runner = _behind_static(runner)
    if isinstance(runner, DaemonRunner):
        return [runner]
    if isinstance(runner, SiteRunner):
        return list(runner.groups.values())
    return []


def embedded_running(runner: object) -> list[RunningRequests]:
    """The requests the server's own worker threads run, whatever the runner."""
    runner = _behind_static(runner)
    if isinstance(runner, SiteRunner):
        return [m.embedded.running for m in runner.mounts if m.embedded is not None]
    running = getattr(runner, "running", None)
    return [running] if isinstance(running, RunningRequests) else []


def _embedded(runner: object) -> tuple[ThreadPool | None, list[ScriptSource]]:
    runner = _behind_static(runner)
    if isinstance(runner, SiteRunner):
        return runner.pool, list(runner.sources.values())
    pool = getattr(runner, "pool", None)
    source = getattr(runner, "source", None)
    sources = [source] if isinstance(source, ScriptSource) else []
    return (pool if isinstance(pool, ThreadPool) else None), sources


class ServerCollector:
    """What is read from the server when Prometheus scrapes."""

    def __init__(self, server: Server, metrics: RequestMetrics) -> None:
        self.server = server
        self.metrics = metrics

    def collect(self) -> Iterator[Any]:
        import prometheus_client.core as core

        server = self.server
        state = server.state
        runner = server.runner

        def gauge(name: str, text: str, labels: list[str]) -> Any:
            return core.GaugeMetricFamily(name, text, labels=labels)

        def counter(name: str, text: str, labels: list[str]) -> Any:
            return core.CounterMetricFamily(name, text, labels=labels)

        connections = gauge("asyncwsgi_connections", "Open client connections", [])
        connections.add_metric([], len(state.connections))
        in_flight = gauge("asyncwsgi_requests_in_flight", "Requests being answered", [])
        # A connection's request being answered (protocol.py is at its size limit, so
        # its attribute is read here rather than through a property).
        in_flight.add_metric([], sum(1 for c in state.connections if c._active is not None))
        queued = gauge(
            "asyncwsgi_requests_queued", "Requests waiting for a daemon thread", ["group"]
        )
        waited = counter("asyncwsgi_queue_wait_seconds", "Time requests spent queued", ["group"])
        threads = gauge("asyncwsgi_threads", "Worker threads, busy or idle", ["group", "state"])
        processes = gauge("asyncwsgi_processes", "Processes ready, per group", ["group"])
        generation = gauge("asyncwsgi_group_generation", "Generation of each group", ["group"])
        replaced = counter(
            "asyncwsgi_process_restarts", "Processes replaced, by reason", ["group", "reason"]
        )
        reloads = counter("asyncwsgi_reloads", "Reloads of the application", ["group"])
        pool, sources = _embedded(runner)
        if pool is not None:
            threads.add_metric(["embedded", "total"], pool.size)
        if sources:
            reloads.add_metric(["embedded"], sum(max(0, s.imports - 1) for s in sources))
        for daemons in daemon_runners(runner):
            group = daemons.group
            name = group.name
            queued.add_metric([name], len(daemons.queue))
            waited.add_metric([name], daemons.queued_seconds)
            busy = total = 0
            for child in group.children:
                link = child.data
                if child.state is ChildState.READY and link is not None:
                    busy += len(link.streams)
                    total += link.threads
            threads.add_metric([name, "busy"], busy)
            threads.add_metric([name, "idle"], max(0, total - busy))
            processes.add_metric([name], len(group.ready_children))
            generation.add_metric([name], group.generation)
            for reason, count in sorted(group.replaced.items()):
                replaced.add_metric([name, reason], count)
            reloads.add_metric([name], group.generation - 1)
        stats = counter("asyncwsgi_script_stats", "stat() calls of the WSGI scripts", [])
        stats.add_metric([], getattr(runner, "stat_calls", 0))
        yield from (connections, in_flight, queued, waited, threads, processes)
        yield from (generation, replaced, reloads, stats)


def readiness(server: Server) -> str:
    """Why the server is not ready to take traffic ("" when it is)."""
    if not server.started:
        return "starting"
    if server.draining:
        return "draining (shutting down)"
    for daemons in daemon_runners(server.runner):
        group = daemons.group
        if group.failed or not group.ready_children:
            return f"daemon group {group.name!r} has no process ready"
    return ""


class MetricsServer:
    """``/metrics``, ``/healthz`` and ``/readyz`` on their own address."""

    def __init__(self, server: Server, metrics: RequestMetrics, bind: BindAddress) -> None:
        self.server = server
        self.metrics = metrics
        self.bind = bind
        self._listener: asyncio.AbstractServer | None = None
        metrics.registry.register(metrics)
        metrics.registry.register(ServerCollector(server, metrics))

    async def start(self) -> str:
        bind = self.bind
        try:
            if bind.kind == "unix":
                listener = await asyncio.start_unix_server(self._serve, bind.path)
            else:
                listener = await asyncio.start_server(self._serve, bind.host, bind.port)
        except OSError as exc:
            raise ConfigError(f"--metrics-bind {bind}: {exc.strerror or exc}") from None
        self._listener = listener
        sock = listener.sockets[0].getsockname()
        where = sock if isinstance(sock, str) else f"{sock[0]}:{sock[1]}"
        logger.info("metrics and health on %s (/metrics, /healthz, /readyz)", where)
        return where

    async def close(self) -> None:
        if self._listener is not None:
            self._listener.close()
            await self._listener.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                try:
                    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
                except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, TimeoutError):
                    return
                if len(head) > _MAX_HEAD:
                    return
                line = head.split(b"\r\n", 1)[0].split()
                method, target = (line[0], line[1]) if len(line) == 3 else (b"", b"")
                status, body, kind = self._answer(method, target.split(b"?", 1)[0])
                close = b"connection: close" in head.lower() or (
                    len(line) == 3 and line[2] == b"HTTP/1.0"
                )
                writer.write(
                    b"HTTP/1.1 %s\r\nContent-Type: %s\r\nContent-Length: %d\r\n%s\r\n%s"
                    % (
                        status,
                        kind,
                        len(body),
                        b"Connection: close\r\n" if close else b"",
                        b"" if method == b"HEAD" else body,
                    )
                )
                await writer.drain()
                if close:
                    return
        except (ConnectionError, OSError):
            return
        finally:
            writer.close()

    def _answer(self, method: bytes, path: bytes) -> tuple[bytes, bytes, bytes]:
        plain = b"text/plain; charset=utf-8"
        if method not in (b"GET", b"HEAD"):
            return b"405 Method Not Allowed", b"GET or HEAD\n", plain
        if path == b"/metrics":
            return b"200 OK", self.metrics.text(), self.metrics.client.CONTENT_TYPE_LATEST.encode()
        if path == b"/healthz":
            return b"200 OK", b"ok\n", plain
        if path == b"/readyz":
            why = readiness(self.server)
            if why:
                return b"503 Service Unavailable", f"not ready: {why}\n".encode(), plain
            return b"200 OK", b"ready\n", plain
        return b"404 Not Found", b"/metrics, /healthz or /readyz\n", plain


def finished_hook(
    access: Callable[[HttpExchange], None] | None, metrics: RequestMetrics | None
) -> Callable[[HttpExchange], None] | None:
    """What the HTTP layer calls as each request finishes: the access line and the
    metrics, each as configured; None when neither is."""
    if metrics is None:
        return access
    import time

    observe = metrics.observe

    def finished(exchange: HttpExchange) -> None:
        observe(exchange, max(0.0, time.time() - exchange.started))
        if access is not None:
            access(exchange)

    return finished
