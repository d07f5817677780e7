"""The deployment examples in ``examples/deploy/``, exercised: the systemd unit's
``Type=notify`` handshake (its own ExecStart, against a fake ``NOTIFY_SOCKET``, with its
watchdog, reload and stop), the Kubernetes manifest's probes and drain (its container's
own arguments), and the image (built where a docker daemon answers, skipped otherwise)."""

from __future__ import annotations

import configparser
import shlex
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from tests.conftest import ROOT, ServerProcess, notifications

DEPLOY = ROOT / "examples" / "deploy"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def unit() -> configparser.ConfigParser:
    parser = configparser.ConfigParser(strict=False, interpolation=None)
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    parser.read(DEPLOY / "asyncwsgi.service")
    return parser


def local_args(args: list[str], tmp_path: Path) -> list[str]:
    """A command line of the examples with this machine's paths and free ports."""
    (tmp_path / "app.wsgi").write_text((ROOT / "examples" / "hello.wsgi").read_text())
    out = []
    for arg in args:
        arg = arg.replace("/srv/app/app.wsgi", str(tmp_path / "app.wsgi"))
        arg = arg.replace("/var/log/asyncwsgi/", f"{tmp_path}/")
        if arg.endswith((":8000", ":9100")):
            arg = f"127.0.0.1:{free_port()}"
        out.append(arg)
    return out


def test_the_systemd_unit_handshake_watchdog_reload_and_stop(tmp_path: Path) -> None:
    service = unit()["Service"]
    assert service["Type"] == "notify" and service["ExecReload"] == "/bin/kill -HUP $MAINPID"
    command = shlex.split(service["ExecStart"])
    assert command[1:3] == ["-m", "asyncwsgi"]
    args = local_args(command[3:], tmp_path)
    notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    notify.bind(str(tmp_path / "notify.sock"))
    notify.settimeout(0.2)
    watchdog_usec = int(service["WatchdogSec"]) * 1_000_000
    env = {"NOTIFY_SOCKET": str(tmp_path / "notify.sock"), "WATCHDOG_USEC": str(watchdog_usec)}
    server = ServerProcess([*args, "--control-socket", "none"], tmp_path, env=env).wait_ready(30)
    try:
        ready = notifications(notify, "READY=1")
        assert "WATCHDOG=1" not in ready[:1], "READY comes first, once the group is ready"
        assert notifications(notify, "WATCHDOG=1")
        assert httpx.get(server.url + "/").text == "Hello, world!\n"
        assert (tmp_path / "access.log").exists() and (tmp_path / "error.log").exists()
        server.signal(signal.SIGHUP)  # ExecReload
        assert notifications(notify, "RELOADING=1")[-1].startswith("RELOADING=1\nMONOTONIC_USEC=")
        assert notifications(notify, "READY=1")  # the new processes serve
        server.signal(signal.SIGTERM)  # KillSignal
        assert notifications(notify, "STOPPING=1")
        assert server.proc.wait(30) == 0
    finally:
        server.stop()
        notify.close()


def manifest() -> list[dict[str, Any]]:
    with open(DEPLOY / "kubernetes.yaml", encoding="utf-8") as f:
        return [doc for doc in yaml.safe_load_all(f) if doc]


def test_the_kubernetes_probes_and_drain_match_the_server(tmp_path: Path) -> None:
    deployment = next(d for d in manifest() if d["kind"] == "Deployment")
    pod = deployment["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    args = container["args"]
    metrics_port = int(args[args.index("--metrics-bind") + 1].rsplit(":", 1)[1])
    delay = float(args[args.index("--shutdown-delay") + 1])
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert ports["metrics"] == metrics_port
    for probe, path in (("readinessProbe", "/readyz"), ("livenessProbe", "/healthz")):
        assert container[probe]["httpGet"] == {"path": path, "port": "metrics"}
    assert pod["terminationGracePeriodSeconds"] > delay + 30  # delay + graceful timeout
    # The container's own arguments, on this machine: the probes answer, and SIGTERM
    # turns /readyz to 503 while the application still answers.
    local = local_args(args[3:], tmp_path)
    local[local.index("--shutdown-delay") + 1] = "2"
    metrics = "http://" + local[local.index("--metrics-bind") + 1]
    server = ServerProcess(local, tmp_path).wait_ready(30)
    try:
        assert httpx.get(metrics + "/readyz").status_code == 200
        assert httpx.get(metrics + "/healthz").status_code == 200
        server.signal(signal.SIGTERM)
        time.sleep(0.3)
        assert httpx.get(metrics + "/readyz").status_code == 503
        assert httpx.get(server.url + "/").status_code == 200
        assert server.proc.wait(30) == 0
    finally:
        server.stop()
    lines = [line for line in server.stdout_lines if line.startswith("{")]
    assert lines, "the manifest asks for JSON access lines"


def docker_answers() -> bool:
    if shutil.which("docker") is None:
        return False
    done = subprocess.run(["docker", "info"], capture_output=True, timeout=30)
    return done.returncode == 0


@pytest.mark.skipif(not docker_answers(), reason="no docker daemon here")
def test_the_image_builds_and_serves() -> None:  # pragma: no cover - needs docker
    tag = "asyncwsgi-test-hello"
    subprocess.run(
        ["docker", "build", "-f", str(DEPLOY / "Dockerfile"), "-t", tag, str(ROOT)],
        check=True,
        timeout=900,
    )
    port = free_port()
    container = subprocess.run(
        ["docker", "run", "-d", "--rm", "-p", f"127.0.0.1:{port}:8000", tag],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                assert httpx.get(f"http://127.0.0.1:{port}/").text == "Hello, world!\n"
                break
            except httpx.HTTPError:
                assert time.monotonic() < deadline
                time.sleep(0.5)
    finally:
        subprocess.run(["docker", "stop", container], capture_output=True, timeout=60)
