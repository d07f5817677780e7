"""The daemon process: runs the application for the front, over one UNIX socket.

Rule: threads, not asyncio, and each thread has one job. The *reader* thread blocks in
``recv``, decodes frames (``wire.FrameDecoder``) and dispatches them: a REQUEST becomes a
:class:`DaemonStream` handed to a worker thread, the other stream frames feed the stream it
names. *Worker* threads run the application through the same WSGI bridge as embedded
mode (``build_environ`` + ``call_application``) and write their own frames to the socket
under one send lock. The *main* thread only waits for events (signals, DRAIN done, end of
input) and handles them one at a time. Python runs signal handlers in the main thread,
so the handlers only enqueue an event: a handler can never wait for the send lock that
the code it interrupted holds.

Boot: set the process title, signals and logging, import the application, and only then
say HELLO. A process that cannot import the application logs the traceback once and
exits with :data:`EXIT_BOOT_FAILED` without saying anything on the wire.

Every stream ends with exactly one last frame (a FINAL RESPONSE_HEAD, RESPONSE_END or
RESPONSE_ABORT), sent under the send lock together with marking the stream ended, so any
frame the application tries to send after that is dropped.

Run as ``python -m asyncwsgi.daemon.process SPEC``; :func:`command` builds that command
line from a :class:`DaemonSpec`, so the front and this module cannot disagree about it.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import socket
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from queue import SimpleQueue
from types import FrameType
from typing import Final

import setproctitle

from asyncwsgi import config
from asyncwsgi.core.head import INTERNAL_ERROR
from asyncwsgi.daemon import wire
from asyncwsgi.daemon.stream import DaemonStream
from asyncwsgi.errors import (
    ClientDisconnected,
    ProtocolError,
    ScriptLoadError,
)
from asyncwsgi.logs import reopen as reopen_logs
from asyncwsgi.logs import setup_logging
from asyncwsgi.processes import EXIT_BOOT_FAILED, die_with_parent, report
from asyncwsgi.processes.affinity import hold_to
from asyncwsgi.processes.dumps import write_dump
from asyncwsgi.scripts.loader import is_script_path, load_script, load_target
from asyncwsgi.scripts.sources import ImportedFiles
from asyncwsgi.wsgi.environ import base_environ, build_environ
from asyncwsgi.wsgi.pool import ThreadPool
from asyncwsgi.wsgi.proxy import trust_for
from asyncwsgi.wsgi.response import FileWrapper, call_application
from asyncwsgi.wsgi.running import RequestWatch, RunningRequests
from asyncwsgi.wsgi.running import dump as dump_threads
from asyncwsgi.wsgi.types import Environ, WSGIApplication

__all__ = [
    "DEFAULT_REQUEST_WINDOW",
    "EXIT_BOOT_FAILED",
    "EXIT_OK",
    "EXIT_PROTOCOL_ERROR",
    "EXIT_USAGE",
    "DaemonSpec",
    "command",
    "main",
    "read_spec",
]

logger = logging.getLogger("asyncwsgi.error")

EXIT_OK: Final = 0
# The front sent bytes that are not the wire protocol.
EXIT_PROTOCOL_ERROR: Final = 4
# Not started as the front starts a daemon (see command()).
EXIT_USAGE: Final = 2
# Request body bytes the front may send on a new stream before the first WINDOW.
DEFAULT_REQUEST_WINDOW: Final = 256 * 1024

_RECV_SIZE: Final = 256 * 1024
# Frames queued at once that add up to less than this are joined into one sendall; more
# go out with sendmsg, which does not copy them.
_COPY_LIMIT: Final = 64 * 1024
_IOV_MAX: Final = 512
_U32_MAX: Final = 0xFFFFFFFF

# Events for the main thread.
_TERM: Final = "SIGTERM"
_RETIRE: Final = "SIGUSR1"
_DRAINED: Final = "drained"
_EOF: Final = "end of input"
_BROKEN: Final = "protocol error"
_REOPEN: Final = "SIGUSR2"  # the front's SIGUSR1: open the log files again
_DUMP: Final = "SIGURG"  # the front's dump command: write the threads to a file
_SIGNALS: Final = {signal.SIGTERM, signal.SIGUSR1, signal.SIGUSR2, signal.SIGURG, signal.SIGINT}


def _sendmsg_all(sock: socket.socket, buffers: list[bytes | memoryview]) -> None:
    """``sendall(b"".join(buffers))`` without the copy."""
    views = [memoryview(b) for b in buffers]
    while views:
        sent = sock.sendmsg(views[:_IOV_MAX])
        done = 0
        for view in views:
            if sent < view.nbytes:
                break
            sent -= view.nbytes
            done += 1
        del views[:done]
        if sent:
            views[0] = views[0][sent:]


# --------------------------------------------------------------------------------------
# The process: reader thread, worker threads, main thread
# --------------------------------------------------------------------------------------


class Daemon:
    """The daemon process: one socket to the front, a reader thread, worker threads."""

    def __init__(
        self,
        sock: socket.socket,
        app: WSGIApplication,
        events: SimpleQueue[str],
        *,
        group: str,
        generation: int,
        threads: int,
        request_window: int,
        multiprocess: bool,
        forwarded_allow_ips: str,
        send_timeout: float = config.default("send_timeout"),
        on_ping: Callable[[], None] | None = None,
        slow_request: float = 0.0,
        request_timeout: float = 0.0,
        dump_dir: str = "",
    ) -> None:
        self.sock = sock
        self.dump_dir = dump_dir
        self.watch = RequestWatch(
            None, lambda: (self.running,), slow=slow_request, timeout=request_timeout
        )
        self.on_ping = on_ping  # the reader thread calls it on each PING
        self.app = app
        self.events = events
        self.group = group
        self.generation = generation
        self.threads = threads
        self.request_window = request_window
        # How long a worker waits for response credit (the client taking nothing) before
        # it gives up on the request: the server's send_timeout.
        self.send_timeout = send_timeout
        # Frames waiting to be written, and the lock of whichever thread writes them.
        self._out: list[bytes | memoryview] = []
        self._writing = threading.Lock()
        self.broken = False  # the socket failed: nothing more can be sent
        # Open streams by id. The reader adds; the sender of a stream's last frame
        # removes it before the frame goes out, so before the front can reuse the id.
        self.streams: dict[int, DaemonStream] = {}
        # Requests handed to a worker and not yet returned from (close() included).
        self.jobs = 0
        self.draining = False
        self._jobs_lock = threading.Lock()
        self._base = base_environ(file_wrapper=FileWrapper, multiprocess=multiprocess)
        self._trust = trust_for(forwarded_allow_ips)
        self._pool: ThreadPool | None = None
        self._protocol_error: ProtocolError | None = None
        # The requests the workers run, for --slow-request, request-timeout and dump.
        self.running = RunningRequests()

    # -- main thread -------------------------------------------------------------------

    def run(self) -> tuple[int, bool]:
        """Serve until told to stop: (exit status, whether to exit at once)."""
        # Threads inherit the signal mask: with these blocked in every thread but this
        # one, the kernel delivers them here, where a blocking wait is interrupted and the
        # handler runs at once (not when this thread next happens to wake up).
        mask = signal.pthread_sigmask(signal.SIG_BLOCK, _SIGNALS)
        try:
            self._pool = ThreadPool(self.threads, name="asyncwsgi-daemon")
            reader = threading.Thread(target=self._read, name="asyncwsgi-reader", daemon=True)
            reader.start()
            if self.watch.slow or self.watch.timeout:
                threading.Thread(target=self._watch, name="asyncwsgi-watch", daemon=True).start()
        finally:
            signal.pthread_sigmask(signal.SIG_SETMASK, mask)
        hello = wire.encode_hello(
            pid=os.getpid(),
            generation=self.generation,
            threads=self.threads,
            request_window=self.request_window,
            group=self.group,
        )
        try:
            self.send(hello)
        except ClientDisconnected:
            return EXIT_OK, True
        logger.debug("daemon %r (generation %d) ready", self.group, self.generation)
        events = self.events
        while True:
            event = events.get()
            if event == _RETIRE:
                logger.info("SIGUSR1: asking the front to replace this process")
                self._send_quietly(wire.encode_retire(wire.RetireReason.SIGNAL))
            elif event == _REOPEN:
                reopen_logs()
            elif event == _DUMP and self.dump_dir:
                header = (
                    f"== process {os.getpid()}: daemon group {self.group!r}, "
                    f"generation {self.generation}"
                )
                try:
                    write_dump(self.dump_dir, dump_threads((self.running,), header))
                except OSError as exc:
                    logger.error("cannot write the dump to %s: %s", self.dump_dir, exc)
            elif event == _DRAINED:
                logger.debug("drained; exiting")
                return EXIT_OK, False
            elif event == _TERM:
                self._abort_all()
                return EXIT_OK, True
            elif event == _EOF:
                # Nothing open can be answered any more.
                return EXIT_OK, True
            elif event == _BROKEN:
                logger.error(
                    "the front broke the wire protocol (%s); exiting", self._protocol_error
                )
                return EXIT_PROTOCOL_ERROR, True

    def _abort_all(self) -> None:
        """SIGTERM: end every open stream with RESPONSE_ABORT(SHUTDOWN), best effort."""
        frames = []
        for stream in list(self.streams.values()):
            if not stream.ended:
                stream.ended = True
                frames.append(wire.encode_response_abort(stream.id, wire.AbortReason.SHUTDOWN))
        self.streams.clear()
        if not frames:
            return
        logger.warning("SIGTERM: abandoning %d request(s) in flight", len(frames))
        self._out.extend(frames)
        # A writer stuck in sendall (a front that stopped reading) keeps the lock.
        if self._writing.acquire(timeout=1.0):
            self.sock.settimeout(1.0)
            try:
                self._flush()
            except ClientDisconnected:
                pass

    # -- any thread: frames out --------------------------------------------------------
    # Whoever adds a frame while nobody is writing becomes the writer and writes every
    # frame queued until none is left; the others return at once. So a worker never
    # sleeps on a lock to send, and frames queued meanwhile go out in one sendall.

    def send(self, frame: bytes) -> None:
        """Queue ``frame`` and write out the queue unless another thread is at it."""
        if self.broken:
            raise ClientDisconnected("the front is gone")
        self._out.append(frame)
        if self._writing.acquire(False):
            self._flush()

    def send_parts(self, header: bytes, data: bytes | memoryview) -> None:
        """``send(header + data)`` without copying ``data``."""
        if self.broken:
            raise ClientDisconnected("the front is gone")
        self._out.extend((header, data))  # one step: nothing can land between the two
        if self._writing.acquire(False):
            self._flush()

    def _flush(self) -> None:
        """Write the queue out (``_writing`` held; released here)."""
        out = self._out
        sock = self.sock
        try:
            while True:
                while out:
                    # Appends go to the end meanwhile; only what was taken is deleted.
                    batch = out[:]
                    del out[: len(batch)]
                    if len(batch) == 1:
                        sock.sendall(batch[0])
                    elif sum(len(b) for b in batch) <= _COPY_LIMIT:
                        sock.sendall(b"".join(batch))
                    else:
                        _sendmsg_all(sock, batch)
                self._writing.release()
                # A frame queued after the last look, by a thread that found the lock
                # taken, is ours to write, unless another writer took over already.
                if not out or not self._writing.acquire(False):
                    return
        except OSError as exc:
            self.broken = True
            out.clear()
            self._writing.release()
            raise ClientDisconnected(f"the front is gone: {exc}") from exc

    def _send_quietly(self, frame: bytes) -> None:
        # Connection frames: if the front is gone, the reader sees the end of input.
        try:
            self.send(frame)
        except ClientDisconnected:
            pass

    # -- reader thread -----------------------------------------------------------------

    def _read(self) -> None:
        try:
            self._read_frames()
        except ProtocolError as exc:
            self._protocol_error = exc
            self.events.put(_BROKEN)
            return
        except OSError:
            pass
        except BaseException:
            logger.exception("the daemon's reader thread failed")
        self.events.put(_EOF)

    def _read_frames(self) -> None:
        recv = self.sock.recv
        feed = wire.FrameDecoder(sent_by=wire.Side.FRONT).feed
        streams = self.streams
        while True:
            data = recv(_RECV_SIZE)
            if not data:
                return
            # The frames of every request first, in the order of how often they come.
            for frame in feed(data):
                if isinstance(frame, wire.Request):
                    self._on_request(frame)
                elif isinstance(frame, wire.Window):
                    stream = streams.get(frame.stream_id)
                    if stream is not None:
                        stream.on_window(frame.increment)
                elif isinstance(frame, wire.Body):
                    stream = streams.get(frame.stream_id)
                    if stream is not None:
                        stream.on_body(frame.data)
                else:
                    self._on_other(frame)

    def _on_request(self, frame: wire.Request) -> None:
        stream_id = frame.stream_id
        if self.draining:
            # Never seen by the application: the front may send it elsewhere.
            self._send_quietly(wire.encode_response_abort(stream_id, wire.AbortReason.REFUSED))
            return
        if stream_id in self.streams:
            raise ProtocolError(f"REQUEST on stream {stream_id}, which is still open")
        stream = DaemonStream(self, frame)
        self.streams[stream_id] = stream
        with self._jobs_lock:
            self.jobs += 1
        assert self._pool is not None
        self._pool.submit(self._serve, stream, None)

    def _watch(self) -> None:
        """A thread of its own: the slow and overdue requests, logged with their stacks."""
        while not self.broken:
            time.sleep(self.watch.interval)
            self.watch.check()

    def _on_other(self, frame: wire.Frame) -> None:
        if isinstance(frame, wire.BodyEnd):
            stream = self.streams.get(frame.stream_id)
            if stream is not None:
                stream.on_body_end()
        elif isinstance(frame, wire.Cancel):
            stream = self.streams.get(frame.stream_id)
            if stream is not None:
                stream.on_cancel()
        elif isinstance(frame, wire.BodyError):
            stream = self.streams.get(frame.stream_id)
            if stream is not None:
                stream.on_body_error(frame.reason, frame.detail)
        elif isinstance(frame, wire.Ping):
            self._send_quietly(wire.encode_pong(frame.value))
            if self.on_ping is not None:
                self.on_ping()
        elif isinstance(frame, wire.Drain):
            with self._jobs_lock:
                self.draining = True
                idle = self.jobs == 0
            logger.debug("DRAIN with %d request(s) in flight", len(self.streams))
            if idle:
                self.events.put(_DRAINED)
        # The decoder has rejected every other type.

    # -- worker threads ----------------------------------------------------------------

    def _serve(self, stream: DaemonStream, _: object) -> None:
        self.running.started(stream)
        try:
            environ = self._environ(stream)
            if environ is not None:
                call_application(self.app, environ, stream)
        finally:
            self.running.done()
            try:
                if not stream.ended:  # every stream ends, whatever the application did
                    stream.abort()
            finally:
                with self._jobs_lock:
                    self.jobs -= 1
                    drained = self.draining and self.jobs == 0
                if drained:
                    self.events.put(_DRAINED)

    def _environ(self, stream: DaemonStream) -> Environ | None:
        try:
            environ = build_environ(stream, self._base)
            if self._trust is not None:
                self._trust.apply(environ)
        except Exception:
            logger.exception("cannot build the environ of %s %r", stream.method, stream.path)
            stream.send_error("500 Internal Server Error", INTERNAL_ERROR)
            return None
        return environ


# --------------------------------------------------------------------------------------
# Command line
# --------------------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class DaemonSpec:
    """What a daemon process is started with: the front builds it, the daemon reads it
    (one declaration, so the two cannot disagree)."""

    fd: int  # the connected AF_UNIX socket, inherited (pass it in pass_fds)
    group: str
    generation: int
    threads: int
    app: str  # an absolute script path or package.module:attr
    # The settings of the same names; their defaults are the settings table's.
    callable: str = config.default("callable")
    forwarded_allow_ips: str = config.default("forwarded_allow_ips")
    log_level: str = config.default("log_level")
    send_timeout: float = config.default("send_timeout")
    multiprocess: bool = True
    request_window: int = DEFAULT_REQUEST_WINDOW
    title: str = ""  # the process title; default "asyncwsgi: daemon GROUP"
    parent: int = 0  # the front's pid: this process exits when it dies (0: not watched)
    # The group's report pipe (inherited; -1: none): why the import failed, and with
    # --reload-on-changes the source files imported (after the import, then on PINGs).
    report_fd: int = -1
    report_files: bool = False
    site_packages: bool = False  # report modules from site-packages too
    cpu: int = -1  # the core to hold the process to (--cpu-affinity; -1: any)
    slow_request: float = 0.0  # --slow-request: log a request's stack after this long
    request_timeout: float = 0.0  # log a request's stack as the front answers it 504
    python_path: tuple[str, ...] = ()  # python-path=: first on sys.path
    dump_dir: str = ""  # where this process writes its threads on SIGURG (dump)
    error_logfile: str = ""  # --error-logfile: this process's stderr, reopened on SIGUSR2
    log_config: str = ""  # --log-config

    def __post_init__(self) -> None:
        for name in ("threads", "request_window"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= _U32_MAX:
                raise ValueError(f"{name} must be 1..{_U32_MAX}, not {value!r}")
        if self.log_level not in config.LOG_LEVELS:
            raise ValueError(f"log_level {self.log_level!r} is not one of {config.LOG_LEVELS}")


# How a daemon process starts. The working folder is not on sys.path (mod_wsgi's daemons
# do not import from it: an application's json.py must not hide the standard library's).
# With the server's own interpreter, the folder the server imported asyncwsgi from goes
# first, so the daemon runs the very code of its front (a checkout beside an installed
# copy, say). With another interpreter (python-home=), the server's folders for
# asyncwsgi and its packages go last (the environment's packages win: daemon/launch.py),
# and an environment with an asyncwsgi of its own is refused: it could speak another
# version of the front's protocol.
_BOOT = """\
import sys
del sys.path[0]
import json, os
paths = json.loads(sys.argv.pop(1))
if paths["first"]:
    sys.path[:0] = paths["first"]
sys.path += [p for p in paths["last"] if p not in sys.path]
import asyncwsgi
found = os.path.dirname(os.path.dirname(os.path.abspath(asyncwsgi.__file__)))
if paths["last"] and found != paths["last"][0]:
    raise SystemExit(f"asyncwsgi daemon: this interpreter imports asyncwsgi from {found}, "
                     f"not the server's from {paths['last'][0]}; remove it from that environment")
from asyncwsgi.daemon.process import main
raise SystemExit(main())
"""


def command(
    spec: DaemonSpec, python: str | None = None, server_paths: Sequence[str] = ()
) -> list[str]:
    """The argv that starts a daemon process: the spec as one JSON argument. ``python``:
    the interpreter (default: the server's); ``server_paths``: where the server imports
    asyncwsgi (first) and the packages a daemon needs from."""
    own = python is None or python == sys.executable
    paths = {
        "first": list(server_paths[:1]) if own else [],
        "last": [] if own else list(server_paths),
    }
    return [
        python or sys.executable,
        "-c",
        _BOOT,
        json.dumps(paths),
        json.dumps(asdict(spec)),
    ]


def read_spec(argv: Sequence[str]) -> DaemonSpec:
    """The spec :func:`command` put on the command line; ``ValueError`` if it is not one."""
    if len(argv) != 1:
        raise ValueError("expected one argument, the JSON the front builds")
    try:
        fields = json.loads(argv[0])
        fields["python_path"] = tuple(fields.get("python_path", ()))
        return DaemonSpec(**fields)
    except (TypeError, json.JSONDecodeError) as exc:
        raise ValueError(f"not a daemon spec: {exc}") from None


def _load(target: str, callable_name: str) -> WSGIApplication:
    if is_script_path(target):
        return load_script(target, callable_name)[1]
    return load_target(target, callable_name)


def _prepend_paths(folders: Sequence[str]) -> None:
    """python-path=: the folders (and what their .pth files add) first on sys.path."""
    import site

    before = list(sys.path)
    for folder in folders:
        site.addsitedir(folder)
    added = [p for p in sys.path if p not in before]
    sys.path[:] = added + before


def _exit_now(status: int) -> None:
    """Exit without waiting for threads still running application code."""
    logging.shutdown()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except Exception:
            pass
    os._exit(status)


def main(argv: Sequence[str] | None = None) -> int:
    try:
        spec = read_spec(sys.argv[1:] if argv is None else argv)
    except ValueError as exc:
        print(f"asyncwsgi daemon: {exc} (started by the server, not by hand)", file=sys.stderr)
        return EXIT_USAGE
    if spec.cpu >= 0:
        hold_to(spec.cpu)  # before any thread starts: threads inherit it
    # Before anything that can hang (the import): never outlive the front.
    die_with_parent(spec.parent)
    # First, so that `pgrep -f 'asyncwsgi: daemon NAME'` finds the process while it boots.
    setproctitle.setproctitle(spec.title or f"asyncwsgi: daemon {spec.group}")
    # A terminal's Ctrl-C reaches the whole process group; the front stops daemons itself.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    events: SimpleQueue[str] = SimpleQueue()

    def enqueue(signum: int, frame: FrameType | None) -> None:
        named = {signal.SIGTERM: _TERM, signal.SIGUSR2: _REOPEN, signal.SIGURG: _DUMP}
        events.put(named.get(signal.Signals(signum), _RETIRE))

    # SIGUSR1/2 would kill the process by default; during the import they wait in the queue.
    signal.signal(signal.SIGUSR1, enqueue)
    signal.signal(signal.SIGUSR2, enqueue)
    signal.signal(signal.SIGURG, enqueue)
    try:
        setup_logging(
            spec.log_level, access=False, error_file=spec.error_logfile, config_file=spec.log_config
        )
    except (OSError, ValueError) as exc:
        print(f"asyncwsgi daemon {spec.group}: {exc}", file=sys.stderr)
        return EXIT_BOOT_FAILED
    sock = socket.socket(fileno=spec.fd)
    # Subprocesses the application starts must not hold the front's connection open.
    os.set_inheritable(spec.fd, False)
    sock.setblocking(True)
    if spec.python_path:
        _prepend_paths(spec.python_path)
    try:
        app = _load(spec.app, spec.callable)
    except ScriptLoadError as exc:
        report(spec.report_fd, error=str(exc))
        cause = exc.__cause__
        logger.error(
            "daemon %r: %s",
            spec.group,
            exc,
            exc_info=(type(cause), cause, cause.__traceback__) if cause is not None else None,
        )
        return EXIT_BOOT_FAILED
    # Until now SIGTERM kept its default action: stopping in the middle of an import has
    # nothing to clean up, while a handler's exception would pass for a broken script.
    signal.signal(signal.SIGTERM, enqueue)
    on_ping = None
    if spec.report_files:
        imported = ImportedFiles(site_packages=spec.site_packages)

        def on_ping() -> None:
            new = imported.new()
            if new:
                report(spec.report_fd, files=new)

        on_ping()
    daemon = Daemon(
        sock,
        app,
        events,
        group=spec.group,
        generation=spec.generation,
        threads=spec.threads,
        request_window=spec.request_window,
        multiprocess=spec.multiprocess,
        forwarded_allow_ips=spec.forwarded_allow_ips,
        send_timeout=spec.send_timeout,
        on_ping=on_ping,
        slow_request=spec.slow_request,
        request_timeout=spec.request_timeout,
        dump_dir=spec.dump_dir,
    )
    status, at_once = daemon.run()
    if at_once:
        _exit_now(status)
    # Drained: nothing is running, so leave normally (atexit handlers run); a SIGTERM
    # from here on stops the process even if an application thread holds it up.
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    return status


if __name__ == "__main__":
    raise SystemExit(main())
