"""`python -m bench.streams`: live stream latency and idle cost, on a fresh PostgreSQL database.

latency: `python -m app serve --workers 2`, STREAMS open SSE streams, then EVENTS employees
created one at a time through the API. For each event and stream: the stream's receipt time
minus the time the write's answer came back (the commit happened before that answer left, so
this slightly understates; the figure from the moment the write was sent overstates by the
write's own duration, and is reported too).

idle: one worker, a long heartbeat, IDLE_STREAMS open streams; the worker's RSS before and
after opening them (/proc), and the CPU time it uses over IDLE_SECONDS without streams and
then with all of them open.
"""

import argparse
import asyncio
import json
import os
import re
import signal
import socket
import statistics
import subprocess
import sys
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import httpx
from jose import jwt

from bench.data import create_database, database_dsn, drop_database, unique_name
from bench.servers import asyncpg_url
from bench.setup import migrate

DEFAULT_DSN = "postgresql://postgres@127.0.0.1:5432/postgres"
REPO = Path(__file__).resolve().parents[1]
SECRET = "bench-streams-" + "k" * 40
ISSUER, AUDIENCE = "employee-records-api", "employee-records-api"
EMP_ID = re.compile(rb'"emp_id":(\d+)')


async def make_account(dsn: str, role: str) -> str:
    """An account with a standing sign-in, and an access token for it (as the tests mint)."""
    user_id = uuid.uuid4()
    connection = await asyncpg.connect(dsn)
    try:
        now = datetime.now(UTC)
        await connection.execute(
            "INSERT INTO app_user (id, username, hashed_password, role, is_active, created_at,"
            " token_version) VALUES ($1, $2, 'x', $3, true, $4, 0)",
            user_id,
            f"bench-{role}-{user_id.hex[:8]}",
            role,
            now,
        )
        await connection.execute(
            "INSERT INTO sign_in (id, user_id, created_at, expires_at) VALUES ($1, $1, now(), $2)",
            user_id,
            now + timedelta(days=1),
        )
    finally:
        await connection.close()
    claims = {
        "iss": ISSUER,
        "aud": AUDIENCE,
        "sub": str(user_id),
        "iat": int(time.time()),
        "exp": int(time.time()) + 3600,
        "jti": uuid.uuid4().hex,
        "type": "access",
        "ver": 0,
        "sid": str(user_id),
    }
    return str(jwt.encode(claims, SECRET, algorithm="HS256"))


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start_server(dsn: str, workers: int, **env: str) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    values = {
        **os.environ,
        "DATABASE_URL": asyncpg_url(dsn),
        "JWT_SECRET_KEY": SECRET,
        "RATE_LIMIT_ENABLED": "false",
        "ACCESS_LOG": "false",
        "LOG_LEVEL": "warning",
        "STREAM_MAX_PER_ACCOUNT": "1000",
        "STREAM_MAX_PER_WORKER": "2000",
        **env,
    }
    command = [sys.executable, "-m", "app", "serve", "--port", str(port), "--workers"]
    server = subprocess.Popen([*command, str(workers)], cwd=REPO, env=values)  # noqa: S603
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{base}/health/ready", timeout=1).status_code == 200:
                return server, base
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    server.terminate()
    raise SystemExit("the server did not start")


class Stream:
    """One SSE stream over a plain socket: the time each emp_id arrived."""

    def __init__(self) -> None:
        self.arrived: dict[int, float] = {}
        self.open = asyncio.Event()
        self.task: asyncio.Task[None] | None = None

    async def run(self, port: int, token: str) -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(
            f"GET /v1/employees/events HTTP/1.1\r\nHost: bench\r\nAccept: text/event-stream\r\n"
            f"Authorization: Bearer {token}\r\n\r\n".encode()
        )
        head = await reader.readuntil(b"\r\n\r\n")
        if b" 200 " not in head.split(b"\r\n", 1)[0]:
            raise RuntimeError(head.decode())
        self.open.set()
        try:
            while data := await reader.read(65536):
                now = time.perf_counter()
                for match in EMP_ID.finditer(data):
                    self.arrived.setdefault(int(match.group(1)), now)
        finally:
            writer.close()


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


async def open_streams(port: int, token: str, count: int) -> list[Stream]:
    streams = [Stream() for _ in range(count)]
    for stream in streams:
        stream.task = asyncio.create_task(stream.run(port, token))
    await asyncio.wait_for(asyncio.gather(*(s.open.wait() for s in streams)), 60)
    return streams


async def latency(dsn: str, streams_count: int, events: int) -> dict[str, Any]:
    server, base = start_server(dsn, 2)
    try:
        admin, reader = await make_account(dsn, "admin"), await make_account(dsn, "user")
        port = int(base.rsplit(":", 1)[1])
        streams = await open_streams(port, reader, streams_count)
        headers = {"Authorization": f"Bearer {admin}"}
        sent: dict[int, float] = {}
        answered: dict[int, float] = {}
        async with httpx.AsyncClient(base_url=base, headers=headers, timeout=30) as client:
            for n in range(events + 5):  # the first 5 warm up, not counted
                emp_id = 500_000 + n
                body = {"emp_id": emp_id, "emp_name": "Bench Stream", "city": "Oslo"}
                body |= {"country": "Norway", "emp_dob": "1990-01-01"}
                sent[emp_id] = time.perf_counter()
                response = await client.post("/v1/employees/", json=body)
                answered[emp_id] = time.perf_counter()
                assert response.status_code == 201, response.text
                await asyncio.sleep(0.1)
        await asyncio.sleep(2)
        counted = list(range(500_005, 500_005 + events))
        after_answer, after_send, worst = [], [], []
        missing = 0
        for emp_id in counted:
            per_event = []
            for stream in streams:
                if emp_id not in stream.arrived:
                    missing += 1
                    continue
                per_event.append(stream.arrived[emp_id] - answered[emp_id])
                after_send.append(stream.arrived[emp_id] - sent[emp_id])
            after_answer += per_event
            worst.append(max(per_event))
        for stream in streams:
            assert stream.task is not None
            stream.task.cancel()
        ms = 1000
        return {
            "streams": streams_count,
            "events": events,
            "deliveries": len(after_answer),
            "missing": missing,
            "after_answer_ms": {
                "median": statistics.median(after_answer) * ms,
                "p99": percentile(after_answer, 0.99) * ms,
                "max": max(after_answer) * ms,
            },
            "after_send_ms": {
                "median": statistics.median(after_send) * ms,
                "p99": percentile(after_send, 0.99) * ms,
            },
            "slowest_stream_per_event_ms": {
                "median": statistics.median(worst) * ms,
                "p99": percentile(worst, 0.99) * ms,
            },
        }
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(30)


def rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError("no VmRSS")


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def idle(dsn: str, count: int, seconds: float) -> dict[str, Any]:
    # One worker: uvicorn serves in the process it starts, whose RSS is the worker's.
    server, base = start_server(dsn, 1, STREAM_HEARTBEAT_SECONDS="300")
    try:
        reader = await make_account(dsn, "user")
        port = int(base.rsplit(":", 1)[1])
        async with httpx.AsyncClient(base_url=base, timeout=30) as client:  # warm the paths
            await client.get("/v1/employees/changes", headers={"Authorization": f"Bearer {reader}"})
        await asyncio.sleep(1)
        before = rss_kb(server.pid)
        cpu_before = cpu_seconds(server.pid)
        await asyncio.sleep(seconds)
        cpu_without = cpu_seconds(server.pid) - cpu_before
        streams = await open_streams(port, reader, count)
        await asyncio.sleep(2)
        after = rss_kb(server.pid)
        cpu_before = cpu_seconds(server.pid)
        await asyncio.sleep(seconds)
        cpu_used = cpu_seconds(server.pid) - cpu_before
        for stream in streams:
            assert stream.task is not None
            stream.task.cancel()
        return {
            "streams": count,
            "rss_before_mb": before / 1024,
            "rss_after_mb": after / 1024,
            "added_mb": (after - before) / 1024,
            "idle_seconds": seconds,
            "cpu_seconds_without_streams": cpu_without,
            "cpu_seconds_while_idle": cpu_used,
        }
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(30)


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dsn", default=os.environ.get("BENCH_DSN", DEFAULT_DSN))
    parser.add_argument("--streams", type=int, default=200)
    parser.add_argument("--events", type=int, default=50)
    parser.add_argument("--idle-streams", type=int, default=1000)
    parser.add_argument("--idle-seconds", type=float, default=10)
    options = parser.parse_args()
    name = unique_name("bench_streams")
    await create_database(options.dsn, name)
    dsn = database_dsn(options.dsn, name)
    try:
        await asyncio.to_thread(migrate, dsn)
        results = {
            "measured_at": datetime.now(UTC).isoformat(timespec="seconds"),
            "cpus": os.cpu_count(),
            "latency": await latency(dsn, options.streams, options.events),
            "idle": await idle(dsn, options.idle_streams, options.idle_seconds),
        }
    finally:
        await drop_database(options.dsn, name)
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    asyncio.run(main())
