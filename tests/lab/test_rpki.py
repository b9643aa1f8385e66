"""Issue 20 on the lab: the lab's Internet validates route origins (RFC 6811) against an RPKI
cache that serves the inventory's ROAs over RTR, and a network that announces our prefixes is
dropped where origins are validated.

The hijacker is hj-gru (AS 64666), a customer of tr-gru and of the backbone's bb-gru, neither of
which it may announce our prefixes to. It announces our /24, then a /25 inside it; the probes ask
the anycast address from every client region meanwhile. With validation switched off on tr-gru
alone, São Paulo's clients (behind tr-gru) lose the /25 to it."""

from __future__ import annotations

import contextlib
import ipaddress
import json
import time

import pytest

from anycast_lab.topology import load
from tests.lab.fleet import NEAREST_POP, OUR_ASN, POP_OF, SERVICE, probe_regions, received, vtysh, vtysh_json, wait_for

pytestmark = pytest.mark.lab

TOPO = load()
HIJACKER = next(n for n in TOPO.of_kind("router") if n.role == "hijacker")
VALIDATING = [n for n in TOPO.of_kind("router") if TOPO.validates(n)]
TRANSIT = "tr-gru"  # the hijacker's transit, whose clients (São Paulo's) it can steal
HIJACKER_ON_TRANSIT = next(str(i.ipv4.ip) for i in HIJACKER.interfaces if i.peer == TRANSIT)
VICTIMS = {c for c, pop in NEAREST_POP.items() if pop == "gru"}
PROBE_S = 8
RATE = 20


def best_origin(router: str, prefix: str) -> int | None:
    """The origin AS of ROUTER's best path to exactly PREFIX (None when it has no path)."""
    afi = "ipv4" if ipaddress.ip_network(prefix).version == 4 else "ipv6"
    data = vtysh_json(router, f"show bgp {afi} unicast {prefix} json", check=False)
    for path in data.get("paths", []):
        if path.get("bestpath", {}).get("overall"):
            hops = path.get("aspath", {}).get("string", "").split()
            return int(hops[-1]) if hops else None
    return None


def holds_vrp(router: str, prefix: str, origin: int) -> bool:
    """Does ROUTER hold, from the cache, a VRP for PREFIX with ORIGIN (what makes it valid there)?"""
    data = vtysh_json(router, f"show rpki prefix {prefix} {origin} json", check=False)
    return bool(data.get("prefixes"))


@contextlib.contextmanager
def hijacked(prefix: str):
    """The hijacker announces PREFIX (without a route of its own for it), and stops afterwards."""
    afi = "ipv4" if ipaddress.ip_network(prefix).version == 4 else "ipv6"

    def network(no: str) -> None:
        vtysh(HIJACKER.name, "conf t", f"router bgp {HIJACKER.asn}", f"address-family {afi} unicast",
              f"{no}network {prefix}")

    network("")
    started = time.monotonic()
    try:
        yield started
    finally:
        network("no ")
        assert wait_for(lambda: best_origin(TRANSIT, prefix) != HIJACKER.asn, 30, 0.5)


def served_by_our_pops(results: dict) -> dict:
    """The regions NOT answered by their usual PoP on every query: region -> what happened."""
    bad = {}
    for client, s in results.items():
        pops = {POP_OF.get(n, n) for n in s["answers_per_node"]}
        if s["lost"] or pops != {NEAREST_POP[client]}:
            bad[client] = {"lost": s["lost"], "answered_by": s["answers_per_node"]}
    return bad


def test_every_validating_router_holds_the_caches_data_and_finds_our_routes_valid(converged):
    """Each backbone and transit router is synchronised with the cache (StayRTR on bb-lon), holds the
    inventory's ROAs (a VRP for our aggregates with our AS, none with the hijacker's), and carries
    no route it finds invalid."""
    def synced(router: str) -> bool:
        return holds_vrp(router, "203.0.113.0/24", OUR_ASN)

    assert wait_for(lambda: all(synced(r.name) for r in VALIDATING), 90, 2), \
        {r.name: vtysh(r.name, "show rpki cache-connection", check=False) for r in VALIDATING if not synced(r.name)}
    for router in VALIDATING:
        for prefix in ("203.0.113.0/24", "2001:db8:53::/48"):
            assert holds_vrp(router.name, prefix, OUR_ASN), (router.name, prefix)
            assert not holds_vrp(router.name, prefix, HIJACKER.asn), (router.name, prefix)
        # Nothing they carry is invalid: the lab's own routes are all covered by the cache's data.
        for afi in ("ipv4", "ipv6"):
            invalid = vtysh_json(router.name, f"show bgp {afi} unicast rpki invalid json").get("routes")
            assert invalid == {}, (router.name, afi, sorted(invalid))
    # The routers that do not validate (eyeballs, the route server) have no cache to ask.
    for router in ("isp-lon", "rs-hkix", HIJACKER.name):
        assert "rpki cache" not in vtysh(router, "show running-config"), router


@pytest.mark.parametrize("prefix", ["203.0.113.0/24", "203.0.113.0/25"])
def test_a_hijack_of_our_prefix_is_dropped_where_origins_are_validated(converged, prefix):
    """The hijacker's announcement reaches its two upstreams, which both drop it as RPKI-invalid;
    every client region keeps being answered by its own PoP, without a lost query."""
    with hijacked(prefix):
        # tr-gru received it (kept before the policy by soft-reconfiguration) and did not take it.
        assert wait_for(lambda: prefix in received(TRANSIT, 4, HIJACKER_ON_TRANSIT), 30, 0.5)
        results = probe_regions(list(NEAREST_POP), SERVICE[4], rate=RATE, duration=PROBE_S)
        for router in ("tr-gru", "bb-gru", "bb-lon", "tr-hkg"):
            assert best_origin(router, prefix) in (None, OUR_ASN), (router, prefix)
    print(f"\n[rpki] {prefix} announced by AS{HIJACKER.asn}, every router validating: "
          + json.dumps({c: {"lost": s["lost"], "by": s["answers_per_node"]} for c, s in results.items()}))
    assert served_by_our_pops(results) == {}


def test_without_validation_at_one_transit_its_clients_are_stolen(converged):
    """The same /25 with route origin validation switched off on tr-gru: tr-gru takes the
    more-specific from its customer and São Paulo's clients lose the service to the hijacker; the
    backbone still drops it, so every other region keeps its PoP. Validation back on: gone."""
    prefix = "203.0.113.0/25"
    vtysh(TRANSIT, "conf t", "no route-map RPKI-IN deny 5", "end", "clear bgp * soft in")
    try:
        with hijacked(prefix) as started:
            assert wait_for(lambda: best_origin(TRANSIT, prefix) == HIJACKER.asn, 30, 0.2)
            taken_s = time.monotonic() - started
            results = probe_regions(list(NEAREST_POP), SERVICE[4], rate=RATE, duration=PROBE_S)
            assert best_origin("bb-gru", prefix) in (None, OUR_ASN)
    finally:
        vtysh(TRANSIT, "conf t", "route-map RPKI-IN deny 5", "match rpki invalid", "end", "clear bgp * soft in")
    print(f"\n[rpki] {prefix} announced by AS{HIJACKER.asn}, {TRANSIT} not validating: taken by {TRANSIT} "
          f"{taken_s:.1f} s after the announcement; "
          + json.dumps({c: {"lost": s["lost"], "by": s["answers_per_node"]} for c, s in results.items()}))
    stolen = served_by_our_pops(results)
    assert set(stolen) == VICTIMS, stolen
    for client in VICTIMS:
        assert results[client]["answered"] == 0, results[client]
    # Validation back on: the hijack, announced again, is dropped at once.
    with hijacked(prefix):
        time.sleep(3)
        assert best_origin(TRANSIT, prefix) in (None, OUR_ASN)
        after = probe_regions(sorted(VICTIMS), SERVICE[4], rate=RATE, duration=3)
    assert served_by_our_pops(after) == {}
