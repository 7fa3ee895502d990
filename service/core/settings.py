"""Gateway configuration, read from ``MEMOTION_*`` environment variables: declarations only.

What is derived from a setting (Triton's endpoint and metrics URL, the API key entries of a file)
lives with the code that uses it (service/inference/backends/triton_endpoint.py, service/access/keys.py).
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

MIB = 1024 * 1024


class ApiKeyEntry(BaseModel):
    """One client: a name (logged, labels its rate limit), the key's SHA-256, optional own limits."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(pattern=r"^[A-Za-z0-9._:-]{1,64}$", examples=["moderation-dashboard"])
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$", description="hex SHA-256 of the key")
    rate_per_minute: float | None = Field(default=None, gt=0, description="default: the gateway's")
    burst: int | None = Field(default=None, ge=1, description="default: the gateway's")


class StaffKeyEntry(ApiKeyEntry):
    """A person's key for the admin API (policies: ``admin``) and the review queue (``moderator`` too)."""

    role: Literal["admin", "moderator"] = "admin"


class GatewaySettings(BaseSettings):
    """Everything the gateway can be told; each field is ``MEMOTION_<FIELD>`` in the environment."""

    model_config = SettingsConfigDict(
        env_prefix="MEMOTION_",
        extra="ignore",
        protected_namespaces=("settings_customise_sources",),
    )

    model_repository: Path = Path("model_repository")
    backend: Literal["onnxruntime", "triton"] = "onnxruntime"
    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=0, le=65535)
    max_upload_bytes: int = Field(default=10 * MIB, gt=0)
    max_image_pixels: int = Field(default=36_000_000, gt=0)
    # Checked from the header before any pixel is decoded or resized: a 1 x 300000 PNG has few
    # pixels but would blow up in the shortest-edge resize.
    max_image_side: int = Field(default=20_000, gt=0)  # longest side, pixels
    max_image_aspect_ratio: float = Field(default=20.0, ge=1.0)  # longest side / shortest side
    ocr_max_side: int = Field(default=1280, ge=64)  # OCR reads a copy scaled down to this longest side
    # The repository's OCR (ppocr): its text detector reads at most this longest side (its cost grows
    # with the pixels; boxes are mapped back to the full copy). 0: the manifest's det_limit_side_len
    # alone. README "OCR" has the measurements.
    ocr_detector_max_side: int = Field(default=384, ge=0)
    # The repository's OCR: at start-up, run the recogniser once at its common input shapes
    # (service/inference/ocr/ppocr.py: recognizer_warmup_shapes). OpenVINO prepares kernels per new
    # shape (30 to 50 ms each), which the first memes would pay. auto: on with MEMOTION_ENGINE=openvino.
    ocr_warmup: Literal["auto", "on", "off"] = "auto"
    max_text_chars: int = Field(default=2000, ge=0)
    # auto: the repository's OCR models (manifest "ocr", run by the backend) when it has them, else
    # easyocr (PyTorch; memotion[easyocr]); onnx: those models or a start-up error; none: no OCR.
    ocr: Literal["auto", "onnx", "easyocr", "none"] = "auto"
    ocr_model_dir: Path | None = None
    request_timeout_s: float = Field(default=30.0, gt=0)
    # Slow clients: the request line and headers, and then the whole body, must arrive within these
    # (408 and the connection closed after); they do not hold a worker or shutdown for longer.
    header_timeout_s: float = Field(default=10.0, gt=0)
    body_timeout_s: float = Field(default=60.0, gt=0)
    # An upload that stops (no body bytes for this long) gets its 408 then, not at body_timeout_s.
    body_idle_timeout_s: float = Field(default=10.0, gt=0)
    # The embedded backend's engine: ONNX Runtime, or OpenVINO (CPU; static INT8 repositories from
    # `memotion export --quantize int8-static` run their matmuls on AMX / VNNI there). README
    # "Production size" has the measurements.
    engine: Literal["onnxruntime", "openvino"] = "onnxruntime"
    # OpenVINO's precision for float ops: auto = the one each model's INT8 agreement was measured
    # with (manifest quantization.precision_hint), else f32 (the FP32 export's numbers); bf16 on AMX.
    openvino_precision: Literal["auto", "f32", "bf16"] = "auto"
    # Pin OpenVINO's threads to cores: off, since the gateway runs up to five compiled models at
    # once, each with its own threads, and pinned threads cannot leave a busy core (README
    # "Production size": 1.2 to 1.3x the memes/s at 8 and 32 clients unpinned, 2 cores).
    openvino_cpu_pinning: bool = False
    # Threads per session (ONNX Runtime) or per compiled model (OpenVINO).
    ort_intra_op_threads: int = Field(default=0, ge=0)  # 0: cores / processes (one per core with 1 process)
    # Scaling on one node (README "Scaling"): gateway processes (uvicorn workers, metrics shared
    # through PROMETHEUS_MULTIPROC_DIR), dynamic batching of the embedded backend (settings from each
    # model's config.pbtxt, as Triton's), and the result cache.
    processes: int = Field(default=1, ge=1)
    batching: bool = True
    batch_max_queue_delay_us: int | None = Field(default=None, ge=0)  # None: the model's config.pbtxt
    result_cache: Literal["memory", "redis", "none"] = "memory"
    result_cache_entries: int = Field(default=10_000, ge=1)
    result_cache_bytes: int = Field(default=64 * MIB, ge=1024)
    result_cache_redis_url: str = "redis://127.0.0.1:6379/0"
    result_cache_ttl_s: int = Field(default=24 * 3600, ge=1)  # redis entries expire after this
    result_cache_timeout_s: float = Field(default=0.5, gt=0)  # per Redis call
    # After a Redis failure, skip Redis (misses) for this long: a sick Redis costs one time-out per period.
    result_cache_backoff_s: float = Field(default=30.0, ge=0)
    # MEMOTION_BACKEND=triton: where Triton is and how to talk to it.
    # host:port of Triton's gRPC endpoint (or HTTP, with triton_protocol=http); a grpc:// or http://
    # scheme in the URL picks the protocol itself.
    triton_url: str = "127.0.0.1:8001"
    triton_protocol: Literal["grpc", "http"] = "grpc"
    triton_metrics_url: str = ""  # "" -> http://<triton host>:8002/metrics; "none" -> not scraped
    triton_timeout_s: float = Field(default=30.0, gt=0)  # per inference call

    log_level: Literal["critical", "error", "warning", "info", "debug"] = "info"
    log_format: Literal["json", "text"] = "json"  # json: one object per line (no request bodies)
    # Text path (service/text): OCR text cleaning, language id, transliteration, back-translation.
    text_clean: bool = True
    language_id: bool = True
    transliterate: bool = True  # romanised Hindi -> Devanagari before translating
    translator: Literal["none", "online", "ctranslate2"] = "none"
    translator_model_dir: Path | None = None  # ctranslate2: folder with en-hi/ and hi-en/
    translator_provider: str = "google"  # online: a provider of the translators package
    translator_timeout_s: float = Field(default=10.0, gt=0)
    translator_threads: int = Field(default=1, ge=1)
    text_watermarks: list[str] = Field(default_factory=list)  # extra regexes removed from OCR text
    # Task B thresholds by emotion (or head) name, JSON: {"offensive": 0.3}; requests may override.
    task_thresholds: dict[str, float] = Field(default_factory=dict)
    # Batch endpoint.
    max_batch_items: int = Field(default=32, ge=1)
    max_batch_bytes: int = Field(default=64 * MIB, gt=0)
    # Decoded pixels: what one request may decode, all its images together (checked from the headers;
    # an image beyond it is refused, 413), and the bytes of decoded pixels the process holds at once
    # (decoding waits up to decode_wait_s for its share, then 503 with Retry-After).
    max_request_pixels: int = Field(default=100_000_000, gt=0)
    decode_memory_bytes: int = Field(default=768 * MIB, gt=0)
    decode_wait_s: float = Field(default=5.0, ge=0)
    batch_timeout_s: float = Field(default=120.0, gt=0)
    # Access: API keys (JSON list of {name, sha256[, rate_per_minute, burst]}) and/or a file of them;
    # none configured = open gateway. Limits per key in memes per minute.
    api_keys: list[ApiKeyEntry] = Field(default_factory=list)
    api_keys_file: Path | None = None
    rate_limit_per_minute: float = Field(default=600.0, gt=0)
    rate_limit_burst: int = Field(default=60, ge=1)
    cors_origins: list[str] = Field(default_factory=list)  # JSON list, e.g. ["https://dash.example"]
    # Admission: classifications at once (worker threads) and how many may wait; 503 beyond.
    workers: int = Field(default=2, ge=1)
    max_queue: int = Field(default=32, ge=0)
    shutdown_grace_s: float = Field(default=60.0, gt=0)  # in-flight requests may finish this long
    # The database (service/store): policies, the review queue, the audit log. SQLite file by default
    # (WAL, safe for MEMOTION_PROCESSES=N on one node); postgresql://user:pass@host/db for clusters;
    # none: no database (answers without a decision block; admin, review and jobs endpoints answer 503).
    database_url: str = "sqlite:///memotion.db"
    # Every database call waits at most this long (connect, lock, statement): the request path never
    # blocks on the database for longer.
    database_timeout_s: float = Field(default=2.0, gt=0, le=60)
    # Start-up: true runs the migrations (as `memotion db upgrade`); false only checks the schema.
    database_migrate: bool = True
    # Moderation (service/moderation): staff keys for the admin API and the review queue (JSON list of
    # {name, sha256, role}; none: those endpoints answer 403), how stale the policies and the index of
    # decided memes may be in a process (seconds), and after how many days queued images are deleted.
    admin_keys: list[StaffKeyEntry] = Field(default_factory=list)
    policy_refresh_s: float = Field(default=1.0, ge=0, le=3600)
    review_retention_days: int = Field(default=30, ge=0)  # 0: keep the images
    # Async jobs (service/jobs): POST /v1/jobs, scored in chunks by a worker inside each gateway
    # process; a job is held under a lease in the database (another process takes it over when the
    # lease runs out, e.g. after a crash).
    jobs_enabled: bool = True  # false: no worker in this process (the routes still answer)
    jobs_max_items: int = Field(default=100_000, ge=1)  # items of one job (inline or found at a path)
    jobs_max_bytes: int = Field(default=256 * MIB, gt=0)  # the POST /v1/jobs body
    jobs_max_active: int = Field(default=4, ge=1)  # queued or running jobs per API key (429 beyond)
    jobs_chunk_size: int = Field(default=16, ge=1, le=1024)  # items scored and committed together
    jobs_lease_s: float = Field(default=30.0, gt=0)  # a silent worker's job is taken over after this
    jobs_poll_s: float = Field(default=1.0, gt=0)  # an idle worker looks for work this often
    # Server-side sources a job may name ({"source": "/data/memes"}): folders (and what is below
    # them) of this machine; empty: none. Object-store URLs are not supported yet.
    jobs_allowed_paths: list[Path] = Field(default_factory=list)
    jobs_retention_days: float = Field(default=30.0, gt=0)  # finished jobs and their results are deleted after
    jobs_ray_address: str | None = None  # path jobs score on Ray (service/scoring/ray_cluster.py)
    jobs_ray_actors: int = Field(default=2, ge=1)
    # Webhooks: a job's callback_url gets the result notice, signed (HMAC-SHA256, README "Jobs").
    webhook_secret: SecretStr | None = None  # unset: callback URLs are refused
    # Hosts a callback may name ("*": any host whose addresses are public) and private networks it
    # may still reach (CIDRs, e.g. ["10.1.0.0/16"]); loopback, private and link-local addresses are
    # refused unless listed.
    webhook_allowed_hosts: list[str] = Field(default_factory=list)
    webhook_allowed_networks: list[str] = Field(default_factory=list)
    webhook_max_attempts: int = Field(default=6, ge=1, le=50)
    webhook_backoff_s: float = Field(default=10.0, gt=0)  # first retry after this, doubling (1 h at most)
    webhook_timeout_s: float = Field(default=10.0, gt=0, le=120)

    @field_validator("webhook_secret", mode="before")
    @classmethod
    def _blank_secret_is_none(cls, value: object) -> object:
        """An empty MEMOTION_WEBHOOK_SECRET (compose's ``${VAR:-}``) means none, not an empty HMAC key."""
        return None if isinstance(value, str) and not value.strip() else value
