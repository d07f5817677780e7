"""Unit tests for the wrk output parser and the report's ratio formatting.

Run with: python -m pytest benchmarks/test_wrkparse.py
"""

from __future__ import annotations

import socket
import sys

import pytest
from report import Measurement, ServerOutcome, format_ratio, render_table
from wrkparse import WrkParseError, parse_duration_ms, parse_wrk_output

# Real output of wrk 4.1.0 against granian, no errors.
CLEAN = """\
Running 2s test @ http://127.0.0.1:47519/
  2 threads and 50 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency     3.05ms    1.73ms  26.83ms   90.87%
    Req/Sec     8.32k   742.51     9.49k    75.00%
  Latency Distribution
     50%    2.71ms
     75%    3.22ms
     90%    4.25ms
     99%   14.85ms
  33108 requests in 2.00s, 4.29MB read
Requests/sec:  16544.21
Transfer/sec:      2.14MB
"""

# Real output of wrk 4.1.0 against gunicorn gthread at 1000 connections (timeouts),
# with a "Non-2xx or 3xx responses" line added in wrk's own format.
WITH_ERRORS = """\
Running 3s test @ http://127.0.0.1:18770/
  2 threads and 1000 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency   223.10ms  124.73ms   2.00s    95.46%
    Req/Sec     0.88k   312.85     1.53k    63.33%
  Latency Distribution
     50%  212.50ms
     75%  231.88ms
     90%  255.38ms
     99%  811.34ms
  5242 requests in 3.06s, 809.11KB read
  Socket errors: connect 3, read 5, write 7, timeout 27
  Non-2xx or 3xx responses: 11
Requests/sec:   1714.30
Transfer/sec:    264.60KB
"""

# Sub-millisecond and multi-second percentiles, as wrk prints them.
MIXED_UNITS = """\
Running 1s test @ http://127.0.0.1:8000/
  1 threads and 1 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency   328.95us  245.29us   5.59ms   97.12%
    Req/Sec     2.59k   317.71     3.66k    76.67%
  Latency Distribution
     50%  302.00us
     75%  335.00us
     90%    1.00s
     99%    1.50m
  7747 requests in 3.01s, 1.13MB read
Requests/sec:   2575.34
Transfer/sec:    384.79KB
"""


def test_clean_run() -> None:
    result = parse_wrk_output(CLEAN)
    assert result.requests_per_sec == pytest.approx(16544.21)
    assert result.requests == 33108
    assert result.latency_percentiles_ms == {50.0: 2.71, 75.0: 3.22, 90.0: 4.25, 99.0: 14.85}
    assert result.p99_ms == pytest.approx(14.85)
    assert result.socket_errors == 0
    assert result.non_2xx_3xx == 0
    assert result.errors == 0


def test_errors_are_summed() -> None:
    result = parse_wrk_output(WITH_ERRORS)
    assert result.requests_per_sec == pytest.approx(1714.30)
    assert result.p99_ms == pytest.approx(811.34)
    assert (result.connect_errors, result.read_errors) == (3, 5)
    assert (result.write_errors, result.timeout_errors) == (7, 27)
    assert result.socket_errors == 42
    assert result.non_2xx_3xx == 11
    assert result.errors == 53
    data = result.to_dict()
    assert data["errors"] == 53
    assert data["latency_percentiles_ms"]["99"] == pytest.approx(811.34)


def test_units() -> None:
    result = parse_wrk_output(MIXED_UNITS)
    assert result.latency_percentiles_ms[50.0] == pytest.approx(0.302)
    assert result.latency_percentiles_ms[90.0] == pytest.approx(1000.0)
    assert result.p99_ms == pytest.approx(90_000.0)
    assert parse_duration_ms("2h") == pytest.approx(7_200_000.0)
    with pytest.raises(WrkParseError):
        parse_duration_ms("-nanus")


def test_without_latency_flag() -> None:
    text = "\n".join(line for line in CLEAN.splitlines() if "%" not in line or "Req" in line)
    text = text.replace("  Latency Distribution\n", "")
    result = parse_wrk_output(text)
    assert result.p99_ms is None
    assert result.requests_per_sec == pytest.approx(16544.21)


@pytest.mark.parametrize(
    "text",
    ["", "unable to connect to 127.0.0.1:1 Connection refused\n", CLEAN.split("Requests/sec")[0]],
)
def test_incomplete_output_is_rejected(text: str) -> None:
    with pytest.raises(WrkParseError):
        parse_wrk_output(text)


def test_ratio_and_table() -> None:
    assert format_ratio(21_000.0, 10_000.0) == "2.10x"
    assert format_ratio(None, 10_000.0) == "n/a"
    assert format_ratio(10_000.0, 0.0) == "n/a"

    ours = ServerOutcome("asyncwsgi", "", "")
    ours.measurements[50] = Measurement(50, result=parse_wrk_output(CLEAN))
    peer = ServerOutcome("gunicorn-gthread", "", "")
    peer.measurements[50] = Measurement(50, result=parse_wrk_output(WITH_ERRORS))
    broken = ServerOutcome("granian", "", "", failure="failed to start")
    table = render_table([ours, peer, broken], [50]).splitlines()
    assert table[2] == "| asyncwsgi | 16,544 | 14.85 | 0 | 1.00x |"
    assert table[3] == "| gunicorn-gthread | 1,714 | 811.34 | 53 | 9.65x |"
    assert table[4] == "| granian (not run) | — | — | — | — |"


def test_queued_connections_are_shown() -> None:
    peer = ServerOutcome("waitress", "", "")
    peer.measurements[1000] = Measurement(
        1000, result=parse_wrk_output(CLEAN), accept_queue=[903, 902, 100]
    )
    assert peer.measurements[1000].queued == 902
    assert peer.measurements[1000].many_queued
    row = render_table([peer], [1000]).splitlines()[2]
    assert row == "| waitress | 16,544 | 14.85 | 0 (902 queued) | n/a |"
    assert not Measurement(1000, accept_queue=[3, 40, 2]).many_queued
    assert Measurement(1000).queued is None


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/net/tcp")
def test_accept_queue_length() -> None:
    from run import accept_queue_length

    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(16)
        port = listener.getsockname()[1]
        assert accept_queue_length(port) == 0
        clients = [socket.create_connection(("127.0.0.1", port), timeout=5) for _ in range(3)]
        try:
            assert accept_queue_length(port) == 3
        finally:
            for client in clients:
                client.close()
