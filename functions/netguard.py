"""Pure: which hosts and addresses `http-request` may reach (the SSRF guard's policy, after OWASP's rules).

Refused unless the allow list opens them: names that only mean something inside a cluster or a host
(`localhost`, `*.localhost`, one-label names that search domains complete, `*.svc`, `*.cluster.local`,
`*.internal`, `*.local`, the cloud metadata names) and every address that is not globally reachable:
loopback, private (RFC 1918), link-local (169.254.0.0/16, fe80::/10), shared address space (CGNAT,
100.64.0.0/10), unique-local (fc00::/7), multicast, unspecified, broadcast, documentation, reserved,
and the cloud metadata addresses (169.254.169.254, fd00:ec2::254, 100.100.100.200). An IPv6 address that
carries an IPv4 one (IPv4-mapped `::ffff:127.0.0.1`, IPv4-compatible, 6to4, NAT64 `64:ff9b::/96`) is
judged by the IPv4 address inside, and refused as IPv6 unless the IPv6 address itself is allowed.

The allow list (`KNFLOW_HTTP_ALLOW_NETS`, comma-separated) holds CIDRs or addresses (`10.0.0.0/8`,
`127.0.0.1`, `::1`), which open those addresses on any port, and `host:port` pairs (`api.internal:443`,
`127.0.0.1:8081`, `[::1]:8080`), which open that host, whatever it resolves to, on that port.

The caller resolves (the `Lookup` it passes) and then connects only to the addresses `resolve` checked.
"""

from __future__ import annotations

import functools
import ipaddress
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from broker.errors import KnflowError

Address = ipaddress.IPv4Address | ipaddress.IPv6Address
Network = ipaddress.IPv4Network | ipaddress.IPv6Network
Lookup = Callable[[str, int], Awaitable[list[str]]]
"""`(host, port)` → the addresses the host resolves to (raising OSError when it does not resolve)."""

SETTING = "KNFLOW_HTTP_ALLOW_NETS"
METADATA_ADDRESSES = frozenset(
    ipaddress.ip_address(a) for a in ("169.254.169.254", "fd00:ec2::254", "100.100.100.200", "169.254.170.2")
)
METADATA_NAMES = frozenset({"metadata", "metadata.google.internal", "metadata.goog", "instance-data"})
INTERNAL_SUFFIXES = (".svc", ".cluster.local", ".internal", ".local", ".localhost", ".localdomain", ".home.arpa")
_NET = ipaddress.ip_network
_CLASSES: tuple[tuple[tuple[Network, ...], str], ...] = (
    ((_NET("100.64.0.0/10"),), "shared address space (CGNAT, 100.64.0.0/10)"),
    ((_NET("fc00::/7"),), "unique-local (fc00::/7)"),
    ((_NET("10.0.0.0/8"), _NET("172.16.0.0/12"), _NET("192.168.0.0/16")), "private (RFC 1918)"),
    ((_NET("255.255.255.255/32"),), "broadcast"),
    (
        (_NET("192.0.2.0/24"), _NET("198.51.100.0/24"), _NET("203.0.113.0/24"), _NET("2001:db8::/32")),
        "documentation",
    ),
)
_NAT64 = _NET("64:ff9b::/96")
_COMPATIBLE = _NET("::/96")
_HOST = re.compile(r"^[A-Za-z0-9_.:-]+$")


class Refused(KnflowError):
    """A host or address the guard refuses: `reason` names its class."""

    def __init__(self, message: str, *, host: str, port: int, address: str | None, reason: str) -> None:
        super().__init__(message, host=host, port=port, address=address, reason=reason)
        self.host, self.port, self.address, self.reason = host, port, address, reason


class AllowListInvalid(KnflowError):
    """An entry of the allow list that is neither a CIDR nor host:port."""


@dataclass(frozen=True, slots=True)
class AllowList:
    networks: tuple[Network, ...] = ()
    hosts: frozenset[tuple[str, int]] = frozenset()

    def opens_address(self, address: Address) -> bool:
        return any(address.version == n.version and address in n for n in self.networks)

    def opens_host(self, host: str, port: int) -> bool:
        return (_normal(host), port) in self.hosts


@functools.lru_cache(maxsize=8)
def parse_allow_list(text: str) -> AllowList:
    """The allow list from `KNFLOW_HTTP_ALLOW_NETS`' text; AllowListInvalid names a bad entry."""
    networks: list[Network] = []
    hosts: set[tuple[str, int]] = set()
    for entry in filter(None, (e.strip() for e in text.split(","))):
        try:
            networks.append(ipaddress.ip_network(entry.strip("[]"), strict=False))
            continue
        except ValueError:
            pass
        host, sep, port = entry.rpartition(":")
        bracketed = host.startswith("[") and host.endswith("]")
        host = host[1:-1] if bracketed else host
        if sep and port.isdigit() and 0 < int(port) < 65536 and _HOST.match(host) and (bracketed or ":" not in host):
            hosts.add((_normal(host), int(port)))
        else:
            raise AllowListInvalid(
                f"environment variable {SETTING}: {entry!r} is neither a CIDR (10.0.0.0/8, 127.0.0.1, ::1) "
                "nor host:port (api.internal:443, [::1]:8080)",
                field=SETTING,
            )
    return AllowList(tuple(networks), frozenset(hosts))


def address_class(address: Address) -> str | None:
    """Why `address` is refused (its class), or None for a globally reachable one."""
    if address in METADATA_ADDRESSES:
        return "a cloud metadata address"
    if isinstance(address, ipaddress.IPv6Address):
        inner = _embedded(address)
        if inner is not None:
            why = address_class(inner)
            return f"{why}: IPv4 {inner} inside IPv6" if why else None
    for flag, name in (
        (address.is_unspecified, "unspecified"),
        (address.is_loopback, "loopback"),
        (address.is_link_local, "link-local"),
        (address.is_multicast, "multicast"),
    ):
        if flag:
            return name
    for networks, name in _CLASSES:
        if any(address.version == n.version and address in n for n in networks):
            return name
    if address.is_reserved:
        return "reserved"
    if not address.is_global:
        return "special-purpose, not globally reachable"
    return None


def check_host(host: str, port: int, allow: AllowList) -> None:
    """Refuse a URL's host by its name or, for an address literal, by its class (Refused says why)."""
    name = _normal(host)
    if allow.opens_host(name, port):
        return
    try:
        address = ipaddress.ip_address(name)
    except ValueError:
        why = name_class(name)
        if why:
            raise _refused(host, port, None, why) from None
        return
    check_address(host, port, address, allow)


def check_address(host: str, port: int, address: Address, allow: AllowList) -> None:
    if allow.opens_host(host, port) or allow.opens_address(address):
        return
    why = address_class(address)
    if why:
        raise _refused(host, port, str(address), why)


def name_class(name: str) -> str | None:
    """Why a host name is refused (names that only mean something inside), or None."""
    name = _normal(name)
    if name in METADATA_NAMES:
        return "a cloud metadata name"
    if name == "localhost" or name.endswith(INTERNAL_SUFFIXES):
        return "an internal name"
    if "." not in name:
        return "a one-label name (completed by the resolver's search domains: an internal name)"
    return None


async def resolve(host: str, port: int, allow: AllowList, lookup: Lookup) -> list[str]:
    """The addresses of `host`, every one checked: Refused if the name or any address is refused."""
    check_host(host, port, allow)
    try:
        return [str(ipaddress.ip_address(_normal(host)))]
    except ValueError:
        pass
    addresses = await lookup(host, port)
    if not addresses:
        raise OSError(f"{host} resolves to no address")
    if not allow.opens_host(host, port):
        for text in addresses:
            check_address(host, port, ipaddress.ip_address(text.partition("%")[0]), allow)
    return addresses


def _embedded(address: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address.sixtofour is not None:
        return address.sixtofour
    if address.teredo is not None:
        return address.teredo[1]
    if address in _NAT64 or (address in _COMPATIBLE and int(address) > 1):
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    return None


def _normal(host: str) -> str:
    return host.strip("[]").rstrip(".").lower()


def _refused(host: str, port: int, address: str | None, why: str) -> Refused:
    shown = f"'{host}'" + (f" ({address})" if address and address != _normal(host) else "")
    opens = f"{address}/{'32' if ':' not in address else '128'} or " if address else ""
    return Refused(
        f"host {shown} is refused: {why}. "
        f"{SETTING} opens what a deployment needs (e.g. {opens}{_port_form(host)}:{port})",
        host=host,
        port=port,
        address=address,
        reason=why,
    )


def _port_form(host: str) -> str:
    name = _normal(host)
    return f"[{name}]" if ":" in name else name
