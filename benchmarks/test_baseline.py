"""Unit tests for ``--baseline`` (``baseline.py``, and its use by run.py and
reload_under_load.py): the option, row names and order, the environment, the probe.

Nothing here starts a server; the probe tests start a Python that imports a fake
asyncwsgi. Run with: python -m pytest benchmarks/test_baseline.py
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import baseline
import pytest
import reload_under_load as rul
import run
from report import Measurement, ServerOutcome, before_after, render_table
from servers import SCENARIOS
from test_scenarios import WRK_OUT
from wrkparse import parse_wrk_output

REPO = Path(__file__).resolve().parent.parent


def fake_checkout(root: Path, version: str = "9.9", extra: str = "") -> Path:
    """A folder that looks like a checkout: ``asyncwsgi/__init__.py`` and ``__main__.py``."""
    package = root / "asyncwsgi"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text(f"__version__ = {version!r}\n{extra}")
    (package / "__main__.py").write_text("")
    return root


# ---------------------------------------------------------------- the option


def test_checkout_dir_wants_an_asyncwsgi_package(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with pytest.raises(argparse.ArgumentTypeError, match="git worktree add"):
        baseline.checkout_dir(str(tmp_path))
    fake_checkout(tmp_path / "before")
    monkeypatch.chdir(tmp_path)
    assert baseline.checkout_dir("before") == (tmp_path / "before").resolve()  # absolute
    assert baseline.checkout_dir(str(REPO)) == REPO


def test_run_parse_args_baseline(tmp_path: Path) -> None:
    before = fake_checkout(tmp_path / "before")
    assert run.parse_args([]).baseline is None
    args = run.parse_args(["--only", "asyncwsgi,granian", "--baseline", str(before)])
    assert args.baseline == before.resolve()
    with pytest.raises(SystemExit):
        run.parse_args(["--baseline", str(tmp_path / "missing")])
    with pytest.raises(SystemExit):  # no asyncwsgi row to compare
        run.parse_args(["--only", "granian,waitress", "--baseline", str(before)])


def test_reload_parse_args_baseline(tmp_path: Path) -> None:
    before = fake_checkout(tmp_path / "before")
    assert rul.parse_args([]).baseline is None
    args = rul.parse_args(["--scenario", "daemon", "--baseline", str(before)])
    assert args.baseline == before.resolve()
    with pytest.raises(SystemExit):
        rul.parse_args(["--only", "gunicorn-reload", "--baseline", str(before)])


# ---------------------------------------------------------------- rows and their order


def test_row_name_and_checkout_for(tmp_path: Path) -> None:
    assert baseline.row_name("asyncwsgi-noreload", True) == "asyncwsgi-noreload@baseline"
    assert baseline.row_name("asyncwsgi", False) == "asyncwsgi"
    assert baseline.checkout_for(True, True, tmp_path) == tmp_path
    assert baseline.checkout_for(True, False, tmp_path) == REPO == baseline.THIS_CHECKOUT
    assert baseline.checkout_for(False, False, tmp_path) is None  # a peer: as installed
    assert baseline.checkout_for(True, False, None) is None  # no --baseline: as before


def test_run_order_pairs_alternate_and_peers_run_once() -> None:
    names = ["a", "b", "peer", "c"]
    ours = {"a", "b", "c"}.__contains__
    assert baseline.run_order(names, ours) == [
        ("a", False),
        ("a", True),
        ("b", True),  # every other pair: the baseline first
        ("b", False),
        ("peer", False),
        ("c", False),
        ("c", True),
    ]
    # start: pairs already run (an earlier round) carry the alternation on
    assert baseline.run_order(["a"], ours, start=1) == [("a", True), ("a", False)]
    assert baseline.run_order(names, lambda _: False) == [(n, False) for n in names]


def test_table_order_puts_each_baseline_under_its_row() -> None:
    ours = {"a", "c"}.__contains__
    assert baseline.table_order(["a", "peer", "c"], ours) == [
        "a",
        "a@baseline",
        "peer",
        "c",
        "c@baseline",
    ]


def test_run_rows_of_a_scenario() -> None:
    by_name = SCENARIOS["site"].by_name()
    ours = [name for name, spec in by_name.items() if run.is_asyncwsgi(spec)]
    assert ours == ["asyncwsgi-site", "asyncwsgi"]
    spec = SCENARIOS["single"].by_name()["asyncwsgi-noreload"]
    twin = run.baseline_spec(spec)
    assert twin.name == "asyncwsgi-noreload@baseline"
    assert twin.argv is spec.argv and twin.min_processes == spec.min_processes
    assert twin.description.startswith(spec.description)


def test_reload_plan_runs_and_rows() -> None:
    specs = [rul.SERVERS_BY_NAME[n] for n in ("asyncwsgi", "gunicorn-reload")]
    plan = [(r, s.name, b) for r, s, b in rul.plan_runs(specs, 2, with_baseline=True)]
    assert plan == [
        (1, "asyncwsgi", False),
        (1, "asyncwsgi", True),
        (1, "gunicorn-reload", False),
        (2, "asyncwsgi", True),  # the next round's pair starts with the baseline
        (2, "asyncwsgi", False),
        (2, "gunicorn-reload", False),
    ]
    assert [s.name for _, s, _ in rul.plan_runs(specs, 1, with_baseline=False)] == [
        "asyncwsgi",
        "gunicorn-reload",
    ]
    assert rul.row_names(specs, True) == ["asyncwsgi", "asyncwsgi@baseline", "gunicorn-reload"]
    assert rul.row_names(specs, False) == ["asyncwsgi", "gunicorn-reload"]
    twin = rul.baseline_spec(rul.SERVERS_BY_NAME["asyncwsgi-daemon-hup"])
    assert twin.name == "asyncwsgi-daemon-hup@baseline" and twin.trigger == rul.SIGHUP


# ---------------------------------------------------------------- environment and probe


def test_pinned_env_puts_the_checkout_first(tmp_path: Path) -> None:
    env = {"PYTHONPATH": os.pathsep.join(["/apps", str(tmp_path), ""]), "X": "1"}
    pinned = baseline.pinned_env(env, tmp_path)
    assert pinned["PYTHONPATH"] == os.pathsep.join([str(tmp_path), "/apps"])
    assert pinned["X"] == "1" and env["PYTHONPATH"].startswith("/apps")  # a copy
    assert baseline.pinned_env({}, tmp_path)["PYTHONPATH"] == str(tmp_path)


def test_probe_problem(tmp_path: Path) -> None:
    home = tmp_path / "asyncwsgi"
    ok = baseline.Probe(
        "1.0", {"asyncwsgi": str(home / "__init__.py"), "asyncwsgi.cli": str(home / "cli.py")}
    )
    assert baseline.probe_problem(ok, tmp_path) is None
    assert ok.package == str(home) and ok.describe() == f"asyncwsgi 1.0 from {home}"
    elsewhere = baseline.Probe("1.0", {"asyncwsgi": "/work/main/asyncwsgi/__init__.py"})
    assert "asyncwsgi from /work/main/" in str(baseline.probe_problem(elsewhere, tmp_path))
    # A module the checkout lacks, filled in by the editable install's finder.
    mixed = baseline.Probe("1.0", {**ok.modules, "asyncwsgi.new": "/work/main/asyncwsgi/new.py"})
    assert "asyncwsgi.new from /work/main" in str(baseline.probe_problem(mixed, tmp_path))
    assert baseline.probe_problem(baseline.Probe("1.0", {}), tmp_path) is not None


def test_parse_probe() -> None:
    probe = baseline.parse_probe('noise\n{"version": "1.0", "modules": {"asyncwsgi": "/a"}}\n')
    assert probe == baseline.Probe("1.0", {"asyncwsgi": "/a"})
    with pytest.raises(ValueError):
        baseline.parse_probe('{"version": "1.0"}')


def test_verify_imports_from_the_checkout(tmp_path: Path) -> None:
    before = fake_checkout(tmp_path / "before", extra="from asyncwsgi import part\n")
    (before / "asyncwsgi" / "part.py").write_text("")
    env = baseline.pinned_env(dict(os.environ), before)
    probe = baseline.verify(sys.executable, env, tmp_path, before)
    assert probe.version == "9.9"
    assert set(probe.modules) == {"asyncwsgi", "asyncwsgi.part", "asyncwsgi.__main__"}


def test_verify_sees_that_the_working_directory_wins(tmp_path: Path) -> None:
    """Started in a checkout (run.py starts servers in this repository), its asyncwsgi is
    imported whatever PYTHONPATH says: sys.path[0] comes first."""
    before = fake_checkout(tmp_path / "before")
    other = fake_checkout(tmp_path / "other", version="1.0")
    env = baseline.pinned_env(dict(os.environ), before)
    with pytest.raises(RuntimeError, match="would not run from"):
        baseline.verify(sys.executable, env, other, before)


def test_verify_reports_a_checkout_that_does_not_import(tmp_path: Path) -> None:
    before = fake_checkout(tmp_path / "before", extra="raise ImportError('broken')\n")
    env = baseline.pinned_env(dict(os.environ), before)
    with pytest.raises(RuntimeError, match="ImportError: broken"):
        baseline.verify(sys.executable, env, tmp_path, before)


# ---------------------------------------------------------------- reports


def outcome(name: str, rps: str) -> ServerOutcome:
    out = ServerOutcome(name, "", "")
    out.measurements[50] = Measurement(
        50, result=parse_wrk_output(WRK_OUT.replace("10000.00", rps))
    )
    return out


def test_before_after_and_ratio_column() -> None:
    rows = [
        outcome("asyncwsgi", "10000.00"),
        outcome("asyncwsgi@baseline", "8000.00"),
        outcome("granian", "20000.00"),
    ]
    assert before_after(rows, [50, 1000]) == [
        "**Before/after `asyncwsgi`** (this checkout vs baseline): c=50 10,000 vs 8,000 "
        "req/s = 1.25x; c=1000 — vs — req/s = n/a (above 1.00x: this checkout served more)"
    ]
    lines = render_table(rows, [50], "asyncwsgi").splitlines()
    assert lines[3] == "| asyncwsgi@baseline | 8,000 | 8.00 | 0 | 1.25x |"
    assert before_after(rows[2:], [50]) == []


def test_baseline_notes_and_reload_lines(tmp_path: Path) -> None:
    order = [("asyncwsgi", False), ("asyncwsgi", True)]
    notes = run.baseline_notes(tmp_path, order, "asyncwsgi")
    assert f"from {tmp_path} (not a git checkout)" in notes[0]
    assert notes[1].startswith("**Run order:** `asyncwsgi`, `asyncwsgi@baseline`")
    assert rul.baseline_lines({}) == []
    lines = rul.baseline_lines({"baseline": "/tmp/before (git abc)", "current": "/r (git d)"})
    assert "/tmp/before (git abc)" in lines[0] and "/r (git d)" in lines[0]
