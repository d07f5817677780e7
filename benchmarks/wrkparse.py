"""Parse the text that ``wrk --latency`` prints into numbers.

Pure functions only (no I/O), so they can be unit-tested against literal samples
of wrk output; see ``test_wrkparse.py``.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass
from typing import Any

# wrk formats durations with these suffixes (see format_time_us in wrk's units.c).
_TIME_UNITS_MS = {
    "us": 0.001,
    "ms": 1.0,
    "s": 1000.0,
    "m": 60_000.0,
    "h": 3_600_000.0,
}

_TIME_RE = re.compile(r"^(?P<num>[0-9]+(?:\.[0-9]+)?)(?P<unit>us|ms|s|m|h)$")
_RPS_RE = re.compile(r"^\s*Requests/sec:\s*(?P<rps>[0-9]+(?:\.[0-9]+)?)\s*$", re.MULTILINE)
_TOTAL_RE = re.compile(
    r"^\s*(?P<requests>[0-9]+) requests in (?P<elapsed>\S+), (?P<read>\S+) read\s*$",
    re.MULTILINE,
)
_PERCENTILE_RE = re.compile(r"^\s*(?P<pct>[0-9]+(?:\.[0-9]+)?)%\s+(?P<value>\S+)\s*$")
_SOCKET_ERRORS_RE = re.compile(
    r"^\s*Socket errors: connect (?P<connect>[0-9]+), read (?P<read>[0-9]+), "
    r"write (?P<write>[0-9]+), timeout (?P<timeout>[0-9]+)\s*$",
    re.MULTILINE,
)
_NON_2XX_RE = re.compile(r"^\s*Non-2xx or 3xx responses:\s*(?P<count>[0-9]+)\s*$", re.MULTILINE)


class WrkParseError(ValueError):
    """Raised when the text does not look like a finished wrk run."""


@dataclass(frozen=True)
class WrkResult:
    """Numbers from one wrk run.

    ``latency_percentiles_ms`` maps a percentile (50.0, 75.0, 90.0, 99.0) to its
    latency in milliseconds; it is empty if wrk ran without ``--latency``.
    """

    requests_per_sec: float
    requests: int
    latency_percentiles_ms: dict[float, float]
    connect_errors: int = 0
    read_errors: int = 0
    write_errors: int = 0
    timeout_errors: int = 0
    non_2xx_3xx: int = 0

    @property
    def p99_ms(self) -> float | None:
        """The 99th-percentile latency in ms, or None if wrk did not report it."""
        return self.latency_percentiles_ms.get(99.0)

    @property
    def socket_errors(self) -> int:
        """Connect + read + write + timeout errors."""
        return self.connect_errors + self.read_errors + self.write_errors + self.timeout_errors

    @property
    def errors(self) -> int:
        """All errors: socket errors plus responses whose status was not 2xx/3xx."""
        return self.socket_errors + self.non_2xx_3xx

    def to_dict(self) -> dict[str, Any]:
        """A JSON-friendly dict, including the derived fields."""
        data = asdict(self)
        data["latency_percentiles_ms"] = {
            f"{pct:g}": value for pct, value in self.latency_percentiles_ms.items()
        }
        data["p99_ms"] = self.p99_ms
        data["socket_errors"] = self.socket_errors
        data["errors"] = self.errors
        return data


def parse_duration_ms(text: str) -> float:
    """Convert a wrk duration such as ``"512.33us"``, ``"4.10ms"`` or ``"1.02s"`` to ms."""
    match = _TIME_RE.match(text.strip())
    if match is None:
        raise WrkParseError(f"not a wrk duration: {text!r}")
    return float(match["num"]) * _TIME_UNITS_MS[match["unit"]]


def _parse_latency_distribution(output: str) -> dict[float, float]:
    percentiles: dict[float, float] = {}
    in_distribution = False
    for line in output.splitlines():
        if line.strip() == "Latency Distribution":
            in_distribution = True
            continue
        if not in_distribution:
            continue
        match = _PERCENTILE_RE.match(line)
        if match is None:
            break
        percentiles[float(match["pct"])] = parse_duration_ms(match["value"])
    return percentiles


def parse_wrk_output(output: str) -> WrkResult:
    """Parse the standard output of ``wrk [--latency] ...``.

    Raises WrkParseError if the run's summary (``Requests/sec:``) is missing,
    e.g. because wrk could not start or was killed.
    """
    rps_match = _RPS_RE.search(output)
    if rps_match is None:
        raise WrkParseError("no 'Requests/sec:' line in wrk output")
    total_match = _TOTAL_RE.search(output)
    if total_match is None:
        raise WrkParseError("no 'N requests in T, B read' line in wrk output")

    socket = _SOCKET_ERRORS_RE.search(output)
    non_2xx = _NON_2XX_RE.search(output)
    return WrkResult(
        requests_per_sec=float(rps_match["rps"]),
        requests=int(total_match["requests"]),
        latency_percentiles_ms=_parse_latency_distribution(output),
        connect_errors=int(socket["connect"]) if socket else 0,
        read_errors=int(socket["read"]) if socket else 0,
        write_errors=int(socket["write"]) if socket else 0,
        timeout_errors=int(socket["timeout"]) if socket else 0,
        non_2xx_3xx=int(non_2xx["count"]) if non_2xx else 0,
    )
