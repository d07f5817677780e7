"""Stat calls per request under load, with script reloading on and off.

Usage::

    python benchmarks/stat_calls.py [--duration 10] [--connections 50] [--threads 2]
                                    [--rounds 1] [--quiet-wait 15] [--site] [--no-save]

Starts ``python -m asyncwsgi APP --threads 8 --no-access-log --script-reloading on``
(APP: ``examples/hello.wsgi``, else ``benchmarks/apps/hello.wsgi``) on a free port
of 127.0.0.1, waits for its ``Listening on`` line, drives it with
``wrk -t2 -c50 -d10s``, stops it with SIGTERM and reads the line
``stopped after N request(s); M stat(s) of the WSGI script`` from its error log;
then the same with ``--script-reloading off``. With ``--rounds N`` the two modes
alternate N times. With ``--site`` the app is served from a config file instead
(``asyncwsgi_cmd.SITE_CONF``: two virtual hosts, AllowOverride FileInfo on the app's
folder, ``WSGIScriptReloading On|Off`` in the file) and the stats of the folder's
.htaccess are counted too (saved as ``stat-calls-site-STAMP``).

Prints, and saves to ``benchmarks/results/stat-calls-STAMP.{md,json}``, a table of
stat calls per request (targets, docs/DESIGN.md "Performance": <= 0.2 with reloading on,
exactly 0 with it off), the requests/s of each mode and the ratio on/off (target
>= 0.95; with several rounds the median requests/s of each mode is used). No other
request reaches the server, so the counts are wrk's requests alone. Requires
``wrk`` on PATH. All traffic goes to 127.0.0.1 and every run is bounded in time.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NamedTuple

HOST = "127.0.0.1"
BENCH_DIR = Path(__file__).resolve().parent
REPO_ROOT = BENCH_DIR.parent
RESULTS_DIR = BENCH_DIR / "results"
PROJECT_APP = REPO_ROOT / "examples" / "hello.wsgi"
FALLBACK_APP = BENCH_DIR / "apps" / "hello.wsgi"

STARTUP_TIMEOUT_S = 20.0
STOP_TIMEOUT_S = 15.0
WRK_EXTRA_TIMEOUT_S = 30.0
TARGET_ON = 0.2
TARGET_RATIO = 0.95
FOREIGN_CPU_LIMIT = 0.25  # cores used by other processes above which a run is flagged

_STOP_RE = re.compile(
    r"stopped after (?P<requests>[\d,]+) request\(s\); (?P<stats>[\d,]+) stat\(s\)"
)
_HTACCESS_RE = re.compile(r"(?P<htaccess>[\d,]+) of \.htaccess")


class StopLine(NamedTuple):
    requests: int
    stats: int

    @property
    def stats_per_request(self) -> float:
        return self.stats / self.requests if self.requests else 0.0


def parse_stop_line(log: str) -> StopLine | None:
    """The counts of asyncwsgi's last ``stopped after ...`` line, or None."""
    matches = list(_STOP_RE.finditer(log))
    if not matches:
        return None
    last = matches[-1]
    return StopLine(int(last["requests"].replace(",", "")), int(last["stats"].replace(",", "")))


def _yes(ok: bool) -> str:
    return "yes" if ok else "**NO**"


def render_table(rows: Sequence[dict[str, Any]]) -> str:
    """Markdown table of the runs, then the on/off throughput ratio (pure)."""
    lines = [
        "| reloading | req/s | requests | stat calls | stats/request | target | wrk errors |",
        "| --- | ---: | ---: | ---: | ---: | --- | ---: |",
    ]
    for row in rows:
        label = row["reloading"]
        if row.get("rounds", 1) > 1:
            label += f" #{row['round']}"
        if row.get("error"):
            lines.append(f"| {label} | not run: {row['error']} | | | | | |")
            continue
        ratio = row["stats_per_request"]
        if row["reloading"] == "on":
            target = f"<= {TARGET_ON:g}: {_yes(ratio <= TARGET_ON)}"
        else:
            target = f"exactly 0: {_yes(row['stats'] == 0)}"
        lines.append(
            f"| {label} | {row['requests_per_s']:,.0f} | {row['requests']:,} | "
            f"{row['stats']:,} | {ratio:.3f} | {target} | {row['errors']:,} |"
        )
    rps = {
        mode: [r["requests_per_s"] for r in rows if r["reloading"] == mode and not r.get("error")]
        for mode in ("on", "off")
    }
    lines.append("")
    if rps["on"] and rps["off"]:
        on, off = statistics.median(rps["on"]), statistics.median(rps["off"])
        ratio = on / off
        lines.append(
            f"Requests/s with reloading on/off = {ratio:.3f} "
            f"(target >= {TARGET_RATIO:g}: {_yes(ratio >= TARGET_RATIO)})"
            + (" — medians over rounds" if len(rps["on"]) > 1 else "")
        )
        if len(rps["on"]) > 1 or len(rps["off"]) > 1:
            # Other processes only ever slow a run down, so the best round is the one
            # least disturbed: a second estimate on a shared machine.
            best_on, best_off = max(rps["on"]), max(rps["off"])
            lines.append("")
            lines.append(
                f"Best rounds: on {best_on:,.0f} req/s, off {best_off:,.0f} req/s, "
                f"ratio {best_on / best_off:.3f}"
            )
    else:
        lines.append("on/off ratio: not available (a run failed)")
    busy = [row for row in rows if row.get("foreign_cpu")]
    if busy:
        lines.append("")
    for row in busy:
        label = row["reloading"] + (f" #{row['round']}" if row.get("rounds", 1) > 1 else "")
        lines.append(f"- busy machine during `{label}`: {row['foreign_cpu']}")
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------------------- running


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        port: int = sock.getsockname()[1]
        return port


def find_wrk() -> str | None:
    candidate = Path(sys.executable).parent / "wrk"
    if candidate.is_file() and os.access(candidate, os.X_OK):
        return str(candidate)
    return shutil.which("wrk")


def run_mode(
    mode: str, app: Path, wrk: str, args: argparse.Namespace, workdir: Path
) -> dict[str, Any]:
    """One server start, one wrk run, one SIGTERM; the row for the table."""
    import asyncwsgi_cmd
    import cpustat
    from wrkparse import WrkParseError, parse_wrk_output

    row: dict[str, Any] = {"reloading": mode}
    port = free_port()
    out_path = workdir / f"stdout-{mode}.log"
    err_path = workdir / f"stderr-{mode}.log"
    if args.site:
        # In the file, so that the folder's .htaccess is watched as it would be.
        argv = asyncwsgi_cmd.site_argv(app, HOST, port, workdir, reloading=mode)
    else:
        argv = asyncwsgi_cmd.argv(app, HOST, port, "embedded", extra=("--script-reloading", mode))
    with open(out_path, "wb") as out, open(err_path, "wb") as err:
        proc = subprocess.Popen(
            argv,
            cwd=REPO_ROOT,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=err,
            start_new_session=True,
        )
    try:
        deadline = time.monotonic() + STARTUP_TIMEOUT_S
        while b"Listening on" not in out_path.read_bytes():
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(
                    "asyncwsgi did not start: " + err_path.read_text(errors="replace")[-1500:]
                )
            time.sleep(0.05)
        wrk_argv = [
            wrk,
            f"-t{args.threads}",
            f"-c{args.connections}",
            f"-d{args.duration:g}s",
            f"http://{HOST}:{port}/",
        ]
        before = cpustat.snapshot()
        done = subprocess.run(
            wrk_argv,
            capture_output=True,
            text=True,
            timeout=args.duration + WRK_EXTRA_TIMEOUT_S,
            check=False,
        )
        foreign = cpustat.foreign_cpu(before, cpustat.snapshot(), proc.pid)
        row["foreign_cpu_cores"] = foreign.cores if foreign else None
        if foreign is not None and foreign.cores >= FOREIGN_CPU_LIMIT:
            row["foreign_cpu"] = foreign.describe()
        row["wrk_output"] = done.stdout + done.stderr
        result = parse_wrk_output(done.stdout)
        row.update(requests_per_s=result.requests_per_sec, errors=result.errors)
    except (RuntimeError, OSError, subprocess.TimeoutExpired, WrkParseError) as exc:
        row["error"] = f"{type(exc).__name__}: {exc}"
    finally:
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(STOP_TIMEOUT_S)
    server_log = err_path.read_text(errors="replace")
    stop = parse_stop_line(server_log)
    if stop is None and "error" not in row:
        row["error"] = "no 'stopped after ... stat(s)' line: " + server_log[-500:]
    if stop is not None:
        row.update(
            requests=stop.requests, stats=stop.stats, stats_per_request=stop.stats_per_request
        )
        htaccess = list(_HTACCESS_RE.finditer(server_log))
        if htaccess:
            row["htaccess_stats"] = int(htaccess[-1]["htaccess"].replace(",", ""))
    row["exit_code"] = proc.returncode
    return row


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", 1)[0])
    parser.add_argument("--duration", type=float, default=10.0, help="wrk -d, seconds")
    parser.add_argument("--connections", type=int, default=50, help="wrk -c")
    parser.add_argument("--threads", type=int, default=2, help="wrk -t")
    parser.add_argument("--rounds", type=int, default=1, help="alternate on/off N times")
    parser.add_argument(
        "--quiet-wait",
        type=float,
        default=15.0,
        help="before each run, wait up to S s for other processes to go idle",
    )
    parser.add_argument(
        "--site", action="store_true", help="serve the app from a config file (--config)"
    )
    parser.add_argument("--no-save", action="store_true", help="print only, write no files")
    args = parser.parse_args(argv)
    if not 1 <= args.duration <= 120 or not 1 <= args.rounds <= 10:
        parser.error("--duration must be within 1..120 s and --rounds within 1..10")
    if not 1 <= args.connections <= 10000 or not 1 <= args.threads <= args.connections:
        parser.error("--connections within 1..10000, --threads within 1..connections")

    sys.path.insert(0, str(BENCH_DIR))  # wrkparse, reload_under_load
    from reload_under_load import machine, wait_for_quiet_machine

    wrk = find_wrk()
    if wrk is None:
        log("wrk is not on PATH; install it (apt-get install wrk)")
        return 2
    app = PROJECT_APP if PROJECT_APP.is_file() else FALLBACK_APP
    now = dt.datetime.now()
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="stat-calls-") as tmp:
        for round_no in range(1, args.rounds + 1):
            for mode in ("on", "off"):
                log(f"--- reloading {mode}, round {round_no}/{args.rounds}")
                wait_for_quiet_machine(args.quiet_wait)
                row = run_mode(mode, app, wrk, args, Path(tmp))
                row.update(round=round_no, rounds=args.rounds)
                if row.get("error"):
                    log(f"    failed: {row['error']}")
                else:
                    log(
                        f"    {row['requests_per_s']:,.0f} req/s, {row['requests']:,} requests, "
                        f"{row['stats']:,} stats ({row['stats_per_request']:.4f}/request)"
                    )
                rows.append(row)
    rows.sort(key=lambda r: (r["reloading"] != "on", r["round"]))
    report = (
        f"## Stat calls per request — {now:%Y-%m-%d %H:%M}\n\n"
        f"asyncwsgi on `{app.relative_to(REPO_ROOT)}`, `--threads 8`, "
        f"`wrk -t{args.threads} -c{args.connections} -d{args.duration:g}s`, "
        f"{args.rounds} round(s)"
        + (", served from a config file (`--config`, two virtual hosts)" if args.site else "")
        + f". Machine: {machine()}.\n\n"
        + render_table(rows)
    )
    for row in rows:
        if "htaccess_stats" in row and row.get("requests"):
            report += (
                f"- .htaccess stats, reloading {row['reloading']}: {row['htaccess_stats']:,} "
                f"({row['htaccess_stats'] / row['requests']:.3f}/request)\n"
            )
    print(report)
    if not args.no_save:
        RESULTS_DIR.mkdir(parents=True, exist_ok=True)
        stem = RESULTS_DIR / f"stat-calls{'-site' if args.site else ''}-{now:%Y%m%d-%H%M}"
        stem.with_suffix(".md").write_text(report)
        meta = {"date": f"{now:%Y-%m-%d %H:%M}", "machine": machine(), "args": vars(args)}
        stem.with_suffix(".json").write_text(json.dumps({"meta": meta, "runs": rows}, indent=1))
        log(f"saved {stem}.md and .json")
    failed = any(r.get("error") for r in rows)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
