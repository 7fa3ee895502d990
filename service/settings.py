"""Gateway configuration, read from ``MEMOTION_*`` environment variables."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

MIB = 1024 * 1024


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
    max_text_chars: int = Field(default=2000, ge=0)
    ocr: Literal["easyocr", "none"] = "easyocr"
    ocr_model_dir: Path | None = None
    request_timeout_s: float = Field(default=30.0, gt=0)
    ort_intra_op_threads: int = Field(default=0, ge=0)
    log_level: Literal["critical", "error", "warning", "info", "debug"] = "info"
