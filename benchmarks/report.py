"""Data model of one benchmark run and its rendering as Markdown / JSON.

With ``run.py --rounds N`` (N > 1) every row is measured N times; a row's outcome then
keeps each round's outcome whole (``ServerOutcome.round_outcomes``) and the table shows,
per connection count, the median req/s with its min-max spread, the median p99 and the
errors summed over the rounds (``summarize``). With one round the output is as it always
was.

Where /proc gave the server's own CPU use during each wrk run, the table has a
``server CPU µs/request`` column per connection count (``Measurement.cpu_us_per_request``),
and a second table puts every row against the ``granian`` row (``RunReport.reference``):
req/s and CPU per request as ratios, and, for an app that waits a known time per request
(``RunReport.app_wait_s``), the share of the ideal req/s (``render_relative_table``).
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from baseline import SUFFIX as BASELINE_SUFFIX
from wrkparse import WrkResult

BASELINE = "asyncwsgi"
QUEUED_MIN = 10  # connections waiting in the accept queue worth reporting


@dataclass
class Measurement:
    """One wrk run against one server at one connection count."""

    connections: int
    result: WrkResult | None = None
    error: str | None = None
    wrk_output: str = ""
    foreign_cpu_cores: float | None = None  # CPU used by other processes during the run
    contention: str | None = None  # set when foreign_cpu_cores was high enough to matter
    attempts: int = 1  # wrk runs made (contended runs are retried); this is the best one
    # Connections waiting in the server's accept queue at 1/4, 1/2 and 3/4 of the run.
    accept_queue: list[int] = field(default_factory=list)
    # CPU seconds (user + system) of the server's processes during the wrk run, from /proc.
    server_cpu_s: float | None = None

    @property
    def cpu_us_per_request(self) -> float | None:
        """The server's CPU time per request wrk completed, in µs; None if unknown."""
        if self.server_cpu_s is None or self.result is None or self.result.requests <= 0:
            return None
        return self.server_cpu_s / self.result.requests * 1e6

    @property
    def queued(self) -> int | None:
        """Median accept-queue length over the samples, or None if not sampled."""
        if not self.accept_queue:
            return None
        return sorted(self.accept_queue)[len(self.accept_queue) // 2]

    @property
    def many_queued(self) -> bool:
        """Whether a notable share of wrk's connections sat in the accept queue."""
        return (self.queued or 0) >= max(QUEUED_MIN, self.connections // 20)

    def to_dict(self) -> dict[str, Any]:
        return {
            "connections": self.connections,
            "result": self.result.to_dict() if self.result else None,
            "error": self.error,
            "foreign_cpu_cores": self.foreign_cpu_cores,
            "contention": self.contention,
            "attempts": self.attempts,
            "accept_queue": self.accept_queue,
            "server_cpu_s": self.server_cpu_s,
            "server_cpu_us_per_request": self.cpu_us_per_request,
            "wrk_output": self.wrk_output,
        }


@dataclass
class ServerOutcome:
    """Everything measured (or the reason nothing was) for one server."""

    name: str
    description: str
    version: str
    argv: list[str] = field(default_factory=list)
    failure: str | None = None  # set when the server could not be benchmarked at all
    log_tail: str = ""
    processes: str = ""  # the server's processes once it answered, when they were checked
    measurements: dict[int, Measurement] = field(default_factory=dict)
    # --rounds N > 1: the outcome of each round, in run order (``combine_rounds``);
    # ``measurements`` then stays empty and every figure is taken over these.
    round_outcomes: list[ServerOutcome] = field(default_factory=list)

    def runs(self, connections: int) -> list[Measurement]:
        """The measurements at ``connections``: one per round that got that far."""
        if not self.round_outcomes:
            measurement = self.measurements.get(connections)
            return [] if measurement is None else [measurement]
        return [
            o.measurements[connections]
            for o in self.round_outcomes
            if connections in o.measurements
        ]

    def rps(self, connections: int) -> float | None:
        """req/s at ``connections``; the median over the rounds with ``--rounds``."""
        return summarize(self.runs(connections)).rps

    def cpu_us(self, connections: int) -> float | None:
        """Server CPU µs per request at ``connections``; the median with ``--rounds``."""
        return summarize(self.runs(connections)).cpu_us

    def to_dict(self) -> dict[str, Any]:
        data = {
            "name": self.name,
            "description": self.description,
            "version": self.version,
            "argv": self.argv,
            "failure": self.failure,
            "processes": self.processes,
            "log_tail": self.log_tail,
            "measurements": {str(c): m.to_dict() for c, m in self.measurements.items()},
        }
        if self.round_outcomes:
            # Every round whole (each wrk output included), and what the table shows.
            counts = sorted({c for o in self.round_outcomes for c in o.measurements})
            data["summary"] = {str(c): summarize(self.runs(c)).to_dict() for c in counts}
            data["rounds"] = [o.to_dict() for o in self.round_outcomes]
        return data


@dataclass(frozen=True)
class Summary:
    """One row at one connection count over the rounds that measured it."""

    measured: int  # rounds that ran wrk at this connection count
    runs: int  # of which gave numbers
    rps: float | None = None  # median req/s of those
    rps_min: float | None = None
    rps_max: float | None = None
    p99_ms: float | None = None  # median p99 of the runs that report one
    errors: int = 0  # summed: an error in any round counts
    contended: int = 0  # runs that stayed contended after their retries
    queued: int | None = None  # median accept-queue length (each run's own median)
    many_queued: bool = False
    cpu_us: float | None = None  # median server CPU µs per request of the runs that have it

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def summarize(measurements: Sequence[Measurement]) -> Summary:
    """Median req/s and p99, req/s min and max, errors summed, over ``measurements`` (one
    row, one connection count, one per round). Medians, because one round disturbed by the
    machine should not move the figure the way it moves a mean."""
    good = [m for m in measurements if m.result is not None]
    if not good:
        return Summary(measured=len(measurements), runs=0)
    rps = [m.result.requests_per_sec for m in good if m.result is not None]
    p99s = [m.result.p99_ms for m in good if m.result is not None and m.result.p99_ms is not None]
    queues = [m.queued for m in good if m.queued is not None]
    queued = round(statistics.median(queues)) if queues else None
    cpu = [m.cpu_us_per_request for m in good if m.cpu_us_per_request is not None]
    connections = good[0].connections
    return Summary(
        measured=len(measurements),
        runs=len(good),
        rps=statistics.median(rps),
        rps_min=min(rps),
        rps_max=max(rps),
        p99_ms=statistics.median(p99s) if p99s else None,
        errors=sum(m.result.errors for m in good if m.result is not None),
        contended=sum(1 for m in good if m.contention),
        queued=queued,
        many_queued=(queued or 0) >= max(QUEUED_MIN, connections // 20),
        cpu_us=statistics.median(cpu) if cpu else None,
    )


def combine_rounds(rounds: Sequence[ServerOutcome]) -> ServerOutcome:
    """One row's outcome from its rounds' (``run.py --rounds``); a single round as it is.

    Name, version, command line and processes are the first round's that ran (a later
    round only differs by its port); the row is "not run" only if no round ran, with the
    first round's reason. Each round stays whole in ``round_outcomes``.
    """
    if len(rounds) == 1:
        return rounds[0]
    ran = [o for o in rounds if o.failure is None]
    first = ran[0] if ran else rounds[0]
    return ServerOutcome(
        name=first.name,
        description=first.description,
        version=first.version,
        argv=first.argv,
        failure=None if ran else first.failure,
        log_tail=first.log_tail,
        processes=first.processes,
        round_outcomes=list(rounds),
    )


@dataclass
class RunReport:
    """A whole run: where and how it was measured, and the outcome per server."""

    date_utc: str
    machine: dict[str, str]
    wrk_commands: list[str]
    notes: list[str]
    connections: list[int]
    servers: list[ServerOutcome]
    baseline: str = BASELINE  # the row every ratio is taken against
    title: str = "Hello-world WSGI benchmark"
    rounds: int = 1  # --rounds: times every row was measured
    reference: str | None = None  # the granian row, which the second table compares with
    app_wait_s: float | None = None  # the app's wait per request (io), for the ideal req/s

    def to_dict(self) -> dict[str, Any]:
        data = {
            "title": self.title,
            "baseline": self.baseline,
            "date_utc": self.date_utc,
            "machine": self.machine,
            "wrk_commands": self.wrk_commands,
            "notes": self.notes,
            "connections": self.connections,
            "servers": [s.to_dict() for s in self.servers],
        }
        if self.rounds > 1:
            data["rounds"] = self.rounds
        if self.reference is not None:
            data["reference"] = self.reference
        if self.app_wait_s is not None:
            data["app_wait_s"] = self.app_wait_s
            data["ideal_rps"] = {str(c): ideal_rps(c, self.app_wait_s) for c in self.connections}
        return data


def format_ratio(baseline_rps: float | None, peer_rps: float | None) -> str:
    """``asyncwsgi / peer`` throughput ratio, e.g. ``"2.10x"``; ``"n/a"`` if unknown."""
    if baseline_rps is None or peer_rps is None or peer_rps <= 0:
        return "n/a"
    return f"{baseline_rps / peer_rps:.2f}x"


def format_cpu(cpu_us: float | None) -> str:
    """Server CPU µs per request, e.g. ``"1,234"``; ``"n/a"`` if unknown."""
    return "n/a" if cpu_us is None else f"{cpu_us:,.0f}"


def ideal_rps(connections: int, app_wait_s: float) -> float:
    """The req/s of a server that costs nothing, when each request waits ``app_wait_s`` in
    the app: every connection always has a request waiting, ``connections / app_wait_s``."""
    return connections / app_wait_s


def format_share(rps: float | None, ideal: float) -> str:
    """``rps`` as a share of ``ideal``, e.g. ``"93.5%"``; ``"n/a"`` if unknown."""
    if rps is None or ideal <= 0:
        return "n/a"
    return f"{100 * rps / ideal:.1f}%"


def has_server_cpu(servers: Sequence[ServerOutcome], connections: Sequence[int]) -> bool:
    """Whether any run measured the server's CPU (``/proc`` was readable): the table then
    has a CPU column per connection count."""
    return any(m.server_cpu_s is not None for s in servers for c in connections for m in s.runs(c))


def before_after(servers: list[ServerOutcome], connections: list[int]) -> list[str]:
    """One line per row that has an ``@baseline`` twin (``run.py --baseline``): its req/s
    and the twin's, and this checkout's over the baseline's, per connection count.

    With rounds: the medians' ratio, then each round's own ratio. The two rows of a pair
    ran back to back in every round, so the per-round ratios show how far the machine's
    drift within a round could move the median's."""
    by_name = {s.name: s for s in servers}
    lines = []
    for current in servers:
        twin = by_name.get(current.name + BASELINE_SUFFIX)
        if twin is None:
            continue
        rounds = len(current.round_outcomes)
        cells = []
        for c in connections:
            now, before = current.rps(c), twin.rps(c)
            shown = " vs ".join("—" if r is None else f"{r:,.0f}" for r in (now, before))
            cell = f"c={c} {shown} req/s = {format_ratio(now, before)}"
            # Each round's ratio only where both sides have a median: a side that never
            # ran would make it a row of n/a.
            if None not in (now, before) and len(twin.round_outcomes) == rounds > 1:
                pairs = zip(current.round_outcomes, twin.round_outcomes, strict=True)
                ratios = ", ".join(format_ratio(a.rps(c), b.rps(c)) for a, b in pairs)
                cell += f" (per round: {ratios})"
            cells.append(cell)
        sides = "this checkout vs baseline" + (
            f", medians of {rounds} rounds" if rounds > 1 else ""
        )
        lines.append(
            f"**Before/after `{current.name}`** ({sides}): "
            + "; ".join(cells)
            + " (above 1.00x: this checkout served more)"
        )
    return lines


def _format_cells(
    outcome: ServerOutcome, connections: int, baseline_rps: float | None
) -> list[str]:
    """req/s, p99, errors, server CPU per request, ratio (the CPU cell is dropped by
    ``render_table`` when no run measured it)."""
    if outcome.failure is not None:
        return ["—", "—", "—", "—", "—"]
    measurement = outcome.measurements.get(connections)
    if measurement is None:
        return ["—", "—", "—", "—", "—"]
    if measurement.result is None:
        return ["failed", "—", "—", "—", "—"]
    result = measurement.result
    p99 = f"{result.p99_ms:.2f}" if result.p99_ms is not None else "n/a"
    errors = str(result.errors)
    if measurement.many_queued:
        errors += f" ({measurement.queued} queued)"
    return [
        f"{result.requests_per_sec:,.0f}" + ("*" if measurement.contention else ""),
        p99,
        errors,
        format_cpu(measurement.cpu_us_per_request),
        format_ratio(baseline_rps, result.requests_per_sec),
    ]


def _format_round_cells(
    outcome: ServerOutcome, connections: int, baseline_rps: float | None
) -> list[str]:
    """The cells of a row measured over several rounds: see ``render_table``."""
    summary = summarize(outcome.runs(connections))
    if outcome.failure is not None or summary.measured == 0:
        return ["—", "—", "—", "—", "—"]
    if summary.rps is None or summary.rps_min is None or summary.rps_max is None:
        return ["failed", "—", "—", "—", "—"]
    rps = f"{summary.rps:,.0f} ({summary.rps_min:,.0f}-{summary.rps_max:,.0f})"
    if summary.contended:
        rps += "*"
    rounds = len(outcome.round_outcomes)
    if summary.runs < rounds:
        rps += f" [{summary.runs}/{rounds}]"  # rounds that failed or did not start are left out
    errors = str(summary.errors)
    if summary.many_queued:
        errors += f" ({summary.queued} queued)"
    return [
        rps,
        f"{summary.p99_ms:.2f}" if summary.p99_ms is not None else "n/a",
        errors,
        format_cpu(summary.cpu_us),
        format_ratio(baseline_rps, summary.rps),
    ]


def render_table(
    servers: list[ServerOutcome],
    connections: list[int],
    baseline_name: str = BASELINE,
    rounds: int = 1,
) -> str:
    """The results table: one row per server, four or five columns per connection count.

    The ``asyncwsgi/peer`` columns divide the req/s of the row named ``baseline_name``
    (an asyncwsgi setup) by each row's. With ``rounds`` > 1: median req/s with its
    ``(min-max)`` over the rounds, median p99, errors summed, the ratio of the medians.
    When any run measured the server's CPU, a ``server CPU µs/request`` column comes
    before the ratio (with rounds: the median).
    """
    baseline = next((s for s in servers if s.name == baseline_name), None)
    with_cpu = has_server_cpu(servers, connections)
    header = ["server"]
    for c in connections:
        cpu = [f"c={c} server CPU µs/request" + (" median" if rounds > 1 else "")]
        if rounds > 1:
            header += [
                f"c={c} req/s median (min-max)",
                f"c={c} p99 ms median",
                f"c={c} errors sum",
                *(cpu if with_cpu else []),
                f"c={c} {BASELINE}/peer",
            ]
            continue
        header += [f"c={c} req/s", f"c={c} p99 ms", f"c={c} errors"]
        header += [*(cpu if with_cpu else []), f"c={c} {BASELINE}/peer"]
    lines = [
        "| " + " | ".join(header) + " |",
        "|" + "|".join(["---"] + ["---:"] * (len(header) - 1)) + "|",
    ]
    for outcome in servers:
        label = outcome.name if outcome.failure is None else f"{outcome.name} (not run)"
        row = [label]
        for c in connections:
            baseline_rps = baseline.rps(c) if baseline is not None else None
            cells = (_format_round_cells if rounds > 1 else _format_cells)(outcome, c, baseline_rps)
            row += cells if with_cpu else cells[:3] + cells[4:]
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines)


def render_relative_table(
    servers: list[ServerOutcome],
    connections: list[int],
    reference: str | None = None,
    app_wait_s: float | None = None,
) -> str:
    """The second table: each row against the ``reference`` row (granian) and the ideal.

    Per connection count, as columns that apply: ``share of ideal`` (with ``app_wait_s``:
    the row's req/s over :func:`ideal_rps`), ``req/s ÷ REF`` (the row's req/s over the
    reference row's) and ``CPU/request ÷ REF`` (the row's server CPU per request over the
    reference row's, when measured). Medians with rounds. Empty when no column applies
    (no reference row among ``servers`` and no ``app_wait_s``).
    """
    ref = next((s for s in servers if s.name == reference), None)
    with_cpu = ref is not None and has_server_cpu(servers, connections)
    if ref is None and app_wait_s is None:
        return ""
    header = ["server"]
    for c in connections:
        if app_wait_s is not None:
            header.append(f"c={c} share of ideal ({ideal_rps(c, app_wait_s):,.0f} req/s)")
        if ref is not None:
            header.append(f"c={c} req/s ÷ {ref.name}'s")
        if with_cpu:
            header.append(f"c={c} CPU/request ÷ {ref.name}'s")
    lines = [
        "| " + " | ".join(header) + " |",
        "|" + "|".join(["---"] + ["---:"] * (len(header) - 1)) + "|",
    ]
    for outcome in servers:
        label = outcome.name if outcome.failure is None else f"{outcome.name} (not run)"
        row = [label]
        for c in connections:
            rps = None if outcome.failure is not None else outcome.rps(c)
            if app_wait_s is not None:
                row.append(format_share(rps, ideal_rps(c, app_wait_s)))
            if ref is not None:
                row.append(format_ratio(rps, ref.rps(c)))
            if ref is not None and with_cpu:
                cpu = None if outcome.failure is not None else outcome.cpu_us(c)
                row.append(format_ratio(cpu, ref.cpu_us(c)))
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines)


def _relative_legend(report: RunReport, with_cpu: bool) -> str:
    parts = []
    if report.app_wait_s is not None:
        wait_ms = report.app_wait_s * 1000
        parts.append(
            f"`share of ideal`: the row's req/s over connections / {wait_ms:g} ms (each "
            f"request waits {wait_ms:g} ms in the app: a server that cost nothing, with a "
            "thread for every connection, would serve that many)."
        )
    if any(s.name == report.reference for s in report.servers):
        parts.append(
            f"`req/s ÷ {report.reference}'s`: the row's req/s over the `{report.reference}` "
            "row's (below 1.00x: served less)."
        )
        if with_cpu:
            parts.append(
                f"`CPU/request ÷ {report.reference}'s`: the row's server CPU per request over "
                f"`{report.reference}`'s (above 1.00x: more CPU per request)."
            )
    return " ".join(parts)


def render_markdown(report: RunReport) -> str:
    """The full Markdown report: setup, table, per-server notes."""
    out = [f"# {report.title} ({report.date_utc})", ""]
    out += [f"- **Date (UTC):** {report.date_utc}"]
    out += [f"- **{key}:** {value}" for key, value in report.machine.items()]
    out += ["- **wrk command:** " + ", ".join(f"`{cmd}`" for cmd in report.wrk_commands)]
    out += [f"- {note}" for note in report.notes]
    table = render_table(report.servers, report.connections, report.baseline, report.rounds)
    with_cpu = has_server_cpu(report.servers, report.connections)
    out += ["", table, ""]
    out += [
        f"`{BASELINE}/peer` is {report.baseline}'s req/s divided by the row's req/s at the "
        "same connection count (above 1.00x: asyncwsgi served more). `errors` = wrk socket errors "
        "(connect + read + write + timeout) + non-2xx/3xx responses. `(N queued)`: typically "
        "N of wrk's connections were waiting in the server's accept queue, not yet accepted "
        "(median of 3 samples during the run); wrk reports nothing about them."
        + (_CPU_LEGEND if with_cpu else "")
        + (_rounds_legend(report.rounds) if report.rounds > 1 else ""),
        "",
    ]
    relative = render_relative_table(
        report.servers, report.connections, report.reference, report.app_wait_s
    )
    if relative:
        out += [relative, "", _relative_legend(report, with_cpu), ""]
    out += ["## Servers", ""]
    for outcome in report.servers:
        out.append(f"- **{outcome.name}** ({outcome.version}): {outcome.description}")
        if outcome.processes:
            out.append(f"  - processes once serving: {outcome.processes}")
        if outcome.failure is not None:
            out.append(f"  - not run: {outcome.failure}")
            last_lines = [line for line in outcome.log_tail.splitlines() if line.strip()]
            if last_lines:
                out.append(f"  - last log line: `{last_lines[-1].strip()}`")
        for c, measurement in outcome.measurements.items():
            out += _measurement_notes(f"c={c}", measurement)
        for number, round_outcome in enumerate(outcome.round_outcomes, start=1):
            if round_outcome.failure is not None and outcome.failure is None:
                out.append(f"  - round {number}: not run: {round_outcome.failure}")
            for c, measurement in round_outcome.measurements.items():
                out += _measurement_notes(f"c={c}, round {number}", measurement)
    if report.rounds > 1:
        out += [
            "",
            f"Results are from {report.rounds} rounds on one machine (each row measured "
            "once per round, rounds interleaved); treat differences within the rows' min-max "
            "spreads as noise.",
        ]
    else:
        out += [
            "",
            "Results are from one run on one machine; treat differences of a few % as noise.",
        ]
    return "\n".join(out) + "\n"


_CPU_LEGEND = (
    " `server CPU µs/request`: the CPU time (user + system, all threads) of the server's "
    "processes during the wrk run, read from /proc before and after it (10 ms clock "
    "ticks), divided by the requests wrk completed in it; wrk's own CPU is not in it."
)


def _rounds_legend(rounds: int) -> str:
    return (
        f" Every row was measured in each of {rounds} rounds: req/s is the median over the "
        "rounds with the lowest and highest in brackets, p99 the median, errors the sum "
        "over the rounds, `asyncwsgi/peer` the ratio of the medians; `*`: at least one "
        "round stayed contended; `[k/N]`: only k rounds gave numbers (see the notes)."
    )


def _measurement_notes(label: str, measurement: Measurement) -> list[str]:
    """The per-server lines on one measurement (``label``: ``c=50``, or with its round)."""
    c = measurement.connections
    out = []
    if measurement.error is not None:
        out.append(f"  - {label}: {measurement.error}")
    if measurement.contention is not None:
        out.append(f"  - {label}: contended: {measurement.contention}")
    if measurement.many_queued:
        samples = ", ".join(str(n) for n in measurement.accept_queue)
        out.append(
            f"  - {label}: connections waiting in the accept queue at 1/4, 1/2, 3/4 of "
            f"the run: {samples} (of {c})"
        )
    if measurement.error is None and measurement.result and measurement.result.errors:
        r = measurement.result
        out.append(
            f"  - {label}: {r.errors} errors (connect {r.connect_errors}, "
            f"read {r.read_errors}, write {r.write_errors}, "
            f"timeout {r.timeout_errors}, non-2xx/3xx {r.non_2xx_3xx})"
        )
    return out
