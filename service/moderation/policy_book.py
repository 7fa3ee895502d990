"""The gateway's view of the policies: read from the database at most every ``refresh_s`` seconds
(and at once after a change made through this process), so a policy change reaches the next answers
without a restart while a request costs no database read. A database that fails keeps the last
policies in use (logged) until it answers again."""

from __future__ import annotations

import time
from collections.abc import Callable

from service.moderation.policy_store import DEFAULT_KEY, NO_POLICY, StoredPolicy, current_policies
from service.moderation.refresh import Refresher
from service.store.engine import Database


class PolicyBook:
    def __init__(self, db: Database, refresh_s: float, clock: Callable[[], float] = time.monotonic) -> None:
        self._db = db
        self._policies: dict[str, StoredPolicy] = {}
        self._assigned: dict[str, str] = {}
        self._refresher = Refresher(self._load, refresh_s, "the policies", clock)

    def _load(self) -> None:
        with self._db.session() as session:
            self._policies, self._assigned = current_policies(session)

    def invalidate(self) -> None:
        self._refresher.invalidate()

    def policy_for(self, key_name: str) -> StoredPolicy:
        """The policy of an API key's name: its own assignment, else the default (``*``), else none."""
        self._refresher.refresh()
        name = self._assigned.get(key_name) or self._assigned.get(DEFAULT_KEY)
        return self._policies.get(name, NO_POLICY) if name else NO_POLICY

    def named(self, name: str) -> StoredPolicy | None:
        self._refresher.refresh()
        return self._policies.get(name)
