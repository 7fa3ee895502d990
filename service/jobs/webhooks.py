"""Webhooks: the signed result notice a job sends to its ``callback_url``.

Signature (README "Jobs"): header ``Memotion-Signature: t=<unix seconds>,v1=<hex>`` where ``v1`` is
HMAC-SHA256 with the deployment's ``MEMOTION_WEBHOOK_SECRET`` over ``"<t>." + body`` (the raw bytes).
A receiver recomputes it, compares in constant time and rejects a ``t`` too far from its clock.

Only allowed destinations: the URL's host must be in ``MEMOTION_WEBHOOK_ALLOWED_HOSTS`` (or that list
holds ``*``), and every address it resolves to must be public, or inside
``MEMOTION_WEBHOOK_ALLOWED_NETWORKS``. The connection goes to the address that was checked (no second
DNS lookup to rebind), redirects are not followed.
"""

from __future__ import annotations

import hashlib
import hmac
import http.client
import ipaddress
import socket
import ssl
import time
from collections.abc import Sequence
from dataclasses import dataclass
from urllib.parse import urlsplit

SIGNATURE_HEADER = "Memotion-Signature"
MAX_URL_CHARS = 2048
MAX_BACKOFF_S = 3600.0
IpAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


class CallbackRefused(ValueError):
    """The callback URL is malformed or names a destination the deployment does not allow."""


def sign(secret: bytes, body: bytes, timestamp: int) -> str:
    """The ``Memotion-Signature`` header value for ``body`` sent at ``timestamp``."""
    digest = hmac.new(secret, str(timestamp).encode() + b"." + body, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={digest}"


def verify(secret: bytes, header: str, body: bytes, tolerance_s: float = 300.0, now: float | None = None) -> bool:
    """True if ``header`` signs ``body`` with ``secret`` and its time is within ``tolerance_s``."""
    fields = dict(part.split("=", 1) for part in header.split(",") if "=" in part)
    try:
        timestamp = int(fields["t"])
    except (KeyError, ValueError):
        return False
    if abs((time.time() if now is None else now) - timestamp) > tolerance_s:
        return False
    expected = sign(secret, body, timestamp).split("v1=", 1)[1]
    return hmac.compare_digest(expected, fields.get("v1", ""))


def backoff_s(attempt: int, base_s: float) -> float:
    """Wait before retry number ``attempt`` (1, 2, ...): base, 2 x base, 4 x base, ... at most an hour."""
    return float(min(base_s * 2 ** (attempt - 1), MAX_BACKOFF_S))


@dataclass(frozen=True)
class Destinations:
    """What the deployment allows: host names (``*``: any) and private networks still reachable."""

    hosts: Sequence[str]
    networks: Sequence[str]

    def host_allowed(self, host: str) -> bool:
        return "*" in self.hosts or host.lower().rstrip(".") in {h.lower().rstrip(".") for h in self.hosts}

    def address_allowed(self, address: IpAddress) -> bool:
        if any(address in ipaddress.ip_network(n, strict=False) for n in self.networks):
            return True
        return address.is_global and not address.is_multicast


@dataclass(frozen=True)
class Target:
    scheme: str
    host: str
    port: int
    path: str


def parse_callback(url: str, allowed: Destinations) -> Target:
    """The URL's parts if its form and host are acceptable (addresses are checked when sending)."""
    if len(url) > MAX_URL_CHARS:
        raise CallbackRefused(f"callback_url is longer than {MAX_URL_CHARS} characters")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as err:
        raise CallbackRefused(f"callback_url is not a URL: {err}") from err
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise CallbackRefused("callback_url must be an http:// or https:// URL with a host")
    if parts.username or parts.password:
        raise CallbackRefused("callback_url must not carry credentials")
    host = parts.hostname
    if not allowed.host_allowed(host):
        raise CallbackRefused(f"callback host {host!r} is not allowed here (MEMOTION_WEBHOOK_ALLOWED_HOSTS)")
    try:
        literal: IpAddress | None = ipaddress.ip_address(host)
    except ValueError:
        literal = None
    if literal is not None and not allowed.address_allowed(literal):
        raise CallbackRefused(f"callback address {host} is private or reserved and not allowed here")
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    return Target(parts.scheme, host, port or (443 if parts.scheme == "https" else 80), path)


def resolve_allowed(target: Target, allowed: Destinations) -> str:
    """The address to connect to: every address of the host must be allowed (CallbackRefused if not)."""
    try:
        infos = socket.getaddrinfo(target.host, target.port, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError) as err:
        raise CallbackRefused(f"cannot resolve {target.host}: {err}") from err
    addresses = [ipaddress.ip_address(str(info[4][0]).split("%", 1)[0]) for info in infos]
    refused = [str(a) for a in addresses if not allowed.address_allowed(a)]
    if not addresses or refused:
        raise CallbackRefused(f"{target.host} resolves to addresses not allowed here: {refused or 'none'}")
    return str(addresses[0])


class _PinnedHTTPConnection(http.client.HTTPConnection):
    def __init__(self, address: str, host: str, port: int, timeout: float) -> None:
        super().__init__(host, port, timeout=timeout)
        self._address = address

    def connect(self) -> None:
        self.sock = socket.create_connection((self._address, self.port), self.timeout)


class _PinnedHTTPSConnection(http.client.HTTPSConnection):
    def __init__(self, address: str, host: str, port: int, timeout: float) -> None:
        super().__init__(host, port, timeout=timeout, context=ssl.create_default_context())
        self._address = address

    def connect(self) -> None:
        sock = socket.create_connection((self._address, self.port), self.timeout)
        self.sock = self._context.wrap_socket(sock, server_hostname=self.host)  # type: ignore[attr-defined]


def send(url: str, body: bytes, secret: bytes, allowed: Destinations, timeout_s: float, delivery: str) -> None:
    """POST ``body`` signed to ``url``; raises (CallbackRefused, OSError, RuntimeError) unless a 2xx came back."""
    target = parse_callback(url, allowed)
    address = resolve_allowed(target, allowed)
    kind = _PinnedHTTPSConnection if target.scheme == "https" else _PinnedHTTPConnection
    connection = kind(address, target.host, target.port, timeout_s)
    headers = {
        "Content-Type": "application/json",
        "User-Agent": "memotion-webhook/1",
        SIGNATURE_HEADER: sign(secret, body, int(time.time())),
        "Memotion-Event": "job.finished",
        "Memotion-Delivery": delivery,
    }
    try:
        connection.request("POST", target.path, body=body, headers=headers)
        response = connection.getresponse()
        response.read(65536)
    except (OSError, http.client.HTTPException) as err:
        raise RuntimeError(f"POST {target.host}: {err}") from err
    finally:
        connection.close()
    if not 200 <= response.status < 300:
        raise RuntimeError(f"POST {target.host} answered {response.status} {response.reason}")
