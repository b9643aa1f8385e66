"""The lab's model without root: topology, latencies, router configs, probe summaries, lab inventory."""

from __future__ import annotations

import ipaddress
import re

import pytest
import yaml

from anycast_lab import probe, resolver, routers
from anycast_lab.topology import great_circle_km, latency_ms, load
from tests.conftest import REPO

TOPO = load()


def test_topology_has_the_fleet_the_issue_names():
    servers = {n.name for n in TOPO.of_kind("server")}
    assert {"hkg1", "hkg2", "tyo1", "fra1", "gru1", "primary1", "monitor1"} == servers
    clients = {n.city for n in TOPO.of_kind("client")}
    assert clients == {"hkg", "tyo", "syd", "lon", "gru", "lax"}
    backbone = [n for n in TOPO.of_kind("router") if n.role == "backbone"]
    assert len({n.asn for n in backbone}) == 1 and len(backbone) >= 4
    assert {n.city for n in TOPO.of_kind("router") if n.role == "transit"} == {"hkg", "tyo", "fra", "gru"}
    assert TOPO.lans["hkix"].members.keys() >= {"rs-hkix", "hkg1", "hkg2"}


def test_every_interface_has_ipv4_and_ipv6_and_addresses_are_unique():
    seen = set()
    for node in TOPO.nodes.values():
        for iface in node.interfaces:
            assert iface.ipv4 and iface.ipv6
            for addr in (iface.ipv4.ip, iface.ipv6.ip):
                assert addr not in seen
                seen.add(addr)


def test_great_circle_latency_model():
    # Sydney - Hong Kong is about 7,400 km: at 200 km/ms that is 37 ms one way, a 74 ms RTT floor.
    km = great_circle_km(TOPO.cities["syd"], TOPO.cities["hkg"])
    assert 7300 < km < 7500
    assert latency_ms(TOPO.cities, "syd", "hkg") == pytest.approx(km / 200, abs=0.01)
    assert latency_ms(TOPO.cities, "hkg", "hkg") == 0.1


def test_nearest_pop_by_latency_is_what_geography_says():
    pops = ["hkg", "tyo", "fra", "gru"]
    nearest = {c: min(pops, key=lambda p, c=c: latency_ms(TOPO.cities, c, p)) for c in TOPO.cities}
    assert nearest == {"hkg": "hkg", "tyo": "tyo", "fra": "fra", "gru": "gru", "syd": "hkg", "lon": "fra",
                       "lax": "tyo"}


def test_backbone_prefers_the_nearest_backbone_router():
    conf = routers.render(TOPO, TOPO.nodes["bb-lax"])
    prefs = {name: int(pref) for name, pref in
             re.findall(r"route-map IBGP-FROM-(\S+) permit 10\n set local-preference (\d+)", conf)}
    assert len(prefs) == 5
    # Only backbone routers with a PoP behind them announce our aggregates over iBGP; among
    # those, Los Angeles must prefer Tokyo, its nearest PoP.
    with_pop = {k: v for k, v in prefs.items() if k.removeprefix("bb-") in ("hkg", "tyo", "fra", "gru")}
    assert max(with_pop, key=with_pop.get) == "bb-tyo"
    assert all(p < 1000 for p in prefs.values())
    assert "route-map CUSTOMER-IN permit 10\n set local-preference 1000" in conf


def test_committed_router_configs_match_the_topology():
    for node in TOPO.of_kind("router"):
        path = REPO / "lab" / "routers" / f"{node.name}.conf"
        assert path.read_text() == routers.render(TOPO, node), f"{path} is stale: run anycast-lab gen-routers"
    assert (REPO / "lab" / "routers" / "daemons").read_text() == routers.DAEMONS


def test_upstreams_accept_only_our_aggregates_from_our_servers():
    conf = routers.render(TOPO, TOPO.nodes["tr-fra"])
    assert "ip prefix-list ANYCAST-V4 seq 10 permit 203.0.113.0/24" in conf
    assert "ipv6 prefix-list ANYCAST-V6 seq 10 permit 2001:db8:53::/48" in conf
    assert "route-map FROM-ANYCAST-V4 deny 100" in conf
    rs = routers.render(TOPO, TOPO.nodes["rs-hkix"])
    assert "route-server-client" in rs and "FROM-ANYCAST-V6 in" in rs


def _lab_inventory():
    inv = REPO / "inventories" / "lab"
    hosts = {}
    for pop in ("hkg", "tyo", "fra", "gru"):
        data = yaml.safe_load((inv / f"{pop}.yml").read_text())
        for host, hv in data["anycast_servers"]["children"][pop]["hosts"].items():
            hosts[host] = {**hv, **yaml.safe_load((inv / "host_vars" / f"{host}.yml").read_text())}
    return hosts


def test_lab_inventory_matches_the_topology():
    hosts = _lab_inventory()
    assert set(hosts) == {n.name for n in TOPO.of_kind("server") if n.role is None}
    for host, hv in hosts.items():
        node = TOPO.nodes[host]
        assert hv["ansible_host"] == str(node.mgmt)
        ifaces = {i["name"]: i for i in hv["anycast_interfaces"]}
        for iface in node.interfaces:
            assert ifaces[iface.name]["ipv4"] == str(iface.ipv4)
            assert ipaddress.ip_interface(ifaces[iface.name]["ipv6"]) == iface.ipv6
        for up in hv["anycast_upstreams"]:
            owner, _ = TOPO.owner_of(up["ipv4"])
            assert owner.asn == up["asn"]
            assert TOPO.owner_of(up["ipv6"])[0] is owner
            expected_name = routers.UPSTREAM_NAME[owner.role]
            assert up["name"] == expected_name
            assert f"lab-{host}-{expected_name}" in routers.render(TOPO, owner)


def test_probe_summary_counts_losses_and_the_longest_gap():
    records = [{"t_ms": t, "nsid": "hkg1" if t < 500 or t >= 1500 else None, "rcode": "NOERROR" if
                (t < 500 or t >= 1500) else None, "rtt_ms": 1.0} for t in range(0, 2000, 100)]
    s = probe.summarize(records, 2.0)
    assert s["sent"] == 20 and s["answered"] == 10 and s["lost"] == 10
    assert s["longest_gap_ms"] == 1100.0  # last answer at 400 ms, next at 1500 ms
    assert s["answers_per_node"] == {"hkg1": 10}
    assert s["rcodes"] == {"NOERROR": 10}


def test_probe_summary_tells_answers_apart_by_rcode_and_authority():
    records = [{"t_ms": 0, "nsid": "tyo1", "rcode": "NOERROR", "aa": True, "rtt_ms": 1.0},
               {"t_ms": 100, "nsid": "tyo1", "rcode": "REFUSED", "aa": False, "rtt_ms": 1.0},
               {"t_ms": 200, "nsid": None, "rcode": None, "rtt_ms": None}]
    s = probe.summarize(records, 0.3)
    assert s["answered"] == 2 and s["lost"] == 1
    assert s["rcodes"] == {"NOERROR": 1, "REFUSED": 1} and s["authoritative"] == 1
    s.update({"client": "cl-tyo", "target": "203.0.113.53", "qname": "example.com.", "qtype": "A", "proto": "udp",
              "rate": 10, "duration_s": 0.3, "path": ["cl-tyo", "isp-tyo"], "modelled_rtt_ms": 1.0})
    assert "(A example.com., udp," in probe.format_summary(s)
    assert "rcodes: NOERROR=1, REFUSED=1, authoritative 1" in probe.format_summary(s)


def test_probe_summary_counts_late_answers_as_lost_and_gives_the_tail():
    records = [{"t_ms": t, "nsid": "fra1", "rcode": "NOERROR", "aa": True, "rtt_ms": float(t % 7)}
               for t in range(0, 1000, 10)]
    records[50] = {"t_ms": 500, "nsid": None, "rcode": None, "rtt_ms": None, "error": "Timeout",
                   "late_ms": 612.5, "late_nsid": "fra1"}
    records[60] = {"t_ms": 600, "nsid": None, "rcode": None, "rtt_ms": None, "error": "Timeout"}
    s = probe.summarize(records, 1.0)
    assert s["lost"] == 2 and s["late"] == 1
    assert s["rtt_ms_max"] == 6.0 and s["rtt_ms_p999"] == 6.0


def test_probe_refuses_non_lab_targets_and_unbounded_runs():
    with pytest.raises(Exception, match="not an address of the lab"):
        probe.run_probe(TOPO, client="cl-hkg", target="8.8.8.8")
    with pytest.raises(Exception, match="rate"):
        probe.run_probe(TOPO, client="cl-hkg", target="203.0.113.53", rate=10_000)
    with pytest.raises(Exception, match="duration"):
        probe.run_probe(TOPO, client="cl-hkg", target="203.0.113.53", duration=3600)
    with pytest.raises(Exception, match="late grace"):
        probe.run_probe(TOPO, client="cl-hkg", target="203.0.113.53", late_grace=60)


def test_probe_refuses_unknown_query_types():
    with pytest.raises(Exception, match="qtype"):
        probe.run_probe(TOPO, client="cl-hkg", target="203.0.113.53", qtype="AXFR")


def test_the_resolver_asks_only_the_lab_for_the_given_zones():
    conf = resolver.unbound_conf(["example.com", "example.net."], ["203.0.113.53", "2001:db8:53::1"])
    stubs = re.findall(r'stub-zone:\n    name: "([^"]+)"\n((?:    stub-addr: \S+\n)+)', conf)
    assert [(name, addrs.split()) for name, addrs in stubs] == [
        (".", ["stub-addr:", "127.0.0.1"]),
        ("example.com.", ["stub-addr:", "203.0.113.53", "stub-addr:", "2001:db8:53::1"]),
        ("example.net.", ["stub-addr:", "203.0.113.53", "stub-addr:", "2001:db8:53::1"]),
    ]
    assert "do-not-query-localhost: yes" in conf and "interface: 127.0.0.1" in conf
    assert "trust-anchor-file:" in conf and "auto-trust-anchor-file" not in conf
    with pytest.raises(Exception, match="not an address of the lab"):
        resolver.resolve(TOPO, None, client="cl-hkg", anchors="x", zones=["example.com"],
                         questions=[("example.com", "A")], stubs=["9.9.9.9"])
    with pytest.raises(Exception, match="not a client"):
        resolver.resolve(TOPO, None, client="hkg1", anchors="x", zones=["example.com"],
                         questions=[("example.com", "A")])


def test_monitoring_node_is_a_stub_customer_of_the_frankfurt_backbone():
    monitor = TOPO.nodes["monitor1"]
    gateway = TOPO.gateway_of(monitor)
    assert gateway is not None and gateway.node == "bb-fra"
    assert str(monitor.interfaces[0].ipv4) == "100.80.7.2/24"
    conf = routers.render(TOPO, TOPO.nodes["bb-fra"])
    # bb-fra announces the monitoring LAN; its only BGP with monitor1 is the route collector's
    # multihop session from its loopback (not a session on the link).
    assert "network 100.80.7.0/24" in conf and "network 2001:db8:8007::/64" in conf
    assert " neighbor 100.80.7.2 update-source 100.127.0.3\n" in conf
    assert " neighbor 2001:db8:8007::2 update-source 2001:db8:ff7f::3\n" in conf
    # The PoP servers have BGP of their own: no default route from the engine for them.
    assert TOPO.gateway_of(TOPO.nodes["fra1"]) is None
    assert TOPO.gateway_of(TOPO.nodes["cl-lon"]).node == "isp-lon"


def test_the_lab_runs_a_mixed_fleet_and_every_machine_names_its_release():
    servers = {n.name: n.debian for n in TOPO.of_kind("server")}
    pops = {n.city for n in TOPO.of_kind("server") if n.role is None}
    on13 = {n.city for n in TOPO.of_kind("server") if n.role is None and n.debian == 13}
    assert len(on13) >= 2 and pops - on13, servers  # at least two PoPs on 13, at least one on 12
    assert servers["primary1"] == 13
    assert {n.debian for n in TOPO.of_kind("router")} == {12}
    assert all(n.debian is None for n in TOPO.of_kind("client"))


@pytest.mark.parametrize(("spec", "message"), [
    ({"kind": "server", "city": "fra"}, "node x1: debian None: a server names its Debian release, one of 12, 13"),
    ({"kind": "server", "city": "fra", "debian": 11}, "node x1: debian 11: a server names its Debian release"),
    ({"kind": "router", "city": "fra", "debian": 13}, "node x1: debian 13: the lab's routers all run Debian 12"),
    ({"kind": "client", "city": "fra", "debian": 12}, "node x1: a client is a namespace, not a machine"),
])
def test_a_bad_release_in_the_topology_names_the_node_and_the_value(tmp_path, spec, message):
    from anycast_lab.shell import LabError  # noqa: PLC0415

    data = yaml.safe_load((REPO / "lab/topology.yml").read_text())
    data["nodes"]["x1"] = spec
    path = tmp_path / "topology.yml"
    path.write_text(yaml.safe_dump(data))
    with pytest.raises(LabError, match=re.escape(message)):
        load(path)


def test_the_cli_offers_the_releases_the_images_can_build_and_starts_without_the_engine():
    """`anycast-lab reimage --debian` offers topology.DEBIAN_RELEASES; images.py must build each one.
    The CLI leaves the engine (images, apt cache) to the commands that use it: `exec` and `probe`
    run thousands of times in the lab tests."""
    import subprocess  # noqa: PLC0415
    import sys  # noqa: PLC0415

    from anycast_lab import images, topology  # noqa: PLC0415

    assert set(topology.DEBIAN_RELEASES) == set(images.SUITES)
    code = ("import sys; from anycast_lab import cli; cli.build_parser(); "
            "print(sorted(m for m in sys.modules if m.startswith('anycast_lab.')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         env={"PYTHONPATH": str(REPO / "lab")}).stdout
    assert "anycast_lab.engine" not in out and "anycast_lab.images" not in out, out
