"""The lab's route origin validation, without root: the cache's data (VRPs) and the routers'
configurations that use it."""

from __future__ import annotations

import ipaddress
import json
import re

import pytest

from anycast_lab import routers, rpki
from anycast_lab.shell import LabError
from anycast_lab.topology import load
from tests.conftest import REPO

TOPO = load()
VRPS = rpki.vrps(TOPO)


def validity(prefix: str, origin: int, vrps: list[dict] = VRPS) -> str:
    """RFC 6811 route origin validation of one announcement against VRPS."""
    net = ipaddress.ip_network(prefix)
    covering = [v for v in vrps if ipaddress.ip_network(v["prefix"]).version == net.version
                and net.subnet_of(ipaddress.ip_network(v["prefix"]))]
    if not covering:
        return "notfound"
    if any(v["asn"] == f"AS{origin}" and net.prefixlen <= v["maxLength"] for v in covering):
        return "valid"
    return "invalid"


def test_every_route_of_the_lab_is_rpki_valid():
    """What the lab's routers originate and our aggregates: valid, so validation drops nothing
    that belongs where it comes from."""
    for node in TOPO.of_kind("router"):
        for family in (4, 6):
            for prefix in routers.originated(TOPO, node, family):
                assert validity(prefix, node.asn) == "valid", (node.name, prefix)
    for prefix in TOPO.aggregates:
        assert validity(str(prefix), TOPO.asn) == "valid", prefix


@pytest.mark.parametrize("prefix", ["203.0.113.0/24", "203.0.113.0/25", "2001:db8:53::/48", "2001:db8:53::/64",
                                    "100.80.4.0/24", "100.127.0.5/32"])
def test_another_as_announcing_what_is_not_its_own_is_invalid(prefix):
    hijacker = next(n for n in TOPO.of_kind("router") if n.role == "hijacker")
    assert validity(prefix, hijacker.asn) == "invalid"


def test_the_service_vrps_are_the_inventorys_roas():
    service = [v for v in VRPS if any(ipaddress.ip_network(v["prefix"]).subnet_of(a) for a in TOPO.aggregates
                                      if a.version == ipaddress.ip_network(v["prefix"]).version)]
    roas = rpki.inventory_roas(TOPO)
    assert sorted((v["prefix"], v["maxLength"], v["asn"]) for v in service) == sorted(
        (r["prefix"], r["max_length"], f"AS{r['origin_asn']}") for r in roas)


def test_the_cache_file_is_what_stayrtr_reads():
    data = json.loads(rpki.cache_json(TOPO, now=1_800_000_000))
    assert data["metadata"]["generated"] == 1_800_000_000 and data["metadata"]["vrps"] == len(data["roas"])
    assert data["metadata"]["buildtime"] == "2027-01-15T08:00:00Z"
    assert all(set(v) == {"prefix", "maxLength", "asn"} and re.fullmatch(r"AS\d+", v["asn"]) for v in data["roas"])
    flags = rpki.cache_files(TOPO)[rpki.DEFAULTS_FILE]
    assert f"-bind :{TOPO.rpki.port}" in flags and f"-cache /{rpki.CACHE_FILE}" in flags


def test_an_inventory_without_roas_is_refused_naming_the_file(tmp_path):
    (tmp_path / "inventories/lab/group_vars/all").mkdir(parents=True)
    (tmp_path / TOPO.rpki.roas).write_text("anycast_asn: 65053\n")
    with pytest.raises(LabError, match=r"service.yml sets no anycast_roas"):
        rpki.vrps(TOPO, tmp_path)


@pytest.mark.parametrize("node", [n for n in TOPO.of_kind("router")], ids=lambda n: n.name)
def test_validating_routers_ask_the_cache_and_drop_invalid_routes_on_every_external_session(node):
    conf = routers.render(TOPO, node)
    if not TOPO.validates(node):
        assert "rpki" not in conf
        return
    cache = TOPO.nodes[TOPO.rpki.cache]
    assert f" rpki cache {cache.loopback4} {TOPO.rpki.port} preference 1\n" in conf
    if node.name != cache.name:
        # RTR from the loopback, which every router can route back to: zebra sets it as the source
        # of the kernel's route to the cache (and installs every other BGP route unchanged).
        assert f"permit {cache.loopback4}/32\n" in conf and f" set src {node.loopback4}\n" in conf
        assert "route-map RPKI-CACHE-SOURCE permit 20\nexit\nip protocol bgp route-map RPKI-CACHE-SOURCE\n" in conf
    # Every eBGP neighbour's inbound route-map starts with a deny of RPKI-invalid routes.
    maps = dict(re.findall(r"^  neighbor (\S+) route-map (\S+) in$", conf, re.M))
    external = {addr for addr, asn in re.findall(r"^ neighbor (\S+) remote-as (\d+)$", conf, re.M)
                if int(asn) != node.asn}
    assert external and external <= set(maps), external - set(maps)
    for name in {maps[a] for a in external}:
        if name == "COLLECTOR-IN":  # the route collector's session: nothing accepted at all
            assert "route-map COLLECTOR-IN deny 10\n" in conf and "route-map COLLECTOR-IN permit" not in conf
            continue
        assert re.search(rf"^route-map {name} deny 5\n match rpki invalid\n", conf, re.M), name


def test_bgpd_loads_its_rpki_module():
    assert '-M rpki"' in routers.DAEMONS
    assert REPO.joinpath("lab/routers/daemons").read_text() == routers.DAEMONS


def test_the_route_collector_of_the_inventory_is_the_topologys():
    """The inventory's collector (role monitoring) and the routers that feed it (gen-routers) agree:
    same machine address, AS, peers with their AS and loopbacks, and the lab's RPKI cache."""
    import yaml  # noqa: PLC0415

    inv = yaml.safe_load((REPO / "inventories/lab/group_vars/all/monitoring.yml").read_text())
    coll = TOPO.collector
    station = TOPO.nodes[coll.node].interfaces[0]
    assert (inv["monitoring_collector_ipv4"], inv["monitoring_collector_ipv6"]) == (str(station.ipv4.ip),
                                                                                   str(station.ipv6.ip))
    assert inv.get("monitoring_collector_asn", 65530) == coll.asn
    assert [(p["name"], p["asn"], p["ipv4"], p["ipv6"]) for p in inv["monitoring_collector_peers"]] == [
        (n, TOPO.nodes[n].asn, str(TOPO.nodes[n].loopback4), str(TOPO.nodes[n].loopback6)) for n in coll.peers]
    cache = TOPO.nodes[TOPO.rpki.cache]
    assert inv["monitoring_collector_rpki_cache"] == {"address": str(cache.loopback4), "port": TOPO.rpki.port}
    for name in coll.peers:
        node = TOPO.nodes[name]
        conf = routers.render(TOPO, node)
        for addr, own in ((station.ipv4.ip, node.loopback4), (station.ipv6.ip, node.loopback6)):
            assert f" neighbor {addr} remote-as {coll.asn}\n" in conf
            assert f" neighbor {addr} update-source {own}\n" in conf
            assert f"  neighbor {addr} route-map COLLECTOR-IN in\n" in conf
        assert "route-map COLLECTOR-IN deny 10\n" in conf
    others = [n for n in TOPO.of_kind("router") if n.name not in coll.peers]
    assert not [n.name for n in others if f"neighbor {station.ipv4.ip} " in routers.render(TOPO, n)]
