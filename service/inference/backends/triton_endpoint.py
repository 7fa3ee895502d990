"""Where the gateway finds Triton, derived from the settings (MEMOTION_TRITON_URL and friends)."""

from __future__ import annotations

from typing import Literal

from service.core.settings import GatewaySettings

Protocol = Literal["grpc", "http"]
TRITON_METRICS_PORT = 8002


def triton_endpoint(settings: GatewaySettings) -> tuple[Protocol, str]:
    """(protocol, host:port) from triton_url and triton_protocol; a scheme in the URL wins."""
    scheme, _, address = settings.triton_url.strip().rpartition("://")
    if scheme == "grpc":
        return "grpc", address.rstrip("/")
    if scheme == "http":
        return "http", address.rstrip("/")
    if scheme:
        raise ValueError(
            f"MEMOTION_TRITON_URL={settings.triton_url!r}: use host:port, grpc://host:port or http://host:port"
        )
    return settings.triton_protocol, address.rstrip("/")


def triton_metrics_url(settings: GatewaySettings) -> str | None:
    """Triton's Prometheus endpoint: the setting, "none" for not scraped, or the endpoint's host."""
    if settings.triton_metrics_url.strip().lower() == "none":
        return None
    if settings.triton_metrics_url:
        return settings.triton_metrics_url
    host = triton_endpoint(settings)[1].rsplit(":", 1)[0]
    return f"http://{host}:{TRITON_METRICS_PORT}/metrics"
