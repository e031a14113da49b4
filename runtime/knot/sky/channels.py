"""Sky channels: event channel identifiers (ecis), who owns them, and what they let in.

An eci is a capability: whoever knows it may raise events on it, and those events belong to
the channel's owner (so that user's own sinks fire for them, as well as the global sinks).
Each channel carries a policy, as pico-engine's channels do: `allow` and `deny` lists of sink
patterns over the full event type (`custom.<domain>.<type>`). A type matching any `deny`
pattern, or no `allow` pattern, is refused (HTTP 403). The default lets everything in.

Channels are persisted in the store's kv table (scope `channels`) and kept in memory, so
looking one up on the Sky hot path costs one dict probe.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from .._events import now_rfc3339
from .._exceptions import InvalidInput, NotFound
from .._json import JSONObject
from .._patterns import Pattern, parse_patterns
from .._user_directory import UserDirectory
from ..types import KeyValueArea

__all__ = ["KV_CHANNELS", "Channel", "ChannelPolicy", "Channels", "check_eci", "check_owner"]

KV_CHANNELS = "channels"
_ECI_RE = re.compile(r"[A-Za-z0-9_-]{1,128}")
_OWNER_RE = re.compile(r"[A-Za-z0-9_.@-]{1,128}")
_EVERYTHING = (Pattern.parse("*"),)


def check_eci(eci: object) -> str | None:
    """Why `eci` cannot name a channel, or None when it can."""
    if not isinstance(eci, str) or not _ECI_RE.fullmatch(eci):
        return (
            f"The eci {eci!r} is not valid: use 1 to 128 letters, digits, '_' or '-' "
            "(or leave it out and one is generated)."
        )
    return None


def check_owner(owner: object) -> str | None:
    """Why `owner` cannot own a channel, or None when it can ("" is the global owner)."""
    if owner == "":
        return None
    if not isinstance(owner, str) or not _OWNER_RE.fullmatch(owner):
        return (
            f"The owner {owner!r} is not a valid user id: use 1 to 128 letters, digits, "
            "'_', '.', '@' or '-' ('' for a global channel)."
        )
    return None


def new_eci() -> str:
    """24 URL-safe characters (144 random bits): an eci is a secret, not a name."""
    return secrets.token_urlsafe(18)


@dataclass(frozen=True, slots=True)
class ChannelPolicy:
    """Which event types a channel lets in: not denied, and allowed."""

    allow: tuple[Pattern, ...] = _EVERYTHING
    deny: tuple[Pattern, ...] = ()

    @classmethod
    def parse(
        cls, allow: str | Iterable[str] | None = None, deny: str | Iterable[str] | None = None
    ) -> ChannelPolicy:
        """Build a policy from pattern lists; raise PatternError naming a bad pattern."""
        allowed = parse_patterns(allow) if allow is not None and _entries(allow) else _EVERYTHING
        denied = parse_patterns(deny) if deny is not None and _entries(deny) else ()
        return cls(allowed, denied)

    def refusal(self, event_type: str) -> str | None:
        """Why the policy refuses `event_type`, or None when it lets it in."""
        for pattern in self.deny:
            if pattern.matches(event_type):
                return f"the channel's policy denies {pattern.text!r}"
        if not any(p.matches(event_type) for p in self.allow):
            allowed = ", ".join(p.text for p in self.allow)
            return f"the channel's policy allows only {allowed}"
        return None

    def to_dict(self) -> JSONObject:
        return {"allow": [p.text for p in self.allow], "deny": [p.text for p in self.deny]}


def _entries(spec: str | Iterable[str]) -> list[str]:
    raw = spec.split(",") if isinstance(spec, str) else list(spec)
    return [e.strip() for e in raw if isinstance(e, str) and e.strip()]


@dataclass(frozen=True, slots=True)
class Channel:
    eci: str
    owner: str = ""  # the user whose events these are; "" = global (only global sinks fire)
    name: str = ""
    policy: ChannelPolicy = field(default_factory=ChannelPolicy)
    created: str = ""

    def to_dict(self) -> JSONObject:
        return {
            "eci": self.eci,
            "owner": self.owner,
            "name": self.name,
            "policy": self.policy.to_dict(),
            "created": self.created,
        }

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any]) -> Channel:
        """A channel as the store keeps it; raise InvalidInput when it cannot be one."""
        eci = raw.get("eci")
        problems = [p for p in (check_eci(eci), check_owner(raw.get("owner", ""))) if p]
        if problems:
            raise InvalidInput(" ".join(problems))
        policy = raw.get("policy") or {}
        assert isinstance(eci, str)
        return cls(
            eci=eci,
            owner=str(raw.get("owner", "")),
            name=str(raw.get("name", "")),
            policy=ChannelPolicy.parse(policy.get("allow"), policy.get("deny")),
            created=str(raw.get("created", "")),
        )


class Channels:
    """The channels of one runtime: in memory for lookups, written through to the store."""

    def __init__(self, store: KeyValueArea, users: UserDirectory) -> None:
        self._store = store
        self._users = users
        self._by_eci: dict[str, Channel] = {}

    def __len__(self) -> int:
        return len(self._by_eci)

    def load(self, stored: Mapping[str, Mapping[str, Any]]) -> list[str]:
        """Replace what is in memory with the stored channels; return the ones that failed."""
        self._by_eci.clear()
        problems: list[str] = []
        for key, raw in stored.items():
            try:
                channel = Channel.from_dict(raw)
            except InvalidInput as exc:
                problems.append(f"The stored channel {key!r} cannot be loaded: {exc}")
                continue
            self._by_eci[channel.eci] = channel
        return problems

    def get(self, eci: str) -> Channel | None:
        return self._by_eci.get(eci)

    def find(self, eci: str) -> Channel:
        """The channel named `eci`, or NotFound saying how to make one."""
        channel = self._by_eci.get(eci)
        if channel is None:
            shown = eci if len(eci) <= 64 else eci[:61] + "..."
            raise NotFound(
                f"There is no channel with eci {shown!r}; create one with "
                "`knot channel create` (or POST /api/channels).",
                what=eci,
            )
        return channel

    def list(self, *, owner: str | None = None) -> list[Channel]:
        """Every channel (oldest first), or only those of `owner`."""
        found = [c for c in self._by_eci.values() if owner is None or c.owner == owner]
        return sorted(found, key=lambda c: (c.created, c.eci))

    async def create(
        self,
        *,
        owner: str = "",
        name: str = "",
        allow: str | Iterable[str] | None = None,
        deny: str | Iterable[str] | None = None,
        eci: str | None = None,
    ) -> Channel:
        """Make (and persist) a channel; the eci is generated unless given.

        Once users exist, the owner must be one of them (or "" for global), as for sinks: a
        channel of a user who does not exist would raise events no user's sinks ever get.
        """
        problems = [p for p in (check_owner(owner),) if p]
        users = self._users
        if not problems and owner and users and users.get(owner) is None:
            problems.append(f"There is no user named {owner!r} to own the channel.")
        if eci is not None:
            if (problem := check_eci(eci)) is not None:
                problems.append(problem)
            elif eci in self._by_eci:
                problems.append(f"A channel with eci {eci!r} already exists.")
        if not isinstance(name, str) or len(name) > 200:
            problems.append("The channel name must be a string of at most 200 characters.")
        if problems:
            raise InvalidInput(" ".join(problems))
        policy = ChannelPolicy.parse(allow, deny)
        chosen = eci or new_eci()
        channel = Channel(chosen, owner, name.strip(), policy, now_rfc3339())
        data = channel.to_dict()
        self._by_eci[chosen] = channel
        try:
            await self._store.kv_put(KV_CHANNELS, chosen, data)
        except BaseException:
            self._by_eci.pop(chosen, None)
            raise
        return channel

    async def delete(self, eci: str) -> Channel:
        """Remove a channel; events raised on it from now on get 404."""
        channel = self.find(eci)
        del self._by_eci[eci]
        await self._store.kv_delete(KV_CHANNELS, eci)
        return channel
