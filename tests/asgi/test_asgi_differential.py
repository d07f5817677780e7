"""Differential test: the same request corpus sent to ``asyncwsgi.WSGIApp`` and to
``a2wsgi.WSGIMiddleware`` wrapping the same WSGI application; the responses must match
wherever a2wsgi is correct.

Left out of the corpus, on purpose, because a2wsgi is wrong there (each has its own
test in tests/asgi/test_asgi.py or is a deliberate difference):

* ``readline(size)`` as the first read (a2wsgi returns ``b""`` before any body arrived);
* ``readlines(hint)`` (a2wsgi counts lines, not bytes), and ``readlines()``/iteration
  of an empty body or one not ending in a newline (a2wsgi adds a newline or crashes);
* ``exc_info`` before the head (a2wsgi has already sent the first status);
* a root_path that is a prefix of the path but not at a ``/`` boundary;
* header names with ``_`` (a2wsgi lets ``X_Forwarded_For`` pose as ``X-Forwarded-For``)
  and repeated ``Cookie`` headers (joined with ``; `` by RFC 6265, not ``,``);
* hop-by-hop response headers and Content-Length (WSGIApp drops the former, as PEP 3333
  reserves them for the server, and adds the latter for one-piece bodies), and
  ``REQUEST_URI``/``wsgi.input_terminated``, which only WSGIApp sets;
* the body of the 500 answer to an exception (a2wsgi's host makes an empty one);
* a scope whose ``server`` has no port (a2wsgi says ``SERVER_PORT`` is ``"0"``; the
  corpus uses an explicit port);
* iterating over ``wsgi.input`` (a2wsgi yields an extra ``b""`` at the end).
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
from a2wsgi import WSGIMiddleware

from asyncwsgi import WSGIApp
from tests.apps import asgi_wsgi_apps as apps

HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "content-length"}


@dataclass(frozen=True)
class Case:
    id: str
    method: str
    target: str
    body: bytes = b""
    chunks: tuple[int, ...] = ()  # split the body into pieces of these sizes (cycled)
    headers: tuple[tuple[str, str], ...] = ()
    root_path: str = ""
    compare: tuple[str, ...] = field(default=("status", "headers", "body"))


def _lines(n: int) -> bytes:
    return b"".join(b"%d: %s\n" % (i, b"w" * (i * 13 % 97)) for i in range(n))


BLOB = os.urandom(300_000)


def corpus() -> Iterator[Case]:
    yield Case("hello", "GET", "/hello")
    yield Case("not-found", "GET", "/nowhere")
    yield Case("write-callable", "GET", "/write")
    yield Case("response-headers", "GET", "/headers")
    for n, size in [(1, 0), (5, 0), (30, 1000), (3, 200_000)]:
        yield Case(f"stream-{n}x{size}", "GET", f"/stream?n={n}&size={size}")
    for code in ("200", "204", "304", "404"):
        yield Case(f"status-{code}", "GET", f"/status?code={code}")
    yield Case("file-wrapper", "GET", "/file?size=150000")
    yield Case("error-before-start", "GET", "/error-before", compare=("status",))
    # The environ, from paths, queries, headers and mount points.
    for path in ["/environ", "/environ/", "/environ/caf%C3%A9", "/environ/a%20b", "/environ/%2F"]:
        for query in ["", "?a=1", "?a=1&b=%20x&c", "?q=%E2%9C%93"]:
            yield Case(f"environ-{path}{query}", "GET", path + query)
    for root in ["/mnt", "/mnt/deeper", "/m%C3%BCnt"]:
        yield Case(f"root-{root}", "GET", root + "/environ?x=1", root_path=_unquote(root))
    yield Case(
        "request-headers",
        "POST",
        "/environ",
        body=b"{}",
        headers=(
            ("Content-Type", "application/json"),
            ("X-One", "1"),
            ("X-Multi", "a"),
            ("X-Multi", "b"),
            ("Accept-Language", "en;q=0.8, fr"),
            ("Cookie", "session=abc"),
        ),
    )
    # Request bodies, read every way a2wsgi reads correctly, across chunk borders.
    bodies = {
        "empty": b"",
        "one": b"x",
        "text": _lines(50),
        "blob": BLOB,
        "mib": BLOB * 3 + BLOB[:146_576],
    }
    splits: list[tuple[int, ...]] = [(), (1, 7, 4096), (65536,), (100_000, 3)]
    for name, body in bodies.items():
        for chunks in splits:
            if len(body) > 300_000 and chunks and chunks[0] < 4096:
                continue  # a megabyte in 1-byte pieces tests httpx, not the bridges
            tag = f"{name}-{'x'.join(map(str, chunks)) or 'whole'}"
            yield Case(f"echo-{tag}", "POST", "/echo", body, chunks)
            yield Case(f"upload-{tag}", "POST", "/upload", body, chunks)
            for n in (1, 1000, 65536) if len(body) <= 1000 else (1000, 65536):
                yield Case(f"read{n}-{tag}", "POST", f"/read-blocks?n={n}", body, chunks)
            if body.endswith(b"\n"):
                yield Case(f"readlines-{tag}", "POST", "/readlines", body, chunks)
            if body:
                yield Case(f"readline-{tag}", "POST", "/readline?size=-1", body, chunks)


def _unquote(text: str) -> str:
    from urllib.parse import unquote

    return unquote(text)


CASES = list(corpus())


@pytest.fixture(scope="module")
def bridges() -> Iterator[tuple[WSGIApp, WSGIMiddleware]]:
    ours = WSGIApp(apps.application, threads=4)
    theirs = WSGIMiddleware(apps.application, workers=4)
    yield ours, theirs
    ours.close()
    theirs.executor.shutdown(wait=False)


async def _pieces(body: bytes, sizes: tuple[int, ...]) -> AsyncIterator[bytes]:
    i = pos = 0
    while pos < len(body):
        size = sizes[i % len(sizes)]
        yield body[pos : pos + size]
        pos += size
        i += 1


async def fetch(app: Any, case: Case) -> dict[str, Any]:
    transport = httpx.ASGITransport(app=app, root_path=case.root_path, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver:8080") as client:
        content: Any = _pieces(case.body, case.chunks) if case.chunks else case.body
        headers = list(case.headers)
        if case.chunks:
            headers.append(("Content-Length", str(len(case.body))))
        response = await client.request(
            case.method, case.target, content=content or None, headers=headers
        )
    body = response.content
    if response.headers.get("content-type") == "application/json":
        data = response.json()
        if isinstance(data, dict):
            for key in ("REQUEST_URI", "wsgi.input_terminated"):
                data.pop(key, None)  # only WSGIApp sets these
        body = repr(data).encode()
    return {
        "status": response.status_code,
        "headers": sorted(
            (name, value) for name, value in response.headers.items() if name not in HOP_BY_HOP
        ),
        "body": body,
    }


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_same_response_as_a2wsgi(bridges: tuple[WSGIApp, WSGIMiddleware], case: Case) -> None:
    ours, theirs = bridges

    async def both() -> tuple[dict[str, Any], dict[str, Any]]:
        return await fetch(ours, case), await fetch(theirs, case)

    mine, reference = asyncio.run(both())
    for key in case.compare:
        assert mine[key] == reference[key], key


def test_the_corpus_covers_every_route() -> None:
    used = {c.target.partition("?")[0] for c in CASES}
    used = {"/environ" if t.startswith(("/environ", "/mnt", "/m%")) else t for t in used}
    # Routes left out are the ones where a2wsgi is wrong or the answer is a broken stream.
    left_out = {
        "/exc-info", "/exc-info-late", "/error-after", "/infinite", "/short", "/long",
        "/read-outcome", "/sleep", "/iterate",
    }  # fmt: skip
    assert set(apps.ROUTES) - used == left_out
