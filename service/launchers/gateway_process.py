"""Run the gateway as a separate process on loopback and wait until it is ready.

Used by `memotion demo`, the benchmarks and the tests: the real server, started the way a user
starts it (`memotion serve`), never an in-process stand-in.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx

from service.launchers.child_process import StoppedOnExit, free_port, read_log, temporary_log


class GatewayStartError(RuntimeError):
    """The gateway process died or was not ready in time; the message carries its output."""


class GatewayProcess(StoppedOnExit):
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
        self.log_path = Path(log_path) if log_path is not None else temporary_log("memotion-gateway-")

    def log_text(self) -> str:
        return read_log(self.log_path)

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
        with open(self.log_path, "wb") as log_file:
            process = subprocess.Popen(
                command,
                stdout=log_file,
                stderr=subprocess.STDOUT,
                env={**os.environ, "PYTHONUNBUFFERED": "1", **self.env},
                start_new_session=True,
            )
        self._process = process
        return self._wait_ready(process)

    def _wait_ready(self, process: subprocess.Popen[bytes]) -> str:
        """Poll /readyz until 200; GatewayStartError with the server's output if it dies or times out."""
        deadline = time.monotonic() + self.ready_timeout_s
        last = "none yet"
        while time.monotonic() < deadline:
            if process.poll() is not None:
                code, output = process.returncode, self.log_text()[-4000:]
                self.stop()
                raise GatewayStartError(f"gateway exited with status {code} before it was ready:\n{output}")
            try:
                response = httpx.get(f"{self.base_url}/readyz", timeout=2)
                if response.status_code == 200:
                    return self.base_url
                last = f"{response.status_code} {response.text[:300]}"
            except httpx.HTTPError as err:
                last = repr(err)
            time.sleep(0.25)
        output = self.log_text()[-4000:]
        self.stop()
        raise GatewayStartError(
            f"gateway at {self.base_url} not ready after {self.ready_timeout_s:.0f} s (last answer: {last}):\n{output}"
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

    def kill(self) -> None:
        """SIGKILL the gateway and its worker processes at once: a crash, no shutdown code runs."""
        process, self._process = self._process, None
        if not self._keep_log:
            self.log_path.unlink(missing_ok=True)
        if process is None:
            return
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)  # its own session (start_new_session): the whole group
        process.wait()

    def __enter__(self) -> str:
        return self.start()
