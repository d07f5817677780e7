"""The Flask app of ``run.py --scenario flask``: a page rendered from a SQLite query.

Each request opens the SQLite database (as the Flask tutorial does: one connection per
request, closed when the app context ends), reads 20 of its 100 rows and renders them
with a Jinja2 template (``templates/items.html``, autoescaped): a small but typical
request, where the app's own Python work (routing, the query, the template) is most of
the cost and the server's share is smaller than with hello world.

At import it writes the database, a new one per process, in a folder of its own under
``$ASYNCWSGI_BENCH_TMP`` (``run.py`` sets it to the run's temporary folder) or the
system's temporary folder, removed when the process exits. The page is the same for
every request and every process, so ``run.py`` can check each server's answer
byte-for-byte. Loaded by path like ``examples/hello.wsgi`` (peers through
``hello_app.py``).
"""

import atexit
import os
import shutil
import sqlite3
import tempfile
from pathlib import Path

from flask import Flask, g, render_template

ROWS = 100
PAGE_SIZE = 20
FIRST_ID = 41  # the page shows ids 41-60

_FOLDER = tempfile.mkdtemp(prefix="flask-app-", dir=os.environ.get("ASYNCWSGI_BENCH_TMP"))
atexit.register(shutil.rmtree, _FOLDER, True)
DATABASE = os.path.join(_FOLDER, "items.sqlite3")


def _create_database(path: str) -> None:
    with sqlite3.connect(path) as db:
        db.execute(
            "CREATE TABLE items (id INTEGER PRIMARY KEY, name TEXT NOT NULL, "
            "category TEXT NOT NULL, price_cents INTEGER NOT NULL, stock INTEGER NOT NULL)"
        )
        db.executemany(
            "INSERT INTO items VALUES (?, ?, ?, ?, ?)",
            [
                (i, f"Item <{i:03d}> & co", ("tools", "books", "food")[i % 3], 199 + 37 * i, i % 7)
                for i in range(1, ROWS + 1)
            ],
        )
    db.close()


_create_database(DATABASE)

# The root is given: loaded by path, the module's name says nothing about where it is.
application = Flask(__name__, root_path=str(Path(__file__).resolve().parent))


def get_db() -> sqlite3.Connection:
    if "db" not in g:
        g.db = sqlite3.connect(DATABASE)
        g.db.row_factory = sqlite3.Row
    return g.db


@application.teardown_appcontext
def close_db(_exc: BaseException | None) -> None:
    db = g.pop("db", None)
    if db is not None:
        db.close()


@application.route("/")
def items() -> str:
    rows = (
        get_db()
        .execute(
            "SELECT id, name, category, price_cents, stock FROM items "
            "WHERE id >= ? ORDER BY id LIMIT ?",
            (FIRST_ID, PAGE_SIZE),
        )
        .fetchall()
    )
    return render_template("items.html", items=rows, total=ROWS)
