"""Where a delivery may go: no server-side request forgery.

A URL must be `https://`, at most 2,000 characters, without user information, and its
host must not be, nor resolve to, a private, loopback, link-local, multicast, reserved,
unspecified or otherwise non-public address (IPv4 and IPv6, IPv4 inside IPv6 included).
With `KOMAR_WEBHOOKS_ALLOW_LOOPBACK=1` (local runs and tests) loopback addresses are
allowed, and `http://` for the hosts 127.0.0.1, localhost and [::1].

The check is made when an endpoint is created or changed, and again before every attempt:
`resolve` returns the one address that was checked, and the delivery connects to that
address (the host name is kept for TLS and the Host header), so a name cannot resolve to a
public address for the check and a private one for the connection.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from urllib.parse import SplitResult, urlsplit

MAX_URL_LENGTH = 2000
RESOLVE_TIMEOUT_S = 3.0
LOOPBACK_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})
_NAT64 = ipaddress.ip_network("64:ff9b::/96")

IpAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
# host, port -> the addresses it resolves to
Resolver = Callable[[str, int], Awaitable[list[str]]]


class UrlRefused(ValueError):
    """The URL may not receive deliveries; the message says why (no personal data)."""


@dataclass(frozen=True)
class Target:
    """A URL taken apart: scheme, host (lower case, IDNA), port, and what follows the
    host (path and query)."""

    scheme: str
    host: str
    port: int
    rest: str

    @property
    def host_header(self) -> str:
        """The Host header: the host (bracketed when IPv6) and a port that is not the
        scheme's own."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        default = 443 if self.scheme == "https" else 80
        return host if self.port == default else f"{host}:{self.port}"

    def url_at(self, address: str) -> str:
        """The URL with its host replaced by a checked address."""
        host = f"[{address}]" if ":" in address else address
        return f"{self.scheme}://{host}:{self.port}{self.rest}"


def parse(url: str, *, allow_loopback: bool) -> Target:
    """The URL's parts when its form is allowed, else UrlRefused naming why."""
    if len(url) > MAX_URL_LENGTH:
        raise UrlRefused(f"must be at most {MAX_URL_LENGTH:,} characters")
    if any(c.isspace() for c in url):
        raise UrlRefused("must not contain white space")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise UrlRefused("is not a valid URL") from exc
    scheme = parts.scheme.lower()
    if scheme not in ("https", "http"):
        raise UrlRefused("must be an https:// URL")
    if parts.username is not None or parts.password is not None or "@" in parts.netloc:
        raise UrlRefused("must not contain user information (user:password@)")
    if parts.fragment or url.endswith("#"):
        raise UrlRefused("must not have a fragment")
    host = _host(parts)
    if scheme == "http" and not (allow_loopback and host in LOOPBACK_HOSTS):
        raise UrlRefused("must be an https:// URL")
    rest = parts.path or "/"
    if parts.query:
        rest += "?" + parts.query
    return Target(scheme, host, port or (443 if scheme == "https" else 80), rest)


def _host(parts: SplitResult) -> str:
    host = parts.hostname
    if not host:
        raise UrlRefused("must name a host")
    try:
        host = host.encode("idna").decode("ascii").lower()
    except UnicodeError as exc:
        raise UrlRefused("has a host name that is not valid") from exc
    if host.endswith("."):
        host = host[:-1]
    if not host:
        raise UrlRefused("must name a host")
    return host


def refusal(address: IpAddress, *, allow_loopback: bool) -> str | None:
    """Why deliveries may not go to this address, else None."""
    if isinstance(address, ipaddress.IPv6Address):
        embedded = address.ipv4_mapped or address.sixtofour
        if embedded is None and address.teredo is not None:
            embedded = address.teredo[1]
        if embedded is None and address in _NAT64:
            embedded = ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
        if embedded is not None:
            return refusal(embedded, allow_loopback=allow_loopback)
    if address.is_loopback:
        return None if allow_loopback else "a loopback address"
    for kind, flag in (
        ("an unspecified address", address.is_unspecified),
        ("a link-local address", address.is_link_local),
        ("a private address", address.is_private),
        ("a multicast address", address.is_multicast),
        ("a reserved address", address.is_reserved),
    ):
        if flag:
            return kind
    if not address.is_global:
        return "not a public address"
    return None


def literal(host: str) -> IpAddress | None:
    """The host as an IP address when it is one."""
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        return None


async def system_resolver(host: str, port: int) -> list[str]:
    """The addresses the system resolver gives for host:port (TCP)."""
    loop = asyncio.get_running_loop()
    infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return [str(info[4][0]) for info in infos]


async def resolve(target: Target, *, allow_loopback: bool, resolver: Resolver) -> str:
    """The address to connect to: the host itself when it is an address, else the first
    address its name resolves to, once every address it resolves to is allowed.
    UrlRefused naming why otherwise."""
    address = literal(target.host)
    if address is not None:
        why = refusal(address, allow_loopback=allow_loopback)
        if why is not None:
            raise UrlRefused(f"must not point to {why}")
        return str(address)
    try:
        async with asyncio.timeout(RESOLVE_TIMEOUT_S):
            found = await resolver(target.host, target.port)
    except (OSError, TimeoutError, UnicodeError) as exc:
        raise UrlRefused("has a host name that does not resolve") from exc
    addresses = [a for a in (literal(f.split("%", 1)[0]) for f in found) if a is not None]
    if not addresses:
        raise UrlRefused("has a host name that does not resolve")
    for a in addresses:
        why = refusal(a, allow_loopback=allow_loopback)
        if why is not None:
            raise UrlRefused(f"must not resolve to {why}")
    return str(addresses[0])


async def check(
    url: str, *, allow_loopback: bool, resolver: Resolver = system_resolver
) -> tuple[Target, str]:
    """The URL's parts and the checked address to connect to, else UrlRefused."""
    target = parse(url, allow_loopback=allow_loopback)
    return target, await resolve(target, allow_loopback=allow_loopback, resolver=resolver)
