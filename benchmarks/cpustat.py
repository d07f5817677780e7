"""Detect other processes competing for the CPU while a benchmark runs (Linux /proc).

On a 2-core machine a single busy neighbour (a test suite, another benchmark)
halves the numbers, so ``run.py`` measures how much CPU was used by processes
other than the server under test and wrk, and flags the measurement when it is
more than a small fraction of a core. The same snapshots give the CPU the server
itself used (:func:`tree_cpu_seconds`), which ``run.py`` divides by the requests
served. Where /proc is unavailable every function degrades to "unknown"
(None / empty) rather than failing.
"""

from __future__ import annotations

import os
import resource
import time
from dataclasses import dataclass

_CLK_TCK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


@dataclass(frozen=True)
class ProcCpu:
    pid: int
    pgrp: int
    comm: str
    ticks: int  # utime + stime, all threads
    ppid: int = 0
    state: str = "?"  # R, S, D, Z (zombie) ...


def read_total_busy_ticks() -> int | None:
    """user + nice + system ticks of all CPUs (no idle, iowait, irq, softirq, steal)."""
    try:
        with open("/proc/stat", encoding="ascii") as f:
            fields = f.readline().split()
    except OSError:
        return None
    if not fields or fields[0] != "cpu":
        return None
    user, nice, system = (int(v) for v in fields[1:4])
    return user + nice + system


def read_processes() -> dict[int, ProcCpu]:
    """CPU ticks used so far by every process visible in /proc."""
    procs: dict[int, ProcCpu] = {}
    try:
        entries = os.listdir("/proc")
    except OSError:
        return procs
    for entry in entries:
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", encoding="utf-8", errors="replace") as f:
                data = f.read()
        except OSError:
            continue  # exited meanwhile
        head, sep, tail = data.rpartition(")")
        if not sep:
            continue
        comm = head.partition("(")[2]
        rest = tail.split()
        try:
            procs[int(entry)] = ProcCpu(
                int(entry), int(rest[2]), comm, int(rest[11]) + int(rest[12]), int(rest[1]), rest[0]
            )
        except (IndexError, ValueError):
            continue
    return procs


@dataclass(frozen=True)
class CpuSnapshot:
    when: float
    total_busy: int | None
    processes: dict[int, ProcCpu]
    children_ticks: int  # CPU of this process's reaped children (wrk)


def _children_ticks() -> int:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return round((usage.ru_utime + usage.ru_stime) * _CLK_TCK)


def snapshot() -> CpuSnapshot:
    return CpuSnapshot(
        time.monotonic(), read_total_busy_ticks(), read_processes(), _children_ticks()
    )


@dataclass(frozen=True)
class ForeignCpu:
    """CPU used by anything but the server group, wrk and the runner, between two snapshots."""

    cores: float  # average number of cores' worth of foreign CPU use
    top: list[tuple[str, float]]  # (comm, cores) of the busiest foreign processes

    def describe(self) -> str:
        who = ", ".join(f"{name} {cores:.2f}" for name, cores in self.top) or "unattributed"
        return f"{self.cores:.2f} cores used by other processes ({who})"


def foreign_cpu(before: CpuSnapshot, after: CpuSnapshot, our_pgrp: int) -> ForeignCpu | None:
    """How much CPU others used between the snapshots; None if /proc was unreadable."""
    elapsed = after.when - before.when
    if before.total_busy is None or after.total_busy is None or elapsed <= 0:
        return None
    me = os.getpid()
    ours = after.children_ticks - before.children_ticks
    foreign_by_proc: list[tuple[str, int]] = []
    for pid, proc in after.processes.items():
        delta = proc.ticks - (before.processes[pid].ticks if pid in before.processes else 0)
        if delta <= 0:
            continue
        if proc.pgrp == our_pgrp or pid == me:
            ours += delta
        else:
            foreign_by_proc.append((proc.comm, delta))
    total = after.total_busy - before.total_busy
    scale = _CLK_TCK * elapsed
    foreign_by_proc.sort(key=lambda item: item[1], reverse=True)
    top = [(name, ticks / scale) for name, ticks in foreign_by_proc[:3] if ticks / scale >= 0.05]
    return ForeignCpu(max(0, total - ours) / scale, top)


def tree_members(processes: dict[int, ProcCpu], root: int) -> list[int]:
    """``root``, its descendants and the other members of its process group, sorted.

    Zombies are left out. Pure: ``processes`` is what :func:`read_processes` returned.
    """
    children: dict[int, list[int]] = {}
    for proc in processes.values():
        children.setdefault(proc.ppid, []).append(proc.pid)
    found = {pid for pid, proc in processes.items() if proc.pgrp == root}
    seen: set[int] = set()
    stack = [root]
    while stack:
        pid = stack.pop()
        if pid in seen:
            continue
        seen.add(pid)
        found.add(pid)
        stack.extend(children.get(pid, ()))
    return sorted(pid for pid in found if pid in processes and processes[pid].state != "Z")


def tree_cpu_seconds(before: CpuSnapshot, after: CpuSnapshot, root: int) -> float | None:
    """CPU seconds (user + system, all threads) the server started as ``root`` used
    between the snapshots: every process of its tree and process group at ``after``
    (:func:`tree_members`), each counted from ``before`` (from 0 if it started meanwhile).

    A process that exited between the snapshots is missed. None if /proc was unreadable.
    Pure: the snapshots hold everything.
    """
    if not after.processes:
        return None
    ticks = 0
    for pid in tree_members(after.processes, root):
        previous = before.processes.get(pid)
        ticks += after.processes[pid].ticks - (previous.ticks if previous is not None else 0)
    return max(0, ticks) / _CLK_TCK


def process_label(pid: int, limit: int = 60) -> str:
    """The command line of ``pid`` (its process title, if it set one), shortened."""
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            raw = f.read()
    except OSError:
        return "?"
    text = raw.rstrip(b"\0").replace(b"\0", b" ").decode(errors="replace").strip()
    return text if len(text) <= limit else text[: limit - 3] + "..."


def server_processes(root: int) -> list[tuple[int, str]]:
    """(pid, command line) of every living process of the server started as ``root``."""
    return [(pid, process_label(pid)) for pid in tree_members(read_processes(), root)]


def wait_for_processes(root: int, minimum: int, timeout: float) -> list[tuple[int, str]]:
    """Poll (bounded) until the server has at least ``minimum`` processes; return them.

    Returns what was found last, which may be fewer: the caller decides what that means.
    Without /proc it returns [] at once.
    """
    deadline = time.monotonic() + timeout
    while True:
        found = server_processes(root)
        if not found or len(found) >= minimum or time.monotonic() >= deadline:
            return found
        time.sleep(0.1)


def describe_processes(found: list[tuple[int, str]]) -> str:
    """``3: `asyncwsgi: main`, `python -m ...` x2`` (labels counted, in order of pid)."""
    counts: dict[str, int] = {}
    for _pid, label in found:
        counts[label] = counts.get(label, 0) + 1
    parts = [f"`{label}`" + (f" x{n}" if n > 1 else "") for label, n in counts.items()]
    return f"{len(found)}: " + ", ".join(parts)


def scrub_paths(text: str) -> str:
    """Results name files relative to the repository, the interpreter as ``python`` and
    other places as ``<venv>``, ``<tmp>`` and ``~``, so a saved report (server logs
    included) says nothing about the machine's directory layout."""
    import sys
    import tempfile
    from pathlib import Path

    root = str(Path(__file__).resolve().parent.parent)
    for exe in sorted({sys.executable, os.path.realpath(sys.executable)}, key=len, reverse=True):
        text = text.replace(exe, "python")
    replacements = [
        (root, "."),
        (sys.prefix, "<venv>"),
        (os.path.realpath(sys.prefix), "<venv>"),
        (tempfile.gettempdir(), "<tmp>"),
        (str(Path.home()), "~"),
    ]
    for old, new in sorted(replacements, key=lambda pair: len(pair[0]), reverse=True):
        if old and old != os.sep:
            text = text.replace(old, new)
    return text
