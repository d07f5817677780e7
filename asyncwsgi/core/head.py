"""The rules of a response head, in one place: status, header fields, Content-Length.

Rule: nothing here imports asyncio or touches a socket; values in, values out. The HTTP
server turns a head into bytes, the ASGI adapter into an ``http.response.start`` message
and the daemon process into a wire frame, each by these rules.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

# Headers that describe the connection, not the resource. PEP 3333 forbids applications
# to send them; the server (or the ASGI host) owns them.
HOP_BY_HOP = frozenset(
    {"connection", "keep-alive", "transfer-encoding", "te", "trailer", "upgrade",
     "proxy-authenticate", "proxy-authorization"}
)  # fmt: skip


# The body and headers of the answers the server makes itself (500, 503, ...).
INTERNAL_ERROR = b"Internal Server Error\n"
PLAIN_TEXT = [("Content-Type", "text/plain; charset=utf-8")]


def status_allows_body(status_code: int) -> bool:
    """1xx, 204 and 304 responses have no body."""
    return not (100 <= status_code < 200 or status_code in (204, 304))


def content_length(value: str, current: int = -1) -> int:
    """The length a ``Content-Length`` value gives, after an earlier one (``current``,
    -1 for none): ``ValueError`` unless it is 1*DIGIT and agrees with the earlier one."""
    # Only the blanks HTTP allows around a value: str.strip() would also take \v, \f or
    # \x1c, and the value goes on the wire as the application gave it.
    digits = value.strip(" \t")
    # int() would also take "+5", "1_000" or non-ASCII digits; HTTP takes 1*DIGIT.
    if not (digits.isascii() and digits.isdigit()):
        raise ValueError(f"invalid Content-Length header {value!r}")
    length = int(digits)
    if current >= 0 and length != current:
        raise ValueError("the application sent two different Content-Length headers")
    return length


def wants_close(value: str) -> bool:
    """A ``Connection`` header value that asks for the connection to close."""
    return "close" in value.lower()


# --------------------------------------------------------------------------------------
# PEP 3333: what start_response() accepts
# --------------------------------------------------------------------------------------


# RFC 9110 section 5.6.2: a field name is a token.
_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
# Names already found to be tokens: applications send the same few over and over, so a
# dict lookup spares the pattern on every header of every response.
_GOOD_NAMES: dict[str, bool] = {}
_GOOD_NAMES_MAX = 1024
# Statuses already found good, likewise ("200 OK" on nearly every response).
_GOOD_STATUSES: dict[str, bool] = {}
_GOOD_STATUSES_MAX = 256


def check_status(status: str) -> None:
    if type(status) is str and status in _GOOD_STATUSES:
        return
    _check_status(status)
    if len(_GOOD_STATUSES) < _GOOD_STATUSES_MAX:
        _GOOD_STATUSES[status] = True


def _check_status(status: str) -> None:
    if type(status) is not str:
        raise TypeError(f"status must be a str, not {type(status).__name__}")
    # isascii(): str.isdigit() is also true for "²" or "٢", which int() then refuses.
    if len(status) < 4 or not (status[:3].isascii() and status[:3].isdigit()) or status[3] != " ":
        raise ValueError(f"status must look like '200 OK', not {status!r}")
    if not "100" <= status[:3] <= "599":
        raise ValueError(f"status code {status[:3]} is not 100 to 599")
    if "\n" in status or "\r" in status or "\0" in status:
        raise ValueError(f"control character in status {status!r}")


def check_headers(headers: Iterable[tuple[str, str]]) -> None:
    if type(headers) is not list:
        raise TypeError(f"response headers must be a list, not {type(headers).__name__}")
    good = _GOOD_NAMES
    for item in headers:
        if type(item) is not tuple or len(item) != 2:
            raise TypeError(f"each response header must be a (name, value) tuple: {item!r}")
        name, value = item
        if type(name) is not str or type(value) is not str:
            raise TypeError(f"header names and values must be str: {item!r}")
        if name not in good:
            if not _TOKEN.fullmatch(name):
                raise ValueError(f"response header name {name!r} is not a token")
            if len(good) < _GOOD_NAMES_MAX:
                good[name] = True
        # Plain `in` tests: this runs for every header of every response.
        if "\n" in value or "\r" in value or "\0" in value:
            # Refuse rather than let a header value split the response.
            raise ValueError(f"invalid character in response header {item!r}")


def seen_good(status: str, headers: list[tuple[str, str]]) -> bool:
    """Fast path for a head of ``str`` status and ``(str, str)`` headers (as the daemon
    wire decodes them): True if it passes :func:`check_status` and
    :func:`check_headers` by what they have already seen; False: check it in full."""
    if status not in _GOOD_STATUSES:
        return False
    good = _GOOD_NAMES
    for name, value in headers:
        if name not in good or "\n" in value or "\r" in value or "\0" in value:
            return False
    return True
