"""Two versions of asyncwsgi in one run: this checkout and a baseline checkout (``--baseline``).

``run.py --baseline DIR`` and ``reload_under_load.py --baseline DIR`` run every asyncwsgi
row twice, once with this checkout's code (the row's usual name) and once with DIR's
(the name plus ``@baseline``): same interpreter, same command line (built by this
checkout's ``asyncwsgi_cmd.py``), same app, one right after the other. DIR is another
checkout of this repository, e.g. ``git worktree add /tmp/before HEAD~3``. Peers run once.

The rule: a row runs the code it is named after, or it does not run. Where Python finds
``asyncwsgi`` is decided by ``sys.path`` and ``sys.meta_path``:

- the virtualenv has asyncwsgi installed in editable mode; setuptools' ``__editable__``
  finder (it maps ``asyncwsgi`` to this checkout) is *appended* to ``sys.meta_path``, so
  any ``sys.path`` entry that holds an ``asyncwsgi`` package wins over it;
- ``sys.path[0]`` is the working directory for ``python -m asyncwsgi`` and for
  asyncwsgi's own ``python -c`` / ``python -m`` children (server copies, daemon
  processes), and it comes *before* PYTHONPATH. ``run.py`` starts servers in this
  repository, so PYTHONPATH alone would quietly run this checkout's code twice.

So a row pinned to a checkout (both rows of a pair, when ``--baseline`` is given) gets
that checkout first on PYTHONPATH and, where the benchmark would start it in this
repository, the checkout as working directory; its children inherit both. Before the row
starts, :func:`verify` runs the same interpreter with the same environment and working
directory, imports asyncwsgi and lists the file of every asyncwsgi module it loaded
(and of ``asyncwsgi.__main__``, what ``-m`` runs); a row any of whose files is not under
its checkout is reported as not run. That also catches the editable finder filling in a
module the checkout lacks, since the package and its submodules are all checked.

Row names, run order (over ``--rounds`` too) and the environment are pure functions,
tested in ``test_baseline.py``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

THIS_CHECKOUT = Path(__file__).resolve().parent.parent  # the code rows without the suffix run
SUFFIX = "@baseline"  # appended to the name of a row that runs the baseline's code
PACKAGE = "asyncwsgi"
PROBE_TIMEOUT_S = 30.0

# Run in the row's interpreter, environment and working directory: what would it import?
PROBE_CODE = """\
import importlib.util, json, sys
import asyncwsgi
main = importlib.util.find_spec("asyncwsgi.__main__")
modules = {
    name: getattr(module, "__file__", None) or ""
    for name, module in sys.modules.items()
    if name == "asyncwsgi" or name.startswith("asyncwsgi.")
}
modules["asyncwsgi.__main__"] = (main.origin if main else None) or ""
print(json.dumps({"version": getattr(asyncwsgi, "__version__", "?"), "modules": modules}))
"""


# --------------------------------------------------------------------------- the checkout


def checkout_dir(text: str) -> Path:
    """argparse type of ``--baseline``: a folder with an ``asyncwsgi`` package, absolute."""
    path = Path(text).expanduser().resolve()
    if not (path / PACKAGE / "__init__.py").is_file():
        raise argparse.ArgumentTypeError(
            f"{text} is not a checkout of this repository (no {PACKAGE}/__init__.py); "
            "make one with: git worktree add /tmp/before COMMIT"
        )
    return path


def describe(path: Path) -> str | None:
    """``git -C PATH describe --always --dirty``, or None outside git."""
    try:
        proc = subprocess.run(
            ["git", "-C", str(path), "describe", "--always", "--dirty"],
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    if proc.returncode != 0:
        return None
    return proc.stdout.strip() or None


def label(path: Path) -> str:
    """``/tmp/before (git 2b5875e)``, for reports."""
    described = describe(path)
    return f"{path} (git {described})" if described else f"{path} (not a git checkout)"


# --------------------------------------------------------------------------- rows


def row_name(name: str, from_baseline: bool) -> str:
    return name + SUFFIX if from_baseline else name


def checkout_for(ours: bool, from_baseline: bool, baseline_dir: Path | None) -> Path | None:
    """The checkout whose asyncwsgi a row must run: None (as installed) for a peer (not
    ``ours``) and for every row without ``--baseline``; else the baseline's or this one."""
    if baseline_dir is None or not ours:
        return None
    return baseline_dir if from_baseline else THIS_CHECKOUT


def run_order(
    names: Sequence[str], ours: Callable[[str], bool], start: int = 0
) -> list[tuple[str, bool]]:
    """``(name, from_baseline)`` in the order to run them.

    Each of our rows runs twice, back to back, and every other pair runs the baseline
    first (current, baseline; baseline, current; ...), so a machine that speeds up or
    slows down during the run does not favour one side. ``start``: pairs already run
    (earlier rounds), to carry the alternation on. Peers run once, where they were.
    """
    order: list[tuple[str, bool]] = []
    pairs = start
    for name in names:
        if not ours(name):
            order.append((name, False))
            continue
        baseline_first = pairs % 2 == 1
        order += [(name, baseline_first), (name, not baseline_first)]
        pairs += 1
    return order


def plan_rounds(
    names: Sequence[str], ours: Callable[[str], bool], rounds: int
) -> list[tuple[int, str, bool]]:
    """``(round, name, from_baseline)`` in the order to run them (``run.py --rounds``).

    Each round runs every row once, in ``run_order``; the rounds follow one another, so a
    machine that drifts over the run moves every row alike rather than the rows run last.
    Within a round every other pair runs the baseline first, and from one round to the
    next every pair swaps sides. (``run_order``'s ``start`` is the number of earlier rounds
    here, not of earlier pairs: with an even number of pairs, counting pairs would give
    every pair the same order in every round. With an odd number both are the same.)
    """
    return [
        (number, name, from_baseline)
        for number in range(1, rounds + 1)
        for name, from_baseline in run_order(names, ours, number - 1)
    ]


def table_order(names: Sequence[str], ours: Callable[[str], bool]) -> list[str]:
    """Row names as the report shows them: each of our rows, its baseline right below."""
    rows: list[str] = []
    for name in names:
        rows.append(name)
        if ours(name):
            rows.append(row_name(name, True))
    return rows


# --------------------------------------------------------------------------- environment


def pinned_env(env: Mapping[str, str], checkout: Path) -> dict[str, str]:
    """``env`` with ``checkout`` first on PYTHONPATH (a copy; ``env`` is not changed)."""
    rest = [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p and p != str(checkout)]
    return {**env, "PYTHONPATH": os.pathsep.join([str(checkout), *rest])}


@dataclass(frozen=True)
class Probe:
    """What a row's interpreter imports as asyncwsgi."""

    version: str
    modules: dict[str, str]  # module name -> file, every asyncwsgi module loaded

    @property
    def package(self) -> str:
        """asyncwsgi's folder."""
        return str(Path(self.modules.get(PACKAGE, "")).parent)

    def describe(self) -> str:
        return f"{PACKAGE} {self.version} from {self.package}"


def parse_probe(stdout: str) -> Probe:
    """The probe's last output line; ValueError if it is not what the probe prints."""
    lines = stdout.strip().splitlines()
    data = json.loads(lines[-1]) if lines else None
    if not isinstance(data, dict) or not isinstance(data.get("modules"), dict):
        raise ValueError(f"unexpected probe output: {stdout.strip()[-200:]!r}")
    return Probe(str(data.get("version")), {str(k): str(v) for k, v in data["modules"].items()})


def probe_problem(probe: Probe, checkout: Path) -> str | None:
    """None if every asyncwsgi module the probe loaded is under ``checkout``, else why not."""
    home = (checkout / PACKAGE).resolve()
    if PACKAGE not in probe.modules:
        return f"{PACKAGE} was not imported"
    stray = [
        f"{name} from {file or '(no file)'}"
        for name, file in sorted(probe.modules.items())
        if not file or not Path(file).resolve().is_relative_to(home)
    ]
    if stray:
        shown = ", ".join(stray[:3]) + (f" and {len(stray) - 3} more" if len(stray) > 3 else "")
        return f"{PACKAGE} would not run from {home}: {shown}"
    return None


def verify(python: str, env: Mapping[str, str], cwd: Path, checkout: Path) -> Probe:
    """Import asyncwsgi as the row will (interpreter, environment, working directory) and
    check that all of it comes from ``checkout``. Raises RuntimeError if not."""
    try:
        proc = subprocess.run(
            [python, "-c", PROBE_CODE],
            cwd=cwd,
            env=dict(env),
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=PROBE_TIMEOUT_S,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise RuntimeError(f"could not probe which {PACKAGE} runs: {exc}") from exc
    if proc.returncode != 0:
        tail = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        raise RuntimeError(f"importing {PACKAGE} failed (exit {proc.returncode}): {tail}")
    try:
        probe = parse_probe(proc.stdout)
    except ValueError as exc:
        raise RuntimeError(str(exc)) from exc
    problem = probe_problem(probe, checkout)
    if problem is not None:
        raise RuntimeError(problem)
    return probe
