"""Unit tests for the benchmark scenarios: command lines, server sets, configs, checks.

Nothing here starts a server. Run with: python -m pytest benchmarks/test_scenarios.py
"""

from __future__ import annotations

import os
import runpy
import sys
import time
from pathlib import Path

import asyncwsgi_cmd
import pytest
from apache import modwsgi
from cpustat import ProcCpu, describe_processes, tree_members
from report import Measurement, ServerOutcome, render_table
from run import (
    APPS_DIR,
    choose_app_script,
    describe_body,
    expected_response_body,
    parse_args,
    pin_cpus,
)
from servers import IO_SLEEP_S, SCENARIOS, LaunchContext
from wrkparse import parse_wrk_output

WRK_OUT = """\
Running 3s test @ http://127.0.0.1:8000/
  2 threads and 50 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency     3.00ms    1.00ms  10.00ms   90.00%
    Req/Sec     5.00k   100.00     5.20k    70.00%
  Latency Distribution
     50%    3.00ms
     75%    3.50ms
     90%    4.00ms
     99%    8.00ms
  30000 requests in 3.00s, 3.00MB read
Requests/sec:  10000.00
Transfer/sec:      1.00MB
"""


def ctx(tmp_path: Path) -> LaunchContext:
    return LaunchContext("python", "127.0.0.1", 8123, Path("/app/hello.wsgi"), tmp_path, tmp_path)


# ---------------------------------------------------------------- asyncwsgi commands


def test_asyncwsgi_argv_per_setup() -> None:
    base = ["py", "-m", "asyncwsgi", "app.wsgi", "--bind", "127.0.0.1:80", "--threads", "8"]
    assert asyncwsgi_cmd.argv("app.wsgi", "127.0.0.1", 80, python="py") == [
        *base,
        "--no-access-log",
    ]
    assert asyncwsgi_cmd.argv("app.wsgi", "127.0.0.1", 80, "processes", python="py") == [
        *base,
        "--processes",
        "2",
        "--no-access-log",
    ]
    daemon = asyncwsgi_cmd.argv(
        "app.wsgi", "127.0.0.1", 80, "daemon", extra=("--script-reloading", "on"), python="py"
    )
    options = ["--mode", "daemon", "--processes", "2", "--no-access-log"]
    assert daemon == [*base, *options, "--script-reloading", "on"]
    assert asyncwsgi_cmd.argv("a", "h", 1)[0] == sys.executable
    # threads=None: no --threads, the server's own default.
    default = asyncwsgi_cmd.argv("app.wsgi", "127.0.0.1", 80, python="py", threads=None)
    assert default == [*base[:6], "--no-access-log"]
    many = asyncwsgi_cmd.argv("app.wsgi", "127.0.0.1", 80, python="py", threads=256)
    assert many[many.index("--threads") + 1] == "256"


def test_every_asyncwsgi_row_is_built_by_asyncwsgi_cmd(tmp_path: Path) -> None:
    c = ctx(tmp_path)
    expected = {
        "asyncwsgi": asyncwsgi_cmd.argv(c.app_script, c.host, c.port, python="python"),
        "asyncwsgi-processes": asyncwsgi_cmd.argv(
            c.app_script, c.host, c.port, "processes", python="python"
        ),
        "asyncwsgi-daemon": asyncwsgi_cmd.argv(
            c.app_script, c.host, c.port, "daemon", python="python"
        ),
        "asyncwsgi-site": asyncwsgi_cmd.site_argv(
            c.app_script, c.host, c.port, c.workdir, python="python"
        ),
        "asyncwsgi-default": asyncwsgi_cmd.argv(
            c.app_script, c.host, c.port, python="python", threads=None
        ),
    }
    embedded = {"asyncwsgi": "embedded", "asyncwsgi-site": "embedded"}
    embedded["asyncwsgi-default"] = "embedded"
    for scenario in SCENARIOS.values():
        spec = scenario.by_name()[scenario.baseline]
        assert spec.argv(c) == expected[scenario.baseline]
        setup = embedded.get(spec.name, spec.name.partition("-")[2])
        assert spec.min_processes == asyncwsgi_cmd.SETUPS[setup].min_processes


def test_site_config_is_one_asyncwsgi_reads(tmp_path: Path) -> None:
    from asyncwsgi.sites.directives import read_site

    app = tmp_path / "app" / "hello.wsgi"
    app.parent.mkdir()
    app.write_text("def application(environ, start_response): pass\n")
    argv = asyncwsgi_cmd.site_argv(app, "127.0.0.1", 8123, tmp_path, python="py")
    assert argv[:5] == ["py", "-m", "asyncwsgi", "--config", str(tmp_path / "site.conf")]
    site = read_site(str(tmp_path / "site.conf"))
    assert [str(address) for address, _ in site.listen] == ["127.0.0.1:8123"]
    # wrk's Host (127.0.0.1:PORT) names the second virtual host, which mounts the app at /.
    second = site.vhosts[1]
    assert second.aliases == ("127.0.0.1",)
    assert [(m.path, m.script) for m in second.mounts] == [("", str(app))]
    assert second.mounts[0].htaccess == str(app.parent / ".htaccess")


def test_reload_rows_use_asyncwsgi_cmd() -> None:
    import reload_under_load as rul

    script = Path("/tmp/x/reload_app.py")
    argv = rul._asyncwsgi("daemon")(script, 9000)
    assert argv == asyncwsgi_cmd.argv(
        script, rul.HOST, 9000, "daemon", extra=("--script-reloading", "on")
    )
    daemon = [rul.SERVERS_BY_NAME[n] for n in rul.SCENARIOS["daemon"]]
    assert {s.name for s in daemon if s.trigger == rul.SIGHUP} == {
        "asyncwsgi-daemon-hup",
        "gunicorn-hup",
        "uvicorn-hup",
    }
    assert all(s.min_processes >= 3 for s in daemon)
    # The default set is what it was before the daemon rows.
    assert rul.SCENARIOS["embedded"] == (
        "asyncwsgi",
        "gunicorn-reload",
        "uvicorn-reload",
        "modwsgi-embedded",
        "modwsgi-daemon",
    )
    assert set(rul.SCENARIOS["all"]) == set(rul.SERVERS_BY_NAME)
    gunicorn = rul._gunicorn(reload=False, workers=2)(script, 9000)
    assert "--reload" not in gunicorn and gunicorn[gunicorn.index("-w") + 1] == "2"
    uvicorn = rul._uvicorn(reload=False, workers=2)(script, 9000)
    assert "--reload" not in uvicorn and uvicorn[uvicorn.index("--workers") + 1] == "2"


def test_short_error() -> None:
    from reload_under_load import _short_error

    assert _short_error("boom") == "boom"
    assert _short_error("server exited:\n  trace\n\nasyncwsgi: error: x\n") == (
        "server exited: … asyncwsgi: error: x"
    )


# ---------------------------------------------------------------- scenarios and options


def test_scenarios_and_their_rows() -> None:
    assert list(SCENARIOS["single"].by_name())[:4] == [
        "asyncwsgi",
        "asyncwsgi-noreload",
        "asyncwsgi-affinity",
        "asyncwsgi-metrics",
    ]
    assert list(SCENARIOS["processes"].by_name()) == [
        "asyncwsgi-processes",
        "asyncwsgi-processes-affinity",
        "modwsgi-embedded",
        "gunicorn-sync-2w",
        "granian-2w",
    ]
    assert list(SCENARIOS["daemon"].by_name()) == [
        "asyncwsgi-daemon",
        "modwsgi-daemon",
        "gunicorn-gthread-2w",
    ]
    assert list(SCENARIOS["site"].by_name()) == [
        "asyncwsgi-site",
        "asyncwsgi",
        "gunicorn-sync",
        "uvicorn-a2wsgi",
    ]
    assert list(SCENARIOS["io"].by_name()) == [
        "asyncwsgi-default",
        "asyncwsgi-256t",
        "asyncwsgi-default-affinity",
        "granian",
        "gunicorn-gthread-256t",
    ]
    assert list(SCENARIOS["flask"].by_name()) == [
        "asyncwsgi-default",
        "asyncwsgi-default-affinity",
        "granian",
        "gunicorn-gthread",
    ]
    assert "x 40 threads" in SCENARIOS["processes"].by_name(40)["modwsgi-embedded"].description
    for scenario in SCENARIOS.values():
        assert scenario.baseline in scenario.by_name()
        if scenario.app is not None:
            assert (APPS_DIR / scenario.app).is_file()


def test_granian_rows(tmp_path: Path) -> None:
    c = ctx(tmp_path)
    single = SCENARIOS["single"].by_name()["granian"]
    argv = single.argv(c)
    assert argv[argv.index("--workers") + 1] == "1" and single.min_processes == 1
    two = SCENARIOS["processes"].by_name()["granian-2w"]
    argv = two.argv(c)
    assert argv[:5] == ["python", "-m", "granian", "--interface", "wsgi"]
    assert argv[argv.index("--workers") + 1] == "2"
    assert argv[-1] == "hello_app:application"
    assert two.min_processes == 3  # the main process + 2 workers
    # The io and flask scenarios run the same granian as single.
    assert SCENARIOS["io"].by_name()["granian"].argv(c) == single.argv(c)
    assert SCENARIOS["flask"].by_name()["granian"].argv(c) == single.argv(c)


def test_io_scenario_rows(tmp_path: Path) -> None:
    c = ctx(tmp_path)
    rows = SCENARIOS["io"].by_name()
    default = rows["asyncwsgi-default"].argv(c)
    assert "--threads" not in default and "--no-access-log" in default
    many = rows["asyncwsgi-256t"].argv(c)
    assert many.count("--threads") == 1 and many[many.index("--threads") + 1] == "256"
    gunicorn = rows["gunicorn-gthread-256t"].argv(c)
    assert gunicorn[gunicorn.index("--threads") + 1] == "256"
    assert gunicorn[gunicorn.index("--workers") + 1] == "1"
    assert gunicorn[gunicorn.index("--worker-class") + 1] == "gthread"


def test_flask_scenario_rows(tmp_path: Path) -> None:
    rows = SCENARIOS["flask"].by_name()
    assert all("flask" in spec.requires for spec in rows.values())
    assert "--threads" not in rows["asyncwsgi-default"].argv(ctx(tmp_path))
    gunicorn = rows["gunicorn-gthread"].argv(ctx(tmp_path))
    assert gunicorn[gunicorn.index("--threads") + 1] == "8"


def test_scenario_apps_connections_and_titles() -> None:
    io, flask = SCENARIOS["io"], SCENARIOS["flask"]
    assert (io.app, io.connections, io.results_prefix) == ("sleep_app.py", (256,), "io")
    assert (flask.app, flask.connections, flask.results_prefix) == ("flask_app.py", (50,), "flask")
    assert io.app_wait_s == IO_SLEEP_S and flask.app_wait_s is None
    assert SCENARIOS["single"].app is None and SCENARIOS["single"].connections == (50, 1000)
    assert io.title.startswith("I/O-bound") and "Flask" in flask.title
    assert choose_app_script("sleep_app.py") == APPS_DIR / "sleep_app.py"
    assert choose_app_script().name == "hello.wsgi"


def test_sleep_app_sleeps_what_the_scenario_says() -> None:
    app = runpy.run_path(str(APPS_DIR / "sleep_app.py"))
    assert app["SLEEP_S"] == IO_SLEEP_S
    started = time.monotonic()
    body = expected_response_body(APPS_DIR / "sleep_app.py")
    assert time.monotonic() - started >= IO_SLEEP_S
    assert body == app["BODY"]


def test_flask_app_page_and_database(tmp_path: Path) -> None:
    pytest.importorskip("flask")
    body = expected_response_body(APPS_DIR / "flask_app.py", tmp_path)
    assert os.environ.get("ASYNCWSGI_BENCH_TMP") != str(tmp_path)  # put back
    (folder,) = tmp_path.iterdir()  # the app's database, in the run's folder
    assert (folder / "items.sqlite3").is_file()
    page = body.decode()
    assert page.count("<tr class=") == 20
    assert "<title>Items 41-60 of 100</title>" in page
    assert "Item &lt;041&gt; &amp; co" in page  # autoescaped
    # The same page every time: the servers' answers are checked byte-for-byte.
    assert expected_response_body(APPS_DIR / "flask_app.py", tmp_path) == body


def test_describe_body() -> None:
    assert describe_body(b"Hello, world!\n") == "response body b'Hello, world!\\n'"
    assert describe_body(b"x" * 100).startswith("response body of 100 bytes, starting b'xxx")


def test_parse_args_scenario_and_only() -> None:
    args = parse_args([])
    assert args.scenario == "single" and args.only is None
    assert args.connections == [50, 1000]
    assert parse_args(["--scenario", "io"]).connections == [256]
    assert parse_args(["--scenario", "flask"]).connections == [50]
    assert parse_args(["--scenario", "io", "--connections", "64,512"]).connections == [64, 512]
    args = parse_args(["--scenario", "processes", "--only", "asyncwsgi-processes,granian-2w"])
    assert args.only == ["asyncwsgi-processes", "granian-2w"]
    args = parse_args(["--scenario", "daemon", "--only", "modwsgi-daemon,gunicorn-gthread-2w"])
    assert args.only == ["modwsgi-daemon", "gunicorn-gthread-2w"]
    with pytest.raises(SystemExit):
        parse_args(["--scenario", "daemon", "--only", "granian"])
    with pytest.raises(SystemExit):
        parse_args(["--modwsgi-threads", "0"])


def test_pin_cpus(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(os, "sched_getaffinity", lambda _pid: {0, 1}, raising=False)
    assert pin_cpus() == (frozenset({0}), frozenset({1}))
    assert pin_cpus(2) == (frozenset({0}), frozenset({1}))  # wrk keeps one
    monkeypatch.setattr(os, "sched_getaffinity", lambda _pid: {0, 1, 2, 3}, raising=False)
    assert pin_cpus(2) == (frozenset({0, 1}), frozenset({2, 3}))


def test_table_ratios_against_the_scenario_baseline() -> None:
    ours = ServerOutcome("asyncwsgi-daemon", "", "")
    ours.measurements[50] = Measurement(50, result=parse_wrk_output(WRK_OUT))
    peer = ServerOutcome("modwsgi-daemon", "", "")
    peer.measurements[50] = Measurement(
        50, result=parse_wrk_output(WRK_OUT.replace("10000.00", "4000.00"))
    )
    lines = render_table([ours, peer], [50], "asyncwsgi-daemon").splitlines()
    assert lines[0].endswith("| c=50 asyncwsgi/peer |")
    assert lines[3] == "| modwsgi-daemon | 4,000 | 8.00 | 0 | 2.50x |"
    assert render_table([ours, peer], [50]).splitlines()[3].endswith("| n/a |")


# ---------------------------------------------------------------- process checks


def proc(pid: int, ppid: int, pgrp: int, state: str = "S") -> ProcCpu:
    return ProcCpu(pid, pgrp, "python", 0, ppid, state)


def test_tree_members() -> None:
    procs = {
        p.pid: p
        for p in (
            proc(1, 0, 1),
            proc(100, 1, 100),  # the server, a session leader
            proc(101, 100, 100),  # a worker
            proc(102, 101, 102),  # a grandchild in its own group: still the server's
            proc(103, 100, 100, "Z"),  # a zombie
            proc(104, 1, 100),  # reparented to init, still in the group
            proc(200, 1, 200),  # someone else
        )
    }
    assert tree_members(procs, 100) == [100, 101, 102, 104]
    assert tree_members(procs, 999) == []


def test_describe_processes() -> None:
    found = [(1, "asyncwsgi: main"), (2, "asyncwsgi: daemon"), (3, "asyncwsgi: daemon")]
    assert describe_processes(found) == "3: `asyncwsgi: main`, `asyncwsgi: daemon` x2"


# ---------------------------------------------------------------- Apache config


def fake_install() -> modwsgi.ApacheInstall:
    return modwsgi.ApacheInstall(
        httpd="/usr/sbin/apache2",
        modules_dir=Path("/usr/lib/apache2/modules"),
        module_config=(
            'LoadModule wsgi_module "/venv/mod_wsgi.so"',
            'WSGIPythonHome "/venv"',
        ),
        stdlib=Path("/py/lib/python3.11"),
        platstdlib=Path("/py/lib/python3.11"),
        site_packages=Path("/venv/lib/python3.11/site-packages"),
        python_version="3.11",
    )


@pytest.mark.parametrize("mode", modwsgi.MODES)
def test_modwsgi_config_for_the_scenarios(mode: str) -> None:
    conf = modwsgi.render_config(
        install=fake_install(),
        server_root=Path("/srv/root"),
        port=8080,
        script=Path("/srv/root/app/hello.wsgi"),
        mode=mode,
        user=("www-data", "www-data"),
        threads_per_child=25,
        daemon_threads=8,
        error_log="/dev/stderr",
    ).splitlines()
    for line in (
        'LoadModule mpm_event_module "/usr/lib/apache2/modules/mod_mpm_event.so"',
        "StartServers 2",
        "ServerLimit 2",
        "ThreadsPerChild 25",
        "MaxRequestWorkers 50",
        "WSGIApplicationGroup %{GLOBAL}",
        "WSGIScriptReloading On",
        'ErrorLog "/dev/stderr"',
        'WSGIScriptAlias / "/srv/root/app/hello.wsgi"',
    ):
        assert line in conf
    daemon_lines = [line for line in conf if line.startswith("WSGIDaemonProcess")]
    if mode == "daemon":
        assert daemon_lines == [
            "WSGIDaemonProcess bench processes=2 threads=8 display-name=%{GROUP}"
        ]
        assert "WSGIProcessGroup bench" in conf
    else:
        assert daemon_lines == []
        assert not any(line.startswith("WSGIProcessGroup") for line in conf)
