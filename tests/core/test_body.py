"""``asyncwsgi.core.body.RequestBody`` in-process: the one request-body buffer.

The producer side (feed, feed_eof, fail) and the consumer side (read on a worker thread,
take on the loop) are driven directly with byte literals. A subclass records every hook
call, so the moments the transports rely on (drained, first read, continue, fed,
consumed) are checked by value. Cross-thread tests start a plain thread and poll for a
condition with a deadline; nothing sleeps a fixed time.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from asyncwsgi.core.body import RequestBody
from asyncwsgi.errors import ClientDisconnected

pytestmark = pytest.mark.timeout(30)

DEADLINE = 5.0


class Recorder(RequestBody):
    """A body that records its hook calls (a subclass, as every transport's is)."""

    def __init__(self, high_water: int = 1024, *, expect_continue: bool = False) -> None:
        super().__init__(high_water, expect_continue=expect_continue)
        self.fed: list[int] = []
        self.consumed: list[int] = []
        self.drained: list[bool] = []
        self.first_reads = 0
        self.continues = 0

    def _fed(self, size: int) -> None:
        self.fed.append(size)

    def _consumed(self, size: int) -> None:
        self.consumed.append(size)

    def _first_read(self) -> None:
        self.first_reads += 1

    def _continue(self) -> None:
        self.continues += 1

    def _drained(self, *, loop_side: bool) -> None:
        self.drained.append(loop_side)


def wait_until(condition: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + DEADLINE
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting until {what}")
        time.sleep(0.001)


class Reader:
    """``body.read(size)`` on its own thread; ``result()`` is what it returned or raised."""

    def __init__(self, body: RequestBody, size: int = 100) -> None:
        self.outcome: list[Any] = []
        self.thread = threading.Thread(target=self._run, args=(body, size), daemon=True)
        self.thread.start()

    def _run(self, body: RequestBody, size: int) -> None:
        try:
            self.outcome.append(body.read(size))
        except BaseException as exc:
            self.outcome.append(exc)

    def result(self) -> Any:
        self.thread.join(DEADLINE)
        assert not self.thread.is_alive(), "the reader is still blocked"
        return self.outcome[0]


def blocked_reader(body: RequestBody, size: int = 100) -> Reader:
    """A reader thread known to be waiting inside read() (not merely not started yet)."""
    reader = Reader(body, size)
    # The condition's waiter list is the only sure sign the thread is parked in wait().
    wait_until(lambda: len(body._cond._waiters) == 1, "the reader waits")  # type: ignore[attr-defined]
    assert not reader.outcome
    return reader


def read_all(body: RequestBody, size: int = -1) -> bytes:
    parts = []
    while part := body.read(size, timeout=DEADLINE):
        parts.append(part)
    return b"".join(parts)


# -- across threads ---------------------------------------------------------------------


def test_blocked_reader_wakes_when_data_arrives() -> None:
    body = RequestBody(1024)
    reader = blocked_reader(body)
    body.feed(b"hello")
    assert reader.result() == b"hello"


def test_blocked_reader_wakes_at_eof() -> None:
    body = RequestBody(1024)
    reader = blocked_reader(body)
    body.feed_eof()
    assert reader.result() == b""


def test_blocked_reader_wakes_with_the_error() -> None:
    body = RequestBody(1024)
    reader = blocked_reader(body)
    error = ClientDisconnected("gone")
    body.fail(error)
    assert reader.result() is error


def test_producer_thread_and_consumer_thread_pass_every_byte() -> None:
    chunks = [bytes([i % 256]) * (i % 37 + 1) for i in range(500)]
    body = RequestBody(256)

    def produce() -> None:
        for chunk in chunks:
            body.feed(chunk)
        body.feed_eof()

    producer = threading.Thread(target=produce, daemon=True)
    producer.start()
    assert read_all(body, 7) == b"".join(chunks)
    producer.join(DEADLINE)


# -- read sizes ---------------------------------------------------------------------------


def fed(*chunks: bytes, high_water: int = 1024) -> Recorder:
    body = Recorder(high_water)
    for chunk in chunks:
        body.feed(chunk)
    return body


def test_read_cuts_a_chunk_and_keeps_its_rest() -> None:
    body = fed(b"abcdef")
    assert body.read(2) == b"ab"
    assert body.read(3) == b"cde"
    assert body.read(10) == b"f"
    assert body.buffered == 0


def test_read_does_not_join_chunks_unless_it_takes_everything() -> None:
    body = fed(b"abc", b"defg", b"h")
    assert body.read(2) == b"ab"
    # The rest of a cut chunk, not more: it is handed on without copying the next one.
    assert body.read(2) == b"c"
    assert body.read(4) == b"defg"
    assert body.read(4) == b"h"


def test_read_of_at_least_what_is_buffered_joins_everything() -> None:
    body = fed(b"abc", b"defg", b"h")
    assert body.read(1) == b"a"
    assert body.read(7) == b"bcdefgh"


def test_read_minus_one_takes_all_buffered() -> None:
    body = fed(b"abc", b"de")
    assert body.read(1) == b"a"
    body.feed(b"f")
    assert body.read(-1) == b"bcdef"
    assert body.buffered == 0


def test_take_is_up_to_limit_and_never_waits() -> None:
    body = fed()
    assert body.take(10) == b""  # nothing buffered: at once, no wait
    body.feed(b"abc")
    body.feed(b"de")
    assert body.take(0) == b""
    assert body.take(-1) == b""
    assert body.take(2) == b"ab"
    assert body.take(10) == b"cde"
    assert body.take(10) == b""


def test_buffered_counts_what_is_not_taken() -> None:
    body = fed(b"abc", b"de")
    assert body.buffered == 5
    body.take(1)
    body.read(1)
    assert body.buffered == 3


def test_received_counts_every_fed_byte_and_not_reads() -> None:
    body = fed(b"abc", b"", b"de")
    body.read(-1)
    assert body.received == 5
    body.feed(b"f")
    assert body.received == 6


# -- high water ----------------------------------------------------------------------------


def test_feed_says_full_only_over_high_water() -> None:
    body = Recorder(high_water=4)
    assert body.feed(b"ab") is False
    assert body.feed(b"cd") is False  # at high water, not over it
    assert not body.paused
    assert body.feed(b"e") is True
    assert body.paused
    # Still over: every further feed says so.
    assert body.feed(b"") is True


@pytest.mark.parametrize(
    ("consume", "loop_side"),
    [(lambda body, n: body.take(n), True), (lambda body, n: body.read(n), False)],
    ids=["take", "read"],
)
def test_drained_once_down_to_half_of_high_water(
    consume: Callable[[RequestBody, int], bytes], loop_side: bool
) -> None:
    body = Recorder(high_water=10)
    assert body.feed(b"x" * 11)
    consume(body, 5)  # 6 left: over half of high water
    assert body.drained == []
    assert body.paused
    consume(body, 1)  # 5 left: half of high water
    assert body.drained == [loop_side]
    assert not body.paused
    consume(body, 5)
    assert body.drained == [loop_side]  # once per pause, not per read


def test_drained_is_not_called_without_a_pause() -> None:
    body = fed(b"abc", high_water=10)
    body.read(-1)
    body.feed(b"abc")
    body.take(10)
    assert body.drained == []


def test_drained_again_after_a_new_pause() -> None:
    body = Recorder(high_water=4)
    body.feed(b"12345")
    body.take(5)
    body.feed(b"12345")
    body.read(5)
    assert body.drained == [True, False]


# -- 100 Continue ------------------------------------------------------------------------


def test_first_read_hook_once_when_the_client_expects_continue() -> None:
    body = Recorder(expect_continue=True)
    body.feed(b"abc")
    assert body.read(1) == b"a"
    assert body.read(1) == b"b"
    assert body.first_reads == 1
    assert not body.expect_continue
    body.send_continue()  # the read already answered it
    assert body.continues == 0


def test_first_read_hook_runs_before_the_read_waits() -> None:
    # The client sends nothing until it gets "100 Continue": the hook must come first.
    body = Recorder(expect_continue=True)
    reader = blocked_reader(body)
    assert body.first_reads == 1
    body.feed(b"x")
    assert reader.result() == b"x"


def test_no_continue_hooks_without_expect_continue() -> None:
    body = Recorder()
    body.feed(b"abc")
    body.read(1)
    body.send_continue()
    assert (body.first_reads, body.continues) == (0, 0)


def test_send_continue_calls_the_continue_hook_once() -> None:
    body = Recorder(expect_continue=True)
    body.send_continue()
    body.send_continue()
    assert body.continues == 1
    body.feed(b"abc")
    body.read(1)
    assert body.first_reads == 0


def test_cancel_continue_stops_both_hooks() -> None:
    body = Recorder(expect_continue=True)
    body.cancel_continue()
    body.send_continue()
    body.feed(b"abc")
    body.read(1)
    assert (body.first_reads, body.continues) == (0, 0)


# -- fed / consumed ------------------------------------------------------------------------


def test_fed_and_consumed_hooks_get_the_sizes() -> None:
    body = fed(b"abc", b"", b"de")
    assert body.fed == [3, 2]  # an empty feed adds nothing
    body.read(2)
    body.take(10)
    assert body.consumed == [2, 3]


# -- errors and the end ------------------------------------------------------------------


def test_fail_lets_buffered_bytes_be_read_first() -> None:
    body = fed(b"abc", b"de")
    error = ClientDisconnected("gone")
    body.fail(error)
    assert body.error is error
    assert body.read(-1) == b"abcde"
    with pytest.raises(ClientDisconnected) as caught:
        body.read(1)
    assert caught.value is error
    # And again: the error stays.
    with pytest.raises(ClientDisconnected):
        body.read(1)


def test_first_error_wins() -> None:
    body = fed()
    first, second = ClientDisconnected("first"), ValueError("second")
    body.fail(first)
    body.fail(second)
    assert body.error is first
    with pytest.raises(ClientDisconnected):
        body.read(1)


def test_fail_after_eof_is_ignored() -> None:
    body = fed(b"ab")
    body.feed_eof()
    body.fail(ClientDisconnected("late"))
    assert body.error is None
    assert body.read(-1) == b"ab"
    assert body.read(-1) == b""


def test_fail_discard_drops_buffered_bytes() -> None:
    body = fed(b"abc", b"de")
    body.read(1)  # leaves a cut chunk behind
    body.fail(ClientDisconnected("gone"), discard=True)
    assert body.buffered == 0
    assert body.take(10) == b""
    with pytest.raises(ClientDisconnected):
        body.read(10)


def test_eof_gives_empty_bytes_forever() -> None:
    body = fed(b"x")
    body.feed_eof()
    assert body.eof
    assert body.read(10) == b"x"
    for _ in range(3):
        assert body.read(10) == b""
        assert body.read(-1) == b""
        assert body.take(10) == b""


@pytest.mark.parametrize("timeout", [0.0, 0.01])
def test_read_timeout_raises_client_disconnected(timeout: float) -> None:
    body = RequestBody(1024)
    started = time.monotonic()
    with pytest.raises(ClientDisconnected, match="timed out"):
        body.read(10, timeout=timeout)
    assert time.monotonic() - started < DEADLINE


def test_empty_feed_does_not_end_the_wait() -> None:
    # feed(b"") notifies the reader; it must go back to waiting, not return b"" (the end).
    body = RequestBody(1024)
    reader = blocked_reader(body)
    body.feed(b"")
    wait_until(lambda: len(body._cond._waiters) == 1, "the reader waits again")  # type: ignore[attr-defined]
    assert not reader.outcome
    body.feed(b"z")
    assert reader.result() == b"z"


# -- the listener --------------------------------------------------------------------------


def test_listener_is_called_on_feed_eof_and_fail() -> None:
    body = RequestBody(1024)
    calls: list[str] = []
    body.listener = lambda: calls.append("changed")
    body.feed(b"abc")
    assert len(calls) == 1
    body.feed_eof()
    assert len(calls) == 2
    body.fail(ClientDisconnected("late"))  # ignored after eof, but still told
    assert len(calls) == 3
    body.read(-1)
    body.take(1)
    assert len(calls) == 3  # the consumer's own moves are not reported to it


def test_listener_runs_outside_the_lock() -> None:
    # A loop-side consumer takes from inside its listener; under the lock that would hang.
    body = RequestBody(1024)
    taken: list[bytes] = []
    body.listener = lambda: taken.append(body.take(100))
    worker = threading.Thread(target=lambda: body.feed(b"abc"), daemon=True)
    worker.start()
    worker.join(DEADLINE)
    assert not worker.is_alive()
    assert taken == [b"abc"]


# -- any feeds, any reads --------------------------------------------------------------


@settings(max_examples=200, deadline=None)
@given(
    chunks=st.lists(st.binary(max_size=40), max_size=30),
    sizes=st.lists(st.integers(min_value=1, max_value=50) | st.just(-1), min_size=1),
)
def test_any_feeds_and_any_read_sizes_reassemble_the_bytes(
    chunks: list[bytes], sizes: list[int]
) -> None:
    body = RequestBody(16)
    for chunk in chunks:
        body.feed(chunk)
    body.feed_eof()
    parts = []
    for i in range(10_000):
        size = sizes[i % len(sizes)]
        part = body.read(size, timeout=0)
        if not part:
            break
        assert size < 0 or len(part) <= size
        parts.append(part)
    assert b"".join(parts) == b"".join(chunks)
    assert body.buffered == 0


@settings(max_examples=200, deadline=None)
@given(
    steps=st.lists(
        st.tuples(st.booleans(), st.binary(max_size=20), st.integers(min_value=-1, max_value=30))
    )
)
def test_interleaved_feeds_reads_and_takes_keep_order(
    steps: list[tuple[bool, bytes, int]],
) -> None:
    body = RequestBody(16)
    sent = b""
    got = b""
    for use_take, chunk, size in steps:
        body.feed(chunk)
        sent += chunk
        if use_take:
            part = body.take(size)
            assert len(part) <= max(size, 0)
        elif body.buffered:  # read() would wait for more otherwise
            part = body.read(size, timeout=0)
            # Something whenever something is buffered; read(0) gives b"", as a file's does.
            assert (part != b"") == (size != 0)
            assert size < 0 or len(part) <= size
        else:
            part = b""
        got += part
        assert body.buffered == len(sent) - len(got)
    body.feed_eof()
    got += read_all(body)
    assert got == sent
    assert body.received == len(sent)


def test_a_listener_that_drains_inside_feed_sees_the_pause_before_the_drain() -> None:
    # A consumer on the loop may take the buffer down from inside feed() (its listener):
    # the pause must be announced before, so that the drain that follows undoes it.
    events: list[str] = []

    class Body(RequestBody):
        def _paused(self) -> None:
            events.append("paused")

        def _drained(self, *, loop_side: bool) -> None:
            events.append("drained")

    body = Body(100)
    body.listener = lambda: events.append("listener") or (body.take(1000) and None)
    assert body.feed(b"x" * 150) is True
    assert events == ["paused", "listener", "drained"]
    assert not body.paused and body.buffered == 0


def test_unread_puts_taken_bytes_back_in_front() -> None:
    body = RequestBody(1 << 20)
    body.feed(b"abcdef")
    body.feed(b"gh")
    body.feed_eof()
    taken = body.take(4)  # cuts the first chunk, which keeps an offset
    assert taken == b"abcd"
    body.unread(taken)
    assert body.buffered == 8
    assert body.take(100) == b"abcdefgh"
    body.unread(b"")  # nothing to put back
    assert body.buffered == 0 and body.eof
