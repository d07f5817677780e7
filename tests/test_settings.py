"""``asyncwsgi.settings`` and ``asyncwsgi.config`` in-process: the settings table.

Each kind's ``check()`` (Python values) and ``parse()`` (text) with good and bad values
and the exact reasons; ``Config``'s checks and the rules between settings; then that the
command line (``asyncwsgi.cli.build_parser``) and the ``WSGIDaemonProcess`` options of the
config-file reader are built from the table: every flagged setting is set once through
its flag, every numeric flag refuses a bad value, and every daemon option is a row of the
table with mod_wsgi's defaults.
"""

from __future__ import annotations

import dataclasses
import grp
import math
import os
import pwd
import sys
from pathlib import Path
from typing import Any

import pytest

from asyncwsgi import cli, settings
from asyncwsgi.config import DAEMON_ONLY, Config, ProcessSettings, check_setting
from asyncwsgi.errors import ConfigError, ConfigFileError
from asyncwsgi.settings import (
    BindAddress,
    Binds,
    Bytes,
    Choice,
    Count,
    Entry,
    Flag,
    Seconds,
    Text,
    parse_bind,
    table,
)
from asyncwsgi.sites.directives import DAEMON_OPTIONS, GROUP_OPTIONS, MODWSGI_DEFAULTS, read_site
from asyncwsgi.sites.model import Site


def reason(exc: pytest.ExceptionInfo[BaseException]) -> str:
    return str(exc.value)


def refused(kind: settings.Kind[Any], value: Any) -> str:
    with pytest.raises(ValueError) as caught:
        kind.check(value)
    return reason(caught)


def unparsed(kind: settings.Kind[Any], text: str) -> str:
    with pytest.raises(ValueError) as caught:
        kind.parse(text)
    return reason(caught)


def build_error(**options: Any) -> str:
    with pytest.raises(ConfigError) as caught:
        Config.build(**options)
    return reason(caught)


def empty_site() -> Site:
    return Site(path="site.conf", listen=(), mounts=(), vhosts=(), groups=())


# -- Count and Bytes -----------------------------------------------------------------------


def test_count_describes_its_minimum() -> None:
    assert Count(0).describe == "a non-negative whole number"
    assert Count(1).describe == "a positive whole number"
    assert Count(5).describe == "a whole number"
    assert Count(-1, describe="N or -1").describe == "N or -1"


def test_count_check() -> None:
    kind = Count(1)
    assert kind.check(1) == 1
    assert kind.check(10**12) == 10**12
    assert refused(kind, 0) == "must be a positive whole number, not 0"
    assert refused(kind, -3) == "must be a positive whole number, not -3"
    # bool is an int to Python, but True is not a count.
    assert refused(kind, True) == "must be a positive whole number, not True"
    assert refused(kind, 2.0) == "must be a positive whole number, not 2.0"
    assert refused(kind, "2") == "must be a positive whole number, not '2'"
    assert refused(kind, None) == "must be a positive whole number, not None"
    assert Count(-1).check(-1) == -1


def test_count_parse() -> None:
    kind = Count(0)
    assert kind.parse("0") == 0
    assert kind.parse("42") == 42
    for text in ("-1", "", "x", "1.5", "1e3", "0x10"):
        assert unparsed(kind, text) == "expected a non-negative whole number"


def test_bytes_is_a_count_shown_in_gib() -> None:
    kind = Bytes(0)
    assert kind.check(0) == 0
    assert kind.parse("1048576") == 1 << 20
    assert unparsed(Bytes(1), "0") == "expected a positive whole number"
    assert kind.show(1 << 30) == "1 GiB"
    assert kind.show(3 << 30) == "3 GiB"
    assert kind.show(0) == "0"  # no limit, not "0 GiB"
    assert kind.show(8190) == "8190"
    assert kind.show((1 << 30) + 1) == str((1 << 30) + 1)


# -- Seconds ------------------------------------------------------------------------------


def test_seconds_check() -> None:
    kind = Seconds()
    assert kind.check(0.5) == 0.5
    assert kind.check(3) == 3
    assert refused(kind, 0) == "must be a positive number of seconds, not 0"
    assert refused(kind, 0.0) == "must be a positive number of seconds, not 0.0"
    assert refused(kind, -1) == "must be a positive number of seconds, not -1"
    assert refused(kind, math.nan) == "must be a positive number of seconds, not nan"
    assert refused(kind, True) == "must be a positive number of seconds, not True"
    assert refused(kind, "5") == "must be a positive number of seconds, not '5'"


def test_seconds_off_at_zero_check() -> None:
    kind = Seconds(off_at_zero=True)
    assert kind.check(0) == 0
    assert kind.check(0.0) == 0.0
    assert kind.check(2.5) == 2.5
    assert refused(kind, -0.1) == "must be a number of seconds (0: off), not -0.1"
    assert refused(kind, math.nan) == "must be a number of seconds (0: off), not nan"


def test_seconds_parse() -> None:
    kind = Seconds()
    assert kind.parse("1.5") == 1.5
    assert kind.parse("30") == 30.0
    for text in ("0", "-2", "nan", "x", ""):
        assert unparsed(kind, text) == "expected a positive number of seconds"
    off = Seconds(off_at_zero=True)
    assert off.parse("0") == 0.0
    assert unparsed(off, "-1") == "expected a number of seconds (0: off)"


def test_seconds_show() -> None:
    assert Seconds().show(30.0) == "30"
    assert Seconds().show(0.25) == "0.25"


# -- Flag, Choice, Text ------------------------------------------------------------------


def test_flag_check() -> None:
    assert Flag().check(True) is True
    assert Flag().check(False) is False
    assert refused(Flag(), 1) == "must be True or False, not 1"
    assert refused(Flag(), "on") == "must be True or False, not 'on'"
    assert refused(Flag(), None) == "must be True or False, not None"


@pytest.mark.parametrize("text", ["on", "true", "yes", "1", "ON", "True", "Yes"])
def test_flag_parse_on(text: str) -> None:
    assert Flag().parse(text) is True


@pytest.mark.parametrize("text", ["off", "false", "no", "0", "OFF", "False", "No"])
def test_flag_parse_off(text: str) -> None:
    assert Flag().parse(text) is False


@pytest.mark.parametrize("text", ["", "maybe", "2", "y", "enabled"])
def test_flag_parse_refuses(text: str) -> None:
    assert unparsed(Flag(), text) == "expected on or off"


def test_flag_show() -> None:
    assert (Flag().show(True), Flag().show(False)) == ("on", "off")


def test_choice() -> None:
    kind = Choice("auto", "uvloop", "asyncio")
    assert kind.describe == "one of auto, uvloop, asyncio"
    assert kind.check("uvloop") == "uvloop"
    assert kind.parse("asyncio") == "asyncio"
    assert refused(kind, "trio") == "'trio' is not one of auto, uvloop, asyncio"
    assert refused(kind, None) == "None is not one of auto, uvloop, asyncio"
    assert refused(kind, ["auto"]) == "['auto'] is not one of auto, uvloop, asyncio"
    # Case matters: the text is the value.
    assert unparsed(kind, "Auto") == "expected one of auto, uvloop, asyncio"


def test_text_without_a_rule() -> None:
    kind = Text()
    assert kind.check("") == ""
    assert kind.parse("anything at all") == "anything at all"
    assert refused(kind, 5) == "must be a string, not 5"
    assert refused(Text("a path"), b"/x") == "must be a path, not b'/x'"


def test_text_rule_runs_on_check_and_parse() -> None:
    kind = Text("a Python identifier", rule=settings.identifier)
    assert kind.check("application") == "application"
    assert refused(kind, "1app") == "'1app' is not a Python identifier"
    assert unparsed(kind, "my-app") == "'my-app' is not a Python identifier"
    # The type comes before the rule.
    assert refused(kind, 1) == "must be a Python identifier, not 1"


def test_existing_file_rule(tmp_path: Path) -> None:
    kind = Text("a file", rule=settings.existing_file)
    pem = tmp_path / "cert.pem"
    pem.write_text("x")
    assert kind.check(str(pem)) == str(pem)
    assert kind.check("") == ""  # not given
    missing = str(tmp_path / "missing.pem")
    assert refused(kind, missing) == f"no such file {missing!r}"
    assert refused(kind, str(tmp_path)) == f"no such file {str(tmp_path)!r}"  # a folder


def test_group_name_rule() -> None:
    kind = Text(rule=settings.group_name)
    assert kind.check("site-a_1.x") == "site-a_1.x"
    assert refused(kind, "") == "'' is not a usable process group name"
    assert refused(kind, "a\x00b") == "'a\\x00b' is not a usable process group name"
    assert refused(kind, "a b") == "'a b' may not contain spaces or '/'"
    assert refused(kind, "a/b") == "'a/b' may not contain spaces or '/'"
    # Other spaces are not printable: refused by the first test.
    assert refused(kind, "a\tb") == "'a\\tb' is not a usable process group name"


def test_network_list_rule() -> None:
    kind = Text(rule=settings.network_list)
    for good in ("", "*", "127.0.0.1,::1", "10.0.0.0/8, 192.168.1.7", "10.1.2.3/8", " , "):
        assert kind.check(good) == good
    assert refused(kind, "10.0.0.1,proxy") == "'proxy' is not an IP address or network"
    assert refused(kind, "10.0.0.0/33") == "'10.0.0.0/33' is not an IP address or network"


def test_mount_point_rule() -> None:
    kind = Text(rule=settings.mount_point)
    assert kind.check("") == ""
    assert kind.check("/app") == "/app"
    assert refused(kind, "app") == "'app' must start with '/' (or be empty)"
    # The root is the empty mount point: SCRIPT_NAME never ends with "/" (PEP 3333).
    assert refused(kind, "/") == "'/' is the root: leave it empty"


# -- Binds -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "address", "shown"),
    [
        ("127.0.0.1:8000", BindAddress("tcp", host="127.0.0.1", port=8000), "127.0.0.1:8000"),
        (":80", BindAddress("tcp", host="0.0.0.0", port=80), "0.0.0.0:80"),
        ("localhost:0", BindAddress("tcp", host="localhost", port=0), "localhost:0"),
        ("[::1]:8080", BindAddress("tcp", host="::1", port=8080), "[::1]:8080"),
        ("[::]:65535", BindAddress("tcp", host="::", port=65535), "[::]:65535"),
        ("unix:/run/app.sock", BindAddress("unix", path="/run/app.sock"), "unix:/run/app.sock"),
        ("fd://3", BindAddress("fd", fd=3), "fd://3"),
    ],
)
def test_parse_bind(text: str, address: BindAddress, shown: str) -> None:
    assert parse_bind(text) == address
    assert str(address) == shown


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("unix:", "bind 'unix:': a UNIX socket needs a path"),
        ("fd://x", "bind 'fd://x': fd:// needs a number"),
        ("[::1]8080", "bind '[::1]8080': expected [IPV6]:PORT"),
        ("[::1", "bind '[::1': expected [IPV6]:PORT"),
        ("8000", "bind '8000': expected HOST:PORT, unix:PATH or fd://N"),
        ("::1:80", "bind '::1:80': write IPv6 addresses as [ADDR]:PORT"),
        ("host:http", "bind 'host:http': port 'http' is not a number"),
        ("host:", "bind 'host:': port '' is not a number"),
        ("host:65536", "bind 'host:65536': port 65536 out of range"),
        ("host:-1", "bind 'host:-1': port -1 out of range"),
    ],
)
def test_parse_bind_refuses(text: str, message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_bind(text)
    assert reason(caught) == message


def test_binds_check() -> None:
    kind = Binds()
    one = BindAddress("tcp", host="127.0.0.1", port=1)
    assert kind.check("127.0.0.1:1") == (one,)
    assert kind.check(one) == (one,)
    assert kind.check(["unix:/s", one]) == (BindAddress("unix", path="/s"), one)
    assert kind.parse("fd://4") == (BindAddress("fd", fd=4),)
    described = "HOST:PORT, [IPV6]:PORT, unix:PATH or fd://N"
    assert refused(kind, []) == "at least one address is needed"
    assert refused(kind, 80) == f"must be {described}, not 80"
    assert refused(kind, [80]) == f"must be {described}, not [80]"
    assert refused(kind, "nope") == "bind 'nope': expected HOST:PORT, unix:PATH or fd://N"
    assert kind.show((one, BindAddress("unix", path="/s"))) == "127.0.0.1:1 unix:/s"


# -- the table -----------------------------------------------------------------------------


def test_every_config_field_but_site_is_one_row_of_the_table() -> None:
    names = [e.name for e in table(Config)]
    assert len(names) == len(set(names))
    fields = {f.name for f in dataclasses.fields(Config)}
    assert set(names) == fields - {"site"}
    # The process settings come first, in the base class's order.
    assert names[: len(dataclasses.fields(ProcessSettings))] == [
        e.name for e in table(ProcessSettings)
    ]


def test_every_default_passes_its_own_check() -> None:
    for e in table(Config):
        if e.name != "app":  # required: no default application
            assert e.option.kind.check(e.default) == e.default, e.name


def test_entry_flag() -> None:
    assert settings.entry(Config, "keep_alive_timeout").flag == "--keep-alive-timeout"
    assert settings.entry(Config, "app").flag is None
    assert settings.entry(Config, "server_header").flag is None
    with pytest.raises(KeyError):
        settings.entry(Config, "nope")


# -- Config ------------------------------------------------------------------------------


def test_build_with_defaults() -> None:
    config = Config.build(app="app.wsgi")
    for e in table(Config):
        if e.name != "app":
            assert getattr(config, e.name) == e.default, e.name
    # The defaults the README documents, pinned here so a change to one is deliberate.
    documented = {
        "threads": 8,
        "graceful_timeout": 30.0,
        "keep_alive_timeout": 5.0,
        "header_timeout": 10.0,
        "body_timeout": 20.0,
        "send_timeout": 60.0,
        "limit_request_body": 1 << 30,
        "max_connections": 4096,
        "backlog": 2048,
        "script_reloading": True,
        "callable": "application",
        "mode": "embedded",
        "processes": 1,
        "shutdown_timeout": 5.0,
    }
    assert {name: getattr(config, name) for name in documented} == documented
    assert [str(b) for b in config.bind] == ["127.0.0.1:8000"]


def test_check_values_names_the_setting() -> None:
    assert build_error(app="a.py", threads=0) == "threads: must be a positive whole number, not 0"
    assert (
        build_error(app="a.py", keep_alive_timeout=-1)
        == "keep_alive_timeout: must be a positive number of seconds, not -1"
    )
    assert (
        build_error(app="a.py", loop="trio") == "loop: 'trio' is not one of auto, uvloop, asyncio"
    )
    assert build_error(app="a.py", access_log="no") == "access_log: must be True or False, not 'no'"
    assert build_error(app="a.py", callable="x y") == "callable: 'x y' is not a Python identifier"
    assert build_error(app=5) == "app: must be a path, 'module:attr' or a WSGI callable"


def test_check_values_stores_what_the_kind_made() -> None:
    config = Config.build(app="a.py", bind="[::1]:81")
    assert config.bind == (BindAddress("tcp", host="::1", port=81),)


def test_check_values_on_any_settings_dataclass() -> None:
    @dataclasses.dataclass
    class Small:
        size: int = settings.option(1, Count(1), "a size")
        other: str = "not a setting"

    small = Small(size=0)
    with pytest.raises(ConfigError) as caught:
        settings.check_values(small)
    assert reason(caught) == "size: must be a positive whole number, not 0"
    settings.check_values(Small(other=object()))  # type: ignore[arg-type]


def test_unknown_setting_is_a_config_error_naming_it() -> None:
    assert build_error(app="a.py", thread=4) == "unknown setting 'thread'"
    # Several: the first by name, so the message does not depend on the call's order.
    assert build_error(app="a.py", zz=1, aa=2) == "unknown setting 'aa'"


def test_an_application_is_needed() -> None:
    assert build_error() == "app: no application given"
    assert build_error(app="") == "app: give a script path or package.module:attr"


def test_check_setting_alone() -> None:
    check_setting("threads", 4)
    with pytest.raises(ConfigError) as caught:
        check_setting("threads", 0, prefix="daemon=: ")
    assert reason(caught) == "daemon=: threads: must be a positive whole number, not 0"


def test_replace_checks_again() -> None:
    config = Config.build(app="a.py", threads=4)
    assert config.replace(backlog=10).threads == 4
    with pytest.raises(ConfigError, match=r"^backlog: must be a positive whole number, not 0$"):
        config.replace(backlog=0)


def test_config_is_frozen() -> None:
    config = Config.build(app="a.py")
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.threads = 3  # type: ignore[misc]


# -- rules between settings ----------------------------------------------------------------


def test_keyfile_without_certfile(tmp_path: Path) -> None:
    pem = tmp_path / "key.pem"
    pem.write_text("x")
    assert build_error(app="a.py", keyfile=str(pem)) == "keyfile: given without certfile"
    config = Config.build(app="a.py", certfile=str(pem), keyfile=str(pem))
    assert config.keyfile == str(pem)
    Config.build(app="a.py", certfile=str(pem))  # the key may be in the certificate file


@pytest.mark.parametrize("name", DAEMON_ONLY)
def test_daemon_only_settings_in_embedded_mode(name: str) -> None:
    assert (
        build_error(app="a.py", **{name: 5})
        == f"{name}: applies to daemon mode only (mode='daemon')"
    )
    assert getattr(Config.build(app="a.py", mode="daemon", **{name: 5}), name) == 5


def wsgi_app(environ: Any, start_response: Any) -> list[bytes]:
    return []


def test_a_callable_app_runs_in_this_process_only() -> None:
    assert Config.build(app=wsgi_app).app is wsgi_app
    assert build_error(app=wsgi_app, processes=2) == (
        "app: several processes import the application themselves, so it needs a "
        "script path or 'module:attr', not a callable"
    )
    assert build_error(app=wsgi_app, mode="daemon") == (
        "app: daemon mode imports the application in other processes, so it needs a "
        "script path or 'module:attr', not a callable"
    )
    # A path is imported by each process: fine.
    Config.build(app="a.py", processes=2, mode="daemon")


def test_a_site_alone() -> None:
    site = empty_site()
    config = Config.build(site=site)
    assert config.site is site
    assert config.app == ""


def test_a_site_and_an_app() -> None:
    assert build_error(site=empty_site(), app="a.py") == (
        "app: give either a script or a config file; the config file's "
        "WSGIScriptAlias lines name the scripts"
    )


@pytest.mark.parametrize(
    ("name", "value", "hint"),
    [
        ("mode", "daemon", "use WSGIDaemonProcess and WSGIProcessGroup"),
        ("processes", 2, "use WSGIDaemonProcess and WSGIProcessGroup"),
        ("group", "other", "use WSGIDaemonProcess and WSGIProcessGroup"),
        ("root_path", "/mnt", "WSGIScriptAlias gives mounts"),
    ],
)
def test_settings_a_site_gives_itself(name: str, value: Any, hint: str) -> None:
    message = build_error(site=empty_site(), **{name: value})
    assert message.startswith(f"{name}: not with a config file; {hint}")


def test_the_refused_settings_are_exactly_those_marked() -> None:
    marked = {e.name for e in table(Config) if e.option.site == settings.NOT_WITH_SITE}
    assert marked == {
        "processes",
        "root_path",
        "mode",
        "group",
        "reload_on_changes",
        "reload_extra",
        "reload_site_packages",
        "static",
    }
    assert all(e.option.site_hint for e in table(Config) if e.name in marked)


def test_a_site_with_the_default_values_given_is_fine() -> None:
    # Only a value other than the default is refused, however it was given.
    config = Config.build(
        site=empty_site(), mode="embedded", processes=1, group="default", root_path=""
    )
    assert config.site is not None and (config.mode, config.processes) == ("embedded", 1)


# -- ProcessSettings -----------------------------------------------------------------------


def test_process_settings_of_a_config() -> None:
    config = Config.build(
        app="a.py",
        mode="daemon",
        processes=3,
        threads=4,
        maximum_requests=100,
        graceful_timeout=2.0,
        request_timeout=9.0,
        backlog=5,
    )
    group = ProcessSettings.of(config)
    assert type(group) is ProcessSettings
    assert dataclasses.asdict(group) == {
        "processes": 3,
        "threads": 4,
        "maximum_requests": 100,
        "maximum_requests_jitter": -1,
        "graceful_timeout": 2.0,
        "shutdown_timeout": 5.0,
        "restart_interval": 0.0,
        "request_timeout": 9.0,
        "startup_timeout": 60.0,
        "python_home": "",
        "python_path": (),
        "home": "",
        "run_user": "",
        "run_group": "",
        "umask": "",
        "lang": "",
        "locale": "",
        "inactivity_timeout": 0.0,
        "queue_timeout": 0.0,
        "memory_limit": 0,
        "virtual_memory_limit": 0,
    }


@pytest.mark.parametrize(
    ("maximum", "jitter", "expected"),
    [(0, -1, 0), (100, -1, 10), (105, -1, 10), (9, -1, 0), (100, 0, 0), (100, 7, 7), (0, 7, 7)],
)
def test_jitter(maximum: int, jitter: int, expected: int) -> None:
    group = ProcessSettings(maximum_requests=maximum, maximum_requests_jitter=jitter)
    assert group.jitter == expected


def test_process_settings_are_checked() -> None:
    with pytest.raises(ConfigError, match=r"^threads: must be a positive whole number, not 0$"):
        ProcessSettings(threads=0)
    with pytest.raises(ConfigError, match=r"^maximum_requests_jitter: must be a non-negative"):
        ProcessSettings(maximum_requests_jitter=-2)


# -- the command line, from the table ----------------------------------------------------


def flagged() -> list[Entry]:
    return [e for e in table(Config) if e.flag is not None]


def samples(pem: str) -> dict[str, tuple[list[str], Any]]:
    """For each flagged setting: the words that set it, and the value it then has."""
    return {
        "processes": (["--processes", "3"], 3),
        "threads": (["--threads", "4"], 4),
        "maximum_requests": (["--maximum-requests", "100"], 100),
        "maximum_requests_jitter": (["--maximum-requests-jitter", "7"], 7),
        "graceful_timeout": (["--graceful-timeout", "2.5"], 2.5),
        "shutdown_timeout": (["--shutdown-timeout", "1.5"], 1.5),
        "restart_interval": (["--restart-interval", "60"], 60.0),
        "request_timeout": (["--request-timeout", "30"], 30.0),
        "startup_timeout": (["--startup-timeout", "0"], 0.0),
        "bind": (["-b", "127.0.0.1:9001"], (BindAddress("tcp", host="127.0.0.1", port=9001),)),
        "callable": (["--callable", "app"], "app"),
        "script_reloading": (["--script-reloading", "off"], False),
        "root_path": (["--root-path", "/mnt"], "/mnt"),
        "access_log": (["--no-access-log"], False),
        "log_level": (["--log-level", "debug"], "debug"),
        "keep_alive_timeout": (["--keep-alive-timeout", "7.5"], 7.5),
        "header_timeout": (["--header-timeout", "3"], 3.0),
        "body_timeout": (["--body-timeout", "4"], 4.0),
        "send_timeout": (["--send-timeout", "9"], 9.0),
        "limit_request_line": (["--limit-request-line", "100"], 100),
        "limit_request_fields": (["--limit-request-fields", "10"], 10),
        "limit_request_field_size": (["--limit-request-field-size", "200"], 200),
        "limit_request_body": (["--limit-request-body", "0"], 0),
        "max_connections": (["--max-connections", "10"], 10),
        "backlog": (["--backlog", "16"], 16),
        "loop": (["--loop", "asyncio"], "asyncio"),
        "forwarded_allow_ips": (["--forwarded-allow-ips", "10.0.0.0/8,*"], "10.0.0.0/8,*"),
        "certfile": (["--certfile", pem], pem),
        "keyfile": (["--keyfile", pem], pem),
        "mode": (["--mode", "daemon"], "daemon"),
        "group": (["--group", "g1"], "g1"),
        "control_socket": (["--control-socket", "none"], "none"),
        "reload_failure": (["--reload-failure", "error"], "error"),
        "max_threads": (["--max-threads", "32"], 32),
        "cpu_affinity": (["--cpu-affinity"], True),
        "access_log_format": (["--access-log-format", "json"], "json"),
        "access_log_exclude": (
            ["--access-log-exclude", "/healthz", "--access-log-exclude", "/static/*"],
            ("/healthz", "/static/*"),
        ),
        "access_logfile": (["--access-logfile", "/var/log/a.log"], "/var/log/a.log"),
        "error_logfile": (["--error-logfile", "/var/log/e.log"], "/var/log/e.log"),
        "log_config": (["--log-config", pem], pem),
        "metrics_bind": (["--metrics-bind", "127.0.0.1:9100"], "127.0.0.1:9100"),
        "shutdown_delay": (["--shutdown-delay", "5"], 5.0),
        "chdir": (["--chdir", "/"], "/"),
        "pythonpath": (["--pythonpath", "lib:/srv/lib"], ("lib", "/srv/lib")),
        "pid_file": (["--pid-file", "/run/a.pid"], "/run/a.pid"),
        "socket_mode": (["--socket-mode", "660"], "660"),
        "socket_owner": (["--socket-owner", ":www-data"], ":www-data"),
        "server_user": (["--user", "root"], "root"),
        "slow_request": (["--slow-request", "10"], 10.0),
        "static": (["--static", "/s=/srv/a", "--static", "/t=/srv/b"], ("/s=/srv/a", "/t=/srv/b")),
        "reload_on_changes": (["--reload-on-changes"], True),
        "reload_extra": (
            ["--reload-extra", "templates/*.html", "--reload-extra", "*.toml"],
            ("templates/*.html", "*.toml"),
        ),
        "reload_site_packages": (["--reload-site-packages"], True),
    }


def needed_with(name: str, pem: str) -> dict[str, list[str]]:
    """Other settings a sample needs to pass the rules between settings."""
    if name in DAEMON_ONLY:
        return {"mode": ["--mode", "daemon"]}
    if name == "keyfile":
        return {"certfile": ["--certfile", pem]}
    if name in ("reload_extra", "reload_site_packages"):
        return {"reload_on_changes": ["--reload-on-changes"]}
    return {}


def config_from(*argv: str) -> Config:
    return cli.config_from_args(cli.build_parser().parse_args(list(argv)))


@pytest.fixture
def pem(tmp_path: Path) -> str:
    path = tmp_path / "server.pem"
    path.write_text("not checked here")
    return str(path)


def test_every_flagged_setting_has_a_sample() -> None:
    assert set(samples("x")) == {e.name for e in flagged()}


@pytest.mark.parametrize("item", flagged(), ids=lambda e: e.name)
def test_each_flag_sets_its_setting_and_no_other(item: Entry, pem: str) -> None:
    words, value = samples(pem)[item.name]
    extra = needed_with(item.name, pem)
    config = config_from("app.py", *words, *(w for ws in extra.values() for w in ws))
    assert getattr(config, item.name) == value
    assert value != item.default  # else the test would prove nothing
    changed = {e.name for e in table(Config) if getattr(config, e.name) != e.default}
    assert changed == {"app", item.name, *extra}


def test_the_parser_has_every_flag_and_no_other_setting() -> None:
    parser = cli.build_parser()
    given = {a.dest for a in parser._actions}
    for e in table(Config):
        assert (e.name in given) == (e.flag is not None or e.name == "app"), e.name
    known = parser._option_string_actions
    for e in flagged():
        assert known[e.flag].dest == e.name  # type: ignore[index]
        if e.option.short:
            assert known[e.option.short].dest == e.name


def test_no_flag_leaves_every_default() -> None:
    config = config_from("app.py")
    assert config == Config.build(app="app.py")


def test_negatable_access_log() -> None:
    assert config_from("app.py", "--no-access-log").access_log is False
    assert config_from("app.py", "--access-log").access_log is True
    assert config_from("app.py", "--no-access-log", "--access-log").access_log is True


def test_bind_is_repeatable_with_short_and_long_flags() -> None:
    config = config_from("app.py", "-b", "unix:/tmp/a.sock", "--bind", "[::1]:81", "-b", ":82")
    assert config.bind == (
        BindAddress("unix", path="/tmp/a.sock"),
        BindAddress("tcp", host="::1", port=81),
        BindAddress("tcp", host="0.0.0.0", port=82),
    )


def test_a_bad_bind_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["app.py", "-b", "nope"]) == cli.EXIT_USAGE
    assert capsys.readouterr().err == (
        "asyncwsgi: error: bind: bind 'nope': expected HOST:PORT, unix:PATH or fd://N\n"
    )


def test_a_rule_broken_on_the_command_line_is_a_usage_error(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert cli.main(["app.py", "--maximum-requests", "5"]) == cli.EXIT_USAGE
    assert capsys.readouterr().err == (
        "asyncwsgi: error: maximum_requests: applies to daemon mode only (mode='daemon')\n"
    )


def numeric_bad_values() -> list[tuple[Entry, str, str]]:
    """(row, bad text, the reason argparse shows) for every numeric flag."""
    cases = []
    for e in flagged():
        kind = e.option.kind
        if isinstance(kind, Count):
            low = str(kind.minimum - 1)
        elif isinstance(kind, Seconds):
            low = "-1" if kind.off_at_zero else "0"
        else:
            continue
        expected = f"expected {kind.describe}"
        cases += [(e, "nope", expected), (e, low, expected), (e, "1.5x", expected)]
    return cases


@pytest.mark.parametrize(
    ("item", "text", "why"), numeric_bad_values(), ids=lambda v: getattr(v, "name", None)
)
def test_a_bad_numeric_value_exits_2_naming_the_flag(
    item: Entry, text: str, why: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as caught:
        # "--flag=-1": a negative number is the flag's value, not another option.
        cli.build_parser().parse_args(["app.py", f"{item.flag}={text}"])
    assert caught.value.code == 2
    err = capsys.readouterr().err
    assert f"argument {item.flag}: {why}, not {text!r}" in err


def test_there_are_numeric_flags_to_check() -> None:
    names = {e.name for e, _, _ in numeric_bad_values()}
    assert {"threads", "graceful_timeout", "request_timeout", "limit_request_body"} <= names


@pytest.mark.parametrize(
    ("words", "message"),
    [
        (["--script-reloading", "maybe"], "argument --script-reloading: expected on or off"),
        (["--log-level", "loud"], "argument --log-level: invalid choice: 'loud'"),
        (["--mode", "thread"], "argument --mode: invalid choice: 'thread'"),
        (["--callable", "1x"], "argument --callable: '1x' is not a Python identifier"),
        (["--root-path", "/"], "argument --root-path: '/' is the root: leave it empty"),
        (["--group", "a b"], "argument --group: 'a b' may not contain spaces or '/'"),
    ],
)
def test_other_bad_values_exit_2_naming_the_flag(
    words: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as caught:
        cli.build_parser().parse_args(["app.py", *words])
    assert caught.value.code == 2
    assert message in capsys.readouterr().err


# -- WSGIDaemonProcess options, from the table -------------------------------------------


def test_every_daemon_option_is_a_process_setting_of_the_table() -> None:
    directives = {e.option.directive: e for e in table(ProcessSettings) if e.option.directive}
    assert directives == GROUP_OPTIONS
    assert set(GROUP_OPTIONS) == {
        "processes",
        "threads",
        "maximum-requests",
        "graceful-timeout",
        "shutdown-timeout",
        "restart-interval",
        "request-timeout",
        "startup-timeout",
        "python-home",
        "python-path",
        "home",
        "user",
        "group",
        "umask",
        "lang",
        "locale",
        "inactivity-timeout",
        "queue-timeout",
        "memory-limit",
        "virtual-memory-limit",
    }
    assert DAEMON_OPTIONS[:-1] == tuple(GROUP_OPTIONS)
    assert DAEMON_OPTIONS[-1] == "display-name"
    # Settings of the server alone name no directive.
    own = {f.name for f in dataclasses.fields(ProcessSettings)}
    assert all(e.option.directive is None for e in table(Config) if e.name not in own)


def test_modwsgi_defaults() -> None:
    assert MODWSGI_DEFAULTS == {"threads": 15, "graceful_timeout": 15.0}
    assert ProcessSettings().threads == 8  # ours differ; a WSGIDaemonProcess line gets 15


def write_site(tmp_path: Path, daemon_line: str) -> str:
    (tmp_path / "app.wsgi").write_text("")
    conf = tmp_path / "site.conf"
    conf.write_text(f"{daemon_line}\nWSGIScriptAlias / app.wsgi\n")
    return str(conf)


def test_a_daemon_line_without_options_gets_modwsgi_defaults(tmp_path: Path) -> None:
    [group] = read_site(write_site(tmp_path, "WSGIDaemonProcess g")).groups
    expected = {**dataclasses.asdict(ProcessSettings()), **MODWSGI_DEFAULTS}
    assert {f.name: getattr(group, f.name) for f in dataclasses.fields(ProcessSettings)} == (
        expected
    )
    assert group.given == ()


def test_each_daemon_option_parses_with_its_kind(tmp_path: Path) -> None:
    texts = {
        "processes": "3",
        "threads": "4",
        "maximum-requests": "100",
        "graceful-timeout": "2",
        "shutdown-timeout": "1.5",
        "restart-interval": "60",
        "request-timeout": "30",
        "startup-timeout": "120",
        "python-home": sys.prefix,
        "python-path": f"{tmp_path}:{tmp_path / 'lib'}",
        "home": str(tmp_path),
        "user": pwd.getpwuid(os.getuid()).pw_name,
        "group": grp.getgrgid(os.getgid()).gr_name,
        "umask": "0007",
        "lang": "C.UTF-8",
        "locale": "C.UTF-8",
        "inactivity-timeout": "300",
        "queue-timeout": "45",
        "memory-limit": "500000000",
        "virtual-memory-limit": "2000000000",
    }
    assert set(texts) == set(GROUP_OPTIONS)
    words = " ".join(f"{k}={v}" for k, v in texts.items())
    [group] = read_site(write_site(tmp_path, f"WSGIDaemonProcess g {words}")).groups
    for directive, text in texts.items():
        item = GROUP_OPTIONS[directive]
        assert getattr(group, item.name) == item.option.kind.parse(text), directive
    assert set(group.given) == {e.name for e in GROUP_OPTIONS.values()}


@pytest.mark.parametrize(
    ("words", "message"),
    [
        ("threads=0", "WSGIDaemonProcess: threads='0': expected a positive whole number"),
        (
            "graceful-timeout=soon",
            "WSGIDaemonProcess: graceful-timeout='soon': expected a positive number of seconds",
        ),
        ("user=no-such-user", "WSGIDaemonProcess: user='no-such-user': no user"),
        ("home=relative", "WSGIDaemonProcess: home='relative': 'relative' is not an absolute"),
        ("python-home=/proc", "WSGIDaemonProcess: python-home='/proc': '/proc' has no bin/"),
        ("umask=9", "WSGIDaemonProcess: umask='9': '9' is not an octal"),
        ("deadlock-timeout=60", "WSGIDaemonProcess: option deadlock-timeout=: not supported"),
        ("nonsense=1", "WSGIDaemonProcess: option 'nonsense' is not supported (supported: "),
    ],
)
def test_a_bad_daemon_option_names_file_line_and_option(
    tmp_path: Path, words: str, message: str
) -> None:
    conf = write_site(tmp_path, f"WSGIDaemonProcess g {words}")
    with pytest.raises(ConfigFileError) as caught:
        read_site(conf)
    assert reason(caught).startswith(f"{conf}:1: {message}")
