"""The users a runtime knows, kept in the store: add, remove, authenticate.

`UserDirectory` merges the store's users with knot.toml's `[users]` (which win on a name
clash); the value types (`User`, tokens, the config parser) are in `_users.py`.
"""

from __future__ import annotations

import contextlib
import hmac
import sqlite3
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

from ._events import now_rfc3339
from ._exceptions import Conflict, InvalidInput, NotFound
from ._json import JSONObject
from ._users import KV_USERS, User, UserOrigin, check_user_name, hash_token, new_token
from .engine.store import Store
from .types import KeyValueArea

__all__ = ["UserDirectory", "offline_users"]


class UserDirectory:
    """Every user a runtime knows: the store's, plus knot.toml's (which win on a name clash)."""

    def __init__(
        self, *, config_users: Callable[[], tuple[User, ...]], store: KeyValueArea
    ) -> None:
        self._config_users = config_users
        self._store = store
        self._stored: dict[str, User] = {}

    def load(self, records: Mapping[str, JSONObject]) -> None:
        self._stored = {name: User.from_record(raw) for name, raw in records.items()}

    def all(self) -> list[User]:
        merged = dict(self._stored)
        merged.update((u.name, u) for u in self._config_users())
        return sorted(merged.values(), key=lambda u: u.name)

    def __bool__(self) -> bool:
        return bool(self._stored) or bool(self._config_users())

    def get(self, name: str) -> User | None:
        for user in self._config_users():
            if user.name == name:
                return user
        return self._stored.get(name)

    def authenticate(self, token: str) -> User | None:
        """The user whose token this is; every hash is compared, in constant time each."""
        digest = hash_token(token)
        found: User | None = None
        for user in self.all():
            if hmac.compare_digest(user.token_sha256, digest):
                found = user
        return found

    async def add(
        self,
        name: str,
        *,
        manage_own_sinks: bool = True,
        manage_global_sinks: bool = False,
        manage_users: bool = False,
    ) -> tuple[User, str]:
        """Create a user; returns it and its token (the only time the token exists in clear)."""
        problem = check_user_name(name)
        if problem is not None:
            raise InvalidInput(problem)
        existing = self.get(name)
        if existing is not None:
            where = "in knot.toml" if existing.origin is UserOrigin.CONFIG else "already"
            raise Conflict(f"A user named {name!r} exists {where}; pick another name.", what=name)
        # Someone must be able to manage users once tokens are required: until a user may,
        # the next user created gets that permission.
        first = not any(u.manage_users for u in self.all())
        token = new_token()
        user = User(
            name=name,
            token_sha256=hash_token(token),
            manage_own_sinks=manage_own_sinks,
            manage_global_sinks=manage_global_sinks,
            manage_users=manage_users or first,
            created=now_rfc3339(),
        )
        record = user.to_record()
        await self._store.kv_put(KV_USERS, name, record)
        self._stored[name] = user
        return user, token

    async def remove(self, name: str) -> User:
        user = self.get(name)
        if user is None:
            raise NotFound(f"There is no user named {name!r}.", what=name)
        if user.origin is UserOrigin.CONFIG:
            raise Conflict(
                f"The user {name!r} is defined in knot.toml ([users.{name}]); remove it there.",
                what=name,
            )
        await self._store.kv_delete(KV_USERS, name)
        self._stored.pop(name, None)
        return user


@contextlib.contextmanager
def offline_users(store_path: Path, config_users: tuple[User, ...] = ()) -> Iterator[UserDirectory]:
    """The users of a store no runtime has open (StoreLocked when one has: use its API)."""
    store = Store(store_path)
    try:
        directory = UserDirectory(config_users=lambda: config_users, store=_Direct(store))
        directory.load(store.kv_all(KV_USERS))
        yield directory
    except sqlite3.DatabaseError as exc:  # a damaged page: the store's error, in one sentence
        raise store.unusable(exc) from None
    finally:
        store.close()


class _Direct:
    """A store no runtime has open, as a KeyValueArea: each change is its own transaction."""

    def __init__(self, store: Store) -> None:
        self.store = store

    def kv_all(self, area: str) -> dict[str, Any]:
        return self.store.kv_all(area)

    async def kv_put(self, area: str, key: str, value: Any) -> None:
        self.store.kv_put(area, key, value)

    async def kv_delete(self, area: str, key: str) -> None:
        self.store.kv_delete(area, key)
