"""``wsgi.input`` (asyncwsgi.wsgi.input.WSGIInput) over a fake chunk source made of byte
literals: every read method must be right across chunk borders."""

from __future__ import annotations

import io
import itertools
from collections.abc import Sequence

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from asyncwsgi.wsgi.input import WSGIInput


class ChunkSource:
    """Hands out ``chunks`` one after another, at most ``n`` bytes per call, then ``b""``.

    A chunk larger than ``n`` is split, the way the HTTP layer's body buffer splits what it
    holds. The source checks the contract WSGIInput relies on: it is asked for at least one
    byte each time.
    """

    def __init__(self, chunks: Sequence[bytes]) -> None:
        self.chunks = [c for c in chunks if c]
        self.calls: list[int] = []
        self.after_eof = 0
        self.ended = False

    def __call__(self, n: int) -> bytes:
        assert isinstance(n, int)
        assert n >= 1, f"source asked for {n} bytes"
        self.calls.append(n)
        if not self.chunks:
            if self.ended:
                self.after_eof += 1
            self.ended = True
            return b""
        first = self.chunks[0]
        if len(first) <= n:
            return self.chunks.pop(0)
        self.chunks[0] = first[n:]
        return first[:n]


def make(chunks: Sequence[bytes]) -> WSGIInput:
    return WSGIInput(ChunkSource(chunks))


def one_byte_chunks(data: bytes) -> list[bytes]:
    return [data[i : i + 1] for i in range(len(data))]


BODY = b"first line\nsecond line\n\nfourth, no newline at the end"
SPLITS = {
    "one chunk": [BODY],
    "lines split over chunks": [
        b"first li", b"ne\nsec", b"ond line\n", b"\nfourth,", b" no newl", b"ine at the end"
    ],
    "newline alone in a chunk": [
        b"first line", b"\n", b"second line", b"\n", b"\n", b"fourth, no newline at the end"
    ],
    "one byte chunks": one_byte_chunks(BODY),
}  # fmt: skip
CHUNKINGS = pytest.mark.parametrize("chunks", list(SPLITS.values()), ids=list(SPLITS))


def test_chunkings_are_the_body() -> None:
    for chunks in SPLITS.values():
        assert b"".join(chunks) == BODY


# -- read --------------------------------------------------------------------------------


@CHUNKINGS
def test_read_all(chunks: list[bytes]) -> None:
    stream = make(chunks)
    assert stream.read() == BODY
    assert stream.read() == b""
    assert stream.read(10) == b""


@CHUNKINGS
@pytest.mark.parametrize("argument", [None, -1, -5])
def test_read_none_or_negative_reads_everything(chunks: list[bytes], argument: int | None) -> None:
    stream = make(chunks)
    assert stream.read(3) == BODY[:3]
    assert stream.read(argument) == BODY[3:]
    assert stream.read(argument) == b""


@CHUNKINGS
@pytest.mark.parametrize("size", [1, 2, 3, 7, 11, 16, 64, 1000])
def test_read_n_returns_exactly_n_until_the_end(chunks: list[bytes], size: int) -> None:
    stream = make(chunks)
    pieces = []
    while True:
        piece = stream.read(size)
        if not piece:
            break
        pieces.append(piece)
    assert b"".join(pieces) == BODY
    # Every piece but the last is full, however the body was chunked.
    assert all(len(p) == size for p in pieces[:-1])
    assert 0 < len(pieces[-1]) <= size


def test_read_n_across_a_chunk_border() -> None:
    stream = make([b"abc", b"defgh", b"ij"])
    assert stream.read(4) == b"abcd"
    assert stream.read(5) == b"efghi"
    assert stream.read(5) == b"j"
    assert stream.read(5) == b""


@CHUNKINGS
def test_read_zero_returns_nothing_and_consumes_nothing(chunks: list[bytes]) -> None:
    source = ChunkSource(chunks)
    stream = WSGIInput(source)
    assert stream.read(0) == b""
    assert source.calls == []  # read(0) must not block waiting for body bytes
    assert stream.read(5) == BODY[:5]
    assert stream.read(0) == b""
    assert stream.read() == BODY[5:]
    assert stream.read(0) == b""


def test_read_zero_does_not_mark_the_end() -> None:
    # read(0) answering b"" must not make a later read believe the body is over.
    stream = make([b"x", b"y"])
    assert stream.read(0) == b""
    assert stream.read(0) == b""
    assert stream.read(2) == b"xy"


def test_empty_body() -> None:
    for method in ("read", "readline"):
        assert getattr(make([]), method)() == b""
    assert make([]).read(10) == b""
    assert make([]).readline(10) == b""
    assert make([]).readlines() == []
    assert list(make([])) == []


def test_source_not_called_again_after_the_end() -> None:
    source = ChunkSource([b"ab\n", b"cd"])
    stream = WSGIInput(source)
    assert stream.read() == b"ab\ncd"
    assert stream.read(1) == b""
    assert stream.readline() == b""
    assert stream.readlines() == []
    assert list(stream) == []
    assert source.after_eof == 0


# -- readline ----------------------------------------------------------------------------


@CHUNKINGS
def test_readline(chunks: list[bytes]) -> None:
    stream = make(chunks)
    assert stream.readline() == b"first line\n"
    assert stream.readline() == b"second line\n"
    assert stream.readline() == b"\n"
    assert stream.readline() == b"fourth, no newline at the end"
    assert stream.readline() == b""
    assert stream.readline() == b""


@CHUNKINGS
@pytest.mark.parametrize("argument", [None, -1])
def test_readline_none_or_negative_is_unlimited(chunks: list[bytes], argument: int | None) -> None:
    stream = make(chunks)
    assert stream.readline(argument) == b"first line\n"


@CHUNKINGS
def test_readline_with_a_limit(chunks: list[bytes]) -> None:
    stream = make(chunks)
    assert stream.readline(4) == b"firs"
    assert stream.readline(4) == b"t li"
    assert stream.readline(4) == b"ne\n"  # stops at the newline, before the limit
    assert stream.readline(12) == b"second line\n"  # the limit is exactly the line
    assert stream.readline(0) == b""
    assert stream.readline(1) == b"\n"
    assert stream.readline(100) == b"fourth, no newline at the end"
    assert stream.readline(100) == b""


@pytest.mark.parametrize("limit", [1, 2, 3, 4])
def test_readline_limit_applies_to_what_is_already_buffered(limit: int) -> None:
    # The unlimited readline() buffers the whole chunk; the next line is taken from the
    # buffer and must still stop at the limit, newline or not.
    stream = make([b"ab\ncde\nf\n"])
    assert stream.readline() == b"ab\n"
    assert stream.readline(limit) == b"cde\n"[:limit]
    assert stream.read() == b"cde\nf\n"[limit:]


def test_readline_zero_consumes_nothing() -> None:
    source = ChunkSource([b"abc\n"])
    stream = WSGIInput(source)
    assert stream.readline(0) == b""
    assert stream.readline() == b"abc\n"


def test_readline_of_a_long_line_split_in_many_chunks() -> None:
    line = b"x" * 200_000 + b"\n"
    chunks = [line[i : i + 1000] for i in range(0, len(line), 1000)] + [b"tail"]
    stream = make(chunks)
    assert stream.readline() == line
    assert stream.readline() == b"tail"


def test_readline_then_read_keeps_the_buffered_rest() -> None:
    stream = make([b"ab\ncd", b"ef\ngh"])
    assert stream.readline() == b"ab\n"
    assert stream.read(3) == b"cde"
    assert stream.readline() == b"f\n"
    assert stream.read() == b"gh"


# -- readlines and iteration -------------------------------------------------------------


@CHUNKINGS
def test_readlines(chunks: list[bytes]) -> None:
    assert make(chunks).readlines() == io.BytesIO(BODY).readlines()
    assert make(chunks).readlines() == [
        b"first line\n",
        b"second line\n",
        b"\n",
        b"fourth, no newline at the end",
    ]


@CHUNKINGS
@pytest.mark.parametrize("hint", [None, -1, 0, 1, 10, 11, 12, 23, 24, 25, 1000])
def test_readlines_hint_counts_bytes(chunks: list[bytes], hint: int | None) -> None:
    # Lines are read until their total size reaches the hint, exactly as io does.
    stream = make(chunks)
    expected = io.BytesIO(BODY).readlines(hint)
    assert stream.readlines(hint) == expected
    # Nothing beyond the returned lines was consumed.
    assert stream.read() == BODY[len(b"".join(expected)) :]


def test_readlines_hint_examples() -> None:
    assert make([b"ab\ncd\nef\n"]).readlines(1) == [b"ab\n"]
    assert make([b"ab\ncd\nef\n"]).readlines(3) == [b"ab\n"]
    assert make([b"ab\ncd\nef\n"]).readlines(4) == [b"ab\n", b"cd\n"]
    assert make(one_byte_chunks(b"ab\ncd\nef\n")).readlines(6) == [b"ab\n", b"cd\n"]


@CHUNKINGS
def test_iteration(chunks: list[bytes]) -> None:
    stream = make(chunks)
    assert iter(stream) is stream
    assert list(stream) == io.BytesIO(BODY).readlines()
    assert list(stream) == []


@CHUNKINGS
def test_iteration_after_partial_read(chunks: list[bytes]) -> None:
    stream = make(chunks)
    assert stream.read(6) == b"first "
    assert next(stream) == b"line\n"
    assert [line for line in stream] == [b"second line\n", b"\n", b"fourth, no newline at the end"]


def test_close_is_harmless() -> None:
    stream = make([b"abc"])
    stream.close()
    assert stream.read() == b"abc"


def test_reads_are_bytes() -> None:
    stream = make([b"a\n", b"b"])
    for value in (stream.readline(), stream.read(1), stream.read()):
        assert type(value) is bytes


# -- properties --------------------------------------------------------------------------


def chunkings(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c % (len(data) + 1) for c in cuts} | {0, len(data)})
    return [data[a:b] for a, b in itertools.pairwise(points)]


bodies = st.one_of(
    st.binary(max_size=300),
    # Bodies with many lines, empty lines and CRs.
    st.lists(
        st.sampled_from([b"\n", b"\r\n", b"a", b"bc", b"\r", b"xyz\n", b"\x00"]), max_size=80
    ).map(b"".join),
)
cut_points = st.lists(st.integers(min_value=0, max_value=400), max_size=40)
# Few cuts: big chunks, so one call can leave several lines in the buffer.
few_cut_points = st.lists(st.integers(min_value=0, max_value=400), max_size=4)
line_bodies = st.lists(
    st.sampled_from([b"\n", b"a\n", b"bc\n", b"xyz\n", b"abcd\n", b"q"]), max_size=40
).map(b"".join)
sizes = st.one_of(st.none(), st.integers(min_value=-1, max_value=6), st.integers(0, 40))
operations = st.lists(
    st.one_of(
        st.tuples(st.just("read"), sizes),
        st.tuples(st.just("readline"), sizes),
        st.tuples(st.just("readlines"), st.integers(min_value=-1, max_value=60)),
        st.tuples(st.just("next"), st.none()),
    ),
    max_size=30,
)


@settings(max_examples=300, deadline=None)
@given(body=bodies, cuts=cut_points)
def test_property_every_strategy_reconstructs_the_body(body: bytes, cuts: list[int]) -> None:
    chunks = chunkings(body, cuts)
    assert b"".join(chunks) == body

    assert make(chunks).read() == body
    assert b"".join(make(chunks).readlines()) == body
    assert b"".join(make(chunks)) == body
    for size in (1, 2, 5):
        stream = make(chunks)
        got = []
        while piece := stream.read(size):
            assert len(piece) <= size
            got.append(piece)
        assert b"".join(got) == body
        stream = make(chunks)
        got = []
        while piece := stream.readline(size):
            got.append(piece)
        assert b"".join(got) == body

    lines = []
    stream = make(chunks)
    while line := stream.readline():
        lines.append(line)
    assert lines == io.BytesIO(body).readlines()
    assert list(make(chunks)) == io.BytesIO(body).readlines()


@settings(max_examples=300, deadline=None)
@given(
    body=st.one_of(bodies, line_bodies),
    cuts=st.one_of(cut_points, few_cut_points),
    ops=operations,
)
def test_property_any_mix_of_calls_matches_bytesio(
    body: bytes, cuts: list[int], ops: list[tuple[str, int | None]]
) -> None:
    stream = make(chunkings(body, cuts))
    reference = io.BytesIO(body)
    for name, argument in ops:
        if name == "next":
            assert next(stream, None) == next(reference, None)
        else:
            assert getattr(stream, name)(argument) == getattr(reference, name)(argument), (
                name,
                argument,
            )
    assert stream.read() == reference.read()
