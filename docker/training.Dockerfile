# syntax=docker/dockerfile:1.7
# Training and export on a GPU: PyTorch's CUDA image (its torch is the version pyproject.toml pins,
# so pip keeps it), the memotion wheel with the `train` extra, a non-root user, `memotion` as the
# entry point.
#
# Build from the repository root (BuildKit reads docker/training.Dockerfile.dockerignore):
#   docker build -f docker/training.Dockerfile -t REGISTRY/memotion-training:TAG .
# Run (data, runs and the exported repository on volumes; weights from a local checkpoint):
#   docker run --gpus all -v "$PWD/data:/data:ro" -v "$PWD/runs:/runs" REGISTRY/memotion-training:TAG \
#       train --data /data/memotion3 --out /runs/b32 --clip ViT-B-32 --pretrained /data/clip-b32.pt
#   docker run -v "$PWD/runs:/runs" -v "$PWD/model_repository:/out" REGISTRY/memotion-training:TAG \
#       export --run /runs/b32 --out /out --version 2

ARG PYTORCH_IMAGE=pytorch/pytorch:2.14.1-cuda12.6-cudnn9-runtime

# --- build: the memotion wheel (no dependencies resolved here) -------------------------------------
FROM ${PYTORCH_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
COPY pyproject.toml README.md ./
COPY memotion ./memotion
COPY service ./service
COPY training ./training
RUN pip wheel --no-deps --wheel-dir /wheels .

# --- training ---------------------------------------------------------------------------------------
FROM ${PYTORCH_IMAGE} AS training
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 PYTHONUNBUFFERED=1
COPY --from=build /wheels /wheels
# Every distribution pinned at the version the test suite ran with (docker/write_constraints.py).
COPY docker/training-constraints.txt /wheels/constraints.txt
# The base image's torch must already satisfy the pin: a second torch would be ~5 GB more.
RUN python -c "import torch; v = torch.__version__.split('+')[0]; \
assert v == '2.14.1', f'base image has torch {v}, pyproject.toml pins 2.14.1'" \
    && wheel="$(find /wheels -name 'memotion-*.whl' -print -quit)" \
    && pip install --constraint /wheels/constraints.txt "${wheel}[train]" \
    && python -c "import torch, open_clip; print('torch', torch.__version__, 'open_clip', open_clip.__version__)" \
    && rm -rf /wheels
RUN groupadd --system --gid 10001 memotion \
    && useradd --system --uid 10001 --gid memotion --home-dir /home/memotion --create-home \
       --shell /usr/sbin/nologin memotion
ENV HOME=/home/memotion
WORKDIR /home/memotion
USER 10001:10001
ENTRYPOINT ["memotion"]
CMD ["--help"]
