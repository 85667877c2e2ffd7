"""Zone lookup: longest prefix wins, IPv4 and IPv6, the default zone, the embedded default."""

from __future__ import annotations

import ipaddress

import pytest

from sensor.policy.config import default_config
from sensor.policy.zones import DEFAULT_EXTERNAL, DEFAULT_INTERNAL, Trust, Zone, ZoneMap


def zone(name: str, *cidrs: str, trust: Trust = Trust.INTERNAL, radiology: bool = False) -> Zone:
    return Zone(name, trust, radiology, tuple(ipaddress.ip_network(c) for c in cidrs))


# Overlapping zones, declared in an order that would break "first match wins".
CAMPUS = zone("campus", "10.0.0.0/8", "fd00::/8")
HOSPITAL = zone("hospital", "10.10.0.0/16", "fd00:10::/32")
RADIOLOGY = zone("radiology", "10.10.20.0/24", "fd00:10:20::/48", radiology=True)
MODALITY = zone("ct-scanner", "10.10.20.7/32", "fd00:10:20::7/128", radiology=True)
DMZ = zone("pacs-dmz", "192.168.50.0/24", "2001:db8:50::/48", trust=Trust.DMZ)
GUEST = zone("guest", "192.168.60.0/23", trust=Trust.EXTERNAL)
EVERYTHING6 = zone("v6-catchall", "::/0", trust=Trust.DMZ)
OUTSIDE = Zone("outside", Trust.EXTERNAL, False, ())
ZONES = ZoneMap((MODALITY, CAMPUS, DMZ, RADIOLOGY, GUEST, HOSPITAL), OUTSIDE)


@pytest.mark.parametrize(
    ("address", "expected"),
    [
        ("10.10.20.7", MODALITY),  # /32 inside /24 inside /16 inside /8
        ("10.10.20.8", RADIOLOGY),
        ("10.10.20.0", RADIOLOGY),  # network address
        ("10.10.20.255", RADIOLOGY),  # broadcast address
        ("10.10.21.1", HOSPITAL),
        ("10.10.255.255", HOSPITAL),
        ("10.11.0.1", CAMPUS),
        ("10.255.255.255", CAMPUS),
        ("10.0.0.0", CAMPUS),
        ("11.0.0.0", OUTSIDE),
        ("9.255.255.255", OUTSIDE),
        ("192.168.50.9", DMZ),
        ("192.168.49.255", OUTSIDE),
        ("192.168.60.1", GUEST),
        ("192.168.61.254", GUEST),  # second half of the /23
        ("192.168.62.0", OUTSIDE),
        ("8.8.8.8", OUTSIDE),
        ("0.0.0.0", OUTSIDE),
        ("255.255.255.255", OUTSIDE),
        ("fd00:10:20::7", MODALITY),
        ("fd00:10:20::8", RADIOLOGY),
        ("fd00:10:20:ffff:ffff:ffff:ffff:ffff", RADIOLOGY),
        ("fd00:10:21::1", HOSPITAL),
        ("fd00:11::1", CAMPUS),
        ("fdff::1", CAMPUS),
        ("fe00::1", OUTSIDE),
        ("FD00:10:20::7", MODALITY),  # upper case hex
        ("fd00:0010:0020:0000:0000:0000:0000:0007", MODALITY),  # exploded form
        ("2001:db8:50::1", DMZ),
        ("2001:db8:51::1", OUTSIDE),
        ("2001:4860:4860::8888", OUTSIDE),
        ("::", OUTSIDE),
    ],
)
def test_longest_prefix_wins(address: str, expected: Zone) -> None:
    assert ZONES.lookup(address) is expected
    assert ZONES.lookup(address) is expected  # and again, from the cache


def test_ipv4_and_ipv6_tables_do_not_mix() -> None:
    # ::/0 covers every IPv6 address and no IPv4 one; 10.0.0.0/8 covers no IPv6 address.
    zones = ZoneMap((EVERYTHING6, zone("ten", "10.0.0.0/8")), OUTSIDE)
    assert zones.lookup("2001:db8::1") is EVERYTHING6
    assert zones.lookup("::a00:1") is EVERYTHING6  # the IPv6 address whose low bits are 10.0.0.1
    assert zones.lookup("10.0.0.1").name == "ten"
    assert zones.lookup("11.0.0.1") is OUTSIDE


def test_zero_length_prefix_is_a_catch_all() -> None:
    zones = ZoneMap((zone("all4", "0.0.0.0/0"), zone("lab", "10.1.0.0/16")), OUTSIDE)
    assert zones.lookup("10.1.2.3").name == "lab"
    assert zones.lookup("203.0.113.9").name == "all4"
    assert zones.lookup("2001:db8::1") is OUTSIDE


@pytest.mark.parametrize(
    ("default", "trust"),
    [
        (DEFAULT_EXTERNAL, Trust.EXTERNAL),
        (Zone("unzoned", Trust.INTERNAL, False, ()), Trust.INTERNAL),
        (Zone("unzoned", Trust.DMZ, False, ()), Trust.DMZ),
    ],
)
@pytest.mark.parametrize("address", ["203.0.113.5", "2001:db8::5", "10.99.0.1"])
def test_address_in_no_zone_falls_into_default(default: Zone, trust: Trust, address: str) -> None:
    zones = ZoneMap((zone("lab", "10.1.0.0/16"),), default)
    assert zones.lookup(address) is default
    assert zones.lookup(address).trust is trust


@pytest.mark.parametrize(
    ("address", "internal"),
    [
        ("10.0.0.1", True),
        ("10.255.255.254", True),
        ("172.16.0.1", True),
        ("172.31.255.254", True),
        ("172.15.255.255", False),
        ("172.32.0.0", False),
        ("192.168.0.1", True),
        ("192.168.255.255", True),
        ("192.169.0.1", False),
        ("127.0.0.1", True),
        ("127.255.0.9", True),
        ("169.254.10.20", True),
        ("169.255.0.1", False),
        ("100.64.0.1", False),  # carrier-grade NAT is not RFC 1918
        ("8.8.8.8", False),
        ("203.0.113.50", False),
        ("11.0.0.1", False),
        ("fc00::1", True),
        ("fd12:3456:789a::1", True),
        ("fdff:ffff::1", True),
        ("fe00::1", False),
        ("::1", True),
        ("::2", False),
        ("fe80::1", True),
        ("fe80::1%eth0", True),  # scoped link-local, as some tools print it
        ("febf::1", True),
        ("fec0::1", False),
        ("2001:db8::1", False),
        ("2606:4700::1111", False),
        ("::ffff:8.8.8.8", False),
    ],
)
def test_embedded_default(address: str, internal: bool) -> None:
    zones = default_config().zones
    got = zones.lookup(address)
    if internal:
        assert got is DEFAULT_INTERNAL
        assert (got.name, got.trust, got.radiology) == ("internal", Trust.INTERNAL, False)
    else:
        assert got is DEFAULT_EXTERNAL
        assert (got.name, got.trust, got.radiology) == ("external", Trust.EXTERNAL, False)


def test_embedded_default_has_no_radiology_zone() -> None:
    assert not default_config().zones.has_radiology
    assert ZONES.has_radiology
    assert not ZoneMap((CAMPUS, DMZ), OUTSIDE).has_radiology


@pytest.mark.parametrize(
    "text",
    ["", "not-an-ip", "10.0.0", "10.0.0.256", "10.0.0.1/24", "1.2.3.4.5", "gggg::1",
     "fd00::1::2", " 10.0.0.1", "10.0.0.1 ", "010.000.000.001", "localhost"],
)  # fmt: skip
def test_invalid_address_text_falls_into_default(text: str) -> None:
    assert ZONES.lookup(text) is OUTSIDE
    assert default_config().zones.lookup(text) is DEFAULT_EXTERNAL


def test_same_cidr_in_two_zones_is_deterministic() -> None:
    first = zone("first", "10.5.0.0/16")
    second = zone("second", "10.5.0.0/16")
    assert ZoneMap((first, second), OUTSIDE).lookup("10.5.1.1") is first


def test_cache_is_bounded_and_stays_correct() -> None:
    zones = ZoneMap((RADIOLOGY, CAMPUS), OUTSIDE, cache_size=4)
    for i in range(50):
        assert zones.lookup(f"10.10.20.{i}") is RADIOLOGY
        assert zones.lookup(f"10.20.0.{i}") is CAMPUS
        assert zones.lookup(f"198.51.100.{i}") is OUTSIDE
        assert len(zones._cache) <= 4
