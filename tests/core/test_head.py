"""``asyncwsgi.core.head`` in-process: the rules of a response head, values in, values out.

Content-Length parsing (1*DIGIT only, and agreement between copies), the Connection
close test, which statuses carry a body, the hop-by-hop set, and every branch of the
PEP 3333 checks ``start_response()`` applies to a status and to the header list.
"""

from __future__ import annotations

from typing import Any

import pytest

from asyncwsgi.core.head import (
    HOP_BY_HOP,
    check_headers,
    check_status,
    content_length,
    status_allows_body,
    wants_close,
)

# -- Content-Length ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "length"),
    [("0", 0), ("5", 5), ("007", 7), ("123456789012", 123456789012)],
)
def test_content_length_of_digits(value: str, length: int) -> None:
    assert content_length(value) == length


@pytest.mark.parametrize("value", [" 5 ", "\t5", "5\t", " \t5\t "])
def test_content_length_strips_optional_whitespace(value: str) -> None:
    # HTTP's OWS (space, tab) around a field value is not part of it.
    assert content_length(value) == 5


@pytest.mark.parametrize(
    "value",
    [
        "",
        " ",
        "+5",  # int() takes these four; 1*DIGIT does not
        "-5",
        "1_000",
        "٣",  # ARABIC-INDIC DIGIT THREE
        "\uff15",  # FULLWIDTH DIGIT FIVE
        "²",  # SUPERSCRIPT TWO: isdigit() but not a number at all for int()
        "5 5",
        "0x10",
        "1e3",
        "5.0",
        "5,5",  # two values folded into one field
        "five",
    ],
)
def test_content_length_rejects_what_is_not_1_digit(value: str) -> None:
    with pytest.raises(ValueError, match="invalid Content-Length header"):
        content_length(value)


@pytest.mark.parametrize("value", ["\x0b5", "5\x0c", "\x1c5", "5\x85", "\xa05"])
def test_content_length_rejects_whitespace_that_is_not_ows(value: str) -> None:
    with pytest.raises(ValueError):
        content_length(value)


def test_content_length_copies_must_agree() -> None:
    first = content_length("10")
    assert content_length("10", first) == 10
    assert content_length(" 10 ", first) == 10
    with pytest.raises(ValueError, match="two different Content-Length headers"):
        content_length("11", first)


def test_content_length_zero_is_an_earlier_value_too() -> None:
    # -1 means "none yet"; 0 is a real length and must be agreed with.
    with pytest.raises(ValueError, match="two different"):
        content_length("1", 0)


def test_content_length_checks_the_digits_before_agreement() -> None:
    with pytest.raises(ValueError, match="invalid Content-Length"):
        content_length("+10", 10)


# -- Connection, status, hop-by-hop -----------------------------------------------------


@pytest.mark.parametrize("value", ["close", "Close", "CLOSE", "keep-alive, close", " close "])
def test_wants_close(value: str) -> None:
    assert wants_close(value)


@pytest.mark.parametrize("value", ["", "keep-alive", "Keep-Alive", "upgrade"])
def test_does_not_want_close(value: str) -> None:
    assert not wants_close(value)


@pytest.mark.parametrize("status", [100, 101, 103, 199, 204, 304])
def test_statuses_without_a_body(status: int) -> None:
    assert not status_allows_body(status)


@pytest.mark.parametrize("status", [200, 201, 205, 206, 299, 300, 301, 303, 305, 404, 500, 599])
def test_statuses_with_a_body(status: int) -> None:
    assert status_allows_body(status)


def test_hop_by_hop_headers() -> None:
    assert {
        "connection",
        "keep-alive",
        "transfer-encoding",
        "te",
        "trailer",
        "upgrade",
        "proxy-authenticate",
        "proxy-authorization",
    } == HOP_BY_HOP
    # Lowercase only: callers lowercase the name before looking it up.
    assert all(name == name.lower() for name in HOP_BY_HOP)
    assert "content-length" not in HOP_BY_HOP


# -- check_status ------------------------------------------------------------------------


@pytest.mark.parametrize("status", ["200 OK", "404 Not Found", "599 X", "200 ", "204 No Content"])
def test_check_status_accepts(status: str) -> None:
    check_status(status)


@pytest.mark.parametrize("status", [b"200 OK", 200, None, ["200 OK"]])
def test_check_status_wants_a_str(status: Any) -> None:
    with pytest.raises(TypeError, match="status must be a str"):
        check_status(status)


def test_check_status_wants_exactly_str() -> None:
    class Status(str):
        pass

    with pytest.raises(TypeError, match="not Status"):
        check_status(Status("200 OK"))


@pytest.mark.parametrize("status", ["", "200", "200OK", "20 OK", "2000 OK", "abc OK", "200\tOK"])
def test_check_status_wants_three_digits_and_a_space(status: str) -> None:
    with pytest.raises(ValueError, match="must look like '200 OK'"):
        check_status(status)


@pytest.mark.parametrize("status", ["200 OK\r\nX: y", "200 OK\n", "200 O\rK", "200 OK\0"])
def test_check_status_rejects_control_characters(status: str) -> None:
    with pytest.raises(ValueError, match="control character in status"):
        check_status(status)


@pytest.mark.parametrize("status", ["²00 OK", "٢٠٠ OK", "\uff12\uff10\uff10 OK"])
def test_check_status_rejects_non_ascii_digits(status: str) -> None:
    with pytest.raises(ValueError):
        check_status(status)


# -- check_headers -----------------------------------------------------------------------


def test_check_headers_accepts_a_list_of_str_pairs() -> None:
    check_headers([])
    check_headers([("Content-Type", "text/plain"), ("X-Empty", ""), ("Set-Cookie", "a=b; c")])


@pytest.mark.parametrize(
    "headers",
    [(("A", "b"),), {"A": "b"}, iter([("A", "b")]), None, "A: b"],
    ids=["tuple", "dict", "iterator", "None", "str"],
)
def test_check_headers_wants_a_list(headers: Any) -> None:
    with pytest.raises(TypeError, match="response headers must be a list"):
        check_headers(headers)


@pytest.mark.parametrize(
    "item",
    [["A", "b"], ("A",), ("A", "b", "c"), "Ab", None],
    ids=["list", "one", "three", "str", "None"],
)
def test_check_headers_wants_name_value_tuples(item: Any) -> None:
    with pytest.raises(TypeError, match=r"must be a \(name, value\) tuple"):
        check_headers([("Ok", "fine"), item])


@pytest.mark.parametrize(
    "item",
    [("A", 1), ("A", b"b"), ("A", None), (b"A", "b"), (1, "b")],
    ids=["int value", "bytes value", "None value", "bytes name", "int name"],
)
def test_check_headers_wants_str_names_and_values(item: Any) -> None:
    with pytest.raises(TypeError, match="header names and values must be str"):
        check_headers([item])


@pytest.mark.parametrize(
    "item",
    [
        ("X", "a\r\nSet-Cookie: evil"),
        ("X", "a\nb"),
        ("X", "a\rb"),
        ("X", "a\0b"),
        ("X\r\nY", "v"),
        ("X\nY", "v"),
        ("X\rY", "v"),
        ("X\0Y", "v"),
        ("X:Y", "v"),
        ("X:", "v"),
    ],
)
def test_check_headers_rejects_characters_that_split_the_head(item: tuple[str, str]) -> None:
    # A bad name is refused as "not a token" (it is checked against RFC 9110's token).
    with pytest.raises(ValueError, match=r"invalid character in response header|not a token"):
        check_headers([("Ok", "fine"), item])


@pytest.mark.parametrize("name", ["", "X Test", "X\tY", "Ä", "(X)", "X/Y", "X@Y"])
def test_check_headers_wants_names_that_are_tokens(name: str) -> None:
    with pytest.raises(ValueError, match="is not a token"):
        check_headers([(name, "v")])


def test_token_names_pass_once_and_from_the_cache() -> None:
    names = [("X-Request-Id", "1"), ("Cache-Control", "no-store"), ("a!#$%&'*+-.^_`|~9", "v")]
    check_headers(names)
    check_headers(names)  # now from the cache of good names


@pytest.mark.parametrize("status", ["000 Zero", "099 Low", "600 High", "999 Nine"])
def test_check_status_wants_a_code_from_100_to_599(status: str) -> None:
    with pytest.raises(ValueError, match="is not 100 to 599"):
        check_status(status)


def test_a_colon_in_a_value_is_fine() -> None:
    check_headers([("Location", "http://example.com:8080/")])
