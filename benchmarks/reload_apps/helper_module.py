"""The helper module of ``reload_apps/helper_app.py``: only its version number.

Copied beside the app as ``reload_helper.py``. ``reload_under_load.py --change helper``
rewrites the line ``VERSION = 1`` to ``VERSION = 2``; ``--change broken`` first
replaces that line with one that raises at import, then writes ``VERSION = 2``.
"""

VERSION = 1
