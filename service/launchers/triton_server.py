"""Run a real ``tritonserver`` on an exported model repository, on loopback, and wait until ready.

The binary comes from the PyPI package ``nvidia-pytriton`` (Triton with the python backend, which
runs on a CPU-only machine), installed in its own virtual environment because the server-side
Python needs numpy<2: ``make .venv-triton``. Used by the tests, ``bench/serving.py`` and
``memotion triton-serve``. On GPU nodes run NVIDIA's Triton container on the same repository
instead (see model_repository/README.md).

    with TritonServerProcess(Path("model_repository")) as server:
        print(server.grpc_url, server.http_url, server.metrics_url)
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import httpx

from memotion.manifest import ManifestError, load_manifest
from memotion.triton_repository import missing_triton_files
from service.launchers.child_process import StoppedOnExit, free_port, read_log, temporary_log

PROJECT_ROOT = Path(__file__).resolve().parents[1]
TRITON_VENV = PROJECT_ROOT / ".venv-triton"
TRITON_PYTHON_ENV = "MEMOTION_TRITON_PYTHON"  # overrides <project>/.venv-triton/bin/python


class TritonServerError(RuntimeError):
    """tritonserver cannot be found, or exited / was not ready in time (the message says why)."""


@dataclass(frozen=True)
class TritonInstall:
    """A server-side Python environment with nvidia-pytriton (tritonserver + python backend)."""

    python: Path
    site_packages: Path
    libdir: Path
    python_version: str  # "3.11"

    @property
    def server_root(self) -> Path:
        return self.site_packages / "pytriton" / "tritonserver"

    @property
    def binary(self) -> Path:
        return self.server_root / "bin" / "tritonserver"

    @property
    def stub(self) -> Path:
        return self.server_root / "python_backend_stubs" / self.python_version / "triton_python_backend_stub"

    def environment(self) -> dict[str, str]:
        """tritonserver's environment: its bundled libraries, and the libpython its stub needs
        (without LIBDIR the stub loads another libpython); the venv first on PATH."""
        libraries = [str(self.libdir), str(self.site_packages / "nvidia_pytriton.libs")]
        if os.environ.get("LD_LIBRARY_PATH"):
            libraries.append(os.environ["LD_LIBRARY_PATH"])
        return {
            **os.environ,
            "LD_LIBRARY_PATH": ":".join(libraries),
            "PATH": f"{self.python.parent}:{os.environ.get('PATH', '')}",
        }


def find_triton_install(python: Path | None = None) -> TritonInstall:
    """The tritonserver install: ``python`` if given, else $MEMOTION_TRITON_PYTHON, else
    ``<project>/.venv-triton/bin/python``. TritonServerError says how to make one if none is there."""
    candidate = python or (
        Path(os.environ[TRITON_PYTHON_ENV]) if os.environ.get(TRITON_PYTHON_ENV) else TRITON_VENV / "bin" / "python"
    )
    if not Path(candidate).is_file():
        raise TritonServerError(
            f"no Triton server environment at {candidate}: run `make .venv-triton` (a venv with "
            f"nvidia-pytriton, numpy<2 and onnxruntime), or set {TRITON_PYTHON_ENV} to the python "
            "of such an environment"
        )
    probe = (
        "import json, sys, sysconfig; print(json.dumps({'purelib': sysconfig.get_paths()['purelib'], "
        "'libdir': sysconfig.get_config_var('LIBDIR'), 'version': '%d.%d' % sys.version_info[:2]}))"
    )
    try:
        out = subprocess.run(
            [str(candidate), "-c", probe], capture_output=True, text=True, check=True, timeout=60
        ).stdout
    except (OSError, subprocess.SubprocessError) as err:
        raise TritonServerError(f"cannot run the Triton server environment's python {candidate}: {err}") from err
    info = json.loads(out)
    install = TritonInstall(Path(candidate), Path(info["purelib"]), Path(info["libdir"]), info["version"])
    for needed in (install.binary, install.stub):
        if not needed.is_file():
            raise TritonServerError(
                f"{needed} is missing: is nvidia-pytriton installed in {candidate}? (`make .venv-triton`)"
            )
    return install


_FAILED_LOAD = re.compile(r"(failed to load '[^']+'|Poll failed for model directory '[^']+')[^\n]*")


def failed_models(log: str) -> list[str]:
    """The lines of a tritonserver log that say a model failed to load (each names the model)."""
    return sorted({match.group(0).strip().rstrip('"') for match in _FAILED_LOAD.finditer(log)})


def prepare_server_dir(install: TritonInstall) -> Path:
    """A temporary folder for ``--backend-directory=<it>/backends --cache-directory=<it>/caches``:
    the install's backends and caches, with the python-version-matching backend stub copied in."""
    workdir = Path(tempfile.mkdtemp(prefix="memotion-triton-"))
    shutil.copytree(install.server_root / "backends", workdir / "backends")
    shutil.copytree(install.server_root / "caches", workdir / "caches")
    shutil.copy2(install.stub, workdir / "backends" / "python" / install.stub.name)
    return workdir


class TritonServerProcess(StoppedOnExit):
    """``with TritonServerProcess(repo) as server:`` starts tritonserver, waits for /v2/health/ready.

    ``models``: the models to load (default: every model in the repository's manifest); Triton runs
    in explicit model-control mode, so the repository's other folders (tokenizer/) are ignored.
    The models' default ``config.pbtxt`` is used (the python backend; this Triton has no other).
    Ports 0 mean free ones. ``stop()`` ends the server and the python-backend stubs it started.
    """

    def __init__(
        self,
        repository: Path,
        *,
        models: Sequence[str] | None = None,
        host: str = "127.0.0.1",
        http_port: int = 0,
        grpc_port: int = 0,
        metrics_port: int = 0,
        install: TritonInstall | None = None,
        ready_timeout_s: float = 120.0,
        log_path: Path | None = None,
        log_verbose: int = 0,
    ) -> None:
        self.repository = Path(repository).resolve()
        self.host = host
        self.http_port = http_port or free_port(host)
        self.grpc_port = grpc_port or free_port(host)
        self.metrics_port = metrics_port or free_port(host)
        self.ready_timeout_s = ready_timeout_s
        self.log_verbose = log_verbose
        self._install = install
        self._models = list(models) if models is not None else None
        self._process: subprocess.Popen[bytes] | None = None
        self._workdir: Path | None = None
        # The server's output: kept at ``log_path`` when given, else a temporary file removed on stop.
        self._keep_log = log_path is not None
        self.log_path: Path | None = Path(log_path) if log_path is not None else None

    @property
    def http_url(self) -> str:
        return f"http://{self.host}:{self.http_port}"

    @property
    def grpc_url(self) -> str:
        return f"{self.host}:{self.grpc_port}"

    @property
    def metrics_url(self) -> str:
        return f"http://{self.host}:{self.metrics_port}/metrics"

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process is not None else None

    def exited(self) -> bool:
        """True when the server was started and has exited since (crashed, or killed by someone)."""
        return self._process is not None and self._process.poll() is not None

    def log_text(self) -> str:
        return read_log(self.log_path)

    def models(self) -> list[str]:
        """The models this server loads; TritonServerError naming any whose files are missing."""
        try:
            manifest = load_manifest(self.repository)
        except ManifestError as err:
            raise TritonServerError(f"unusable model repository: {err}") from err
        served = manifest.served_models()  # the classifiers, their stages (OSCAR's detector), OCR
        names = self._models if self._models is not None else [m.name for m in served]
        known = {m.name for m in served}
        unknown = [name for name in names if name not in known]
        if unknown:
            raise TritonServerError(
                f"models {unknown} are not in {self.repository}/manifest.json (it lists {sorted(known)})"
            )
        missing = [path for path in missing_triton_files(self.repository, manifest) if path.split("/")[0] in names]
        if missing:
            models = sorted({path.split("/")[0] for path in missing})
            raise TritonServerError(
                f"model repository {self.repository} lacks what Triton needs for model(s) "
                f"{', '.join(models)}: missing {', '.join(missing)} (re-run `memotion export`, which "
                "writes the Triton configs)"
            )
        return names

    def command(self, install: TritonInstall, workdir: Path) -> list[str]:
        command = [
            str(install.binary),
            f"--model-repository={self.repository}",
            f"--backend-directory={workdir / 'backends'}",
            f"--cache-directory={workdir / 'caches'}",
            f"--http-address={self.host}",
            f"--http-port={self.http_port}",
            f"--grpc-address={self.host}",
            f"--grpc-port={self.grpc_port}",
            "--allow-metrics=true",
            "--allow-gpu-metrics=false",
            f"--metrics-address={self.host}",
            f"--metrics-port={self.metrics_port}",
            "--model-control-mode=explicit",
            "--strict-readiness=true",
            "--exit-on-error=true",
            "--exit-timeout-secs=5",
            f"--log-verbose={self.log_verbose}",
        ]
        return command + [f"--load-model={name}" for name in self.models()]

    def start(self) -> TritonServerProcess:
        if self._process is not None:
            raise TritonServerError("this tritonserver is already running")
        self.models()  # a clear error naming missing models before anything starts
        install = self._install = self._install or find_triton_install()
        self._workdir = self._workdir or prepare_server_dir(install)
        self.log_path = self.log_path or temporary_log("memotion-triton-")
        with open(self.log_path, "ab") as log:
            self._process = subprocess.Popen(
                self.command(install, self._workdir),
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=install.environment(),
                cwd=self._workdir,
                start_new_session=True,
            )
        self._wait_ready()
        return self

    def _wait_ready(self) -> None:
        assert self._process is not None
        deadline = time.monotonic() + self.ready_timeout_s
        last = "none yet"
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                code, log = self._process.returncode, self.log_text()
                self.stop()
                failures = failed_models(log)
                reason = ("; ".join(failures) + "\n") if failures else ""
                raise TritonServerError(
                    f"tritonserver exited with status {code} before it was ready: {reason}{log[-4000:]}"
                )
            try:
                response = httpx.get(f"{self.http_url}/v2/health/ready", timeout=2)
                if response.status_code == 200:
                    return
                last = f"{response.status_code} {response.text[:200]}"
            except httpx.HTTPError as err:
                last = repr(err)
            time.sleep(0.2)
        log = self.log_text()
        self.stop()
        raise TritonServerError(
            f"tritonserver at {self.http_url} not ready after {self.ready_timeout_s:.0f} s "
            f"(last answer: {last}):\n{log[-4000:]}"
        )

    def _signal_group(self, signum: int) -> None:
        assert self._process is not None
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self._process.pid, signum)  # the server and the stubs it started (own session)

    def kill(self) -> None:
        """SIGKILL the server and its stubs at once (a crash, for fault tests); restartable."""
        process = self._process
        if process is None:
            return
        self._signal_group(signal.SIGKILL)
        process.wait()
        self._process = None

    def stop(self, timeout_s: float = 15.0) -> int | None:
        """SIGTERM (Triton finishes in-flight requests), SIGKILL after ``timeout_s``; cleans up."""
        process = self._process
        code = None
        if process is not None:
            if process.poll() is None:
                self._signal_group(signal.SIGTERM)
                with contextlib.suppress(subprocess.TimeoutExpired):
                    process.wait(timeout_s)
            self._signal_group(signal.SIGKILL)  # stubs left behind, or a server that hung
            process.wait()
            code = process.returncode
            self._process = None
        if self._workdir is not None:
            shutil.rmtree(self._workdir, ignore_errors=True)
            self._workdir = None
        if not self._keep_log and self.log_path is not None:
            self.log_path.unlink(missing_ok=True)
            self.log_path = None
        return code

    def __enter__(self) -> TritonServerProcess:
        return self.start()
