"""Static files: asyncwsgi ``--static`` against nginx serving the same files.

Usage::

    python benchmarks/static_files.py [--duration 8] [--connections 50] [--rounds 3]

Lays out a folder with a small file (a 4 KiB stylesheet) and a large one (1 MiB), then
measures, in interleaved rounds, asyncwsgi (one process, ``--static /static=DIR``, the
hello app beside it, ``--cpu-affinity`` too) and nginx (Debian's, one worker process,
``sendfile on``, access log off) with ``wrk -t2`` on each file. Prints a Markdown table
of medians with the ratio asyncwsgi/nginx and the servers' CPU per request; writes it to
``benchmarks/results/static-DATE.md`` unless ``--no-save``. Needs ``nginx`` and ``wrk``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import urllib.request
from pathlib import Path

import asyncwsgi_cmd
import cpustat
from run import free_port
from switches import wait_serving
from wrkparse import parse_wrk_output

ROOT = Path(__file__).resolve().parents[1]
HELLO = ROOT / "examples" / "hello.wsgi"
RESULTS = Path(__file__).resolve().parent / "results"
FILES = {"small": ("site.css", 4096), "large": ("big.bin", 1 << 20)}

NGINX_CONF = """\
worker_processes 1;
daemon off;
pid {folder}/nginx.pid;
error_log {folder}/nginx-error.log;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    sendfile on;
    tcp_nopush on;
    keepalive_requests 100000;
    include /etc/nginx/mime.types;
    client_body_temp_path {folder}/tmp;
    proxy_temp_path {folder}/tmp;
    fastcgi_temp_path {folder}/tmp;
    uwsgi_temp_path {folder}/tmp;
    scgi_temp_path {folder}/tmp;
    server {{
        listen 127.0.0.1:{port};
        location /static/ {{ alias {static}/; }}
    }}
}}
"""


def start(name: str, folder: Path, static: Path) -> tuple[subprocess.Popen[bytes], int]:
    port = free_port()
    if name.startswith("asyncwsgi"):
        extra = ["--static", f"/static={static}"]
        if name.endswith("affinity"):
            extra.append("--cpu-affinity")
        argv = asyncwsgi_cmd.argv(HELLO, "127.0.0.1", port, extra=extra)
    else:
        conf = folder / "nginx.conf"
        (folder / "tmp").mkdir(exist_ok=True)
        conf.write_text(NGINX_CONF.format(folder=folder, port=port, static=static))
        argv = ["nginx", "-c", str(conf), "-p", str(folder)]
    process = subprocess.Popen(
        argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
    )
    wait_serving(port)
    return process, port


def stop(process: subprocess.Popen[bytes]) -> None:
    try:
        os.killpg(process.pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    try:
        process.wait(10)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()


def measure(
    name: str, folder: Path, static: Path, duration: int, connections: int
) -> dict[str, tuple[float, float, float]]:
    """file kind -> (req/s, MB/s, server CPU µs per request)."""
    process, port = start(name, folder, static)
    found: dict[str, tuple[float, float, float]] = {}
    try:
        for kind, (file, size) in FILES.items():
            url = f"http://127.0.0.1:{port}/static/{file}"
            with urllib.request.urlopen(url, timeout=10) as response:
                body = response.read()
            if body != (static / file).read_bytes():
                raise RuntimeError(f"{name} served {len(body)} bytes for {file}, not the file")
            subprocess.run(["wrk", "-t2", "-c10", "-d1s", url], capture_output=True, check=True)
            before = cpustat.snapshot()
            out = subprocess.run(
                ["wrk", "--latency", "-t2", f"-c{connections}", f"-d{duration}s", url],
                capture_output=True,
                text=True,
                check=True,
            ).stdout
            after = cpustat.snapshot()
            result = parse_wrk_output(out)
            if "Non-2xx" in out or result.read_errors or result.timeout_errors:
                raise RuntimeError(f"{name}: failed requests:\n{out}")
            cpu = cpustat.tree_cpu_seconds(before, after, process.pid) or 0.0
            per_request = cpu / max(1, result.requests) * 1e6
            rate = result.requests_per_sec
            found[kind] = (rate, rate * size / 1e6, per_request)
    finally:
        stop(process)
    return found


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=int, default=8)
    parser.add_argument("--connections", type=int, default=50)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--no-save", action="store_true")
    args = parser.parse_args()
    if not shutil.which("nginx") or not shutil.which("wrk"):
        print("needs nginx and wrk", file=sys.stderr)
        return 2
    servers = ("asyncwsgi", "asyncwsgi-affinity", "nginx")
    runs: dict[str, list[dict[str, tuple[float, float, float]]]] = {s: [] for s in servers}
    with tempfile.TemporaryDirectory(prefix="asyncwsgi-static-") as tmp:
        folder = Path(tmp)
        folder.chmod(0o755)  # nginx's worker, started by root, runs as nobody
        static = folder / "static"
        static.mkdir()
        for file, size in FILES.values():
            (static / file).write_bytes(os.urandom(size))
        for round_number in range(args.rounds):
            for name in servers:
                print(f"round {round_number + 1}: {name}", file=sys.stderr)
                runs[name].append(measure(name, folder, static, args.duration, args.connections))

    def median(name: str, kind: str, index: int) -> float:
        return statistics.median(r[kind][index] for r in runs[name])

    now = dt.datetime.now(dt.timezone.utc)
    lines = [
        f"# Static files: asyncwsgi against nginx ({now:%Y-%m-%d %H:%M} UTC)",
        "",
        f"wrk -t2 -c{args.connections} -d{args.duration}s, {args.rounds} interleaved rounds, "
        f"medians; {os.cpu_count()} cores; nginx: 1 worker, sendfile on, access log off; "
        "asyncwsgi: 1 process, --static, access log off.",
        "",
        "| server | 4 KiB req/s | ÷ nginx | CPU µs/request | 1 MiB req/s | MB/s | ÷ nginx "
        "| CPU µs/request |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for name in servers:
        small, large = median(name, "small", 0), median(name, "large", 0)
        lines.append(
            f"| {name} | {small:,.0f} | {small / median('nginx', 'small', 0):.2f}x | "
            f"{median(name, 'small', 2):.0f} | {large:,.0f} | {median(name, 'large', 1):,.0f} | "
            f"{large / median('nginx', 'large', 0):.2f}x | {median(name, 'large', 2):.0f} |"
        )
    text = "\n".join(lines) + "\n"
    print(text)
    if not args.no_save:
        RESULTS.mkdir(exist_ok=True)
        (RESULTS / f"static-{now:%Y%m%d-%H%M}.md").write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
