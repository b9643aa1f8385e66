"""One good and one bad case for every inventory rule."""

from __future__ import annotations

import copy

import pytest

from ansible_collections.anycast.dns.plugins.plugin_utils import inventory_rules as rules

COMMON = {
    "anycast_asn": 65053,
    "anycast_service_addresses": ["203.0.113.53", "2001:db8:53::1"],
    "anycast_aggregates": [{"prefix": "203.0.113.0/24"}, {"prefix": "2001:db8:53::/48"}],
    "anycast_roas": [{"prefix": "203.0.113.0/24", "max_length": 24, "origin_asn": 65053},
                     {"prefix": "2001:db8:53::/48", "max_length": 48, "origin_asn": 65053}],
    "anycast_zones": [{"name": "example.com"}, {"name": "example.net."}],
    "anycast_hidden_primary": {"name": "primary1", "ipv4": "192.0.2.150", "ipv6": "2001:db8:10:3::150"},
    "anycast_pops": [{"code": "hkg", "city": "Hong Kong"}, {"code": "tyo", "city": "Tokyo"}],
    "anycast_health": {"interval": 1, "timeout": 0.5, "fall": 2, "rise": 3},
    "anycast_bfd_profiles": {"upstream": {"receive_interval": 300, "transmit_interval": 300, "detect_multiplier": 3}},
    "anycast_bgp_require_password": True,
    "anycast_management_networks": ["192.0.2.0/24", "2001:db8:10::/48"],
}


def _server(pop, idx, link):
    return {
        **copy.deepcopy(COMMON),
        "anycast_pop": pop,
        "anycast_router_id": "192.0.2.%d" % (10 + idx),
        "anycast_unicast_ipv4": "192.0.2.%d" % (10 + idx),
        "anycast_unicast_ipv6": "2001:db8:10::%d" % (10 + idx),
        "anycast_interfaces": [
            {"name": "eno1", "ipv4": "192.0.2.%d/26" % (10 + idx), "ipv6": "2001:db8:10::%d/64" % (10 + idx)},
            {"name": "ens1f0", "ipv4": "198.51.100.%d/30" % (link * 4 + 2), "ipv6": "2001:db8:ff00:%d::2/64" % link},
        ],
        "anycast_upstreams": [
            {
                "name": "transit",
                "type": "transit",
                "asn": 64601 + idx,
                "ipv4": "198.51.100.%d" % (link * 4 + 1),
                "ipv6": "2001:db8:ff00:%d::1" % link,
                "bfd_profile": "upstream",
                "password": "secret-%d" % idx,
                "med": 100,
                "prepend": 0,
                "scope": "global",
                "communities": ["64601:100"],
                "max_prefix": 10,
                "accept_default": True,
            }
        ],
    }


def fleet():
    return {"hkg1": _server("hkg", 1, 1), "tyo1": _server("tyo", 2, 2)}


def lines(servers):
    return rules.format_problems(rules.check_fleet(servers))


def assert_problem(servers, host, key, value):
    """Exactly the expected problem is reported, naming host, key and the bad value."""
    found = rules.check_fleet(servers)
    assert found, "expected a problem for %s %s" % (host, key)
    matching = [p for p in found if p.host == host and p.key == key]
    assert matching, "no problem for %s %s in %s" % (host, key, rules.format_problems(found))
    text = "\n".join(rules.format_problems(found))
    assert str(value) in text
    return found


def assert_clean(servers):
    assert lines(servers) == []


def up(servers, host="hkg1"):
    return servers[host]["anycast_upstreams"][0]


def test_the_base_fleet_is_valid():
    assert_clean(fleet())


# ----------------------------------------------------------------- addresses and prefixes

@pytest.mark.parametrize("bad", ["203.0.113.300", "2001:db8:53::g", "", "203.0.113.53/24", 53])
def test_malformed_service_address(bad):
    servers = fleet()
    for hv in servers.values():
        hv["anycast_service_addresses"][0] = bad
    found = assert_problem(servers, "hkg1", "anycast_service_addresses[0]", bad)
    assert {p.host for p in found if p.key == "anycast_service_addresses[0]"} == {"hkg1", "tyo1"}


def test_wrong_family_for_key():
    servers = fleet()
    up(servers)["ipv4"] = "2001:db8:ff00:1::1"
    found = assert_problem(servers, "hkg1", "anycast_upstreams[0](transit).ipv4", "2001:db8:ff00:1::1")
    assert "IPv6 address where an IPv4 address is expected" in "\n".join(p.message for p in found)


def test_wrong_family_unicast_and_good_ipv6_only_upstream():
    servers = fleet()
    servers["tyo1"]["anycast_unicast_ipv6"] = "192.0.2.99"
    assert_problem(servers, "tyo1", "anycast_unicast_ipv6", "192.0.2.99")
    servers = fleet()
    del up(servers)["ipv4"]
    assert_clean(servers)


@pytest.mark.parametrize("bad", ["203.0.113.0/33", "203.0.113.1/24", "203.0.113.0", "2001:db8:53::/129"])
def test_malformed_aggregate(bad):
    servers = fleet()
    servers["hkg1"]["anycast_aggregates"][0]["prefix"] = bad
    assert_problem(servers, "hkg1", "anycast_aggregates[0].prefix", bad)


def test_interface_address_must_carry_a_subnet():
    servers = fleet()
    servers["hkg1"]["anycast_interfaces"][1]["ipv4"] = "198.51.100.6/32"
    assert_problem(servers, "hkg1", "anycast_interfaces[1].ipv4", "198.51.100.6/32")
    servers = fleet()
    servers["hkg1"]["anycast_interfaces"][1]["ipv4"] = "198.51.100.4/30"
    assert_problem(servers, "hkg1", "anycast_interfaces[1].ipv4", "198.51.100.4/30")


# ----------------------------------------------------------------- aggregates

def test_service_address_outside_every_aggregate():
    servers = fleet()
    servers["hkg1"]["anycast_service_addresses"].append("198.51.100.53")
    assert_problem(servers, "hkg1", "anycast_service_addresses[2]", "198.51.100.53")


def test_service_address_announced_as_host_route():
    servers = fleet()
    servers["hkg1"]["anycast_aggregates"] = [
        {"prefix": "203.0.113.53/32", "allow_more_specific": True}, {"prefix": "2001:db8:53::/48"}]
    found = assert_problem(servers, "hkg1", "anycast_service_addresses[0]", "203.0.113.53")
    assert any("connected route" in p.message for p in found)


def test_aggregate_longer_than_24_towards_transit():
    servers = fleet()
    servers["hkg1"]["anycast_aggregates"][0]["prefix"] = "203.0.113.0/25"
    found = assert_problem(servers, "hkg1", "anycast_aggregates[0].prefix", "203.0.113.0/25")
    assert any("transit transit" in p.message for p in found)


def test_aggregate_longer_than_48_towards_transit():
    servers = fleet()
    servers["hkg1"]["anycast_aggregates"][1]["prefix"] = "2001:db8:53::/56"
    assert_problem(servers, "hkg1", "anycast_aggregates[1].prefix", "2001:db8:53::/56")


def test_more_specific_aggregate_explicitly_allowed_or_only_to_an_ixp():
    servers = fleet()
    servers["hkg1"]["anycast_aggregates"][0] = {"prefix": "203.0.113.0/25", "allow_more_specific": True}
    servers["hkg1"]["anycast_roas"][0]["max_length"] = 25  # a /25 is RPKI-valid only so
    assert_clean(servers)
    servers = fleet()
    servers["hkg1"]["anycast_aggregates"][0]["prefix"] = "203.0.113.0/25"
    servers["hkg1"]["anycast_roas"][0]["max_length"] = 25
    up(servers)["type"] = "ixp"
    assert_clean(servers)


def test_duplicate_aggregate():
    servers = fleet()
    servers["hkg1"]["anycast_aggregates"].append({"prefix": "203.0.113.0/24"})
    found = assert_problem(servers, "hkg1", "anycast_aggregates[2].prefix", "203.0.113.0/24")
    assert any("duplicates" in p.message for p in found)


def test_overlapping_aggregates():
    servers = fleet()
    servers["hkg1"]["anycast_aggregates"].append({"prefix": "203.0.112.0/23"})
    found = assert_problem(servers, "hkg1", "anycast_aggregates[2].prefix", "203.0.112.0/23")
    assert any("overlaps" in p.message for p in found)


def test_aggregate_covering_no_service_address():
    servers = fleet()
    servers["hkg1"]["anycast_aggregates"].append({"prefix": "198.51.100.0/24"})
    assert_problem(servers, "hkg1", "anycast_aggregates[2].prefix", "198.51.100.0/24")


# ----------------------------------------------------------------- ASNs

@pytest.mark.parametrize("bad", [0, 23456, 64500, 65535, 65540, 4294967295, 4294967296, -1, "AS65053", True])
def test_bad_asn(bad):
    servers = fleet()
    servers["hkg1"]["anycast_asn"] = bad
    assert_problem(servers, "hkg1", "anycast_asn", bad)


@pytest.mark.parametrize("good", [1, 64512, 65534, 4200000000, 4294967294, "65053"])
def test_good_asn(good):
    assert rules.asn_problem(good) is None


def test_neighbour_asn_out_of_range():
    servers = fleet()
    up(servers)["asn"] = 4294967296
    assert_problem(servers, "hkg1", "anycast_upstreams[0](transit).asn", 4294967296)


def test_our_asn_equal_to_neighbour():
    servers = fleet()
    up(servers)["asn"] = 65053
    found = assert_problem(servers, "hkg1", "anycast_upstreams[0](transit).asn", 65053)
    assert any("own ASN" in p.message for p in found)


@pytest.mark.parametrize("bad", [-1, 11, 100, "2", 1.5])
def test_prepend_out_of_range(bad):
    servers = fleet()
    up(servers)["prepend"] = bad
    assert_problem(servers, "hkg1", "anycast_upstreams[0](transit).prepend", bad)


def test_prepend_in_range():
    servers = fleet()
    up(servers)["prepend"] = 3
    assert_clean(servers)


# ----------------------------------------------------------------- uniqueness

def test_duplicate_router_id():
    servers = fleet()
    servers["tyo1"]["anycast_router_id"] = servers["hkg1"]["anycast_router_id"]
    found = assert_problem(servers, "tyo1", "anycast_router_id", "192.0.2.11")
    assert {p.host for p in found if p.key == "anycast_router_id"} == {"hkg1", "tyo1"}


def test_router_id_must_be_ipv4():
    servers = fleet()
    servers["hkg1"]["anycast_router_id"] = "2001:db8::1"
    assert_problem(servers, "hkg1", "anycast_router_id", "2001:db8::1")


def test_duplicate_node_name():
    servers = fleet()
    servers["tyo1"]["anycast_node_name"] = "HKG1"
    assert_problem(servers, "tyo1", "anycast_node_name", "HKG1")


def test_invalid_node_name():
    servers = fleet()
    servers["tyo1"]["anycast_node_name"] = "tyo 1"
    assert_problem(servers, "tyo1", "anycast_node_name", "tyo 1")


def test_duplicate_unicast_address():
    servers = fleet()
    servers["tyo1"]["anycast_unicast_ipv6"] = "2001:db8:10::11"
    found = assert_problem(servers, "tyo1", "anycast_unicast_ipv6", "2001:db8:10::11")
    assert any("duplicate address" in p.message for p in found)


def test_duplicate_link_address_across_servers():
    servers = fleet()
    servers["tyo1"]["anycast_interfaces"][1]["ipv4"] = "198.51.100.6/30"
    up(servers, "tyo1")["ipv4"] = "198.51.100.5"
    assert_problem(servers, "tyo1", "anycast_interfaces[1].ipv4", "198.51.100.6/30")


def test_same_address_as_unicast_and_on_an_interface_of_one_host_is_fine():
    assert_clean(fleet())  # the base fleet already has the unicast address on eno1


# ----------------------------------------------------------------- neighbours

def test_neighbour_on_no_link_without_multihop():
    servers = fleet()
    up(servers)["ipv4"] = "198.51.100.77"
    assert_problem(servers, "hkg1", "anycast_upstreams[0](transit).ipv4", "198.51.100.77")


def test_neighbour_off_link_with_multihop_is_fine():
    servers = fleet()
    up(servers)["ipv4"] = "198.51.100.77"
    up(servers)["multihop"] = 2
    assert_clean(servers)


def test_neighbour_equal_to_our_own_address():
    servers = fleet()
    up(servers)["ipv4"] = "198.51.100.6"
    assert_problem(servers, "hkg1", "anycast_upstreams[0](transit).ipv4", "198.51.100.6")


@pytest.mark.parametrize("bad", [256, -1, "2"])
def test_bad_multihop(bad):
    servers = fleet()
    up(servers)["multihop"] = bad
    assert_problem(servers, "hkg1", "anycast_upstreams[0](transit).multihop", bad)


def test_duplicate_upstream_name():
    servers = fleet()
    second = copy.deepcopy(up(servers))
    second["ipv4"], second["ipv6"] = "198.51.100.5", "2001:db8:ff00:1::5"
    servers["hkg1"]["anycast_upstreams"].append(second)
    assert_problem(servers, "hkg1", "anycast_upstreams[1].name", "transit")


def test_server_without_upstreams():
    servers = fleet()
    servers["hkg1"]["anycast_upstreams"] = []
    assert_problem(servers, "hkg1", "anycast_upstreams", "[]")


def test_unknown_upstream_type():
    servers = fleet()
    up(servers)["type"] = "peering"
    assert_problem(servers, "hkg1", "anycast_upstreams[0](transit).type", "peering")


def test_bad_med():
    servers = fleet()
    up(servers)["med"] = 4294967296
    assert_problem(servers, "hkg1", "anycast_upstreams[0](transit).med", 4294967296)


def test_bad_max_prefix():
    servers = fleet()
    up(servers)["max_prefix"] = 0
    assert_problem(servers, "hkg1", "anycast_upstreams[0](transit).max_prefix", 0)


# ----------------------------------------------------------------- BFD and health

@pytest.mark.parametrize("field,bad", [
    ("receive_interval", 9), ("transmit_interval", 60001), ("detect_multiplier", 1),
    ("detect_multiplier", 256), ("receive_interval", "300")])
def test_bfd_profile_out_of_frr_range(field, bad):
    servers = fleet()
    servers["hkg1"]["anycast_bfd_profiles"]["upstream"][field] = bad
    assert_problem(servers, "hkg1", "anycast_bfd_profiles.upstream." + field, bad)


def test_bfd_profile_at_frr_limits_is_fine():
    servers = fleet()
    servers["hkg1"]["anycast_bfd_profiles"]["upstream"] = {
        "receive_interval": 10, "transmit_interval": 60000, "detect_multiplier": 255}
    assert_clean(servers)


def test_unknown_bfd_profile():
    servers = fleet()
    up(servers)["bfd_profile"] = "slow"
    assert_problem(servers, "hkg1", "anycast_upstreams[0](transit).bfd_profile", "slow")


@pytest.mark.parametrize("field,bad", [
    ("timeout", 1), ("timeout", 2.5), ("fall", 0), ("rise", 0), ("interval", 0), ("rise", "3"), ("fall", 1.5)])
def test_health_timings_that_cannot_work(field, bad):
    servers = fleet()
    servers["tyo1"]["anycast_health"][field] = bad
    assert_problem(servers, "tyo1", "anycast_health." + field, bad)


def test_health_timings_fractional_interval_is_fine():
    servers = fleet()
    servers["tyo1"]["anycast_health"] = {"interval": 0.5, "timeout": 0.2, "fall": 1, "rise": 1}
    assert_clean(servers)


# ----------------------------------------------------------------- scope and communities

def test_unknown_scope():
    servers = fleet()
    up(servers)["scope"] = "regional"
    assert_problem(servers, "hkg1", "anycast_upstreams[0](transit).scope", "regional")


def test_local_scope_is_fine():
    servers = fleet()
    up(servers)["scope"] = "local"
    assert_clean(servers)


@pytest.mark.parametrize("bad", ["64601:70000", "64601", "64601-100", "no-exprot", "65535:666", "blackhole",
                                 "65535:0", "graceful-shutdown", "65535:12345", "1:2:4294967296", 100])
def test_bad_or_unknown_community(bad):
    servers = fleet()
    up(servers)["communities"] = [bad]
    assert_problem(servers, "hkg1", "anycast_upstreams[0](transit).communities[0]", bad)


@pytest.mark.parametrize("good", ["64601:100", "no-export", "NO-EXPORT", "65535:65281", "local-AS", "no-peer",
                                  "4200000000:1:2", "0:64601"])
def test_good_community(good):
    assert rules.community_problem(good) is None


# ----------------------------------------------------------------- passwords

def test_upstream_without_password_when_required():
    servers = fleet()
    up(servers)["password"] = ""
    found = assert_problem(servers, "hkg1", "anycast_upstreams[0](transit).password", "<empty>")
    assert all("secret" not in line for line in rules.format_problems(found))


def test_upstream_without_password_when_not_required():
    servers = fleet()
    del up(servers)["password"]
    servers["hkg1"]["anycast_bgp_require_password"] = False
    assert_clean(servers)


def test_password_too_long_for_tcp_md5_is_reported_without_printing_it():
    servers = fleet()
    up(servers)["password"] = "x" * 81
    text = "\n".join(lines(servers))
    assert "<81 characters>" in text
    assert "x" * 81 not in text


# ----------------------------------------------------------------- zones, PoPs

@pytest.mark.parametrize("bad", ["exa mple.com", "-example.com", "example..com", "a" * 64 + ".com", "", 42,
                                 "example.com/24"])
def test_invalid_zone_name(bad):
    servers = fleet()
    servers["hkg1"]["anycast_zones"][0]["name"] = bad
    assert_problem(servers, "hkg1", "anycast_zones[0].name", bad if bad != "" else "''")


@pytest.mark.parametrize("good", ["example.com", "example.com.", "_dmarc.example.com", "xn--bcher-kva.example", "."])
def test_valid_zone_name(good):
    assert rules.dns_name_problem(good) is None


def test_duplicate_zone():
    servers = fleet()
    servers["hkg1"]["anycast_zones"].append({"name": "EXAMPLE.com."})
    assert_problem(servers, "hkg1", "anycast_zones[2].name", "EXAMPLE.com.")


def test_pop_without_servers():
    servers = fleet()
    for hv in servers.values():
        hv["anycast_pops"].append({"code": "fra", "city": "Frankfurt"})
    found = assert_problem(servers, "PoP fra", "anycast_pops", "fra")
    assert any("no servers" in p.message for p in found)


def test_server_in_no_pop():
    servers = fleet()
    del servers["tyo1"]["anycast_pop"]
    assert_problem(servers, "tyo1", "anycast_pop", "None")


def test_server_in_unknown_pop():
    servers = fleet()
    servers["tyo1"]["anycast_pop"] = "nrt"
    assert_problem(servers, "tyo1", "anycast_pop", "nrt")


def test_hidden_primary_bad_address():
    servers = fleet()
    for hv in servers.values():
        hv["anycast_hidden_primary"]["ipv6"] = "192.0.2.150"
    assert_problem(servers, "hkg1", "anycast_hidden_primary.ipv6", "192.0.2.150")


def test_empty_server_group():
    found = rules.check_fleet({})
    assert [p.key for p in found] == ["anycast_servers"]


# ----------------------------------------------------------------- reporting

def test_every_problem_is_reported_not_just_the_first():
    servers = fleet()
    servers["hkg1"]["anycast_asn"] = 0
    up(servers, "tyo1")["ipv4"] = "198.51.100.999"
    servers["tyo1"]["anycast_health"]["timeout"] = 5
    keys = {(p.host, p.key) for p in rules.check_fleet(servers)}
    assert {("hkg1", "anycast_asn"), ("tyo1", "anycast_upstreams[0](transit).ipv4"),
            ("tyo1", "anycast_health.timeout")} <= keys


def test_shared_problem_is_one_line_naming_every_host():
    servers = fleet()
    for hv in servers.values():
        hv["anycast_bfd_profiles"]["upstream"]["detect_multiplier"] = 1
    out = lines(servers)
    assert out == ["hkg1, tyo1: anycast_bfd_profiles.upstream.detect_multiplier = 1: "
                   "must be an integer from 2 to 255 (FRR's range)"]


def test_unreadable_variable_is_reported_once():
    servers = fleet()
    del servers["hkg1"]["anycast_upstreams"]
    errors = [rules.Problem("hkg1", "anycast_upstreams", "<unresolved>", "cannot be resolved: 'x' is undefined")]
    found = rules.check_fleet(servers, errors)
    assert [p.key for p in found] == ["anycast_upstreams"]
    assert "cannot be resolved" in found[0].message


def test_wrong_types_never_crash():
    servers = fleet()
    servers["hkg1"].update({
        "anycast_aggregates": "203.0.113.0/24", "anycast_zones": {"name": "x"}, "anycast_health": [],
        "anycast_bfd_profiles": [], "anycast_interfaces": "eth0", "anycast_upstreams": {"a": 1},
        "anycast_pops": "hkg", "anycast_hidden_primary": "primary1", "anycast_service_addresses": None,
    })
    keys = {p.key for p in rules.check_fleet(servers) if p.host == "hkg1"}
    assert {"anycast_aggregates", "anycast_zones", "anycast_health", "anycast_bfd_profiles",
            "anycast_interfaces", "anycast_upstreams", "anycast_pops", "anycast_hidden_primary",
            "anycast_service_addresses"} <= keys


# ----------------------------------------------------------------- rolling rollouts


def rolling(**over):
    return {"quorum": 1, "drain_wait": 20, "ready_timeout": 120, "announce_timeout": 60, **over}


def test_rolling_settings_and_vantage_points_are_optional_and_checked_when_given():
    servers = fleet()
    for hv in servers.values():
        hv["anycast_rolling"] = rolling()
        hv["anycast_pops"][0]["probe_from"] = ["cl-hkg"]
    assert_clean(servers)


@pytest.mark.parametrize(("key", "value"), [("quorum", -1), ("quorum", 2), ("drain_wait", 0), ("ready_timeout", "x"),
                                            ("announce_timeout", None), ("wait", 5)])
def test_bad_rolling_setting(key, value):
    servers = fleet()
    for hv in servers.values():
        hv["anycast_rolling"] = {**rolling(), key: value}
    found = assert_problem(servers, "hkg1", "anycast_rolling." + key, value)
    if key == "quorum" and value == 2:
        assert "less than the number of PoPs (2)" in "\n".join(rules.format_problems(found))


def test_probe_from_must_name_hosts():
    servers = fleet()
    for hv in servers.values():
        hv["anycast_pops"][1]["probe_from"] = "cl-tyo"
    assert_problem(servers, "hkg1", "anycast_pops[1].probe_from", "cl-tyo")


# --------------------------------------------------------------------------- ROAs (RPKI origin validation)
def with_roas(roas, **extra):
    servers = fleet()
    for hv in servers.values():
        hv["anycast_roas"] = copy.deepcopy(roas)
        hv.update(copy.deepcopy(extra))
    return servers


V6 = {"prefix": "2001:db8:53::/48", "max_length": 48, "origin_asn": 65053}


def test_the_roas_make_every_aggregate_rpki_valid():
    assert lines(fleet()) == []
    assert rules.fleet_warnings(fleet()) == []
    # A covering ROA of a shorter prefix with a max_length that reaches /24 is valid too.
    assert lines(with_roas([{"prefix": "203.0.112.0/23", "max_length": 24, "origin_asn": 65053}, V6])) == []


@pytest.mark.parametrize(("roas", "expected"), [
    ([V6], "hkg1, tyo1: anycast_aggregates[0].prefix = '203.0.113.0/24': would be RPKI NotFound: no ROA of "
           "anycast_roas covers it (add one with origin AS65053 and max_length 24)"),
    ([{"prefix": "203.0.113.0/24", "max_length": 24, "origin_asn": 65054}, V6],
     "hkg1, tyo1: anycast_aggregates[0].prefix = '203.0.113.0/24': would be RPKI-invalid and dropped by every network "
     "that validates: anycast_roas[0] (203.0.113.0/24) authorises AS65054, not our AS65053"),
    ([{"prefix": "203.0.112.0/22", "max_length": 23, "origin_asn": 65053}, V6],
     "hkg1, tyo1: anycast_aggregates[0].prefix = '203.0.113.0/24': would be RPKI-invalid and dropped by every network "
     "that validates: anycast_roas[0] (203.0.112.0/22) has max_length 23, shorter than the announced /24"),
    ([{"prefix": "203.0.113.0/24", "max_length": 23, "origin_asn": 65053}, V6],
     "hkg1, tyo1: anycast_roas[0].max_length = 23: must be an integer from the prefix length 24 to 32"),
    ([{"prefix": "203.0.113.1/24", "origin_asn": 65053}, V6],
     "hkg1, tyo1: anycast_roas[0].prefix = '203.0.113.1/24': has host bits set (the network is 203.0.113.0/24)"),
    ([{"prefix": "203.0.113.0/24", "origin_asn": 23456}, V6],
     "hkg1, tyo1: anycast_roas[0].origin_asn = 23456: is a reserved AS number: AS_TRANS (RFC 6793)"),
    ([{"prefix": "203.0.113.0/24", "origin_asn": 65053, "maxlen": 24}, V6],
     "hkg1, tyo1: anycast_roas[0] = {'prefix': '203.0.113.0/24', 'origin_asn': 65053, 'maxlen': 24}: has unknown "
     "key(s) maxlen (prefix, max_length, origin_asn)"),
    ([], "hkg1, tyo1: anycast_roas = []: must list the ROAs that cover the announced aggregates"),
])
def test_roas_that_do_not_validate_the_announcements_stop_the_run_naming_the_value(roas, expected):
    found = lines(with_roas(roas))
    assert any(line.startswith(expected) for line in found), found


def test_an_as0_roa_alone_makes_the_aggregate_invalid_beside_ours_it_is_harmless():
    as0 = {"prefix": "203.0.113.0/24", "max_length": 24, "origin_asn": 0}
    found = lines(with_roas([as0, V6]))
    assert any("anycast_roas[0] (203.0.113.0/24) authorises AS0, not our AS65053" in line for line in found), found
    assert lines(with_roas([as0, {"prefix": "203.0.113.0/24", "origin_asn": 65053}, V6])) == []


def test_a_max_length_looser_than_the_announcements_is_a_warning_not_a_stop():
    loose = with_roas([{"prefix": "203.0.113.0/24", "max_length": 26, "origin_asn": 65053}, V6,
                       {"prefix": "198.51.100.0/24", "max_length": 24, "origin_asn": 65053}])
    assert lines(loose) == []
    warnings = rules.format_problems(rules.fleet_warnings(loose))
    assert warnings == [
        "hkg1, tyo1: anycast_roas[0].max_length = 26: is looser than the announcements need (the longest announced "
        "inside 203.0.113.0/24 is /24): anyone can announce a /26 with origin AS65053 that validators accept "
        "(RFC 9319); set it to 24",
        "hkg1, tyo1: anycast_roas[2] = '198.51.100.0/24': authorises AS65053 for a prefix the fleet does not announce "
        "(anycast_aggregates): remove it or announce the prefix",
    ], warnings


# ----------------------------------------------------------------- zone transfers (XoT)

def test_xfr_address_on_a_link_of_the_server_is_accepted():
    servers = fleet()
    servers["hkg1"]["anycast_xfr_ipv4"] = "198.51.100.6"
    servers["hkg1"]["anycast_xfr_ipv6"] = "2001:db8:ff00:1::2"
    assert_clean(servers)


@pytest.mark.parametrize(("key", "bad", "says"), [
    ("anycast_xfr_ipv4", "198.51.100.99", "is not an address of this server"),
    ("anycast_xfr_ipv6", "2001:db8:ff00:9::2", "is not an address of this server"),
    ("anycast_xfr_ipv4", "2001:db8:ff00:1::2", "IPv4"),
    ("anycast_xfr_ipv4", "198.51.100.6/30", "198.51.100.6/30"),
])
def test_xfr_address_the_server_does_not_have_is_refused(key, bad, says):
    servers = fleet()
    servers["hkg1"][key] = bad
    assert_problem(servers, "hkg1", key, bad)
    assert says in "\n".join(lines(servers))


def test_soa_timers_of_the_inventories_are_accepted():
    servers = fleet()
    for hv in servers.values():
        hv["anycast_soa_timers"] = {"refresh": 30, "retry": 10, "expire": 1209600, "minimum": 300}
    assert_clean(servers)


@pytest.mark.parametrize(("timers", "key", "value", "says"), [
    ({"refresh": 600, "retry": 600}, "anycast_soa_timers.retry", 600, "shorter than refresh (600)"),
    ({"refresh": 3600, "retry": 600, "expire": 4000}, "anycast_soa_timers.expire", 4000, "at least 4800"),
    ({"refresh": "1h"}, "anycast_soa_timers.refresh", "1h", "(seconds, RFC 1982)"),
    ({"refesh": 30}, "anycast_soa_timers.refesh", 30, "is not a setting of anycast_soa_timers"),
    ({"expire": 0}, "anycast_soa_timers.expire", 0, "an integer from 1 to 2147483647"),
])
def test_soa_timers_that_cannot_work_are_refused(timers, key, value, says):
    servers = fleet()
    servers["tyo1"]["anycast_soa_timers"] = timers
    assert_problem(servers, "tyo1", key, value)
    assert says in "\n".join(lines(servers))


# --------------------------------------------------------------------------- management networks
# (the host firewall opens every port to them) and every address's role


@pytest.mark.parametrize("bad, message", [
    (None, "is required"),
    ([], "non-empty list"),
    (["0.0.0.0/0"], "whole Internet"),
    (["::/0"], "whole Internet"),
    (["192.0.2.1/24"], "host bits"),
    (["203.0.113.0/25"], "overlaps the announced aggregate"),
    (["2001:db8::/32"], "overlaps the announced aggregate"),
    (["not-a-prefix"], "is not a prefix"),
    (["192.0.2.0/24", "192.0.2.128/25"], "anycast_management_networks[1] = '192.0.2.128/25': overlaps "
                                         "anycast_management_networks[0] (192.0.2.0/24)"),
    (["2001:db8:10:1::/64", "192.0.2.0/24", "2001:db8:10::/48"], "anycast_management_networks[2] = "
                                                                 "'2001:db8:10::/48': overlaps "
                                                                 "anycast_management_networks[0]"),
])
def test_management_networks_refused(bad, message):
    servers = fleet()
    for hv in servers.values():
        hv["anycast_management_networks"] = bad
    text = "\n".join(lines(servers))
    assert "anycast_management_networks" in text and message in text and "hkg1" in text


def test_controller_outside_the_management_networks_on_an_on_link_route():
    servers = fleet()
    servers["hkg1"]["ansible_host"] = "192.0.2.11"
    servers["hkg1"][rules.ROUTE_KEY] = {"src": "198.18.0.1", "onlink": True}
    text = "\n".join(lines(servers))
    assert "hkg1: anycast_management_networks" in text and "198.18.0.1" in text and "lock Ansible out" in text


@pytest.mark.parametrize("route", [{"src": "198.18.0.1", "onlink": False}, {"src": "192.0.2.99", "onlink": True},
                                   None])
def test_controller_inside_or_unknowable_is_fine(route):
    servers = fleet()
    servers["hkg1"]["ansible_host"] = "192.0.2.11"
    servers["hkg1"][rules.ROUTE_KEY] = route
    assert_clean(servers)


def test_neighbour_inside_a_management_network():
    servers = fleet()
    servers["hkg1"]["anycast_management_networks"] = ["192.0.2.0/24", "198.51.100.0/24"]
    assert_problem(servers, "hkg1", "anycast_upstreams[0](transit).ipv4", "198.51.100.5")


def test_connection_address_inside_an_aggregate():
    servers = fleet()
    servers["tyo1"]["ansible_host"] = "203.0.113.53"
    assert_problem(servers, "tyo1", "ansible_host", "203.0.113.53")


def test_connection_address_shared_by_a_server_and_the_monitoring_node():
    servers = fleet()
    servers["hkg1"]["ansible_host"] = "192.0.2.11"
    infra = {"monitor1": {"ansible_host": "192.0.2.11", "anycast_management_networks": ["192.0.2.0/24"]}}
    found = rules.format_problems(rules.check_fleet(servers, infra=infra))
    assert any(line.startswith("hkg1: ansible_host = ") and "duplicate connection address (ansible_host): also used "
               "by monitor1" in line for line in found), found
    assert any(line.startswith("monitor1: ansible_host = ") and "hkg1" in line for line in found), found


def test_the_infrastructure_hosts_management_networks_are_checked():
    infra = {"primary1": {"ansible_host": "192.0.2.150", "anycast_management_networks": ["192.0.2.128/26"],
                          rules.ROUTE_KEY: {"src": "192.0.2.2", "onlink": True}}}
    found = rules.format_problems(rules.check_fleet(fleet(), infra=infra))
    assert found == ["primary1: anycast_management_networks = ['192.0.2.128/26']: does not hold the controller's "
                     "address 192.0.2.2 (its route to 192.0.2.150 is on-link): the host firewall would lock Ansible "
                     "out"]


def test_hidden_primary_inside_an_aggregate_or_on_a_pop_server():
    servers = fleet()
    for hv in servers.values():
        hv["anycast_hidden_primary"]["ipv4"] = "203.0.113.200"
        hv["anycast_hidden_primary"]["ipv6"] = "2001:db8:10::11"
    text = "\n".join(lines(servers))
    assert "hkg1, tyo1: anycast_hidden_primary.ipv4 = '203.0.113.200': is inside the announced aggregate" in text
    assert "anycast_hidden_primary.ipv6 = '2001:db8:10::11': is this server's own address" in text


def test_gtsm_and_multihop_exclude_each_other():
    servers = fleet()
    up(servers).update({"multihop": 3, "ttl_security_hops": 1})
    assert_problem(servers, "hkg1", "anycast_upstreams[0](transit).ttl_security_hops", "exclude each other")


@pytest.mark.parametrize("bad", [-1, 255, "one", 1.5])
def test_gtsm_hops_out_of_range(bad):
    servers = fleet()
    up(servers)["ttl_security_hops"] = bad
    assert_problem(servers, "hkg1", "anycast_upstreams[0](transit).ttl_security_hops", "hop count")


def test_gtsm_hops_for_a_neighbour_beyond_the_link_or_off():
    servers = fleet()
    up(servers).update({"ipv4": "198.51.100.200", "ipv6": None, "ttl_security_hops": 2})
    up(servers, "tyo1")["ttl_security_hops"] = 0
    assert_clean(servers)


# ----------------------------------------------------------------- the table of checked values (FIELDS)

ROLLING = {"quorum": 1, "drain_wait": 10, "ready_timeout": 60, "announce_timeout": 30}


def _set(hv, path, value):
    """Put VALUE at a FIELDS path of one server's variables (the first item of a list, the first
    value of a mapping); a missing optional mapping is created first."""
    parts = path.replace("[]", ".[]").split(".")
    if parts[0] == "anycast_rolling":
        hv.setdefault("anycast_rolling", dict(ROLLING))
    if parts[0] == "anycast_soa_timers":
        hv.setdefault("anycast_soa_timers", {})
    node = hv
    for part in parts[:-1]:
        node = node[0] if part == "[]" else next(iter(node.values())) if part == "*" else node[part]
    node[parts[-1]] = value


def _key(host_vars, path):
    """The key a problem of PATH is reported under, as the rules name it."""
    if path.startswith("anycast_upstreams[]."):
        return "anycast_upstreams[0](%s).%s" % (host_vars["anycast_upstreams"][0]["name"], path.split(".", 1)[1])
    return path.replace("[]", "[0]").replace(".*.", ".%s." % next(iter(host_vars["anycast_bfd_profiles"])))


def _edges(field):
    """(accepted, refused) values at the field's bounds, or at its kind."""
    if field.kind == rules.BOOL:
        return [True, False], ["yes", 1]
    if field.kind == rules.CHOICE:
        return list(field.choices), [field.choices[0].upper(), "other"]
    good, bad = [], ["ten", True]
    if field.low is not None:
        good.append(field.low)
        bad.append(field.low - 1)
    if field.high is not None:
        good.append(field.high)
        bad.append(field.high + 1)
    if field.above is not None:
        good.append(field.above + 0.05)
        bad.append(field.above)
    if field.kind == rules.INT:
        bad.append((field.low or 0) + 1.5)
    return good, bad


@pytest.mark.parametrize("field", rules.FIELDS, ids=lambda f: f.path)
def test_every_checked_value_is_accepted_at_its_bounds_and_refused_past_them(field):
    good, bad = _edges(field)
    for value in good:
        servers = fleet()
        _set(servers["hkg1"], field.path, value)
        key = _key(servers["hkg1"], field.path)
        assert [p for p in rules.check_fleet(servers) if p.key == key] == [], (key, value)
    for value in bad:
        servers = fleet()
        _set(servers["hkg1"], field.path, value)
        key = _key(servers["hkg1"], field.path)
        found = [p for p in rules.check_fleet(servers) if p.host == "hkg1" and p.key == key]
        assert [p.message for p in found] == ["must be " + rules.describe(field)], (key, value)


@pytest.mark.parametrize("field", [f for f in rules.FIELDS if f.required], ids=lambda f: f.path)
def test_a_required_value_left_out_is_named_with_what_it_must_be(field):
    servers = fleet()
    _set(servers["hkg1"], field.path, None)
    key = _key(servers["hkg1"], field.path)
    found = [p for p in rules.check_fleet(servers) if p.host == "hkg1" and p.key == key]
    assert [p.message for p in found] == ["is required: " + rules.describe(field)]


@pytest.mark.parametrize("group", rules.CLOSED)
def test_a_key_that_is_no_setting_of_a_closed_mapping_is_refused(group):
    servers = fleet()
    _set(servers["hkg1"], group + ".interval_s", 5)
    found = [p for p in rules.check_fleet(servers) if p.key == group + ".interval_s"]
    assert [p.host for p in found] == ["hkg1"] and "is not a setting of " + group in found[0].message
