#!/bin/sh
# The gateway image's entry point (docker/gateway.Dockerfile); tests/test_deploy.py runs this same
# file outside Docker.
#
#   (no arguments)        memotion serve, configured by MEMOTION_* variables
#   --option ...          memotion serve --option ...   (e.g. --ocr none)
#   any other command     runs it with the same environment (e.g. memotion score ..., sh)
#
# Container defaults: listen on all interfaces, port 8000, repository at /models (a volume, or what
# an init container pulled from object storage). Every MEMOTION_* variable set outside wins.
# `exec` makes the server PID 1 in the container, so SIGTERM from Kubernetes or `docker stop` reaches
# uvicorn directly and in-flight requests finish before it exits.
set -eu

: "${MEMOTION_HOST:=0.0.0.0}"
: "${MEMOTION_PORT:=8000}"
: "${MEMOTION_MODEL_REPOSITORY:=/models}"
export MEMOTION_HOST MEMOTION_PORT MEMOTION_MODEL_REPOSITORY

if [ "$#" -eq 0 ] || [ "${1#-}" != "$1" ]; then
    exec memotion serve "$@"
fi
exec "$@"
