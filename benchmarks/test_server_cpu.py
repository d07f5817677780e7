"""Unit tests for the server's CPU per request, the comparison with granian and the share
of the ideal req/s (``run.py``'s ``io`` scenario). Nothing here starts a server.

Run with: python -m pytest benchmarks/test_server_cpu.py
"""

from __future__ import annotations

import json

import cpustat
from cpustat import CpuSnapshot, ProcCpu, tree_cpu_seconds
from report import (
    Measurement,
    RunReport,
    ServerOutcome,
    combine_rounds,
    format_share,
    ideal_rps,
    render_markdown,
    render_relative_table,
    render_table,
    summarize,
)
from test_scenarios import WRK_OUT
from wrkparse import parse_wrk_output

TCK = cpustat._CLK_TCK


def snap(*procs: tuple[int, int, int, int]) -> CpuSnapshot:
    """A snapshot of processes given as (pid, ppid, pgrp, ticks)."""
    return CpuSnapshot(
        0.0, 0, {pid: ProcCpu(pid, pgrp, "p", ticks, ppid) for pid, ppid, pgrp, ticks in procs}, 0
    )


def test_tree_cpu_seconds_counts_the_server_tree_only() -> None:
    before = snap((100, 1, 100, 50), (101, 100, 100, 10), (200, 1, 200, 5))
    after = snap(
        (100, 1, 100, 50 + TCK),  # the server: 1 s
        (101, 100, 100, 10 + TCK // 2),  # its worker: 0.5 s
        (102, 100, 102, TCK // 4),  # a worker started during the run: 0.25 s
        (200, 1, 200, 5 + 10 * TCK),  # someone else: not counted
    )
    assert tree_cpu_seconds(before, after, 100) == 1.75
    assert tree_cpu_seconds(before, after, 999) == 0.0
    assert tree_cpu_seconds(before, CpuSnapshot(0.0, None, {}, 0), 100) is None  # no /proc


def wrk(rps: str = "10000.00", requests: str = "30000") -> Measurement:
    text = WRK_OUT.replace("10000.00", rps).replace("30000 requests", f"{requests} requests")
    return Measurement(50, result=parse_wrk_output(text))


def outcome(name: str, rps: str, cpu_s: float | None, c: int = 50) -> ServerOutcome:
    out = ServerOutcome(name, "desc", "v1")
    m = wrk(rps)
    m.connections = c
    m.server_cpu_s = cpu_s
    out.measurements[c] = m
    return out


def test_cpu_per_request() -> None:
    m = wrk()
    assert m.cpu_us_per_request is None
    m.server_cpu_s = 1.5
    assert m.cpu_us_per_request == 50.0  # 1.5 s / 30,000 requests
    assert Measurement(50, server_cpu_s=1.0).cpu_us_per_request is None  # wrk failed
    data = m.to_dict()
    assert data["server_cpu_s"] == 1.5 and data["server_cpu_us_per_request"] == 50.0
    json.dumps(data)


def test_summarize_takes_the_median_cpu() -> None:
    runs = [wrk() for _ in range(3)]
    for m, cpu in zip(runs, (0.9, 1.5, None), strict=True):
        m.server_cpu_s = cpu
    assert summarize(runs).cpu_us == 40.0  # median of 30 and 50; the unknown one left out
    assert summarize([wrk()]).cpu_us is None


def test_table_has_a_cpu_column_when_measured() -> None:
    rows = [outcome("asyncwsgi", "10000.00", 1.5), outcome("granian", "20000.00", 0.3)]
    rows.append(ServerOutcome("waitress", "", "", failure="failed to start"))
    lines = render_table(rows, [50], "asyncwsgi").splitlines()
    assert lines[0] == (
        "| server | c=50 req/s | c=50 p99 ms | c=50 errors | c=50 server CPU µs/request "
        "| c=50 asyncwsgi/peer |"
    )
    assert lines[2] == "| asyncwsgi | 10,000 | 8.00 | 0 | 50 | 1.00x |"
    assert lines[3] == "| granian | 20,000 | 8.00 | 0 | 10 | 0.50x |"
    assert lines[4] == "| waitress (not run) | — | — | — | — | — |"
    # Without /proc (no CPU anywhere) the table is as it was.
    plain = [outcome("asyncwsgi", "10000.00", None)]
    assert render_table(plain, [50]).splitlines()[2] == "| asyncwsgi | 10,000 | 8.00 | 0 | 1.00x |"


def test_table_cpu_column_with_rounds() -> None:
    row = combine_rounds([outcome("asyncwsgi", "10000.00", cpu) for cpu in (1.2, 1.5, 0.9)])
    lines = render_table([row], [50], "asyncwsgi", rounds=3).splitlines()
    assert "| c=50 server CPU µs/request median |" in lines[0]
    assert lines[2] == "| asyncwsgi | 10,000 (10,000-10,000) | 8.00 | 0 | 40 | 1.00x |"


def test_ideal_and_share() -> None:
    assert ideal_rps(256, 0.010) == 25_600
    assert format_share(12_800, 25_600) == "50.0%"
    assert format_share(None, 25_600) == "n/a"


def test_relative_table_against_granian_and_the_ideal() -> None:
    rows = [
        outcome("asyncwsgi-default", "2048.00", 1.5, c=256),  # 50 µs/request
        outcome("granian", "25088.00", 0.3, c=256),  # 10 µs/request
        ServerOutcome("gunicorn-gthread-256t", "", "", failure="x"),
    ]
    lines = render_relative_table(rows, [256], "granian", 0.010).splitlines()
    assert lines[0] == (
        "| server | c=256 share of ideal (25,600 req/s) | c=256 req/s ÷ granian's "
        "| c=256 CPU/request ÷ granian's |"
    )
    assert lines[2] == "| asyncwsgi-default | 8.0% | 0.08x | 5.00x |"
    assert lines[3] == "| granian | 98.0% | 1.00x | 1.00x |"
    assert lines[4] == "| gunicorn-gthread-256t (not run) | n/a | n/a | n/a |"
    # No granian row: the share of the ideal alone; neither: no table.
    only_ideal = render_relative_table(rows[:1], [256], "granian", 0.010).splitlines()
    assert only_ideal[0] == "| server | c=256 share of ideal (25,600 req/s) |"
    assert render_relative_table(rows[:1], [256], None, None) == ""
    # No CPU measured: no CPU ratio.
    no_cpu = [outcome("asyncwsgi", "1000.00", None), outcome("granian", "2000.00", None)]
    header = render_relative_table(no_cpu, [50], "granian").splitlines()[0]
    assert header == "| server | c=50 req/s ÷ granian's |"


def test_markdown_and_json_with_cpu_and_the_ideal() -> None:
    rows = [
        outcome("asyncwsgi-default", "2048.00", 1.5, c=256),
        outcome("granian", "25088.00", 0.3, c=256),
    ]
    report = RunReport(
        "d", {}, ["wrk"], ["n"], [256], rows, "asyncwsgi-default", reference="granian"
    )
    report.app_wait_s = 0.010
    text = render_markdown(report)
    assert "`server CPU µs/request`: the CPU time" in text
    assert "| asyncwsgi-default | 8.0% | 0.08x | 5.00x |" in text
    assert "connections / 10 ms" in text and "`CPU/request ÷ granian's`" in text
    data = report.to_dict()
    assert data["reference"] == "granian" and data["ideal_rps"] == {"256": 25_600}
    # A hello-world report without granian or CPU: no second table, no new keys.
    plain = RunReport("d", {}, ["wrk"], ["n"], [50], [outcome("asyncwsgi", "1.00", None)])
    assert "÷" not in render_markdown(plain) and "µs" not in render_markdown(plain)
    assert "reference" not in plain.to_dict() and "ideal_rps" not in plain.to_dict()
