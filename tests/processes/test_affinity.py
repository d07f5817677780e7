"""``--cpu-affinity``: which core each process gets, and the processes really held there
(read from ``/proc``, over a real server)."""

from __future__ import annotations

import subprocess
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import httpx
import pytest

from asyncwsgi.processes.affinity import CoreChooser, usable_cores
from asyncwsgi.processes.child import Child

HELLO = Path(__file__).parents[2] / "examples" / "hello.wsgi"
CORES = usable_cores()
two_cores = pytest.mark.skipif(len(CORES) < 2, reason="needs two cores to tell them apart")


def child(group: Any, generation: int = 1) -> Child:
    return Child(group, generation)


def test_processes_are_spread_over_the_cores_least_held_first() -> None:
    group = SimpleNamespace(generation=1)
    chooser = CoreChooser()
    taken = [chooser.take(child(group)) for _ in range(2 * len(CORES))]
    assert sorted(taken) == sorted(CORES * 2)
    assert taken[: len(CORES)] == CORES, "each core once before any twice"


@two_cores
def test_a_replacement_takes_the_core_the_process_it_replaces_leaves() -> None:
    group = SimpleNamespace(generation=1)
    chooser = CoreChooser()
    first, second = child(group), child(group)
    assert (chooser.take(first), chooser.take(second)) == (CORES[0], CORES[1])
    group.generation = 2  # a rolling restart: the first's replacement starts
    replacement = child(group, 2)
    assert chooser.take(replacement) == CORES[0]
    chooser.release(first)
    # The second's replacement starts while the second still runs on CORES[1].
    assert chooser.take(child(group, 2)) == CORES[1]
    chooser.release(second)


def cores_of(pid: int) -> set[str]:
    """The cores each thread of ``pid`` may run on, as /proc lists them."""
    found = set()
    for task in Path(f"/proc/{pid}/task").iterdir():
        for line in (task / "status").read_text().splitlines():
            if line.startswith("Cpus_allowed_list:"):
                found.add(line.split(":", 1)[1].strip())
    return found


def children(pid: int, title: str) -> list[int]:
    out = subprocess.run(["pgrep", "-P", str(pid), "-f", title], capture_output=True, text=True)
    return sorted(int(p) for p in out.stdout.split())


def test_a_single_server_holds_every_thread_to_one_core(start_server: Any) -> None:
    server = start_server(HELLO, "--cpu-affinity")
    assert httpx.get(server.url + "/").status_code == 200
    assert cores_of(server.proc.pid) == {str(CORES[0])}


def test_without_it_the_server_keeps_every_core(start_server: Any) -> None:
    server = start_server(HELLO)
    assert httpx.get(server.url + "/").status_code == 200
    assert cores_of(server.proc.pid) == {_cpu_list(CORES)}


def _cpu_list(cores: list[int]) -> str:
    """The kernel's form of a core list: ranges joined by commas (0-1,4)."""
    parts: list[str] = []
    start = prev = cores[0]
    for core in [*cores[1:], None]:
        if core is not None and core == prev + 1:
            prev = core
            continue
        parts.append(str(start) if start == prev else f"{start}-{prev}")
        if core is not None:
            start = prev = core
    return ",".join(parts)


@two_cores
def test_each_copy_gets_its_own_core(start_server: Any) -> None:
    server = start_server(HELLO, "--cpu-affinity", "--processes", "2")
    assert httpx.get(server.url + "/").status_code == 200
    copies = children(server.proc.pid, "asyncwsgi: server copy")
    assert len(copies) == 2
    held = [cores_of(pid) for pid in copies]
    assert all(len(h) == 1 for h in held), held
    assert held[0] != held[1], "two copies on one core"
    assert cores_of(server.proc.pid) == {_cpu_list(CORES)}, "the supervisor is not held"


@two_cores
def test_each_daemon_process_gets_its_own_core(start_server: Any) -> None:
    server = start_server(HELLO, "--cpu-affinity", "--mode", "daemon", "--processes", "2")
    assert httpx.get(server.url + "/").status_code == 200
    daemons = children(server.proc.pid, "asyncwsgi: daemon")
    assert len(daemons) == 2
    held = sorted(next(iter(cores_of(pid))) for pid in daemons)
    assert held == sorted(str(c) for c in CORES[:2])
    assert all(len(cores_of(pid)) == 1 for pid in daemons)
    assert cores_of(server.proc.pid) == {_cpu_list(CORES)}, "the front is not held"
