"""Request heads are bounded by the server itself: their size and the time they take to arrive.

Against `python -m app serve` with each HTTP/1.1 implementation it offers, over raw sockets:
what a client sends before the application sees a request never reaches FastAPI.
"""

import contextlib
import os
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests.test_faults import serving

LIMIT = 16_384
TIMEOUT = 1.0


@dataclass(frozen=True)
class Server:
    host: str
    port: int
    implementation: str
    pid: int  # with one worker, uvicorn serves in the process it was started as

    @property
    def base(self) -> str:
        return f"http://{self.host}:{self.port}"


@pytest.fixture(params=["httptools", "h11"])
def server(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Server]:
    """A server with a 16 KiB head limit and a 1 s deadline for heads."""
    implementation = str(request.param)
    with serving(
        tmp_path,
        f"sqlite+aiosqlite:///{tmp_path / 'heads.db'}",
        args=("--http", implementation),
        MAX_HEADER_BYTES=str(LIMIT),
        HEADER_TIMEOUT_SECONDS=str(TIMEOUT),
        ACCESS_LOG="false",
    ) as (base, process):
        host, port = base.removeprefix("http://").split(":")
        yield Server(host, int(port), implementation, process.pid)
        assert process.poll() is None


@contextlib.contextmanager
def connect(server: Server) -> Iterator[socket.socket]:
    with socket.create_connection((server.host, server.port), timeout=10) as sock:
        yield sock


def read_all(sock: socket.socket) -> bytes:
    """Everything the server sends until it closes the connection."""
    chunks = []
    with contextlib.suppress(ConnectionResetError):
        while chunk := sock.recv(65_536):
            chunks.append(chunk)
    return b"".join(chunks)


def read_response(sock: socket.socket) -> bytes:
    """One response on a connection that stays open: its head, then Content-Length bytes."""
    answer = b""
    while b"\r\n\r\n" not in answer:
        answer += sock.recv(65_536)
    head_part, body = answer.split(b"\r\n\r\n", 1)
    length = int(head_part.lower().split(b"content-length: ")[1].split(b"\r\n")[0])
    while len(body) < length:
        body += sock.recv(65_536)
    return answer


def status_of(answer: bytes) -> int:
    return int(answer.split(b" ", 2)[1])


def head(path: str = "/health/live", **headers: str) -> bytes:
    lines = [f"GET {path} HTTP/1.1", "Host: 127.0.0.1"]
    lines += [f"{name}: {value}" for name, value in headers.items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def test_a_head_over_the_limit_is_refused_and_closed(server):
    with connect(server) as sock:
        sock.sendall(head(**{"X-Padding": "a" * (LIMIT + 1)}))
        answer = read_all(sock)

    assert status_of(answer) == 431
    assert b"connection: close" in answer.lower()


def test_many_headers_adding_up_past_the_limit_are_refused(server):
    padding = {f"X-Pad-{n}": "b" * 200 for n in range(LIMIT // 200 + 5)}
    with connect(server) as sock:
        sock.sendall(head(**padding))
        assert status_of(read_all(sock)) == 431


def test_a_head_under_the_limit_is_served(server):
    with connect(server) as sock:
        sock.sendall(head(**{"X-Padding": "a" * (LIMIT - 200)}, Connection="close"))
        assert status_of(read_all(sock)) == 200


def test_an_endless_header_line_costs_the_server_almost_nothing(server):
    """64 MB of one header line: the server closes the connection after its first bytes, and
    keeps serving others meanwhile."""
    before = cpu_seconds(server.pid)
    sent = 0
    started = time.monotonic()

    def flood() -> None:
        nonlocal sent
        with connect(server) as sock, contextlib.suppress(OSError):
            sock.sendall(b"GET /health/live HTTP/1.1\r\nHost: x\r\nX-Flood: ")
            chunk = b"a" * 1_048_576
            for _ in range(64):
                sock.sendall(chunk)
                sent += len(chunk)

    thread = threading.Thread(target=flood)
    thread.start()
    answered = httpx.get(f"{server.base}/health/live", timeout=5)
    thread.join(timeout=30)

    assert answered.status_code == 200
    assert not thread.is_alive()
    assert sent < 32 * 1_048_576, "the server kept reading the flood"
    assert time.monotonic() - started < 5
    assert cpu_seconds(server.pid) - before < 1.0


def test_a_head_dribbled_slowly_is_cut_off_with_408(server):
    with connect(server) as sock:
        started = time.monotonic()
        sock.sendall(b"GET /health/live HTTP/1.1\r\nHost: x\r\n")
        with contextlib.suppress(OSError):
            for _ in range(10):
                time.sleep(0.3)
                sock.sendall(b"X-Slow: 1\r\n")
        answer = read_all(sock)

    assert status_of(answer) == 408
    # The server's clock starts when it accepts, a moment before connect() returns here.
    assert TIMEOUT - 0.1 <= time.monotonic() - started < TIMEOUT + 2


def test_a_silent_connection_is_closed_after_the_deadline(server):
    with connect(server) as sock:
        started = time.monotonic()
        answer = read_all(sock)

    assert status_of(answer) == 408
    # The server's clock starts when it accepts, a moment before connect() returns here.
    assert TIMEOUT - 0.1 <= time.monotonic() - started < TIMEOUT + 2


def test_a_large_body_is_not_counted_as_head(server):
    """Head and a body 30x the head limit in one write: the body is the body limit's business."""
    body = b'{"username": "' + b"u" * 500_000 + b'", "password": "long enough"}'
    request = (
        b"POST /auth/register HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        b"Connection: close\r\nContent-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body
    )
    with connect(server) as sock:
        sock.sendall(request)
        assert status_of(read_all(sock)) == 422


def test_requests_on_one_connection_each_get_the_whole_limit(server):
    padding = {"X-Padding": "a" * (LIMIT * 3 // 4)}
    with connect(server) as sock:
        for _ in range(3):
            sock.sendall(head(**padding))
            assert status_of(read_response(sock)) == 200
            # Well past the deadline for a head: it starts again with each request.
            time.sleep(TIMEOUT * 0.6)
