"""``python -m asyncwsgi dump``: each process of a group writes its threads to a file the
process that started it reads (a signal carries no data back).

Rule: imports nothing of the package but this package's ``child``. The folder is the
starter's own (mode 0700; owned by the processes' user when they run as another), one
file per process, named by its pid, written whole and renamed into place.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import tempfile
import time

from asyncwsgi.processes.child import Child

DUMP_SIGNAL = signal.SIGURG  # ignored by default: harmless to a process that has no handler
WAIT_S = 3.0


def make_dump_dir(uid: int = -1, gid: int = -1) -> str:
    folder = tempfile.mkdtemp(prefix="asyncwsgi-dump-")
    if uid >= 0 or gid >= 0:
        os.chown(folder, uid, gid)
    return folder


def remove_dump_dir(folder: str) -> None:
    shutil.rmtree(folder, ignore_errors=True)


def write_dump(folder: str, text: str) -> None:
    """In the process dumped: its text, as ``folder/PID.txt``."""
    path = os.path.join(folder, f"{os.getpid()}.txt")
    temporary = path + ".tmp"
    with open(temporary, "w", encoding="utf-8") as f:
        f.write(text)
    os.replace(temporary, path)


async def collect(children: list[Child], folder: str) -> list[str]:
    """Signal each live process and read what it writes (``WAIT_S`` at most)."""
    asked: dict[int, str] = {}
    for child in children:
        process = child.process
        if process is None or process.poll() is not None:
            continue
        path = os.path.join(folder, f"{child.pid}.txt")
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)
        with contextlib.suppress(ProcessLookupError):
            process.send_signal(DUMP_SIGNAL)
            asked[child.pid] = path
    found: dict[int, str] = {}
    deadline = time.monotonic() + WAIT_S
    while len(found) < len(asked) and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
        for pid, path in asked.items():
            if pid not in found and os.path.exists(path):
                with open(path, encoding="utf-8") as f:
                    found[pid] = f.read()
                os.unlink(path)
    return [found.get(pid, f"== process {pid}: no answer within {WAIT_S:g} s") for pid in asked]
