"""Where scripts may send HTTP requests: `http_allow` entries, parsed and matched. No I/O.

An entry names a host and, optionally, a port:

    "hooks.slack.com"        that host, on the scheme's default port (80 for http, 443 for https)
    "127.0.0.1:8080"         that host, on that port (either scheme)
    "api.example.com:*"      that host, on any port
    "*.example.com"          any subdomain of example.com (not example.com itself)
    "[::1]:8080", "::1"      IPv6 addresses, bracketed when a port follows
    "*"                      any host, on default ports

Deny by default: a request is allowed only when an entry matches its host and port. Addresses
that are not public (loopback, private, link-local, CGNAT, multicast, ...) are reachable only
through an entry that names the host exactly: never through a wildcard, so a name under an
allowed domain that resolves to 127.0.0.1 (DNS rebinding, `127.0.0.1.nip.io`) stays out.
Which addresses a name resolves to is checked where the runtime connects (`scriptlib/http.py`),
against the same `AllowList`.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "ANY_PORT",
    "AllowEntry",
    "AllowList",
    "ScriptAccess",
    "address_problem",
    "check_hosts",
    "default_port",
    "normalize_host",
    "parse_entry",
    "script_tables",
]

ANY_PORT = -1
_LABEL = re.compile(r"(?!-)[a-z0-9_-]{1,63}(?<!-)")
_DEFAULT_PORTS = {"http": 80, "https": 443}

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


def default_port(scheme: str) -> int:
    return _DEFAULT_PORTS.get(scheme, 0)


def normalize_host(host: str) -> str:
    """A host as entries and URLs are compared: lower case, IDNA (punycode), no trailing dot,
    IP addresses in their canonical form. ValueError with a sentence for anything else."""
    text = host.strip().lower()
    if text.startswith("[") and text.endswith("]"):
        text = text[1:-1]
    try:
        return str(ipaddress.ip_address(text))
    except ValueError:
        pass
    text = text.removesuffix(".")
    if not text:
        raise ValueError("the host is empty")
    if not text.isascii():
        try:
            text = text.encode("idna").decode("ascii")
        except UnicodeError:
            raise ValueError(f"{host!r} is not a valid host name") from None
    if len(text) > 253 or not all(_LABEL.fullmatch(label) for label in text.split(".")):
        raise ValueError(f"{host!r} is not a valid host name")
    return text


@dataclass(frozen=True, slots=True)
class AllowEntry:
    """One `http_allow` entry: `host` is normalized (for a wildcard, the domain after `*.`;
    "" for `*` alone); `port` is a number, None for the scheme's default, or ANY_PORT."""

    text: str
    host: str
    wildcard: bool = False
    port: int | None = None

    def matches(self, host: str, port: int, scheme: str) -> bool:
        if self.port is None:
            if port != default_port(scheme):
                return False
        elif self.port != ANY_PORT and self.port != port:
            return False
        if not self.wildcard:
            return host == self.host
        return not self.host or host.endswith("." + self.host)


def parse_entry(text: str) -> AllowEntry:
    """One entry, or ValueError saying what is wrong with it (a clause for a sentence)."""
    raw = text.strip()
    if not raw:
        raise ValueError("an entry is empty")
    host, port_text = raw, ""
    if raw.startswith("["):  # [v6] or [v6]:port
        close = raw.find("]")
        if close < 0:
            raise ValueError(f"{text!r} opens a [ for an IPv6 address but does not close it")
        host, rest = raw[: close + 1], raw[close + 1 :]
        if rest and not rest.startswith(":"):
            raise ValueError(f"{text!r} has {rest!r} after the address; write [address]:port")
        port_text = rest[1:]
    elif raw.count(":") == 1:
        host, port_text = raw.split(":")
    elif raw.count(":") > 1:  # a bare IPv6 address, no port
        host = raw
    if "/" in host or "@" in host or "://" in raw:
        raise ValueError(
            f"{text!r} is not a host: write a host name or address, optionally with :port "
            "(no scheme, path or user)"
        )
    port: int | None = None
    if port_text == "*":
        port = ANY_PORT
    elif port_text or raw.endswith(":"):
        if not port_text.isdigit() or not 0 < int(port_text) < 65536:
            raise ValueError(f"{text!r} has a port that is not a number from 1 to 65535 or *")
        port = int(port_text)
    if host == "*":
        return AllowEntry(raw, "", wildcard=True, port=port)
    wildcard = host.startswith("*.")
    name = host[2:] if wildcard else host
    if "*" in name:
        raise ValueError(f"{text!r} has a * that is not a leading '*.' (as in *.example.com)")
    try:
        normalized = normalize_host(name)
    except ValueError as exc:
        raise ValueError(f"{text!r} is not a host: {exc}") from None
    if wildcard and _ip(normalized) is not None:
        raise ValueError(f"{text!r} puts a wildcard on an IP address")
    return AllowEntry(raw, normalized, wildcard=wildcard, port=port)


@dataclass(frozen=True, slots=True)
class AllowList:
    """The entries one script may use: `[scripts] http_allow` plus its own table's."""

    entries: tuple[AllowEntry, ...] = ()
    setting: str = "scripts.http_allow"  # named in refusals

    @classmethod
    def parse(cls, texts: Iterable[str], *, setting: str = "scripts.http_allow") -> AllowList:
        return cls(tuple(parse_entry(t) for t in texts), setting)

    def __bool__(self) -> bool:
        return bool(self.entries)

    def match(self, host: str, port: int, scheme: str) -> AllowEntry | None:
        """The entry that allows host:port, an exact one before a wildcard; None: refused."""
        found: AllowEntry | None = None
        for entry in self.entries:
            if entry.matches(host, port, scheme):
                if not entry.wildcard:
                    return entry
                found = found or entry
        return found


def _ip(host: str) -> IPAddress | None:
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        return None


def _embedded_v4(address: ipaddress.IPv6Address) -> list[ipaddress.IPv4Address]:
    """IPv4 addresses an IPv6 one carries (mapped, 6to4, Teredo, NAT64): each is checked too."""
    found: list[ipaddress.IPv4Address] = []
    if address.ipv4_mapped is not None:
        found.append(address.ipv4_mapped)
    if address.sixtofour is not None:
        found.append(address.sixtofour)
    if address.teredo is not None:
        found.extend(address.teredo)
    if address in _NAT64:
        found.append(ipaddress.IPv4Address(int(address) & 0xFFFFFFFF))
    return found


_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")


def address_problem(address: str) -> str | None:
    """None for a public address; else what it is ("a loopback address", ...)."""
    ip = ipaddress.ip_address(address.split("%", 1)[0])  # an IPv6 zone (fe80::1%eth0) aside
    candidates: list[IPAddress] = []
    if isinstance(ip, ipaddress.IPv6Address):  # what it carries says most: "loopback"
        candidates.extend(_embedded_v4(ip))
    candidates.append(ip)
    for candidate in candidates:
        if candidate.is_loopback:
            return "a loopback address"
        if candidate.is_unspecified:
            return "an unspecified address"
        if candidate.is_link_local:
            return "a link-local address"
        if candidate.is_multicast:
            return "a multicast address"
        if candidate.is_private:
            return "a private address"
        if not candidate.is_global:
            return "an address that is not publicly routable"
    return None


# -- the settings that hold allow-lists (parsed by _config.py) ------------------------------


@dataclass(frozen=True, slots=True)
class ScriptAccess:
    """What one script may reach beyond `[scripts]`: `[scripts.sinks.NAME]` or
    `[scripts.methods.NAME]` (in knot.toml, the owner's settings: never the script's text)."""

    http_allow: AllowList = field(
        default_factory=AllowList,
        # The meaning in the knot.toml reference (see _settings.setting).
        metadata={"knot.meaning": "Hosts this one script may reach besides scripts.http_allow."},
    )


def check_hosts(value: Any) -> str | None:
    """None for a good `http_allow` list; else what is wrong (a clause for a sentence)."""
    if not isinstance(value, list) or not all(isinstance(x, str) for x in value):
        return 'must be a list of hosts ("host", "host:port", "*.domain")'
    for entry in value:
        try:
            parse_entry(entry)
        except ValueError as exc:
            return f"must be a list of hosts: {exc}"
    return None


def script_tables(
    prefix: str,
    value: Any,
    where: Callable[[str | None, str], str],
    errors: list[str],
    warnings: list[str],
) -> dict[str, ScriptAccess]:
    """`[scripts.sinks.NAME]` (or `.methods.`) tables: what one script may reach besides what
    `[scripts]` grants every script. Problems go to `errors` and `warnings`, each starting with
    `where(section, key)` (the file, line and dotted key)."""
    if not isinstance(value, dict):
        errors.append(f"{where(None, prefix)} must be a table of tables, one per script.")
        return {}
    out: dict[str, ScriptAccess] = {}
    for name, table in value.items():
        section = f"{prefix}.{name}"
        if not isinstance(table, dict):
            errors.append(f"{where(None, section)} must be a table.")
            continue
        hosts = AllowList(setting=f"{section}.http_allow")
        for key, item in table.items():
            if key != "http_allow":
                warnings.append(f"{where(section, key)} is not a known setting and is ignored.")
                continue
            problem = check_hosts(item)
            if problem is not None:
                errors.append(f"{where(section, key)} {problem}, not {item!r}.")
                continue
            hosts = AllowList.parse(item, setting=f"{section}.{key}")
        out[name] = ScriptAccess(hosts)
    return out
