"""The settings of a server, each declared once: the table the rest is built from.

Rule: imports nothing of the package but ``settings`` and ``errors`` (and the site model,
for typing only). Every value is checked when a :class:`Config` is built; an unknown
setting is an error, not a silent default.

Each field below is one row of the settings table (docs/DESIGN.md, "Settings"): its type,
its default, and an :func:`~asyncwsgi.settings.option` with its kind, help text,
command-line flag and, for a process group's settings, its ``WSGIDaemonProcess`` option
and mod_wsgi's default. ``asyncwsgi.cli`` builds the command line from it, the config-file
reader the ``WSGIDaemonProcess`` options, ``WSGIApp`` its ``daemon=`` settings, and
``--check-config`` its report.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, fields
from typing import TYPE_CHECKING, Any

from asyncwsgi import logs, settings
from asyncwsgi.errors import ConfigError
from asyncwsgi.settings import (
    EVERY_GROUP,
    EVERY_MOUNT,
    NOT_WITH_SITE,
    BindAddress,
    Binds,
    Bytes,
    Choice,
    Count,
    Flag,
    Folders,
    Globs,
    Seconds,
    Text,
    UrlFolders,
    option,
)

if TYPE_CHECKING:
    from asyncwsgi.sites.model import Site

LOOPS = ("auto", "uvloop", "asyncio")
LOG_LEVELS = ("critical", "error", "warning", "info", "debug")
MODES = ("embedded", "daemon")
DAEMON_ONLY = ("maximum_requests", "restart_interval")

_GROUP_HINT = "use WSGIDaemonProcess and WSGIProcessGroup (or process-group= on WSGIScriptAlias)"


AppTarget = str | Callable[..., Any]


class Application(settings.Kind[AppTarget]):
    """The application: a script path, ``package.module:attr``, or a WSGI callable."""

    describe = "a path, 'module:attr' or a WSGI callable"

    def check(self, value: object) -> AppTarget:
        if isinstance(value, str) or callable(value):
            return value
        raise ValueError(f"must be {self.describe}")

    def parse(self, text: str) -> AppTarget:
        return text


@dataclass(frozen=True, kw_only=True, slots=True)
class ProcessSettings:
    """How a set of processes runs an application: a daemon process group (from the
    command line, a ``WSGIDaemonProcess`` line or ``WSGIApp(daemon=...)``), or the copies
    of an embedded server (``--processes``)."""

    processes: int = option(
        1,
        Count(1),
        "daemon mode: processes in the group; embedded mode: copies of the whole server "
        "sharing the addresses",
        directive="processes",
        site=NOT_WITH_SITE,
        site_hint=_GROUP_HINT,
    )
    # Enough threads to overlap an application's I/O waits (database, upstream calls);
    # few enough that, under the GIL, CPU-bound requests are not spread so thin that each
    # one's latency grows. mod_wsgi has 15 per daemon process, waitress 4.
    threads: int = option(
        8,
        Count(1),
        "worker threads running the application (per process)",
        directive="threads",
        modwsgi_default=15,
    )
    maximum_requests: int = option(
        0,
        Count(0),
        "daemon mode: replace a process after about N requests (0: never)",
        directive="maximum-requests",
        site=EVERY_GROUP,
    )
    maximum_requests_jitter: int = option(
        -1,
        Count(-1, describe="a non-negative whole number (or -1 for a tenth of maximum_requests)"),
        "daemon mode: up to N more requests per process, so they are not all replaced together",
        shown_default="N/10",
        site=EVERY_GROUP,
    )
    graceful_timeout: float = option(
        30.0,
        Seconds(),
        "seconds to finish requests on shutdown, and for a replaced daemon process",
        directive="graceful-timeout",
        modwsgi_default=15.0,
        site=EVERY_GROUP,
    )
    shutdown_timeout: float = option(
        5.0,
        Seconds(),
        "daemon mode: a replaced process still running --graceful-timeout after it was told "
        "to stop gets SIGTERM, and SIGKILL this much later",
        directive="shutdown-timeout",
        site=EVERY_GROUP,
    )
    restart_interval: float = option(
        0.0,
        Seconds(off_at_zero=True),
        "daemon mode: replace each process after S seconds (0: never)",
        directive="restart-interval",
        site=EVERY_GROUP,
    )
    request_timeout: float = option(
        0.0,
        Seconds(off_at_zero=True),
        "a request running longer gets 504 and its Python stack is logged; daemon mode: its "
        "process is replaced; embedded mode: its thread is left to finish, counted as stuck "
        "(0: never)",
        directive="request-timeout",
        site=EVERY_GROUP,
    )
    startup_timeout: float = option(
        60.0,
        Seconds(off_at_zero=True),
        "a process not ready (its application imported) within S seconds is killed and "
        "logged; at start-up that is an error, for a replacement the processes it was to "
        "replace keep serving (0: no limit)",
        directive="startup-timeout",
        site=EVERY_GROUP,
    )

    # WSGIDaemonProcess options only (no command-line flags): what the daemon processes
    # run as, and when the front replaces them or turns requests away.
    python_home: str = option(
        "",
        Text("a virtual environment's folder", metavar="DIR", rule=settings.python_home),
        "the daemon processes run this virtual environment's interpreter and packages "
        "(the same Python version as the server)",
        flag=None,
        directive="python-home",
    )
    python_path: tuple[str, ...] = option(
        (),
        Folders(),
        "folders put first on the daemon processes' sys.path",
        flag=None,
        directive="python-path",
    )
    home: str = option(
        "",
        Text("an absolute folder", metavar="DIR", rule=settings.absolute_folder),
        "the daemon processes' working folder",
        flag=None,
        directive="home",
    )
    run_user: str = option(
        "",
        Text("a user name", metavar="USER", rule=settings.system_user),
        "the user the daemon processes run as (the server must start as root)",
        flag=None,
        directive="user",
    )
    run_group: str = option(
        "",
        Text("a group name", metavar="GROUP", rule=settings.system_group),
        "the group the daemon processes run as (the server must start as root)",
        flag=None,
        directive="group",
    )
    umask: str = option(
        "",
        Text("an octal mask", metavar="MASK", rule=settings.octal_mask),
        "the daemon processes' file mode creation mask",
        flag=None,
        directive="umask",
    )
    lang: str = option(
        "",
        Text("a locale name", metavar="LOCALE"),
        "LANG in the daemon processes' environment",
        flag=None,
        directive="lang",
    )
    locale: str = option(
        "",
        Text("a locale name", metavar="LOCALE"),
        "LC_ALL in the daemon processes' environment",
        flag=None,
        directive="locale",
    )
    inactivity_timeout: float = option(
        0.0,
        Seconds(off_at_zero=True),
        "a daemon process that served requests and then none for S seconds is replaced "
        "(replacement first); 0: never",
        flag=None,
        directive="inactivity-timeout",
    )
    queue_timeout: float = option(
        0.0,
        Seconds(off_at_zero=True),
        "a request that waited longer than S seconds for a free daemon thread gets 503; "
        "0: it waits",
        flag=None,
        directive="queue-timeout",
    )
    memory_limit: int = option(
        0,
        Bytes(0),
        "a daemon process whose resident memory grows past this many bytes is replaced "
        "(replacement first); 0: no limit",
        flag=None,
        directive="memory-limit",
    )
    virtual_memory_limit: int = option(
        0,
        Bytes(0),
        "the same for its virtual memory size",
        flag=None,
        directive="virtual-memory-limit",
    )

    def __post_init__(self) -> None:
        settings.check_values(self)

    @classmethod
    def of(cls, source: ProcessSettings) -> ProcessSettings:
        """Just the process settings of ``source`` (a :class:`Config`, a daemon group)."""
        return cls(**{f.name: getattr(source, f.name) for f in fields(cls)})

    @property
    def jitter(self) -> int:
        """Up to this many more requests than ``maximum_requests`` per process."""
        if self.maximum_requests_jitter < 0:
            return self.maximum_requests // 10
        return self.maximum_requests_jitter


@dataclass(frozen=True, kw_only=True, slots=True)
class Config(ProcessSettings):
    """Every setting of one server. Build it with :meth:`Config.build` to get
    :class:`ConfigError` (naming the setting) instead of ``TypeError``."""

    app: AppTarget = option(
        "", Application(), "a script path, 'package.module:attr' or a WSGI callable", flag=None
    )
    bind: tuple[BindAddress, ...] = option(
        (BindAddress("tcp", host="127.0.0.1", port=8000),),
        Binds(),
        "HOST:PORT, [IPV6]:PORT, unix:PATH or fd://N; repeatable. Sockets passed by systemd "
        "(LISTEN_FDS) are used when present",
        short="-b",
        repeatable=True,
    )
    callable: str = option(
        "application",
        Text("a Python identifier", metavar="NAME", rule=settings.identifier),
        "the WSGI callable in the script",
        site=EVERY_MOUNT,
    )
    script_reloading: bool = option(
        True,
        Flag(),
        "check the script on each request and reload it when it changed",
        site=EVERY_MOUNT,
    )
    max_threads: int = option(
        256,
        Count(1),
        "embedded mode: more worker threads, up to this many, while requests wait on I/O "
        "(every worker busy, requests that take 2 ms or more but 1 ms of CPU or less, the "
        "process under 0.8 of a core); one idle for 10 s goes. --threads stay. Give the "
        "--threads value for a fixed pool",
    )
    cpu_affinity: bool = option(
        False,
        Flag(),
        "hold each process that runs the application to one core: a single embedded "
        "server to the first core it may use, each copy (--processes) and each daemon "
        "process to the core the fewest others hold. Saves the cost of waking threads on "
        "other cores, at the price of one core per process",
        negatable=True,
    )
    static: tuple[str, ...] = option(
        (),
        UrlFolders(),
        "serve the files of DIR (or the one file DIR) at URL-PATH from the server itself: "
        "sendfile, ETag/Last-Modified, conditional and Range requests, HEAD; no folder "
        "listings, nothing outside DIR. Repeatable; the longest URL path wins, before the "
        "application",
        repeatable=True,
        site=NOT_WITH_SITE,
        site_hint="use Alias URL-PATH DIR in the config file",
    )
    reload_failure: str = option(
        "keep",
        Choice("keep", "error"),
        "a script that fails to re-load: keep the last version that loaded serving (logged "
        "once, shown by status), or answer 500 until the file changes again (mod_wsgi's way)",
    )
    reload_on_changes: bool = option(
        False,
        Flag(),
        "watch every source file the application imported (outside the standard library "
        "and site-packages) and the --reload-extra files; a change replaces the processes "
        "that run it one at a time, each replacement ready before the process it replaces "
        "stops (embedded mode then runs its copies under a supervisor)",
        negatable=True,
        site=NOT_WITH_SITE,
        site_hint="not yet with a config file; give the mounts' groups a SIGHUP or "
        "'python -m asyncwsgi reload' after a change",
    )
    reload_extra: tuple[str, ...] = option(
        (),
        Globs(),
        "with --reload-on-changes: also watch the files this glob matches (relative to the "
        "script's folder; ** spans folders), e.g. 'templates/**/*.html'; repeatable",
        repeatable=True,
        site=NOT_WITH_SITE,
        site_hint="--reload-on-changes is not yet for config files",
    )
    reload_site_packages: bool = option(
        False,
        Flag(),
        "with --reload-on-changes: watch modules imported from site-packages too",
        negatable=True,
        site=NOT_WITH_SITE,
        site_hint="--reload-on-changes is not yet for config files",
    )
    root_path: str = option(
        "",
        Text("a path", metavar="PATH", rule=settings.mount_point),
        "mount point, given to the application as SCRIPT_NAME",
        site=NOT_WITH_SITE,
        site_hint="WSGIScriptAlias gives mounts",
    )
    access_log: bool = option(
        True,
        Flag(),
        "one line per request, combined log format, on stdout",
        negatable=True,
    )
    access_log_format: str = option(
        "combined",
        Text(
            "combined, common, json, or a format of gunicorn's atoms",
            metavar="FORMAT",
            rule=logs.check_access_format,
        ),
        "the access line: 'combined' (Apache's, then the request's duration in seconds), "
        "'common', 'json' (one object per line), or a format of gunicorn's atoms: %(h)s "
        "%(l)s %(u)s %(t)s %(r)s %(m)s %(U)s %(q)s %(H)s %(s)s %(B)s %(b)s %(f)s %(a)s "
        "%(T)s %(M)s %(D)s %(L)s %(p)s %({header}i)s %({header}o)s",
    )
    access_log_exclude: tuple[str, ...] = option(
        (),
        Globs(),
        "no access line for requests to this path (exact, or a prefix ending in *), e.g. "
        "/healthz; repeatable",
        repeatable=True,
    )
    access_logfile: str = option(
        "-",
        Text("a file, or - for stdout", metavar="PATH"),
        "where the access log goes: - for stdout, else a file appended to (reopened on SIGUSR1)",
    )
    error_logfile: str = option(
        "-",
        Text("a file, or - for stderr", metavar="PATH"),
        "where the error log goes: - for stderr, else a file appended to, which also "
        "takes the place of stderr for every process of the server (reopened on SIGUSR1)",
    )
    log_config: str = option(
        "",
        Text("a file", metavar="FILE", rule=settings.existing_file),
        "a logging dictConfig (JSON, or TOML on Python 3.11+) applied over the defaults; "
        "loggers asyncwsgi.error and asyncwsgi.access",
    )
    log_level: str = option("info", Choice(*LOG_LEVELS), "error log level (stderr)")
    chdir: str = option(
        "",
        Text("a folder", metavar="DIR", rule=settings.existing_folder),
        "change to this folder first (a relative script, --config or --pythonpath is taken "
        "from there)",
    )
    pythonpath: tuple[str, ...] = option(
        (),
        Folders(absolute=False),
        "folders (separated by ':') put first on sys.path, of this process and every one it starts",
    )
    pid_file: str = option(
        "",
        Text("a file", metavar="PATH"),
        "write the server's pid here once it listens, and remove it when it stops; a file "
        "naming a running process is an error",
    )
    socket_mode: str = option(
        "",
        Text("an octal mode", metavar="MODE", rule=settings.octal_mask),
        "the mode of the UNIX sockets of --bind unix:PATH, e.g. 660",
    )
    socket_owner: str = option(
        "",
        Text("USER[:GROUP]", metavar="USER[:GROUP]"),
        "the owner of the UNIX sockets of --bind unix:PATH (e.g. :www-data, so that nginx "
        "can connect; changing the user needs root)",
    )
    server_user: str = option(
        "",
        Text("USER[:GROUP]", metavar="USER[:GROUP]", rule=settings.user_and_group),
        "started as root: bind the sockets and open the logs, then run as this user (with "
        "its groups, or GROUP); daemon processes and copies too",
        flag="--user",
    )
    slow_request: float = option(
        0.0,
        Seconds(off_at_zero=True),
        "log the Python stack of a request still running after S seconds (method, path, "
        "age, thread), once; in daemon processes too (0: never)",
    )
    metrics_bind: str = option(
        "",
        Text("HOST:PORT or unix:PATH", metavar="ADDR", rule=settings.bind_address),
        "serve /metrics (Prometheus), /healthz and /readyz on this address, never on the "
        "application's: every request of every process, counted by the front",
    )
    shutdown_delay: float = option(
        0.0,
        Seconds(off_at_zero=True),
        "on SIGTERM, first report not ready (/readyz 503, sd_notify STOPPING=1) while still "
        "serving for S seconds, so a load balancer stops sending traffic; then drain",
    )
    keep_alive_timeout: float = option(
        5.0, Seconds(), "idle keep-alive connections close after this"
    )
    header_timeout: float = option(
        10.0,
        Seconds(),
        "a client must send its request head within this (slowloris guard); 408 otherwise",
    )
    body_timeout: float = option(
        20.0,
        Seconds(),
        "a request body must arrive within S seconds, extended by a second per 500 bytes "
        "received (never more than S ahead); a body that stops or trickles gets 408 and the "
        "connection is closed (as Apache's mod_reqtimeout)",
    )
    send_timeout: float = option(
        60.0,
        Seconds(),
        "a client that takes none of its response for this long is dropped (the worker "
        "writing to it is freed; a finished response still buffered is discarded)",
    )
    limit_request_line: int = option(8190, Bytes(1), "longer request targets get 414")
    limit_request_fields: int = option(100, Count(1), "more header fields get 431")
    limit_request_field_size: int = option(8190, Bytes(1), "larger header fields get 431")
    limit_request_body: int = option(1 << 30, Bytes(0), "larger bodies get 413 (0: no limit)")
    max_connections: int = option(4096, Count(1), "connections beyond this get 503 and are closed")
    backlog: int = option(2048, Count(1), "listen backlog")
    loop: str = option("auto", Choice(*LOOPS), "event loop; auto uses uvloop when it is installed")
    server_header: bool = option(True, Flag(), "send 'Server: asyncwsgi'", flag=None)
    forwarded_allow_ips: str = option(
        "127.0.0.1,::1",
        Text("a comma-separated list of addresses", metavar="IPS", rule=settings.network_list),
        "proxies (addresses, networks or *) whose X-Forwarded-For/X-Forwarded-Proto set "
        "REMOTE_ADDR and wsgi.url_scheme; empty trusts none",
    )
    certfile: str = option(
        "",
        Text("a file", metavar="PATH", rule=settings.existing_file),
        "serve HTTPS with this certificate (PEM)",
    )
    keyfile: str = option(
        "",
        Text("a file", metavar="PATH", rule=settings.existing_file),
        "the certificate's private key (PEM)",
    )
    # Where the application runs: in this process's threads ("embedded"), or in a process
    # group of ``processes`` daemon processes x ``threads`` threads ("daemon").
    mode: str = option(
        "embedded",
        Choice(*MODES),
        "run the application in this process's threads, or in a daemon process group that "
        "this server feeds and restarts one process at a time",
        site=NOT_WITH_SITE,
        site_hint=_GROUP_HINT,
    )
    group: str = option(
        "default",
        Text("a process group name", metavar="NAME", rule=settings.group_name),
        "daemon process group name (process title 'asyncwsgi: daemon NAME')",
        site=NOT_WITH_SITE,
        site_hint=_GROUP_HINT,
    )
    control_socket: str = option(
        "",
        Text("a path, '' for the default, or 'none'", metavar="PATH"),
        "where 'python -m asyncwsgi reload' reaches the server; none for no control socket",
        shown_default="$XDG_RUNTIME_DIR/asyncwsgi/PID.sock, else ~/.cache/asyncwsgi/PID.sock",
    )
    # A site read from an Apache-style config file (``--config``): virtual hosts, mounts
    # and daemon groups. ``app`` is then empty; the mounts name the scripts.
    site: Site | None = None

    def __post_init__(self) -> None:
        settings.check_values(self)
        for rule in _RULES:
            rule(self)

    @classmethod
    def build(cls, **options: Any) -> Config:
        settings.check_names(cls, options)
        if "app" not in options and options.get("site") is None:
            raise ConfigError("app: no application given")
        return cls(**options)

    def replace(self, **options: Any) -> Config:
        current = {f.name: getattr(self, f.name) for f in fields(self)}
        return Config.build(**{**current, **options})


def default(name: str) -> Any:
    """The default of a :class:`Config` setting, for code that takes it as an argument's
    default (``WSGIApp(callable=...)``) or passes it on (a daemon's spec)."""
    return settings.entry(Config, name).default


def check_setting(name: str, value: object, *, prefix: str = "") -> None:
    """Check one value of a :class:`Config` setting on its own (for ``WSGIApp(...)``);
    ``ConfigError`` naming it, after ``prefix``."""
    try:
        settings.entry(Config, name).option.kind.check(value)
    except ValueError as exc:
        raise ConfigError(f"{prefix}{name}: {exc}") from None


# --------------------------------------------------------------------------------------
# Rules between settings
# --------------------------------------------------------------------------------------


def _application(config: Config) -> None:
    if config.site is not None:
        return
    if isinstance(config.app, str):
        if not config.app:
            raise ConfigError("app: give a script path or package.module:attr")
    elif config.processes > 1:
        raise ConfigError(
            "app: several processes import the application themselves, so it needs a "
            "script path or 'module:attr', not a callable"
        )
    elif config.mode == "daemon":
        raise ConfigError(
            "app: daemon mode imports the application in other processes, so it needs a "
            "script path or 'module:attr', not a callable"
        )


def _reload_on_changes(config: Config) -> None:
    if not config.reload_on_changes:
        for name in ("reload_extra", "reload_site_packages"):
            if getattr(config, name) != default(name):
                raise ConfigError(f"{name}: applies with reload_on_changes only")
        return
    if not isinstance(config.app, str) and config.site is None:
        raise ConfigError(
            "reload_on_changes: the application is imported anew by the processes that "
            "replace the old ones, so it needs a script path or 'module:attr', not a callable"
        )


def _metrics(config: Config) -> None:
    if (
        config.metrics_bind
        and config.mode == "embedded"
        and (config.processes > 1 or config.reload_on_changes)
    ):
        raise ConfigError(
            "metrics_bind: not yet with copies of an embedded server (processes > 1 or "
            "reload_on_changes), whose requests no one process sees; use mode='daemon', "
            "where the front counts every request"
        )


def _tls(config: Config) -> None:
    if config.keyfile and not config.certfile:
        raise ConfigError("keyfile: given without certfile")


def _daemon_only(config: Config) -> None:
    if config.mode != "daemon":
        for name in DAEMON_ONLY:
            if getattr(config, name):
                raise ConfigError(f"{name}: applies to daemon mode only (mode='daemon')")


def _site(config: Config) -> None:
    if config.site is None:
        return
    if config.app:
        raise ConfigError(
            "app: give either a script or a config file; the config file's "
            "WSGIScriptAlias lines name the scripts"
        )
    for item in settings.table(Config):
        if item.option.site == NOT_WITH_SITE and getattr(config, item.name) != item.default:
            raise ConfigError(f"{item.name}: not with a config file; {item.option.site_hint}")


_RULES: tuple[Callable[[Config], None], ...] = (
    _application,
    _reload_on_changes,
    _tls,
    _metrics,
    _daemon_only,
    _site,
)
