"""Connection handling edge cases: half-close mid-body, 100-continue after the head,
pipelined requests at shutdown."""

from __future__ import annotations

import signal
import socket
import time

import pytest

from tests.conftest import recv_until_closed


def test_half_close_mid_body_ends_the_connection_promptly(start_server) -> None:  # type: ignore[no-untyped-def]
    server = start_server("review_apps:read_body")
    sock = server.connect()
    sock.sendall(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n0123456789")
    sock.shutdown(socket.SHUT_WR)
    started = time.monotonic()
    data = recv_until_closed(sock, timeout=10)
    # The application's read() fails at once; the server closes instead of waiting a
    # minute for bytes that cannot come, and sends no made-up success.
    assert time.monotonic() - started < 5
    assert b"200 OK" not in data


def test_no_100_continue_inside_a_started_response(start_server) -> None:  # type: ignore[no-untyped-def]
    server = start_server("review_apps:respond_then_read")
    sock = server.connect()
    sock.sendall(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n")
    sock.settimeout(5)
    head = b""
    while b"part1" not in head:
        chunk = sock.recv(65536)
        assert chunk, head
        head += chunk
    sock.sendall(b"hello")
    rest = recv_until_closed(sock, timeout=10)
    whole = head + rest
    assert b"100 Continue" not in whole
    assert whole.startswith(b"HTTP/1.1 200 OK")
    assert b"|5" in whole


def test_pipelined_requests_are_answered_on_sigterm(start_server) -> None:  # type: ignore[no-untyped-def]
    server = start_server("review_apps:slow_path")
    sock = server.connect()
    sock.sendall(b"".join(f"GET /{i} HTTP/1.1\r\nHost: x\r\n\r\n".encode() for i in range(3)))
    time.sleep(0.1)  # let the server read all three before it is told to stop
    server.signal(signal.SIGTERM)
    data = recv_until_closed(sock, timeout=15)
    assert data.count(b"HTTP/1.1 200 OK") == 3
    bodies = [data.index(b"\r\n\r\n/" + str(i).encode()) for i in range(3)]
    assert bodies == sorted(bodies)  # answered in order
    assert data.rstrip().endswith(b"/2")
    assert data.count(b"Connection: close") == 1  # only the last one closes
    assert server.proc.wait(timeout=15) == 0


BIG_APP = """\
import os

SIZE = 16 * 1024 * 1024
STREAM = os.environ["BIG_STREAM"] == "1"

def application(environ, start_response):
    start_response("200 OK", [("Content-Type", "application/octet-stream"),
                              ("Content-Length", str(SIZE))])
    if STREAM:
        return (b"x" * 65536 for _ in range(SIZE // 65536))
    return [b"x" * SIZE]
"""


@pytest.mark.parametrize(
    "stream",
    [
        # One piece: the response is finished at once and waits in the server's buffer.
        pytest.param("0", id="finished-response"),
        # Streamed: the worker thread writing it waits for the client.
        pytest.param("1", id="worker-waiting"),
    ],
)
def test_a_client_that_never_reads_is_dropped_after_send_timeout(  # type: ignore[no-untyped-def]
    start_server, tmp_path, stream: str
) -> None:
    script = tmp_path / "big.wsgi"
    script.write_text(BIG_APP)
    server = start_server(script, "--send-timeout", "1", env={"BIG_STREAM": stream})
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect(("127.0.0.1", server.port))
    sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    # The client takes nothing for four times --send-timeout (the server's tick notices a
    # stall within a second, and drops it a --send-timeout later), then reads what is left.
    time.sleep(4.0)
    data = b""
    sock.settimeout(10)
    try:
        while chunk := sock.recv(65536):
            data += chunk
    except ConnectionResetError:
        pass
    finally:
        sock.close()
    assert data.startswith(b"HTTP/1.1 200 OK")
    # Dropped, not kept open until the client reads it all.
    assert len(data) < 16 * 1024 * 1024


def test_a_trickling_request_body_gets_408_and_frees_the_worker(start_server) -> None:  # type: ignore[no-untyped-def]
    # One worker thread: if the trickling client held it, the second request would wait.
    server = start_server("review_apps:read_body", "--body-timeout", "1", "--threads", "1")
    slow = server.connect()
    slow.sendall(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\nab")
    started = time.monotonic()
    slow.settimeout(0.3)
    answer = b""
    while time.monotonic() - started < 15 and not answer:
        try:
            slow.sendall(b"c")  # one byte every 0.3 s: far under 500 bytes/s
            answer = slow.recv(65536)
        except TimeoutError:
            continue
        except (BrokenPipeError, ConnectionResetError):
            break
    assert answer.startswith(b"HTTP/1.1 408 "), answer
    assert time.monotonic() - started < 10
    slow.close()
    # The worker is free again, and a body sent at an ordinary pace is read whole.
    steady = server.connect()
    steady.sendall(
        b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 6000\r\nConnection: close\r\n\r\n"
    )
    for _ in range(6):
        steady.sendall(b"x" * 1000)  # 4000 bytes/s for 1.5 s: above the minimum rate
        time.sleep(0.25)
    data = recv_until_closed(steady)
    assert data.startswith(b"HTTP/1.1 200 OK") and data.endswith(b"\r\n\r\n6000\n"), data
