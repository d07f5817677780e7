"""Data model of one benchmark run and its rendering as Markdown / JSON."""

from __future__ import annotations

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

    def rps(self, connections: int) -> float | None:
        measurement = self.measurements.get(connections)
        if measurement is None or measurement.result is None:
            return None
        return measurement.result.requests_per_sec

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "description": self.description,
            "version": self.version,
            "argv": self.argv,
            "failure": self.failure,
            "processes": self.processes,
            "log_tail": self.log_tail,
            "measurements": {str(c): m.to_dict() for c, m in self.measurements.items()},
        }


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

    def to_dict(self) -> dict[str, Any]:
        return {
            "title": self.title,
            "baseline": self.baseline,
            "date_utc": self.date_utc,
            "machine": self.machine,
            "wrk_commands": self.wrk_commands,
            "notes": self.notes,
            "connections": self.connections,
            "servers": [s.to_dict() for s in self.servers],
        }


def format_ratio(baseline_rps: float | None, peer_rps: float | None) -> str:
    """``asyncwsgi / peer`` throughput ratio, e.g. ``"2.10x"``; ``"n/a"`` if unknown."""
    if baseline_rps is None or peer_rps is None or peer_rps <= 0:
        return "n/a"
    return f"{baseline_rps / peer_rps:.2f}x"


def before_after(servers: list[ServerOutcome], connections: list[int]) -> list[str]:
    """One line per row that has an ``@baseline`` twin (``run.py --baseline``): its req/s
    and the twin's, and this checkout's over the baseline's, per connection count."""
    by_name = {s.name: s for s in servers}
    lines = []
    for current in servers:
        twin = by_name.get(current.name + BASELINE_SUFFIX)
        if twin is None:
            continue
        cells = []
        for c in connections:
            now, before = current.rps(c), twin.rps(c)
            shown = " vs ".join("—" if r is None else f"{r:,.0f}" for r in (now, before))
            cells.append(f"c={c} {shown} req/s = {format_ratio(now, before)}")
        lines.append(
            f"**Before/after `{current.name}`** (this checkout vs baseline): "
            + "; ".join(cells)
            + " (above 1.00x: this checkout served more)"
        )
    return lines


def _format_cells(
    outcome: ServerOutcome, connections: int, baseline_rps: float | None
) -> list[str]:
    if outcome.failure is not None:
        return ["—", "—", "—", "—"]
    measurement = outcome.measurements.get(connections)
    if measurement is None:
        return ["—", "—", "—", "—"]
    if measurement.result is None:
        return ["failed", "—", "—", "—"]
    result = measurement.result
    p99 = f"{result.p99_ms:.2f}" if result.p99_ms is not None else "n/a"
    errors = str(result.errors)
    if measurement.many_queued:
        errors += f" ({measurement.queued} queued)"
    return [
        f"{result.requests_per_sec:,.0f}" + ("*" if measurement.contention else ""),
        p99,
        errors,
        format_ratio(baseline_rps, result.requests_per_sec),
    ]


def render_table(
    servers: list[ServerOutcome], connections: list[int], baseline_name: str = BASELINE
) -> str:
    """The results table: one row per server, four columns per connection count.

    The ``asyncwsgi/peer`` columns divide the req/s of the row named ``baseline_name``
    (an asyncwsgi setup) by each row's.
    """
    baseline = next((s for s in servers if s.name == baseline_name), None)
    header = ["server"]
    for c in connections:
        header += [f"c={c} req/s", f"c={c} p99 ms", f"c={c} errors", f"c={c} {BASELINE}/peer"]
    lines = [
        "| " + " | ".join(header) + " |",
        "|" + "|".join(["---"] + ["---:"] * (len(header) - 1)) + "|",
    ]
    for outcome in servers:
        label = outcome.name if outcome.failure is None else f"{outcome.name} (not run)"
        row = [label]
        for c in connections:
            baseline_rps = baseline.rps(c) if baseline is not None else None
            row += _format_cells(outcome, c, baseline_rps)
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines)


def render_markdown(report: RunReport) -> str:
    """The full Markdown report: setup, table, per-server notes."""
    out = [f"# {report.title} ({report.date_utc})", ""]
    out += [f"- **Date (UTC):** {report.date_utc}"]
    out += [f"- **{key}:** {value}" for key, value in report.machine.items()]
    out += ["- **wrk command:** " + ", ".join(f"`{cmd}`" for cmd in report.wrk_commands)]
    out += [f"- {note}" for note in report.notes]
    out += ["", render_table(report.servers, report.connections, report.baseline), ""]
    out += [
        f"`{BASELINE}/peer` is {report.baseline}'s req/s divided by the row's req/s at the "
        "same connection count (above 1.00x: asyncwsgi served more). `errors` = wrk socket errors "
        "(connect + read + write + timeout) + non-2xx/3xx responses. `(N queued)`: typically "
        "N of wrk's connections were waiting in the server's accept queue, not yet accepted "
        "(median of 3 samples during the run); wrk reports nothing about them.",
        "",
        "## Servers",
        "",
    ]
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
            if measurement.error is not None:
                out.append(f"  - c={c}: {measurement.error}")
            if measurement.contention is not None:
                out.append(f"  - c={c}: contended: {measurement.contention}")
            if measurement.many_queued:
                samples = ", ".join(str(n) for n in measurement.accept_queue)
                out.append(
                    f"  - c={c}: connections waiting in the accept queue at 1/4, 1/2, 3/4 of "
                    f"the run: {samples} (of {c})"
                )
            if measurement.error is None and measurement.result and measurement.result.errors:
                r = measurement.result
                out.append(
                    f"  - c={c}: {r.errors} errors (connect {r.connect_errors}, "
                    f"read {r.read_errors}, write {r.write_errors}, "
                    f"timeout {r.timeout_errors}, non-2xx/3xx {r.non_2xx_3xx})"
                )
    out += ["", "Results are from one run on one machine; treat differences of a few % as noise."]
    return "\n".join(out) + "\n"
