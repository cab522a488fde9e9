"""A webhook receiver for the tests: a real HTTP server on 127.0.0.1 (a thread of the test
process) that verifies every delivery's signature as the Standard Webhooks specification says,
and records what arrived. It can be stopped and started again on the same port, answer with
another status, answer slowly, or redirect."""

import base64
import hashlib
import hmac
import json
import ssl
import threading
import time
from collections import Counter
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

TOLERANCE_SECONDS = 5 * 60


def verify(secret: str, headers: dict[str, str], body: bytes) -> bool:
    """The specification's check: HMAC-SHA256 with the base64-decoded secret over
    `{webhook-id}.{webhook-timestamp}.{body}`, compared in constant time with each `v1,`
    signature of the header, and a timestamp within the tolerance."""
    message_id = headers["webhook-id"]
    timestamp = headers["webhook-timestamp"]
    if abs(time.time() - int(timestamp)) > TOLERANCE_SECONDS:
        return False
    key = base64.b64decode(secret.removeprefix("whsec_"))
    signed = f"{message_id}.{timestamp}.".encode() + body
    expected = base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode()
    for candidate in headers["webhook-signature"].split(" "):
        version, _, value = candidate.partition(",")
        if version == "v1" and hmac.compare_digest(value, expected):
            return True
    return False


@dataclass(frozen=True)
class Received:
    webhook_id: str
    headers: dict[str, str]
    body: dict[str, Any]
    verified: bool
    path: str
    raw: bytes


class Receiver:
    def __init__(self, secret: str = "", tls: ssl.SSLContext | None = None) -> None:
        self.secret = secret
        self.tls = tls
        self.received: list[Received] = []
        self.status = 204
        self.statuses: list[int] = []  # answered first, one each, before `status`
        self.delay = 0.0
        self.redirect_to: str | None = None
        self.in_flight: Counter[str] = Counter()
        self.max_in_flight: Counter[str] = Counter()
        self.lock = threading.Lock()
        self.port = 0
        self.server: ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hook"

    @property
    def https_url(self) -> str:
        return f"https://localhost:{self.port}/hook"

    def start(self) -> "Receiver":
        self.server = ThreadingHTTPServer(("127.0.0.1", self.port), self._handler())
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        if self.tls is not None:
            self.server.socket = self.tls.wrap_socket(self.server.socket, server_side=True)
        threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
        ).start()
        return self

    def stop(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()
            self.server = None

    def delivered(self) -> list[Received]:
        """What arrived and was answered 2xx."""
        with self.lock:
            return [item for item in self.received if item.path == "/hook:ok"]

    def _answer(self) -> int:
        with self.lock:
            return self.statuses.pop(0) if self.statuses else self.status

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length", "0")))
                headers = {name.lower(): value for name, value in self.headers.items()}
                message_id = headers.get("webhook-id", "")
                with receiver.lock:
                    receiver.in_flight[message_id] += 1
                    receiver.max_in_flight[message_id] = max(
                        receiver.max_in_flight[message_id], receiver.in_flight[message_id]
                    )
                try:
                    time.sleep(receiver.delay)
                    status = receiver._answer()
                    if receiver.redirect_to is not None and self.path == "/hook":
                        status = 307
                    ok = 200 <= status < 300
                    verified = verify(receiver.secret, headers, body) if message_id else False
                    item = Received(
                        message_id,
                        headers,
                        json.loads(body or b"{}"),
                        verified,
                        self.path + (":ok" if ok else f":{status}"),
                        body,
                    )
                    with receiver.lock:
                        receiver.received.append(item)
                    self.send_response(status)
                    if status == 307:
                        self.send_header("Location", receiver.redirect_to or "")
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                finally:
                    with receiver.lock:
                        receiver.in_flight[message_id] -= 1

            def log_message(self, *_: Any) -> None:
                pass

        return Handler
