"""The gateway half's subcommands: serve, triton-serve, classify, score, api-key.

Heavy imports (FastAPI, onnxruntime, OCR) happen inside each handler, so `memotion --help` stays
instant. ``register`` adds the parsers to the top-level `memotion` command (memotion_cli.main);
``python -m service`` runs the same subcommands without the training half installed.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from memotion.cli_args import names, positive_int, run_handler
from service import policy_cli, review_cli

# Every route the gateway serves (tests/test_fuzz_schema.py checks this list against the app's).
ENDPOINTS: tuple[tuple[str, str, str], ...] = (
    ("POST", "/v1/classify", "one meme: multipart form (image, text, thresholds) or JSON (base64 image and/or text)"),
    ("POST", "/v1/classify/batch", "many memes as JSON, a status per item"),
    ("GET", "/healthz", "liveness: the process is up"),
    ("GET", "/readyz", "readiness: models and OCR loaded, backend ready (503 until then)"),
    ("GET", "/metrics", "Prometheus metrics"),
    ("GET", "/v1/model-card", "what the served models are and how they were measured"),
    ("GET", "/v1/admin/policies", "list policies (admin staff key)"),
    ("GET", "/v1/admin/policies/{name}", "a policy's rules"),
    ("PUT", "/v1/admin/policies/{name}", "create a policy or add a version"),
    ("GET", "/v1/admin/policies/{name}/versions", "every version of a policy"),
    ("GET", "/v1/admin/assignments", "API key -> policy"),
    ("PUT", "/v1/admin/assignments/{key_name}", "assign a policy to an API key (* : the default)"),
    ("DELETE", "/v1/admin/assignments/{key_name}", "remove an API key's assignment"),
    ("GET", "/v1/admin/audit", "the audit log: who changed what, before and after"),
    ("GET", "/v1/reviews", "the review queue, oldest first (moderator staff key)"),
    ("GET", "/v1/reviews/{item_id}", "one item and the decided memes it repeats"),
    ("GET", "/v1/reviews/{item_id}/thumbnail", "the item's thumbnail (JPEG)"),
    ("POST", "/v1/reviews/{item_id}/claim", "claim an item"),
    ("POST", "/v1/reviews/{item_id}/decision", "decide an item: action, corrected labels, note"),
    ("POST", "/v1/jobs", "start an async job (202; items inline or an allowed server-side path)"),
    ("GET", "/v1/jobs", "this key's jobs"),
    ("GET", "/v1/jobs/{job_id}", "a job's status and progress"),
    ("DELETE", "/v1/jobs/{job_id}", "cancel a job"),
    ("POST", "/v1/jobs/{job_id}/cancel", "cancel a job"),
    ("GET", "/v1/jobs/{job_id}/results", "a job's results (JSON Lines or Parquet)"),
    ("GET", "/docs", "interactive API docs (Swagger UI, served from the gateway: works offline)"),
    ("GET", "/docs/assets/{file}", "Swagger UI's scripts and styles"),
    ("GET", "/docs/oauth2-redirect", "Swagger UI's OAuth2 redirect page"),
    ("GET", "/redoc", "the same docs as ReDoc (offline too)"),
    ("GET", "/openapi.json", "the OpenAPI schema"),
    ("GET", "/ui", "the moderation dashboard (and its static files under /ui/)"),
)
SERVE_DESCRIPTION = (
    "Serve the HTTP gateway:\n\n"
    + "\n".join(f"  {method:<5} {path:<36} {what}" for method, path, what in ENDPOINTS)
    + "\n\nEvery option can also be set with an environment variable MEMOTION_<OPTION> (e.g. MEMOTION_PORT); "
    "the README's settings table lists all of them (limits, time-outs, keys)."
)


def register(commands: Any) -> None:
    """Add the gateway subcommands, in the order `memotion --help` lists them."""
    _add_serve_parser(commands)
    _add_triton_serve_parser(commands)
    _add_classify_parser(commands)
    _add_score_parser(commands)
    _add_api_key_parser(commands)
    _add_db_parser(commands)
    policy_cli.register(commands)
    review_cli.register(commands)


def _add_serve_parser(commands: Any) -> None:
    serve = commands.add_parser(
        "serve",
        help="run the HTTP gateway (FastAPI + uvicorn)",
        description=SERVE_DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    serve.add_argument("--repository", type=Path, help="model repository (default ./model_repository)")
    serve.add_argument("--host", help="bind address (default 127.0.0.1)")
    serve.add_argument("--port", type=int, help="port (default 8000)")
    serve.add_argument(
        "--backend", choices=["onnxruntime", "triton"], help="inference backend (default: onnxruntime, in-process)"
    )
    serve.add_argument("--triton-url", help="with --backend triton: Triton's gRPC host:port (default 127.0.0.1:8001)")
    serve.add_argument(
        "--ocr",
        choices=["auto", "onnx", "easyocr", "none"],
        help="OCR engine (default auto: the repository's OCR models if it has them, else easyocr)",
    )
    serve.set_defaults(handler=_serve)


def _add_triton_serve_parser(commands: Any) -> None:
    triton = commands.add_parser(
        "triton-serve",
        help="serve a model repository with a local tritonserver (python backend, CPU)",
        description="Start tritonserver (from nvidia-pytriton, in .venv-triton: `make .venv-triton`) "
        "on the repository's models with their default config.pbtxt (python backend running the "
        "ONNX models on the CPU, dynamic batching), and keep it running until interrupted. Point "
        "the gateway at it with `memotion serve --backend triton` (MEMOTION_TRITON_URL). On GPU "
        "nodes use NVIDIA's Triton container with --model-config-name=gpu instead "
        "(model_repository/README.md).",
    )
    triton.add_argument(
        "--repository",
        type=Path,
        default=Path("model_repository"),
        help="model repository (default: ./model_repository)",
    )
    triton.add_argument("--host", default="127.0.0.1", help="bind address (default 127.0.0.1)")
    triton.add_argument("--grpc-port", type=int, default=8001, help="gRPC port (default 8001)")
    triton.add_argument(
        "--http-port", type=int, default=8003, help="HTTP port (default 8003: 8000 is the gateway's default)"
    )
    triton.add_argument("--metrics-port", type=int, default=8002, help="Prometheus metrics port (default 8002)")
    triton.add_argument("--models", help="comma-separated models to load (default: all in the manifest)")
    triton.set_defaults(handler=_triton_serve)


def _add_classify_parser(commands: Any) -> None:
    classify = commands.add_parser(
        "classify",
        help="classify meme image files and print JSON",
        description="Classify each FILE, in-process from --repository, or through a running "
        "gateway with --url. Without --text the printed text is read with OCR.",
    )
    classify.add_argument("files", type=Path, nargs="+", metavar="FILE")
    classify.add_argument("--text", help="the meme's text (skips OCR)")
    classify.add_argument("--url", help="gateway base URL, e.g. http://127.0.0.1:8000")
    classify.add_argument("--repository", type=Path, help="model repository (in-process mode)")
    classify.set_defaults(handler=_classify)


def _add_score_parser(commands: Any) -> None:
    score = commands.add_parser(
        "score",
        help="classify a folder, CSV or Memotion data set into results.jsonl / .parquet (resumable)",
        description="Classify every meme of INPUT (a folder of images, a CSV/TSV/JSONL with an image "
        "column and optional id and text columns, or a Memotion-format data set folder) and write one "
        "record per meme to --out (.jsonl or .parquet). Run it again after a crash or kill: memes already "
        "in --out are skipped, none is scored twice or lost. --ray ADDRESS runs it on a Ray cluster "
        "('local' starts one on this machine).",
    )
    score.add_argument("input", type=Path, metavar="INPUT")
    score.add_argument("--out", type=Path, required=True, help="results file: .jsonl or .parquet")
    score.add_argument("--repository", type=Path, help="model repository (default ./model_repository)")
    score.add_argument("--ocr", choices=["auto", "onnx", "easyocr", "none"], help="OCR engine for memes without text")
    score.add_argument(
        "--ignore-text", action="store_true", help="read every meme's text with OCR even when INPUT gives one"
    )
    score.add_argument("--chunk-size", type=positive_int, default=16, help="memes per model call (default 16)")
    score.add_argument("--ray", metavar="ADDRESS", help="run on Ray: 'local', 'auto' or ray://host:port")
    score.add_argument("--ray-actors", type=positive_int, default=2, help="scoring actors on Ray (default 2)")
    score.add_argument("--no-progress", action="store_true", help="no progress bar")
    score.set_defaults(handler=_score)


def _add_api_key_parser(commands: Any) -> None:
    key = commands.add_parser(
        "api-key",
        help="make a new gateway API key and print its configuration entry",
        description="Print a new random API key (give it to the client) and the entry to add to "
        "MEMOTION_API_KEYS or the MEMOTION_API_KEYS_FILE list, which holds only the key's SHA-256.",
    )
    key.add_argument("--name", required=True, help="the client's name (logged; labels its rate limit)")
    key.add_argument("--rate-per-minute", type=float, help="this key's limit in memes per minute")
    key.add_argument("--burst", type=positive_int, help="this key's burst size")
    key.set_defaults(handler=_api_key)


def _add_db_parser(commands: Any) -> None:
    db = commands.add_parser(
        "db",
        help="the gateway database: migrate it or show its schema version",
        description="The database behind policies, the review queue and the audit log "
        "(MEMOTION_DATABASE_URL: a SQLite file by default, postgresql://... for clusters). The gateway "
        "migrates it at start-up unless MEMOTION_DATABASE_MIGRATE=false; then run `memotion db upgrade`.",
    )
    actions = db.add_subparsers(dest="db_command", required=True, metavar="ACTION")
    upgrade = actions.add_parser("upgrade", help="apply the migrations this memotion has (refuses a newer schema)")
    upgrade.add_argument("--url", help="database URL (default: MEMOTION_DATABASE_URL)")
    upgrade.set_defaults(handler=_db_upgrade)
    current = actions.add_parser("current", help="print the database's schema revision and this code's newest")
    current.add_argument("--url", help="database URL (default: MEMOTION_DATABASE_URL)")
    current.set_defaults(handler=_db_current)


def _open_db(args: argparse.Namespace) -> Any:
    from service.core.settings import GatewaySettings
    from service.store.engine import Database

    settings = GatewaySettings(**({"database_url": args.url} if args.url else {}))
    return Database.open(settings.database_url, settings.database_timeout_s)


def _db_upgrade(args: argparse.Namespace) -> int:
    from service.store.migrate import schema_state, upgrade

    db = _open_db(args)
    try:
        before = schema_state(db).current
        after = upgrade(db)
    finally:
        db.close()
    print(f"database schema: {before or 'empty'} -> {after.current}")
    return 0


def _db_current(args: argparse.Namespace) -> int:
    from service.store.migrate import schema_state

    db = _open_db(args)
    try:
        state = schema_state(db)
    finally:
        db.close()
    print(json.dumps({"current": state.current, "head": state.head, "status": state.describe()}))
    return 0 if state.up_to_date else 1


def _serve(args: argparse.Namespace) -> int:
    from service.core.settings import GatewaySettings
    from service.server import serve

    overrides = {
        k: v
        for k, v in {
            "model_repository": args.repository,
            "host": args.host,
            "port": args.port,
            "backend": args.backend,
            "ocr": args.ocr,
            "triton_url": args.triton_url,
        }.items()
        if v is not None
    }
    serve(GatewaySettings(**overrides))
    return 0


def _triton_serve(args: argparse.Namespace) -> int:
    import signal
    import threading

    from service.launchers.triton_server import TritonServerProcess

    models = names(args.models) if args.models else None
    server = TritonServerProcess(
        args.repository,
        models=models,
        host=args.host,
        http_port=args.http_port,
        grpc_port=args.grpc_port,
        metrics_port=args.metrics_port,
    )
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    with server:
        print(
            f"tritonserver ready: gRPC {server.grpc_url}, HTTP {server.http_url}, metrics "
            f"{server.metrics_url}; models {server.models()} (log {server.log_path})",
            flush=True,
        )
        try:
            while not stop.wait(1.0):
                if server.exited():
                    print(f"tritonserver exited:\n{server.log_text()[-4000:]}", file=sys.stderr)
                    return 1
        except KeyboardInterrupt:
            pass
    return 0


def _classify(args: argparse.Namespace) -> int:
    """One JSON object per line per FILE (JSON Lines): its answer, or ``{"file", "error"}`` for a file
    that could not be classified (the others still are; the exit status is then 1)."""
    from service.classify_file import ClassifyError, classify_file
    from service.core.logging_config import quiet_console
    from service.core.settings import GatewaySettings

    quiet_console()
    settings = None
    if args.url is None:
        settings = GatewaySettings(**({"model_repository": args.repository} if args.repository else {}))
    failed = 0
    for path in args.files:
        try:
            line = {"file": str(path), **classify_file(path, text=args.text, url=args.url, settings=settings)}
        except ClassifyError as err:
            failed += 1
            line = {"file": str(path), "error": {"code": err.code, "message": err.message, "status": err.status}}
        print(json.dumps(line, ensure_ascii=False), flush=True)
    return 1 if failed else 0


def _score(args: argparse.Namespace) -> int:
    from service.core.settings import GatewaySettings
    from service.scoring.local import score

    overrides = {k: v for k, v in {"model_repository": args.repository, "ocr": args.ocr}.items() if v is not None}
    summary = score(
        args.input,
        args.out,
        GatewaySettings(**overrides),
        chunk_size=args.chunk_size,
        ignore_text=args.ignore_text,
        ray_address=args.ray,
        ray_actors=args.ray_actors,
        progress=not args.no_progress,
    )
    print(summary.line())
    return 0


def _api_key(args: argparse.Namespace) -> int:
    from service.access.keys import hash_key, new_key
    from service.core.settings import ApiKeyEntry

    key = new_key()
    entry = ApiKeyEntry(name=args.name, sha256=hash_key(key), rate_per_minute=args.rate_per_minute, burst=args.burst)
    print(f"key (give it to {args.name}; it is not stored anywhere): {key}", file=sys.stderr)
    print(json.dumps(entry.model_dump(exclude_none=True)))
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m service COMMAND``: the gateway's subcommands alone."""
    parser = argparse.ArgumentParser(prog="python -m service", description="memotion's gateway commands")
    register(parser.add_subparsers(dest="command", required=True, metavar="COMMAND"))
    return run_handler(parser.parse_args(argv))
