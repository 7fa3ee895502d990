# syntax=docker/dockerfile:1.7
# Triton Inference Server for the memotion models: NVIDIA's tritonserver image, plus what the CPU
# python-backend models import (ONNX Runtime, NumPy), plus an entry point that finds the model
# repository (a volume, a copy baked in, or an object store pulled at start).
#
# Build from the repository root (BuildKit reads docker/triton.Dockerfile.dockerignore):
#   docker build -f docker/triton.Dockerfile -t REGISTRY/memotion-triton:TAG .
#   docker build -f docker/triton.Dockerfile --target triton-with-models \
#       --build-arg MODEL_REPOSITORY_DIR=model_repository -t REGISTRY/memotion-triton:TAG-models .
# Run (CPU; add --gpus all -e TRITON_MODEL_CONFIG_NAME=gpu on a GPU host):
#   docker run -p 8000:8000 -v "$PWD/model_repository:/models:ro" REGISTRY/memotion-triton:TAG
# From object storage instead of a volume:
#   docker run -e MODEL_REPOSITORY=s3://bucket/memotion/v3 -e AWS_ACCESS_KEY_ID=... REGISTRY/memotion-triton:TAG
#
# Ports: 8000 HTTP (/v2/health/live, /v2/health/ready, inference), 8001 gRPC, 8002 Prometheus metrics.

ARG TRITON_IMAGE=nvcr.io/nvidia/tritonserver:25.06-py3

# --- triton (default): models come from a volume or an object store --------------------------------
FROM ${TRITON_IMAGE} AS triton
# The python backend runs the CPU models with ONNX Runtime inside the server's own Python; the GPU
# configs use the image's native onnxruntime_onnx backend and need nothing extra. The image's Python
# is the system one (PEP 668), hence PIP_BREAK_SYSTEM_PACKAGES.
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_BREAK_SYSTEM_PACKAGES=1 \
    MODEL_REPOSITORY=/models
RUN python3 -m pip install "numpy==1.26.4" "onnxruntime==1.32.0"
COPY --chmod=0755 docker/triton-entrypoint.sh /usr/local/bin/triton-entrypoint.sh
# A numeric non-root user: Kubernetes' runAsNonRoot can only verify a numeric one.
RUN groupadd --system --gid 10001 memotion \
    && useradd --system --uid 10001 --gid memotion --home-dir /home/memotion --create-home \
       --shell /usr/sbin/nologin memotion \
    && mkdir -p /models && chown 10001:10001 /models
USER 10001:10001
EXPOSE 8000 8001 8002
HEALTHCHECK --interval=15s --timeout=5s --start-period=120s --retries=3 \
    CMD ["curl", "-fsS", "-o", "/dev/null", "http://127.0.0.1:8000/v2/health/ready"]
ENTRYPOINT ["triton-entrypoint.sh"]
CMD []

# --- triton-with-models: the same, with an exported repository copied in (air-gapped clusters) -----
FROM triton AS triton-with-models
ARG MODEL_REPOSITORY_DIR=model_repository
COPY --chown=10001:10001 ${MODEL_REPOSITORY_DIR} /models
