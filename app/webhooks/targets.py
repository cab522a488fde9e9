"""Where a webhook may be sent (SSRF rules): https only (http by setting), no credentials in the
URL, and a host whose every address is public. Checked at registration and again before each
delivery, which then connects to the very address it checked (DNS can change in between)."""

import asyncio
import ipaddress
import socket
from dataclasses import dataclass
from urllib.parse import SplitResult, urlsplit

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

# Cloud instance metadata services hand out credentials: refused even where private targets
# are allowed.
METADATA_ADDRESSES = frozenset(
    ipaddress.ip_address(address)
    for address in ("169.254.169.254", "fd00:ec2::254", "100.100.100.200")
)
NAT64 = ipaddress.ip_network("64:ff9b::/96")


class TargetRefusedError(ValueError):
    """The URL is not one deliveries may go to; the message says why (never the addresses)."""


@dataclass(frozen=True)
class Target:
    """A checked URL: the address to connect to, and the host name it stands for."""

    url: str  # with the checked address in place of the host name
    host_header: str
    server_name: str | None  # for TLS (SNI and the certificate's name); None for http


def parse_url(url: str, *, allow_http: bool) -> SplitResult:
    """The URL's parts, if its form is acceptable: scheme, host, no credentials or fragment."""
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018  (raises on a port out of range)
    except ValueError:
        raise TargetRefusedError("is not a valid URL") from None
    schemes = ("https", "http") if allow_http else ("https",)
    if parts.scheme not in schemes:
        allowed = "http:// or https://" if allow_http else "https://"
        raise TargetRefusedError(f"must be an {allowed} URL")
    if not parts.hostname:
        raise TargetRefusedError("must name a host")
    if parts.username is not None or parts.password is not None:
        raise TargetRefusedError("must not carry credentials (user:password@)")
    if parts.fragment:
        raise TargetRefusedError("must not have a #fragment")
    return parts


def refusal(address: IPAddress, *, allow_private: bool) -> str | None:
    """Why deliveries may not go to this address, or None."""
    embedded = _embedded_ipv4(address)
    if embedded is not None:
        return refusal(embedded, allow_private=allow_private)
    if address in METADATA_ADDRESSES:
        return "resolves to a cloud metadata address"
    if address.is_multicast or address.is_unspecified:
        return "resolves to a multicast or unspecified address"
    if not allow_private and not address.is_global:
        return "resolves to a loopback, private, link-local or reserved address"
    return None


def _embedded_ipv4(address: IPAddress) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 one carries (mapped, 6to4, NAT64): checked as itself."""
    if not isinstance(address, ipaddress.IPv6Address):
        return None
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address.sixtofour is not None:
        return address.sixtofour
    if address in NAT64:
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    return None


async def resolve(host: str, port: int, seconds: float) -> list[IPAddress]:
    loop = asyncio.get_running_loop()
    try:
        async with asyncio.timeout(seconds):
            found = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError, TimeoutError):
        raise TargetRefusedError("does not resolve (unknown host)") from None
    addresses: list[IPAddress] = []
    for *_, sockaddr in found:
        address = ipaddress.ip_address(str(sockaddr[0]).partition("%")[0])
        if address not in addresses:
            addresses.append(address)
    if not addresses:
        raise TargetRefusedError("does not resolve (unknown host)")
    return addresses


async def check_target(
    url: str, *, allow_http: bool, allow_private: bool, resolve_seconds: float
) -> Target:
    """The URL pinned to a checked address; TargetRefusedError if any address is refused."""
    parts = parse_url(url, allow_http=allow_http)
    assert parts.hostname is not None
    port = parts.port or (443 if parts.scheme == "https" else 80)
    addresses = await resolve(parts.hostname, port, resolve_seconds)
    for address in addresses:
        reason = refusal(address, allow_private=allow_private)
        if reason is not None:
            raise TargetRefusedError(reason)
    chosen = addresses[0]
    host = f"[{chosen}]" if chosen.version == 6 else str(chosen)
    netloc = host if parts.port is None else f"{host}:{parts.port}"
    return Target(
        url=parts._replace(netloc=netloc).geturl(),
        host_header=parts.netloc,
        server_name=parts.hostname if parts.scheme == "https" else None,
    )
