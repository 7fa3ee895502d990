"""Run the gateway as a separate process on loopback and wait until it is ready.

Used by `memotion demo`, the benchmarks and the tests: the real server, started the way a user
starts it (`memotion serve`), never an in-process stand-in.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import TracebackType

import httpx


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


class GatewayStartError(RuntimeError):
    """The gateway process died or was not ready in time; the message carries its output."""


def _temporary_log() -> Path:
    handle, name = tempfile.mkstemp(prefix="memotion-gateway-", suffix=".log")
    os.close(handle)
    return Path(name)


class GatewayProcess:
    """``with GatewayProcess(repo) as base_url:`` starts `memotion serve`, waits for /readyz."""

    def __init__(
        self,
        repository: Path,
        host: str = "127.0.0.1",
        port: int = 0,
        env: dict[str, str] | None = None,
        ready_timeout_s: float = 180.0,
        log_path: Path | None = None,
    ) -> None:
        self.repository = Path(repository)
        self.host = host
        self.port = port or free_port(host)
        self.env = env or {}
        self.ready_timeout_s = ready_timeout_s
        self.base_url = f"http://{host}:{self.port}"
        self._process: subprocess.Popen[bytes] | None = None
        # The server's output: kept at ``log_path`` when given, else a temporary file removed on stop.
        self._keep_log = log_path is not None
        self.log_path = Path(log_path) if log_path is not None else _temporary_log()

    def log_text(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return "<no log>"

    def start(self) -> str:
        command = [
            sys.executable,
            "-m",
            "service",
            "serve",
            "--repository",
            str(self.repository),
            "--host",
            self.host,
            "--port",
            str(self.port),
        ]
        with open(self.log_path, "wb") as log:
            self._process = subprocess.Popen(
                command,
                stdout=log,
                stderr=subprocess.STDOUT,
                env={**os.environ, "PYTHONUNBUFFERED": "1", **self.env},
                start_new_session=True,
            )
        deadline = time.monotonic() + self.ready_timeout_s
        last = "none yet"
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                code, log = self._process.returncode, self.log_text()[-4000:]
                self.stop()
                raise GatewayStartError(f"gateway exited with status {code} before it was ready:\n{log}")
            try:
                response = httpx.get(f"{self.base_url}/readyz", timeout=2)
                if response.status_code == 200:
                    return self.base_url
                last = f"{response.status_code} {response.text[:300]}"
            except httpx.HTTPError as err:
                last = repr(err)
            time.sleep(0.25)
        log = self.log_text()[-4000:]
        self.stop()
        raise GatewayStartError(
            f"gateway at {self.base_url} not ready after {self.ready_timeout_s:.0f} s (last answer: {last}):\n{log}"
        )

    def stop(self, timeout_s: float = 15.0) -> int | None:
        """SIGTERM (graceful: in-flight requests finish), then SIGKILL after ``timeout_s``."""
        process, self._process = self._process, None
        if not self._keep_log:
            self.log_path.unlink(missing_ok=True)
        if process is None:
            return None
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout_s)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        return process.returncode

    def __enter__(self) -> str:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
