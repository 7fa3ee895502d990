#!/bin/sh
# The Triton image's entry point (docker/triton.Dockerfile): tritonserver on the memotion model
# repository that `memotion export` wrote.
#
#   MODEL_REPOSITORY           where the repository is (default /models):
#                              - a local path: a volume, an init container's copy, or the copy baked
#                                into the `triton-with-models` target;
#                              - an object-store URI (s3://, gs://, as://): Triton pulls it at start
#                                itself, with the store's usual credentials in the environment
#                                (AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY / AWS_DEFAULT_REGION,
#                                GOOGLE_APPLICATION_CREDENTIALS, AZURE_STORAGE_ACCOUNT / _KEY).
#   TRITON_MODEL_CONFIG_NAME   empty (default): each model's config.pbtxt (CPU python backend);
#                              e.g. `gpu`: <model>/configs/gpu.pbtxt (onnxruntime_onnx on the GPU).
#   TRITON_MODELS              the models to load, comma-separated (default: those the repository's
#                              manifest.json lists, OSCAR detectors and OCR networks included). Triton runs in explicit model-control mode and
#                              loads just these: the repository also holds folders that are not
#                              models (tokenizer/), which Triton's load-everything mode refuses.
#                              An object-store repository needs TRITON_MODELS (no manifest to read here).
#   TRITON_HTTP_PORT / TRITON_GRPC_PORT / TRITON_METRICS_PORT   8000 / 8001 / 8002
#   TRITONSERVER               the server binary (default: tritonserver on PATH)
# Extra arguments are passed to tritonserver after these (a later flag wins).
set -eu

repository="${MODEL_REPOSITORY:-/models}"
models="${TRITON_MODELS:-}"

case "$repository" in
    s3://* | gs://* | as://*) ;;
    *)
        if [ ! -d "$repository" ]; then
            echo "triton-entrypoint: MODEL_REPOSITORY=$repository is not a directory" >&2
            exit 2
        fi
        if [ -z "$models" ]; then
            if [ ! -f "$repository/manifest.json" ]; then
                echo "triton-entrypoint: no manifest.json in $repository (set TRITON_MODELS)" >&2
                exit 2
            fi
            # The classifiers, their stages (OSCAR's region detector: <name>/<version>/model.onnx),
            # and the OCR networks when the repository has them (manifest "ocr").
            models=$(python3 -c 'import json, sys; m = json.load(open(sys.argv[1])); o = m.get("ocr") or {}; s = [x["detector"]["file"].split("/")[0] for x in m["models"] if x.get("detector")]; print(",".join(dict.fromkeys([x["name"] for x in m["models"]] + s + [o[k]["name"] for k in ("detector", "recognizer") if k in o])))' "$repository/manifest.json")
        fi
        ;;
esac
if [ -z "$models" ]; then
    echo "triton-entrypoint: TRITON_MODELS is empty: name the models to load" >&2
    exit 2
fi

set -- \
    --model-repository="$repository" \
    --model-control-mode=explicit \
    --strict-readiness=true \
    --exit-on-error=true \
    --http-port="${TRITON_HTTP_PORT:-8000}" \
    --grpc-port="${TRITON_GRPC_PORT:-8001}" \
    --metrics-port="${TRITON_METRICS_PORT:-8002}" \
    --allow-metrics=true \
    "$@"
old_ifs=$IFS
IFS=,
for model in $models; do
    set -- --load-model="$model" "$@"
done
IFS=$old_ifs
if [ -n "${TRITON_MODEL_CONFIG_NAME:-}" ]; then
    set -- --model-config-name="$TRITON_MODEL_CONFIG_NAME" "$@"
fi

exec "${TRITONSERVER:-tritonserver}" "$@"
