"""Deployment files: what can be checked without Docker or a cluster.

- Dockerfiles pass hadolint, entry points pass shellcheck, compose files match the compose spec;
- every kustomization renders with the real kustomize and validates (k8s/validate.py), and the
  validator does reject broken manifests;
- the images and manifests agree with the code: pins, ports, settings names;
- the gateway image's entry point (docker/gateway-entrypoint.sh) and health check, run outside
  Docker exactly as the image runs them, serve the session's model repository.
"""

from __future__ import annotations

import copy
import importlib.util
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
import tomllib
import yaml

from service.core.settings import GatewaySettings
from service.launchers.child_process import free_port
from tests.tooling import tool_missing

ROOT = Path(__file__).resolve().parent.parent
DOCKER = ROOT / "docker"
K8S = ROOT / "k8s"
BIN = Path(sys.executable).parent
DOCKERFILES = sorted(DOCKER.glob("*.Dockerfile"))
SCRIPTS = sorted(DOCKER.glob("*.sh"))
COMPOSE_FILES = [DOCKER / "compose.yaml", DOCKER / "compose.gpu.yaml"]
# MEMOTION_* variables that are read by the images' scripts, not by GatewaySettings.
SCRIPT_VARIABLES = {"MEMOTION_HEALTHCHECK_TIMEOUT_S"}


def _load_validator():
    spec = importlib.util.spec_from_file_location("k8s_validate", K8S / "validate.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


validate = _load_validator()


def _tool(name: str) -> str:
    for candidate in (BIN / name, shutil.which(name)):
        if candidate and os.access(candidate, os.X_OK):
            return str(candidate)
    tool_missing(f"{name} is not installed: pip install -e '.[deploy]'")


def _pyproject_pin(extra: str, name: str) -> str:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    for line in project["optional-dependencies"][extra]:
        match = re.fullmatch(rf"{re.escape(name)}(\[[^\]]*\])?==([\w.]+)", line.strip())
        if match:
            return match.group(2)
    raise AssertionError(f"pyproject.toml's {extra} extra pins no {name}")


def _dockerfile(name: str) -> str:
    return (DOCKER / name).read_text()


# --- linters -------------------------------------------------------------------------------------


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.name)
def test_dockerfile_passes_hadolint(dockerfile: Path) -> None:
    result = subprocess.run([_tool("hadolint"), "--no-color", str(dockerfile)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_hadolint_rejects_a_bad_dockerfile(tmp_path: Path) -> None:
    bad = tmp_path / "bad.Dockerfile"
    bad.write_text("FROM python:latest\nRUN apt-get install curl\nUSER root\n")
    result = subprocess.run([_tool("hadolint"), "--no-color", str(bad)], capture_output=True, text=True)
    assert result.returncode != 0 and "DL3007" in result.stdout  # the :latest tag


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: p.name)
def test_entrypoint_passes_shellcheck(script: Path) -> None:
    result = subprocess.run([_tool("shellcheck"), "--shell=sh", str(script)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    assert os.access(script, os.X_OK), f"{script.name} must be executable"


@pytest.mark.parametrize("compose", COMPOSE_FILES, ids=lambda p: p.name)
def test_compose_file_matches_the_compose_spec(compose: Path) -> None:
    result = subprocess.run(
        [_tool("check-jsonschema"), "--builtin-schema", "vendor.compose-spec", str(compose)],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stdout + result.stderr


# --- kustomize -----------------------------------------------------------------------------------


@pytest.mark.parametrize("kustomization", validate.kustomizations(), ids=lambda p: str(p.relative_to(K8S)))
def test_kustomization_renders_and_validates(kustomization: Path) -> None:
    try:
        validate.kustomize_command()
    except validate.ToolMissing as err:
        tool_missing(str(err))
    report = validate.check(kustomization)
    assert report.objects, f"{kustomization} rendered nothing"
    assert not report.errors, "\n".join(report.errors)


def test_overlays_are_complete_stacks() -> None:
    """Each overlay has what the issue asks for, with the overlay's own settings."""
    pytest.importorskip("kubernetes_validate")
    for overlay in ("cpu-dev", "gpu-prod"):
        objects = validate.render(K8S / "overlays" / overlay)
        kinds = {
            (
                o["kind"],
                o["metadata"]["name"].rsplit("-", 1)[0]
                if o["kind"] in ("ConfigMap", "Secret")
                else o["metadata"]["name"],
            )
            for o in objects
        }
        for expected in [
            ("Deployment", "memotion-gateway"),
            ("Service", "memotion-gateway"),
            ("HorizontalPodAutoscaler", "memotion-gateway"),
            ("PodDisruptionBudget", "memotion-gateway"),
            ("Deployment", "memotion-triton-v1"),
            ("Service", "memotion-triton-v1"),
            ("ServiceMonitor", "memotion-gateway"),
            ("ServiceMonitor", "memotion-triton"),
            ("ConfigMap", "memotion-gateway-config"),
        ]:
            assert expected in kinds, f"{overlay} lacks {expected}"
        gateway = _by_name(objects, "Deployment", "memotion-gateway")["spec"]["template"]["spec"]["containers"][0]
        assert gateway["readinessProbe"]["httpGet"]["path"] == "/readyz"
        assert gateway["livenessProbe"]["httpGet"]["path"] == "/healthz"
        triton = _by_name(objects, "Deployment", "memotion-triton-v1")["spec"]["template"]["spec"]
        assert triton["containers"][0]["readinessProbe"]["httpGet"]["path"] == "/v2/health/ready"
        gpus = triton["containers"][0]["resources"].get("limits", {}).get("nvidia.com/gpu")
        config = _config(objects, "memotion-triton-config")
        if overlay == "gpu-prod":
            assert gpus == "1" and triton["nodeSelector"] and triton["tolerations"]
            assert config["TRITON_MODEL_CONFIG_NAME"] == "gpu"
        else:
            assert gpus is None and "nodeSelector" not in triton
            assert config["TRITON_MODEL_CONFIG_NAME"] == ""
        # The gateways and Triton serve the same export: one repository, one model version.
        assert _config(objects, "memotion-gateway-config")["MODEL_REPOSITORY_URI"] == config["MODEL_REPOSITORY_URI"]
        version = _by_name(objects, "Deployment", "memotion-triton-v1")["metadata"]["labels"][
            "memotion.io/model-version"
        ]
        assert version == "1"
        hpa = _by_name(objects, "HorizontalPodAutoscaler", "memotion-gateway")["spec"]
        assert {m["type"] for m in hpa["metrics"]} == ({"Resource", "Pods"} if overlay == "gpu-prod" else {"Resource"})


@pytest.mark.parametrize("overlay", ["cpu-dev", "gpu-prod"])
def test_gateways_get_the_jobs_settings_and_the_webhook_secret(overlay: str, monkeypatch) -> None:
    """The rendered gateway: its settings (the jobs' among them) read as GatewaySettings, and the
    webhook HMAC key comes from the gateway Secret (optional: without it callbacks are refused)."""
    pytest.importorskip("kubernetes_validate")
    objects = validate.render(K8S / "overlays" / overlay)
    gateway = _by_name(objects, "Deployment", "memotion-gateway")["spec"]["template"]["spec"]["containers"][0]
    env = {e["name"]: e for e in gateway["env"]}
    ref = env["MEMOTION_WEBHOOK_SECRET"]["valueFrom"]["secretKeyRef"]
    assert ref["name"].startswith("memotion-gateway-secrets") and ref["key"] == "webhook-secret" and ref["optional"]
    config = _config(objects, "memotion-gateway-config")
    for name in [n for n in os.environ if n.startswith("MEMOTION_")]:
        monkeypatch.delenv(name)
    for name, value in config.items():
        if name.startswith("MEMOTION_"):
            monkeypatch.setenv(name, value)
    settings = GatewaySettings()
    assert settings.webhook_allowed_hosts and settings.jobs_retention_days > 0
    assert settings.jobs_enabled and settings.jobs_lease_s >= 3 * settings.jobs_poll_s
    assert settings.jobs_max_bytes <= 64 * 1024 * 1024  # a body the 3 GiB pod parses without trouble
    if overlay == "cpu-dev":  # the generated dev Secret holds a key; production's is the platform's
        secret = next(o for o in objects if o["kind"] == "Secret" and o["metadata"]["name"] == ref["name"])
        assert "webhook-secret" in secret["data"]
    compose = yaml.safe_load((DOCKER / "compose.yaml").read_text())["services"]["gateway"]["environment"]
    assert compose["MEMOTION_WEBHOOK_SECRET"] == "${MEMOTION_WEBHOOK_SECRET:-}"  # unset or empty: no webhooks
    assert GatewaySettings(webhook_secret="").webhook_secret is None


def _by_name(objects: list[dict], kind: str, name: str) -> dict:
    return next(o for o in objects if o["kind"] == kind and o["metadata"]["name"] == name)


def _config(objects: list[dict], prefix: str) -> dict[str, str]:
    return next(o["data"] for o in objects if o["kind"] == "ConfigMap" and o["metadata"]["name"].startswith(prefix))


@pytest.fixture(scope="module")
def gpu_prod() -> list[dict]:
    try:
        validate.kustomize_command()
    except validate.ToolMissing as err:
        tool_missing(str(err))
    pytest.importorskip("kubernetes_validate")
    return validate.render(K8S / "overlays" / "gpu-prod")


def test_validator_rejects_schema_mistakes(gpu_prod: list[dict]) -> None:
    deployment = copy.deepcopy(_by_name(gpu_prod, "Deployment", "memotion-gateway"))
    deployment["spec"]["template"]["spec"]["containers"][0]["readinessProb"] = {}  # misspelt
    assert any("readinessProb" in e for e in validate.schema_errors(deployment))
    hpa = copy.deepcopy(_by_name(gpu_prod, "HorizontalPodAutoscaler", "memotion-gateway"))
    hpa["spec"]["minReplicas"] = "three"
    assert validate.schema_errors(hpa)
    monitor = copy.deepcopy(_by_name(gpu_prod, "ServiceMonitor", "memotion-triton"))
    monitor["spec"]["endpoints"][0]["interval"] = "15 seconds"
    assert validate.schema_errors(monitor)
    rayjob = validate.render(K8S / "overlays" / "gpu-prod" / "batch")
    job = copy.deepcopy(next(o for o in rayjob if o["kind"] == "RayJob"))
    assert validate.schema_errors(job) == []
    # A pod template inside the RayJob is checked as a real PodTemplateSpec.
    job["spec"]["rayClusterSpec"]["workerGroupSpecs"][0]["template"]["spec"]["containers"][0]["imagePullPolicy"] = 3
    assert validate.schema_errors(job)
    assert validate.schema_errors({"apiVersion": "example.com/v1", "kind": "Unknown", "metadata": {"name": "x"}})


def test_validator_rejects_broken_references(gpu_prod: list[dict]) -> None:
    assert validate.reference_errors(gpu_prod) == []

    broken = copy.deepcopy(gpu_prod)
    config = next(
        o for o in broken if o["kind"] == "ConfigMap" and o["metadata"]["name"].startswith("memotion-gateway-config")
    )
    config["data"]["MEMOTION_TRITON_URL"] = "memotion-triton-v2:8001"  # a model version not deployed
    assert any("MEMOTION_TRITON_URL" in e for e in validate.reference_errors(broken))

    broken = [o for o in copy.deepcopy(gpu_prod) if o["kind"] != "ConfigMap"]  # configs not rendered
    assert any("uses ConfigMap/memotion-gateway-config" in e for e in validate.reference_errors(broken))

    broken = copy.deepcopy(gpu_prod)
    _by_name(broken, "ServiceMonitor", "memotion-triton")["spec"]["endpoints"][0]["port"] = "prometheus"
    assert any("scrapes port 'prometheus'" in e for e in validate.reference_errors(broken))

    broken = copy.deepcopy(gpu_prod)
    _by_name(broken, "Deployment", "memotion-gateway")["spec"]["replicas"] = 3
    assert any("HPA owns them" in e for e in validate.reference_errors(broken))


# --- the files agree with the code ---------------------------------------------------------------


def _memotion_variables() -> dict[str, set[str]]:
    """MEMOTION_* names each deployment file sets, by file."""
    found: dict[str, set[str]] = {}
    for path in [*K8S.rglob("*.yaml"), *COMPOSE_FILES, *DOCKERFILES, *SCRIPTS]:
        names = set(re.findall(r"\b(MEMOTION_[A-Z0-9_]+)\b", path.read_text()))
        if names:
            found[str(path.relative_to(ROOT))] = names
    return found


def test_every_memotion_variable_is_a_gateway_setting() -> None:
    settings = {f"MEMOTION_{name.upper()}" for name in GatewaySettings.model_fields}
    unknown = {path: sorted(names - settings - SCRIPT_VARIABLES) for path, names in _memotion_variables().items()}
    unknown = {path: names for path, names in unknown.items() if names}
    assert not unknown, f"MEMOTION_* variables that service/core/settings.py does not read: {unknown}"


def test_images_pin_what_pyproject_pins() -> None:
    gateway = _dockerfile("gateway.Dockerfile")
    assert "torch==" not in gateway and "easyocr" not in gateway  # the gateway runs without torch (issue 12)
    training = _dockerfile("training.Dockerfile")
    tag = re.search(r"ARG PYTORCH_IMAGE=pytorch/pytorch:([\d.]+)-cuda", training).group(1)
    assert tag == _pyproject_pin("train", "torch")
    assert f"'{tag}'" in training  # the build-time check compares the base image's torch with it
    triton = _dockerfile("triton.Dockerfile")
    assert f'"onnxruntime=={_pyproject_pin("triton-server", "onnxruntime")}"' in triton
    for constraints in ("gateway-constraints.txt", "training-constraints.txt"):
        pins = dict(
            line.split("==")
            for line in (DOCKER / constraints).read_text().splitlines()
            if line and not line.startswith("#")
        )
        if constraints == "gateway-constraints.txt":
            assert not {"torch", "torchvision", "easyocr"} & set(pins), constraints
            assert pins["rapidocr"] == _pyproject_pin("serve", "rapidocr"), constraints
        else:
            assert pins["torch"] == _pyproject_pin("train", "torch"), constraints


def test_base_images_are_pinned() -> None:
    for dockerfile in DOCKERFILES:
        text = dockerfile.read_text()
        args = dict(re.findall(r"^ARG (\w+)=(\S+)", text, flags=re.M))
        for image in re.findall(r"^FROM (\S+)", text, flags=re.M):
            image = args.get(image.strip("${}"), image)
            if image in {"build", "build-batch", "runtime", "triton"}:  # earlier stages
                continue
            name, _, tag = image.rpartition(":")
            assert name and tag and tag != "latest" and re.search(r"\d+\.\d+", tag), f"{dockerfile.name}: {image}"
    compose = yaml.safe_load((DOCKER / "compose.yaml").read_text())
    for service in compose["services"].values():
        if "build" not in service:
            # major.minor.patch, or major.minor for images that publish no patch tags (postgres:17.6)
            assert re.search(r":v?\d+\.\d+(\.\d+)?$", service["image"]), service["image"]


def test_gateway_image_matches_its_manifests() -> None:
    """Port, entry point, health check and user agree between the image and Kubernetes."""
    dockerfile = _dockerfile("gateway.Dockerfile")
    gateway_stage = dockerfile.split("AS gateway", 1)[1]
    assert 'ENTRYPOINT ["gateway-entrypoint.sh"]' in gateway_stage
    assert "docker/gateway-entrypoint.sh /usr/local/bin/gateway-entrypoint.sh" in dockerfile
    assert "docker/healthcheck.py /usr/local/bin/memotion-healthcheck" in dockerfile
    assert re.search(r'HEALTHCHECK .*CMD \["memotion-healthcheck", "/readyz"\]', gateway_stage)
    assert "USER 10001:10001" in gateway_stage and "EXPOSE 8000" in dockerfile
    deployment = yaml.safe_load((K8S / "base/gateway/deployment.yaml").read_text())
    pod = deployment["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsUser"] == 10001
    assert pod["containers"][0]["ports"][0]["containerPort"] == 8000
    triton = yaml.safe_load((K8S / "base/triton/deployment.yaml").read_text())["spec"]["template"]["spec"]
    assert "USER 10001:10001" in _dockerfile("triton.Dockerfile") and triton["securityContext"]["runAsUser"] == 10001
    assert {p["containerPort"] for p in triton["containers"][0]["ports"]} == {8000, 8001, 8002}
    assert "EXPOSE 8000 8001 8002" in _dockerfile("triton.Dockerfile")


# --- the gateway image's entry point, outside Docker -----------------------------------------------


def _entrypoint_env(**extra: str) -> dict[str, str]:
    """The environment of the image's entry point: the gateway's venv first on PATH, no MEMOTION_*
    from the test run (only the image's own ENV and ``extra``)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("MEMOTION_")}
    env.update(PATH=f"{BIN}{os.pathsep}{env.get('PATH', '')}", PYTHONUNBUFFERED="1", **extra)
    return env


def _healthcheck(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(DOCKER / "healthcheck.py"), *args], env=env, capture_output=True, text=True, timeout=30
    )


def test_gateway_entrypoint_runs_other_commands_and_passes_options(tmp_path: Path) -> None:
    entrypoint = str(DOCKER / "gateway-entrypoint.sh")
    result = subprocess.run(
        [entrypoint, "memotion", "--help"], env=_entrypoint_env(), capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0 and "serve" in result.stdout
    # Options go to `memotion serve`: a repository without a manifest is refused with status 2.
    result = subprocess.run(
        [entrypoint, "--repository", str(tmp_path)], env=_entrypoint_env(), capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 2, result.stdout + result.stderr
    assert "unusable model repository" in result.stderr


@pytest.mark.slow
def test_gateway_entrypoint_serves_the_model_repository(model_repository: Path, tmp_path: Path) -> None:
    """docker/gateway-entrypoint.sh with the image's defaults (MEMOTION_HOST, PORT, REPOSITORY set by
    the image's ENV; here the repository and a free port), then /readyz, the health check, SIGTERM."""
    port = free_port()
    env = _entrypoint_env(
        MEMOTION_MODEL_REPOSITORY=str(model_repository),
        MEMOTION_PORT=str(port),
        MEMOTION_HOST="127.0.0.1",
        HOME=str(tmp_path),
    )
    log_path = tmp_path / "gateway.log"
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            [str(DOCKER / "gateway-entrypoint.sh")],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        deadline, status = time.monotonic() + 180, None
        while time.monotonic() < deadline and process.poll() is None:
            try:
                status = httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=2).status_code
                if status == 200:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.5)
        assert status == 200, f"not ready (last {status}, exit {process.poll()}):\n{log_path.read_text()[-3000:]}"
        # `exec`: the server is the process the container runtime started, so signals reach it.
        cmdline = Path(f"/proc/{process.pid}/cmdline").read_bytes().split(b"\0")
        assert b"serve" in cmdline and not cmdline[0].endswith(b"sh"), cmdline
        ready = httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=5).json()
        assert ready, "readyz answered an empty body"

        assert _healthcheck(env).returncode == 0
        assert _healthcheck(env, "/healthz").returncode == 0
        assert _healthcheck(env, f"http://127.0.0.1:{port}/metrics").returncode == 0
        missing = _healthcheck(env, "/no-such-route")
        assert missing.returncode == 1 and "404" in missing.stderr

        # SIGTERM: uvicorn shuts down gracefully, then re-raises the signal (exit status -SIGTERM).
        process.send_signal(signal.SIGTERM)
        code = process.wait(timeout=30)
        log = log_path.read_text()
        assert code in (0, -signal.SIGTERM), log[-3000:]
        assert "Finished server process" in log and "shutdown complete" in log.lower(), log[-3000:]
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
    closed = _healthcheck(env)
    assert closed.returncode == 1 and "unhealthy" in closed.stderr


def test_request_rate_metric_is_the_one_the_gateway_exports() -> None:
    """The HPA's metric is what the prometheus-adapter rule makes of a counter the gateway has."""
    values = yaml.safe_load((K8S / "addons" / "prometheus-adapter-values.yaml").read_text())
    rule = values["rules"]["custom"][0]
    hpa = yaml.safe_load((K8S / "base" / "gateway" / "hpa.yaml").read_text())
    pods_metric = next(m for m in hpa["spec"]["metrics"] if m["type"] == "Pods")["pods"]["metric"]["name"]
    assert rule["name"]["as"] == pods_metric
    counter = re.search(r"^([a-z_]+)\{", rule["seriesQuery"]).group(1)
    from service.core.metrics import GatewayMetrics

    exported = {metric.name for metric in GatewayMetrics().registry.collect()}
    assert counter.removesuffix("_total") in exported, (counter, exported)


def test_triton_entrypoint_serves_the_manifest_models(model_repository: Path, tmp_path: Path) -> None:
    """docker/triton-entrypoint.sh, run outside Docker on the session's repository with the real
    tritonserver (nvidia-pytriton, CPU python backend) standing in for the image's binary: the
    repository's tokenizer/ folder is no model, so the script must load the manifest's models by name."""
    from service.launchers.triton_server import find_triton_install, prepare_server_dir

    install = find_triton_install()
    server_dir = prepare_server_dir(install)
    # The NVIDIA image has tritonserver on PATH with its backends in place; pytriton's needs these.
    wrapper = tmp_path / "tritonserver"
    wrapper.write_text(
        "#!/bin/sh\n"
        f'exec "{install.binary}" --backend-directory="{server_dir}/backends" '
        f'--cache-directory="{server_dir}/caches" --http-address=127.0.0.1 --grpc-address=127.0.0.1 '
        '--metrics-address=127.0.0.1 "$@"\n'
    )
    wrapper.chmod(0o755)
    http_port = free_port()
    env = {
        **install.environment(),
        "MODEL_REPOSITORY": str(model_repository),
        "TRITONSERVER": str(wrapper),
        "TRITON_HTTP_PORT": str(http_port),
        "TRITON_GRPC_PORT": str(free_port()),
        "TRITON_METRICS_PORT": str(free_port()),
    }
    log_path = tmp_path / "triton.log"
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            [str(DOCKER / "triton-entrypoint.sh")],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        deadline, ready = time.monotonic() + 120, False
        while time.monotonic() < deadline and process.poll() is None and not ready:
            try:
                ready = httpx.get(f"http://127.0.0.1:{http_port}/v2/health/ready", timeout=2).status_code == 200
            except httpx.HTTPError:
                time.sleep(0.3)
        assert ready, log_path.read_text(errors="replace")[-3000:]
        index = httpx.post(f"http://127.0.0.1:{http_port}/v2/repository/index", json={"ready": True}).json()
        manifest = yaml.safe_load((model_repository / "manifest.json").read_text())
        ocr = manifest.get("ocr") or {}
        expected = [m["name"] for m in manifest["models"]] + [
            ocr[k]["name"] for k in ("detector", "recognizer") if k in ocr
        ]
        assert ocr, "the test repository should carry the OCR networks (memotion export adds them)"
        assert sorted(m["name"] for m in index) == sorted(expected)
    finally:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=30)
        shutil.rmtree(server_dir, ignore_errors=True)


def test_triton_entrypoint_refuses_a_repository_without_a_manifest(tmp_path: Path) -> None:
    result = subprocess.run(
        [str(DOCKER / "triton-entrypoint.sh")],
        capture_output=True,
        text=True,
        timeout=30,
        env={**os.environ, "MODEL_REPOSITORY": str(tmp_path)},
    )
    assert result.returncode == 2 and f"no manifest.json in {tmp_path}" in result.stderr
