"""Run Apache httpd + mod_wsgi as a benchmark peer, in embedded or daemon mode.

Usage::

    python benchmarks/apache/modwsgi.py check            # both modes: serve + reload
    python benchmarks/apache/modwsgi.py config MODE SCRIPT [--port N]
    python benchmarks/apache/modwsgi.py serve MODE SCRIPT [--port N] [--seconds S]

From Python (the benchmarks put ``benchmarks/`` on ``sys.path``)::

    from apache import modwsgi
    reason = modwsgi.unavailable_reason()   # None when Apache + mod_wsgi are usable
    with modwsgi.ApacheServer(script, mode="embedded", port=port) as server:
        ...  # server.url answers
    # or write the ServerRoot and start/stop Apache yourself (run.py does):
    launch = modwsgi.prepare_launch(script, mode="daemon", port=port, server_root=root,
                                    threads_per_child=25, error_log="/dev/stderr")
    subprocess.Popen(launch.argv, env={**os.environ, **launch.env}, start_new_session=True)

Prerequisites (Debian): ``apt-get install -y apache2 apache2-dev`` and
``LANG=C.UTF-8 python -m pip install mod_wsgi`` into the interpreter that runs the
benchmarks. Without them ``unavailable_reason()`` says what is missing and the
callers skip the mod_wsgi servers.

What it runs: ``apache2 -f CONF -DFOREGROUND`` with a self-contained config written
into a fresh temporary ServerRoot (no /etc/apache2, no envvars, no system service):

- ``embedded``: event MPM with exactly 2 child processes (``StartServers 2``,
  ``ServerLimit 2``, ``ThreadsPerChild 32``, spare-thread limits that never make
  Apache stop a child); the application runs inside them.
- ``daemon``: the same front end plus ``WSGIDaemonProcess bench processes=2
  threads=8`` and ``WSGIProcessGroup bench`` (``WSGIRestrictEmbedded On``).

Both use ``WSGIScriptReloading On`` and ``WSGIApplicationGroup %{GLOBAL}`` (the
main interpreter, as mod_wsgi recommends for performance). Keep-alive is on with no
per-connection request limit, like the other servers in the benchmarks. The error
log (``LogLevel warn wsgi:info``) records each reload; ``ApacheServer.error_log()``
returns it.

Users and permissions: Apache refuses to serve as root, so the parent starts as
root and the children run as ``www-data`` (else ``daemon``/``nobody``). mod_wsgi
initialises Python in each child *after* the switch, so that user must reach the
standard library, the WSGI script and its folder:

- the ServerRoot is made 0755; callers must put the script in a world-readable
  folder (a file from ``tempfile.mkstemp`` is 0600: chmod it 0644 before an
  ``os.replace``);
- a Python whose stdlib the user cannot reach (pyenv under a 0700 ``/root``, as on
  the project's machines) gets a readable copy: the stdlib is hard-linked (copied
  across file systems) once into ``$TMPDIR/asyncwsgi-bench-pyhome-HASH`` and used as
  ``WSGIPythonHome``, with the virtualenv's site-packages on ``WSGIPythonPath``. The
  same ``libpython`` runs; nothing outside the temp dir is changed (no chmod of
  /root). Without that, the children fail with "failed to get the Python codec of
  the filesystem encoding" and every request gets a 500.
"""

from __future__ import annotations

import argparse
import contextlib
import grp
import hashlib
import http.client
import json
import os
import pwd
import shutil
import signal
import socket
import stat
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

HOST = "127.0.0.1"
MODES = ("embedded", "daemon")
START_TIMEOUT_S = 30.0
STOP_TIMEOUT_S = 10.0
RUN_USERS = ("www-data", "daemon", "nobody")
# mod_wsgi-express prints these; run in the benchmark's own interpreter so the module
# built for it (and its WSGIPythonHome) is the one Apache loads.
_MODULE_CONFIG_CODE = (
    "import sys\n"
    "from mod_wsgi.express.cli import main\n"
    "sys.argv = ['mod_wsgi-express', 'module-config']\n"
    "sys.exit(main())\n"
)
_PROBE_CODE = (
    "import json, sys, sysconfig\n"
    "from mod_wsgi.express import apxs_config as c\n"
    "paths = sysconfig.get_paths()\n"
    "print(json.dumps({'httpd': c.HTTPD, 'libexecdir': c.LIBEXECDIR,\n"
    "    'stdlib': paths['stdlib'], 'platstdlib': paths['platstdlib'],\n"
    "    'purelib': paths['purelib'], 'base_prefix': sys.base_prefix,\n"
    "    'version': '%d.%d' % sys.version_info[:2]}))\n"
)


class ModWsgiUnavailable(RuntimeError):
    """Apache httpd or mod_wsgi is not installed (or not usable) here."""


class ApacheStartError(RuntimeError):
    """Apache did not start or did not answer in time."""


@dataclass(frozen=True)
class ApacheInstall:
    """Where Apache, mod_wsgi and the Python it embeds are, as found on this machine."""

    httpd: str
    modules_dir: Path
    module_config: tuple[str, ...]  # LoadFile/LoadModule/WSGIPythonHome lines
    stdlib: Path  # the embedded Python's standard library (sysconfig "stdlib")
    platstdlib: Path
    site_packages: Path
    python_version: str  # "3.11"


@dataclass(frozen=True)
class PythonHome:
    """The WSGIPythonHome (and extra sys.path entry) that Apache's children can read."""

    home: str
    python_path: str | None = None  # site-packages, when home is not the virtualenv
    note: str | None = None  # set when a readable copy of the stdlib had to be made


def _run_python(code: str, python: str) -> str:
    proc = subprocess.run(
        [python, "-c", code],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env={**os.environ, "LANG": "C.UTF-8"},
    )
    if proc.returncode != 0:
        last = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        raise ModWsgiUnavailable(f"mod_wsgi is not importable by {python}: {last}")
    return proc.stdout


def find_install(python: str = sys.executable) -> ApacheInstall:
    """Locate apache2/httpd, its modules and mod_wsgi, or raise ModWsgiUnavailable."""
    lines = tuple(line.strip() for line in _run_python(_MODULE_CONFIG_CODE, python).splitlines())
    module_config = tuple(line for line in lines if line)
    if not any(line.startswith("LoadModule wsgi_module") for line in module_config):
        raise ModWsgiUnavailable(f"unexpected mod_wsgi-express module-config: {lines!r}")

    probe = json.loads(_run_python(_PROBE_CODE, python))
    candidates = [
        probe["httpd"],
        shutil.which("apache2") or "",
        shutil.which("httpd") or "",
        "/usr/sbin/apache2",
        "/usr/sbin/httpd",
    ]
    httpd = next((c for c in candidates if c and os.path.isabs(c) and os.access(c, os.X_OK)), "")
    if not httpd:
        raise ModWsgiUnavailable("no apache2/httpd binary found (apt-get install apache2)")

    module_dirs = [
        Path(probe["libexecdir"]),
        Path("/usr/lib/apache2/modules"),
        Path("/usr/lib64/httpd/modules"),
    ]
    modules_dir = next((d for d in module_dirs if (d / "mod_mpm_event.so").is_file()), None)
    if modules_dir is None:
        raise ModWsgiUnavailable("Apache's mod_mpm_event.so not found")
    return ApacheInstall(
        httpd=httpd,
        modules_dir=modules_dir,
        module_config=module_config,
        stdlib=Path(probe["stdlib"]),
        platstdlib=Path(probe["platstdlib"]),
        site_packages=Path(probe["purelib"]),
        python_version=probe["version"],
    )


def unavailable_reason(python: str = sys.executable) -> str | None:
    """None if Apache + mod_wsgi can be run, else a one-line reason to show when skipping."""
    try:
        find_install(python)
    except ModWsgiUnavailable as exc:
        return str(exc)
    except (OSError, subprocess.SubprocessError, ValueError, KeyError) as exc:
        return f"cannot probe mod_wsgi: {exc}"
    if os.geteuid() == 0 and _run_user() is None:
        return f"running as root but none of the users {RUN_USERS} exists for Apache's children"
    return None


def _run_user() -> tuple[str, str] | None:
    """The (user, group) Apache's children switch to; None if not root (no switch)."""
    if os.geteuid() != 0:
        return None
    for name in RUN_USERS:
        try:
            entry = pwd.getpwnam(name)
        except KeyError:
            continue
        return name, grp.getgrgid(entry.pw_gid).gr_name
    return None


def can_traverse(path: Path, user: str) -> bool:
    """Whether ``user`` may reach ``path`` by its mode bits (ACLs are not consulted)."""
    entry = pwd.getpwnam(user)
    gids = {entry.pw_gid, *(g.gr_gid for g in grp.getgrall() if user in g.gr_mem)}
    for directory in [path, *path.parents]:
        try:
            st = directory.stat()
        except OSError:
            return False
        if st.st_uid == entry.pw_uid:
            bit = stat.S_IXUSR
        elif st.st_gid in gids:
            bit = stat.S_IXGRP
        else:
            bit = stat.S_IXOTH
        if not st.st_mode & bit:
            return False
    return True


def _link_or_copy(src: str, dst: str) -> None:
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)


def _readable_stdlib_copy(install: ApacheInstall) -> Path:
    """A Python home under the temp dir holding the stdlib, hard-linked where possible.

    Built once per interpreter and reused; the files keep their own (world-readable)
    modes, only the folders on the way to them change.
    """
    key = hashlib.sha256(str(install.stdlib).encode()).hexdigest()[:12]
    home = Path(tempfile.gettempdir()) / f"asyncwsgi-bench-pyhome-{key}"
    marker = home / "COMPLETE"
    if marker.is_file():
        return home
    staging = Path(tempfile.mkdtemp(prefix=home.name + ".", dir=home.parent))
    lib = staging / "lib" / f"python{install.python_version}"
    skip = shutil.ignore_patterns("site-packages", "test", "idlelib", "tkinter", "turtledemo")
    shutil.copytree(install.stdlib, lib, ignore=skip, copy_function=_link_or_copy)
    dynload = install.platstdlib / "lib-dynload"
    if dynload.is_dir() and not (lib / "lib-dynload").exists():
        shutil.copytree(dynload, lib / "lib-dynload", copy_function=_link_or_copy)
    for directory, _dirs, _files in os.walk(staging):
        os.chmod(directory, 0o755)
    (staging / "COMPLETE").write_text(f"{install.stdlib}\n")
    try:
        os.rename(staging, home)
    except OSError:  # another run won the race
        shutil.rmtree(staging, ignore_errors=True)
    return home


def python_home(install: ApacheInstall, user: tuple[str, str] | None) -> PythonHome:
    """The Python home for the config: mod_wsgi-express's, unless ``user`` cannot read it.

    mod_wsgi initialises Python in each child after Apache dropped root, so the run
    user must reach the standard library. A pyenv Python under a 0700 /root is out of
    its reach; rather than loosening /root, point Apache at a readable hard-linked copy
    of the stdlib and put the virtualenv's site-packages on sys.path.
    """
    configured = next(
        (
            line.split(None, 1)[1].strip().strip('"')
            for line in install.module_config
            if line.startswith("WSGIPythonHome")
        ),
        sys.prefix,
    )
    if user is None or can_traverse(install.stdlib / "os.py", user[0]):
        return PythonHome(home=configured)
    home = _readable_stdlib_copy(install)
    return PythonHome(
        home=str(home),
        python_path=str(install.site_packages),
        note=f"{user[0]} cannot read {install.stdlib}; using a readable copy at {home}",
    )


def render_config(
    *,
    install: ApacheInstall,
    server_root: Path,
    port: int,
    script: Path,
    mode: str,
    user: tuple[str, str] | None,
    pyhome: PythonHome | None = None,
    processes: int = 2,
    threads_per_child: int = 32,
    daemon_threads: int = 8,
    log_level: str = "warn wsgi:info",
    error_log: str | None = None,
) -> str:
    """The whole httpd.conf for one run (pure: no I/O).

    ``error_log``: where Apache logs (default ``SERVER_ROOT/error.log``; ``/dev/stderr``
    puts it in the output of the ``apache2 -DFOREGROUND`` process).
    """
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, not {mode!r}")
    workers = processes * threads_per_child
    mods = install.modules_dir
    log_path = error_log or f"{server_root}/error.log"
    lines = [
        f"# asyncwsgi benchmark: Apache + mod_wsgi, {mode} mode",
        f'ServerRoot "{server_root}"',
        f'DefaultRuntimeDir "{server_root}"',
        f'PidFile "{server_root}/httpd.pid"',
        f'ErrorLog "{log_path}"',
        f"LogLevel {log_level}",
        f"Listen {HOST}:{port}",
        f"ServerName {HOST}:{port}",
        "",
        f'LoadModule mpm_event_module "{mods}/mod_mpm_event.so"',
        f'LoadModule authz_core_module "{mods}/mod_authz_core.so"',
    ]
    for line in install.module_config:
        if pyhome is not None and line.startswith("WSGIPythonHome"):
            line = f'WSGIPythonHome "{pyhome.home}"'
        lines.append(line)
    if pyhome is not None and pyhome.python_path:
        lines.append(f'WSGIPythonPath "{pyhome.python_path}"')
    lines.append("")
    if user is not None:
        lines += [f"User {user[0]}", f"Group {user[1]}", ""]
    lines += [
        f"StartServers {processes}",
        f"ServerLimit {processes}",
        f"ThreadsPerChild {threads_per_child}",
        f"ThreadLimit {threads_per_child}",
        f"MaxRequestWorkers {workers}",
        # Idle threads never exceed MaxSpareThreads, so Apache never stops a child.
        f"MinSpareThreads {threads_per_child}",
        f"MaxSpareThreads {workers}",
        "MaxConnectionsPerChild 0",
        "KeepAlive On",
        "MaxKeepAliveRequests 0",
        "KeepAliveTimeout 5",
        "ListenBacklog 2048",
        "",
        "WSGIScriptReloading On",
        "WSGIApplicationGroup %{GLOBAL}",
    ]
    if mode == "daemon":
        options = f"processes={processes} threads={daemon_threads} display-name=%{{GROUP}}"
        if pyhome is not None:
            options += f" python-home={pyhome.home}"
            if pyhome.python_path:
                options += f" python-path={pyhome.python_path}"
        lines += [
            "WSGIRestrictEmbedded On",
            f'WSGISocketPrefix "{server_root}/wsgi"',
            f"WSGIDaemonProcess bench {options}",
            "WSGIProcessGroup bench",
        ]
    lines += [
        f'WSGIScriptAlias / "{script}"',
        f'<Directory "{script.parent}">',
        "    Require all granted",
        "</Directory>",
        "",
    ]
    return "\n".join(lines)


def _wait_port(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


def http_get(port: int, path: str = "/", timeout: float = 10.0) -> tuple[int, bytes]:
    """One GET on a fresh connection: (status, body)."""
    conn = http.client.HTTPConnection(HOST, port, timeout=timeout)
    try:
        conn.request("GET", path)
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


@dataclass(frozen=True)
class ApacheLaunch:
    """A ServerRoot with its httpd.conf written, and how to start Apache on it."""

    argv: list[str]  # apache2 -f CONF -DFOREGROUND: stays in the foreground, stops on SIGTERM
    env: dict[str, str]  # to add to the environment
    server_root: Path
    conf_path: Path
    pyhome: PythonHome


def prepare_launch(
    script: Path,
    *,
    mode: str,
    port: int,
    server_root: Path,
    install: ApacheInstall | None = None,
    processes: int = 2,
    threads_per_child: int = 32,
    daemon_threads: int = 8,
    error_log: str | None = None,
) -> ApacheLaunch:
    """Write ``server_root/httpd.conf`` (creating ``server_root``, mode 0755) for a run.

    For callers that start and stop the process themselves (``run.py`` runs it like any
    other server, in its own process group). ``script`` and its folder must be readable
    by Apache's run user (see the module docstring).
    """
    install = install or find_install()
    server_root.mkdir(parents=True, exist_ok=True)
    # The children (www-data) must reach the WSGI socket and the runtime files.
    server_root.chmod(0o755)
    user = _run_user()
    pyhome = python_home(install, user)
    conf = render_config(
        install=install,
        server_root=server_root,
        port=port,
        script=Path(script).resolve(),
        mode=mode,
        user=user,
        pyhome=pyhome,
        processes=processes,
        threads_per_child=threads_per_child,
        daemon_threads=daemon_threads,
        error_log=error_log,
    )
    conf_path = server_root / "httpd.conf"
    conf_path.write_text(conf)
    return ApacheLaunch(
        argv=[install.httpd, "-f", str(conf_path), "-DFOREGROUND"],
        env={"LANG": "C.UTF-8"},
        server_root=server_root,
        conf_path=conf_path,
        pyhome=pyhome,
    )


def apache_version(install: ApacheInstall) -> str:
    """``Apache/2.4.62 (Debian)``, or '' if ``httpd -v`` says nothing usable."""
    try:
        proc = subprocess.run(
            [install.httpd, "-v"], capture_output=True, text=True, timeout=10, check=False
        )
    except (OSError, subprocess.SubprocessError):
        return ""
    for line in proc.stdout.splitlines():
        if line.startswith("Server version:"):
            return line.partition(":")[2].strip()
    return ""


class ApacheServer:
    """One Apache instance in the foreground, in its own session and temporary ServerRoot."""

    def __init__(
        self,
        script: Path,
        *,
        mode: str,
        port: int,
        install: ApacheInstall | None = None,
        processes: int = 2,
        threads_per_child: int = 32,
        daemon_threads: int = 8,
    ) -> None:
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, not {mode!r}")
        self.script = Path(script).resolve()
        self.mode = mode
        self.port = port
        self.install = install or find_install()
        self.processes = processes
        self.threads_per_child = threads_per_child
        self.daemon_threads = daemon_threads
        self.server_root: Path | None = None
        self.proc: subprocess.Popen[bytes] | None = None
        self.pyhome: PythonHome | None = None
        self._stdout_path: Path | None = None

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}/"

    @property
    def conf_path(self) -> Path:
        assert self.server_root is not None
        return self.server_root / "httpd.conf"

    def error_log(self) -> str:
        """The Apache error log so far ('' before start)."""
        if self.server_root is None:
            return ""
        try:
            return (self.server_root / "error.log").read_text(errors="replace")
        except OSError:
            return ""

    def _output(self) -> str:
        if self._stdout_path is None:
            return ""
        try:
            return self._stdout_path.read_text(errors="replace")
        except OSError:
            return ""

    def start(self, timeout: float = START_TIMEOUT_S) -> None:
        """Write the config, start Apache and wait until it answers an HTTP request."""
        self.server_root = Path(tempfile.mkdtemp(prefix=f"bench-apache-{self.mode}-"))
        launch = prepare_launch(
            self.script,
            mode=self.mode,
            port=self.port,
            server_root=self.server_root,
            install=self.install,
            processes=self.processes,
            threads_per_child=self.threads_per_child,
            daemon_threads=self.daemon_threads,
        )
        self.pyhome = launch.pyhome
        self._stdout_path = self.server_root / "stdout.log"
        env = {**os.environ, **launch.env}
        with open(self._stdout_path, "wb") as out:
            self.proc = subprocess.Popen(
                launch.argv,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                cwd=self.server_root,
                env=env,
                start_new_session=True,
            )
        deadline = time.monotonic() + timeout
        last_error = "no answer"
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise ApacheStartError(
                    f"apache exited with {self.proc.returncode}:\n{self._output()}"
                    f"\n{self.error_log()[-2000:]}"
                )
            if _wait_port(HOST, self.port):
                try:
                    http_get(self.port, timeout=max(0.5, deadline - time.monotonic()))
                    return
                except (OSError, http.client.HTTPException) as exc:
                    last_error = repr(exc)
            time.sleep(0.05)
        self.stop()
        raise ApacheStartError(
            f"apache did not answer within {timeout:.0f} s ({last_error}):\n"
            f"{self._output()}\n{self.error_log()[-2000:]}"
        )

    def stop(self, timeout: float = STOP_TIMEOUT_S) -> None:
        """SIGTERM the parent (it stops its children), SIGKILL its session if it lingers."""
        proc = self.proc
        if proc is None:
            return
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout)
        # Children left behind (e.g. a stuck daemon process) are in the parent's session.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)
        self.proc = None

    def cleanup(self) -> None:
        """Remove the temporary ServerRoot (after stop)."""
        if self.server_root is not None:
            shutil.rmtree(self.server_root, ignore_errors=True)
            self.server_root = None

    def __enter__(self) -> ApacheServer:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
        self.cleanup()


# --------------------------------------------------------------------------- command line

_CHECK_APP = """\
BODY = b"{body}"


def application(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(BODY)))])
    return [BODY]
"""


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        port: int = sock.getsockname()[1]
        return port


def _write_world_readable(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    tmp.chmod(0o644)
    os.replace(tmp, path)


def check_mode(mode: str, install: ApacheInstall) -> bool:
    """Serve a hello app, rewrite the script, and see the new code answer."""
    folder = Path(tempfile.mkdtemp(prefix="bench-modwsgi-app-"))
    folder.chmod(0o755)
    script = folder / "app.wsgi"
    _write_world_readable(script, _CHECK_APP.format(body="Hello, world!"))
    ok = False
    server = ApacheServer(script, mode=mode, port=free_port(), install=install)
    try:
        server.start()
        if server.pyhome is not None and server.pyhome.note:
            print(f"[{mode}] note: {server.pyhome.note}")
        status, body = http_get(server.port)
        print(f"[{mode}] before: {status} {body!r}")
        _write_world_readable(script, _CHECK_APP.format(body="Hello, reloaded!"))
        changed_at = time.monotonic()
        deadline = changed_at + 15.0
        while time.monotonic() < deadline:
            status, body = http_get(server.port)
            if body == b"Hello, reloaded!":
                elapsed_ms = (time.monotonic() - changed_at) * 1000
                print(f"[{mode}] after rewrite: {status} {body!r} ({elapsed_ms:.1f} ms)")
                ok = status == 200
                break
            time.sleep(0.01)
        else:
            print(f"[{mode}] the new code was never served")
        reloads = [
            line
            for line in server.error_log().splitlines()
            if "Reloading WSGI script" in line or "restart" in line.lower()
        ]
        print(f"[{mode}] error-log lines about the reload:")
        for line in reloads[:6]:
            print(f"    {line}")
    except (ApacheStartError, OSError, http.client.HTTPException) as exc:
        print(f"[{mode}] FAILED: {exc}")
        print(server.error_log()[-3000:])
    finally:
        server.stop()
        server.cleanup()
        shutil.rmtree(folder, ignore_errors=True)
    return ok


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", 1)[0])
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("check", help="serve a hello app in both modes and reload it")
    for name in ("config", "serve"):
        p = sub.add_parser(name)
        p.add_argument("mode", choices=MODES)
        p.add_argument("script", type=Path)
        p.add_argument("--port", type=int, default=0, help="default: a free port")
        if name == "serve":
            p.add_argument("--seconds", type=float, default=600.0, help="stop after this long")
    args = parser.parse_args(argv)

    reason = unavailable_reason()
    if reason is not None:
        print(f"Apache + mod_wsgi not available: {reason}", file=sys.stderr)
        return 2
    install = find_install()
    if args.command == "check":
        results = {mode: check_mode(mode, install) for mode in MODES}
        print(", ".join(f"{mode}: {'ok' if ok else 'FAILED'}" for mode, ok in results.items()))
        return 0 if all(results.values()) else 1

    port = args.port or free_port()
    if args.command == "config":
        print(
            render_config(
                install=install,
                server_root=Path("/tmp/SERVER_ROOT"),
                port=port,
                script=args.script.resolve(),
                mode=args.mode,
                user=_run_user(),
                pyhome=python_home(install, _run_user()),
            )
        )
        return 0
    with ApacheServer(args.script, mode=args.mode, port=port, install=install) as server:
        print(f"Listening on {server.url} (config {server.conf_path})", flush=True)
        with contextlib.suppress(KeyboardInterrupt):
            time.sleep(args.seconds)
    return 0


if __name__ == "__main__":
    sys.exit(main())
