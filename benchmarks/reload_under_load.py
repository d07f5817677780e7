"""Reload under load: rewrite the WSGI script while keep-alive clients hammer the server.

Usage::

    python benchmarks/reload_under_load.py [--change script|helper|broken]
        [--broken-for 3] [--scenario embedded|daemon|changes|all]
        [--only NAME,...] [--clients 16] [--before 2] [--after 2]
        [--write replace|inplace] [--client asyncio|threads] [--rounds N]
        [--baseline DIR] [--no-save]

Servers, by ``--scenario`` (default ``embedded``, or ``changes`` with ``--change helper``
or ``broken``; ``--only`` takes a comma-separated subset of all of them and overrides it):

``embedded``, the script rewritten under load:

- ``asyncwsgi``: ``python -m asyncwsgi SCRIPT --threads 8`` (embedded, reloading on)
- ``gunicorn-reload``: ``gunicorn --reload -w 1 -k gthread --threads 8``
- ``uvicorn-reload``: ``uvicorn --reload --interface wsgi``
- ``modwsgi-embedded`` / ``modwsgi-daemon``: Apache + mod_wsgi, 2 processes (2x8
  daemon group), see ``apache/modwsgi.py``; skipped when Apache/mod_wsgi is absent.

``daemon``, a group of 2 processes replaced under load:

- ``asyncwsgi-daemon``: ``--mode daemon --processes 2 --threads 8``, script rewritten
  (rolling restart, one process at a time);
- ``asyncwsgi-daemon-hup``: the same, script rewritten and SIGHUP sent to the main
  process at once (the whole group restarts), as the gunicorn/uvicorn rows do;
- ``modwsgi-daemon``: as above (``processes=2 threads=8``), script rewritten;
- ``gunicorn-hup``: ``gunicorn -w 2 -k gthread --threads 8`` (no ``--reload``): script
  rewritten, then SIGHUP to the arbiter (new workers, then the old ones stop);
- ``uvicorn-hup``: ``uvicorn --workers 2 --interface wsgi``: script rewritten, then
  SIGHUP to the supervisor (each worker replaced, the new one first).

``changes``, for ``--change helper|broken`` (below): servers that reload every module
the app imported:

- ``asyncwsgi-changes``: ``python -m asyncwsgi SCRIPT --threads 8 --reload-on-changes``
  (embedded mode, which then runs a supervisor and one copy of the server; a change
  starts a new copy, which takes over before the old one stops);
- ``asyncwsgi-daemon-changes``: ``--mode daemon --processes 2 --threads 8
  --reload-on-changes`` (the group replaced one process at a time, each replacement
  ready before the process it replaces stops);
- ``gunicorn-reload``, ``uvicorn-reload``: as above;
- ``granian-reload``: ``granian --interface wsgi --reload --workers 1``, watching the
  app's folder, with ``--reload-ignore-worker-failure`` (without it, a worker that fails
  to import the app stops granian).

In daemon mode the target is "new code within one process start": the old processes
answer (``version=1``, counted in "old code after change") until fresh ones are ready.
As a yardstick the report gives the time a fresh interpreter takes to import asyncwsgi
and run the script (``process start``). Every multi-process server must show its
processes once it answers (the tree of the started process and its process group,
from /proc), else it is reported as not run: an asyncwsgi that ignored ``--mode
daemon`` would otherwise be measured as one embedded process.

``--baseline DIR`` (another checkout of this repository, e.g. ``git worktree add
/tmp/before COMMIT``) runs every asyncwsgi row twice, with this checkout's code and then,
as ``NAME@baseline``, with DIR's (every other pair, and round, the baseline first), and
reports both in one table, each baseline row under its own: same interpreter, command
line and app. Both are pinned to their checkout (first on PYTHONPATH) and checked before
they start (``baseline.verify``: asyncwsgi and every module it loads must import from
there); a row that would run other code is reported as not run.

For each server: copy ``reload_apps/versioned.py`` (answers ``version=1``) into a
fresh world-readable temp folder as ``reload_app.py``, start the server on a free
port of 127.0.0.1 and wait until it answers, then run K keep-alive clients (one
request in flight each) for ``--before`` seconds, rewrite the script to answer
``version=2`` (``replace``: write a temp file and ``os.replace`` it; ``inplace``:
truncate and write the same inode; both then make sure the mtime moved), and keep
the load on for ``--after`` seconds. Every response is recorded (monotonic time,
client, version or error). A client whose connection fails reconnects after 10 ms;
a request unanswered for 5 s counts as failed.

``--change`` says what is changed under load (default ``script``, as above):

- ``helper``, a helper module edited: the app is ``reload_apps/helper_app.py`` (copied as
  ``reload_app.py``), which imports ``reload_helper`` and answers
  ``version=reload_helper.VERSION``; ``reload_apps/helper_module.py`` is copied beside it
  as ``reload_helper.py``. The helper is rewritten (``VERSION = 1`` -> ``VERSION = 2``,
  written as the script is above); the script is never touched. The app puts its own
  folder on ``sys.path``, since asyncwsgi loads the script by its path.
- ``broken``, a broken deploy: the helper is first replaced by one that raises
  ``RuntimeError("broken deploy")`` at import, the load stays on for ``--broken-for``
  seconds (default 3), then the fixed helper (``VERSION = 2``) is written. The
  switch-over, old code after change and when the gap began are measured from the fix;
  failed requests and the longest gap cover the whole run, the broken period included,
  and the table adds the failed requests from the broken write to the fix ("failed
  while broken"). The JSON gives both times per server (``t_broken_s``, ``t_fix_s``:
  seconds from the start of the load), and the timeline shades the broken period.

asyncwsgi with ``--reload-on-changes`` learns what the app imported from its processes
(right after the import, then about once a second), so a change made in the first ~1.5 s
after start-up may go unseen: keep ``--before`` at 2 s or more. The target for the
asyncwsgi rows is 0 failed and no gap over 20 ms, the broken period included; the old
processes keep answering until a replacement that imported the fixed helper is ready.

Reported per server: responses, failed requests (connect errors, lost connections,
timeouts, non-200), the longest time with no response from any client (from the
first response to the end of the load), the switch-over time (file replaced ->
first ``version=2`` response), and how many ``version=1`` responses completed after
the change. Outputs, under ``benchmarks/results/``: ``reload-under-load-STAMP.md``
(table), ``.json`` (numbers, per-10-ms bins, server log excerpts) and
``reload-timeline-STAMP.png`` (responses per 10 ms, old vs new code, one row per
server, the whole run on the left and a zoom on the switch-over on the right);
``--scenario daemon`` / ``all`` put ``-daemon`` / ``-all`` after the prefix
(``reload-under-load-daemon-STAMP.md`` ...), and ``--change helper`` / ``broken``
put the change first (``reload-under-load-helper-STAMP.md``,
``reload-timeline-broken-STAMP.png``; with a scenario other than ``changes``:
``reload-under-load-broken-all-STAMP.md`` ...).

The client is a minimal HTTP/1.1 client on ``asyncio.Protocol`` (uvloop when
installed) in this process; ``--client threads`` uses one ``http.client`` thread per
client instead. The client's own CPU use is reported so that a saturated client
shows. The metric functions (``longest_gap``, ``switch_over`` ...) are pure and
tested in ``test_reload_metrics.py``, the ``--change`` parts in ``test_reload_changes.py``.
All traffic goes to 127.0.0.1; every phase is bounded in time.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import datetime as dt
import errno
import functools
import http.client
import importlib.metadata
import itertools
import json
import math
import os
import platform
import re
import resource
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple, cast

HOST = "127.0.0.1"
BENCH_DIR = Path(__file__).resolve().parent
RESULTS_DIR = BENCH_DIR / "results"
APP_TEMPLATE = BENCH_DIR / "reload_apps" / "versioned.py"
APP_NAME = "reload_app.py"
OLD_LINE = "VERSION = 1"
NEW_LINE = "VERSION = 2"
_OLD_LINE_RE = re.compile(rf"^{re.escape(OLD_LINE)}$", re.MULTILINE)
# --change helper|broken: the app imports a helper module and only the helper changes.
HELPER_APP_TEMPLATE = BENCH_DIR / "reload_apps" / "helper_app.py"
HELPER_TEMPLATE = BENCH_DIR / "reload_apps" / "helper_module.py"
HELPER_NAME = "reload_helper.py"
BROKEN_LINE = 'raise RuntimeError("broken deploy")'

# --change: what is changed under load, and the --scenario that runs by default for it.
CHANGES: dict[str, str] = {"script": "embedded", "helper": "changes", "broken": "changes"}

BIN_S = 0.010
STARTUP_TIMEOUT_S = 30.0
STOP_TIMEOUT_S = 10.0
REQUEST_TIMEOUT_S = 5.0
RETRY_DELAY_S = 0.010
DRAIN_TIMEOUT_S = 2.0
LOG_TAIL_CHARS = 3000
FOREIGN_CPU_LIMIT = 0.25  # cores used by other processes above which a run is flagged

REQUEST = b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nUser-Agent: reload-under-load\r\n\r\n"

# ============================================================================ pure part
# Nothing in this section does I/O; test_reload_metrics.py covers it with literals.


class Response(NamedTuple):
    """One finished request: a version on success, else an error label."""

    t: float  # time.monotonic() when the response (or the failure) was seen
    client: int
    version: int | None
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None


class ParsedResponse(NamedTuple):
    consumed: int  # bytes of the buffer this response used
    status: int
    body: bytes
    close: bool  # the server said Connection: close (or spoke HTTP/1.0 without keep-alive)


_VERSION_RE = re.compile(rb"^version=(\d+)\s*$")


def parse_response(buf: bytes | bytearray) -> ParsedResponse | None:
    """Parse one HTTP/1.x response from the start of ``buf``; None if it is incomplete.

    Only what the benchmark needs: a Content-Length framed body (or none, for
    204/304). Raises ValueError on anything else (malformed, chunked, no length).
    """
    end = buf.find(b"\r\n\r\n")
    if end < 0:
        return None
    head = bytes(buf[:end]).split(b"\r\n")
    parts = head[0].split(b" ", 2)
    if len(parts) < 2 or not parts[0].startswith(b"HTTP/1.") or not parts[1].isdigit():
        raise ValueError(f"bad status line: {head[0][:80]!r}")
    status = int(parts[1])
    length: int | None = None
    connection = b""
    for line in head[1:]:
        name, sep, value = line.partition(b":")
        if not sep:
            raise ValueError(f"bad header line: {line[:80]!r}")
        name = name.strip().lower()
        if name == b"content-length":
            length = int(value.strip())
        elif name == b"transfer-encoding":
            raise ValueError("chunked responses are not supported")
        elif name == b"connection":
            connection = value.strip().lower()
    if length is None:
        if status in (204, 304) or 100 <= status < 200:
            length = 0
        else:
            raise ValueError("response without Content-Length")
    start = end + 4
    if len(buf) < start + length:
        return None
    close = connection == b"close" or (parts[0] == b"HTTP/1.0" and connection != b"keep-alive")
    return ParsedResponse(start + length, status, bytes(buf[start : start + length]), close)


def body_version(body: bytes) -> int | None:
    """``b"version=2"`` -> 2; anything else -> None."""
    match = _VERSION_RE.match(body)
    return int(match[1]) if match else None


def classify(t: float, client: int, status: int, body: bytes) -> Response:
    """The record for one complete response."""
    if status != 200:
        return Response(t, client, None, f"HTTP {status}")
    version = body_version(body)
    if version is None:
        return Response(t, client, None, "unexpected body")
    return Response(t, client, version)


def failures(events: Iterable[Response]) -> int:
    """How many requests failed (connect errors, lost connections, timeouts, non-200)."""
    return sum(1 for e in events if e.error is not None)


def failure_kinds(events: Iterable[Response]) -> dict[str, int]:
    """Failed requests counted by error label, most frequent first."""
    return dict(Counter(e.error for e in events if e.error is not None).most_common())


def longest_gap(
    times: Sequence[float], start: float | None = None, end: float | None = None
) -> tuple[float, float | None]:
    """The longest interval with no response: (length, time it began).

    ``times`` are response times (any order). ``start``/``end``, when given, count
    as boundaries, so a server that stops answering before ``end`` shows a gap; times
    outside [start, end] are ignored. No response at all: the whole window (or 0.0).
    """
    inside = sorted(t for t in times if (start is None or t >= start) and (end is None or t <= end))
    points = ([start] if start is not None else []) + inside + ([end] if end is not None else [])
    best, at = 0.0, None
    for a, b in itertools.pairwise(points):
        if b - a > best:
            best, at = b - a, a
    return best, at


def switch_over(events: Iterable[Response], t_change: float, new_version: int = 2) -> float | None:
    """Seconds from the change to the first response of the new code; None if never."""
    first = min((e.t for e in events if e.version == new_version and e.t >= t_change), default=None)
    return None if first is None else first - t_change


def old_after_change(events: Iterable[Response], t_change: float, old_version: int = 1) -> int:
    """Responses of the old code that completed after the change."""
    return sum(1 for e in events if e.version == old_version and e.t > t_change)


def new_before_change(events: Iterable[Response], t_change: float, new_version: int = 2) -> int:
    """Responses of the new code before the change: must be 0, else the clock is wrong."""
    return sum(1 for e in events if e.version == new_version and e.t < t_change)


def timeline_bins(
    events: Iterable[Response],
    start: float,
    end: float,
    bin_s: float = BIN_S,
    old_version: int = 1,
    new_version: int = 2,
) -> dict[str, list[int]]:
    """Counts per ``bin_s`` bin from ``start`` to ``end``: old, new and failed."""
    n = max(1, math.ceil((end - start) / bin_s - 1e-9))
    bins = {"old": [0] * n, "new": [0] * n, "failed": [0] * n}
    for e in events:
        if e.t < start or e.t >= end:
            continue
        i = min(n - 1, int((e.t - start) / bin_s))
        if e.error is not None:
            bins["failed"][i] += 1
        elif e.version == old_version:
            bins["old"][i] += 1
        elif e.version == new_version:
            bins["new"][i] += 1
    return bins


@dataclass
class Metrics:
    responses: int  # 200 OK with a version body, within the load window
    failed: int
    failure_kinds: dict[str, int]
    requests_per_s: float
    longest_gap_ms: float
    longest_gap_at_ms: float | None  # when the gap began, relative to the change
    switch_over_ms: float | None
    old_after_change: int
    new_before_change: int
    # --change broken: failed requests from the broken write to the fix (else None).
    failed_while_broken: int | None = None


def compute_metrics(
    events: Sequence[Response],
    t_start: float,
    t_change: float,
    t_end: float,
    t_broken: float | None = None,
) -> Metrics:
    """All the reported numbers for one server's run (load window [t_start, t_end]).

    ``t_change`` is when the new code was written (with ``--change broken``, the fix):
    the switch-over, old code after change and the gap's start are measured from it.
    Failed requests and the longest gap cover the whole window. ``t_broken`` (``--change
    broken``): when the broken helper was written; the failures in [t_broken, t_change)
    are also counted apart.
    """
    window = [e for e in events if t_start <= e.t <= t_end]
    ok_times = [e.t for e in window if e.ok]
    first_ok = min(ok_times, default=t_start)
    gap, gap_at = longest_gap(ok_times, first_ok, t_end)
    switch = switch_over(events, t_change)
    return Metrics(
        responses=len(ok_times),
        failed=failures(window),
        failure_kinds=failure_kinds(window),
        requests_per_s=len(ok_times) / (t_end - t_start) if t_end > t_start else 0.0,
        longest_gap_ms=gap * 1000,
        longest_gap_at_ms=None if gap_at is None else (gap_at - t_change) * 1000,
        switch_over_ms=None if switch is None else switch * 1000,
        old_after_change=old_after_change(window, t_change),
        new_before_change=new_before_change(window, t_change),
        failed_while_broken=(
            None if t_broken is None else failures(e for e in window if t_broken <= e.t < t_change)
        ),
    )


def _fmt_ms(value: float | None) -> str:
    if value is None:
        return "never"
    return f"{value:,.1f}" if value < 100 else f"{value:,.0f}"


def run_label(result: dict[str, Any]) -> str:
    """``name``, or ``name #k`` when the run was one of several rounds."""
    if result.get("rounds", 1) > 1:
        return f"{result['name']} #{result['round']}"
    return str(result["name"])


def median_run(runs: Sequence[dict[str, Any]]) -> dict[str, Any] | None:
    """Of one server's runs, the one whose longest gap is the median (lower middle)."""
    ran = sorted(
        (r for r in runs if r.get("metrics")), key=lambda r: r["metrics"]["longest_gap_ms"]
    )
    return ran[(len(ran) - 1) // 2] if ran else None


def _short_log_line(line: str) -> str:
    """A server log line without its timestamp/pid prefix and temp-folder paths."""
    line = re.sub(r"^(\[[^\]]*\]\s*)+", "", line)
    return re.sub(r"/\S*/(reload_(?:app|helper)\.py)", r"\1", line).strip()


_BROKEN_LOG_RE = re.compile(r"could not load|failed to boot|Unexpected exit|broken deploy")


def broken_log_line(reload_log: Sequence[str]) -> str | None:
    """Of a server's reload log lines, the last one about the helper that failed to import
    (``--change broken``), shortened; None if there is none."""
    found = [line for line in reload_log if _BROKEN_LOG_RE.search(line)]
    return _short_log_line(found[-1]) if found else None


def _short_error(text: str) -> str:
    """A multi-line error (one with a server log attached): its first and last lines."""
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    if len(lines) <= 2:
        return " ".join(lines)
    return f"{lines[0]} … {lines[-1]}"


def baseline_lines(meta: dict[str, Any]) -> list[str]:
    """``--baseline``: which code each side ran (nothing without it)."""
    if not meta.get("baseline"):
        return []
    return [
        f"Rows named `NAME@baseline` ran asyncwsgi from the baseline checkout "
        f"{meta['baseline']}, the other asyncwsgi rows from this checkout, {meta['current']}: "
        "same interpreter, command line and app, each pair back to back (every other pair "
        "baseline first). Each was checked before it started to import asyncwsgi, and every "
        "module it loads, from its checkout (`ran ...` under Servers).",
        "",
    ]


def change_title(meta: dict[str, Any]) -> str:
    """The report's title without the date: what was changed under load."""
    change = meta.get("change", "script")
    if change == "helper":
        return "Reload under load, helper module edited"
    if change == "broken":
        return f"Reload under load, broken deploy, then fixed after {meta['broken_for_s']:g} s"
    return "Reload under load"


def change_sentence(meta: dict[str, Any]) -> str:
    """What happened between the two stretches of load, for the intro sentence."""
    change = meta.get("change", "script")
    if change == "helper":
        return (
            f"helper module `{HELPER_NAME}` rewritten to `{NEW_LINE}` ({meta['write']}; "
            "the script itself untouched)"
        )
    if change == "broken":
        return (
            f"helper module `{HELPER_NAME}` replaced by one that raises at import "
            f"({meta['write']}), {meta['broken_for_s']:g} s later fixed (`{NEW_LINE}`)"
        )
    return f"script rewritten ({meta['write']})"


def _metric_notes(meta: dict[str, Any]) -> str:
    """The definitions of the columns, for the notes under the table."""
    change = meta.get("change", "script")
    if change == "script":
        return (
            "Longest gap: longest time with no successful response from any client, from the "
            "first response to the end of the load; gap began: when, relative to the script "
            "rewrite. Switch-over: from the file replacement to the first `version=2` response. "
            "Old code after change: `version=1` responses completed after the replacement "
            "(includes requests already queued or running)."
        )
    if change == "helper":
        return (
            "Longest gap: longest time with no successful response from any client, from the "
            "first response to the end of the load; gap began: when, relative to the helper "
            "rewrite. Switch-over: from the helper's replacement to the first `version=2` "
            "response. Old code after change: `version=1` responses completed after the "
            "replacement (includes requests already queued or running)."
        )
    return (
        "Failed and longest gap cover the whole run, the broken period included; failed "
        "while broken: the failed requests from the broken helper's write to the fix. "
        "Longest gap: longest time with no successful response from any client, from the "
        "first response to the end of the load; gap began: when, relative to the fix (the "
        f"helper written with `{NEW_LINE}`; negative: before it). Switch-over: from the fix "
        "to the first `version=2` response. Old code after change: `version=1` responses "
        "completed after the fix (includes requests already queued or running)."
    )


def _target_notes(meta: dict[str, Any]) -> list[str]:
    """The targets for asyncwsgi, and the process start yardstick when it was measured."""
    start_ms = meta.get("process_start_ms")
    if meta.get("change", "script") == "script":
        lines = [
            "",
            "Targets for asyncwsgi (docs/DESIGN.md, Performance): 0 failed, no gap over 20 ms, "
            "new code within 5 ms (embedded) / within one process start (daemon).",
        ]
        if start_ms is not None:
            lines += [
                "",
                "Daemon-mode and SIGHUP rows replace processes: the new code answers once a "
                "fresh process is ready, so their switch-over is at least one process start. "
                "Where the old processes keep answering meanwhile (a rolling restart) that "
                "time shows in old code after change; where they stop first (mod_wsgi restarts "
                "its daemon processes together) it shows as a gap. For scale, a fresh "
                "interpreter importing asyncwsgi and running the script took "
                f"{start_ms:,.0f} ms on this machine (median of 3).",
            ]
        return lines
    lines = [
        "",
        "Targets for asyncwsgi (`--reload-on-changes`): 0 failed and no gap over 20 ms"
        + (", the broken period included" if meta["change"] == "broken" else "")
        + "; the new code answers once a replacement process is ready.",
    ]
    if start_ms is not None:
        lines += [
            "",
            "asyncwsgi loads the changed helper in a new process and stops the process it "
            "replaces only once the new one is ready: its switch-over is at least one "
            "process start, and meanwhile the old code answers (old code after change). "
            "For scale, a fresh interpreter importing asyncwsgi and running the script took "
            f"{start_ms:,.0f} ms on this machine (median of 3).",
        ]
    return lines


def render_markdown(results: Sequence[dict[str, Any]], meta: dict[str, Any]) -> str:
    """The Markdown report: a table of metrics plus notes, from JSON-ready results."""
    broken = meta.get("change") == "broken"
    columns = [
        "server",
        "responses",
        "req/s",
        "failed",
        *(["failed while broken"] if broken else []),
        "longest gap (ms)",
        "gap began (ms)",
        "switch-over (ms)",
        "old code after change",
        "other CPU load (cores)",
    ]
    lines = [
        f"## {change_title(meta)} — {meta['date']}",
        "",
        f"{meta['clients']} keep-alive clients ({meta['client']} client), "
        f"{meta['before_s']:g} s of load, {change_sentence(meta)}, "
        f"{meta['after_s']:g} s more. Machine: {meta['machine']}.",
        "",
        *baseline_lines(meta),
        "| " + " | ".join(columns) + " |",
        "| --- |" + " ---: |" * (len(columns) - 1),
    ]
    servers: dict[str, str] = {}
    notes: list[str] = []
    client_cpu: list[float] = []
    for r in results:
        m = r.get("metrics")
        name = run_label(r)
        if r["name"] not in servers:
            servers[r["name"]] = f"- **{r['name']}**: {r.get('description', '')}"
        if m is None:
            lines.append(f"| {name} | not run |" + " |" * (len(columns) - 2))
            notes.append(f"- {name}: not run — {_short_error(str(r.get('error')))}")
            continue
        if r.get("code") and "ran asyncwsgi" not in servers[r["name"]]:
            servers[r["name"]] += f"; ran {r['code']}"
        if r.get("processes") and "processes:" not in servers[r["name"]]:
            servers[r["name"]] += f"; processes: {r['processes']}"
        if r.get("reload_log") and "logged" not in servers[r["name"]]:
            servers[r["name"]] += f"; logged `{_short_log_line(r['reload_log'][0])}`"
            failed_import = broken_log_line(r["reload_log"]) if broken else None
            if failed_import is not None:
                servers[r["name"]] += f"; on the broken helper `{failed_import}`"
        gap_at = m["longest_gap_at_ms"]
        foreign = r.get("foreign_cpu_cores")
        while_broken = m.get("failed_while_broken")
        lines.append(
            f"| {name} | {m['responses']:,} | {m['requests_per_s']:,.0f} | {m['failed']:,} "
            + (f"| {'' if while_broken is None else f'{while_broken:,}'} " if broken else "")
            + f"| {_fmt_ms(m['longest_gap_ms'])} | {'' if gap_at is None else f'{gap_at:+,.0f}'} "
            f"| {_fmt_ms(m['switch_over_ms'])} | {m['old_after_change']:,} "
            f"| {'?' if foreign is None else f'{foreign:.2f}'} |"
        )
        client_cpu.append(r["client_cpu_pct"])
        details = []
        if m["failure_kinds"]:
            details.append(", ".join(f"{k}: {v}" for k, v in m["failure_kinds"].items()))
        if m["new_before_change"]:
            details.append(f"{m['new_before_change']} new-code responses BEFORE the change (?)")
        if details:
            notes.append(f"- {name}: " + "; ".join(details))
    lines += ["", "Servers:", "", *servers.values()]
    if notes:
        lines += ["", "Failures and anomalies:", "", *notes]
    lines += [
        "",
        _metric_notes(meta) + " Other CPU load: cores used by "
        "processes other than the server and this client during the run (a shared 2-core "
        "machine; above ~0.25 the numbers are noisy)."
        + (
            f" The client itself used at most {max(client_cpu):.0f}% of one core."
            if client_cpu
            else ""
        ),
        *_target_notes(meta),
    ]
    return "\n".join(lines) + "\n"


# ============================================================================ script file

Change = Callable[[], tuple[float, float]]  # makes a change: (t_change, seconds it took)


def write_initial_app(folder: Path, change: str = "script") -> Path:
    """Copy the app into ``folder`` as a world-readable ``reload_app.py``; return its path.

    ``change`` helper or broken: the app that imports ``reload_helper``, with the helper
    (``VERSION = 1``) copied beside it.
    """
    template = APP_TEMPLATE if change == "script" else HELPER_APP_TEMPLATE
    text = template.read_text()
    if change == "script" and not _OLD_LINE_RE.search(text):
        raise SystemExit(f"{template} has no line {OLD_LINE!r}")
    path = folder / APP_NAME
    path.write_text(text)
    path.chmod(0o644)
    if change != "script":
        helper = folder / HELPER_NAME
        helper.write_text(helper_text(HELPER_TEMPLATE.read_text(), 1))
        helper.chmod(0o644)
    return path


def helper_text(template: str, version: int | None) -> str:
    """The helper module's text: its line ``VERSION = 1`` made ``VERSION = {version}``, or
    (``version`` None) the line that makes the import fail, ``raise RuntimeError(...)``."""
    line = BROKEN_LINE if version is None else f"VERSION = {version}"
    text, count = _OLD_LINE_RE.subn(line, template, count=1)
    if count != 1:
        raise ValueError(f"the helper template has no line {OLD_LINE!r}")
    return text


def write_file(path: Path, text: str, mode: str) -> tuple[float, float]:
    """Make ``text`` the content of ``path``; return (t_change, seconds the write took).

    ``replace``: write a temp file beside it and ``os.replace`` it; ``inplace``: truncate
    and write the same inode. t_change is taken just before the new content can become
    visible, so no new-code response can precede it. The mtime is then set to at least
    one second past the old one, so servers that compare whole seconds see the change too.
    """
    old = path.stat()
    if mode == "replace":
        tmp = path.with_name(path.name + ".new")  # not *.py: uvicorn must not watch it
        tmp.write_text(text)
        tmp.chmod(0o644)
        t_change = time.monotonic()
        os.replace(tmp, path)
    elif mode == "inplace":
        data = text.encode()
        t_change = time.monotonic()
        with open(path, "r+b") as f:
            f.truncate(0)
            f.write(data)
    else:
        raise ValueError(f"unknown write mode {mode!r}")
    mtime = max(time.time_ns(), old.st_mtime_ns + 1_000_000_000)
    os.utime(path, ns=(mtime, mtime))
    return t_change, time.monotonic() - t_change


def rewrite_app(path: Path, mode: str) -> tuple[float, float]:
    """Switch the script to ``version=2``; return (t_change, seconds the write took)."""
    text, count = _OLD_LINE_RE.subn(NEW_LINE, path.read_text(), count=1)
    if count != 1:
        raise ValueError(f"{path} has no line {OLD_LINE!r}")
    return write_file(path, text, mode)


def write_helper(path: Path, version: int | None, mode: str) -> tuple[float, float]:
    """Write the helper module answering ``version`` (None: the broken one), as
    :func:`write_file` does; return (t_change, seconds the write took)."""
    return write_file(path, helper_text(HELPER_TEMPLATE.read_text(), version), mode)


def change_steps(change: str, folder: Path, mode: str) -> list[Change]:
    """The writes that make the change, in order; the last one brings ``version=2``.

    script: rewrite the script; helper: rewrite the helper; broken: write the broken
    helper, then (``--broken-for`` seconds later, see the load runners) the fixed one.
    """
    script, helper = folder / APP_NAME, folder / HELPER_NAME
    if change == "script":
        return [functools.partial(rewrite_app, script, mode)]
    if change == "helper":
        return [functools.partial(write_helper, helper, 2, mode)]
    if change == "broken":
        return [
            functools.partial(write_helper, helper, None, mode),
            functools.partial(write_helper, helper, 2, mode),
        ]
    raise ValueError(f"unknown change {change!r}")


# ============================================================================ clients


@dataclass
class LoadResult:
    events: list[Response]
    t_start: float
    t_changes: list[float]  # when each change step was made; the last brings version 2
    t_end: float
    write_s: float  # how long the last step took
    client_cpu_s: float

    @property
    def t_change(self) -> float:
        return self.t_changes[-1]


def _errname(exc: BaseException) -> str:
    if isinstance(exc, OSError) and exc.errno is not None:
        return errno.errorcode.get(exc.errno, str(exc.errno))
    return type(exc).__name__


class _Conn(asyncio.Protocol):
    """One keep-alive connection with at most one request in flight."""

    def __init__(self, load: _AsyncLoad, client: int) -> None:
        self.load = load
        self.client = client
        self.buf = bytearray()
        self.transport: asyncio.Transport | None = None
        self.sent_at: float | None = None
        self.closed: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports implement asyncio.Transport without subclassing it.
        self.transport = cast(asyncio.Transport, transport)
        self.load.conns.add(self)
        self.send()

    def send(self) -> None:
        assert self.transport is not None
        if self.load.stopping:
            self.transport.close()
            return
        self.sent_at = time.monotonic()
        self.transport.write(REQUEST)

    def data_received(self, data: bytes) -> None:
        assert self.transport is not None
        self.buf += data
        while True:
            try:
                parsed = parse_response(self.buf)
            except ValueError as exc:
                self.fail(f"bad response: {exc}")
                return
            if parsed is None:
                return
            del self.buf[: parsed.consumed]
            self.load.events.append(
                classify(time.monotonic(), self.client, parsed.status, parsed.body)
            )
            self.sent_at = None
            if parsed.close:
                self.transport.close()
                return
            self.send()

    def fail(self, label: str) -> None:
        if self.sent_at is not None:
            self.load.events.append(Response(time.monotonic(), self.client, None, label))
            self.sent_at = None
        if self.transport is not None:
            self.transport.abort()

    def connection_lost(self, exc: Exception | None) -> None:
        if self.sent_at is not None:
            label = "connection lost" if exc is None else f"connection lost: {_errname(exc)}"
            self.load.events.append(Response(time.monotonic(), self.client, None, label))
            self.sent_at = None
        self.load.conns.discard(self)
        if not self.closed.done():
            self.closed.set_result(None)


class _AsyncLoad:
    def __init__(self, port: int, clients: int) -> None:
        self.port = port
        self.clients = clients
        self.events: list[Response] = []
        self.conns: set[_Conn] = set()
        self.stopping = False

    async def client(self, cid: int) -> None:
        loop = asyncio.get_running_loop()
        while not self.stopping:
            try:
                _, proto = await asyncio.wait_for(
                    loop.create_connection(lambda: _Conn(self, cid), HOST, self.port),
                    REQUEST_TIMEOUT_S,
                )
            except (OSError, asyncio.TimeoutError) as exc:
                self.events.append(
                    Response(time.monotonic(), cid, None, f"connect: {_errname(exc)}")
                )
                await asyncio.sleep(RETRY_DELAY_S)
                continue
            await proto.closed

    async def watchdog(self) -> None:
        while True:
            await asyncio.sleep(0.1)
            now = time.monotonic()
            for conn in list(self.conns):
                if conn.sent_at is not None and now - conn.sent_at > REQUEST_TIMEOUT_S:
                    conn.fail("timeout")

    async def run(
        self, before_s: float, after_s: float, changes: Sequence[Change], between_s: float
    ) -> LoadResult:
        t_start = time.monotonic()
        tasks = [asyncio.create_task(self.client(cid)) for cid in range(self.clients)]
        dog = asyncio.create_task(self.watchdog())
        await asyncio.sleep(max(0.0, t_start + before_s - time.monotonic()))
        t_changes: list[float] = []
        for change in changes:
            if t_changes:
                await asyncio.sleep(max(0.0, t_changes[-1] + between_s - time.monotonic()))
            t_change, write_s = change()
            t_changes.append(t_change)
        await asyncio.sleep(max(0.0, t_changes[-1] + after_s - time.monotonic()))
        t_end = time.monotonic()
        self.stopping = True
        _, pending = await asyncio.wait(tasks, timeout=DRAIN_TIMEOUT_S)
        for conn in list(self.conns):
            conn.fail("unanswered at end")
        for task in pending:
            task.cancel()
        dog.cancel()
        await asyncio.gather(*pending, dog, return_exceptions=True)
        return LoadResult(self.events, t_start, t_changes, t_end, write_s, 0.0)


def _new_event_loop() -> asyncio.AbstractEventLoop:
    try:
        import uvloop
    except ImportError:
        return asyncio.new_event_loop()
    loop: asyncio.AbstractEventLoop = uvloop.new_event_loop()
    return loop


def run_load_asyncio(
    port: int,
    clients: int,
    before_s: float,
    after_s: float,
    changes: Sequence[Change],
    between_s: float = 0.0,
) -> LoadResult:
    """Load for ``before_s``, make the ``changes`` (``between_s`` apart), load ``after_s``
    more (counted from the last change)."""
    loop = _new_event_loop()
    try:
        load = _AsyncLoad(port, clients)
        return loop.run_until_complete(load.run(before_s, after_s, changes, between_s))
    finally:
        loop.close()


def run_load_threads(
    port: int,
    clients: int,
    before_s: float,
    after_s: float,
    changes: Sequence[Change],
    between_s: float = 0.0,
) -> LoadResult:
    """The same load with one http.client thread per client (for comparison)."""
    events: list[Response] = []  # list.append is atomic under the GIL
    stop = threading.Event()

    def worker(cid: int) -> None:
        conn: http.client.HTTPConnection | None = None
        while not stop.is_set():
            if conn is None:
                conn = http.client.HTTPConnection(HOST, port, timeout=REQUEST_TIMEOUT_S)
                try:
                    conn.connect()
                    assert conn.sock is not None
                    conn.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                except OSError as exc:
                    events.append(
                        Response(time.monotonic(), cid, None, f"connect: {_errname(exc)}")
                    )
                    conn = None
                    time.sleep(RETRY_DELAY_S)
                    continue
            try:
                conn.request("GET", "/", headers={"User-Agent": "reload-under-load"})
                resp = conn.getresponse()
                body = resp.read()
            except TimeoutError:
                events.append(Response(time.monotonic(), cid, None, "timeout"))
                conn.close()
                conn = None
                continue
            except (OSError, http.client.HTTPException) as exc:
                events.append(
                    Response(time.monotonic(), cid, None, f"connection lost: {_errname(exc)}")
                )
                conn.close()
                conn = None
                continue
            events.append(classify(time.monotonic(), cid, resp.status, body))
            if resp.will_close:
                conn.close()
                conn = None
        if conn is not None:
            conn.close()

    threads = [threading.Thread(target=worker, args=(cid,), daemon=True) for cid in range(clients)]
    t_start = time.monotonic()
    for thread in threads:
        thread.start()
    time.sleep(max(0.0, t_start + before_s - time.monotonic()))
    t_changes: list[float] = []
    for change in changes:
        if t_changes:
            time.sleep(max(0.0, t_changes[-1] + between_s - time.monotonic()))
        t_change, write_s = change()
        t_changes.append(t_change)
    time.sleep(max(0.0, t_changes[-1] + after_s - time.monotonic()))
    t_end = time.monotonic()
    stop.set()
    for thread in threads:
        thread.join(DRAIN_TIMEOUT_S + REQUEST_TIMEOUT_S)
    return LoadResult(list(events), t_start, t_changes, t_end, write_s, 0.0)


CLIENTS = {"asyncio": run_load_asyncio, "threads": run_load_threads}


# ============================================================================ servers


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        port: int = sock.getsockname()[1]
        return port


def http_get(port: int, timeout: float = 5.0) -> tuple[int, bytes]:
    conn = http.client.HTTPConnection(HOST, port, timeout=timeout)
    try:
        conn.request("GET", "/")
        resp = conn.getresponse()
        return resp.status, resp.read()
    finally:
        conn.close()


class Server:
    """A server under test; subclasses start it serving ``script`` on ``port``."""

    pgid: int | None = None  # process group, to tell its CPU from other processes'

    def start(self, script: Path, port: int) -> None:
        raise NotImplementedError

    def stop(self) -> None:
        raise NotImplementedError

    def log(self) -> str:
        raise NotImplementedError

    def alive(self) -> bool:
        raise NotImplementedError

    def signal_reload(self) -> None:
        """Ask the server to restart its workers (SIGHUP to the started process)."""
        raise NotImplementedError(f"{type(self).__name__} has no reload signal")


class SubprocessServer(Server):
    def __init__(self, argv: Callable[[Path, int], list[str]]) -> None:
        self.argv = argv
        self.proc: subprocess.Popen[bytes] | None = None
        self.log_path: Path | None = None
        # --baseline: the checkout whose asyncwsgi must run, and what was checked to run.
        self.checkout: Path | None = None
        self.code = ""

    def start(self, script: Path, port: int) -> None:
        self.log_path = script.parent / "server.log"
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        argv = self.argv(script, port)
        if self.checkout is not None:
            import baseline

            # Started in the script's folder, so PYTHONPATH decides; the probe imports with
            # this very interpreter, environment and folder. Raises: reported as not run.
            env = baseline.pinned_env(env, self.checkout)
            self.code = baseline.verify(argv[0], env, script.parent, self.checkout).describe()
            log(f"    {self.code}")
        with open(self.log_path, "wb") as log_file:
            self.proc = subprocess.Popen(
                argv,
                cwd=script.parent,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=log_file,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self.pgid = self.proc.pid

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def signal_reload(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGHUP)

    def stop(self) -> None:
        proc = self.proc
        if proc is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(STOP_TIMEOUT_S)
        # uvicorn's reloader and gunicorn's workers live in the same group.
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        self.proc = None

    def log(self) -> str:
        if self.log_path is None:
            return ""
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""


class ApacheModWsgi(Server):
    def __init__(self, mode: str) -> None:
        self.mode = mode
        self.server: Any = None
        self._log = ""

    def start(self, script: Path, port: int) -> None:
        from apache import modwsgi

        self.server = modwsgi.ApacheServer(script, mode=self.mode, port=port)
        self.server.start()
        self.pgid = self.server.proc.pid

    def alive(self) -> bool:
        return (
            self.server is not None
            and self.server.proc is not None
            and self.server.proc.poll() is None
        )

    def stop(self) -> None:
        if self.server is not None:
            self._log = self.server.error_log()
            self.server.stop()
            self.server.cleanup()
            self.server = None

    def log(self) -> str:
        if self.server is not None:
            text: str = self.server.error_log()
            return text
        return self._log


def _asyncwsgi(setup: str) -> Callable[[Path, int], list[str]]:
    def build(script: Path, port: int) -> list[str]:
        import asyncwsgi_cmd

        return asyncwsgi_cmd.argv(script, HOST, port, setup, extra=("--script-reloading", "on"))

    return build


def _gunicorn(*, reload: bool, workers: int) -> Callable[[Path, int], list[str]]:
    def build(script: Path, port: int) -> list[str]:
        return [
            sys.executable,
            "-m",
            "gunicorn",
            *(["--reload"] if reload else []),
            "-w",
            str(workers),
            "-k",
            "gthread",
            "--threads",
            "8",
            "--bind",
            f"{HOST}:{port}",
            "--chdir",
            str(script.parent),
            f"{script.stem}:application",
        ]

    return build


def _uvicorn(*, reload: bool, workers: int) -> Callable[[Path, int], list[str]]:
    def build(script: Path, port: int) -> list[str]:
        if reload:
            mode = ["--reload", "--reload-dir", str(script.parent)]
        else:
            mode = ["--workers", str(workers)]
        return [
            sys.executable,
            "-m",
            "uvicorn",
            *mode,
            "--interface",
            "wsgi",
            "--no-access-log",
            "--host",
            HOST,
            "--port",
            str(port),
            "--app-dir",
            str(script.parent),
            f"{script.stem}:application",
        ]

    return build


def _granian_reload(script: Path, port: int) -> list[str]:
    """``granian --interface wsgi --reload --workers 1``, watching the app's folder.

    The folder also holds the server log and ``--write replace``'s temp file (``*.new``),
    which must not count as changes. ``--reload-ignore-worker-failure``: without it a
    worker that fails to import the app (``--change broken``) stops granian altogether.
    """
    folder = str(script.parent)
    return [
        sys.executable,
        "-m",
        "granian",
        "--interface",
        "wsgi",
        "--reload",
        "--reload-paths",
        folder,
        "--reload-ignore-patterns",
        r"^server\.log$",
        "--reload-ignore-patterns",
        r"\.new$",
        "--reload-ignore-worker-failure",
        "--workers",
        "1",
        "--host",
        HOST,
        "--port",
        str(port),
        "--working-dir",
        folder,
        f"{script.stem}:application",
    ]


SCRIPT = "script"  # trigger: make the change (--change)
SIGHUP = "sighup"  # trigger: make the change, then SIGHUP to the started process


@dataclass(frozen=True)
class ServerSpec:
    name: str
    description: str
    make: Callable[[], Server]
    requires: tuple[str, ...] = ()  # importable modules
    apache: bool = False
    trigger: str = SCRIPT
    # Processes it must have once it answers (tree + process group), else "not run".
    min_processes: int = 1


def _min_processes(setup: str) -> int:
    import asyncwsgi_cmd

    return asyncwsgi_cmd.SETUPS[setup].min_processes


SERVERS: tuple[ServerSpec, ...] = (
    ServerSpec(
        "asyncwsgi",
        "asyncwsgi, embedded, 1 process x 8 threads, script reloading on",
        lambda: SubprocessServer(_asyncwsgi("embedded")),
        ("asyncwsgi",),
    ),
    ServerSpec(
        "gunicorn-reload",
        "gunicorn --reload -w 1 -k gthread --threads 8",
        lambda: SubprocessServer(_gunicorn(reload=True, workers=1)),
        ("gunicorn",),
    ),
    ServerSpec(
        "uvicorn-reload",
        "uvicorn --reload --interface wsgi (a2wsgi), 1 worker",
        lambda: SubprocessServer(_uvicorn(reload=True, workers=1)),
        ("uvicorn",),
    ),
    ServerSpec(
        "modwsgi-embedded",
        "Apache event MPM + mod_wsgi embedded mode, 2 processes, WSGIScriptReloading On",
        lambda: ApacheModWsgi("embedded"),
        apache=True,
        min_processes=3,
    ),
    ServerSpec(
        "modwsgi-daemon",
        "Apache + mod_wsgi daemon mode, processes=2 threads=8, WSGIScriptReloading On",
        lambda: ApacheModWsgi("daemon"),
        apache=True,
        min_processes=5,  # the parent, 2 children, 2 daemon processes
    ),
    ServerSpec(
        "asyncwsgi-daemon",
        "asyncwsgi --mode daemon --processes 2 --threads 8, script reloading on "
        "(rolling restart when the script changes)",
        lambda: SubprocessServer(_asyncwsgi("daemon")),
        ("asyncwsgi",),
        min_processes=_min_processes("daemon"),
    ),
    ServerSpec(
        "asyncwsgi-daemon-hup",
        "asyncwsgi --mode daemon --processes 2 --threads 8; script rewritten, then SIGHUP "
        "to the main process (restarts the group)",
        lambda: SubprocessServer(_asyncwsgi("daemon")),
        ("asyncwsgi",),
        trigger=SIGHUP,
        min_processes=_min_processes("daemon"),
    ),
    ServerSpec(
        "gunicorn-hup",
        "gunicorn -w 2 -k gthread --threads 8 (no --reload); script rewritten, then "
        "SIGHUP to the arbiter",
        lambda: SubprocessServer(_gunicorn(reload=False, workers=2)),
        ("gunicorn",),
        trigger=SIGHUP,
        min_processes=3,  # the arbiter + 2 workers
    ),
    ServerSpec(
        "uvicorn-hup",
        "uvicorn --workers 2 --interface wsgi (a2wsgi); script rewritten, then SIGHUP "
        "to the supervisor",
        lambda: SubprocessServer(_uvicorn(reload=False, workers=2)),
        ("uvicorn",),
        trigger=SIGHUP,
        min_processes=3,  # the supervisor + 2 workers
    ),
    ServerSpec(
        "asyncwsgi-changes",
        "asyncwsgi --reload-on-changes, embedded: a supervisor and 1 copy of the server x 8 "
        "threads; a change to any file the app imported starts a new copy, which takes over "
        "before the old one stops",
        lambda: SubprocessServer(_asyncwsgi("changes")),
        ("asyncwsgi",),
        min_processes=_min_processes("changes"),
    ),
    ServerSpec(
        "asyncwsgi-daemon-changes",
        "asyncwsgi --mode daemon --processes 2 --threads 8 --reload-on-changes; a change to "
        "any file the app imported replaces the group one process at a time, each "
        "replacement ready before the process it replaces stops",
        lambda: SubprocessServer(_asyncwsgi("daemon-changes")),
        ("asyncwsgi",),
        min_processes=_min_processes("daemon-changes"),
    ),
    ServerSpec(
        "granian-reload",
        "granian --interface wsgi --reload --workers 1, watching the app's folder, "
        "--reload-ignore-worker-failure",
        lambda: SubprocessServer(_granian_reload),
        ("granian",),
    ),
)
SERVERS_BY_NAME = {spec.name: spec for spec in SERVERS}
# --scenario: which servers run, in this order ("all": every one, in SERVERS order).
SCENARIOS: dict[str, tuple[str, ...]] = {
    "embedded": (
        "asyncwsgi",
        "gunicorn-reload",
        "uvicorn-reload",
        "modwsgi-embedded",
        "modwsgi-daemon",
    ),
    "daemon": (
        "asyncwsgi-daemon",
        "asyncwsgi-daemon-hup",
        "modwsgi-daemon",
        "gunicorn-hup",
        "uvicorn-hup",
    ),
    # The default with --change helper|broken: servers that reload what the app imported.
    "changes": (
        "asyncwsgi-changes",
        "asyncwsgi-daemon-changes",
        "gunicorn-reload",
        "uvicorn-reload",
        "granian-reload",
    ),
    "all": tuple(SERVERS_BY_NAME),
}


def is_asyncwsgi(spec: ServerSpec) -> bool:
    """A row that runs asyncwsgi's code: run twice with ``--baseline``."""
    return "asyncwsgi" in spec.requires


def baseline_spec(spec: ServerSpec) -> ServerSpec:
    """``spec`` as its ``@baseline`` row: the same server, another name."""
    import baseline

    return dataclasses.replace(
        spec,
        name=baseline.row_name(spec.name, True),
        description=f"{spec.description}; the baseline checkout's code",
    )


def plan_runs(
    specs: Sequence[ServerSpec], rounds: int, with_baseline: bool
) -> list[tuple[int, ServerSpec, bool]]:
    """``(round, server, from_baseline)`` in the order to run them: per round, the servers
    in order, each asyncwsgi row twice with ``--baseline`` (``baseline.run_order``: the
    side that goes first alternates from pair to pair, across rounds too)."""
    import baseline

    by_name = {spec.name: spec for spec in specs}
    names = list(by_name)
    ours = _run_twice(by_name, with_baseline)
    pairs = sum(1 for name in names if ours(name))
    return [
        (round_no, by_name[name], from_baseline)
        for round_no in range(1, rounds + 1)
        for name, from_baseline in baseline.run_order(names, ours, (round_no - 1) * pairs)
    ]


def row_names(specs: Sequence[ServerSpec], with_baseline: bool) -> list[str]:
    """The report's rows, in order: each asyncwsgi row's baseline right after it."""
    import baseline

    by_name = {spec.name: spec for spec in specs}
    return baseline.table_order(list(by_name), _run_twice(by_name, with_baseline))


def _run_twice(by_name: dict[str, ServerSpec], with_baseline: bool) -> Callable[[str], bool]:
    """Which rows run twice: the asyncwsgi ones, with ``--baseline``."""

    def ours(name: str) -> bool:
        return with_baseline and is_asyncwsgi(by_name[name])

    return ours


def unavailable(spec: ServerSpec) -> str | None:
    import importlib.util

    for module in spec.requires:
        if importlib.util.find_spec(module) is None:
            return f"{module} is not importable by {sys.executable}"
    if spec.apache:
        from apache import modwsgi

        return modwsgi.unavailable_reason()
    return None


def wait_ready(server: Server, port: int) -> None:
    deadline = time.monotonic() + STARTUP_TIMEOUT_S
    last = "no answer"
    while time.monotonic() < deadline:
        if not server.alive():
            raise RuntimeError(f"server exited during start-up:\n{server.log()[-LOG_TAIL_CHARS:]}")
        try:
            status, body = http_get(port, timeout=2.0)
            if status == 200 and body_version(body) == 1:
                return
            last = f"{status} {body[:80]!r}"
        except (OSError, http.client.HTTPException) as exc:
            last = repr(exc)
        time.sleep(0.05)
    raise RuntimeError(f"no version=1 answer within {STARTUP_TIMEOUT_S:.0f} s ({last})")


PROCESS_WAIT_S = 10.0


def check_processes(server: Server, spec: ServerSpec) -> str | None:
    """The server's processes once it answers, described; raises if too few.

    None when not checked (a one-process server, or no /proc).
    """
    import cpustat

    if spec.min_processes <= 1 or server.pgid is None:
        return None
    found = cpustat.wait_for_processes(server.pgid, spec.min_processes, PROCESS_WAIT_S)
    if not found:
        return None
    described = cpustat.describe_processes(found)
    log(f"    processes: {described}")
    if len(found) < spec.min_processes:
        raise RuntimeError(
            f"not running as described: expected at least {spec.min_processes} processes "
            f"{PROCESS_WAIT_S:.0f} s after it answered, found {described}"
        )
    return described


def process_start_ms(python: str = sys.executable, runs: int = 3) -> float | None:
    """Median wall time of a fresh ``python`` importing asyncwsgi and running the app."""
    code = f"import asyncwsgi, runpy; runpy.run_path({str(APP_TEMPLATE)!r})"
    times = []
    for _ in range(runs):
        t0 = time.monotonic()
        try:
            done = subprocess.run([python, "-c", code], capture_output=True, timeout=30)
        except (OSError, subprocess.TimeoutExpired):
            return None
        if done.returncode != 0:
            return None
        times.append(time.monotonic() - t0)
    return sorted(times)[len(times) // 2] * 1000


_RELOAD_LOG_RE = re.compile(
    r"Reloading WSGI script.*|.*[Rr]estart.*|.*[Rr]eloading.*|.*modified.*|"
    r"stopped after \d+ request\(s\).*|"
    # asyncwsgi --reload-on-changes, and a helper that fails to import (--change broken)
    r".*changed; replacing.*|.*could not load.*|.*RuntimeError: broken deploy.*|"
    r".*Worker failed to boot.*|.*Unexpected exit from worker.*"
)


def reload_log_lines(log: str) -> list[str]:
    """The lines of a server log that talk about reloading (first 8)."""
    found = [m.group(0).strip() for m in _RELOAD_LOG_RE.finditer(log)]
    return found[:8]


# ============================================================================ runner


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def other_processes_cpu(before: Any, after: Any, server_pgid: int) -> tuple[float, str]:
    """Cores used by processes outside the server's group and this one, and the busiest.

    Summed per process that is alive at the end, unlike ``cpustat.foreign_cpu`` (which
    takes machine total minus ours): a server that replaces its workers on reload
    (gunicorn, uvicorn, mod_wsgi daemon) would otherwise have the CPU of its exited
    workers counted as someone else's. Processes that exited are missed, so this is a
    lower bound.
    """
    elapsed = after.when - before.when
    if elapsed <= 0:
        return 0.0, ""
    me = os.getpid()
    scale = os.sysconf("SC_CLK_TCK") * elapsed
    used: list[tuple[float, str]] = []
    for pid, proc in after.processes.items():
        if proc.pgrp == server_pgid or pid == me:
            continue
        prev = before.processes.get(pid)
        delta = proc.ticks - (prev.ticks if prev is not None else 0)
        if delta > 0:
            used.append((delta / scale, proc.comm))
    used.sort(reverse=True)
    total = sum(cores for cores, _ in used)
    top = ", ".join(f"{comm} {cores:.2f}" for cores, comm in used[:3] if cores >= 0.05)
    return total, f"{total:.2f} cores used by other processes ({top or 'spread thin'})"


def run_one(
    spec: ServerSpec, args: argparse.Namespace, checkout: Path | None = None
) -> dict[str, Any]:
    """One measurement; ``checkout`` (``--baseline``): the checkout whose asyncwsgi runs."""
    import cpustat

    result: dict[str, Any] = {"name": spec.name, "description": spec.description}
    reason = unavailable(spec)
    if reason is not None:
        result["error"] = reason
        return result
    folder = Path(tempfile.mkdtemp(prefix=f"reload-{spec.name}-"))
    folder.chmod(0o755)  # Apache's children (www-data) must read the script
    server = spec.make()
    if checkout is not None:
        assert isinstance(server, SubprocessServer), f"{spec.name} cannot be pinned"
        server.checkout = checkout
    try:
        script = write_initial_app(folder, args.change)
        port = free_port()
        server.start(script, port)
        if isinstance(server, SubprocessServer) and server.code:
            result["code"] = server.code
        wait_ready(server, port)
        result["processes"] = check_processes(server, spec)

        def with_trigger(write: Change) -> Change:
            def change() -> tuple[float, float]:
                t_change, write_s = write()
                if spec.trigger == SIGHUP:
                    server.signal_reload()
                    write_s = time.monotonic() - t_change
                return t_change, write_s

            return change

        steps = [with_trigger(w) for w in change_steps(args.change, folder, args.write)]
        before = cpustat.snapshot()
        cpu0 = _cpu_seconds()
        load = CLIENTS[args.client](
            port, args.clients, args.before, args.after, steps, args.broken_for
        )
        load.client_cpu_s = _cpu_seconds() - cpu0
        foreign = other_processes_cpu(before, cpustat.snapshot(), server.pgid or -1)
        time.sleep(0.2)  # let the server log its reload before it is stopped
    except Exception as exc:
        result["error"] = f"{type(exc).__name__}: {exc}"
        result["log_tail"] = server.log()[-LOG_TAIL_CHARS:]
        return result
    finally:
        server.stop()
        server_log = server.log()
        shutil.rmtree(folder, ignore_errors=True)

    t_broken = load.t_changes[0] if args.change == "broken" else None
    metrics = compute_metrics(load.events, load.t_start, load.t_change, load.t_end, t_broken)
    duration = load.t_end - load.t_start
    if t_broken is not None:
        # Seconds from the start of the load (the bins' start_ms is relative to the fix).
        result.update(t_broken_s=t_broken - load.t_start, t_fix_s=load.t_change - load.t_start)
    result.update(
        metrics=metrics.__dict__,
        write_ms=load.write_s * 1000,
        duration_s=duration,
        client_cpu_pct=100 * load.client_cpu_s / duration if duration else 0.0,
        foreign_cpu=foreign[1] if foreign[0] >= FOREIGN_CPU_LIMIT else None,
        foreign_cpu_cores=foreign[0],
        reload_log=reload_log_lines(server_log),
        log_tail=server_log[-LOG_TAIL_CHARS:],
        bins={
            "bin_ms": BIN_S * 1000,
            "start_ms": (load.t_start - load.t_change) * 1000,
            **timeline_bins(load.events, load.t_start, load.t_end),
        },
    )
    return result


def plot(
    results: Sequence[dict[str, Any]],
    path: Path,
    title: str,
    change_label: str = "the script rewrite",
) -> bool:
    """One row per server: the whole run (left) and a zoom on the switch-over (right).

    Time 0 is the change (``change_label``, the dashed line); with ``--change broken``
    the broken period before it is shaded.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Patch

    ran = [r for r in results if r.get("metrics")]
    if not ran:
        return False
    fig, axes = plt.subplots(
        len(ran),
        2,
        figsize=(14, 2.3 * len(ran) + 1.0),
        squeeze=False,
        gridspec_kw={"width_ratios": [2.2, 1]},
    )
    colours = {"old": "#9aa7b8", "new": "#2b8a3e", "failed": "#d6336c", "broken": "#fff3bf"}
    labels = {
        "old": "old code (version=1)",
        "new": "new code (version=2)",
        "failed": "failed",
        "broken": "broken helper on disk",
    }
    shaded = False
    for row, r in enumerate(ran):
        m = r["metrics"]
        bins = r["bins"]
        width = bins["bin_ms"] / 1000
        n = len(bins["old"])
        x = [bins["start_ms"] / 1000 + i * width for i in range(n)]
        switch_s = (m["switch_over_ms"] or 0.0) / 1000
        zoom = (-0.1, min(x[-1] + width, max(0.5, switch_s + 0.3)))
        # --change broken: from the broken write to the fix (time 0).
        broken_s = r["t_broken_s"] - r["t_fix_s"] if "t_broken_s" in r else None
        for col in (0, 1):
            ax = axes[row][col]
            if broken_s is not None:
                ax.axvspan(broken_s, 0.0, color=colours["broken"], linewidth=0)
                shaded = True
            bottom = [0] * n
            for series in ("old", "new", "failed"):
                values = bins[series]
                if any(values):
                    ax.bar(
                        x,
                        values,
                        width=width,
                        bottom=bottom,
                        align="edge",
                        color=colours[series],
                        linewidth=0,
                    )
                    bottom = [b + v for b, v in zip(bottom, values, strict=True)]
            ax.axvline(0.0, color="black", linewidth=1, linestyle="--")
            ax.grid(axis="y", alpha=0.3)
            if col == 0:
                ax.set_xlim(x[0], x[-1] + width)
                ax.set_ylabel("responses / 10 ms")
                while_broken = m.get("failed_while_broken")
                ax.set_title(
                    f"{r['name']}: {m['responses']:,} ok, {m['failed']:,} failed"
                    + ("" if while_broken is None else f" ({while_broken:,} while broken)")
                    + f", gap {_fmt_ms(m['longest_gap_ms'])} ms, switch-over "
                    f"{_fmt_ms(m['switch_over_ms'])} ms, {m['old_after_change']:,} old after",
                    fontsize=9,
                    loc="left",
                )
            else:
                ax.set_xlim(*zoom)
                ax.set_title("zoom on the change", fontsize=9, loc="left")
    for ax in axes[-1]:
        ax.set_xlabel(f"seconds from {change_label} (dashed line)")
    keys = ["old", "new", "failed", *(["broken"] if shaded else [])]
    handles = [Patch(color=colours[k], label=labels[k]) for k in keys]
    fig.legend(handles=handles, loc="upper right", ncol=len(keys), fontsize=9, frameon=False)
    fig.suptitle(title, fontsize=11, x=0.01, ha="left")
    fig.tight_layout(rect=(0, 0, 1, 0.97))
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


def machine() -> str:
    model = platform.processor() or platform.machine()
    with contextlib.suppress(OSError), open("/proc/cpuinfo", encoding="utf-8") as f:
        for line in f:
            if line.startswith("model name"):
                model = line.partition(":")[2].strip()
                break
    return f"{model}, {os.cpu_count()} cores, Python {platform.python_version()}"


def versions() -> dict[str, str]:
    out = {}
    for package in ("asyncwsgi", "gunicorn", "uvicorn", "a2wsgi", "granian", "uvloop", "mod_wsgi"):
        try:
            out[package] = importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            out[package] = "not installed"
    return out


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    import baseline

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", 1)[0])
    parser.add_argument(
        "--change",
        choices=tuple(CHANGES),
        default="script",
        help="what is changed under load: the script (default), a helper module the app "
        "imports, or the helper broken (fails to import) and then fixed",
    )
    parser.add_argument(
        "--broken-for",
        type=float,
        default=3.0,
        metavar="S",
        help="--change broken: seconds of load between the broken helper and the fix",
    )
    parser.add_argument(
        "--scenario",
        choices=tuple(SCENARIOS),
        default=None,
        help="which servers: "
        + "; ".join(f"{name}: {', '.join(names)}" for name, names in SCENARIOS.items())
        + " (default embedded; changes with --change helper or broken)",
    )
    parser.add_argument(
        "--only", default="", help="comma-separated server names (overrides --scenario)"
    )
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--before", type=float, default=2.0, help="seconds of load before")
    parser.add_argument("--after", type=float, default=2.0, help="seconds of load after")
    parser.add_argument("--write", choices=("replace", "inplace"), default="replace")
    parser.add_argument("--client", choices=tuple(CLIENTS), default="asyncio")
    parser.add_argument("--rounds", type=int, default=1, help="run every server N times")
    parser.add_argument(
        "--quiet-wait",
        type=float,
        default=15.0,
        help="before each run, wait up to S s for other processes to go idle",
    )
    parser.add_argument(
        "--baseline",
        type=baseline.checkout_dir,
        default=None,
        metavar="DIR",
        help="also run every asyncwsgi row with the code of DIR, another checkout of this "
        "repository (git worktree add DIR COMMIT), as NAME@baseline right after it",
    )
    parser.add_argument("--no-save", action="store_true", help="print only, write no files")
    args = parser.parse_args(argv)
    if not 1 <= args.rounds <= 20:
        parser.error("--rounds must be within 1..20")
    if not 1 <= args.clients <= 1000:
        parser.error("--clients must be within 1..1000")
    if not (0.1 <= args.before <= 60 and 0.1 <= args.after <= 60):
        parser.error("--before/--after must be within 0.1..60 s")
    if not 0.1 <= args.broken_for <= 60:
        parser.error("--broken-for must be within 0.1..60 s")
    if args.scenario is None:
        args.scenario = CHANGES[args.change]
    names = [n.strip() for n in args.only.split(",") if n.strip()]
    unknown = [n for n in names if n not in SERVERS_BY_NAME]
    if unknown:
        parser.error(f"unknown server(s) {unknown}; choose from {list(SERVERS_BY_NAME)}")
    if names:
        args.servers = [SERVERS_BY_NAME[n] for n in names]
    else:
        args.servers = [SERVERS_BY_NAME[n] for n in SCENARIOS[args.scenario]]
    if args.baseline is not None and not any(is_asyncwsgi(s) for s in args.servers):
        parser.error("--baseline needs an asyncwsgi row among the servers (see --only)")
    return args


def report_progress(r: dict[str, Any]) -> None:
    if r.get("metrics"):
        m = r["metrics"]
        while_broken = m.get("failed_while_broken")
        log(
            f"    {m['responses']:,} ok, {m['failed']} failed, "
            + ("" if while_broken is None else f"{while_broken} while broken, ")
            + f"gap {_fmt_ms(m['longest_gap_ms'])} ms, "
            f"switch-over {_fmt_ms(m['switch_over_ms'])} ms, "
            f"{m['old_after_change']} old after change, client CPU {r['client_cpu_pct']:.0f}%"
            + (f", busy machine: {r['foreign_cpu']}" if r.get("foreign_cpu") else "")
        )
    else:
        log(f"    not run: {r.get('error')}")


def wait_for_quiet_machine(max_wait: float, limit: float = FOREIGN_CPU_LIMIT) -> None:
    """Wait (at most ``max_wait`` s) until other processes use under ``limit`` cores."""
    import cpustat

    deadline = time.monotonic() + max_wait
    while True:
        before = cpustat.snapshot()
        time.sleep(0.5)
        foreign = cpustat.foreign_cpu(before, cpustat.snapshot(), our_pgrp=-1)
        if foreign is None or foreign.cores < limit:
            return
        if time.monotonic() >= deadline:
            log(f"    machine still busy after {max_wait:.0f} s ({foreign.describe()}); going on")
            return


_NUMBER_LIST_RE = re.compile(r"\[\n\s*(-?[\d.eE+-]+(?:,\n\s*-?[\d.eE+-]+)*)\n\s*\]")


def dumps_compact_lists(obj: Any) -> str:
    """Indented JSON, but each list of numbers (the 10 ms bins) on one line."""
    text = json.dumps(obj, indent=1)
    return _NUMBER_LIST_RE.sub(lambda m: "[" + re.sub(r",\n\s*", ",", m[1]) + "]", text)


# The dashed line of the timeline: time 0 of each --change.
CHANGE_LABELS = {
    "script": "the script rewrite",
    "helper": "the helper rewrite",
    "broken": "the fix",
}


def file_suffix(change: str, scenario: str, only: bool) -> str:
    """What the file names carry after ``reload-under-load`` / ``reload-timeline``: the
    change unless it is the script's, then the scenario unless it is that change's
    default or ``--only`` chose the servers (``-helper``, ``-broken-all``, ``-daemon``)."""
    parts = [] if change == "script" else [change]
    if not only and scenario != CHANGES[change]:
        parts.append(scenario)
    return "".join(f"-{part}" for part in parts)


def main(argv: list[str] | None = None) -> int:
    sys.path.insert(0, str(BENCH_DIR))  # baseline, cpustat, apache.modwsgi
    args = parse_args(argv)
    import baseline

    now = dt.datetime.now()
    stamp = now.strftime("%Y%m%d-%H%M")
    meta = {
        "date": now.strftime("%Y-%m-%d %H:%M"),
        "machine": machine(),
        "clients": args.clients,
        "client": args.client,
        "before_s": args.before,
        "after_s": args.after,
        "write": "temp file + os.replace" if args.write == "replace" else "in-place write",
        "change": args.change,
        **({"broken_for_s": args.broken_for} if args.change == "broken" else {}),
        "versions": versions(),
        "scenario": "custom (--only)" if args.only else args.scenario,
        "process_start_ms": (
            process_start_ms() if any(s.min_processes > 1 for s in args.servers) else None
        ),
    }
    with_baseline = args.baseline is not None
    if with_baseline:
        meta["baseline"] = baseline.label(args.baseline)
        meta["current"] = baseline.label(baseline.THIS_CHECKOUT)
    results = []
    for round_no, spec, from_baseline in plan_runs(args.servers, args.rounds, with_baseline):
        row = baseline_spec(spec) if from_baseline else spec
        checkout = baseline.checkout_for(is_asyncwsgi(spec), from_baseline, args.baseline)
        label = f" (round {round_no}/{args.rounds})" if args.rounds > 1 else ""
        log(f"--- {row.name}{label}: {row.description}")
        wait_for_quiet_machine(args.quiet_wait)
        r = run_one(row, args, checkout)
        r.update(round=round_no, rounds=args.rounds)
        report_progress(r)
        results.append(r)
    # One table block per row, rounds together; a baseline row right under its own.
    rows = row_names(args.servers, with_baseline)
    results.sort(key=lambda r: (rows.index(r["name"]), r["round"]))
    report = render_markdown(results, meta)
    print(report)
    if args.no_save:
        return 0
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    suffix = file_suffix(args.change, args.scenario, bool(args.only))
    md_path = RESULTS_DIR / f"reload-under-load{suffix}-{stamp}.md"
    json_path = md_path.with_suffix(".json")
    png_path = RESULTS_DIR / f"reload-timeline{suffix}-{stamp}.png"
    scrub = __import__("cpustat").scrub_paths
    json_path.write_text(scrub(dumps_compact_lists({"meta": meta, "servers": results})) + "\n")
    shown = [median_run([r for r in results if r["name"] == name]) for name in rows]
    title = f"{change_title(meta)}, {meta['date']} — {meta['machine']}"
    if args.rounds > 1:
        title += f"\n(per server, the round with the median longest gap of {args.rounds})"
    if plot([r for r in shown if r is not None], png_path, title, CHANGE_LABELS[args.change]):
        report += f"\n![timeline]({png_path.name})\n"
        log(f"saved {png_path}")
    md_path.write_text(scrub(report))
    log(f"saved {md_path} and {json_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
