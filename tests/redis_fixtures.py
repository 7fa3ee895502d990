"""A real redis-server for the shared result cache's tests: Debian's package ``redis-server``
(``apt-get install redis-server``), started on a free loopback port without persistence.
:class:`RedisServer` also freezes it (SIGSTOP: it keeps its port and accepts connections, but never
answers -- a hung dependency) for the fuzz suite and bench/hostile_probes.py."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

from service.launchers.gateway_process import free_port
from tests.tooling import tool_missing


class RedisServer:
    """``with RedisServer() as server:`` a redis-server on ``server.url`` until the block ends."""

    def __init__(self) -> None:
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self._dir = tempfile.mkdtemp(prefix="memotion-redis-")
        self.process: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> RedisServer:
        command = [shutil.which("redis-server") or "redis-server", "--port", str(self.port), "--bind", "127.0.0.1"]
        command += ["--save", "", "--appendonly", "no", "--dir", self._dir]
        self.process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
        import redis

        client = redis.Redis(port=self.port)
        try:
            for _ in range(200):
                try:
                    client.ping()
                    break
                except redis.ConnectionError:
                    time.sleep(0.05)
        finally:
            client.close()
        return self

    @contextmanager
    def frozen(self) -> Iterator[None]:
        """Redis stopped (SIGSTOP) for the block: connections open, nothing is ever answered."""
        assert self.process is not None
        os.kill(self.process.pid, signal.SIGSTOP)
        try:
            yield
        finally:
            os.kill(self.process.pid, signal.SIGCONT)

    def __exit__(self, *_: object) -> None:
        if self.process is not None:
            self.process.terminate()
            self.process.wait(10)
        shutil.rmtree(self._dir, ignore_errors=True)


def _started() -> RedisServer:
    if shutil.which("redis-server") is None:
        tool_missing("redis-server is not installed (`make system-packages` installs Debian's, needs apt)")
    return RedisServer()


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    """A real redis-server (Debian package redis-server) on a free loopback port, no persistence."""
    with _started() as server:
        yield server


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    """The URL of a real redis-server of its own (never frozen)."""
    with _started() as server:
        yield server.url
