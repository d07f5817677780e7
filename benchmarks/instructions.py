"""Instructions per request on the request path, counted by valgrind: a number that does
not move with the machine's noise.

Throughput on a shared 2-core VM moves by 10-30 % from one run to the next; instruction
counts do not. This drives the embedded-mode request path in ONE thread -- the HTTP
connection on a fake transport, the WSGI runner called inline, the hello app -- and has
callgrind count the instructions of N requests and of none; the difference divided by N
is the cost of a request. Hash randomisation is off, so the count is the same run after
run. It leaves out what only shows with threads (the hand-offs, the GIL), which
``run.py`` measures.

Usage::

    python benchmarks/instructions.py                        # this checkout
    python benchmarks/instructions.py --baseline /tmp/before # and another checkout
    python benchmarks/instructions.py --requests 4000 --reloading off

Requires ``valgrind`` (Debian: ``apt-get install valgrind``). Prints a Markdown table.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
APP = ROOT / "examples" / "hello.wsgi"

# The code that runs under valgrind: the same for every checkout (it uses only names the
# package has had from the start, and the server's limits where it has them).
DRIVER = r"""
import asyncio, gc, sys
from asyncwsgi.http.protocol import HttpProtocol
from asyncwsgi.http.state import HttpLimits, ServerState
from asyncwsgi.scripts.reloader import ScriptSource
from asyncwsgi.wsgi.runner import WSGIRunner

app, reloading, count = sys.argv[1], sys.argv[2] == "on", int(sys.argv[3])


class Transport:
    def write(self, data): pass
    def get_extra_info(self, name, default=None):
        return {"peername": ("127.0.0.1", 5555), "sockname": ("127.0.0.1", 8000)}.get(name, default)
    def is_closing(self): return False
    def close(self): pass
    def abort(self): pass
    def pause_reading(self): pass
    def resume_reading(self): pass
    def get_write_buffer_size(self): return 0


class InlinePool:  # the worker's part runs at once, in this thread
    def submit(self, fn, a, b): fn(a, b)


def limits():
    try:
        from asyncwsgi.config import Config
        from asyncwsgi.server.server import http_limits
    except ImportError:  # before the settings table
        return HttpLimits()
    return http_limits(Config.build(app=app))


async def main():
    loop = asyncio.get_running_loop()
    runner = WSGIRunner(ScriptSource(app, reloading=reloading), InlinePool())
    # No access line, no metrics (the keyword's name changed when metrics came).
    import inspect
    named = inspect.signature(ServerState).parameters
    quiet = "on_finish" if "on_finish" in named else "access_log"
    state = ServerState(loop, runner, limits(), **{quiet: None})
    protocol = HttpProtocol(state)
    protocol.connection_made(Transport())
    request = b"GET / HTTP/1.1\r\nHost: localhost\r\nUser-Agent: wrk\r\n\r\n"
    for _ in range(2000):  # warm up: caches, first-time paths
        protocol.data_received(request)
        await asyncio.sleep(0)
    gc.disable()
    for _ in range(count):
        protocol.data_received(request)
        await asyncio.sleep(0)
    state.close()


asyncio.run(main())
"""


def parse_collected(stderr: str) -> int:
    """The instruction count callgrind reports (``==N== Collected : 123``)."""
    found = re.findall(r"Collected\s*:\s*([\d,]+)", stderr)
    if not found:
        raise ValueError("no 'Collected' line in valgrind's output")
    return int(found[-1].replace(",", ""))


def count_instructions(checkout: Path, reloading: str, requests: int, workdir: Path) -> int:
    driver = workdir / "driver.py"
    driver.write_text(DRIVER)
    env = {**os.environ, "PYTHONHASHSEED": "0", "PYTHONPATH": str(checkout)}
    argv = [
        "valgrind",
        "--tool=callgrind",
        f"--callgrind-out-file={workdir / 'callgrind.out'}",
        sys.executable,
        str(driver),
        str(APP),
        reloading,
        str(requests),
    ]
    # Started in the checkout, so that it (not an installed copy) is what is imported.
    done = subprocess.run(argv, cwd=checkout, env=env, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"the driver failed in {checkout}:\n{done.stderr[-2000:]}")
    return parse_collected(done.stderr)


def per_request(checkout: Path, reloading: str, requests: int) -> float:
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        base = count_instructions(checkout, reloading, 0, work)
        full = count_instructions(checkout, reloading, requests, work)
    return (full - base) / requests


def render(rows: list[tuple[str, str, float]], requests: int) -> str:
    lines = [
        f"Instructions per request (callgrind, {requests} requests, one thread, PYTHONHASHSEED=0)",
        "",
        "| code | reloading | instructions/request | vs the first row |",
        "| --- | --- | ---: | ---: |",
    ]
    for name, reloading, value in rows:
        first = next(v for n, r, v in rows if r == reloading)
        lines.append(f"| {name} | {reloading} | {value:,.0f} | {value / first:.3f}x |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=8000)
    parser.add_argument("--reloading", choices=("on", "off", "both"), default="both")
    parser.add_argument("--baseline", type=Path, help="another checkout to count too")
    args = parser.parse_args(argv)
    if shutil.which("valgrind") is None:
        print("valgrind is not installed (apt-get install valgrind)", file=sys.stderr)
        return 2
    checkouts = [("this checkout", ROOT)]
    if args.baseline is not None:
        checkouts.append((f"baseline ({args.baseline})", args.baseline.resolve()))
    modes = ("on", "off") if args.reloading == "both" else (args.reloading,)
    rows = [
        (name, mode, per_request(path, mode, args.requests))
        for mode in modes
        for name, path in checkouts
    ]
    print(render(rows, args.requests))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
