"""HTTP/1.1 over a raw socket, for what a well-behaved client hides: whether a keep-alive connection
survives an error answer (httpx quietly opens a new connection when the server dropped one), and
clients that hang up mid-body. Used by tests/fuzz_runner.py, tests/test_fuzz_*.py and
bench/hostile_probes.py.
"""

from __future__ import annotations

import socket
from dataclasses import dataclass

WAIT_S = 30.0


@dataclass
class RawResponse:
    status: int
    headers: dict[str, str]  # lower-case names
    body: bytes

    @property
    def closes(self) -> bool:
        return self.headers.get("connection", "").lower() == "close"


def address(base_url: str) -> tuple[str, int]:
    host, port = base_url.removeprefix("http://").rstrip("/").split(":")
    return host, int(port)


def connect(base_url: str, timeout_s: float = WAIT_S) -> socket.socket:
    sock = socket.create_connection(address(base_url), timeout=timeout_s)
    sock.settimeout(timeout_s)
    return sock


def request_bytes(method: str, path: str, body: bytes = b"", headers: dict[str, str] | None = None) -> bytes:
    """One request with ``Content-Length`` (unless ``headers`` says otherwise) and ``Host``."""
    lines = [f"{method} {path} HTTP/1.1", "Host: probe"]
    given = {k.lower() for k in (headers or {})}
    if "content-length" not in given and "transfer-encoding" not in given and (body or method == "POST"):
        lines.append(f"Content-Length: {len(body)}")
    lines += [f"{k}: {v}" for k, v in (headers or {}).items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


def _read_until(sock: socket.socket, buffer: bytearray, marker: bytes) -> int:
    while marker not in buffer:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError("the server closed the connection without a complete answer")
        buffer += chunk
    return buffer.index(marker)


def _read_exact(sock: socket.socket, buffer: bytearray, count: int) -> None:
    while len(buffer) < count:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError("the server closed the connection in the middle of an answer")
        buffer += chunk


def read_response(sock: socket.socket, buffer: bytearray | None = None) -> RawResponse:
    """One response (``Content-Length`` or chunked body); ConnectionError when there is none."""
    buffer = bytearray() if buffer is None else buffer
    end = _read_until(sock, buffer, b"\r\n\r\n")
    head = bytes(buffer[:end]).decode("latin-1").split("\r\n")
    del buffer[: end + 4]
    status = int(head[0].split()[1])
    headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in head[1:])}
    if headers.get("transfer-encoding", "").lower() == "chunked":
        body = bytearray()
        while True:
            size_end = _read_until(sock, buffer, b"\r\n")
            size = int(bytes(buffer[:size_end]).split(b";")[0], 16)
            _read_exact(sock, buffer, size_end + 2 + size + 2)
            body += buffer[size_end + 2 : size_end + 2 + size]
            del buffer[: size_end + 2 + size + 2]
            if size == 0:
                return RawResponse(status, headers, bytes(body))
    length = int(headers.get("content-length", "0"))
    _read_exact(sock, buffer, length)
    body_bytes = bytes(buffer[:length])
    del buffer[:length]
    return RawResponse(status, headers, body_bytes)


def hang_up(base_url: str, path: str, content_type: str, declared: int, sent: bytes) -> None:
    """A client that declares a ``declared``-byte body, sends ``sent`` of it and closes the connection."""
    head = request_bytes("POST", path, headers={"Content-Type": content_type, "Content-Length": str(declared)})
    with connect(base_url) as sock:
        sock.sendall(head + sent)


@dataclass
class FollowUp:
    """An error answer and what became of its connection: ``kept`` (a follow-up GET on it was
    answered), ``closed`` (``Connection: close``, then closed) or ``dropped`` (neither: a bug)."""

    status: int
    verdict: str
    detail: str = ""


def follow_up(base_url: str, raw_request: bytes, follow_path: str = "/healthz") -> FollowUp:
    """Send ``raw_request``, read its answer, then ask ``follow_path`` on the same connection."""
    with connect(base_url) as sock:
        sock.sendall(raw_request)
        try:
            first = read_response(sock)
        except (ConnectionError, OSError) as err:
            return FollowUp(0, "dropped", f"no answer: {err}")
        if first.closes:
            sock.settimeout(10.0)
            try:
                verdict = "closed" if sock.recv(1) == b"" else "dropped"
            except ConnectionResetError:
                verdict = "closed"
            except TimeoutError:
                verdict = "dropped"  # said close, kept the connection open
            return FollowUp(first.status, verdict)
        try:
            sock.sendall(request_bytes("GET", follow_path))
            second = read_response(sock)
        except (ConnectionError, OSError) as err:
            return FollowUp(first.status, "dropped", f"follow-up: {err}")
        return FollowUp(first.status, "kept" if second.status == 200 else "dropped", f"follow-up {second.status}")
