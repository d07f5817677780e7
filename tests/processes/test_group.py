"""The process pool manager (``asyncwsgi.processes.ProcessGroup``) in-process, with real
child processes.

A test :class:`PipeLauncher` starts tiny ``python -c`` children that follow a
:class:`Plan`: say READY (a ``{"ready": true}`` report on the group's report pipe, as a
server copy does) after a delay or never, report why it could not boot, exit with a given
status (``EXIT_BOOT_FAILED``, a crash, a signal), and exit on SIGTERM or ignore it. The
launcher records every spawn, READY, retire and exit, and the group's ``on_change`` plus a
sampling task record the children's states, so the tests check what the group did at every
moment, not only at the end. Timeouts are small (half a second) and every wait polls a
condition with a deadline (:func:`until`); nothing sleeps a fixed time.

Every child has ``MARKER`` on its command line: the fixtures check that none is left
running, and a child whose parent (this test process) dies exits by itself.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import os
import signal
import subprocess
import sys
import time
from collections import deque
from collections.abc import AsyncIterator, Callable, Iterable, Iterator
from dataclasses import dataclass

import pytest

from asyncwsgi.config import ProcessSettings
from asyncwsgi.errors import ScriptLoadError
from asyncwsgi.processes import EXIT_BOOT_FAILED, Child, ChildState, ProcessGroup

pytestmark = pytest.mark.timeout(30)

MARKER = f"asyncwsgi-test-processes-{os.getpid()}"
GRACE = 0.5  # graceful_timeout and shutdown_timeout of every group here
READY, STARTING, RETIRING = ChildState.READY, ChildState.STARTING, ChildState.RETIRING

# argv: MARKER, tag, fd, ready_after, exit_after, status, on_term ("exit" or "ignore"),
# error (reported before exiting; "" for none); a negative delay is "never", a negative
# status is "killed by that signal".
CHILD = r"""
import json, os, signal, sys, time
_, _, fd, ready_after, exit_after, status, on_term, error = sys.argv
fd, ready_after, exit_after, status = int(fd), float(ready_after), float(exit_after), int(status)
if on_term == "ignore":
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
else:
    signal.signal(signal.SIGTERM, lambda *_: os._exit(0))
parent, began, said = os.getppid(), time.monotonic(), False
while True:
    now = time.monotonic() - began
    if not said and 0 <= ready_after <= now:
        os.write(fd, b'{"ready": true}\n')
        said = True
    if 0 <= exit_after <= now:
        if error:
            os.write(fd, json.dumps({"error": error}).encode() + b"\n")
        if status < 0:
            os.kill(os.getpid(), -status)
        os._exit(status)
    if os.getppid() != parent:  # the test process is gone: never outlive it
        os._exit(0)
    time.sleep(0.005)
"""


@dataclass(frozen=True)
class Plan:
    """What one child does; delays are seconds after the child started."""

    ready_after: float | None = 0.0  # None: never says READY
    exit_after: float | None = None  # None: runs until told to stop
    status: int = 0  # negative: kills itself with that signal
    ignore_term: bool = False
    error: str = ""  # reported before it exits
    spawn_fails: bool = False  # the launcher cannot start it (out of processes)


NORMAL = Plan()
BOOT_FAILS = Plan(
    ready_after=None, exit_after=0.05, status=EXIT_BOOT_FAILED, error="SyntaxError: boom"
)
DIES_BOOTING = Plan(ready_after=None, exit_after=0.05, status=-signal.SIGSEGV)
CRASHES = Plan(exit_after=0.15, status=1)  # READY at once, dies soon after


Snapshot = tuple[tuple[int, ChildState], ...]  # (generation, state) of each child


def snapshot(group: ProcessGroup) -> Snapshot:
    return tuple((c.generation, c.state) for c in group.children)


def count(snap: Snapshot, state: ChildState, generation: int | None = None) -> int:
    return sum(1 for g, s in snap if s is state and generation in (None, g))


class PipeLauncher:
    """A ``Launcher`` of real children following :class:`Plan` s, recording what happens."""

    _tags = itertools.count(1)

    def __init__(self, plans: Iterable[Plan], default: Plan) -> None:
        self.loop = asyncio.get_running_loop()
        self.plans = deque(plans)
        self.default = default
        self.tag = f"{MARKER}:{next(self._tags)}:"  # this launcher's children only
        self.group: ProcessGroup  # set by the fixture
        self.processes: list[subprocess.Popen[bytes]] = []
        self.spawned: list[tuple[float, Child]] = []
        self.exited_at: dict[Child, float] = {}
        # (the retired child, the group's states when its retire was asked)
        self.retired: list[tuple[Child, Snapshot]] = []
        self.history: list[Snapshot] = []  # every on_change, and samples

    def spawn(self, child: Child) -> subprocess.Popen[bytes]:
        plan = self.plans.popleft() if self.plans else self.default
        args = [plan.ready_after, plan.exit_after, plan.status]
        args = ["-1" if a is None else str(a) for a in args]
        if plan.spawn_fails:
            raise OSError(11, "Resource temporarily unavailable")
        on_term = "ignore" if plan.ignore_term else "exit"
        fd = child.report_fd
        process = subprocess.Popen(
            [sys.executable, "-c", CHILD, self.tag, str(fd), *args, on_term, plan.error],
            pass_fds=[fd],
            stdin=subprocess.DEVNULL,
        )
        self.processes.append(process)
        self.spawned.append((time.monotonic(), child))
        return process

    def retire(self, child: Child) -> None:
        self.retired.append((child, snapshot(self.group)))
        if child.process is not None:
            child.process.send_signal(signal.SIGTERM)

    def exited(self, child: Child) -> None:
        self.exited_at[child] = time.monotonic()

    def changed(self) -> None:
        self.history.append(snapshot(self.group))

    async def sample(self) -> None:
        """Record the states every few ms too (a task; cancel it when done)."""
        while True:
            self.history.append(snapshot(self.group))
            await asyncio.sleep(0.002)

    def running(self) -> set[int]:
        """This launcher's children still running, as ``pgrep`` sees them."""
        return pids_matching(self.tag)

    def cleanup(self) -> list[int]:
        """Kill and reap whatever is left (a failed test); return those pids."""
        left = [p.pid for p in self.processes if p.poll() is None]
        for process in self.processes:
            if process.poll() is None:
                process.kill()
                process.wait()
        return left


def pids_matching(pattern: str) -> set[int]:
    out = subprocess.run(["pgrep", "-f", pattern], capture_output=True, text=True, check=False)
    return {int(pid) for pid in out.stdout.split()}


async def until(predicate: Callable[[], object], timeout: float = 5.0) -> None:
    """Wait until ``predicate()`` is true; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {predicate}")
        await asyncio.sleep(0.005)


def status(child: Child) -> int | None:
    """How the child's process ended (``Popen.returncode``: negative for a signal)."""
    assert child.process is not None
    return child.process.returncode


def settled(group: ProcessGroup, generation: int) -> bool:
    """``size`` children, every one READY and of ``generation``, none retiring."""
    return len(group.children) == group.size and all(
        c.state is READY and c.generation == generation for c in group.children
    )


MakeGroup = Callable[..., tuple[ProcessGroup, PipeLauncher]]


@pytest.fixture(scope="module", autouse=True)
def no_child_left_behind() -> Iterator[None]:
    yield
    assert not pids_matching(MARKER), "a test left a child process running"


@pytest.fixture
async def make_group() -> AsyncIterator[MakeGroup]:
    """``make_group(processes, plans=..., default=..., **settings)``: a group and its
    launcher; the group is closed afterwards and no child may be left running."""
    made: list[PipeLauncher] = []

    def make(
        processes: int = 1, plans: Iterable[Plan] = (), default: Plan = NORMAL, **settings: float
    ) -> tuple[ProcessGroup, PipeLauncher]:
        launcher = PipeLauncher(plans, default)
        options = {"graceful_timeout": GRACE, "shutdown_timeout": GRACE, **settings}
        config = ProcessSettings(processes=processes, **options)  # type: ignore[arg-type]
        launcher.group = ProcessGroup("test", launcher, config, on_change=launcher.changed)
        made.append(launcher)
        return launcher.group, launcher

    yield make
    for launcher in made:
        await launcher.group.close()
        assert not launcher.cleanup(), "close() returned with children still running"


@pytest.fixture
def error_log() -> Iterator[list[tuple[str, str]]]:
    """(level, message) of what is logged on ``asyncwsgi.error``. A handler of our own on
    that logger: other tests in the session may have set ``propagate = False`` on it (the
    CLI's ``setup_logging``), which would hide its records from ``caplog``."""
    logger = logging.getLogger("asyncwsgi.error")
    records: list[tuple[str, str]] = []

    class Collect(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append((record.levelname, record.getMessage()))

    handler = Collect(logging.DEBUG)
    level, disabled = logger.level, logger.disabled
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    logger.disabled = False
    try:
        yield records
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)
        logger.disabled = disabled


# -- start ---------------------------------------------------------------------------------


async def test_start_waits_until_every_process_is_ready(make_group: MakeGroup) -> None:
    # The last child is slow to say READY: start() must wait for it too.
    group, launcher = make_group(3, plans=[NORMAL, NORMAL, Plan(ready_after=0.4)])
    began = time.monotonic()
    await group.start()
    assert time.monotonic() - began >= 0.4
    assert len(group.ready_children) == 3 == len(group.children)
    assert {c.pid for c in group.ready_children} == launcher.running()
    assert not group.failed and group.generation == 1


async def test_start_raises_when_a_process_fails_to_boot(
    make_group: MakeGroup, error_log: list[tuple[str, str]]
) -> None:
    group, launcher = make_group(2, plans=[NORMAL, BOOT_FAILS])
    with pytest.raises(ScriptLoadError, match="could not load the application"):
        await group.start()
    assert group.failed and not group.children
    assert len(launcher.processes) == 2, "a boot failure is not respawned"
    assert all(p.returncode is not None for p in launcher.processes)  # reaped by the group
    assert not launcher.running()
    bad = launcher.processes[1].pid
    assert (
        "ERROR",
        f"process group 'test' failed: process {bad} could not load the application; "
        "requests get 503 until the script changes again",
    ) in error_log


async def test_start_gives_up_after_three_crashes_while_starting(make_group: MakeGroup) -> None:
    # Not a boot failure (another status), but dying before READY again and again.
    group, launcher = make_group(1, default=Plan(ready_after=None, exit_after=0.05, status=1))
    with pytest.raises(ScriptLoadError, match="died while starting"):
        await group.start()
    assert len(launcher.processes) == 3 and group.failed
    assert not launcher.running()


async def test_cancelling_start_stops_the_starting_processes(make_group: MakeGroup) -> None:
    group, launcher = make_group(2, default=Plan(ready_after=None))
    starting = asyncio.ensure_future(group.start())
    await until(lambda: len(launcher.running()) == 2)
    starting.cancel()
    with pytest.raises(asyncio.CancelledError):
        await starting
    assert not group.children and not launcher.running()
    # A process that never said READY is signalled directly: the launcher has no work to
    # take back from it.
    assert not launcher.retired


async def test_no_replacement_is_announced_once_start_gave_up(
    make_group: MakeGroup, error_log: list[tuple[str, str]]
) -> None:
    group, _ = make_group(1, default=Plan(ready_after=None, exit_after=0.05, status=1))
    with pytest.raises(ScriptLoadError):
        await group.start()
    failed_at = next(i for i, (_, msg) in enumerate(error_log) if " failed: " in msg)
    assert not [msg for _, msg in error_log[failed_at:] if "starting a replacement" in msg]


# -- startup_timeout -----------------------------------------------------------------------

HANGS = Plan(ready_after=None)  # its import never returns


async def test_a_process_not_ready_in_time_fails_the_start(
    make_group: MakeGroup, error_log: list[tuple[str, str]]
) -> None:
    group, launcher = make_group(2, plans=[NORMAL, HANGS], startup_timeout=0.3)
    began = time.monotonic()
    with pytest.raises(ScriptLoadError, match=r"was not ready within 0\.3 s"):
        await group.start()
    assert time.monotonic() - began < 5
    assert group.failed and not group.children and not launcher.running()
    hung = launcher.processes[1]
    assert hung.returncode == -signal.SIGKILL
    said = [msg for level, msg in error_log if level == "ERROR" and str(hung.pid) in msg]
    assert said == [
        f"process group 'test' failed: process {hung.pid} was not ready within 0.3 s "
        "(startup_timeout: is its import stuck?) and was killed; requests get 503 until the "
        "script changes again"
    ], "logged once"


async def test_a_replacement_not_ready_in_time_leaves_the_old_processes_serving(
    make_group: MakeGroup, error_log: list[tuple[str, str]]
) -> None:
    group, launcher = make_group(2, plans=[NORMAL, NORMAL, HANGS], startup_timeout=0.3)
    await group.start()
    old = list(group.children)
    group.restart("script changed")
    await until(lambda: len(launcher.processes) == 3 and launcher.processes[2].poll() is not None)
    await until(lambda: group.given_up == 2)
    assert launcher.processes[2].returncode == -signal.SIGKILL
    assert not group.failed
    assert group.children == old and all(c.state is READY for c in old)
    assert not launcher.retired
    assert any(
        "serving (degraded); the next change or reload tries again" in msg for _, msg in error_log
    )
    # No other replacement is tried for that generation ...
    await asyncio.sleep(0.5)
    assert len(launcher.processes) == 3
    # ... the next restart is.
    group.restart("script changed again")
    await until(lambda: settled(group, 3))
    assert len(launcher.processes) == 5


async def test_startup_timeout_zero_waits_for_ever(make_group: MakeGroup) -> None:
    group, launcher = make_group(1, plans=[Plan(ready_after=0.6)], startup_timeout=0)
    await group.start()
    assert settled(group, 1) and len(launcher.processes) == 1


# -- restart -------------------------------------------------------------------------------


@pytest.mark.parametrize("processes", [1, 3])
async def test_restart_replaces_one_at_a_time_replacement_first(
    make_group: MakeGroup, processes: int
) -> None:
    group, launcher = make_group(processes)
    await group.start()
    old = {c.pid for c in group.children}
    launcher.history.clear()
    sampler = asyncio.ensure_future(launcher.sample())
    try:
        group.restart("test restart")
        await until(lambda: settled(group, 2))
    finally:
        sampler.cancel()

    assert not old & {c.pid for c in group.children}
    assert group.restarts == processes
    assert len(launcher.processes) == 2 * processes, "one replacement per process"
    for snap in launcher.history:
        assert count(snap, READY) >= processes, f"fewer READY than {processes}: {snap}"
        assert count(snap, STARTING) <= 1 and count(snap, RETIRING) <= 1, f"not 1 by 1: {snap}"
    # The k-th old process is asked to stop only once k new ones are READY.
    stale = [(c, snap) for c, snap in launcher.retired if c.generation == 1]
    assert len(stale) == processes
    for k, (_, snap) in enumerate(stale, 1):
        assert count(snap, READY, generation=2) >= k, snap


@pytest.mark.parametrize("plan", [BOOT_FAILS, DIES_BOOTING], ids=["boot-fails", "dies-booting"])
async def test_a_replacement_that_cannot_boot_leaves_the_old_processes_serving(
    make_group: MakeGroup, plan: Plan, caplog: pytest.LogCaptureFixture
) -> None:
    group, launcher = make_group(2, plans=[NORMAL, NORMAL, plan])
    await group.start()
    old = list(group.children)
    before = time.time()
    with caplog.at_level(logging.ERROR, logger="asyncwsgi.error"):
        group.restart("script changed")
        await until(lambda: group.degraded is not None)
        await asyncio.sleep(0.3)  # time for a respawn loop, if there were one
    assert group.ready_children == old, "the old generation serves on, untouched"
    assert not launcher.retired and not group.failed
    assert len(launcher.processes) == 3, "one attempt, no respawn loop"
    degraded = group.degraded
    assert degraded is not None
    assert degraded["failed_generation"] == 2 and degraded["serving_generation"] == 1
    assert degraded["since"] >= before
    if plan is BOOT_FAILS:
        assert degraded["error"] == "SyntaxError: boom", "the process's own report"
    else:
        assert "died before it was ready (killed by SIGSEGV)" in degraded["error"]
    errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 1 and "keeping generation 1 serving (degraded)" in errors[0]
    assert group.restarts == 0, "nothing was replaced"

    # restart() tries anew: a fresh generation replaces the old one, and the group is
    # no longer degraded.
    group.restart("script fixed")
    await until(lambda: settled(group, 3))
    assert group.degraded is None and group.restarts == 2
    assert all(c.state is ChildState.EXITED for c in old)


async def test_a_serving_process_lost_while_degraded_is_not_replaced_by_the_broken_code(
    make_group: MakeGroup,
) -> None:
    # The second process crashes 0.6 s after it started; by then the replacement failed.
    group, launcher = make_group(2, plans=[NORMAL, Plan(exit_after=0.6, status=1), BOOT_FAILS])
    await group.start()
    group.restart("script changed")
    await until(lambda: group.degraded is not None)
    await until(lambda: len(group.ready_children) == 1)
    await asyncio.sleep(0.3)
    assert len(launcher.processes) == 3, "no process of the broken generation was started"
    assert group.ready_children and not group.failed


async def test_the_last_serving_process_lost_while_degraded_fails_the_group_once(
    make_group: MakeGroup,
) -> None:
    # The broken generation gets one last try when nothing serves; its failure fails the
    # group (503s until the next change), not a respawn loop.
    dies = Plan(exit_after=0.8, status=1)
    group, launcher = make_group(1, plans=[dies, BOOT_FAILS, BOOT_FAILS])
    await group.start()
    group.restart("script changed")
    await until(lambda: group.degraded is not None)
    await until(lambda: group.failed)
    await asyncio.sleep(0.5)
    assert len(launcher.processes) == 3 and not group.children
    assert group.degraded is None


async def test_a_replacement_that_cannot_be_started_leaves_the_old_processes_serving(
    make_group: MakeGroup,
) -> None:
    group, _ = make_group(2, plans=[NORMAL, NORMAL, Plan(spawn_fails=True)])
    await group.start()
    old = list(group.children)
    group.restart("script changed")
    assert group.degraded is not None and "could not start a process" in group.degraded["error"]
    assert group.ready_children == old and not group.failed
    assert all(c.pid for c in group.children), "no half-made child left behind"
    group.restart("try again")
    await until(lambda: settled(group, 3))


async def test_a_boot_failure_with_nothing_to_keep_fails_the_group(make_group: MakeGroup) -> None:
    # The only serving process is gone and its replacement cannot boot either: 503s.
    group, launcher = make_group(1, plans=[CRASHES, BOOT_FAILS])
    await group.start()
    await until(lambda: group.failed)
    assert not group.children and len(launcher.processes) == 2
    group.restart("script fixed")
    await until(lambda: settled(group, 2))


# -- crashes -------------------------------------------------------------------------------


async def test_crashed_process_is_respawned_with_backoff(make_group: MakeGroup) -> None:
    group, launcher = make_group(1, plans=[CRASHES, CRASHES])
    await group.start()
    await until(lambda: len(launcher.processes) == 3 and len(group.ready_children) == 1)
    (_, first), (t1, second), (t2, third) = launcher.spawned
    assert first.state is second.state is ChildState.EXITED
    assert status(first) == status(second) == 1
    assert group.ready_children == [third] and len({first.pid, second.pid, third.pid}) == 3
    assert second.ready_at and third.ready_at, "each respawned process became READY"
    # The first crash is respawned at once; the second (young again) only after 0.5 s.
    assert t1 - launcher.exited_at[first] < 0.3
    assert t2 - launcher.exited_at[second] >= 0.45
    assert group.restarts == 0, "a crash respawn is not a restart"


async def test_kill_stops_a_process_now_and_it_is_respawned(make_group: MakeGroup) -> None:
    group, launcher = make_group(1)
    await group.start()
    (victim,) = group.children
    group.kill(victim)
    await until(lambda: len(group.ready_children) == 1 and group.children[0] is not victim)
    assert status(victim) == -signal.SIGKILL
    assert not launcher.retired


# -- replacing one process -----------------------------------------------------------------


async def test_replace_one_process_gracefully(make_group: MakeGroup) -> None:
    group, launcher = make_group(2)
    await group.start()
    victim, other = group.children
    group.replace(victim, "asked to")
    group.replace(victim, "asked again")  # already doomed: no second replacement
    await until(lambda: victim.state is ChildState.EXITED and len(group.ready_children) == 2)
    assert victim.doomed == "asked to" and status(victim) == 0
    assert len(launcher.processes) == 3 and other in group.children
    # Replacement first: when the victim was asked to stop, two others were READY.
    ((retired, snap),) = launcher.retired
    assert retired is victim and count(snap, READY) == 2
    assert group.restarts == 1


def test_maximum_requests_jitter() -> None:
    def jitter(maximum: int, jitter: int) -> int:
        return ProcessSettings(maximum_requests=maximum, maximum_requests_jitter=jitter).jitter

    assert jitter(100, -1) == 10, "the default: a tenth"
    assert jitter(5, -1) == 0
    assert jitter(100, 0) == 0
    assert jitter(100, 7) == 7


async def test_maximum_requests_replaces_the_process(make_group: MakeGroup) -> None:
    group, launcher = make_group(1, maximum_requests=20)
    await group.start()
    (child,) = group.children
    assert 20 <= child.max_requests <= 22  # the default jitter: up to a tenth more

    def serve(child: Child) -> None:  # what DaemonLink.open_stream does per request
        child.requests += 1
        if child.max_requests and child.requests >= child.max_requests:
            child.group.replace(child, f"maximum requests ({child.max_requests}) reached")

    while child.requests < child.max_requests - 1:
        serve(child)
    assert len(launcher.processes) == 1 and not child.doomed
    serve(child)
    assert child.doomed.startswith("maximum requests")
    await until(lambda: child.state is ChildState.EXITED and len(group.ready_children) == 1)
    (fresh,) = group.children
    assert fresh.requests == 0 and 20 <= fresh.max_requests <= 22


async def test_restart_interval_replaces_the_process(
    make_group: MakeGroup, error_log: list[tuple[str, str]]
) -> None:
    group, launcher = make_group(1, restart_interval=0.4)
    await group.start()
    (first,) = group.children
    await until(lambda: first.state is ChildState.EXITED and len(group.ready_children) == 1)
    (replaced_at, _) = launcher.spawned[1]
    assert replaced_at - first.ready_at >= 0.39  # its replacement started when it was due
    assert first.doomed == "restart interval" and group.restarts >= 1
    assert ("INFO", f"process group 'test': replacing process {first.pid} (restart interval)") in (
        error_log
    )


# -- close ---------------------------------------------------------------------------------


async def test_close_retires_every_process(make_group: MakeGroup) -> None:
    group, launcher = make_group(3)
    await group.start()
    children = list(group.children)
    began = time.monotonic()
    await group.close()
    assert time.monotonic() - began < GRACE, "they exit on SIGTERM: no waiting for the grace"
    assert [c for c, _ in launcher.retired] == children
    assert all(c.state is ChildState.EXITED and status(c) == 0 for c in children)
    assert not group.children and not launcher.running()
    assert group.restarts == 0, "closing is not restarting"


async def test_close_kills_a_process_that_ignores_sigterm(
    make_group: MakeGroup, error_log: list[tuple[str, str]]
) -> None:
    group, launcher = make_group(1, default=Plan(ignore_term=True))
    await group.start()
    (child,) = group.children
    began = time.monotonic()
    await group.close()
    took = time.monotonic() - began
    # Retired, SIGTERM after graceful_timeout, SIGKILL shutdown_timeout later.
    assert 2 * GRACE - 0.05 <= took < 2 * GRACE + 1.0
    assert status(child) == -signal.SIGKILL and not launcher.running()
    label = "process group 'test'"
    assert error_log[-3:-1] == [
        ("WARNING", f"{label}: process {child.pid} did not finish within 0.5 s; stopping it"),
        ("WARNING", f"{label}: killing process {child.pid}"),
    ]
    assert error_log[-1] == (
        "INFO",
        f"{label}: process {child.pid} (generation 1) stopped (killed by SIGKILL)",
    )


async def test_concurrent_close_calls_return_when_all_have_exited(make_group: MakeGroup) -> None:
    # Small timeouts: a second close() once replaced the event the first waited on, which
    # then waited them out (1.4 s here).
    group, launcher = make_group(1, graceful_timeout=0.2, shutdown_timeout=0.2)
    await group.start()
    began = time.monotonic()
    await asyncio.gather(group.close(), group.close())
    assert not launcher.running()
    assert time.monotonic() - began < 1.0, "the child exits on SIGTERM at once"


# -- on_change and the log -----------------------------------------------------------------


async def test_on_change_follows_the_group(make_group: MakeGroup) -> None:
    group, launcher = make_group(2)
    await group.start()
    # Called as each process became READY: the last call saw the group as it is now.
    assert launcher.history[-1] == snapshot(group) and count(snapshot(group), READY) == 2
    group.kill(group.children[0])
    await until(lambda: len(launcher.processes) == 3 and len(group.ready_children) == 2)
    assert launcher.history[-1] == snapshot(group)
    assert any(count(snap, READY) == 1 for snap in launcher.history), "the crash was reported"
    await group.close()
    assert launcher.history[-1] == ()


async def test_log_lines_of_a_restart(
    make_group: MakeGroup, error_log: list[tuple[str, str]]
) -> None:
    group, _ = make_group(1)
    await group.start()
    (old,) = group.children
    error_log.clear()
    group.restart("script changed")
    await until(lambda: settled(group, 2))
    (new,) = group.children
    label = "process group 'test'"
    assert [(level, msg.split(" ready in ")[0]) for level, msg in error_log] == [
        ("INFO", f"{label}: script changed; replacing 1 process(es) one at a time (generation 2)"),
        ("INFO", f"{label}: process {new.pid} (generation 2)"),
        ("INFO", f"{label}: process {old.pid} (generation 1) stopped (exit status 0)"),
    ]


async def test_log_lines_of_crashes(
    make_group: MakeGroup, error_log: list[tuple[str, str]]
) -> None:
    group, launcher = make_group(1, plans=[CRASHES, Plan(exit_after=0.15, status=-9)])
    await group.start()
    await until(lambda: len(launcher.processes) == 3 and len(group.ready_children) == 1)
    first, second = (c for _, c in launcher.spawned[:2])
    label = "process group 'test'"
    assert [entry for entry in error_log if entry[0] == "ERROR"] == [
        ("ERROR", f"{label}: process {first.pid} died (exit status 1); starting a replacement"),
        (
            "ERROR",
            f"{label}: process {second.pid} died (killed by SIGKILL); "
            "starting a replacement in 0.5 s",
        ),
    ]
