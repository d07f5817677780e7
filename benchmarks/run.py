"""Benchmark asyncwsgi against other WSGI servers on the same app, using wrk.

Usage::

    python benchmarks/run.py [--scenario single|processes|daemon|site|io|flask]
                             [--duration 10] [--only NAME,...] [--connections 50,1000]
                             [--threads 2] [--warmup 2] [--pin] [--wait-idle 60]
                             [--retry-contended 2] [--baseline DIR] [--rounds N]
                             [--no-save]

``--scenario`` picks the set of servers and the app (see ``servers.py``): on the
hello-world app, ``single`` (default, one process each), ``processes`` (two processes
each, the app in them: asyncwsgi ``--processes 2``, mod_wsgi embedded under the event MPM,
gunicorn ``-w 2``, granian ``--workers 2``), ``daemon`` (a group of 2 processes x 8
threads: asyncwsgi ``--mode daemon``, mod_wsgi daemon mode, gunicorn ``-w 2 --threads 8``)
or ``site`` (asyncwsgi serving the app from a config file with two virtual hosts beside
the plain command line, one process each: what choosing the host and the mount costs);
on other apps, one process each, ``io`` (``apps/sleep_app.py``: 10 ms of ``time.sleep``
per request, at c=256: asyncwsgi with its default settings and with ``--threads 256``,
granian, gunicorn gthread x 256; the report gives each row's share of the ideal
256 / 0.010 s = 25,600 req/s) and ``flask`` (``apps/flask_app.py``: Flask rendering a
Jinja2 template from a SQLite query, at c=50: asyncwsgi with its default settings,
granian, gunicorn gthread x 8). A scenario sets the default ``--connections``.

``--baseline DIR`` (another checkout of this repository, e.g. made with ``git worktree
add /tmp/before COMMIT``) runs every asyncwsgi row of the scenario a second time with
DIR's code, as ``NAME@baseline`` right next to it (every other pair baseline first), so a
refactoring can show its speed against the code it started from, measured in the same
run on the same machine. Both rows of a pair are pinned to their checkout and checked
before they start (see ``baseline.py``); a row that would import asyncwsgi from anywhere
else is reported as not run.

``--rounds N`` measures every row N times, in rounds: each round runs every row once, in
the order above (and each pair of rows swaps sides from one round to the next),
so that the machine speeding up or slowing down over the run hits all rows alike. Each
round starts every server afresh and warms it up again. The table shows, per row and
connection count, the median req/s with its min-max over the rounds, the median p99 and
the errors summed; ratios and the "Before/after" line use the medians; the JSON keeps
every round. One round (the default) gives the report it always did.

For each selected server in turn: start it as a subprocess on a free port of
127.0.0.1, poll until it answers ``GET /`` with the expected body, check that it
runs as many processes as its setup should, warm it up with a short wrk run, run
``wrk --latency`` once per connection count, then stop it (SIGTERM to its process
group, SIGKILL after 5 s). A server that cannot start, or is not running as
described, is reported as "not run" instead of aborting the run.

Each wrk run also measures the CPU the server's processes used during it (from /proc),
shown per request (``server CPU µs/request``); when the scenario has a granian row, a
second table gives every row's req/s and CPU per request over granian's.

Prints the Markdown tables and saves them, with a JSON of the raw numbers and wrk
outputs, to ``benchmarks/results/PREFIX-YYYYMMDD-HHMM.{md,json}`` (``hello``,
``hello-processes``, ``hello-daemon``, ``hello-site``, ``io`` or ``flask``).
All traffic goes to 127.0.0.1 and every load run is bounded in time.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import datetime as dt
import http.client
import importlib.metadata
import importlib.util
import json
import os
import platform
import resource
import runpy
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import baseline
import cpustat
from report import (
    BASELINE,
    Measurement,
    RunReport,
    ServerOutcome,
    before_after,
    combine_rounds,
    render_markdown,
)
from servers import (
    DEFAULT_SCENARIO,
    MODWSGI_THREADS_PER_CHILD,
    SCENARIOS,
    LaunchContext,
    Scenario,
    ServerSpec,
)
from wrkparse import WrkParseError, parse_wrk_output

HOST = "127.0.0.1"
BENCH_DIR = Path(__file__).resolve().parent
REPO_ROOT = BENCH_DIR.parent
APPS_DIR = BENCH_DIR / "apps"
RESULTS_DIR = BENCH_DIR / "results"
PROJECT_APP = REPO_ROOT / "examples" / "hello.wsgi"
FALLBACK_APP = APPS_DIR / "hello.wsgi"

STARTUP_TIMEOUT_S = 15.0
STOP_GRACE_S = 5.0
WANTED_NOFILE = 65536
WRK_EXTRA_TIMEOUT_S = 30.0  # on top of -d, before the runner gives up on wrk
LOG_TAIL_LINES = 15
FOREIGN_CPU_LIMIT = 0.25  # cores used by other processes above which a number is flagged
QUEUE_SAMPLE_POINTS = (0.25, 0.5, 0.75)  # when to read the accept queue, as run fractions
PROCESS_WAIT_S = 10.0  # how long a server may take to start all its processes once serving
NOT_READY_STATUSES = (502, 503)  # answers to GET / that mean "still starting": keep polling
TMP_ENV = "ASYNCWSGI_BENCH_TMP"  # the run's temporary folder, for the app's own files


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


# --------------------------------------------------------------------------- setup


def raise_nofile_limit(wanted: int = WANTED_NOFILE) -> int:
    """Raise RLIMIT_NOFILE (inherited by wrk and the servers); return the soft limit.

    Raising the hard limit needs privileges; without them, settle for the hard limit.
    """
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY:
        return wanted  # "at least": reported as such
    if soft >= wanted:
        return soft
    if hard == resource.RLIM_INFINITY or hard >= wanted:
        candidates = [(wanted, hard)]
    else:
        candidates = [(wanted, wanted), (hard, hard)]
    for new_soft, new_hard in candidates:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (new_soft, new_hard))
        except (ValueError, OSError):
            continue
        return new_soft
    return soft


def find_executable(name: str) -> str | None:
    """``name`` next to the running interpreter (a virtualenv's bin/), else on PATH."""
    candidate = Path(sys.executable).parent / name
    if candidate.is_file() and os.access(candidate, os.X_OK):
        return str(candidate)
    return shutil.which(name)


def choose_app_script(app: str | None = None) -> Path:
    """The scenario's script in ``benchmarks/apps/`` (``Scenario.app``), else hello world."""
    if app is not None:
        return APPS_DIR / app
    return PROJECT_APP if PROJECT_APP.is_file() else FALLBACK_APP


def expected_response_body(app_script: Path, tmp: Path | None = None) -> bytes:
    """Call the WSGI app in-process once, to know what every server must send back.

    ``tmp``: the run's temporary folder, given to the app as ``$ASYNCWSGI_BENCH_TMP`` while
    it loads (as to the servers), for any files it makes (``apps/flask_app.py``)."""
    previous = os.environ.get(TMP_ENV)
    if tmp is not None:
        os.environ[TMP_ENV] = str(tmp)
    try:
        application = runpy.run_path(str(app_script), run_name="hello_wsgi")["application"]
    finally:
        if tmp is not None:
            if previous is None:
                del os.environ[TMP_ENV]
            else:
                os.environ[TMP_ENV] = previous
    environ: dict[str, Any] = {
        "REQUEST_METHOD": "GET",
        "SCRIPT_NAME": "",
        "PATH_INFO": "/",
        "QUERY_STRING": "",
        "SERVER_NAME": HOST,
        "SERVER_PORT": "80",
        "SERVER_PROTOCOL": "HTTP/1.1",
        "wsgi.version": (1, 0),
        "wsgi.url_scheme": "http",
        "wsgi.errors": sys.stderr,
        "wsgi.multithread": True,
        "wsgi.multiprocess": False,
        "wsgi.run_once": False,
    }

    def start_response(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
        return lambda data: None

    chunks = application(environ, start_response)
    try:
        return b"".join(chunks)
    finally:
        close = getattr(chunks, "close", None)
        if close is not None:
            close()


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        port: int = sock.getsockname()[1]
        return port


def package_version(package: str) -> str:
    try:
        return f"{package} {importlib.metadata.version(package)}"
    except importlib.metadata.PackageNotFoundError:
        return f"{package} (not installed)"


def git_describe() -> str | None:
    return baseline.describe(REPO_ROOT)


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                key, _, value = line.partition(":")
                if key.strip() == "model name":
                    return value.strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown"


def wrk_version(wrk: str) -> str:
    try:
        proc = subprocess.run([wrk, "--version"], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"
    first = (proc.stdout or proc.stderr).strip().splitlines()
    return first[0].split(" [", 1)[0] if first else "unknown"


def machine_description(wrk: str, nofile: int) -> dict[str, str]:
    return {
        "CPU": cpu_model(),
        "Cores": str(os.cpu_count()),
        "Python": f"{platform.python_implementation()} {platform.python_version()}",
        "Kernel": f"{platform.system()} {platform.release()}",
        "wrk": wrk_version(wrk),
        "Open-file limit (RLIMIT_NOFILE)": str(nofile),
    }


# --------------------------------------------------------------------------- processes


@dataclass(frozen=True)
class BenchConfig:
    """How every server is measured in one run."""

    wrk: str
    app_script: Path
    body: bytes  # what GET / must return
    connections: list[int]
    threads: int
    duration: int
    warmup: int
    wait_idle: float
    retry_contended: int
    server_cpus: frozenset[int] | None  # --pin: CPUs for the server, None: any
    wrk_cpus: frozenset[int] | None  # --pin: CPUs for wrk, None: any
    workdir: Path
    check_processes: bool = False  # report the server's processes (multi-process scenarios)


@contextlib.contextmanager
def cpu_affinity(cpus: frozenset[int] | None) -> Iterator[None]:
    """Run the block, and so the processes it starts, on ``cpus`` (None: leave as is)."""
    if cpus is None:
        yield
        return
    previous = os.sched_getaffinity(0)
    os.sched_setaffinity(0, cpus)
    try:
        yield
    finally:
        os.sched_setaffinity(0, previous)


def pin_cpus(server_wanted: int = 1) -> tuple[frozenset[int], frozenset[int]]:
    """--pin: the first ``server_wanted`` usable CPUs for the server, the others for wrk.

    wrk keeps at least one CPU, so the server gets fewer than it wants on a small
    machine (on 2 CPUs: one each, whatever the scenario).
    """
    if not hasattr(os, "sched_getaffinity"):
        raise SystemExit("--pin needs os.sched_setaffinity (Linux)")
    cpus = sorted(os.sched_getaffinity(0))
    if len(cpus) < 2:
        raise SystemExit("--pin needs at least 2 usable CPUs")
    n = max(1, min(server_wanted, len(cpus) - 1))
    return frozenset(cpus[:n]), frozenset(cpus[n:])


class ServerProcess:
    """A server subprocess in its own session, logging to a file."""

    def __init__(self, argv: list[str], cwd: Path, env: dict[str, str], log_path: Path) -> None:
        self.argv = argv
        self.log_path = log_path
        with open(log_path, "wb") as log_file:
            self.proc = subprocess.Popen(
                argv,
                cwd=cwd,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=log_file,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # own process group: workers are stopped with it
            )

    def alive(self) -> bool:
        return self.proc.poll() is None

    def log_tail(self, lines: int = LOG_TAIL_LINES) -> str:
        try:
            text = self.log_path.read_text(encoding="utf-8", errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def _signal_group(self, sig: signal.Signals) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.proc.pid, sig)

    def stop(self) -> None:
        """SIGTERM the process group; SIGKILL it if the server is not gone after 5 s."""
        if self.alive():
            self._signal_group(signal.SIGTERM)
            try:
                self.proc.wait(timeout=STOP_GRACE_S)
            except subprocess.TimeoutExpired:
                log(f"    server did not exit {STOP_GRACE_S:.0f} s after SIGTERM; SIGKILL")
        # Also reaps workers left behind by a master that exited first.
        self._signal_group(signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(timeout=STOP_GRACE_S)


@contextlib.contextmanager
def running_server(
    argv: list[str], cwd: Path, env: dict[str, str], log_path: Path, cpus: frozenset[int] | None
) -> Iterator[ServerProcess]:
    with cpu_affinity(cpus):
        server = ServerProcess(argv, cwd, env, log_path)
    try:
        yield server
    finally:
        server.stop()


def wait_until_serving(
    server: ServerProcess, port: int, timeout: float = STARTUP_TIMEOUT_S
) -> tuple[int, bytes]:
    """Poll ``GET /`` until it answers; return (status, body). Raises RuntimeError.

    502 and 503 count as "not ready yet" (a front end whose workers are still starting,
    e.g. asyncwsgi's daemon mode) and polling goes on.
    """
    deadline = time.monotonic() + timeout
    last_error = "no attempt"
    while time.monotonic() < deadline:
        if not server.alive():
            raise RuntimeError(f"exited with status {server.proc.returncode} before serving")
        conn = http.client.HTTPConnection(HOST, port, timeout=1.0)
        try:
            conn.request("GET", "/")
            response = conn.getresponse()
            body = response.read()
            if response.status not in NOT_READY_STATUSES:
                return response.status, body
            last_error = f"HTTP {response.status} {body[:80]!r}"
        except (OSError, http.client.HTTPException) as exc:
            last_error = f"{type(exc).__name__}: {exc}"
        finally:
            conn.close()
        time.sleep(0.05)
    raise RuntimeError(f"not answering GET / after {timeout:.0f} s ({last_error})")


def wrk_argv(wrk: str, threads: int, connections: int, duration: int, url: str) -> list[str]:
    return [wrk, "--latency", f"-t{threads}", f"-c{connections}", f"-d{duration}s", url]


@dataclass(frozen=True)
class WrkRun:
    returncode: int
    stdout: str
    stderr: str
    accept_queue: list[int]  # accept-queue lengths at 1/4, 1/2 and 3/4 of the run, if probed


def accept_queue_length(port: int) -> int | None:
    """Connections waiting in the accept queue of the LISTEN socket(s) on 127.0.0.1:port.

    wrk reports nothing about connections that wait there: a server that caps its
    connections (waitress: 100) looks fine at c=1000 unless this is checked. Read
    from /proc/net/tcp (rx_queue of a LISTEN socket); None where unavailable.
    """
    local = f"0100007F:{port:04X}"  # 127.0.0.1, as /proc/net/tcp spells it
    total = 0
    found = False
    try:
        with open("/proc/net/tcp", encoding="ascii") as f:
            next(f, None)
            for line in f:
                fields = line.split()
                if len(fields) > 4 and fields[1] == local and fields[3] == "0A":
                    total += int(fields[4].partition(":")[2], 16)
                    found = True
    except (OSError, ValueError):
        return None
    return total if found else None


def run_wrk(
    argv: list[str], duration: int, cpus: frozenset[int] | None, probe_port: int | None = None
) -> WrkRun:
    """Run wrk, bounded in time; optionally sample the server's accept queue meanwhile."""
    started = time.monotonic()
    with cpu_affinity(cpus):
        proc = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
    samples: list[int] = []
    try:
        for fraction in QUEUE_SAMPLE_POINTS:
            if probe_port is None:
                break
            try:
                proc.wait(timeout=max(0.0, started + fraction * duration - time.monotonic()))
                break  # wrk already exited
            except subprocess.TimeoutExpired:
                length = accept_queue_length(probe_port)
                if length is not None:
                    samples.append(length)
        out, err = proc.communicate(timeout=duration + WRK_EXTRA_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate()
        err += f"\nwrk killed after {duration + WRK_EXTRA_TIMEOUT_S:.0f} s"
        return WrkRun(-1, out, err, samples)
    return WrkRun(proc.returncode, out, err, samples)


def wait_for_quiet_machine(max_wait: float) -> cpustat.ForeignCpu | None:
    """Wait (bounded) until other processes use < FOREIGN_CPU_LIMIT cores over 1 s."""
    deadline = time.monotonic() + max_wait
    announced = False
    while True:
        before = cpustat.snapshot()
        time.sleep(1.0)
        usage = cpustat.foreign_cpu(before, cpustat.snapshot(), our_pgrp=-1)
        if usage is None or usage.cores < FOREIGN_CPU_LIMIT or time.monotonic() >= deadline:
            return usage
        if not announced:
            log(f"   machine busy ({usage.describe()}); waiting up to {max_wait:.0f} s")
            announced = True


# --------------------------------------------------------------------------- benchmark


def bench_server(spec: ServerSpec, cfg: BenchConfig, checkout: Path | None = None) -> ServerOutcome:
    """Start one server, check its answer, warm it up, measure it, stop it.

    ``checkout`` (``--baseline``: this repository or the baseline's): run asyncwsgi's code
    from that checkout, started in it with it first on PYTHONPATH, once ``baseline.verify``
    has checked that asyncwsgi imports from there that way; None: as installed.
    """
    outcome = ServerOutcome(spec.name, spec.description, package_version(spec.package))
    missing = [m for m in spec.requires if importlib.util.find_spec(m) is None]
    if missing:
        outcome.failure = f"required module(s) not importable: {', '.join(missing)}"
        return outcome
    if spec.apache:
        from apache import modwsgi

        reason = modwsgi.unavailable_reason()
        if reason is not None:
            outcome.failure = f"skipped: Apache + mod_wsgi not available ({reason})"
            log(f"== {spec.name}: {outcome.failure}")
            return outcome
        version = modwsgi.apache_version(modwsgi.find_install())
        if version:
            outcome.version += f", {version}"

    port = free_port()
    ctx = LaunchContext(sys.executable, HOST, port, cfg.app_script, APPS_DIR, cfg.workdir)
    outcome.argv = spec.argv(ctx)
    env = dict(os.environ)
    env.update(spec.env)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(APPS_DIR), env.get("PYTHONPATH", "")) if p)
    env["BENCH_APP_SCRIPT"] = str(cfg.app_script)
    env[TMP_ENV] = str(cfg.workdir)
    url = f"http://{HOST}:{port}/"
    cwd = REPO_ROOT

    log(f"== {spec.name}: {' '.join(outcome.argv)}")
    if checkout is not None:
        # The working directory is sys.path[0] of the server and of its children, ahead of
        # PYTHONPATH: started in this repository, every row would run this repository's code.
        env, cwd = baseline.pinned_env(env, checkout), checkout
        try:
            probe = baseline.verify(outcome.argv[0], env, cwd, checkout)
        except RuntimeError as exc:
            outcome.failure = f"not run from {checkout}: {exc}"
            log(f"   {outcome.failure}")
            return outcome
        outcome.version = probe.describe()
        log(f"   {probe.describe()} (checked: all {len(probe.modules)} modules)")
    if cfg.wait_idle > 0:
        usage = wait_for_quiet_machine(cfg.wait_idle)
        if usage is not None and usage.cores >= FOREIGN_CPU_LIMIT:
            log(f"   still busy, measuring anyway: {usage.describe()}")
    log_path = cfg.workdir / f"{spec.name}.log"
    with running_server(outcome.argv, cwd, env, log_path, cfg.server_cpus) as server:
        try:
            started = time.monotonic()
            status, got = wait_until_serving(server, port)
            log(f"   serving after {time.monotonic() - started:.2f} s")
        except RuntimeError as exc:
            outcome.failure = f"failed to start: {exc}"
            outcome.log_tail = server.log_tail()
            log(f"   {outcome.failure}\n{_indent(outcome.log_tail)}")
            return outcome
        if status != 200 or got != cfg.body:
            outcome.failure = f"unexpected response to GET /: status {status}, body {got[:80]!r}"
            log(f"   {outcome.failure}")
            return outcome
        problem = check_processes(server, spec, cfg, outcome)
        if problem is not None:
            outcome.failure = problem
            outcome.log_tail = server.log_tail()
            log(f"   {problem}")
            return outcome

        if cfg.warmup > 0:
            log(f"   warm-up {cfg.warmup} s")
            warmup_argv = wrk_argv(cfg.wrk, cfg.threads, min(cfg.connections), cfg.warmup, url)
            run_wrk(warmup_argv, cfg.warmup, cfg.wrk_cpus)

        for c in cfg.connections:
            if not server.alive():
                outcome.measurements[c] = Measurement(c, error="server had exited")
                continue
            argv = wrk_argv(cfg.wrk, cfg.threads, c, cfg.duration, url)
            best = measure(server, port, c, argv, cfg)
            attempts = 1
            while (
                best.contention is not None
                and best.result is not None
                and attempts <= cfg.retry_contended
                and server.alive()
            ):
                log("   contended; waiting for a quiet machine, then measuring again")
                wait_for_quiet_machine(cfg.wait_idle)
                retry = measure(server, port, c, argv, cfg)
                attempts += 1
                if retry.result is not None and (retry.foreign_cpu_cores or 0.0) < (
                    best.foreign_cpu_cores or 0.0
                ):
                    best = retry
            best.attempts = attempts
            outcome.measurements[c] = best
        outcome.log_tail = server.log_tail()
    return outcome


def is_asyncwsgi(spec: ServerSpec) -> bool:
    """A row that runs asyncwsgi's code: run twice with ``--baseline``."""
    return spec.package == "asyncwsgi"


def baseline_spec(spec: ServerSpec) -> ServerSpec:
    """``spec`` as its ``@baseline`` row: same command line, another name."""
    return dataclasses.replace(
        spec,
        name=baseline.row_name(spec.name, True),
        description=f"{spec.description}; the baseline checkout's code",
    )


def check_processes(
    server: ServerProcess, spec: ServerSpec, cfg: BenchConfig, outcome: ServerOutcome
) -> str | None:
    """None if the server runs at least ``spec.min_processes`` processes, else why not.

    Counts the server's process tree and process group (from /proc; without /proc the
    check is skipped). Guards against measuring a setup that is not running: an
    asyncwsgi that ignores ``--mode daemon`` still answers, from one process.
    """
    if spec.min_processes <= 1 and not cfg.check_processes:
        return None
    found = cpustat.wait_for_processes(server.proc.pid, spec.min_processes, PROCESS_WAIT_S)
    if not found:
        return None
    outcome.processes = cpustat.describe_processes(found)
    log(f"   processes: {outcome.processes}")
    if len(found) < spec.min_processes:
        return (
            f"not running as described: expected at least {spec.min_processes} processes "
            f"{PROCESS_WAIT_S:.0f} s after it answered, found {outcome.processes}"
        )
    return None


def measure(
    server: ServerProcess, port: int, connections: int, argv: list[str], cfg: BenchConfig
) -> Measurement:
    """One wrk run, with the CPU the server and other processes used meanwhile."""
    log(f"   {' '.join(argv)}")
    before = cpustat.snapshot()
    run = run_wrk(argv, cfg.duration, cfg.wrk_cpus, probe_port=port)
    after = cpustat.snapshot()
    out, err = run.stdout, run.stderr
    foreign = cpustat.foreign_cpu(before, after, server.proc.pid)
    measurement = Measurement(connections, wrk_output=out + err)
    measurement.accept_queue = run.accept_queue
    measurement.server_cpu_s = cpustat.tree_cpu_seconds(before, after, server.proc.pid)
    if foreign is not None:
        measurement.foreign_cpu_cores = round(foreign.cores, 3)
        if foreign.cores >= FOREIGN_CPU_LIMIT:
            measurement.contention = foreign.describe()
    try:
        measurement.result = parse_wrk_output(out)
    except WrkParseError as exc:
        measurement.error = f"wrk failed (exit {run.returncode}): {exc}; {err.strip()[:200]}"
    if not server.alive():
        note = f"server exited (status {server.proc.returncode}) during the run"
        measurement.error = f"{measurement.error}; {note}" if measurement.error else note
    log("   " + _summary(measurement))
    return measurement


def _summary(m: Measurement) -> str:
    if m.result is None:
        return f"c={m.connections}: {m.error}"
    r = m.result
    text = (
        f"c={m.connections}: {r.requests_per_sec:,.0f} req/s, p99 {r.p99_ms} ms, {r.errors} errors"
    )
    if m.cpu_us_per_request is not None:
        text += f", server CPU {m.cpu_us_per_request:,.0f} us/request"
    if m.error:
        text += f" ({m.error})"
    if m.contention:
        text += f" [contended: {m.contention}]"
    return text


def baseline_notes(
    baseline_dir: Path, order: list[tuple[str, bool]], reference: str, rounds: int = 1
) -> list[str]:
    """The report's lines on ``--baseline``: which code each side ran, and in what order.

    ``order``: every run, all rounds one after the other (``rounds`` of equal length)."""
    per_round = len(order) // rounds
    ran = "; ".join(
        (f"round {k + 1}: " if rounds > 1 else "")
        + ", ".join(
            f"`{baseline.row_name(name, b)}`"
            for name, b in order[k * per_round : (k + 1) * per_round]
        )
        for k in range(rounds)
    )
    carried = "; each pair swaps sides from round to round" if rounds > 1 else ""
    return [
        f"**Baseline:** rows named `NAME{baseline.SUFFIX}` ran asyncwsgi from "
        f"{baseline.label(baseline_dir)}, the other asyncwsgi rows from this checkout, "
        f"{baseline.label(REPO_ROOT)}; same interpreter, command line and app. Each was "
        "started in its checkout with it first on PYTHONPATH, after checking that "
        "asyncwsgi imports from there (every module). A baseline row's "
        f"`{BASELINE}/peer` cell is `{reference}` (this checkout) over it.",
        f"**Run order:** {ran} (each pair back to back, every other pair baseline first{carried})",
    ]


def rounds_note(rounds: int) -> str:
    """The report's line on ``--rounds``."""
    return (
        f"**Rounds:** {rounds}: each round started, warmed up, measured and stopped every "
        "server in turn, the rounds one after the other, so that a machine that drifts "
        "during the run moves every row alike; the table gives medians over the rounds "
        "(see below it)"
    )


def describe_body(body: bytes, limit: int = 80) -> str:
    """The App note's words on the response body: the body itself if short, else its size."""
    if len(body) <= limit:
        return f"response body {body!r}"
    return f"response body of {len(body):,} bytes, starting {body[:40]!r}"


def _cpu_list(cpus: frozenset[int]) -> str:
    return ",".join(str(cpu) for cpu in sorted(cpus))


def _indent(text: str) -> str:
    return "\n".join("     | " + line for line in text.splitlines())


def _int_list(text: str) -> list[int]:
    try:
        values = [int(v) for v in text.split(",") if v.strip()]
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"not a comma-separated list of integers: {text}") from exc
    if not values or any(v <= 0 for v in values):
        raise argparse.ArgumentTypeError("need positive integers")
    return values


def _name_list(text: str) -> list[str]:
    names = [n.strip() for n in text.split(",") if n.strip()]
    if not names:
        raise argparse.ArgumentTypeError("no server names")
    return names


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--scenario",
        choices=tuple(SCENARIOS),
        default=DEFAULT_SCENARIO,
        help="which servers to compare: "
        + "; ".join(
            f"{s.name}: {', '.join(s.by_name())}"
            + (" (default)" if s.name == DEFAULT_SCENARIO else "")
            for s in SCENARIOS.values()
        ),
    )
    parser.add_argument("--duration", type=int, default=10, help="seconds per wrk run")
    parser.add_argument(
        "--only",
        type=_name_list,
        default=None,
        help="comma-separated servers of the scenario to run (default: all of them)",
    )
    parser.add_argument(
        "--connections",
        type=_int_list,
        default=None,
        help="comma-separated wrk -c values (default: the scenario's: "
        + "; ".join(
            f"{s.name}: {','.join(str(c) for c in s.connections)}" for s in SCENARIOS.values()
        )
        + ")",
    )
    parser.add_argument("--threads", type=int, default=2, help="wrk -t (load generator threads)")
    parser.add_argument("--warmup", type=int, default=2, help="warm-up seconds (0: none)")
    parser.add_argument(
        "--wait-idle",
        type=float,
        default=60.0,
        help="before each server, wait up to this many seconds for other processes to "
        f"use < {FOREIGN_CPU_LIMIT} cores (0: do not wait)",
    )
    parser.add_argument(
        "--retry-contended",
        type=int,
        default=2,
        help="re-run a measurement this many times at most if other processes used "
        f">= {FOREIGN_CPU_LIMIT} cores during it, keeping the least contended run",
    )
    parser.add_argument(
        "--pin",
        action="store_true",
        help="pin the server to the first CPU (processes/daemon: the first 2 CPUs, if wrk "
        "keeps one) and wrk to the others (default: no pinning)",
    )
    parser.add_argument(
        "--modwsgi-threads",
        type=int,
        default=MODWSGI_THREADS_PER_CHILD,
        help="processes/daemon scenarios: Apache's ThreadsPerChild for the mod_wsgi rows "
        f"(2 children; MaxRequestWorkers = 2 x this; default {MODWSGI_THREADS_PER_CHILD})",
    )
    parser.add_argument(
        "--baseline",
        type=baseline.checkout_dir,
        default=None,
        metavar="DIR",
        help="also run every asyncwsgi row of the scenario with the code of DIR, another "
        "checkout of this repository (git worktree add DIR COMMIT), as NAME@baseline next "
        "to it, to compare two versions in one run",
    )
    parser.add_argument(
        "--rounds",
        type=int,
        default=1,
        metavar="N",
        help="measure every server N times, in interleaved rounds (each round restarts and "
        "warms up every server), and report medians with the min-max spread (default 1)",
    )
    parser.add_argument(
        "--no-save", action="store_true", help="print only; do not write benchmarks/results/"
    )
    args = parser.parse_args(argv)
    if args.connections is None:
        args.connections = list(SCENARIOS[args.scenario].connections)
    if args.duration <= 0 or args.threads <= 0 or min(args.warmup, args.retry_contended) < 0:
        parser.error("--duration and --threads must be positive, --warmup non-negative")
    if min(args.connections) < args.threads:
        parser.error("wrk needs at least as many connections as threads")
    if args.modwsgi_threads <= 0:
        parser.error("--modwsgi-threads must be positive")
    if args.rounds <= 0:
        parser.error("--rounds must be positive")
    known = SCENARIOS[args.scenario].by_name(args.modwsgi_threads)
    unknown = [n for n in args.only or () if n not in known]
    if unknown:
        parser.error(
            f"unknown server(s) {unknown} in scenario {args.scenario}; "
            f"choose from {', '.join(known)}"
        )
    chosen = [known[n] for n in args.only] if args.only else list(known.values())
    if args.baseline is not None and not any(is_asyncwsgi(spec) for spec in chosen):
        parser.error("--baseline needs an asyncwsgi row among the servers (see --only)")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    wrk = find_executable("wrk")
    if wrk is None:
        log("wrk not found next to the interpreter or on PATH (apt-get install wrk)")
        return 2
    nofile = raise_nofile_limit()
    if nofile < max(args.connections) + 100:
        log(f"warning: open-file limit {nofile} is low for {max(args.connections)} connections")

    scenario: Scenario = SCENARIOS[args.scenario]
    app_script = choose_app_script(scenario.app)
    by_name = scenario.by_name(args.modwsgi_threads)
    names = list(args.only or by_name)

    def ours(name: str) -> bool:  # the rows run twice: asyncwsgi's, with --baseline
        return args.baseline is not None and is_asyncwsgi(by_name[name])

    plan = baseline.plan_rounds(names, ours, args.rounds)
    now = dt.datetime.now(dt.timezone.utc)

    server_cpus, wrk_cpus = pin_cpus(scenario.server_cpus) if args.pin else (None, None)

    with tempfile.TemporaryDirectory(prefix="asyncwsgi-bench-") as tmp:
        # Apache's children (www-data) read the script copy and the ServerRoot below it.
        os.chmod(tmp, 0o755)
        try:
            body = expected_response_body(app_script, Path(tmp))
        except ImportError as exc:
            log(f"{app_script.name} does not load here ({exc}): pip install what it imports")
            return 2
        cfg = BenchConfig(
            wrk=wrk,
            app_script=app_script,
            body=body,
            connections=args.connections,
            threads=args.threads,
            duration=args.duration,
            warmup=args.warmup,
            wait_idle=args.wait_idle,
            retry_contended=args.retry_contended,
            server_cpus=server_cpus,
            wrk_cpus=wrk_cpus,
            workdir=Path(tmp),
            check_processes=scenario.server_cpus > 1,
        )
        per_row: dict[str, list[ServerOutcome]] = {}  # row name -> its rounds' outcomes
        announced = 0
        for number, name, from_baseline in plan:
            if args.rounds > 1 and number != announced:
                log(f"-- round {number}/{args.rounds}")
                announced = number
            spec = by_name[name]
            row = baseline_spec(spec) if from_baseline else spec
            checkout = baseline.checkout_for(is_asyncwsgi(spec), from_baseline, args.baseline)
            # Started afresh each round (and warmed up again): every round measures the
            # same thing, a freshly started server, and a crash stays within its round.
            per_row.setdefault(row.name, []).append(bench_server(row, cfg, checkout))
    rows = [combine_rounds(per_row[name]) for name in baseline.table_order(names, ours)]

    notes = [
        f"**Scenario:** `{scenario.name}`: {scenario.description}; ratios against "
        f"`{scenario.baseline}`",
        f"**App:** `{app_script.relative_to(REPO_ROOT)}` ({describe_body(body)}, "
        "checked byte-for-byte against every server before it is measured)",
        f"**Warm-up:** {args.warmup} s of wrk at c={min(args.connections)} per server; "
        "each server runs alone, started fresh, then stopped"
        + (" (in every round)" if args.rounds > 1 else ""),
        "**CPU pinning:** "
        + (
            f"server on CPU {_cpu_list(server_cpus)}, wrk on CPU {_cpu_list(wrk_cpus)} (--pin)"
            + (
                f"; the server processes share {len(server_cpus)} CPU(s) "
                f"(wanted {scenario.server_cpus}: wrk keeps at least one)"
                if len(server_cpus) < scenario.server_cpus
                else ""
            )
            if server_cpus is not None and wrk_cpus is not None
            else "none (the scheduler spreads server and wrk over all cores)"
        ),
        f"**Contention check:** CPU used by other processes during each wrk run is measured "
        f"from /proc; a `*` after req/s marks a run where it was >= {FOREIGN_CPU_LIMIT} cores",
    ]
    if args.rounds > 1:
        notes.append(rounds_note(args.rounds))
    describe = git_describe()
    if describe:
        notes.append(f"**asyncwsgi git:** {describe}")
    if args.baseline is not None:
        order = [(name, from_baseline) for _, name, from_baseline in plan]
        notes += baseline_notes(args.baseline, order, scenario.baseline, args.rounds)
        notes += before_after(rows, args.connections)
    reference = next((n for n in names if by_name[n].package == "granian"), None)
    report = RunReport(
        date_utc=now.strftime("%Y-%m-%d %H:%M UTC"),
        machine=machine_description(wrk, nofile),
        wrk_commands=[
            " ".join(wrk_argv("wrk", args.threads, c, args.duration, f"http://{HOST}:PORT/"))
            for c in args.connections
        ],
        notes=notes,
        connections=args.connections,
        servers=rows,
        baseline=scenario.baseline,
        title=scenario.title
        + ("" if scenario.name == DEFAULT_SCENARIO else f", scenario `{scenario.name}`"),
        rounds=args.rounds,
        reference=reference,
        app_wait_s=scenario.app_wait_s,
    )
    markdown = render_markdown(report)
    print(markdown)
    if not args.no_save:
        RESULTS_DIR.mkdir(parents=True, exist_ok=True)
        stem = RESULTS_DIR / f"{scenario.results_prefix}-{now:%Y%m%d-%H%M}"
        stem.with_suffix(".md").write_text(cpustat.scrub_paths(markdown), encoding="utf-8")
        stem.with_suffix(".json").write_text(
            cpustat.scrub_paths(json.dumps(report.to_dict(), indent=2)) + "\n", encoding="utf-8"
        )
        log(f"saved {stem}.md and {stem}.json")
    return 0


if __name__ == "__main__":
    sys.exit(main())
