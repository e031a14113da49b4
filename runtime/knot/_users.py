"""Users: names, bearer tokens (kept only as SHA-256 hashes) and what each user may change.

Users live in the store (`knot user add`, `/api/users`) and optionally in knot.toml's `[users]`.
A user's id is their name: sinks name their owner by it and events raised with a user's token
belong to that user. Permissions follow Knot: "Manage Own Event Sinks", "Manage Global Event
Sinks" (which here covers every sink), and "Manage Users" (which a new user gets while no user
has it, so that users can still be managed once tokens are required).
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import re
import secrets
import sqlite3
from collections.abc import Awaitable, Callable, Iterator, Mapping
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any

from ._events import Actor, ActorKind, now_rfc3339
from ._exceptions import Conflict, InvalidInput, NotFound
from .engine.store import Store
from .types import JSONObject

__all__ = [
    "KV_USERS",
    "User",
    "UserDirectory",
    "UserOrigin",
    "check_user_name",
    "hash_token",
    "new_token",
    "offline_users",
    "parse_config_users",
]

KV_USERS = "users"
TOKEN_PREFIX = "knot_"
_NAME_RE = re.compile(r"[a-zA-Z][a-zA-Z0-9_.-]{0,63}")
_HEX_RE = re.compile(r"[0-9a-f]{64}")
Persist = Callable[[Callable[[Store], Any]], Awaitable[Any]]


class UserOrigin(StrEnum):
    STORE = "store"  # added with `knot user add` or the API
    CONFIG = "config"  # [users.NAME] in knot.toml; changed only there


@dataclass(frozen=True, slots=True)
class User:
    name: str
    token_sha256: str
    manage_own_sinks: bool = True
    manage_global_sinks: bool = False
    manage_users: bool = False
    origin: UserOrigin = UserOrigin.STORE
    created: str = ""

    @property
    def actor(self) -> Actor:
        return Actor(self.name, self.name, ActorKind.USER)

    @property
    def permissions(self) -> list[str]:
        named = [
            (self.manage_own_sinks, "Manage Own Event Sinks"),
            (self.manage_global_sinks, "Manage Global Event Sinks"),
            (self.manage_users, "Manage Users"),
        ]
        return [title for granted, title in named if granted]

    def to_dict(self) -> JSONObject:
        """The user as listings show it: never the token, nor its hash."""
        return {
            "name": self.name,
            "manage_own_sinks": self.manage_own_sinks,
            "manage_global_sinks": self.manage_global_sinks,
            "manage_users": self.manage_users,
            "permissions": self.permissions,
            "origin": self.origin.value,
            "created": self.created,
        }

    def to_record(self) -> JSONObject:
        return {**self.to_dict(), "token_sha256": self.token_sha256}

    @classmethod
    def from_record(cls, raw: Mapping[str, Any]) -> User:
        return cls(
            name=str(raw["name"]),
            token_sha256=str(raw["token_sha256"]),
            manage_own_sinks=bool(raw.get("manage_own_sinks", True)),
            manage_global_sinks=bool(raw.get("manage_global_sinks", False)),
            manage_users=bool(raw.get("manage_users", False)),
            created=str(raw.get("created", "")),
        )


def new_token() -> str:
    return TOKEN_PREFIX + secrets.token_urlsafe(32)


def hash_token(token: str) -> str:
    # Tokens are 256 random bits: a plain SHA-256 is as good as a slow hash here.
    return hashlib.sha256(token.encode()).hexdigest()


def check_user_name(name: object) -> str | None:
    if not isinstance(name, str) or not _NAME_RE.fullmatch(name):
        return (
            f"The user name {name!r} is not valid: it must start with a letter and have at most "
            "64 letters, digits, '_', '.' or '-'."
        )
    return None


def parse_config_users(raw: object) -> tuple[tuple[User, ...], list[tuple[str, str]]]:
    """`[users.NAME]` tables from knot.toml; problems come as (name, sentence) pairs."""
    if not isinstance(raw, dict):
        return (), [("", "must be a table of users ([users.NAME])")]
    users: list[User] = []
    problems: list[tuple[str, str]] = []
    for name, table in raw.items():
        problem = check_user_name(name)
        if problem is not None:
            problems.append((name, problem))
            continue
        if not isinstance(table, dict):
            problems.append((name, "must be a table with token_sha256 (or token)"))
            continue
        known = {"token", "token_sha256", "manage_own_sinks", "manage_global_sinks", "manage_users"}
        unknown = sorted(set(table) - known)
        if unknown:
            problems.append((name, f"has unknown keys {', '.join(unknown)}"))
        flags = {
            k: table.get(k, d)
            for k, d in (
                ("manage_own_sinks", True),
                ("manage_global_sinks", False),
                ("manage_users", False),
            )
        }
        bad = [k for k, v in flags.items() if not isinstance(v, bool)]
        if bad:
            problems.append((name, f"{', '.join(bad)} must be true or false"))
        digest = table.get("token_sha256")
        token = table.get("token")
        if (digest is None) == (token is None):
            problems.append((name, "needs exactly one of token_sha256 (preferred) or token"))
            continue
        if digest is not None and (not isinstance(digest, str) or not _HEX_RE.fullmatch(digest)):
            problems.append((name, "token_sha256 must be 64 lower-case hex digits"))
            continue
        if token is not None and (not isinstance(token, str) or len(token) < 16):
            problems.append((name, "token must be a string of at least 16 characters"))
            continue
        if bad or unknown:
            continue
        users.append(
            User(
                name=name,
                token_sha256=digest if isinstance(digest, str) else hash_token(str(token)),
                origin=UserOrigin.CONFIG,
                **flags,
            )
        )
    return tuple(users), problems


class UserDirectory:
    """Every user a runtime knows: the store's, plus knot.toml's (which win on a name clash)."""

    def __init__(self, *, config_users: Callable[[], tuple[User, ...]], persist: Persist) -> None:
        self._config_users = config_users
        self._persist = persist
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
        await self._persist(lambda store: store.kv_put(KV_USERS, name, record))
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
        await self._persist(lambda store: store.kv_delete(KV_USERS, name))
        self._stored.pop(name, None)
        return user


@contextlib.contextmanager
def offline_users(store_path: Path, config_users: tuple[User, ...] = ()) -> Iterator[UserDirectory]:
    """The users of a store no runtime has open (StoreLocked when one has: use its API)."""
    store = Store(store_path)
    try:

        async def persist(fn: Callable[[Store], Any]) -> Any:
            return fn(store)

        directory = UserDirectory(config_users=lambda: config_users, persist=persist)
        directory.load(store.kv_all(KV_USERS))
        yield directory
    except sqlite3.DatabaseError as exc:  # a damaged page: the store's error, in one sentence
        raise store.unusable(exc) from None
    finally:
        store.close()
