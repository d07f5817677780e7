"""Unit tests for the pure parts of ``reload_under_load.py`` and ``stat_calls.py``.

Run with: python -m pytest benchmarks/test_reload_metrics.py
"""

from __future__ import annotations

import json

import pytest
from reload_under_load import (
    Response,
    _short_log_line,
    body_version,
    classify,
    compute_metrics,
    dumps_compact_lists,
    failure_kinds,
    failures,
    longest_gap,
    median_run,
    new_before_change,
    old_after_change,
    parse_response,
    render_markdown,
    switch_over,
    timeline_bins,
)
from stat_calls import StopLine, parse_stop_line, render_table

OK_1 = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 9\r\n\r\nversion=1"
OK_2 = b"HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\nversion=2"


# ---------------------------------------------------------------- parse_response


def test_parse_complete_response() -> None:
    parsed = parse_response(OK_1)
    assert parsed is not None
    assert parsed.consumed == len(OK_1)
    assert parsed.status == 200
    assert parsed.body == b"version=1"
    assert parsed.close is False


def test_parse_incomplete_head_and_body() -> None:
    assert parse_response(b"") is None
    assert parse_response(OK_1[:20]) is None
    assert parse_response(OK_1[:-1]) is None


def test_parse_two_pipelined_responses_one_at_a_time() -> None:
    buf = bytearray(OK_1 + OK_2)
    first = parse_response(buf)
    assert first is not None and first.body == b"version=1"
    del buf[: first.consumed]
    second = parse_response(buf)
    assert second is not None and second.body == b"version=2"
    assert second.consumed == len(buf)


def test_parse_header_names_case_insensitive_and_connection_close() -> None:
    raw = b"HTTP/1.1 503 Service Unavailable\r\ncontent-length: 2\r\nConnection: Close\r\n\r\nno"
    parsed = parse_response(raw)
    assert parsed == (len(raw), 503, b"no", True)


def test_parse_http10_closes_unless_keep_alive() -> None:
    closing = parse_response(b"HTTP/1.0 200 OK\r\nContent-Length: 0\r\n\r\n")
    keeping = parse_response(
        b"HTTP/1.0 200 OK\r\nContent-Length: 0\r\nConnection: keep-alive\r\n\r\n"
    )
    assert closing is not None and closing.close is True
    assert keeping is not None and keeping.close is False


def test_parse_no_body_statuses_need_no_length() -> None:
    parsed = parse_response(b"HTTP/1.1 204 No Content\r\n\r\nHTTP/1.1")
    assert parsed == (len(b"HTTP/1.1 204 No Content\r\n\r\n"), 204, b"", False)


@pytest.mark.parametrize(
    "raw",
    [
        b"HTTX/1.1 200 OK\r\nContent-Length: 0\r\n\r\n",
        b"HTTP/1.1 abc OK\r\nContent-Length: 0\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nno colon here\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n9\r\nversion=1\r\n0\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\nversion=1",
    ],
)
def test_parse_rejects_what_the_client_cannot_frame(raw: bytes) -> None:
    with pytest.raises(ValueError):
        parse_response(raw)


# ---------------------------------------------------------------- classification


def test_body_version() -> None:
    assert body_version(b"version=1") == 1
    assert body_version(b"version=2\n") == 2
    assert body_version(b"version=") is None
    assert body_version(b"Hello, world!") is None


def test_classify() -> None:
    assert classify(1.5, 3, 200, b"version=2") == Response(1.5, 3, 2, None)
    assert classify(1.5, 3, 500, b"version=2") == Response(1.5, 3, None, "HTTP 500")
    assert classify(1.5, 3, 200, b"oops") == Response(1.5, 3, None, "unexpected body")


# ---------------------------------------------------------------- metrics

CHANGE = 10.0
EVENTS = [
    Response(9.990, 0, 1),
    Response(9.995, 1, 1),
    Response(10.001, 0, 1),  # in flight at the change: old code, after it
    Response(10.020, 1, None, "connection lost: ECONNRESET"),
    Response(10.030, 2, None, "connect: ECONNREFUSED"),
    Response(10.040, 2, None, "connect: ECONNREFUSED"),
    Response(10.250, 0, 2),
    Response(10.251, 1, 2),
    Response(10.300, 2, 2),
]


def test_failures_and_kinds() -> None:
    assert failures(EVENTS) == 3
    assert failure_kinds(EVENTS) == {"connect: ECONNREFUSED": 2, "connection lost: ECONNRESET": 1}
    assert failures([]) == 0
    assert failure_kinds([]) == {}


def test_switch_over() -> None:
    assert switch_over(EVENTS, CHANGE) == pytest.approx(0.250)
    assert switch_over(EVENTS[:3], CHANGE) is None


def test_switch_over_ignores_new_code_before_the_change() -> None:
    events = [Response(9.0, 0, 2), Response(10.004, 0, 2)]
    assert switch_over(events, CHANGE) == pytest.approx(0.004)
    assert new_before_change(events, CHANGE) == 1


def test_old_after_change() -> None:
    assert old_after_change(EVENTS, CHANGE) == 1
    assert old_after_change(EVENTS, 9.0) == 3
    assert old_after_change(EVENTS, 11.0) == 0


def test_longest_gap_between_responses() -> None:
    ok = [e.t for e in EVENTS if e.ok]
    gap, at = longest_gap(ok)
    assert gap == pytest.approx(0.249)
    assert at == pytest.approx(10.001)


def test_longest_gap_unsorted_input() -> None:
    assert longest_gap([3.0, 1.0, 2.5]) == (pytest.approx(1.5), 1.0)


def test_longest_gap_counts_the_boundaries() -> None:
    # A server that stopped answering before the end of the load.
    assert longest_gap([1.0, 1.1], start=1.0, end=3.0) == (pytest.approx(1.9), 1.1)
    # Times outside the window are ignored.
    assert longest_gap([0.0, 1.0, 1.1, 5.0], start=1.0, end=1.2) == (pytest.approx(0.1), 1.0)


def test_longest_gap_without_responses() -> None:
    assert longest_gap([]) == (0.0, None)
    assert longest_gap([], start=2.0, end=6.0) == (4.0, 2.0)
    assert longest_gap([7.0]) == (0.0, None)


def test_timeline_bins() -> None:
    bins = timeline_bins(EVENTS, start=9.99, end=10.31, bin_s=0.1)
    assert bins == {
        "old": [3, 0, 0, 0],
        "new": [0, 0, 2, 1],
        "failed": [3, 0, 0, 0],
    }


def test_timeline_bins_drop_events_outside_the_window() -> None:
    bins = timeline_bins(EVENTS, start=10.0, end=10.1, bin_s=0.05)
    assert bins == {"old": [1, 0], "new": [0, 0], "failed": [3, 0]}


def test_compute_metrics() -> None:
    m = compute_metrics(EVENTS, t_start=9.98, t_change=CHANGE, t_end=10.5)
    assert m.responses == 6
    assert m.failed == 3
    assert m.requests_per_s == pytest.approx(6 / 0.52)
    # From the first response (9.990): 10.001 -> 10.250 is the longest, and the
    # end boundary (10.300 -> 10.5) is shorter.
    assert m.longest_gap_ms == pytest.approx(249.0)
    assert m.longest_gap_at_ms == pytest.approx(1.0)
    assert m.switch_over_ms == pytest.approx(250.0)
    assert m.old_after_change == 1
    assert m.new_before_change == 0


def test_compute_metrics_server_died() -> None:
    events = [Response(1.0, 0, 1), Response(1.5, 0, None, "connect: ECONNREFUSED")]
    m = compute_metrics(events, t_start=0.9, t_change=1.2, t_end=3.0)
    assert m.responses == 1
    assert m.failed == 1
    assert m.longest_gap_ms == pytest.approx(2000.0)
    assert m.switch_over_ms is None
    assert m.failure_kinds == {"connect: ECONNREFUSED": 1}


def test_median_run_and_markdown() -> None:
    def run(gap: float, round_no: int) -> dict[str, object]:
        metrics = compute_metrics(EVENTS, 9.98, CHANGE, 10.5).__dict__
        return {
            "name": "x",
            "description": "a server",
            "round": round_no,
            "rounds": 3,
            "client_cpu_pct": 12.0,
            "metrics": {**metrics, "longest_gap_ms": gap},
        }

    runs = [run(30.0, 1), run(10.0, 2), run(20.0, 3)]
    chosen = median_run(runs)
    assert chosen is not None and chosen["round"] == 3
    assert median_run([{"name": "x", "error": "not installed"}]) is None

    meta = {
        "date": "2026-01-01 00:00",
        "machine": "test",
        "clients": 16,
        "client": "asyncio",
        "before_s": 2.0,
        "after_s": 2.0,
        "write": "temp file + os.replace",
    }
    text = render_markdown([*runs, {"name": "y", "error": "not installed"}], meta)
    assert "| x #2 | 6 | 12 | 3 | 10.0 | +1 | 250 | 1 | ? |" in text
    assert "| y | not run |" in text
    assert "- x #1: connect: ECONNREFUSED: 2, connection lost: ECONNRESET: 1" in text
    assert "- **x**: a server" in text


def test_short_log_line() -> None:
    line = (
        "[2026-11-30 16:45:07,941] [7742] [INFO] Reloading WSGI script "
        "'/tmp/reload-asyncwsgi-073_loi7/reload_app.py' (embedded mode, 0.4 ms)"
    )
    assert _short_log_line(line) == "Reloading WSGI script 'reload_app.py' (embedded mode, 0.4 ms)"


# ---------------------------------------------------------------- stat_calls


def test_parse_stop_line() -> None:
    log = (
        "Listening on http://127.0.0.1:8000\n"
        "[2026-11-30 16:39:31,512] [26462] [INFO] received SIGTERM; shutting down gracefully\n"
        "[2026-11-30 16:39:31,517] [26462] [INFO] stopped after 123,456 request(s); "
        "7 stat(s) of the WSGI script\n"
    )
    assert parse_stop_line(log) == StopLine(requests=123456, stats=7)
    assert parse_stop_line("stopped after 1 request(s); 0 stat(s) of the WSGI script") == (1, 0)
    assert parse_stop_line("no such line") is None


def test_stop_line_ratio() -> None:
    assert StopLine(1000, 150).stats_per_request == pytest.approx(0.15)
    assert StopLine(0, 0).stats_per_request == 0.0


def test_render_stat_table() -> None:
    rows = [
        {
            "reloading": "on",
            "requests_per_s": 20000.0,
            "requests": 200000,
            "stats": 20000,
            "stats_per_request": 0.1,
            "errors": 0,
        },
        {
            "reloading": "off",
            "requests_per_s": 20500.0,
            "requests": 205000,
            "stats": 0,
            "stats_per_request": 0.0,
            "errors": 0,
        },
    ]
    text = render_table(rows)
    assert "| on | 20,000 | 200,000 | 20,000 | 0.100 | <= 0.2: yes | 0 |" in text
    assert "| off | 20,500 | 205,000 | 0 | 0.000 | exactly 0: yes | 0 |" in text
    assert "Requests/s with reloading on/off = 0.976 (target >= 0.95: yes)" in text


def test_render_stat_table_rounds() -> None:
    rows = [
        {
            "reloading": mode,
            "round": n,
            "rounds": 3,
            "requests_per_s": rps,
            "requests": 1,
            "stats": 0,
            "stats_per_request": 0.0,
            "errors": 0,
        }
        for mode, n, rps in [
            ("on", 1, 90.0),
            ("on", 2, 100.0),
            ("on", 3, 50.0),
            ("off", 1, 100.0),
            ("off", 2, 80.0),
            ("off", 3, 125.0),
        ]
    ]
    text = render_table(rows)
    assert "| on #2 | 100 |" in text
    assert "on/off = 0.900 (target >= 0.95: **NO**) — medians over rounds" in text
    assert "Best rounds: on 100 req/s, off 125 req/s, ratio 0.800" in text
    assert "not available" not in render_table(rows[:1] + rows[3:4])
    assert "not available" in render_table(rows[:1])


def test_dumps_compact_lists_round_trips() -> None:
    data = {"bins": {"old": [1, 0, 2], "start_ms": -2000.5}, "kinds": ["a", "b"], "e": []}
    text = dumps_compact_lists(data)
    assert '"old": [1,0,2]' in text
    assert json.loads(text) == data
