"""anycast.dns.upstream_interfaces: where each BGP neighbour may come from (host_firewall) and the server's
own address on its link (frr_bgp's update-source for GTSM sessions)."""

from __future__ import annotations

import pytest
from ansible.errors import AnsibleFilterError

from ansible_collections.anycast.dns.plugins.filter.firewall import upstream_interfaces, xfr_addresses

INTERFACES = [
    {"name": "mgmt0", "ipv4": "198.18.0.11/24"},
    {"name": "eth1", "ipv4": "100.64.20.2/30", "ipv6": "2001:db8:ffff:20::2/64"},
    {"name": "eth2", "ipv4": "100.66.0.11/24", "ipv6": "2001:db8:ff01::b/64"},
]


def test_each_neighbour_address_gets_its_interface_and_our_address_there():
    ups = [{"name": "transit", "ipv4": "100.64.20.1", "ipv6": "2001:db8:ffff:20::1"},
           {"name": "hkix", "ipv4": "100.66.0.1"}]
    assert upstream_interfaces(ups, INTERFACES) == [
        {"name": "transit", "family": 4, "address": "100.64.20.1", "interface": "eth1", "local": "100.64.20.2"},
        {"name": "transit", "family": 6, "address": "2001:db8:ffff:20::1", "interface": "eth1",
         "local": "2001:db8:ffff:20::2"},
        {"name": "hkix", "family": 4, "address": "100.66.0.1", "interface": "eth2", "local": "100.66.0.11"},
    ]


@pytest.mark.parametrize("far", [{"multihop": 3}, {"ttl_security_hops": 2}])
def test_a_neighbour_beyond_the_link_may_arrive_on_any_interface(far):
    out = upstream_interfaces([{"name": "far", "ipv4": "192.0.2.99", **far}], INTERFACES)
    assert out == [{"name": "far", "family": 4, "address": "192.0.2.99", "interface": None, "local": None}]


def test_a_directly_connected_neighbour_on_no_link_is_named():
    with pytest.raises(AnsibleFilterError, match="upstream lost: ipv4 = 192.0.2.99 is on none of the interfaces"):
        upstream_interfaces([{"name": "lost", "ipv4": "192.0.2.99"}], INTERFACES)


def test_transfer_addresses_fall_back_to_the_unicast_ones_as_knot_dns_does():
    hosts = [{"inventory_hostname": "fra1", "anycast_xfr_ipv4": "100.64.23.2", "anycast_unicast_ipv4": "198.18.0.31",
              "anycast_unicast_ipv6": "2001:db8:10::31"},
             {"inventory_hostname": "gru1", "anycast_unicast_ipv4": "192.0.2.41"}]
    assert xfr_addresses(hosts) == ["100.64.23.2", "2001:db8:10::31", "192.0.2.41"]


def test_a_transfer_address_that_does_not_parse_names_host_and_value():
    with pytest.raises(AnsibleFilterError, match="host tyo1: transfer address 100.64.22.300"):
        xfr_addresses([{"inventory_hostname": "tyo1", "anycast_xfr_ipv4": "100.64.22.300"}])
