"""Staff keys: the people who manage policies (``admin``) and work the review queue (``moderator``).

Separate from the client keys (a client key never opens the admin API or the queue); the same
``Authorization: Bearer <key>`` header and SHA-256-only configuration (``memotion api-key --staff``).
No staff key configured: those endpoints answer 403.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from service.access.keys import KeyStore
from service.core.errors import ApiError
from service.core.settings import StaffKeyEntry

Role = Literal["admin", "moderator"]


@dataclass(frozen=True)
class Staff:
    name: str
    role: Role


class StaffGate:
    def __init__(self, entries: Sequence[StaffKeyEntry]) -> None:
        self._keys = KeyStore(entries)

    @property
    def enabled(self) -> bool:
        return self._keys.enabled

    def authenticate(self, authorization: str | None, need: Role) -> Staff:
        """The staff member of the header; 401 without a valid staff key, 403 for a moderator where an
        admin is needed, 403 when no staff key is configured."""
        if not self._keys.enabled:
            raise ApiError(
                403, "staff_disabled", "no staff keys are configured (MEMOTION_ADMIN_KEYS), so this endpoint is off"
            )
        client = self._keys.authenticate(authorization)
        role: Role = client.key.role if isinstance(client.key, StaffKeyEntry) else "moderator"
        if need == "admin" and role != "admin":
            raise ApiError(403, "forbidden", f"{client.name} is a moderator; this needs an admin key")
        return Staff(client.name, role)
