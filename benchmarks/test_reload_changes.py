"""Unit tests for ``reload_under_load.py --change helper|broken`` (no servers started).

Run with: python -m pytest benchmarks/test_reload_changes.py
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import asyncwsgi_cmd
import pytest
import reload_under_load as rul
from reload_under_load import (
    BROKEN_LINE,
    HELPER_NAME,
    HELPER_TEMPLATE,
    Response,
    broken_log_line,
    change_steps,
    change_title,
    compute_metrics,
    file_suffix,
    helper_text,
    parse_args,
    render_markdown,
    write_file,
    write_helper,
    write_initial_app,
)

# Runs the copied app as asyncwsgi loads it (by path, from another folder) and prints
# its body, or the import error.
CALL_APP = """\
import runpy, sys
try:
    ns = runpy.run_path(sys.argv[1])
except Exception as exc:
    print(f"{type(exc).__name__}: {exc}")
else:
    print(b"".join(ns["application"]({}, lambda status, headers: None)).decode())
"""


def call_app(app: Path) -> str:
    done = subprocess.run(
        [sys.executable, "-c", CALL_APP, str(app)],
        cwd=os.path.dirname(sys.executable),
        capture_output=True,
        text=True,
        timeout=30,
    )
    return done.stdout.strip()


# ---------------------------------------------------------------- the helper's text


def test_helper_text_versions_and_broken() -> None:
    template = HELPER_TEMPLATE.read_text()
    one = helper_text(template, 1)
    two = helper_text(template, 2)
    broken = helper_text(template, None)
    assert "\nVERSION = 1\n" in one
    assert "\nVERSION = 2\n" in two and "VERSION = 1\n" not in two
    assert f"\n{BROKEN_LINE}\n" in broken and "\nVERSION =" not in broken
    # Only that line changes (the docstring, which names both versions, stays).
    assert changed_lines(one, two) == [("VERSION = 1", "VERSION = 2")]
    assert changed_lines(one, broken) == [("VERSION = 1", BROKEN_LINE)]
    assert one == template


def changed_lines(a: str, b: str) -> list[tuple[str, str]]:
    lines_a, lines_b = a.splitlines(), b.splitlines()
    assert len(lines_a) == len(lines_b)
    return [(x, y) for x, y in zip(lines_a, lines_b, strict=True) if x != y]


def test_helper_text_needs_the_version_line() -> None:
    with pytest.raises(ValueError):
        helper_text('"""no version here"""\n', 2)
    with pytest.raises(ValueError):
        helper_text("VERSION = 11\n", 2)


# ---------------------------------------------------------------- files on disk


def test_initial_files_per_change(tmp_path: Path) -> None:
    script_dir, helper_dir = tmp_path / "script", tmp_path / "helper"
    script_dir.mkdir()
    helper_dir.mkdir()
    app = write_initial_app(script_dir)
    assert app == script_dir / "reload_app.py"
    assert sorted(p.name for p in script_dir.iterdir()) == ["reload_app.py"]
    assert app.read_text() == rul.APP_TEMPLATE.read_text()

    app = write_initial_app(helper_dir, "broken")
    assert sorted(p.name for p in helper_dir.iterdir()) == ["reload_app.py", HELPER_NAME]
    assert app.read_text() == rul.HELPER_APP_TEMPLATE.read_text()
    assert (helper_dir / HELPER_NAME).read_text() == HELPER_TEMPLATE.read_text()
    assert (app.stat().st_mode & 0o777) == 0o644
    assert ((helper_dir / HELPER_NAME).stat().st_mode & 0o777) == 0o644


def test_the_helper_app_finds_its_helper_when_loaded_by_path(tmp_path: Path) -> None:
    app = write_initial_app(tmp_path, "helper")
    assert call_app(app) == "version=1"
    write_helper(tmp_path / HELPER_NAME, None, "replace")
    assert call_app(app) == "RuntimeError: broken deploy"
    write_helper(tmp_path / HELPER_NAME, 2, "inplace")
    assert call_app(app) == "version=2"
    assert (tmp_path / "reload_app.py").read_text() == rul.HELPER_APP_TEMPLATE.read_text()


@pytest.mark.parametrize("mode", ["replace", "inplace"])
def test_write_file_bumps_the_mtime(tmp_path: Path, mode: str) -> None:
    path = tmp_path / "f.py"
    path.write_text("old\n")
    before = path.stat()
    t0 = time.monotonic()
    t_change, took = write_file(path, "new\n", mode)
    after = path.stat()
    assert path.read_text() == "new\n"
    assert t0 <= t_change <= time.monotonic()
    assert 0 <= took < 5
    assert after.st_mtime_ns >= before.st_mtime_ns + 1_000_000_000
    assert (after.st_ino == before.st_ino) == (mode == "inplace")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["f.py"]  # no temp file left


def test_write_file_rejects_an_unknown_mode(tmp_path: Path) -> None:
    path = tmp_path / "f.py"
    path.write_text("old\n")
    with pytest.raises(ValueError):
        write_file(path, "new\n", "append")


def test_change_steps(tmp_path: Path) -> None:
    write_initial_app(tmp_path, "broken")
    helper = tmp_path / HELPER_NAME
    script_text = (tmp_path / "reload_app.py").read_text()
    steps = change_steps("broken", tmp_path, "replace")
    assert len(steps) == 2
    mtime = helper.stat().st_mtime_ns
    steps[0]()
    assert BROKEN_LINE in helper.read_text()
    assert helper.stat().st_mtime_ns >= mtime + 1_000_000_000
    steps[1]()
    assert "\nVERSION = 2\n" in helper.read_text()
    assert (tmp_path / "reload_app.py").read_text() == script_text

    assert len(change_steps("helper", tmp_path, "inplace")) == 1
    with pytest.raises(ValueError):
        change_steps("config", tmp_path, "replace")


def test_change_steps_script(tmp_path: Path) -> None:
    app = write_initial_app(tmp_path)
    (step,) = change_steps("script", tmp_path, "inplace")
    step()
    assert "\nVERSION = 2\n" in app.read_text()


# ---------------------------------------------------------------- load runners


@pytest.mark.parametrize("client", ["asyncio", "threads"])
def test_runners_space_the_steps(client: str) -> None:
    # Nothing listens on the port: every request fails, which is all this needs.
    port = rul.free_port()
    made: list[float] = []

    def step() -> tuple[float, float]:
        made.append(time.monotonic())
        return made[-1], 0.001

    load = rul.CLIENTS[client](port, 1, 0.1, 0.1, [step, step], 0.2)
    assert load.t_changes == made
    assert load.t_change == made[-1]
    slack = 0.005  # asyncio.sleep may end up to the clock's resolution early
    assert made[0] - load.t_start >= 0.1 - slack
    assert made[1] - made[0] >= 0.2 - slack
    assert load.t_end - made[1] >= 0.1 - slack
    assert load.write_s == 0.001
    assert all(not e.ok for e in load.events)


# ---------------------------------------------------------------- metrics

BROKEN_AT, FIX_AT = 10.0, 13.0
BROKEN_EVENTS = [
    Response(9.9, 0, 1),
    Response(10.5, 0, None, "connect: ECONNREFUSED"),  # while broken
    Response(12.9, 1, None, "HTTP 500"),  # while broken
    Response(13.0, 0, None, "connect: ECONNREFUSED"),  # at the fix: after it
    Response(13.05, 1, 1),  # old code after the fix
    Response(13.2, 0, 2),
    Response(13.3, 1, 2),
]


def test_metrics_split_the_broken_period() -> None:
    m = compute_metrics(BROKEN_EVENTS, 9.8, FIX_AT, 14.0, t_broken=BROKEN_AT)
    assert m.failed == 3
    assert m.failed_while_broken == 2
    assert m.switch_over_ms == pytest.approx(200.0)
    assert m.old_after_change == 1
    assert m.new_before_change == 0
    # The whole run counts: the gap from 9.9 to 13.05 began 3.1 s before the fix.
    assert m.longest_gap_ms == pytest.approx(3150.0)
    assert m.longest_gap_at_ms == pytest.approx(-3100.0)


def test_metrics_without_a_broken_period() -> None:
    m = compute_metrics(BROKEN_EVENTS, 9.8, FIX_AT, 14.0)
    assert m.failed_while_broken is None
    assert m.failed == 3


# ---------------------------------------------------------------- servers and files


def test_change_picks_the_scenario() -> None:
    assert parse_args([]).scenario == "embedded"
    for change in ("helper", "broken"):
        args = parse_args(["--change", change])
        assert args.scenario == "changes"
        assert [s.name for s in args.servers] == [
            "asyncwsgi-changes",
            "asyncwsgi-daemon-changes",
            "gunicorn-reload",
            "uvicorn-reload",
            "granian-reload",
        ]
    args = parse_args(["--change", "broken", "--scenario", "daemon"])
    assert args.scenario == "daemon"
    args = parse_args(["--change", "helper", "--only", "granian-reload,asyncwsgi"])
    assert [s.name for s in args.servers] == ["granian-reload", "asyncwsgi"]
    assert parse_args(["--change", "broken"]).broken_for == 3.0
    assert parse_args(["--change", "broken", "--broken-for", "0.5"]).broken_for == 0.5
    with pytest.raises(SystemExit):
        parse_args(["--change", "broken", "--broken-for", "0"])
    with pytest.raises(SystemExit):
        parse_args(["--change", "config"])


def test_file_suffix() -> None:
    assert file_suffix("script", "embedded", False) == ""
    assert file_suffix("script", "daemon", False) == "-daemon"
    assert file_suffix("script", "daemon", True) == ""
    assert file_suffix("helper", "changes", False) == "-helper"
    assert file_suffix("broken", "changes", False) == "-broken"
    assert file_suffix("broken", "all", False) == "-broken-all"
    assert file_suffix("helper", "embedded", True) == "-helper"


def test_asyncwsgi_change_rows() -> None:
    script = Path("/srv/x/reload_app.py")
    embedded = rul.SERVERS_BY_NAME["asyncwsgi-changes"]
    daemon = rul.SERVERS_BY_NAME["asyncwsgi-daemon-changes"]
    assert rul._asyncwsgi("changes")(script, 9000) == asyncwsgi_cmd.argv(
        script, rul.HOST, 9000, "changes", extra=("--script-reloading", "on")
    )
    assert "--reload-on-changes" in asyncwsgi_cmd.argv(script, rul.HOST, 9000, "changes")
    daemon_argv = asyncwsgi_cmd.argv(script, rul.HOST, 9000, "daemon-changes")
    assert "--reload-on-changes" in daemon_argv
    assert daemon_argv[daemon_argv.index("--mode") + 1] == "daemon"
    assert daemon_argv[daemon_argv.index("--processes") + 1] == "2"
    assert embedded.min_processes == 2  # the supervisor + 1 copy
    assert daemon.min_processes == 3  # the main process + 2 daemon processes
    assert rul.is_asyncwsgi(embedded) and rul.is_asyncwsgi(daemon)


def test_granian_row() -> None:
    script = Path("/srv/x/reload_app.py")
    argv = rul._granian_reload(script, 9000)
    assert argv[:3] == [sys.executable, "-m", "granian"]
    assert argv[-1] == "reload_app:application"
    assert argv[argv.index("--interface") + 1] == "wsgi"
    assert argv[argv.index("--reload-paths") + 1] == "/srv/x"
    assert argv[argv.index("--working-dir") + 1] == "/srv/x"
    assert argv[argv.index("--workers") + 1] == "1"
    assert argv[argv.index("--port") + 1] == "9000"
    assert "--reload" in argv and "--reload-ignore-worker-failure" in argv
    assert rul.SERVERS_BY_NAME["granian-reload"].requires == ("granian",)


# ---------------------------------------------------------------- report


META = {
    "date": "2026-01-01 00:00",
    "machine": "test",
    "clients": 16,
    "client": "asyncio",
    "before_s": 2.0,
    "after_s": 2.0,
    "write": "temp file + os.replace",
}


def test_titles() -> None:
    assert change_title(META) == "Reload under load"
    assert change_title({**META, "change": "helper"}) == "Reload under load, helper module edited"
    broken = {**META, "change": "broken", "broken_for_s": 3.0}
    assert change_title(broken) == "Reload under load, broken deploy, then fixed after 3 s"


def test_markdown_for_a_broken_deploy() -> None:
    meta = {**META, "change": "broken", "broken_for_s": 3.0, "process_start_ms": 150.0}
    metrics = compute_metrics(BROKEN_EVENTS, 9.8, FIX_AT, 14.0, t_broken=BROKEN_AT)
    ran = {
        "name": "x",
        "description": "a server",
        "client_cpu_pct": 10.0,
        "metrics": metrics.__dict__,
        "reload_log": [
            "[2026-01-01 00:00:00,000] [1] [INFO] group: '/tmp/r/reload_helper.py' changed; "
            "replacing 1 process(es) one at a time (generation 2)",
            "[2026-01-01 00:00:00,100] [1] [ERROR] group: process 2 could not load the "
            "application; keeping generation 1 serving (degraded)",
        ],
    }
    text = render_markdown([ran, {"name": "y", "error": "not installed"}], meta)
    assert text.startswith("## Reload under load, broken deploy, then fixed after 3 s — ")
    assert "replaced by one that raises at import (temp file + os.replace), 3 s later " in text
    header = (
        "| server | responses | req/s | failed | failed while broken | longest gap (ms) "
        "| gap began (ms) | switch-over (ms) | old code after change | other CPU load (cores) |"
    )
    assert header in text
    assert "| x | 4 | 1 | 3 | 2 | 3,150 | -3,100 | 200 | 1 | ? |" in text
    assert "| y | not run | | | | | | | | |" in text
    assert "logged `group: 'reload_helper.py' changed; replacing" in text
    assert "on the broken helper `group: process 2 could not load the application;" in text
    assert "0 failed and no gap over 20 ms, the broken period included" in text
    assert "150 ms on this machine" in text


def test_markdown_for_a_helper_edit() -> None:
    meta = {**META, "change": "helper"}
    metrics = compute_metrics(BROKEN_EVENTS, 9.8, FIX_AT, 14.0)
    ran = {"name": "x", "client_cpu_pct": 10.0, "metrics": metrics.__dict__}
    text = render_markdown([ran], meta)
    assert text.startswith("## Reload under load, helper module edited — ")
    assert "`reload_helper.py` rewritten to `VERSION = 2`" in text
    assert "failed while broken" not in text
    assert "| x | 4 | 1 | 3 | 3,150 | -3,100 | 200 | 1 | ? |" in text
    assert "relative to the helper rewrite" in text


def test_broken_log_line() -> None:
    assert broken_log_line([]) is None
    assert broken_log_line(["Worker reloading: /tmp/a/reload_helper.py modified"]) is None
    gunicorn = [
        "[2026] [1] [INFO] Worker reloading: /tmp/a/reload_helper.py modified",
        "RuntimeError: broken deploy",
        "[2026] [1] [ERROR] Reason: Worker failed to boot.",
    ]
    assert broken_log_line(gunicorn) == "Reason: Worker failed to boot."
