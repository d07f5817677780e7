"""Unit tests for the pure parts of ``chaos.py``: no server, no sockets, no /proc.

Run with: python -m pytest benchmarks/test_chaos.py
"""

from __future__ import annotations

import math
import runpy
from typing import Any

import chaos
import pytest
from chaos import (
    Action,
    DaemonSample,
    Fault,
    Req,
    Stats,
    action_label,
    all_pids,
    answer,
    build_schedule,
    bump_version,
    describe_action,
    enrich,
    excused_by,
    faults_of,
    first_new_code,
    first_new_daemon,
    gone_at,
    held_by_server,
    held_until,
    in_phase,
    is_daemon_title,
    log_digest,
    min_duration,
    never_reading_for,
    parse_args,
    parse_body,
    parse_children,
    parse_proc_net_tcp,
    parse_stat_state,
    parse_vmrss_kib,
    percentile,
    phases,
    render_markdown,
    server_argv,
    set_option,
    stats,
    timeline,
    until_served,
)


def ok(client: int, start: float, end: float, version: int = 1, pid: int = 10) -> Req:
    return Req(client, start, end, 200, None, version, pid)


def failed(client: int, start: float, end: float, status: int | None, error: str) -> Req:
    return Req(client, start, end, status, error)


# ---------------------------------------------------------------- answers


def test_parse_body() -> None:
    assert parse_body(b"version=3 pid=4242\n") == (3, 4242)
    assert parse_body(b"version=3 pid=4242") == (3, 4242)
    assert parse_body(b"Hello, world!\n") is None
    assert parse_body(b"version=3\n") is None


def test_answer_classifies() -> None:
    assert answer(1, 0.0, 0.1, 200, b"version=2 pid=7\n") == Req(1, 0.0, 0.1, 200, None, 2, 7)
    assert answer(1, 0.0, 0.1, 503, b"Too many connections\n").error == "HTTP 503"
    assert answer(1, 0.0, 0.1, 200, b"nope").error == "unexpected body"
    assert answer(1, 0.0, 0.1, 200, b"version=2 pid=7\n").ok


# ---------------------------------------------------------------- excused / lost


def test_502_soon_after_a_kill_is_in_flight() -> None:
    kill = [Fault("kill", 10.0, 99)]
    assert excused_by(failed(0, 9.99, 10.01, 502, "HTTP 502"), kill) == "kill"
    # handed to the dead daemon just after the kill, before the server saw it die
    assert excused_by(failed(0, 10.02, 10.03, 502, "HTTP 502"), kill) == "kill"
    # too late, too early, or not a 502
    assert excused_by(failed(0, 11.5, 11.6, 502, "HTTP 502"), kill) is None
    assert excused_by(failed(0, 9.0, 9.5, 502, "HTTP 502"), kill) is None
    assert excused_by(failed(0, 9.99, 10.01, 503, "HTTP 503"), kill) is None
    assert excused_by(failed(0, 9.99, 10.5, None, "connection lost: ECONNRESET"), kill) is None
    assert excused_by(ok(0, 9.99, 10.01), kill) is None


def test_stop_excuses_502_and_504_until_the_daemon_is_gone() -> None:
    stop = [Fault("stop", 10.0, 99, gone=21.0)]
    assert excused_by(failed(0, 9.99, 21.0, 502, "HTTP 502"), stop) == "stop"
    assert excused_by(failed(0, 14.0, 21.0, 504, "HTTP 504"), stop) == "stop"
    assert excused_by(failed(0, 22.0, 22.1, 502, "HTTP 502"), stop) is None  # started after
    assert excused_by(failed(0, 8.0, 9.0, 502, "HTTP 502"), stop) is None  # ended before
    # the client gave up before the server did: lost
    assert excused_by(failed(0, 9.99, 40.0, None, "timeout"), stop) is None
    # a 502 right after a kill of another daemon is the kill's
    both = [*stop, Fault("kill", 15.0, 98)]
    assert excused_by(failed(0, 14.99, 15.01, 502, "HTTP 502"), both) == "kill"
    never = [Fault("stop", 10.0, 99)]  # never gone
    assert never[0].gone == math.inf
    assert excused_by(failed(0, 50.0, 51.0, 502, "HTTP 502"), never) == "stop"


def test_stats_counts_lost_refused_and_in_flight() -> None:
    faults = [Fault("kill", 10.0, 99)]
    reqs = [
        ok(0, 1.0, 1.002),
        ok(1, 2.0, 2.004),
        failed(2, 9.99, 10.01, 502, "HTTP 502"),  # in flight on the killed daemon
        failed(3, 3.0, 3.001, 503, "HTTP 503"),
        failed(3, 3.1, 3.101, 503, "HTTP 503"),
        failed(4, 4.0, 34.0, None, "timeout"),
    ]
    s = stats(reqs, faults)
    assert (s.sent, s.ok, s.lost, s.refused, s.in_flight_killed) == (6, 2, 3, 2, 1)
    assert s.in_flight_stopped == 0
    assert s.loss_kinds == {"HTTP 503": 2, "timeout": 1}
    assert s.longest_wait_ms == pytest.approx(30_000)
    assert s.p99_ms == pytest.approx(30_000)
    assert s.slow == 1


def test_stats_of_nothing() -> None:
    assert stats([], []) == Stats()


def test_percentile_nearest_rank() -> None:
    values = [float(v) for v in range(1, 101)]
    assert percentile(values, 99) == 99.0
    assert percentile(values, 100) == 100.0
    assert percentile(values, 50) == 50.0
    assert percentile([5.0], 99) == 5.0
    assert percentile([], 99) is None


def test_until_served_counts_retries() -> None:
    reqs = [
        ok(0, 0.0, 0.01),
        failed(0, 1.0, 1.001, 503, "HTTP 503"),
        failed(0, 1.05, 1.051, 503, "HTTP 503"),
        ok(0, 1.1, 1.2),  # waited from 1.0 to 1.2
        ok(1, 0.0, 0.15),
    ]
    waited, open_ = until_served(reqs, t_end=5.0)
    assert waited == pytest.approx(0.2)
    assert not open_


def test_until_served_never_served() -> None:
    reqs = [ok(0, 0.0, 0.01), failed(0, 1.0, 31.0, None, "timeout")]
    waited, open_ = until_served(reqs, t_end=40.0)
    assert waited == pytest.approx(39.0)
    assert open_


# ---------------------------------------------------------------- schedule and phases


def test_timeline_and_min_duration() -> None:
    line = timeline(60, 8)
    assert (line.steady_s, line.settle_s) == (5.0, 8.0)
    assert line.gap_s == pytest.approx(47 / 8)
    d = min_duration(8)
    assert timeline(d, 8).gap_s >= chaos.MIN_GAP_S > timeline(d - 1, 8).gap_s


def test_schedule_is_seeded_and_ordered() -> None:
    a = build_schedule("daemon", 60, seed=1)
    assert a == build_schedule("daemon", 60, seed=1)
    assert a != build_schedule("daemon", 60, seed=2)
    assert [x.kind for x in a] == [k for k, _ in chaos.DAEMON_ACTIONS]
    assert [x.arg for x in a if x.kind == "replace"] == [2, 3, 4]
    assert [x.arg for x in a if x.kind == "flood"] == [50, 100]
    line = timeline(60, len(a))
    for i, action in enumerate(a):
        base = line.steady_s + i * line.gap_s
        assert base <= action.at <= base + 0.2 * line.gap_s + 1e-3
    assert [x.at for x in a] == sorted(x.at for x in a)
    embedded = build_schedule("embedded", 60, seed=1)
    assert [x.kind for x in embedded] == ["replace", "flood", "replace", "flood", "replace"]
    assert not {"kill", "stop"} & {x.kind for x in embedded}


def test_action_labels() -> None:
    assert action_label(Action(1.0, "replace", 3)) == "replace script (v3)"
    assert action_label(Action(1.0, "flood", 50)) == "flood, 50% of workers never-reading"
    assert action_label(Action(1.0, "kill")) == "kill daemon"
    assert action_label(Action(1.0, "stop")) == "stop daemon"


def test_never_reading_for() -> None:
    half, full = Action(1.0, "flood", 50), Action(2.0, "flood", 100)
    assert never_reading_for(half, workers=8, fixed=None, slots=184) == 4
    assert never_reading_for(full, workers=8, fixed=None, slots=184) == 8
    assert never_reading_for(half, workers=5, fixed=None, slots=184) == 3  # rounded up
    assert never_reading_for(half, workers=8, fixed=20, slots=184) == 20
    assert never_reading_for(full, workers=8, fixed=None, slots=5) == 5


def test_phases_and_membership() -> None:
    plist = phases(0.0, [(5.0, "kill daemon"), (10.0, "settle")], 15.0)
    assert [(p.name, p.start, p.end) for p in plist] == [
        ("steady", 0.0, 5.0),
        ("kill daemon", 5.0, 10.0),
        ("settle", 10.0, 15.0),
    ]
    reqs = [ok(0, 4.99, 5.1), ok(0, 5.0, 5.01), ok(0, 15.0, 15.01)]
    assert in_phase(reqs, plist[0]) == [reqs[0]]
    assert in_phase(reqs, plist[1]) == [reqs[1]]
    assert in_phase(reqs, plist[2]) == []
    assert in_phase(reqs, plist[2], last=True) == [reqs[2]]


def test_first_new_code() -> None:
    reqs = [ok(0, 9.0, 9.5, version=1), ok(0, 10.1, 10.3, version=1), ok(1, 10.2, 10.4, 2)]
    assert first_new_code(reqs, 10.0, 2) == pytest.approx(0.4)
    assert first_new_code(reqs, 10.0, 3) is None
    # newer code also counts (a later replacement overtook this one)
    assert first_new_code([ok(0, 10.2, 10.5, version=4)], 10.0, 3) == pytest.approx(0.5)


def test_bump_version_and_the_app() -> None:
    text = chaos.APP_TEMPLATE.read_text()
    assert "VERSION = 1\n" in text
    bumped = bump_version(text, 7)
    assert "VERSION = 7\n" in bumped and "VERSION = 1\n" not in bumped
    with pytest.raises(ValueError):
        bump_version("no version here", 2)
    app = runpy.run_path(str(chaos.APP_TEMPLATE))["application"]
    seen: list[Any] = []

    def start_response(status: str, headers: list[tuple[str, str]]) -> None:
        seen.append((status, dict(headers)))

    body = b"".join(app({"PATH_INFO": "/"}, start_response))
    assert parse_body(body) is not None and parse_body(body)[0] == 1  # type: ignore[index]
    assert seen[-1][1]["Content-Length"] == str(len(body))
    big = app({"PATH_INFO": "/big"}, start_response)
    size = int(seen[-1][1]["Content-Length"])
    assert size >= 8 * 1024 * 1024
    assert sum(len(chunk) for chunk in big) == size


def test_set_option() -> None:
    argv = ["py", "-m", "asyncwsgi", "app", "--threads", "8", "--no-access-log"]
    assert set_option(argv, "--threads", "4") == [*argv[:5], "4", "--no-access-log"]
    assert set_option(argv, "--processes", "2")[-2:] == ["--processes", "2"]
    assert argv[5] == "8"  # not modified in place


# ---------------------------------------------------------------- /proc parsing

STATUS = """Name:\tpython
Umask:\t0022
State:\tS (sleeping)
VmPeak:\t  250000 kB
VmRSS:\t   30412 kB
RssAnon:\t   20000 kB
"""

NET_TCP = """\
  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 0100007F:A0B4 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 1 1
   1: 0100007F:A0B4 0100007F:C350 01 00000000:00000000 00:00000000 00000000     0        0 2 1
   2: 0100007F:A0B4 0100007F:C351 08 00000000:00000000 00:00000000 00000000     0        0 3 1
   3: 0100007F:A0B4 0100007F:C352 04 00000000:00400000 00:00000000 00000000     0        0 4 1
   4: 0100007F:C350 0100007F:A0B4 01 00000000:00000000 00:00000000 00000000     0        0 5 1
   garbage line
"""


def test_parse_vmrss() -> None:
    assert parse_vmrss_kib(STATUS) == 30412
    assert parse_vmrss_kib("Name:\tkthreadd\n") is None


def test_parse_children_and_titles() -> None:
    assert parse_children(["101 102 ", "", "102 103\n"]) == [101, 102, 103]
    assert is_daemon_title(b"asyncwsgi: daemon default\0\0\0")
    assert is_daemon_title(b"asyncwsgi: daemon shop")
    assert not is_daemon_title(b"asyncwsgi: main")
    assert not is_daemon_title(b"/usr/bin/python\0-m\0asyncwsgi\0")


def test_parse_stat_state() -> None:
    assert parse_stat_state("4242 (asyncwsgi: daemon) T 1 4240 4240 0 -1") == "T"
    assert parse_stat_state("4242 (odd ) name) Z 1 4240") == "Z"
    assert parse_stat_state("") == "?"


def test_parse_proc_net_tcp_and_held() -> None:
    socks = parse_proc_net_tcp(NET_TCP)
    assert socks[0] == (0xA0B4, 0, 0x0A)
    assert len(socks) == 5
    # the server's side: ESTABLISHED and CLOSE_WAIT are held, FIN_WAIT1 is not
    assert held_by_server(socks, 0xA0B4, [0xC350, 0xC351, 0xC352]) == 2
    assert held_by_server(socks, 0xA0B4, [0xC352]) == 0
    assert held_by_server(socks, 0xA0B4, []) == 0


# ---------------------------------------------------------------- what actions caused


def sample(t: float, *daemons: tuple[int, str]) -> DaemonSample:
    return DaemonSample(t, tuple(daemons), 30_000, 50_000)


SAMPLES = [
    sample(1.0, (10, "S"), (11, "S")),
    sample(2.0, (11, "S")),
    sample(2.2, (11, "S"), (12, "S")),
    sample(3.0, (11, "T"), (12, "S")),
    sample(7.0, (11, "T"), (12, "S"), (13, "S")),
    sample(9.0, (12, "S"), (13, "S")),
]


def test_daemon_sample_helpers() -> None:
    assert first_new_daemon(SAMPLES, 1.9, {10, 11}) == 2.2
    assert first_new_daemon(SAMPLES, 3.0, {10, 11, 12}) == 7.0
    assert first_new_daemon(SAMPLES, 9.5, {10, 11, 12, 13}) is None
    assert gone_at(SAMPLES, 1.5, 10) == 2.0
    assert gone_at(SAMPLES, 3.0, 11) == 9.0
    assert gone_at(SAMPLES, 3.0, 12) is None
    assert all_pids(SAMPLES) == {10, 11, 12, 13}


def test_held_until() -> None:
    assert held_until([(1.0, 5), (2.0, 1), (2.5, 0), (3.0, 0)], 0.5) == pytest.approx(2.0)
    assert held_until([(1.0, 5), (2.0, 1)], 0.5) is None
    assert held_until([], 0.5) is None


def test_enrich_kill_and_replace() -> None:
    kill: dict[str, Any] = {"kind": "kill", "t": 1.9, "pid": 10, "known": [10, 11]}
    enrich(kill, [], SAMPLES, phase_end=2.9, run_end=10.0)
    assert kill["new_daemon_s"] == pytest.approx(0.3)
    replace: dict[str, Any] = {"kind": "replace", "t": 4.0, "version": 2}
    enrich(replace, [ok(0, 4.1, 4.25, version=2)], SAMPLES, phase_end=6.0, run_end=10.0)
    assert replace["new_code_s"] == pytest.approx(0.25)
    assert "script v2; new code answered after 0.25 s" in describe_action(replace)
    assert "a new daemon after 0.30 s" in describe_action(kill)


def test_enrich_stop_finds_the_stuck_requests() -> None:
    stop: dict[str, Any] = {"kind": "stop", "t": 2.9, "pid": 11, "known": [11, 12]}
    reqs = [
        failed(1, 2.95, 9.0, 502, "HTTP 502"),  # stuck, answered when the server killed it
        failed(2, 5.0, 9.0, 502, "HTTP 502"),  # routed to it before it was found out
        failed(3, 2.0, 2.5, 502, "HTTP 502"),  # before the stop
        ok(4, 3.0, 4.5),  # slow but served: not on the stopped daemon
        failed(5, 4.0, 6.5, 503, "HTTP 503"),  # a refusal, not stuck
    ]
    enrich(stop, reqs, SAMPLES, phase_end=6.0, run_end=10.0)
    assert stop["gone_s"] == pytest.approx(6.1)
    assert stop["new_daemon_s"] == pytest.approx(4.1)
    assert stop["stuck"] == 2
    assert stop["stuck_from_s"] == pytest.approx(0.05)
    assert stop["stuck_to_s"] == pytest.approx(2.1)
    assert stop["stuck_longest_s"] == pytest.approx(6.05)
    assert stop["stuck_outcomes"] == {"HTTP 502": 2}
    text = describe_action(stop)
    assert "SIGSTOP daemon 11" in text and "the server killed it after 6.10 s" in text
    assert "2 request(s) stuck on it" in text
    (fault,) = faults_of([stop])
    assert fault[:3] == ("stop", 2.9, 11)
    assert fault.gone == pytest.approx(9.0)


def test_stop_never_taken_out() -> None:
    stop: dict[str, Any] = {"kind": "stop", "t": 2.9, "pid": 12, "known": [11, 12]}
    enrich(stop, [failed(1, 3.0, 33.0, None, "timeout")], SAMPLES, 6.0, run_end=10.0)
    assert stop["gone_s"] is None
    assert stop["stuck_outcomes"] == {"timeout": 1}
    assert "still there at the end" in describe_action(stop)
    (fault,) = faults_of([stop])
    assert fault.gone == math.inf
    assert faults_of([{"kind": "kill", "t": 1.0, "error": "no running daemon to signal"}]) == []


def test_enrich_flood_counts_refusals() -> None:
    flood: dict[str, Any] = {
        "kind": "flood",
        "t": 10.0,
        "opened": 184,
        "never_reading": 4,
        "half_head": 180,
        "refused_at_open": 3,
        "held_s": 4.0,
        "never_reading_dropped_s": 3.1,
        "never_reading_held_at_end": 0,
        "half_head_dropped_s": None,
        "half_head_held_at_end": 12,
        "answers_seen": {"HTTP/1.1 408": 168, "nothing": 12, "HTTP/1.1 200": 4},
    }
    reqs = [
        failed(16, 10.5, 10.501, 503, "HTTP 503"),
        failed(16, 12.0, 12.001, 503, "HTTP 503"),
        failed(16, 15.0, 15.001, 503, "HTTP 503"),  # next phase
        ok(0, 11.0, 11.001),
    ]
    enrich(flood, reqs, SAMPLES, phase_end=14.0, run_end=20.0)
    assert flood["refused"] == 2
    assert flood["refused_until_s"] == pytest.approx(2.001)
    text = describe_action(flood)
    assert "184 bad connections (4 never-reading /big, 180 half-head)" in text
    assert "well-behaved requests refused (503): 2" in text
    assert "server dropped all never-reading after 3.1 s" in text
    assert "server still held 12 half-head after 4.0 s" in text
    assert "HTTP/1.1 408 x168" in text


def test_describe_error() -> None:
    assert describe_action({"kind": "kill", "error": "no running daemon"}) == (
        "kill: no running daemon"
    )


# ---------------------------------------------------------------- log and report

LOG = """\
[2026-12-06 22:29:11,008] [29342] [INFO] rejecting request from 127.0.0.1:38406: 408
[2026-12-06 22:29:11,100] [29342] [WARNING] connection limit (200) reached; refusing a connection
[2026-12-06 22:29:11,200] [29342] [WARNING] connection limit (200) reached; refusing a connection
[2026-12-06 22:29:12,000] [29342] [INFO] daemon group 'default': process 30519 ready in 469 ms
[2026-12-06 22:29:12,500] [29342] [INFO] daemon group 'default': process 30520 ready in 212 ms
[2026-12-06 22:29:13,000] [29342] [ERROR] daemon process 29355 went away with 1 request(s)
"""


def test_log_digest() -> None:
    assert log_digest(LOG) == [
        "WARNING: connection limit (200) reached; refusing a connection (x2)",
        "daemon group 'default': process 30519 ready in 469 ms (x2)",
        "ERROR: daemon process 29355 went away with 1 request(s)",
    ]
    many = "\n".join(f"[x] [ERROR] kind{chr(97 + i)} thing" for i in range(5))
    assert log_digest(many, limit=2) == [
        "ERROR: kinda thing",
        "ERROR: kindb thing",
        "... 3 more kinds of line",
    ]


META = {
    "date": "2026-12-06 22:30",
    "machine": "AMD EPYC, 2 cores, Python 3.11.7",
    "clients": 16,
    "newcomers": 4,
    "rate_text": "400 requests/s in all",
    "max_connections": 200,
    "duration_s": 60.0,
    "seed": 1,
}


def run_dict(mode: str = "daemon") -> dict[str, Any]:
    total = Stats(sent=100, ok=95, lost=3, refused=2, in_flight_killed=2, in_flight_stopped=1)
    total.longest_wait_ms, total.p99_ms = 11_864.0, 8.4
    total.loss_kinds = {"HTTP 503": 2, "timeout": 1}
    phase_stats = Stats(sent=50, ok=50, longest_wait_ms=5.0, p99_ms=1.9).__dict__
    total.slow = 2
    return {
        "name": "daemon 2x4" if mode == "daemon" else "embedded x4",
        "mode": mode,
        "argv": ["python", "-m", "asyncwsgi", "chaos.wsgi"],
        "total": {**total.__dict__, "until_served_ms": 12_000.0, "until_served_open": False},
        "phases": [
            {"name": "steady", "from_s": 0.0, "stats": phase_stats, "what": "load only"},
            {
                "name": "stop daemon",
                "from_s": 17.4,
                "stats": total.__dict__,
                "what": "SIGSTOP daemon 1",
            },
        ],
        "memory": {
            "server_before_kib": 30412,
            "server_after_kib": 33075,
            "daemons_before_kib": 55296 if mode == "daemon" else None,
            "daemons_after_kib": 55501 if mode == "daemon" else None,
            "server_peak_kib": 34000,
            "daemons_peak_kib": 80000,
            "fds_before": 51,
            "fds_after": 51,
        },
        "killed": 2,
        "stopped": 1,
        "replaced": 8,
        "processes": "3: `asyncwsgi: main`, `asyncwsgi: daemon default` x2",
        "client_cpu_pct": 9.0,
        "foreign_cpu_cores": 0.04,
        "log_digest": ["WARNING: something (x2)"],
    }


def test_render_markdown() -> None:
    not_run = {"name": "embedded x4", "mode": "embedded", "error": "RuntimeError: boom"}
    text = render_markdown([run_dict(), run_dict("embedded"), not_run], META)
    assert text.startswith("## Chaos — 2026-12-06 22:30\n")
    assert "16 well-behaved keep-alive clients and 4 that open a new connection" in text
    row = next(line for line in text.splitlines() if line.startswith("| daemon 2x4 |"))
    cells = [c.strip() for c in row.strip("|").split("|")]
    assert cells == [
        "daemon 2x4",
        "100",
        "95",
        "3",
        "2",
        "2",
        "11,864",
        "12,000",
        "8.4",
        "29.7 → 32.3",
        "54.0 → 54.2",
        "2 / 1 / 8",
    ]
    embedded = next(line for line in text.splitlines() if line.startswith("| embedded x4 | 100"))
    assert embedded.endswith("| 29.7 → 32.3 | — → — | — |")
    assert "| embedded x4 | not run |" in text
    assert "Not run: RuntimeError: boom" in text
    assert "| stop daemon | 17.4 | 100 | 95 | 3 | 2 | 2 | 11,864 | 8.4 | SIGSTOP daemon 1 |" in text
    assert "- stop daemon: lost HTTP 503: 2, timeout: 1" in text
    assert "- stop daemon: 2 request(s) waited 1 s or more" in text
    assert "- steady: " not in text
    assert "1 of the requests in flight on a killed daemon were on the stopped one" in text
    assert "    WARNING: something (x2)" in text
    # every table row has as many cells as its header
    for block in text.split("\n\n"):
        rows = [line for line in block.splitlines() if line.startswith("|")]
        assert len({line.count("|") for line in rows}) <= 1, block


def test_render_unserved_client() -> None:
    r = run_dict()
    r["total"]["until_served_open"] = True
    assert "≥ 12,000 (never served)" in render_markdown([r], META)


# ---------------------------------------------------------------- arguments


def test_parse_args_defaults() -> None:
    args = parse_args([])
    assert args.modes == ["daemon"]
    assert (args.duration, args.clients, args.newcomers, args.max_connections) == (60, 16, 4, 200)
    assert (args.processes, args.threads, args.seed, args.never_reading) == (2, 4, 1, None)
    assert parse_args(["--mode", "both"]).modes == ["daemon", "embedded"]


@pytest.mark.parametrize(
    "argv",
    [
        ["--duration", "20"],  # too short for 8 actions
        ["--mode", "both", "--duration", "40"],
        ["--max-connections", "20"],  # 16 + 4 clients need more
        ["--never-reading", "500"],
        ["--rate", "-1"],
        ["--clients", "0"],
        ["--duration", "1000"],
    ],
)
def test_parse_args_refuses(argv: list[str]) -> None:
    with pytest.raises(SystemExit):
        parse_args(argv)


def test_embedded_needs_a_shorter_run() -> None:
    need = min_duration(len(chaos.EMBEDDED_ACTIONS))
    assert need < min_duration(len(chaos.DAEMON_ACTIONS))
    assert parse_args(["--mode", "embedded", "--duration", str(need)]).duration == need


def test_server_argv(tmp_path: Any) -> None:
    args = parse_args(["--threads", "3", "--processes", "5", "--max-connections", "99"])
    script = tmp_path / "chaos.wsgi"
    daemon = server_argv(script, 8123, "daemon", args)
    assert daemon[1:4] == ["-m", "asyncwsgi", str(script)]
    for name, value in (
        ("--threads", "3"),
        ("--processes", "5"),
        ("--mode", "daemon"),
        ("--max-connections", "99"),
        ("--header-timeout", "2"),
        ("--send-timeout", "3"),
        ("--bind", "127.0.0.1:8123"),
    ):
        assert daemon.count(name) == 1, name
        assert daemon[daemon.index(name) + 1] == value, name
    embedded = server_argv(script, 8123, "embedded", args)
    assert "--mode" not in embedded and "--processes" not in embedded
    assert embedded[embedded.index("--threads") + 1] == "3"
