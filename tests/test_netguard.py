"""The SSRF guard's policy (functions/netguard.py): every class of address and name, through the guard's own
check and a resolver the test controls. Nothing here connects anywhere."""

from __future__ import annotations

import ipaddress

import pytest

from functions import netguard
from functions.netguard import AllowListInvalid, Refused, address_class, check_host, parse_allow_list

NONE = parse_allow_list("")


@pytest.mark.parametrize(
    "address, reason",
    [
        ("127.0.0.1", "loopback"),
        ("127.8.9.10", "loopback"),
        ("::1", "loopback"),
        ("10.1.2.3", "private (RFC 1918)"),
        ("172.16.0.1", "private (RFC 1918)"),
        ("192.168.1.1", "private (RFC 1918)"),
        ("169.254.169.254", "a cloud metadata address"),
        ("fd00:ec2::254", "a cloud metadata address"),
        ("169.254.1.1", "link-local"),
        ("fe80::1", "link-local"),
        ("100.64.0.1", "shared address space (CGNAT, 100.64.0.0/10)"),
        ("fd12:3456::1", "unique-local (fc00::/7)"),
        ("224.0.0.1", "multicast"),
        ("ff02::1", "multicast"),
        ("0.0.0.0", "unspecified"),
        ("::", "unspecified"),
        ("255.255.255.255", "broadcast"),
        ("192.0.2.10", "documentation"),
        ("2001:db8::1", "documentation"),
        ("240.0.0.1", "reserved"),
        ("::ffff:127.0.0.1", "loopback: IPv4 127.0.0.1 inside IPv6"),
        ("::ffff:169.254.169.254", "a cloud metadata address: IPv4 169.254.169.254 inside IPv6"),
        ("::127.0.0.1", "loopback: IPv4 127.0.0.1 inside IPv6"),  # IPv4-compatible
        ("2002:a00:1::", "private (RFC 1918): IPv4 10.0.0.1 inside IPv6"),  # 6to4
        ("64:ff9b::a9fe:a9fe", "a cloud metadata address: IPv4 169.254.169.254 inside IPv6"),  # NAT64
    ],
)
def test_every_class_of_internal_address_is_refused_with_its_reason(address, reason):
    assert address_class(ipaddress.ip_address(address)) == reason
    with pytest.raises(Refused) as info:
        check_host(address, 80, NONE)
    assert info.value.reason == reason and "KNFLOW_HTTP_ALLOW_NETS" in str(info.value)


@pytest.mark.parametrize("address", ["93.184.215.14", "8.8.8.8", "2606:4700::1111", "::ffff:8.8.8.8"])
def test_global_addresses_pass(address):
    assert address_class(ipaddress.ip_address(address)) is None
    check_host(address, 443, NONE)


@pytest.mark.parametrize(
    "host",
    [
        "localhost",
        "api.localhost",
        "kubernetes.default.svc",
        "kubernetes.default.svc.cluster.local",
        "knflow-router.pipelines.svc",
        "metadata.google.internal",
        "metadata",
        "kubernetes",  # one label: the search domains complete it
        "printer.local",
        "KUBERNETES.DEFAULT.SVC.",
    ],
)
def test_internal_names_are_refused_before_any_lookup(host):
    with pytest.raises(Refused, match=f"host '{host}' is refused"):
        check_host(host, 443, NONE)


def test_the_allow_list_opens_networks_and_host_port_pairs():
    allow = parse_allow_list(" 127.0.0.0/8, ::1, 10.2.0.0/16 , kubernetes.default.svc:443, [fd00::5]:8080,")
    check_host("127.0.0.1", 9, allow)
    check_host("::1", 9, allow)
    check_host("10.2.3.4", 80, allow)
    check_host("kubernetes.default.svc", 443, allow)
    check_host("fd00::5", 8080, allow)
    for host, port in [("10.3.0.1", 80), ("kubernetes.default.svc", 80), ("fd00::5", 8081), ("::ffff:127.0.0.1", 80)]:
        with pytest.raises(Refused):
            check_host(host, port, allow)


@pytest.mark.parametrize("entry", ["api.internal", "10.0.0.0/33", "host:99999", "a b:80", "::1:x"])
def test_a_bad_allow_list_entry_names_the_variable_and_the_entry(entry):
    with pytest.raises(AllowListInvalid) as info:
        parse_allow_list(entry)
    assert f"KNFLOW_HTTP_ALLOW_NETS: {entry!r} is neither a CIDR" in str(info.value)


def lookup_of(table: dict[str, list[str]]):
    calls: list[str] = []

    async def lookup(host: str, port: int) -> list[str]:
        calls.append(host)
        if host not in table:
            raise OSError(f"{host} does not resolve")
        return table[host]

    lookup.calls = calls  # type: ignore[attr-defined]
    return lookup


@pytest.mark.parametrize(
    "addresses, reason",
    [
        (["10.0.0.5"], "private (RFC 1918)"),
        (["169.254.169.254"], "a cloud metadata address"),
        (["100.100.100.200"], "a cloud metadata address"),
        (["100.64.1.1"], "shared address space (CGNAT, 100.64.0.0/10)"),
        (["fd00::1"], "unique-local (fc00::/7)"),
        (["fe80::1%eth0"], "link-local"),
        (["93.184.215.14", "127.0.0.1"], "loopback"),  # one bad address among good ones refuses the name
    ],
)
async def test_a_name_is_refused_when_any_address_it_resolves_to_is(addresses, reason):
    lookup = lookup_of({"api.example.com": addresses})
    with pytest.raises(Refused) as info:
        await netguard.resolve("api.example.com", 443, NONE, lookup)
    assert info.value.reason == reason and info.value.host == "api.example.com"


async def test_resolve_returns_the_checked_addresses_and_skips_lookup_for_literals():
    lookup = lookup_of({"api.example.com": ["93.184.215.14", "2606:4700::1111"]})
    assert await netguard.resolve("api.example.com", 443, NONE, lookup) == ["93.184.215.14", "2606:4700::1111"]
    assert await netguard.resolve("8.8.8.8", 443, NONE, lookup) == ["8.8.8.8"]
    assert lookup.calls == ["api.example.com"]
    with pytest.raises(Refused):  # refused by name: never looked up
        await netguard.resolve("metadata.google.internal", 80, NONE, lookup)
    assert lookup.calls == ["api.example.com"]
    allow = parse_allow_list("db.example.com:8443")
    assert await netguard.resolve("db.example.com", 8443, allow, lookup_of({"db.example.com": ["10.0.0.7"]})) == [
        "10.0.0.7"
    ]
