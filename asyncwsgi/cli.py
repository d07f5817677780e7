"""``python -m asyncwsgi``: argument parsing and exit codes.

The only module that calls ``sys.exit``. Exit codes when serving: 0 after a clean
shutdown, 1 when the application cannot be loaded, 2 for a bad option or setting. The
``reload`` and ``status`` commands exit 0 when the server answered ``ok``, 1 when it
answered ``error``, 2 when no server could be reached. A copy of an embedded server
(``--processes N``) exits 3 when it cannot load the application, which the supervisor reads.
"""

from __future__ import annotations

import argparse
import logging
import os
import resource
import sys
from collections.abc import Callable, Sequence
from typing import Any

from asyncwsgi import __version__
from asyncwsgi.config import Config
from asyncwsgi.errors import ConfigError, ConfigFileError, ScriptLoadError
from asyncwsgi.logs import setup_logging
from asyncwsgi.settings import EVERY_MOUNT, Choice, Entry, Kind, table

EXIT_OK = 0
EXIT_LOAD_ERROR = 1
EXIT_USAGE = 2


def _argument_type(name: str, kind: Kind[Any]) -> Callable[[str], Any]:
    """An argparse ``type=`` that parses with the setting's kind."""

    def parse(text: str) -> Any:
        try:
            return kind.parse(text)
        except ValueError as exc:
            message = str(exc)
            if repr(text) not in message:
                message += f", not {text!r}"
            raise argparse.ArgumentTypeError(message) from None

    parse.__name__ = name  # argparse names the type in some messages
    return parse


def _add_setting(parser: argparse.ArgumentParser, item: Entry) -> None:
    """One option of the command line, from its row of the settings table."""
    meta = item.option
    assert item.flag is not None
    flags = [item.flag] if meta.short is None else [meta.short, item.flag]
    default = meta.shown_default or meta.kind.show(item.default) or "empty"
    # argparse formats help with %: the access log atoms (%(h)s) are written %%(h)s.
    text = f"{meta.help} (default: {default})".replace("%", "%%")
    kwargs: dict[str, Any] = {"dest": item.name, "help": text, "default": None}
    if meta.negatable:
        kwargs["action"] = argparse.BooleanOptionalAction
    elif isinstance(meta.kind, Choice):
        kwargs["choices"] = meta.kind.choices
    else:
        # --bind takes a text per address; Config parses them.
        kwargs["type"] = str if meta.repeatable else _argument_type(item.name, meta.kind)
        kwargs["metavar"] = meta.kind.metavar
        if meta.repeatable:
            kwargs["action"] = "append"
    parser.add_argument(*flags, **kwargs)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m asyncwsgi",
        description="Serve a WSGI application, reloading its script file when it changes.",
        epilog="Commands for a running server: 'python -m asyncwsgi reload [GROUP]' and "
        "'python -m asyncwsgi status' (see their --help); a script named reload or status "
        "is served when given as ./reload or ./status.",
    )
    parser.add_argument(
        "app",
        metavar="SCRIPT",
        nargs="?",
        help="a WSGI script file (.wsgi or .py) or package.module:callable (or --config)",
    )
    parser.add_argument(
        "--config",
        metavar="FILE",
        help="serve the virtual hosts and WSGIScriptAlias mounts of an Apache-style config "
        "file (Listen, VirtualHost, WSGIDaemonProcess, ...); options given here win over it",
    )
    parser.add_argument(
        "--check-config",
        action="store_true",
        help="check the --config file, print each mount's settings and where they came "
        "from, and exit (0: fine, 2: an error)",
    )
    parser.add_argument(
        "--print-config",
        action="store_true",
        help="print every setting, its value and where it came from (command line, "
        "environment, default), and exit",
    )
    parser.add_argument(
        "--env-file",
        metavar="FILE",
        help="KEY=VALUE lines put in the environment first (variables already set win), "
        "for the application and for ASYNCWSGI_<OPTION> settings (default: "
        "$ASYNCWSGI_ENV_FILE)",
    )
    parser.add_argument("--version", action="version", version=f"asyncwsgi {__version__}")
    for item in table(Config):
        if item.flag is not None:
            _add_setting(parser, item)
    return parser


def config_from_args(args: argparse.Namespace) -> Config:
    from asyncwsgi.server.process import settings_from_env

    options: dict[str, Any] = {
        item.name: getattr(args, item.name)
        for item in table(Config)
        if item.flag is not None and getattr(args, item.name) is not None
    }
    # ASYNCWSGI_<OPTION>: the command line wins.
    from_env = settings_from_env(os.environ, options)
    args.given, args.from_env = tuple(options), tuple(from_env)
    options.update(from_env)
    if args.config is None:
        if args.check_config:
            raise ConfigError("--check-config: give the file to check with --config FILE")
        if args.app is None:
            raise ConfigError("give a WSGI script (or package.module:callable), or --config FILE")
        return Config.build(app=args.app, **options)
    if args.app is not None:
        raise ConfigError(
            f"give either a script ({args.app!r}) or --config; the config file's "
            "WSGIScriptAlias lines name the scripts"
        )
    from asyncwsgi.sites.directives import read_site
    from asyncwsgi.sites.model import COMMAND_LINE, Setting
    from asyncwsgi.sites.report import GROUP_OVERRIDES, any_port, override_groups

    # The command line wins over every context of the file, .htaccess included.
    overrides: dict[str, Setting] = {
        item.name: Setting(options.pop(item.name), COMMAND_LINE)
        for item in table(Config)
        if item.option.site == EVERY_MOUNT and item.name in options
    }
    site = read_site(args.config, overrides=overrides)
    # The daemon options given here go to every WSGIDaemonProcess (--graceful-timeout is
    # the server's own too).
    site = override_groups(
        site,
        {
            name: options[name] if name == "graceful_timeout" else options.pop(name)
            for name in GROUP_OVERRIDES
            if name in options
        },
    )
    if "bind" not in options and site.listen:
        options["bind"] = tuple(address for address, _ in site.listen)
    else:
        # Addresses from --bind (or the default): the file's <VirtualHost> ports cannot
        # know them, so any port matches.
        site = any_port(site)
    return Config.build(site=site, **options)


def check_config(config: Config, args: argparse.Namespace) -> None:
    """``--check-config``: print what the config file sets up."""
    from asyncwsgi.sites.model import COMMAND_LINE, DEFAULT
    from asyncwsgi.sites.report import describe_site

    assert config.site is not None
    origin = COMMAND_LINE if args.bind else DEFAULT
    print(describe_site(config.site, config.bind, origin), end="", flush=True)


def _raise_fd_limit(wanted: int) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = min(hard, max(soft, wanted))
    if target > soft:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))


def _set_title(title: str) -> None:
    """Name the process so ``pgrep -f 'asyncwsgi: main'`` finds it."""
    try:
        from setproctitle import setproctitle
    except ImportError:  # pragma: no cover - a declared dependency, but optional to run
        return
    setproctitle(title)


def _print_addresses(addresses: list[str]) -> None:
    for address in addresses:
        print(f"Listening on {address}", flush=True)


CONTROL_COMMANDS = ("reload", "status", "dump")
EXIT_COMMAND_FAILED = 1  # the server answered "error ..."
EXIT_UNREACHABLE = 2  # no server could be reached


def build_control_parser(command: str) -> argparse.ArgumentParser:
    """The parser of ``python -m asyncwsgi reload|status``, commands for a running server."""
    about = {
        "reload": "Restart a daemon process group of a running asyncwsgi server, one process "
        "at a time (every group when GROUP is not given).",
        "status": "Show the state of a running asyncwsgi server (one line: ok and JSON).",
        "dump": "Print every thread of every process of a running asyncwsgi server (the "
        "server, its daemon processes or copies) with the request it serves and its "
        "Python stack; GROUP: the server and that daemon group only.",
    }
    parser = argparse.ArgumentParser(
        prog=f"python -m asyncwsgi {command}",
        description=about[command],
        epilog="Exit status: 0 when the server answers ok, 1 when it answers with an error, "
        "2 when no server can be reached. To serve a script file named "
        f"{command}, give it as ./{command}.",
    )
    if command in ("reload", "dump"):
        parser.add_argument("group", nargs="?", metavar="GROUP", help="process group name")
    parser.add_argument(
        "--control-socket",
        metavar="PATH",
        help="the server's control socket (default: $ASYNCWSGI_CONTROL_SOCKET, else the "
        "one server running for this user under $XDG_RUNTIME_DIR/asyncwsgi, "
        "~/.cache/asyncwsgi or /tmp/asyncwsgi-UID)",
    )
    return parser


def _setup_logging(config: Config) -> None:
    """The logs as the settings ask; ``OSError``/``ValueError`` naming a file that
    cannot be opened or a logging config that does not apply."""
    for name in ("access_logfile", "error_logfile"):
        path = getattr(config, name)
        if path not in ("", "-"):
            try:
                with open(path, "a", encoding="utf-8"):
                    pass
            except OSError as exc:
                flag = "--" + name.replace("_", "-")
                raise OSError(f"{flag} {path}: {exc.strerror or exc}") from None
    try:
        setup_logging(
            config.log_level,
            error_file=config.error_logfile,
            access_file=config.access_logfile,
            config_file=config.log_config,
        )
    except ValueError as exc:
        raise ValueError(f"--log-config {exc}") from None


def control_main(argv: Sequence[str]) -> int:
    """Run ``reload [GROUP]`` or ``status`` against a running server; returns the exit code."""

    from asyncwsgi.control import ControlError, find_control_socket, send_command

    command = argv[0]
    args = build_control_parser(command).parse_args(argv[1:])
    words = [command] if getattr(args, "group", None) is None else [command, args.group]
    try:
        path = (
            args.control_socket
            or os.environ.get("ASYNCWSGI_CONTROL_SOCKET")
            or find_control_socket()
        )
        answer = send_command(path, words)
    except ControlError as exc:
        print(f"asyncwsgi: error: {exc}", file=sys.stderr)
        return EXIT_UNREACHABLE
    if command == "dump" and answer.startswith("ok "):
        import json

        print(json.loads(answer[3:]), end="")
        return EXIT_OK
    if answer == "ok" or answer.startswith("ok "):
        print(answer)
        return EXIT_OK
    print(answer, file=sys.stderr)
    return EXIT_COMMAND_FAILED


def main(argv: Sequence[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] in CONTROL_COMMANDS:
        return control_main(argv)
    from asyncwsgi.server import run

    args = build_parser().parse_args(argv)
    try:
        _prepare_environment(args)
        config = config_from_args(args)
    except ConfigError as exc:
        # A config file's errors read "site.conf:LINE: message", as a compiler's do.
        prefix = "" if isinstance(exc, ConfigFileError) else "asyncwsgi: error: "
        print(f"{prefix}{exc}", file=sys.stderr)
        return EXIT_USAGE
    if args.check_config:
        check_config(config, args)
        return EXIT_OK
    if args.print_config:
        from asyncwsgi.server.process import describe_settings

        print(describe_settings(config, args.given, args.from_env), end="")
        return EXIT_OK
    from asyncwsgi.server.process import PidFile, add_python_path, drop_privileges

    add_python_path(config.pythonpath)
    try:
        _setup_logging(config)
        pid_file = PidFile(config.pid_file) if config.pid_file else None
        if pid_file is not None and config.server_user:
            pid_file.write()  # as root, where /run lets only root write
        # As root: the sockets bound and the logs open, then the user of --user.
        config = drop_privileges(config)
    except (OSError, ValueError, ConfigError) as exc:
        print(f"asyncwsgi: error: {exc}", file=sys.stderr)
        return EXIT_USAGE

    def ready(addresses: list[str]) -> None:
        _print_addresses(addresses)
        if pid_file is not None and not config.server_user:
            pid_file.write()

    _set_title("asyncwsgi: main")
    # Two descriptors per connection: the socket and the duplicate workers write to.
    _raise_fd_limit(2 * config.max_connections + 64)
    try:
        run(config=config, ready=ready)
    except ScriptLoadError as exc:
        cause = exc.__cause__
        detail = ""
        if isinstance(cause, SyntaxError) and cause.lineno:
            detail = f" (line {cause.lineno})"
        print(f"asyncwsgi: error: {exc}{detail}", file=sys.stderr)
        return EXIT_LOAD_ERROR
    except ConfigError as exc:
        print(f"asyncwsgi: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        return EXIT_OK
    finally:
        if pid_file is not None:
            pid_file.remove()
    return EXIT_OK


def _prepare_environment(args: argparse.Namespace) -> None:
    """Before the settings are read: the env file (its variables may be settings), and
    the working folder (a relative script or config file is taken from there)."""
    from asyncwsgi.server.process import read_env_file

    env_file = args.env_file or os.environ.get("ASYNCWSGI_ENV_FILE", "")
    if env_file:
        for key, value in read_env_file(env_file).items():
            os.environ.setdefault(key, value)
    chdir = args.chdir or os.environ.get("ASYNCWSGI_CHDIR", "")
    if chdir:
        try:
            os.chdir(chdir)
        except OSError as exc:
            raise ConfigError(f"--chdir {chdir}: {exc.strerror or exc}") from None


def entry() -> None:
    sys.exit(main())


def copy_main() -> None:
    """A copy of an embedded-mode server started by ``--processes N`` (not for users).

    Its settings, sockets and READY pipe come from the environment the supervisor set;
    it says READY once the application is imported and its sockets accept connections.
    """

    from asyncwsgi.processes import EXIT_BOOT_FAILED, die_with_parent, report
    from asyncwsgi.server import run
    from asyncwsgi.server.supervisor import COPY_ENV, config_from_copy_settings, report_files

    settings = config_from_copy_settings(os.environ.pop(COPY_ENV))
    config, fd = settings.config, settings.report_fd
    die_with_parent(settings.parent)
    _setup_logging(config)  # the supervisor opened the same files: it cannot fail now
    _set_title("asyncwsgi: server copy")
    _raise_fd_limit(2 * config.max_connections + 64)

    def ready(addresses: list[str]) -> None:
        report(fd, ready=True)
        if settings.report_files:
            report_files(fd, settings.site_packages)

    try:
        run(config=config, ready=ready)
    except ScriptLoadError as exc:
        # Logged once, with the traceback; the supervisor shows the message in status.
        report(fd, error=str(exc))
        cause = exc.__cause__
        logging.getLogger("asyncwsgi.error").error(
            "server copy: %s",
            exc,
            exc_info=(type(cause), cause, cause.__traceback__) if cause is not None else None,
        )
        sys.exit(EXIT_BOOT_FAILED)
    except KeyboardInterrupt:
        pass
    sys.exit(EXIT_OK)
