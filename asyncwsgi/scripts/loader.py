"""Turning a WSGI script file, or ``package.module:attr``, into an application.

A script file is executed as a module whose name is unique to its absolute path, like
mod_wsgi's ``_mod_wsgi_<hash>``, so two ``app.wsgi`` files in different folders never
share a ``sys.modules`` entry.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.machinery
import importlib.util
import os
import sys
from types import CodeType, ModuleType
from typing import cast

from asyncwsgi.errors import ScriptLoadError
from asyncwsgi.wsgi.types import WSGIApplication


class _ScriptLoader(importlib.machinery.SourceFileLoader):
    """Compiles the script from its source on every load.

    The bytecode cache (``__pycache__``) is validated by whole-second mtime and size only,
    so after a same-second, same-size edit, or a rename that keeps both, it would run the
    old code. A script is one file; compiling it is cheap.
    """

    def get_code(self, fullname: str) -> CodeType:
        path = self.get_filename(fullname)
        source = self.get_data(path)
        code: CodeType = compile(source, path, "exec", dont_inherit=True)
        return code


def is_script_path(target: str) -> bool:
    """A target names a script file if it ends in .wsgi/.py or is an existing file."""
    return target.endswith((".wsgi", ".py")) or os.path.isfile(target)


def module_name_for(path: str) -> str:
    digest = hashlib.md5(os.path.abspath(path).encode("utf-8"), usedforsecurity=False)
    return "_asyncwsgi_" + digest.hexdigest()


def load_script(
    path: str, callable_name: str = "application"
) -> tuple[ModuleType, WSGIApplication]:
    """Execute ``path`` as a fresh module and return it with its WSGI callable.

    Any failure, including a SyntaxError or an exception raised by the script's own code,
    becomes a :class:`ScriptLoadError`; its ``__cause__`` holds the original exception.
    """
    path = os.path.abspath(path)
    name = module_name_for(path)
    loader = _ScriptLoader(name, path)
    spec = importlib.util.spec_from_file_location(name, path, loader=loader)
    if spec is None:  # pragma: no cover - only for paths importlib cannot represent
        raise ScriptLoadError(path, "not a loadable file")
    module = importlib.util.module_from_spec(spec)
    # The script's folder is importable from the script, as under mod_wsgi.
    folder = os.path.dirname(path)
    if folder not in sys.path:
        sys.path.insert(0, folder)
    previous = sys.modules.get(name)
    sys.modules[name] = module
    try:
        loader.exec_module(module)
    except FileNotFoundError as exc:
        _restore(name, previous)
        raise ScriptLoadError(path, "no such file") from exc
    except BaseException as exc:
        _restore(name, previous)
        if isinstance(exc, KeyboardInterrupt):
            raise
        raise ScriptLoadError(path, f"{type(exc).__name__}: {exc}") from exc
    app = getattr(module, callable_name, None)
    if app is None or not callable(app):
        _restore(name, previous)
        raise ScriptLoadError(path, f"no callable named {callable_name!r} in the script")
    return module, cast(WSGIApplication, app)


def _restore(name: str, previous: ModuleType | None) -> None:
    if previous is None:
        sys.modules.pop(name, None)
    else:
        sys.modules[name] = previous


def load_target(target: str, callable_name: str = "application") -> WSGIApplication:
    """``package.module:attr`` (or ``package.module`` with ``callable_name``)."""
    module_name, _, attr = target.partition(":")
    attr = attr or callable_name
    try:
        module = importlib.import_module(module_name)
    except BaseException as exc:
        if isinstance(exc, KeyboardInterrupt):
            raise
        raise ScriptLoadError(target, f"{type(exc).__name__}: {exc}") from exc
    obj: object = module
    for part in attr.split("."):
        obj = getattr(obj, part, None)
        if obj is None:
            raise ScriptLoadError(target, f"module {module_name!r} has no attribute {attr!r}")
    if not callable(obj):
        raise ScriptLoadError(target, f"{attr!r} is not callable")
    return cast(WSGIApplication, obj)
