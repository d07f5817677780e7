"""Chaos: a steady load while daemons are killed and stopped, the connection limit is
filled with bad clients and the script is replaced.

Usage::

    python benchmarks/chaos.py [--mode daemon|embedded|both] [--duration 60]
        [--clients 16] [--newcomers 4] [--rate 400] [--processes 2] [--threads 4]
        [--max-connections 200] [--never-reading N] [--seed 1] [--no-save]

The server: ``python -m asyncwsgi chaos.wsgi`` (built by ``asyncwsgi_cmd.py``) with
``--threads 4`` and short limits, so that a run takes about a minute:
``--max-connections 200 --header-timeout 2 --send-timeout 3 --body-timeout 2
--keep-alive-timeout 2 --graceful-timeout 5 --shutdown-timeout 2``; ``--mode daemon``
(the default) adds ``--mode daemon --processes 2``; ``--mode embedded`` serves from one
process (no daemon faults then, the rest applies); ``--mode both`` runs one, then the
other. The app (``apps/chaos_app.py``, copied to ``chaos.wsgi`` in a fresh temporary
folder) answers ``version=N pid=P`` on ``/`` and 16 MiB on ``/big``.

The load: well-behaved clients on asyncio in this process, one request in flight each,
paced together to ``--rate`` requests/s (0: as fast as they can): ``--clients`` keep their
connection (a new one only after a failure), ``--newcomers`` open a new connection for
every request, so they show whether the server takes new connections. A request is timed
from its start (its connect, if it needs one) to its answer, and gives up after 30 s; a
failed one is retried on a new connection 50 ms later.

The chaos, after a steady phase and before a settle phase, at evenly spaced times
(``--seed`` picks the victims and jitters the times by up to 20 % of a gap):

- ``kill``: SIGKILL one daemon (a child of the server titled ``asyncwsgi: daemon ...``);
- ``stop``: SIGSTOP one daemon and leave it stopped: the server should notice that it
  does not answer its pings, stop giving it requests and replace it;
- ``flood``: open bad connections up to ``--max-connections`` minus the keep-alive
  clients' own: first never-reading ones (``GET /big``, never read; by default half the
  app's worker threads in the first flood, all of them in the second; ``--never-reading
  N`` for a fixed number), then half-head ones (half a request head, then nothing). Those
  the server refuses at once (a newcomer had a slot) are opened again for up to 1 s, so
  the table is full. They are held until the next action, then closed; meanwhile the
  server's side of each is read from /proc/net/tcp every 0.2 s, to see when the server
  dropped them (header timeout, send timeout);
- ``replace``: write the script with its ``VERSION`` bumped to a temporary file and
  ``os.replace`` it over the served one (three times).

Daemon mode runs kill, replace, flood (half), stop, replace, kill, flood (all), replace;
embedded mode replace, flood (half), replace, flood (all), replace.

Reported, per run and per phase: requests sent, answered OK (200 with a
``version=N pid=P`` body), lost (any other outcome except the requests in flight on a
killed daemon), of which refused with 503; the requests in flight on a killed daemon (a
502 within 1 s after a SIGKILL; a 502/504 after a SIGSTOP for a request started before the
stopped daemon was gone: the server kills it); the longest time one request waited, the
longest a client waited to be served (retries included) and the p99; the RSS of the
server and the sum over its daemons before the chaos (end of the steady phase) and after
it (end of the settle phase, load still on), with their peaks and the server's open
files; daemons killed, stopped and replaced (pids that appeared). For each action, what
it caused: when a new daemon appeared, when the stopped daemon was gone and which
requests were stuck on it, when the bad connections were dropped and how many requests
were refused meanwhile, when the new code answered. The server log's warnings, errors
and daemon events follow, alike lines counted once.

Cleanup, also on Ctrl-C, SIGTERM or failure: the flood's sockets are closed, every daemon
this benchmark stopped gets SIGCONT and SIGKILL (when it is still the server's), and the
server's process group gets SIGTERM, then SIGKILL. Results go to
``benchmarks/results/chaos-YYYYMMDD-HHMM.{md,json}`` (``--no-save``: print only). The
pure parts (parsing /proc, classifying requests, phases, the report) are tested in
``test_chaos.py``. All traffic goes to 127.0.0.1; every phase is bounded in time.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import math
import os
import random
import re
import resource
import shutil
import signal
import socket
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import asyncwsgi_cmd
import cpustat
from reload_under_load import (
    _errname,
    _new_event_loop,
    dumps_compact_lists,
    machine,
    other_processes_cpu,
    parse_response,
    versions,
    wait_for_quiet_machine,
)
from run import (
    ServerProcess,
    free_port,
    raise_nofile_limit,
    wait_until_serving,
)

HOST = "127.0.0.1"
BENCH_DIR = Path(__file__).resolve().parent
RESULTS_DIR = BENCH_DIR / "results"
APP_TEMPLATE = BENCH_DIR / "apps" / "chaos_app.py"
SCRIPT_NAME = "chaos.wsgi"
DAEMON_TITLE = "asyncwsgi: daemon"

# The server's limits: short, so that the whole run takes about a minute.
SERVER_LIMITS: tuple[str, ...] = (
    "--header-timeout",
    "2",
    "--send-timeout",
    "3",
    "--body-timeout",
    "2",
    "--keep-alive-timeout",
    "2",
    "--graceful-timeout",
    "5",
    "--shutdown-timeout",
    "2",
)

CLIENT_TIMEOUT_S = 30.0  # a well-behaved request unanswered for this long has failed
RETRY_DELAY_S = 0.05
KILL_WINDOW_S = 1.0  # a 502 this soon after a SIGKILL counts as in flight on the daemon
STUCK_S = 1.0  # a request that waited this long after a SIGSTOP was stuck on the daemon
SLOW_S = 1.0  # requests that waited this long are counted per phase
MONITOR_S = 0.2  # how often the chaos thread samples /proc
STARTUP_TIMEOUT_S = 30.0
PROCESS_WAIT_S = 10.0
FLOOD_CONNECT_TIMEOUT_S = 2.0
FLOOD_RCVBUF = 4096  # never-reading sockets: the server's writes block as soon as possible
TOPUP_S = 1.0  # a flood re-opens the connections the server refused for this long
REFUSED_LABELS = frozenset({"HTTP/1.1 503", "closed", "error ECONNRESET"})
MAX_FAILURES_KEPT = 1000  # failed requests listed in the JSON
LOG_LINES_SHOWN = 20

# A flood's number: the share (%) of the app's worker threads its never-reading clients take.
DAEMON_ACTIONS: tuple[tuple[str, int], ...] = (
    ("kill", 0),
    ("replace", 0),
    ("flood", 50),
    ("stop", 0),
    ("replace", 0),
    ("kill", 0),
    ("flood", 100),
    ("replace", 0),
)
EMBEDDED_ACTIONS: tuple[tuple[str, int], ...] = (
    ("replace", 0),
    ("flood", 50),
    ("replace", 0),
    ("flood", 100),
    ("replace", 0),
)
MIN_GAP_S = 4.0  # an action's phase must outlast the header and send timeouts

REQUEST = b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nUser-Agent: chaos-client\r\n\r\n"
REQUEST_CLOSE = (
    b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nUser-Agent: chaos-client\r\nConnection: close\r\n\r\n"
)
BIG_REQUEST = b"GET /big HTTP/1.1\r\nHost: 127.0.0.1\r\nUser-Agent: chaos-never-reading\r\n\r\n"
HALF_HEAD = b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nUser-Agent: chaos-half-head\r\nX-Wait: "

# /proc/net/tcp states in which the server still holds its side of a connection.
TCP_ESTABLISHED = 0x01
TCP_CLOSE_WAIT = 0x08
HELD_STATES = frozenset({TCP_ESTABLISHED, TCP_CLOSE_WAIT})

# ============================================================================ pure part
# Nothing in this section does I/O; test_chaos.py covers it with literals.


class Req(NamedTuple):
    """One well-behaved request: when it started and ended, and how."""

    client: int
    start: float  # time.monotonic() when it began (the connect, if one was needed)
    end: float  # when the answer (or the failure) came
    status: int | None  # HTTP status; None when no answer came
    error: str | None  # None: a correct answer (200 and a version=N pid=P body)
    version: int | None = None
    pid: int | None = None

    @property
    def ok(self) -> bool:
        return self.error is None

    @property
    def wait(self) -> float:
        return self.end - self.start


class Fault(NamedTuple):
    kind: str  # "kill" or "stop"
    t: float  # monotonic, just after the signal was sent
    pid: int
    gone: float = math.inf  # stop: when the stopped daemon was seen gone (inf: never)


_BODY_RE = re.compile(rb"^version=(\d+) pid=(\d+)\n?$")


def parse_body(body: bytes) -> tuple[int, int] | None:
    """``b"version=2 pid=42\\n"`` -> (2, 42); anything else -> None."""
    match = _BODY_RE.match(body)
    return (int(match[1]), int(match[2])) if match else None


def answer(client: int, start: float, end: float, status: int, body: bytes) -> Req:
    """The record of a request that got an HTTP answer."""
    if status != 200:
        return Req(client, start, end, status, f"HTTP {status}")
    parsed = parse_body(body)
    if parsed is None:
        return Req(client, start, end, status, "unexpected body")
    return Req(client, start, end, status, None, *parsed)


def excused_by(req: Req, faults: Sequence[Fault], kill_window: float = KILL_WINDOW_S) -> str | None:
    """``"kill"``/``"stop"`` when a failed request was in flight on a daemon that was killed.

    SIGKILL: a 502 answered within ``kill_window`` after the kill (the requests the server
    had handed to the daemon when it died, including any it handed over before it saw the
    death). SIGSTOP: a 502 or 504 answered after the stop, for a request started before
    the stopped daemon was gone (the server gives up on it and kills it, whenever that
    is). The SIGKILL rule is tried first: a 502 right after a kill is the kill's even while
    another daemon is stopped. Anything else, a timeout included, is not excused.
    """
    if req.ok or req.status is None:
        return None
    for fault in faults:
        if (
            fault.kind == "kill"
            and req.status == 502
            and fault.t <= req.end <= fault.t + kill_window
        ):
            return "kill"
    for fault in faults:
        if (
            fault.kind == "stop"
            and req.status in (502, 504)
            and req.end >= fault.t
            and req.start < fault.gone
        ):
            return "stop"
    return None


def percentile(values: Sequence[float], q: float) -> float | None:
    """Nearest-rank percentile (``q`` in 0..100); None for no values."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[min(rank, len(ordered)) - 1]


def until_served(reqs: Iterable[Req], t_end: float) -> tuple[float, bool]:
    """The longest time a client waited for a correct answer, retries included.

    Per client, from the start of the first failed attempt to the next correct answer
    (or a single request's wait when it did not fail). Returns (seconds, still_waiting):
    still_waiting when the longest one never got an answer before ``t_end``.
    """
    by_client: dict[int, list[Req]] = {}
    for req in reqs:
        by_client.setdefault(req.client, []).append(req)
    best, unserved = 0.0, False
    for requests in by_client.values():
        since: float | None = None
        for req in sorted(requests, key=lambda r: r.start):
            if req.ok:
                waited = req.end - (req.start if since is None else since)
                if waited > best:
                    best, unserved = waited, False
                since = None
            elif since is None:
                since = req.start
        if since is not None and t_end - since > best:
            best, unserved = t_end - since, True
    return best, unserved


@dataclass
class Stats:
    """The numbers of one phase (or of a whole run)."""

    sent: int = 0
    ok: int = 0
    lost: int = 0
    refused: int = 0  # lost with a 503
    in_flight_killed: int = 0  # failed, but in flight on a daemon that was killed
    in_flight_stopped: int = 0  # ... of which on a stopped daemon the server gave up on
    longest_wait_ms: float | None = None
    p99_ms: float | None = None
    slow: int = 0  # requests (any outcome) that waited SLOW_S or more
    loss_kinds: dict[str, int] = field(default_factory=dict)


def stats(reqs: Sequence[Req], faults: Sequence[Fault]) -> Stats:
    """Sent, OK, lost (by kind), excused and latency figures of ``reqs``."""
    out = Stats(sent=len(reqs))
    kinds: Counter[str] = Counter()
    for req in reqs:
        if req.ok:
            out.ok += 1
            continue
        why = excused_by(req, faults)
        if why is not None:
            out.in_flight_killed += 1
            out.in_flight_stopped += why == "stop"
            continue
        out.lost += 1
        out.refused += req.status == 503
        kinds[req.error or "?"] += 1
    out.loss_kinds = dict(kinds.most_common())
    waits = [req.wait * 1000 for req in reqs]
    out.longest_wait_ms = max(waits, default=None)
    out.p99_ms = percentile(waits, 99)
    out.slow = sum(1 for w in waits if w >= SLOW_S * 1000)
    return out


class Action(NamedTuple):
    """One scheduled chaos action, ``at`` seconds after the load started."""

    at: float
    kind: str  # kill, stop, flood, replace
    arg: int = 0  # replace: the script's new VERSION; flood: % of the worker threads


def action_label(action: Action) -> str:
    """The name of the phase an action starts."""
    if action.kind == "replace":
        return f"replace script (v{action.arg})"
    if action.kind == "flood":
        return f"flood, {action.arg}% of workers never-reading"
    return f"{action.kind} daemon"


@dataclass(frozen=True)
class Timeline:
    steady_s: float  # load only, before the first action
    gap_s: float  # between actions
    settle_s: float  # load only, after the last action's phase
    duration_s: float


def timeline(duration: float, n_actions: int) -> Timeline:
    """How ``duration`` seconds are shared: steady, ``n_actions`` gaps, settle."""
    steady = min(5.0, max(2.0, duration * 0.1))
    settle = min(8.0, max(3.0, duration * 0.15))
    gap = (duration - steady - settle) / n_actions if n_actions else 0.0
    return Timeline(steady, gap, settle, duration)


def min_duration(n_actions: int) -> int:
    """The shortest whole ``--duration`` that gives every action ``MIN_GAP_S``."""
    return next(d for d in range(1, 601) if timeline(d, n_actions).gap_s >= MIN_GAP_S)


def actions_for(mode: str) -> tuple[tuple[str, int], ...]:
    return DAEMON_ACTIONS if mode == "daemon" else EMBEDDED_ACTIONS


def build_schedule(mode: str, duration: float, seed: int) -> list[Action]:
    """The actions of one run, each jittered by up to 20 % of a gap (seeded)."""
    plan = actions_for(mode)
    line = timeline(duration, len(plan))
    rng = random.Random(f"schedule-{seed}")
    out, version = [], 1
    for i, (kind, arg) in enumerate(plan):
        at = line.steady_s + i * line.gap_s + rng.uniform(0.0, 0.2 * line.gap_s)
        if kind == "replace":
            version += 1
            arg = version
        out.append(Action(round(at, 3), kind, arg))
    return out


def never_reading_for(action: Action, workers: int, fixed: int | None, slots: int) -> int:
    """A flood's never-reading connections: ``fixed`` (--never-reading) or the action's
    share of the app's ``workers`` (rounded up), never more than the ``slots`` it fills."""
    wanted = fixed if fixed is not None else math.ceil(workers * action.arg / 100)
    return max(0, min(wanted, slots))


class Phase(NamedTuple):
    name: str
    start: float  # monotonic
    end: float


def phases(t_start: float, marks: Sequence[tuple[float, str]], t_end: float) -> list[Phase]:
    """``steady`` until the first mark, each mark (time, name) until the next, to ``t_end``."""
    out = []
    names = ["steady", *(name for _, name in marks)]
    starts = [t_start, *(t for t, _ in marks)]
    for i, (name, start) in enumerate(zip(names, starts, strict=True)):
        end = starts[i + 1] if i + 1 < len(starts) else t_end
        out.append(Phase(name, start, end))
    return out


def in_phase(reqs: Iterable[Req], phase: Phase, last: bool = False) -> list[Req]:
    """The requests started in ``phase`` (the last phase also takes its end)."""
    return [
        r for r in reqs if phase.start <= r.start < phase.end or (last and r.start == phase.end)
    ]


def first_new_code(reqs: Iterable[Req], t_change: float, version: int) -> float | None:
    """Seconds from ``t_change`` to the first correct answer of ``version`` or newer."""
    first = min(
        (r.end for r in reqs if r.ok and (r.version or 0) >= version and r.end >= t_change),
        default=None,
    )
    return None if first is None else first - t_change


def bump_version(text: str, version: int) -> str:
    """The script with its ``VERSION = N`` line set to ``version``."""
    new, count = re.subn(r"^VERSION = \d+$", f"VERSION = {version}", text, count=1, flags=re.M)
    if count != 1:
        raise ValueError("the script has no line VERSION = N")
    return new


def set_option(argv: Sequence[str], name: str, value: str) -> list[str]:
    """``argv`` with option ``name`` set to ``value``: replaced where given, else added."""
    out = list(argv)
    if name in out[:-1]:
        out[out.index(name) + 1] = value
    else:
        out += [name, value]
    return out


# ---------------------------------------------------------------------- /proc parsing


def parse_vmrss_kib(status_text: str) -> int | None:
    """``VmRSS:`` of a /proc/PID/status text, in KiB; None if absent."""
    for line in status_text.splitlines():
        if line.startswith("VmRSS:"):
            parts = line.split()
            if len(parts) >= 2 and parts[1].isdigit():
                return int(parts[1])
    return None


def parse_children(texts: Iterable[str]) -> list[int]:
    """The pids of /proc/PID/task/*/children contents, sorted and without repeats."""
    return sorted({int(tok) for text in texts for tok in text.split() if tok.isdigit()})


def is_daemon_title(cmdline: bytes) -> bool:
    """Is this /proc/PID/cmdline a daemon process of asyncwsgi?"""
    return cmdline.replace(b"\0", b" ").strip().decode(errors="replace").startswith(DAEMON_TITLE)


def parse_stat_state(stat_text: str) -> str:
    """The state letter of a /proc/PID/stat text (``R``, ``S``, ``T`` stopped, ``Z``)."""
    _, sep, tail = stat_text.rpartition(")")
    parts = tail.split()
    return parts[0] if sep and parts else "?"


def parse_proc_net_tcp(text: str) -> list[tuple[int, int, int]]:
    """(local port, remote port, state) of each socket in a /proc/net/tcp text."""
    out = []
    for line in text.splitlines()[1:]:
        parts = line.split()
        if len(parts) < 4:
            continue
        try:
            local = int(parts[1].rpartition(":")[2], 16)
            remote = int(parts[2].rpartition(":")[2], 16)
            state = int(parts[3], 16)
        except ValueError:
            continue
        out.append((local, remote, state))
    return out


def held_by_server(
    sockets: Iterable[tuple[int, int, int]], server_port: int, client_ports: Iterable[int]
) -> int:
    """How many of ``client_ports`` the server (on ``server_port``) still holds open."""
    wanted = set(client_ports)
    return sum(
        1
        for local, remote, state in sockets
        if local == server_port and remote in wanted and state in HELD_STATES
    )


class DaemonSample(NamedTuple):
    t: float
    daemons: tuple[tuple[int, str], ...]  # (pid, state letter), zombies left out
    server_rss_kib: int | None
    daemons_rss_kib: int | None


def first_new_daemon(
    samples: Iterable[DaemonSample], after: float, known: set[int]
) -> float | None:
    """When a daemon pid not in ``known`` was first seen at or after ``after``."""
    for s in samples:
        if s.t >= after and any(pid not in known for pid, _ in s.daemons):
            return s.t
    return None


def gone_at(samples: Iterable[DaemonSample], after: float, pid: int) -> float | None:
    """When ``pid`` was first no longer among the daemons (at or after ``after``)."""
    for s in samples:
        if s.t >= after and all(p != pid for p, _ in s.daemons):
            return s.t
    return None


def all_pids(samples: Iterable[DaemonSample]) -> set[int]:
    return {pid for s in samples for pid, _ in s.daemons}


def held_until(samples: Sequence[tuple[float, int]], start: float) -> float | None:
    """Seconds from ``start`` to the first sample with nothing held; None if never."""
    for t, held in samples:
        if held == 0:
            return t - start
    return None


def enrich(
    record: dict[str, Any],
    reqs: Sequence[Req],
    samples: Sequence[DaemonSample],
    phase_end: float,
    run_end: float,
) -> None:
    """Add to an action's record what it caused (times in seconds from the action).

    kill: when a new daemon appeared; stop: that, when the stopped daemon was gone, and
    the requests stuck on it: those started from ``STUCK_S`` before the stop until it was
    gone (or until ``run_end``) that waited ``STUCK_S`` or more and failed with anything but
    a 503 (a stopped daemon answers nothing, so these ended with the server's 502/504 or
    the client's timeout); replace: when the new code first answered; flood: how many
    well-behaved requests got 503 during its phase, and when the last one did.
    """
    t = record["t"]
    if record.get("error"):
        return
    kind = record["kind"]
    if kind in ("kill", "stop"):
        seen = first_new_daemon(samples, t, set(record["known"]))
        record["new_daemon_s"] = None if seen is None else seen - t
    if kind == "stop":
        gone = gone_at(samples, t, record["pid"])
        record["gone_s"] = None if gone is None else gone - t
        until = run_end if gone is None else gone
        stuck = [
            r
            for r in reqs
            if t - STUCK_S <= r.start < until
            and r.end >= t
            and r.wait >= STUCK_S
            and not r.ok
            and r.status != 503
        ]
        record["stuck"] = len(stuck)
        if stuck:
            record["stuck_from_s"] = min(r.start for r in stuck) - t
            record["stuck_to_s"] = max(r.start for r in stuck) - t
            record["stuck_longest_s"] = max(r.wait for r in stuck)
            record["stuck_outcomes"] = dict(Counter(r.error or "OK" for r in stuck).most_common())
    elif kind == "replace":
        record["new_code_s"] = first_new_code(reqs, t, record["version"])
    elif kind == "flood":
        refused = [r for r in reqs if r.status == 503 and t <= r.start < phase_end]
        record["refused"] = len(refused)
        record["refused_until_s"] = max((r.end for r in refused), default=t) - t


def faults_of(records: Iterable[dict[str, Any]]) -> list[Fault]:
    """The kills and stops among the (enriched) action records."""
    out = []
    for r in records:
        if r["kind"] in ("kill", "stop") and not r.get("error"):
            gone = r.get("gone_s")
            until = math.inf if gone is None else r["t"] + gone
            out.append(Fault(r["kind"], r["t"], r["pid"], until))
    return out


_LOG_PREFIX_RE = re.compile(r"^(\[[^\]]*\]\s*)+")
_LOG_LEVEL_RE = re.compile(r"\[(WARNING|ERROR|CRITICAL)\]")


def log_digest(text: str, limit: int = LOG_LINES_SHOWN) -> list[str]:
    """The server log's warnings, errors and daemon events, alike lines counted once.

    Lines that differ only in numbers (pids, ports, timings) are one entry, shown with the
    first of them and ``(xN)``; at most ``limit`` entries, in order of first appearance.
    """
    seen: dict[str, list[Any]] = {}
    for raw in text.splitlines():
        if not (_LOG_LEVEL_RE.search(raw) or "daemon" in raw or "process" in raw):
            continue
        line = _LOG_PREFIX_RE.sub("", raw).strip()
        level = _LOG_LEVEL_RE.search(raw)
        if level:
            line = f"{level[1]}: {line}"
        key = re.sub(r"\d+(\.\d+)?", "N", line)
        if key in seen:
            seen[key][1] += 1
        else:
            seen[key] = [line, 1]
    out = [line if n == 1 else f"{line} (x{n})" for line, n in seen.values()]
    if len(out) > limit:
        out = [*out[:limit], f"... {len(out) - limit} more kinds of line"]
    return out


def _ms(value: float | None) -> str:
    if value is None:
        return "—"
    return f"{value:,.1f}" if value < 100 else f"{value:,.0f}"


def _mib(kib: int | None) -> str:
    return "—" if kib is None else f"{kib / 1024:,.1f}"


def _s(value: float | None) -> str:
    return "never" if value is None else f"{value:.2f} s"


def describe_action(a: dict[str, Any]) -> str:
    """One line on what an action did and what it caused (from its JSON record)."""
    kind = str(a["kind"])
    if a.get("error"):
        return f"{kind}: {a['error']}"
    if kind == "kill":
        return f"SIGKILL daemon {a['pid']}; a new daemon after {_s(a.get('new_daemon_s'))}"
    if kind == "stop":
        taken = a.get("gone_s")
        fate = (
            f"the server killed it after {taken:.2f} s"
            if taken is not None
            else "still there at the end (SIGCONT + SIGKILL by this benchmark)"
        )
        text = f"SIGSTOP daemon {a['pid']}; a new daemon after {_s(a.get('new_daemon_s'))}; {fate}"
        stuck = a.get("stuck", 0)
        if stuck:
            outcomes = ", ".join(f"{k} x{v}" for k, v in a["stuck_outcomes"].items())
            text += (
                f"; {stuck} request(s) stuck on it (started "
                f"{a['stuck_from_s']:+.2f} to {a['stuck_to_s']:+.2f} s from the SIGSTOP, "
                f"longest {a['stuck_longest_s']:.2f} s; {outcomes})"
            )
        return text
    if kind == "replace":
        return f"script v{a['version']}; new code answered after {_s(a.get('new_code_s'))}"
    if kind == "flood":
        parts = [
            f"{a['opened']} bad connections ({a['never_reading']} never-reading /big, "
            f"{a['half_head']} half-head); {a.get('refused_at_open', 0)} of them refused (503) "
            "and opened again until the table was full"
        ]
        if a.get("refused"):
            parts.append(
                f"well-behaved requests refused (503): {a['refused']}, the last "
                f"{a['refused_until_s']:.1f} s after the flood began"
            )
        for label, key in (("half-head", "half_head"), ("never-reading", "never_reading")):
            t = a.get(f"{key}_dropped_s")
            held = a.get(f"{key}_held_at_end", 0)
            if t is not None:
                parts.append(f"server dropped all {label} after {t:.1f} s")
            elif a.get(key):
                parts.append(f"server still held {held} {label} after {a['held_s']:.1f} s")
        if a.get("connect_failures"):
            parts.append(f"{a['connect_failures']} could not connect")
        if a.get("answers_seen"):
            seen = ", ".join(f"{k} x{v}" for k, v in a["answers_seen"].items())
            parts.append(f"answers they had got when closed: {seen}")
        return "; ".join(parts)
    return kind


def _until_cell(s: dict[str, Any]) -> str:
    text = _ms(s.get("until_served_ms"))
    return f"≥ {text} (never served)" if s.get("until_served_open") else text


def _daemon_counts(r: dict[str, Any]) -> str:
    if r["mode"] != "daemon":
        return "—"
    return f"{r['killed']} / {r['stopped']} / {r['replaced']}"


def render_markdown(runs: Sequence[dict[str, Any]], meta: dict[str, Any]) -> str:
    """The report: a summary row per run, then per run a table of its phases and notes."""
    lines = [
        f"## Chaos — {meta['date']}",
        "",
        f"Machine: {meta['machine']}. Load: {meta['clients']} well-behaved keep-alive "
        f"clients and {meta['newcomers']} that open a new connection for every request, "
        f"{meta['rate_text']}, {CLIENT_TIMEOUT_S:g} s timeout. Connection limit "
        f"{meta['max_connections']}, {meta['duration_s']:g} s per run, seed {meta['seed']}.",
        "",
        "| run | sent | OK | lost | of which 503 | in flight on a killed daemon "
        "| longest wait (ms) | longest until served (ms) | p99 (ms) "
        "| server RSS before → after (MiB) | daemons' RSS before → after (MiB) "
        "| daemons killed / stopped / replaced |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for r in runs:
        s = r.get("total")
        if s is None:
            lines.append(f"| {r['name']} | not run | | | | | | | | | | |")
            continue
        lines.append(
            f"| {r['name']} | {s['sent']:,} | {s['ok']:,} | {s['lost']:,} | {s['refused']:,} "
            f"| {s['in_flight_killed']:,} | {_ms(s['longest_wait_ms'])} | {_until_cell(s)} "
            f"| {_ms(s['p99_ms'])} "
            f"| {_mib(r['memory']['server_before_kib'])} → {_mib(r['memory']['server_after_kib'])} "
            f"| {_mib(r['memory']['daemons_before_kib'])} → "
            f"{_mib(r['memory']['daemons_after_kib'])} | {_daemon_counts(r)} |"
        )
    for r in runs:
        lines += ["", f"### {r['name']}", ""]
        if r.get("argv"):
            lines += [f"`{' '.join(r['argv'])}`", ""]
        if r.get("total") is None:
            lines.append(f"Not run: {r.get('error')}")
            lines += [f"    {line}" for line in r.get("log_digest", [])]
            continue
        lines += [
            "| phase | from (s) | sent | OK | lost | of which 503 "
            "| in flight on a killed daemon | longest wait (ms) | p99 (ms) | what happened |",
            "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |",
        ]
        for p in r["phases"]:
            s = p["stats"]
            lines.append(
                f"| {p['name']} | {p['from_s']:.1f} | {s['sent']:,} | {s['ok']:,} | {s['lost']:,} "
                f"| {s['refused']:,} | {s['in_flight_killed']:,} | {_ms(s['longest_wait_ms'])} "
                f"| {_ms(s['p99_ms'])} | {p.get('what', '')} |"
            )
        notes = []
        for p in r["phases"]:
            s = p["stats"]
            if s.get("slow"):
                notes.append(f"- {p['name']}: {s['slow']:,} request(s) waited {SLOW_S:g} s or more")
            if s["loss_kinds"]:
                kinds = ", ".join(f"{k}: {v:,}" for k, v in s["loss_kinds"].items())
                notes.append(f"- {p['name']}: lost {kinds}")
            if s["in_flight_stopped"]:
                notes.append(
                    f"- {p['name']}: {s['in_flight_stopped']} of the requests in flight on a "
                    "killed daemon were on the stopped one (502/504 when the server gave up on it)"
                )
        if r.get("error"):
            notes.append(f"- the run ended early: {r['error']}")
        if not r.get("server_alive_at_end", True):
            notes.append("- the server had exited by the end of the load")
        if r.get("errors_during_run"):
            notes += [f"- {e}" for e in r["errors_during_run"]]
        mem = r["memory"]
        notes.append(
            f"- peak RSS during the run: server {_mib(mem.get('server_peak_kib'))} MiB"
            + (
                f", daemons together {_mib(mem.get('daemons_peak_kib'))} MiB"
                if r["mode"] == "daemon"
                else ""
            )
            + f"; server's open files (the clients' connections included) before → after: "
            f"{mem.get('fds_before', '?')} → {mem.get('fds_after', '?')}"
        )
        notes.append(
            f"- processes once serving: {r.get('processes', '?')}; client CPU "
            f"{r.get('client_cpu_pct', 0):.0f}% of one core; other processes "
            f"{r.get('foreign_cpu_cores', 0):.2f} cores"
        )
        lines += ["", *notes]
        if r.get("log_digest"):
            lines += ["", "Server log (warnings, errors, daemon events; alike lines once):", ""]
            lines += [f"    {line}" for line in r["log_digest"]]
    lines += [
        "",
        "Lost: requests without a correct answer (200 with a `version=N pid=P` body): "
        f"refusals (503), other statuses, timeouts ({CLIENT_TIMEOUT_S:g} s), connection "
        "errors; not counted as lost: requests in flight on a killed daemon (a 502 within "
        f"{KILL_WINDOW_S:g} s after a SIGKILL; a 502/504 after a SIGSTOP for a request started "
        "before the server got rid of the stopped daemon). Stuck on a stopped daemon: "
        f"requests that waited {STUCK_S:g} s or more and failed (not with 503), started "
        "from just before the SIGSTOP until the daemon was gone. Longest wait: the longest "
        "single request, from its start (connect included) to its answer or failure; "
        "longest until served: the longest a client "
        "waited for a correct answer, retries included; p99 over the requests sent. A "
        "client waiting for an answer sends nothing meanwhile, so a stall of every client "
        "adds only one slow request per client: it shows in the longest wait, in fewer "
        "requests sent and in the count of requests that waited 1 s or more, more than in "
        "the p99. Phases "
        "start at an action and hold the requests started before the next one; times from "
        "the start of the load. RSS before: at the end of the steady phase; after: at the "
        "end of the settle phase, load still on. Replaced: daemon pids that appeared "
        "during the run.",
    ]
    return "\n".join(lines) + "\n"


# ============================================================================ /proc reads


def _read(path: str) -> str | None:
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            return f.read()
    except OSError:
        return None


def rss_kib(pid: int) -> int | None:
    text = _read(f"/proc/{pid}/status")
    return None if text is None else parse_vmrss_kib(text)


def open_files(pid: int) -> int | None:
    try:
        return len(os.listdir(f"/proc/{pid}/fd"))
    except OSError:
        return None


def daemons_of(server_pid: int) -> list[tuple[int, str]]:
    """(pid, state) of the server's living daemon processes."""
    try:
        tasks = os.listdir(f"/proc/{server_pid}/task")
    except OSError:
        return []
    texts = (_read(f"/proc/{server_pid}/task/{t}/children") or "" for t in tasks)
    out = []
    for pid in parse_children(texts):
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                cmdline = f.read()
        except OSError:
            continue
        state = parse_stat_state(_read(f"/proc/{pid}/stat") or "")
        if is_daemon_title(cmdline) and state not in ("Z", "X", "?"):
            out.append((pid, state))
    return out


def is_ours(pid: int, server_pgid: int) -> bool:
    """Is ``pid`` still a daemon of the server's process group (not a reused pid)?"""
    stat = _read(f"/proc/{pid}/stat")
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            cmdline = f.read()
    except OSError:
        return False
    if stat is None:
        return False
    rest = stat.rpartition(")")[2].split()
    return len(rest) > 2 and rest[2] == str(server_pgid) and is_daemon_title(cmdline)


def tcp_sockets() -> list[tuple[int, int, int]]:
    return parse_proc_net_tcp(_read("/proc/net/tcp") or "")


# ============================================================================ the load


class Load:
    """Well-behaved clients on asyncio; every request they make ends up in ``reqs``.

    Clients ``0 .. keep_alive-1`` keep one connection open (a new one only after a failure
    or when the server closes it); the ``newcomers`` after them open a new connection for
    every request (``Connection: close``), so they find out whether the server takes new
    connections. All are paced together to ``rate`` requests/s (0: no pacing).
    """

    def __init__(self, port: int, keep_alive: int, newcomers: int, rate: float) -> None:
        self.port = port
        self.keep_alive = keep_alive
        self.clients = keep_alive + newcomers
        self.interval = self.clients / rate if rate > 0 else 0.0
        self.reqs: list[Req] = []
        self.stopping = False

    def stopped(self) -> bool:
        return self.stopping

    async def _exchange(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, close: bool
    ) -> tuple[int, bytes, bool]:
        writer.write(REQUEST_CLOSE if close else REQUEST)
        buf = bytearray()
        while True:
            data = await reader.read(65536)
            if not data:
                raise ConnectionError("connection closed")
            buf += data
            parsed = parse_response(buf)
            if parsed is not None:
                return parsed.status, parsed.body, parsed.close

    async def client(self, cid: int, t0: float, rng: random.Random) -> None:
        newcomer = cid >= self.keep_alive
        reader: asyncio.StreamReader | None = None
        writer: asyncio.StreamWriter | None = None
        next_at = t0 + rng.uniform(0, self.interval)
        while not self.stopping:
            now = time.monotonic()
            if next_at > now:
                await asyncio.sleep(next_at - now)
                if self.stopped():  # run() may have said so meanwhile
                    break
            next_at = max(next_at + self.interval, time.monotonic() - self.interval)
            start = time.monotonic()
            try:
                if writer is None:
                    try:
                        reader, writer = await asyncio.wait_for(
                            asyncio.open_connection(HOST, self.port), CLIENT_TIMEOUT_S
                        )
                    except asyncio.TimeoutError:
                        raise ConnectionError("connect: timeout") from None
                    except OSError as exc:
                        raise ConnectionError(f"connect: {_errname(exc)}") from None
                assert reader is not None and writer is not None
                left = CLIENT_TIMEOUT_S - (time.monotonic() - start)
                status, body, close = await asyncio.wait_for(
                    self._exchange(reader, writer, newcomer), max(left, 0.001)
                )
            except (asyncio.TimeoutError, ConnectionError, OSError, ValueError) as exc:
                self.reqs.append(Req(cid, start, time.monotonic(), None, _failure_label(exc)))
                if writer is not None:
                    writer.transport.abort()
                reader = writer = None
                await asyncio.sleep(RETRY_DELAY_S)
                continue
            self.reqs.append(answer(cid, start, time.monotonic(), status, body))
            if close or newcomer:
                writer.close()
                reader = writer = None
        if writer is not None:
            writer.transport.abort()

    async def run(self, t0: float, t_end: float, seed: int) -> None:
        rng = random.Random(f"clients-{seed}")
        tasks = [asyncio.create_task(self.client(cid, t0, rng)) for cid in range(self.clients)]
        await asyncio.sleep(max(0.0, t_end - time.monotonic()))
        self.stopping = True
        # Requests in flight finish (or time out) on their own.
        _, pending = await asyncio.wait(tasks, timeout=CLIENT_TIMEOUT_S + 2.0)
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)


def _failure_label(exc: BaseException) -> str:
    if isinstance(exc, asyncio.TimeoutError):
        return "timeout"
    if type(exc) is ConnectionError:  # raised by Load itself: a failed connect, or EOF
        return str(exc)
    if isinstance(exc, ValueError):
        return f"bad response: {exc}"
    return f"connection lost: {_errname(exc)}"


# ============================================================================ the chaos


@dataclass
class FloodConn:
    kind: str  # "never_reading" or "half_head"
    sock: socket.socket
    port: int  # our side's port


class Chaos(threading.Thread):
    """Runs the schedule and samples the server's processes, in a thread of its own."""

    def __init__(
        self,
        server_pid: int,
        port: int,
        script: Path,
        schedule: Sequence[Action],
        line: Timeline,
        seed: int,
        workers: int,
        never_reading: int | None,
        flood_slots: int,
    ) -> None:
        super().__init__(name="chaos", daemon=True)
        self.server_pid = server_pid
        self.port = port
        self.script = script
        self.schedule = list(schedule)
        self.line = line
        self.rng = random.Random(f"victims-{seed}")
        self.workers = workers  # the app's worker threads in all
        self.never_reading = never_reading  # --never-reading, else a share of the workers
        self.flood_slots = flood_slots  # connections a flood opens and holds
        self.t0 = 0.0
        self.halt = threading.Event()
        self.samples: list[DaemonSample] = []
        self.marks: list[tuple[float, str]] = []  # (monotonic, phase name)
        self.records: list[dict[str, Any]] = []  # one per action, JSON-ready
        self.stopped: list[int] = []  # pids this benchmark SIGSTOPped
        self.flood: list[FloodConn] = []
        self.flood_record: dict[str, Any] | None = None
        self.flood_samples: list[tuple[float, int, int]] = []  # (t, never-reading, half-head)
        self.memory: dict[str, Any] = {}
        self.errors: list[str] = []
        self.t_end = 0.0

    # -- sampling

    def sample(self) -> DaemonSample:
        daemons = daemons_of(self.server_pid)
        rss = [rss_kib(pid) for pid, _ in daemons]
        known = [v for v in rss if v is not None]
        s = DaemonSample(
            time.monotonic(),
            tuple(daemons),
            rss_kib(self.server_pid),
            sum(known) if known else None,
        )
        self.samples.append(s)
        if self.flood:
            socks = tcp_sockets()
            counts = [
                held_by_server(socks, self.port, (c.port for c in self.flood if c.kind == kind))
                for kind in ("never_reading", "half_head")
            ]
            self.flood_samples.append((s.t, counts[0], counts[1]))
        return s

    def wait_until(self, t: float) -> None:
        while not self.halt.is_set():
            now = time.monotonic()
            if now >= t:
                return
            self.halt.wait(min(MONITOR_S, t - now))
            self.sample()

    def run(self) -> None:
        try:
            for action in self.schedule:
                self.wait_until(self.t0 + action.at)
                if self.halt.is_set():
                    return
                if not self.records:
                    self.memory_sample("before")
                self.end_flood()
                self.perform(action)
            self.wait_until(self.t0 + self.line.duration_s - self.line.settle_s)
            self.end_flood()
            self.marks.append((time.monotonic(), "settle"))
            self.wait_until(self.t0 + self.line.duration_s)
            self.memory_sample("after")
        except Exception as exc:  # reported, never left to kill the thread silently
            self.errors.append(f"chaos thread: {type(exc).__name__}: {exc}")

    def memory_sample(self, when: str) -> None:
        s = self.sample()
        self.memory[f"server_{when}_kib"] = s.server_rss_kib
        self.memory[f"daemons_{when}_kib"] = s.daemons_rss_kib
        self.memory[f"fds_{when}"] = open_files(self.server_pid)

    # -- actions

    def perform(self, action: Action) -> None:
        label = action_label(action)
        record: dict[str, Any] = {"kind": action.kind, "phase": label}
        try:
            if action.kind in ("kill", "stop"):
                self.signal_daemon(action.kind, record)
            elif action.kind == "replace":
                self.replace(action.arg, record)
            elif action.kind == "flood":
                self.start_flood(action, record)
        except Exception as exc:
            record["error"] = f"{type(exc).__name__}: {exc}"
        record.setdefault("t", time.monotonic())
        self.marks.append((record["t"], label))
        self.records.append(record)
        log(f"    {record['t'] - self.t0:5.1f} s  {label}")

    def signal_daemon(self, kind: str, record: dict[str, Any]) -> None:
        candidates = sorted(
            pid for pid, _ in daemons_of(self.server_pid) if pid not in self.stopped
        )
        if not candidates:
            record["error"] = "no running daemon to signal"
            return
        pid = self.rng.choice(candidates)
        record["pid"] = pid
        record["known"] = sorted(all_pids(self.samples) | set(candidates))
        os.kill(pid, signal.SIGKILL if kind == "kill" else signal.SIGSTOP)
        record["t"] = time.monotonic()
        if kind == "stop":
            self.stopped.append(pid)

    def replace(self, version: int, record: dict[str, Any]) -> None:
        old = self.script.stat()
        text = bump_version(self.script.read_text(), version)
        tmp = self.script.with_name(self.script.name + ".new")
        tmp.write_text(text)
        tmp.chmod(0o644)
        record["t"] = time.monotonic()
        os.replace(tmp, self.script)
        mtime = max(time.time_ns(), old.st_mtime_ns + 1_000_000_000)
        os.utime(self.script, ns=(mtime, mtime))
        record["version"] = version

    def open_bad(self, kind: str) -> FloodConn | None:
        """One bad connection: ``/big`` never read, or half a request head."""
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            if kind == "never_reading":
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, FLOOD_RCVBUF)
            sock.settimeout(FLOOD_CONNECT_TIMEOUT_S)
            sock.connect((HOST, self.port))
            sock.sendall(BIG_REQUEST if kind == "never_reading" else HALF_HEAD)
            sock.setblocking(False)
        except OSError:
            sock.close()
            return None
        return FloodConn(kind, sock, sock.getsockname()[1])

    def start_flood(self, action: Action, record: dict[str, Any]) -> None:
        """Fill the connection table: never-reading first (they take worker threads), then
        half-head; those the server refuses (503, at once) are opened again, for up to
        ``TOPUP_S``, so that the table is full when the well-behaved newcomers come."""
        record["t"] = time.monotonic()
        never = never_reading_for(action, self.workers, self.never_reading, self.flood_slots)
        failures = refused = 0
        for kind, count in (("never_reading", never), ("half_head", self.flood_slots - never)):
            for _ in range(count):
                conn = self.open_bad(kind)
                if conn is None:
                    failures += 1
                else:
                    self.flood.append(conn)
        self.flood_samples = []
        self.flood_record = record
        deadline = time.monotonic() + TOPUP_S
        while time.monotonic() < deadline:
            time.sleep(0.1)
            turned_away = [c for c in self.flood if peek_label(c.sock) in REFUSED_LABELS]
            if not turned_away:
                break
            refused += len(turned_away)
            for conn in turned_away:
                with contextlib.suppress(OSError):
                    conn.sock.close()
                self.flood.remove(conn)
                again = self.open_bad(conn.kind)
                if again is None:
                    failures += 1
                else:
                    self.flood.append(again)
        record.update(
            opened=len(self.flood),
            never_reading=sum(c.kind == "never_reading" for c in self.flood),
            half_head=sum(c.kind == "half_head" for c in self.flood),
            refused_at_open=refused,
            connect_failures=failures,
            filled_s=time.monotonic() - record["t"],
        )

    def end_flood(self) -> None:
        """Close the flood's sockets, noting what the server did with them."""
        if not self.flood:
            return
        record = self.flood_record or {}
        self.sample()
        start = record.get("t", self.t0)
        record["held_s"] = time.monotonic() - start
        for i, key in enumerate(("never_reading", "half_head"), start=1):
            series = [(t, held[i - 1]) for t, *held in self.flood_samples]
            record[f"{key}_dropped_s"] = held_until(series, start) if record.get(key) else None
            record[f"{key}_held_at_end"] = series[-1][1] if series else None
        answers = Counter(peek_label(c.sock) for c in self.flood)
        record["answers_seen"] = dict(answers.most_common())
        self.close_flood()

    def close_flood(self) -> None:
        for conn in self.flood:
            with contextlib.suppress(OSError):
                conn.sock.close()
        self.flood = []

    def cleanup(self) -> list[int]:
        """Close the flood; SIGCONT + SIGKILL the daemons we stopped that are still there."""
        self.halt.set()
        self.close_flood()
        left = []
        for pid in self.stopped:
            if is_ours(pid, self.server_pid):
                left.append(pid)
                for sig in (signal.SIGCONT, signal.SIGKILL):
                    with contextlib.suppress(ProcessLookupError, PermissionError):
                        os.kill(pid, sig)
        return left


def peek_label(sock: socket.socket) -> str:
    """What the server sent on ``sock``, peeked, so a never-reading socket stays unread:
    its status line's start (``HTTP/1.1 408``), ``closed``, ``nothing`` or ``error ...``."""
    try:
        data = sock.recv(12, socket.MSG_PEEK | socket.MSG_DONTWAIT)
    except BlockingIOError:
        return "nothing"
    except OSError as exc:
        return f"error {_errname(exc)}"
    return data.decode(errors="replace") if data else "closed"


# ============================================================================ one run


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def server_argv(script: Path, port: int, mode: str, args: argparse.Namespace) -> list[str]:
    """``asyncwsgi_cmd.argv`` for the mode, with our threads, processes and limits."""
    extra = ("--max-connections", str(args.max_connections), *SERVER_LIMITS)
    argv = asyncwsgi_cmd.argv(script, HOST, port, mode, extra=extra)
    argv = set_option(argv, "--threads", str(args.threads))
    if mode == "daemon":
        argv = set_option(argv, "--processes", str(args.processes))
    return argv


def run_name(mode: str, args: argparse.Namespace) -> str:
    if mode == "daemon":
        return f"daemon {args.processes}x{args.threads}"
    return f"embedded x{args.threads}"


def worker_threads(mode: str, args: argparse.Namespace) -> int:
    """The app's worker threads in all: the daemons' in daemon mode, else the server's."""
    return int(args.threads) * (int(args.processes) if mode == "daemon" else 1)


def write_app(folder: Path) -> Path:
    script = folder / SCRIPT_NAME
    script.write_text(bump_version(APP_TEMPLATE.read_text(), 1))
    script.chmod(0o644)
    return script


def analyse(
    load: Load, chaos: Chaos, t0: float, t_end: float
) -> tuple[list[dict[str, Any]], list[Fault], Stats, tuple[float, bool]]:
    """The per-phase rows, the faults and the totals, from the requests and the records."""
    plist = phases(t0, sorted(chaos.marks), t_end)
    records = {r["t"]: r for r in chaos.records}
    for phase in plist:
        record = records.get(phase.start)
        if record is not None:
            enrich(record, load.reqs, chaos.samples, phase.end, t_end)
    faults = faults_of(chaos.records)
    out = []
    for i, phase in enumerate(plist):
        reqs = in_phase(load.reqs, phase, last=i == len(plist) - 1)
        row: dict[str, Any] = {
            "name": phase.name,
            "from_s": phase.start - t0,
            "to_s": phase.end - t0,
            "stats": asdict(stats(reqs, faults)),
        }
        record = records.get(phase.start)
        if record is not None:
            row["what"] = describe_action(record)
        else:  # steady, settle
            row["what"] = "load only"
        out.append(row)
    return out, faults, stats(load.reqs, faults), until_served(load.reqs, t_end)


def run_load(load: Load, t0: float, t_end: float, seed: int) -> None:
    """Run the load on an event loop of its own; on Ctrl-C its tasks are cancelled first."""
    loop = _new_event_loop()
    try:
        loop.run_until_complete(load.run(t0, t_end, seed))
    finally:
        pending = asyncio.all_tasks(loop)
        for task in pending:
            task.cancel()
        with contextlib.suppress(BaseException):
            loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
        loop.close()


def run_one(mode: str, args: argparse.Namespace) -> dict[str, Any]:
    name = run_name(mode, args)
    result: dict[str, Any] = {"name": name, "mode": mode}
    folder = Path(tempfile.mkdtemp(prefix="chaos-"))
    folder.chmod(0o755)
    script = write_app(folder)
    port = free_port()
    argv = server_argv(script, port, mode, args)
    result["argv"] = [
        "python" if i == 0 else (SCRIPT_NAME if a == str(script) else a) for i, a in enumerate(argv)
    ]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    server: ServerProcess | None = None
    chaos: Chaos | None = None
    log(f"--- {name}: {' '.join(result['argv'])}")
    try:
        server = ServerProcess(argv, folder, env, folder / "server.log")
        status, body = wait_until_serving(server, port, STARTUP_TIMEOUT_S)
        if status != 200 or parse_body(body) is None:
            raise RuntimeError(f"unexpected first answer: {status} {body[:80]!r}")
        wanted = 1 + args.processes if mode == "daemon" else 1
        found = cpustat.wait_for_processes(server.proc.pid, wanted, PROCESS_WAIT_S)
        result["processes"] = cpustat.describe_processes(found) if found else "?"
        if found and len(found) < wanted:
            raise RuntimeError(f"expected {wanted} processes, found {result['processes']}")
        wait_for_quiet_machine(15.0)
        schedule = build_schedule(mode, args.duration, args.seed)
        line = timeline(args.duration, len(schedule))
        chaos = Chaos(
            server.proc.pid,
            port,
            script,
            schedule,
            line,
            args.seed,
            workers=worker_threads(mode, args),
            never_reading=args.never_reading,
            flood_slots=args.max_connections - args.clients,
        )
        load = Load(port, args.clients, args.newcomers, args.rate)
        before = cpustat.snapshot()
        cpu0 = _cpu_seconds()
        t0 = time.monotonic()
        t_end = t0 + args.duration
        chaos.t0 = t0
        chaos.start()
        run_load(load, t0, t_end, args.seed)
        chaos.join(timeout=5.0)
        client_cpu = _cpu_seconds() - cpu0
        foreign = other_processes_cpu(before, cpustat.snapshot(), server.proc.pid)
        result["server_alive_at_end"] = server.alive()
        rows, faults, total, served = analyse(load, chaos, t0, t_end)
        killed = sum(1 for f in faults if f.kind == "kill")
        initial = {pid for pid, _ in chaos.samples[0].daemons} if chaos.samples else set()
        result.update(
            phases=rows,
            total={
                **asdict(total),
                "until_served_ms": served[0] * 1000,
                "until_served_open": served[1],
            },
            memory={
                **chaos.memory,
                "server_peak_kib": max(
                    (s.server_rss_kib or 0 for s in chaos.samples), default=None
                ),
                "daemons_peak_kib": max(
                    (s.daemons_rss_kib or 0 for s in chaos.samples), default=None
                ),
            },
            killed=killed,
            stopped=len(chaos.stopped),
            replaced=len(all_pids(chaos.samples) - initial),
            actions=chaos.records,
            served_by=dict(Counter(str(r.pid) for r in load.reqs if r.ok).most_common()),
            failures=[
                {
                    "client": r.client,
                    "start_s": r.start - t0,
                    "wait_ms": r.wait * 1000,
                    "error": r.error,
                    "in_flight_on_killed": excused_by(r, faults),
                }
                for r in load.reqs
                if not r.ok
            ][:MAX_FAILURES_KEPT],
            client_cpu_pct=100 * client_cpu / args.duration,
            foreign_cpu_cores=foreign[0],
            errors_during_run=chaos.errors,
            duration_s=args.duration,
        )
    except Exception as exc:
        result["error"] = f"{type(exc).__name__}: {exc}"
        result.setdefault("memory", chaos.memory if chaos else {})
    finally:
        if chaos is not None:
            left = chaos.cleanup()
            if left:
                result["stopped_left_at_end"] = left
        if server is not None:
            server.stop()
        text = _read(str(folder / "server.log")) or ""
        result["log_digest"] = [cpustat.scrub_paths(line) for line in log_digest(text)]
        result["log_tail"] = cpustat.scrub_paths(text[-3000:])
        shutil.rmtree(folder, ignore_errors=True)
    return result


# ============================================================================ main


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", 1)[0])
    parser.add_argument(
        "--mode",
        choices=("daemon", "embedded", "both"),
        default="daemon",
        help="serve in daemon mode (default), embedded mode, or run both one after the other",
    )
    parser.add_argument("--duration", type=float, default=60.0, help="seconds of load per run")
    parser.add_argument(
        "--clients", type=int, default=16, help="well-behaved clients that keep their connection"
    )
    parser.add_argument(
        "--newcomers",
        type=int,
        default=4,
        help="well-behaved clients that open a new connection for every request",
    )
    parser.add_argument(
        "--rate",
        type=float,
        default=400.0,
        help="requests/s of all well-behaved clients together (0: as fast as they can)",
    )
    parser.add_argument("--processes", type=int, default=2, help="daemon processes")
    parser.add_argument("--threads", type=int, default=4, help="threads per process")
    parser.add_argument("--max-connections", type=int, default=200, help="the server's limit")
    parser.add_argument(
        "--never-reading",
        type=int,
        default=None,
        help="never-reading connections in every flood (default: half the app's worker "
        "threads in the first flood, all of them in the second); half-head ones fill the rest",
    )
    parser.add_argument("--seed", type=int, default=1, help="victims and timing jitter")
    parser.add_argument("--no-save", action="store_true", help="print only, write no files")
    args = parser.parse_args(argv)
    args.modes = ["daemon", "embedded"] if args.mode == "both" else [args.mode]
    if not 1 <= args.clients <= 1000 or not 0 <= args.newcomers <= 100:
        parser.error("--clients must be within 1..1000 and --newcomers within 0..100")
    if not 1 <= args.processes <= 16 or not 1 <= args.threads <= 64:
        parser.error("--processes must be within 1..16 and --threads within 1..64")
    if args.max_connections <= args.clients + args.newcomers:
        parser.error("--max-connections must be above --clients + --newcomers")
    if args.max_connections > 5000:
        parser.error("--max-connections must be at most 5000")
    if args.rate < 0:
        parser.error("--rate must be >= 0")
    if args.never_reading is not None and not (
        0 <= args.never_reading <= args.max_connections - args.clients
    ):
        parser.error("--never-reading must be within 0..(--max-connections - --clients)")
    if args.duration > 600:
        parser.error("--duration must be at most 600 s")
    need = max(min_duration(len(actions_for(m))) for m in args.modes)
    if args.duration < need:
        parser.error(f"--duration must be at least {need} s for --mode {args.mode}")
    return args


def _interrupt(signum: int, _frame: Any) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, _interrupt)
    nofile = raise_nofile_limit()
    now = dt.datetime.now()
    meta = {
        "date": now.strftime("%Y-%m-%d %H:%M"),
        "machine": machine(),
        "clients": args.clients,
        "rate": args.rate,
        "rate_text": f"{args.rate:g} requests/s in all" if args.rate else "as fast as they can",
        "newcomers": args.newcomers,
        "seed": args.seed,
        "duration_s": args.duration,
        "max_connections": args.max_connections,
        "client_timeout_s": CLIENT_TIMEOUT_S,
        "nofile": nofile,
        "versions": versions(),
        "schedules": {
            m: [a._asdict() for a in build_schedule(m, args.duration, args.seed)]
            for m in args.modes
        },
    }
    try:
        runs = [run_one(mode, args) for mode in args.modes]
    except KeyboardInterrupt:
        log("interrupted; the server and everything it started were stopped")
        return 130
    report = render_markdown(runs, meta)
    print(report)
    if args.no_save:
        return 0
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    md_path = RESULTS_DIR / f"chaos-{now.strftime('%Y%m%d-%H%M')}.md"
    json_path = md_path.with_suffix(".json")
    json_path.write_text(
        cpustat.scrub_paths(dumps_compact_lists({"meta": meta, "runs": runs})) + "\n"
    )
    md_path.write_text(cpustat.scrub_paths(report))
    log(f"saved {md_path} and {json_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
