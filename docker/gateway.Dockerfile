# syntax=docker/dockerfile:1.7
# The memotion HTTP gateway: slim Python, a virtual environment built in a separate stage, non-root,
# no compilers, no torch (OCR runs the model repository's PP-OCR graphs on ONNX Runtime or Triton, with
# rapidocr's pre- and post-processing; nothing is downloaded at run time), a health check,
# `memotion serve` as the entry point.
#
# Build from the repository root (BuildKit reads docker/gateway.Dockerfile.dockerignore):
#   docker build -f docker/gateway.Dockerfile -t REGISTRY/memotion-gateway:TAG .
#   docker build -f docker/gateway.Dockerfile --target batch -t REGISTRY/memotion-batch:TAG .
# Run:
#   docker run -p 8000:8000 -v "$PWD/model_repository:/models:ro" REGISTRY/memotion-gateway:TAG
#
# Targets: `gateway` (default, last) and `batch` (the gateway's environment plus Ray, for the
# KubeRay RayJob in k8s/base/batch/). Pinned: the base image tag and every distribution
# (gateway-constraints.txt; tests/test_deploy.py checks that torch is not among them).

ARG PYTHON_IMAGE=python:3.11.14-slim-bookworm

# --- build: the virtual environment ---------------------------------------------------------------
FROM ${PYTHON_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PATH=/opt/memotion/bin:$PATH
WORKDIR /src
# Every distribution pinned at the version the test suite ran with (docker/write_constraints.py).
COPY docker/gateway-constraints.txt ./constraints.txt
RUN python -m venv /opt/memotion
COPY pyproject.toml README.md ./
COPY memotion ./memotion
COPY service ./service
COPY training ./training
# The last step fails the build, not the first request, if the OCR graphs `memotion export` copies
# are not in the image, or if the gateway's code would pull in torch.
RUN pip install --constraint constraints.txt ".[serve,triton]" \
    && python -c "import sys; from training.ocr_export import rapidocr_models_dir as d, DETECTOR_GRAPH, RECOGNIZER_GRAPH; \
missing = [g for g in (DETECTOR_GRAPH, RECOGNIZER_GRAPH) if not (d() / g).is_file()]; \
assert not missing, f'OCR graphs missing from {d()}: {missing}'; import service.api.app, service.inference.ocr.ppocr; \
assert 'torch' not in sys.modules, 'the gateway imports torch'; print('OCR graphs in', d())"

FROM build AS build-batch
RUN pip install --constraint constraints.txt ".[serve,triton]" "ray[default]==2.60.0"

# --- runtime base: no build stage, no compilers ---------------------------------------------------
FROM ${PYTHON_IMAGE} AS runtime
RUN groupadd --system --gid 10001 memotion \
    && useradd --system --uid 10001 --gid memotion --home-dir /home/memotion --create-home \
       --shell /usr/sbin/nologin memotion \
    && if command -v gcc || command -v cc || command -v g++; then echo "compiler in base image" >&2; exit 1; fi
COPY --chmod=0755 docker/gateway-entrypoint.sh /usr/local/bin/gateway-entrypoint.sh
COPY --chmod=0755 docker/healthcheck.py /usr/local/bin/memotion-healthcheck
ENV PATH=/opt/memotion/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    HOME=/home/memotion \
    MEMOTION_HOST=0.0.0.0 \
    MEMOTION_PORT=8000 \
    MEMOTION_MODEL_REPOSITORY=/models
WORKDIR /home/memotion
EXPOSE 8000

# --- batch: the gateway's code plus Ray (RayJob head and workers) --------------------------------
FROM runtime AS batch
COPY --from=build-batch /opt/memotion /opt/memotion
USER 10001:10001
ENTRYPOINT ["gateway-entrypoint.sh"]
CMD ["memotion", "--help"]

# --- gateway (default target) ---------------------------------------------------------------------
FROM runtime AS gateway
COPY --from=build /opt/memotion /opt/memotion
USER 10001:10001
# Docker's own check (compose waits on it): /readyz, i.e. models and OCR loaded. Loading a ViT-B-32
# export and the OCR weights takes up to a minute or two on a small CPU: hence the start period.
HEALTHCHECK --interval=15s --timeout=5s --start-period=180s --retries=3 CMD ["memotion-healthcheck", "/readyz"]
ENTRYPOINT ["gateway-entrypoint.sh"]
CMD []
