"""Unit tests for ``run.py --rounds``: the order of the rounds, medians and spread over
them, the table, the notes and the JSON. Nothing here starts a server.

Run with: python -m pytest benchmarks/test_rounds.py
"""

from __future__ import annotations

from pathlib import Path

import baseline
import pytest
import run
from report import (
    Measurement,
    RunReport,
    ServerOutcome,
    before_after,
    combine_rounds,
    render_markdown,
    render_table,
    summarize,
)
from test_scenarios import WRK_OUT
from test_wrkparse import WITH_ERRORS
from wrkparse import parse_wrk_output


def measured(
    rps: float, p99: str = "8.00ms", connections: int = 50, errors: bool = False
) -> Measurement:
    """A measurement whose wrk run served ``rps`` req/s with that p99 (and, with ``errors``,
    WITH_ERRORS's 53 errors)."""
    text = WITH_ERRORS if errors else WRK_OUT
    text = text.replace("1714.30" if errors else "10000.00", f"{rps:.2f}")
    text = text.replace("811.34ms" if errors else "8.00ms", p99)
    return Measurement(connections, result=parse_wrk_output(text))


def one_round(name: str, *rps: float, failure: str | None = None) -> ServerOutcome:
    """One round's outcome: ``rps[i]`` at c=50 (i=0) and c=1000 (i=1)."""
    out = ServerOutcome(name, "desc", "v1", argv=["serve"], failure=failure)
    for c, value in zip((50, 1000), rps, strict=False):
        out.measurements[c] = measured(value, connections=c)
    return out


def rounds_of(name: str, *per_round: float) -> ServerOutcome:
    """A row over several rounds, c=50 only: one req/s per round."""
    return combine_rounds([one_round(name, value) for value in per_round])


# ---------------------------------------------------------------- order


def test_plan_rounds_interleaves_and_swaps_each_pair() -> None:
    ours = {"a"}.__contains__
    assert baseline.plan_rounds(["a", "peer"], ours, 3) == [
        (1, "a", False),
        (1, "a", True),
        (1, "peer", False),
        (2, "a", True),  # the pair swaps sides in the next round
        (2, "a", False),
        (2, "peer", False),
        (3, "a", False),
        (3, "a", True),
        (3, "peer", False),
    ]
    # One round is run_order as without --rounds.
    names = ["a", "b", "peer"]
    two = {"a", "b"}.__contains__
    assert [(n, b) for _, n, b in baseline.plan_rounds(names, two, 1)] == (
        baseline.run_order(names, two)
    )


def test_plan_rounds_swaps_every_pair_with_an_even_number_of_pairs() -> None:
    """Counting pairs across rounds would keep each pair's order when there are two."""
    plan = baseline.plan_rounds(["a", "b"], {"a", "b"}.__contains__, 2)
    firsts = [(r, n, b) for r, n, b in plan[::2]]  # the first run of each pair
    assert firsts == [(1, "a", False), (1, "b", True), (2, "a", True), (2, "b", False)]
    assert baseline.plan_rounds(["peer"], lambda _: False, 2) == [
        (1, "peer", False),
        (2, "peer", False),
    ]


# ---------------------------------------------------------------- aggregation


def test_summarize_medians_spread_and_summed_errors() -> None:
    runs = [
        measured(12_000, "9.00ms"),
        measured(10_000, "7.00ms", errors=True),
        measured(11_000, "8.00ms", errors=True),
    ]
    runs[2].contention = "busy"
    s = summarize(runs)
    assert (s.measured, s.runs) == (3, 3)
    assert (s.rps, s.rps_min, s.rps_max) == (11_000, 10_000, 12_000)
    assert s.p99_ms == 8.0
    assert s.errors == 2 * 53  # both WITH_ERRORS runs
    assert s.contended == 1
    assert s.queued is None and not s.many_queued


def test_summarize_leaves_out_failed_runs_and_averages_an_even_middle() -> None:
    failed = Measurement(50, error="wrk failed")
    s = summarize([measured(100), failed, measured(300)])
    assert (s.measured, s.runs, s.rps, s.rps_min, s.rps_max) == (3, 2, 200, 100, 300)
    assert summarize([failed]).rps is None and summarize([failed]).measured == 1
    assert summarize([]).measured == 0 and summarize([]).rps is None


def test_summarize_queued_is_the_median_of_the_rounds() -> None:
    runs = [measured(100, connections=1000) for _ in range(3)]
    for m, samples in zip(runs, ([900, 902, 905], [0, 0, 0], [880, 890, 899]), strict=True):
        m.accept_queue = samples
    s = summarize(runs)
    assert s.queued == 890 and s.many_queued


def test_combine_rounds() -> None:
    single = one_round("a", 100)
    assert combine_rounds([single]) is single  # one round: the report as it always was
    failed = one_round("a", failure="failed to start: x")
    failed.version = "?"
    row = combine_rounds([failed, one_round("a", 100), one_round("a", 300)])
    assert row.failure is None and row.version == "v1" and row.measurements == {}
    assert [m.result.requests_per_sec for m in row.runs(50) if m.result] == [100, 300]
    assert row.rps(50) == 200 and row.rps(1000) is None
    broken = combine_rounds([failed, one_round("a", failure="failed to start: y")])
    assert broken.failure == "failed to start: x" and broken.rps(50) is None


# ---------------------------------------------------------------- table and notes


def test_render_table_with_rounds() -> None:
    rows = [
        rounds_of("asyncwsgi", 10_000, 9_000, 11_000),
        rounds_of("asyncwsgi@baseline", 8_000, 7_500, 8_400),
        combine_rounds(
            [one_round("granian", 20_000), one_round("granian", failure="x"), one_round("granian")]
        ),
        combine_rounds([one_round("waitress", failure="x")] * 3),
    ]
    rows[1].round_outcomes[0].measurements[50].contention = "busy"
    lines = render_table(rows, [50], "asyncwsgi", rounds=3).splitlines()
    assert lines[0] == (
        "| server | c=50 req/s median (min-max) | c=50 p99 ms median | c=50 errors sum "
        "| c=50 asyncwsgi/peer |"
    )
    assert lines[2] == "| asyncwsgi | 10,000 (9,000-11,000) | 8.00 | 0 | 1.00x |"
    assert lines[3] == "| asyncwsgi@baseline | 8,000 (7,500-8,400)* | 8.00 | 0 | 1.25x |"
    # One round did not start and one got no wrk run at c=50: 1 of 3 gave numbers.
    assert lines[4] == "| granian | 20,000 (20,000-20,000) [1/3] | 8.00 | 0 | 0.50x |"
    assert lines[5] == "| waitress (not run) | — | — | — | — |"


def test_render_table_with_one_round_is_unchanged() -> None:
    rows = [one_round("asyncwsgi", 10_000), one_round("granian", 20_000)]
    assert render_table(rows, [50], rounds=1) == render_table(rows, [50])
    assert render_table(rows, [50]).splitlines()[3] == "| granian | 20,000 | 8.00 | 0 | 0.50x |"


def test_before_after_uses_medians_and_shows_each_round() -> None:
    rows = [
        rounds_of("asyncwsgi", 10_000, 9_000, 11_000),
        rounds_of("asyncwsgi@baseline", 8_000, 9_000, 10_000),
    ]
    assert before_after(rows, [50]) == [
        "**Before/after `asyncwsgi`** (this checkout vs baseline, medians of 3 rounds): "
        "c=50 10,000 vs 9,000 req/s = 1.11x (per round: 1.25x, 1.00x, 1.10x) "
        "(above 1.00x: this checkout served more)"
    ]
    # This checkout's row did not start in any round: no per-round ratios to show.
    rows[0] = combine_rounds([one_round("asyncwsgi", failure="x")] * 3)
    assert before_after(rows, [50])[0].endswith(
        "c=50 — vs 9,000 req/s = n/a (above 1.00x: this checkout served more)"
    )


def test_render_markdown_with_rounds(tmp_path: Path) -> None:
    first, second = one_round("asyncwsgi", 9_000), one_round("asyncwsgi", 11_000)
    second.measurements[50].contention = "busy (pytest 0.9 cores)"
    broken = one_round("asyncwsgi", failure="failed to start: boom")
    row = combine_rounds([first, broken, second])
    report = RunReport("d", {}, ["wrk"], ["n"], [50], [row], rounds=3)
    text = render_markdown(report)
    assert "| asyncwsgi | 10,000 (9,000-11,000)* [2/3] | 8.00 | 0 | 1.00x |" in text
    assert "  - round 2: not run: failed to start: boom" in text
    assert "  - c=50, round 3: contended: busy (pytest 0.9 cores)" in text
    assert "measured in each of 3 rounds" in text
    assert text.rstrip().endswith("treat differences within the rows' min-max spreads as noise.")
    # The JSON keeps every round whole, wrk's numbers included, and the table's figures.
    data = report.to_dict()
    assert data["rounds"] == 3
    server = data["servers"][0]
    assert [r["failure"] for r in server["rounds"]] == [None, "failed to start: boom", None]
    raw = [r["measurements"]["50"]["result"]["requests_per_sec"] for r in server["rounds"][::2]]
    assert raw == [9_000, 11_000]
    assert server["summary"]["50"]["rps"] == 10_000 and server["summary"]["50"]["runs"] == 2
    # One round: no trace of rounds in the JSON.
    plain = RunReport("d", {}, ["wrk"], ["n"], [50], [first]).to_dict()
    assert "rounds" not in plain and "rounds" not in plain["servers"][0]


def test_run_parse_args_rounds() -> None:
    assert run.parse_args([]).rounds == 1
    assert run.parse_args(["--rounds", "5"]).rounds == 5
    with pytest.raises(SystemExit):
        run.parse_args(["--rounds", "0"])


def test_baseline_notes_with_rounds(tmp_path: Path) -> None:
    plan = baseline.plan_rounds(["asyncwsgi", "granian"], {"asyncwsgi"}.__contains__, 2)
    order = [(name, b) for _, name, b in plan]
    notes = run.baseline_notes(tmp_path, order, "asyncwsgi", rounds=2)
    assert notes[1] == (
        "**Run order:** round 1: `asyncwsgi`, `asyncwsgi@baseline`, `granian`; "
        "round 2: `asyncwsgi@baseline`, `asyncwsgi`, `granian` (each pair back to back, "
        "every other pair baseline first; each pair swaps sides from round to round)"
    )
    assert run.rounds_note(2).startswith("**Rounds:** 2: each round started, warmed up")
