"""Context switches per request: how often the server's threads give up or lose the CPU.

Usage::

    python benchmarks/switches.py [--duration 5] [--connections 50] [-- EXTRA OPTIONS]

Starts asyncwsgi on ``examples/hello.wsgi`` (one process, 8 threads) twice, without and
with ``--cpu-affinity`` (plus EXTRA OPTIONS for both), runs wrk against each, and reads
every thread's ``voluntary_ctxt_switches`` (the thread waited: a lock, the GIL, a queue,
the socket) and ``nonvoluntary_ctxt_switches`` (the scheduler took the CPU away) from
``/proc/PID/task/*/status`` before and after. Each voluntary switch is a sleep some other
thread's wake-up (a futex wake, a write to the loop's self-pipe) ends, so their number per
request counts the hand-offs a request costs. Prints one table; saves nothing.
"""

from __future__ import annotations

import argparse
import socket
import subprocess
import sys
import time
from pathlib import Path

import asyncwsgi_cmd
from run import free_port
from wrkparse import parse_wrk_output

ROOT = Path(__file__).resolve().parents[1]
HELLO = ROOT / "examples" / "hello.wsgi"


def switches(pid: int) -> tuple[int, int, int]:
    """(voluntary, involuntary, threads) summed over the process's threads now."""
    voluntary = involuntary = threads = 0
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            text = (task / "status").read_text()
        except OSError:
            continue  # the thread exited
        threads += 1
        for line in text.splitlines():
            if line.startswith("voluntary_ctxt_switches:"):
                voluntary += int(line.split()[1])
            elif line.startswith("nonvoluntary_ctxt_switches:"):
                involuntary += int(line.split()[1])
    return voluntary, involuntary, threads


def wait_serving(port: int, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError("the server did not start")


def measure(extra: list[str], duration: int, connections: int) -> dict[str, float]:
    port = free_port()
    argv = asyncwsgi_cmd.argv(HELLO, "127.0.0.1", port, extra=extra)
    server = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_serving(port)
        url = f"http://127.0.0.1:{port}/"
        subprocess.run(["wrk", "-t2", "-c50", "-d2s", url], capture_output=True, check=True)
        before = switches(server.pid)
        out = subprocess.run(
            ["wrk", "--latency", "-t2", f"-c{connections}", f"-d{duration}s", url],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        after = switches(server.pid)
    finally:
        server.terminate()
        server.wait(10)
    result = parse_wrk_output(out)
    n = result.requests
    return {
        "req/s": result.requests_per_sec,
        "voluntary/request": (after[0] - before[0]) / n,
        "involuntary/request": (after[1] - before[1]) / n,
        "threads": after[2],
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=int, default=5)
    parser.add_argument("--connections", type=int, default=50)
    parser.add_argument("extra", nargs="*", help="more asyncwsgi options (after --)")
    args = parser.parse_args()
    rows = [
        ("asyncwsgi", measure(args.extra, args.duration, args.connections)),
        (
            "asyncwsgi --cpu-affinity",
            measure([*args.extra, "--cpu-affinity"], args.duration, args.connections),
        ),
    ]
    print(f"hello, 1 process, wrk -t2 -c{args.connections} -d{args.duration}s")
    print("| server | req/s | voluntary switches/request | involuntary/request | threads |")
    print("| --- | ---: | ---: | ---: | ---: |")
    for name, r in rows:
        print(
            f"| {name} | {r['req/s']:,.0f} | {r['voluntary/request']:.2f} | "
            f"{r['involuntary/request']:.2f} | {r['threads']:.0f} |"
        )
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).parent))
    sys.exit(main())
