"""Which file a request names and what to answer (``asyncwsgi.static.files``), as values."""

from __future__ import annotations

import os
from email.utils import formatdate
from pathlib import Path

import pytest

from asyncwsgi.static.files import BAD_REQUEST, NOT_FOUND, Found, byte_range, condition, locate


@pytest.fixture
def folder(tmp_path: Path) -> str:
    root = tmp_path / "static"
    (root / "css").mkdir(parents=True)
    (root / "css" / "site.css").write_text("body{}")
    (root / "ünï.txt").write_text("x")
    (tmp_path / "secret.txt").write_text("secret")
    os.symlink(tmp_path / "secret.txt", root / "out.txt")
    os.symlink(root / "css" / "site.css", root / "in.css")
    return os.path.realpath(root)


def test_a_file_below_the_folder_is_found(folder: str) -> None:
    found = locate(folder, "/css/site.css")
    assert isinstance(found, Found) and found.size == 6
    assert found.content_type == "text/css; charset=utf-8"
    # Percent-decoded UTF-8, as PEP 3333 text (latin-1), names the file.
    name = "/ünï.txt".encode().decode("latin-1")
    assert isinstance(locate(folder, name), Found)


@pytest.mark.parametrize(
    ("rest", "expected"),
    [
        ("/../secret.txt", BAD_REQUEST),
        ("/css/../../secret.txt", BAD_REQUEST),
        ("/./css/site.css", BAD_REQUEST),
        ("/css//site.css", BAD_REQUEST),
        ("/css/site.css\0", BAD_REQUEST),
        ("/out.txt", NOT_FOUND),  # a symlink out of the folder
        ("/css", NOT_FOUND),  # folders are not listed
        ("/css/", NOT_FOUND),
        ("/css/site.css/", NOT_FOUND),  # a trailing slash after a file: no second URL
        ("", NOT_FOUND),
        ("/", NOT_FOUND),
        ("/nothing", NOT_FOUND),
    ],
)
def test_what_leaves_the_folder_or_is_no_file_is_refused(
    folder: str, rest: str, expected: str
) -> None:
    assert locate(folder, rest) == expected


def test_a_symlink_inside_the_folder_is_followed(folder: str) -> None:
    assert isinstance(locate(folder, "/in.css"), Found)


def test_one_file_is_served_for_its_path_alone(folder: str) -> None:
    path = os.path.join(folder, "css", "site.css")
    assert isinstance(locate(path, "", exact_file=True), Found)
    assert locate(path, "/more", exact_file=True) == NOT_FOUND
    assert locate(path, "/", exact_file=True) == NOT_FOUND


def test_a_symlinked_folder_is_followed_anew_on_each_request(tmp_path: Path) -> None:
    for release in ("one", "two"):
        (tmp_path / release).mkdir()
        (tmp_path / release / "v.txt").write_text(release)
    current = tmp_path / "current"
    current.symlink_to("one")
    first = locate(str(current), "/v.txt")
    assert isinstance(first, Found) and Path(first.path).read_text() == "one"
    current.unlink()
    current.symlink_to("two")  # a deploy moves the link
    second = locate(str(current), "/v.txt")
    assert isinstance(second, Found) and Path(second.path).read_text() == "two"


FILE = Found("/x/a.bin", 1000, 1_700_000_000_123_456_789)
SECONDS = 1_700_000_000


def http_date(seconds: int) -> str:
    return formatdate(seconds, usegmt=True)


@pytest.mark.parametrize(
    ("headers", "method", "expected"),
    [
        ({}, "GET", None),
        ({"if-none-match": FILE.etag}, "GET", "304 Not Modified"),
        ({"if-none-match": f'"other", W/{FILE.etag}'}, "HEAD", "304 Not Modified"),
        ({"if-none-match": "*"}, "GET", "304 Not Modified"),
        ({"if-none-match": '"other"'}, "GET", None),
        # If-None-Match wins over If-Modified-Since.
        ({"if-none-match": '"other"', "if-modified-since": http_date(SECONDS)}, "GET", None),
        ({"if-modified-since": http_date(SECONDS)}, "GET", "304 Not Modified"),
        ({"if-modified-since": http_date(SECONDS - 1)}, "GET", None),
        ({"if-modified-since": "not a date"}, "GET", None),
        ({"if-match": '"other"'}, "GET", "412 Precondition Failed"),
        ({"if-match": FILE.etag}, "GET", None),
        ({"if-unmodified-since": http_date(SECONDS - 1)}, "GET", "412 Precondition Failed"),
        ({"if-unmodified-since": http_date(SECONDS)}, "GET", None),
    ],
)
def test_conditions(headers: dict[str, str], method: str, expected: str | None) -> None:
    assert condition(FILE, headers, method) == expected


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ({}, None),
        ({"range": "bytes=0-99"}, (0, 100)),
        ({"range": "bytes=900-"}, (900, 100)),
        ({"range": "bytes=-10"}, (990, 10)),
        ({"range": "bytes=-5000"}, (0, 1000)),
        ({"range": "bytes=990-5000"}, (990, 10)),
        ({"range": "bytes=1000-"}, "416"),
        ({"range": "bytes=-0"}, "416"),
        ({"range": "bytes=5-1"}, None),
        ({"range": "bytes=0-1,5-6"}, None),  # several ranges: the whole file
        ({"range": "items=0-1"}, None),
        ({"range": "bytes=a-b"}, None),
        ({"range": "bytes=+1-2"}, None),
        ({"range": "bytes=0-" + "9" * 5000}, None),  # no int() of 5000 digits (a 500)
        ({"range": "bytes=0-9", "if-range": FILE.etag}, (0, 10)),
        ({"range": "bytes=0-9", "if-range": '"old"'}, None),
        ({"range": "bytes=0-9", "if-range": http_date(SECONDS)}, (0, 10)),
        ({"range": "bytes=0-9", "if-range": http_date(SECONDS - 60)}, None),
    ],
)
def test_ranges(headers: dict[str, str], expected: object) -> None:
    assert byte_range(FILE, headers) == expected
