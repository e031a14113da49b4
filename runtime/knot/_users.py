"""Users as values: names, bearer tokens (kept only as SHA-256 hashes), what each may change.

Users live in the store (`knot user add`, `/api/users`) and optionally in knot.toml's `[users]`.
A user's id is their name: sinks name their owner by it and events raised with a user's token
belong to that user. Permissions follow Knot: "Manage Own Event Sinks", "Manage Global Event
Sinks" (which here covers every sink), and "Manage Users" (which a new user gets while no user
has it, so that users can still be managed once tokens are required).
"""

from __future__ import annotations

import hashlib
import re
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from ._events import Actor, ActorKind
from ._json import JSONObject

__all__ = [
    "KV_USERS",
    "USER_KEYS",
    "User",
    "UserOrigin",
    "check_user_name",
    "hash_token",
    "new_token",
    "parse_config_users",
]

KV_USERS = "users"
USER_KEYS = {
    "token_sha256": "The SHA-256 (hex) of the user's bearer token (preferred to `token`).",
    "token": "The bearer token itself, at least 16 characters.",
    "manage_own_sinks": "May create, change and remove their own sinks; default true.",
    "manage_global_sinks": "May do so for global sinks and everyone's; default false.",
    "manage_users": "May add, list and remove users; default false.",
}
"""The keys of a `[users.NAME]` table in knot.toml, with their meanings."""
TOKEN_PREFIX = "knot_"
_NAME_RE = re.compile(r"[a-zA-Z][a-zA-Z0-9_.-]{0,63}")
_HEX_RE = re.compile(r"[0-9a-f]{64}")


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
        unknown = sorted(set(table) - set(USER_KEYS))
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
