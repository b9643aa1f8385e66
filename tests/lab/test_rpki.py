"""Issue 20 on the lab: the lab's Internet validates route origins (RFC 6811) against an RPKI
cache that serves the inventory's ROAs over RTR, and a network that announces our prefixes is
dropped where origins are validated.

The hijacker is hj-gru (AS 64666), a customer of tr-gru and of the backbone's bb-gru, neither of
which it may announce our prefixes to. It announces our /24, then a /25 inside it; the probes ask
the anycast address from every client region meanwhile. With validation switched off on tr-gru
alone, São Paulo's clients (behind tr-gru) lose the /25 to it.

The route collector on the monitoring node (BIRD, fed by five of the lab's routers, hj-gru among
them) sees the hijack either way, and its alerts fire; it also tells a PoP drained (the aggregate
still seen everywhere) from the service withdrawn everywhere (seen nowhere)."""

from __future__ import annotations

import contextlib
import ipaddress
import json
import time

import pytest

from anycast_lab import rpki
from anycast_lab.topology import load
from tests.conftest import run_playbook
from tests.lab.fleet import (
    INVENTORY,
    NEAREST_POP,
    OUR_ASN,
    POP_OF,
    SERVERS,
    SERVICE,
    health,
    probe_regions,
    received,
    sh,
    vtysh,
    vtysh_json,
    wait_for,
)
from tests.lab.test_monitoring import PROMETHEUS, get, query

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


def routing_alerts() -> set[tuple[str, str, str, str]]:
    """(alertname, prefix, peer, origin AS) of every route-collector alert firing now."""
    alerts = get(f"{PROMETHEUS}/api/v1/alerts")["data"]["alerts"]
    return {(a["labels"]["alertname"], a["labels"].get("prefix", ""), a["labels"].get("peer", ""),
             a["labels"].get("origin_as", ""))
            for a in alerts if a["state"] == "firing" and a["labels"]["alertname"].startswith("Anycast")
            and "prefix" in a["labels"]}


def collector_ready() -> dict:
    """What keeps the collector from watching: peers not established, the RPKI cache, BIRD."""
    down = {f"{r['metric']['peer']}/{r['metric']['family']}": "down"
            for r in query("anycast_collector_peer_up == 0 or anycast_collector_rpki_up == 0")}
    if not query("anycast_collector_up == 1"):
        down["bird"] = "not answering"
    return down


def wait_alerts(wanted: set, started: float, timeout: float = 60) -> dict:
    """Seconds from STARTED until each alert of WANTED fired (those that did within TIMEOUT)."""
    fired: dict = {}
    while time.monotonic() - started < timeout and not wanted <= set(fired):
        for key in routing_alerts() & wanted:
            fired.setdefault(key, time.monotonic() - started)
        time.sleep(0.5)
    return fired


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


def test_the_collector_revalidates_when_the_caches_data_changes(converged):
    """Our IPv4 ROA taken out of the cache's data (a ROA that expired, say): within a minute every
    collector peer's route for our /24 is RPKI "unknown" instead of "valid" (BIRD re-runs its filter
    on the RTR update: import table on), and AnycastPrefixRPKIInvalid stays silent (unknown is not
    invalid; the validating routers keep the route too). The ROA back: valid again everywhere."""
    ours = "203.0.113.0/24"

    def states() -> set[str]:
        return {r["metric"].get("rpki", "") for r in query(f'anycast_collector_route{{prefix="{ours}"}}')}

    def write_cache(data: str) -> None:
        path = f"/{rpki.CACHE_FILE}"
        sh(TOPO.rpki.cache, f"cat > {path}.new <<'EOF'\n{data}EOF\nmv {path}.new {path}")

    assert wait_for(lambda: not collector_ready(), 90, 2), collector_ready()
    assert wait_for(lambda: states() == {"valid"}, 60, 2), states()
    full = json.loads(rpki.cache_json(TOPO))
    roas = [v for v in full["roas"] if v["prefix"] != ours]
    without = dict(full, roas=roas, metadata=dict(full["metadata"], vrps=len(roas)))
    started = time.monotonic()
    try:
        write_cache(json.dumps(without, indent=1) + "\n")
        assert wait_for(lambda: states() == {"unknown"}, 60, 1), states()
        unknown_s = time.monotonic() - started
        assert ("AnycastPrefixRPKIInvalid", ours) not in {(a, p) for a, p, _, _ in routing_alerts()}
        assert best_origin("tr-gru", ours) == OUR_ASN  # not-found routes are kept
    finally:
        restored = time.monotonic()
        write_cache(rpki.cache_json(TOPO))
    assert wait_for(lambda: states() == {"valid"}, 60, 1), states()
    print(f"\n[collector] our ROA out of the cache: every peer's route unknown after {unknown_s:.0f} s; "
          f"valid again {time.monotonic() - restored:.0f} s after it came back")


@pytest.mark.parametrize("prefix", ["203.0.113.0/24", "203.0.113.0/25"])
def test_a_hijack_of_our_prefix_is_dropped_where_origins_are_validated(converged, prefix):
    """The hijacker's announcement reaches its two upstreams, which both drop it as RPKI-invalid;
    every client region keeps being answered by its own PoP, without a lost query."""
    assert wait_for(lambda: not collector_ready(), 90, 2), collector_ready()
    assert not routing_alerts(), routing_alerts()
    # What the collector must report: the hijacker's route, from the hijacker's own feed (every
    # validating router drops it); for the /25 also as a more-specific.
    wanted = {("AnycastPrefixHijacked", prefix, HIJACKER.name, str(HIJACKER.asn))}
    if ipaddress.ip_network(prefix).prefixlen > 24:
        wanted.add(("AnycastMoreSpecificSeen", prefix, HIJACKER.name, str(HIJACKER.asn)))
    with hijacked(prefix) as started:
        # tr-gru received it (kept before the policy by soft-reconfiguration) and did not take it.
        assert wait_for(lambda: prefix in received(TRANSIT, 4, HIJACKER_ON_TRANSIT), 30, 0.5)
        results = probe_regions(list(NEAREST_POP), SERVICE[4], rate=RATE, duration=PROBE_S)
        for router in ("tr-gru", "bb-gru", "bb-lon", "tr-hkg"):
            assert best_origin(router, prefix) in (None, OUR_ASN), (router, prefix)
        fired = wait_alerts(wanted, started)
        # Nobody but the hijacker's own feed saw it.
        assert {peer for _, p, peer, origin in routing_alerts() if origin == str(HIJACKER.asn)} == {HIJACKER.name}
        # status.yml shows it too, on the hijacker's feed's line, next to what the others see.
        status = run_playbook("playbooks/status.yml", INVENTORY)
        assert status.returncode == 0, status.stdout[-3000:]
        lines = {tuple(line.split()[1:3]): line for line in status.stdout.splitlines()
                 if line.strip().startswith("monitor1 ")}
        assert f"{prefix} [{HIJACKER.asn}] HIJACK: origin AS{HIJACKER.asn}" in lines[(HIJACKER.name, "ipv4")], lines
        assert "203.0.113.0/24 [64600 64603 65053]" in lines[("bb-fra", "ipv4")], lines
    print(f"\n[rpki] {prefix} announced by AS{HIJACKER.asn}, every router validating: "
          + json.dumps({c: {"lost": s["lost"], "by": s["answers_per_node"]} for c, s in results.items()})
          + "; alerts after the announcement: " + ", ".join(f"{a} {s:.1f} s" for (a, *_), s in sorted(fired.items())))
    assert served_by_our_pops(results) == {}
    assert set(fired) == wanted, (sorted(fired), sorted(wanted))
    # Gone from the collector's view: the alerts resolve.
    assert wait_for(lambda: not routing_alerts(), 60, 1), routing_alerts()


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
            # The collector sees the theft through tr-gru's feed too.
            wanted = {(alert, prefix, peer, str(HIJACKER.asn)) for alert in ("AnycastPrefixHijacked",
                      "AnycastMoreSpecificSeen") for peer in (HIJACKER.name, TRANSIT)}
            fired = wait_alerts(wanted, started)
    finally:
        vtysh(TRANSIT, "conf t", "route-map RPKI-IN deny 5", "match rpki invalid", "end", "clear bgp * soft in")
    print(f"\n[rpki] {prefix} announced by AS{HIJACKER.asn}, {TRANSIT} not validating: taken by {TRANSIT} "
          f"{taken_s:.1f} s after the announcement; "
          + json.dumps({c: {"lost": s["lost"], "by": s["answers_per_node"]} for c, s in results.items()})
          + "; alerts after the announcement: " + ", ".join(f"{a} ({peer}) {s:.1f} s"
                                                           for (a, _, peer, _), s in sorted(fired.items())))
    assert set(fired) == wanted, (sorted(fired), sorted(wanted))
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


def test_our_aggregate_seen_nowhere_fires_lost_visibility_a_drained_pop_does_not(converged):
    """One PoP drained (Frankfurt): every collector peer still has our aggregates, through the other
    PoPs, and AnycastPrefixNotVisible stays silent (not even pending) for twice its `for`. Every PoP
    drained at once (anycast-health's own drain on each server: what drain.yml refuses to do): the
    aggregates vanish from every peer and the alert fires for both families. Undrained: it resolves."""
    aggregates = {"203.0.113.0/24", "2001:db8:53::/48"}

    def not_visible(state: str) -> set[str]:
        expr = f'ALERTS{{alertname="AnycastPrefixNotVisible", alertstate="{state}"}}'
        return {r["metric"]["prefix"] for r in query(expr)}

    def withdrawn(server: str) -> bool:
        families = health(server).get("families", {})
        return bool(families) and not any(f.get("announced") for f in families.values())

    assert wait_for(lambda: not collector_ready(), 90, 2), collector_ready()
    assert not_visible("firing") | not_visible("pending") == set()
    pop = [s for s in SERVERS if POP_OF[s] == "fra"]
    try:
        for server in pop:
            sh(server, "anycast-health drain --no-block")
        assert wait_for(lambda: all(withdrawn(s) for s in pop), 30, 0.5)
        quiet_until = time.monotonic() + 30  # twice the lab's monitoring_collector_not_visible_for
        while time.monotonic() < quiet_until:
            assert not_visible("firing") | not_visible("pending") == set()
            time.sleep(2)
        seen = {(r["metric"]["peer"], r["metric"]["prefix"]) for r in query("anycast_collector_aggregate_visible == 1")}
        assert len(seen) == len(query("anycast_collector_aggregate_visible")), seen
    finally:
        for server in pop:
            sh(server, "anycast-health undrain", check=False)
    assert wait_for(lambda: not any(withdrawn(s) for s in pop), 30, 0.5)

    started = time.monotonic()
    try:
        for server in SERVERS:
            sh(server, "anycast-health drain --no-block")
        fired = {}
        while time.monotonic() - started < 120 and set(fired) != aggregates:
            for prefix in not_visible("firing"):
                fired.setdefault(prefix, time.monotonic() - started)
            time.sleep(1)
    finally:
        for server in SERVERS:
            sh(server, "anycast-health undrain", check=False)
    print("\n[collector] every PoP drained: AnycastPrefixNotVisible after "
          + ", ".join(f"{p} {s:.0f} s" for p, s in sorted(fired.items())) + " (its `for` 15 s on the lab)")
    assert set(fired) == aggregates, fired
    assert wait_for(lambda: not (not_visible("firing") | not_visible("pending")), 90, 2)
    assert wait_for(lambda: not any(health(s).get("drain") for s in SERVERS), 30, 1)
