"""What every launched server shares: a free loopback port, a log file, `with` stopping it."""

from __future__ import annotations

import os
import socket
import tempfile
from pathlib import Path
from types import TracebackType


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def temporary_log(prefix: str) -> Path:
    """An empty temporary file for a child's output (the launcher removes it on stop)."""
    handle, name = tempfile.mkstemp(prefix=prefix, suffix=".log")
    os.close(handle)
    return Path(name)


def read_log(path: Path | None) -> str:
    """A child's output so far, or "<no log>"."""
    try:
        return path.read_text(errors="replace") if path is not None else "<no log>"
    except OSError:
        return "<no log>"


class StoppedOnExit:
    """Leaving a ``with`` block stops the launched process, whatever happened inside it."""

    def stop(self, timeout_s: float = 15.0) -> int | None:
        raise NotImplementedError

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
