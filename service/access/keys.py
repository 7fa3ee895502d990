"""API keys: ``Authorization: Bearer <key>``, checked against SHA-256 hashes in the configuration.

The configuration never holds a key, only its hash (``memotion api-key`` makes a key and prints the
entry to add). Keys are long random tokens, so one SHA-256 is enough (no slow password hash needed).
No key configured: the gateway is open (it logs a warning at start-up).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from pydantic import TypeAdapter

from service.core.errors import ApiError
from service.core.settings import ApiKeyEntry

KEY_PREFIX = "mk_"


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


def new_key() -> str:
    """A fresh random key (256 bits)."""
    return KEY_PREFIX + secrets.token_urlsafe(32)


def load_key_file(path: Path) -> list[ApiKeyEntry]:
    """A JSON list of entries, or ``{"keys": [...]}``."""
    try:
        data = json.loads(Path(path).read_text())
    except (OSError, ValueError) as err:
        raise ValueError(f"cannot read API keys from {path}: {err}") from err
    if isinstance(data, dict):
        data = data.get("keys", [])
    return TypeAdapter(list[ApiKeyEntry]).validate_python(data)


@dataclass(frozen=True)
class Client:
    """Who sent a request: a key's name, or ``anonymous`` when the gateway is open."""

    name: str
    key: ApiKeyEntry | None


ANONYMOUS = Client("anonymous", None)


def _unauthorized(message: str) -> ApiError:
    return ApiError(401, "unauthorized", message, headers={"WWW-Authenticate": 'Bearer realm="memotion"'})


class KeyStore:
    def __init__(self, entries: Sequence[ApiKeyEntry]) -> None:
        names = [e.name for e in entries]
        if len(set(names)) != len(names):
            raise ValueError(f"API key names must be unique: {names}")
        self._entries = list(entries)

    @property
    def enabled(self) -> bool:
        return bool(self._entries)

    def __len__(self) -> int:
        return len(self._entries)

    def authenticate(self, authorization: str | None) -> Client:
        """The client for an ``Authorization`` header value; ApiError 401 when it does not pass."""
        if not self.enabled:
            return ANONYMOUS
        if not authorization:
            raise _unauthorized("this gateway needs an API key: send 'Authorization: Bearer <key>'")
        scheme, _, token = authorization.strip().partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            raise _unauthorized("the Authorization header must be 'Bearer <key>'")
        digest = hash_key(token)
        found = None
        for entry in self._entries:  # compare with every entry, in constant time each
            if hmac.compare_digest(entry.sha256, digest):
                found = entry
        if found is None:
            raise _unauthorized("the API key is not valid")
        return Client(found.name, found)
