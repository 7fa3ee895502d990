"""A real redis-server for the shared result cache's tests: Debian's package ``redis-server``
(``apt-get install redis-server``), started on a free loopback port without persistence."""

from __future__ import annotations

import shutil
import subprocess
import time
from collections.abc import Iterator

import pytest

from service.launchers.gateway_process import free_port
from tests.tooling import tool_missing


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory) -> Iterator[str]:
    """A real redis-server (Debian package redis-server) on a free loopback port, no persistence."""
    if shutil.which("redis-server") is None:
        tool_missing("redis-server is not installed (`make system-packages` installs Debian's, needs apt)")
    port = free_port()
    workdir = tmp_path_factory.mktemp("redis")
    process = subprocess.Popen(
        [shutil.which("redis-server") or "redis-server", "--port", str(port), "--bind", "127.0.0.1"]
        + ["--save", "", "--appendonly", "no", "--dir", str(workdir)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.STDOUT,
    )
    import redis

    client = redis.Redis(port=port)
    for _ in range(200):
        try:
            client.ping()
            break
        except redis.ConnectionError:
            time.sleep(0.05)
    try:
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        client.close()
        process.terminate()
        process.wait(10)
