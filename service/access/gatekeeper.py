"""Who may call the gateway and how often: API keys (:mod:`service.access.keys`) + per-key rate limits
(:mod:`service.access.rate_limit`), as FastAPI dependencies. The client's name goes into the access log."""

from __future__ import annotations

import logging

from fastapi import Request

from service.access.keys import Client, KeyStore, load_key_file
from service.access.rate_limit import RateLimiter
from service.core.errors import CLIENT_SCOPE_KEY
from service.core.settings import GatewaySettings

logger = logging.getLogger("memotion.gateway")


class Gatekeeper:
    def __init__(self, settings: GatewaySettings) -> None:
        entries = list(settings.api_keys)
        if settings.api_keys_file is not None:
            entries += load_key_file(settings.api_keys_file)
        self.keys = KeyStore(entries)
        self.limiter = RateLimiter()
        self.default_rate_per_minute = settings.rate_limit_per_minute
        self.default_burst = settings.rate_limit_burst
        if self.keys.enabled:
            logger.info("API keys required: %d configured", len(self.keys))
        else:
            logger.warning("no API keys configured: the classify endpoints are open to anyone who can reach them")

    def authenticate(self, request: Request) -> Client:
        client = self.keys.authenticate(request.headers.get("authorization"))
        request.scope[CLIENT_SCOPE_KEY] = client.name
        return client

    def charge(self, client: Client, cost: int) -> None:
        """Take ``cost`` memes from the client's rate limit (429 when over). The open gateway
        (no keys configured) has no per-client limit: admission control still bounds the load."""
        if client.key is None:
            return
        self.limiter.check(
            client.name,
            cost,
            client.key.rate_per_minute or self.default_rate_per_minute,
            client.key.burst or self.default_burst,
        )
