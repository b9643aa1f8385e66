"""FRR configurations of the lab's Internet routers, generated from the topology.

`anycast-lab gen-routers` writes them to lab/routers/<name>.conf; they are committed as plain
files (the Internet is not ours to manage) and a unit test keeps them in sync with the topology.

Policy, as on the real Internet:
- the backbone (one AS, full iBGP mesh) prefers its own customers' routes (local-pref 1000) and,
  among routes learned over iBGP, the backbone router nearest by modelled latency
  (local-pref 1000 - one-way ms): hot-potato routing without an IGP;
- transits and the HKIX route server accept only our aggregates from our servers, with TCP-MD5,
  a max-prefix limit and BFD; they send our servers a default route; a transit announces the
  link networks of its servers (its own address space), so that the servers' unicast link
  addresses are reachable across the Internet (zone transfers from the hidden primary);
- eyeball ISPs announce their client LAN; the HK ISP peers at HKIX through the route server;
- a router's `clients` node (a client namespace, or the monitoring server) has no BGP: the router
  announces that node's LAN and the node routes through it by default;
- the routers whose role the topology's `rpki` names validate route origins (RFC 6811) against the
  lab's RPKI cache over RTR, and drop RPKI-invalid routes on every eBGP session (rpki.py makes
  the cache's data: the inventory's ROAs and one per network these routers originate);
- the hijacker originates nothing of its own: tests make it announce what is not its;
- the routers the topology's `collector` names feed the route collector on the monitoring node
  their best routes (multihop eBGP from their loopbacks) and accept nothing from it.
"""

from __future__ import annotations

import math
from pathlib import Path

from .paths import ROUTER_CONFIG_DIR
from .topology import Node, Topology

BFD_PROFILE = {"name": "pop", "receive_interval": 300, "transmit_interval": 300, "detect_multiplier": 3}
SERVER_MAX_PREFIX = 10
UPSTREAM_NAME = {"transit": "transit", "route-server": "hkix"}

DAEMONS = """\
# FRR daemons of a lab router (lab/routers/daemons).
bgpd=yes
ospfd=no
ospf6d=no
ripd=no
ripngd=no
isisd=no
pimd=no
ldpd=no
nhrpd=no
eigrpd=no
babeld=no
sharpd=no
pbrd=no
bfdd=yes
fabricd=no
vrrpd=no
pathd=no
vtysh_enable=yes
zebra_options="  -A 127.0.0.1 -s 90000000"
bgpd_options="   -A 127.0.0.1 -M rpki"
staticd_options="-A 127.0.0.1"
bfdd_options="   -A 127.0.0.1"
"""


def md5_password(server: str, upstream: str) -> str:
    """The lab's TCP-MD5 password for one session (the lab vault holds the same strings)."""
    return f"lab-{server}-{upstream}"


def _sessions(topo: Topology, node: Node):
    """(peer node, our interface, peer interface) for each BGP neighbour of a router."""
    out = []
    for iface in node.interfaces:
        if iface.peer is not None:
            peer = topo.nodes[iface.peer]
            if peer.kind == "client" or peer.name == node.clients:
                continue
            out.append((peer, iface, topo.interface_on(peer.name, iface.link)))
        else:
            lan = topo.lans[iface.link.split(":", 1)[1]]
            for member in lan.members:
                if member == node.name:
                    continue
                peer = topo.nodes[member]
                # On the IXP LAN everybody peers with the route server only.
                if node.role != "route-server" and peer.role != "route-server":
                    continue
                out.append((peer, iface, topo.interface_on(member, iface.link)))
    return out


# How often a validating router asks the cache for news (seconds), and retries a lost cache: the
# cache also notifies its routers of a change at once (RTR Serial Notify).
RPKI_POLLING_S = 10
RPKI_RETRY_S = 5


def originated(topo: Topology, node: Node, family: int) -> list[str]:
    """The networks NODE originates in FAMILY: its loopback; a transit, the links to its servers
    (its own address space); a router with `clients`, that node's LAN. The route server originates
    nothing: it is transparent (it adds no AS to the paths it passes on), so a loopback it
    announced would reach the Internet with its clients' AS as origin, RPKI-invalid."""
    if node.role == "route-server":
        return []
    nets = [f"{node.loopback4}/32" if family == 4 else f"{node.loopback6}/128"]
    if node.role == "transit":
        for peer, iface, _ in _sessions(topo, node):
            if peer.kind == "server":
                nets.append(str((iface.ipv4 if family == 4 else iface.ipv6).network))
    if node.clients:
        client = topo.nodes[node.clients]
        nets.append(str(client.interfaces[0].ipv4.network if family == 4 else client.interfaces[0].ipv6.network))
    return nets


def _rpki_block(topo: Topology, node: Node) -> list[str]:
    """The RTR session of a validating router to the lab's cache, from its loopback (routed
    everywhere, unlike its link addresses). FRR 8.4 reads `rpki cache ... source ADDR` as an SSH
    cache whose user is "source" (found on the lab), so zebra gives the kernel's route to the
    cache the loopback as its source address instead."""
    cache = topo.nodes[topo.rpki.cache]
    lines = ["rpki", f" rpki polling_period {RPKI_POLLING_S}", f" rpki retry_interval {RPKI_RETRY_S}",
             f" rpki cache {cache.loopback4} {topo.rpki.port} preference 1", "exit", "!"]
    if node.name != cache.name:
        lines += [f"ip prefix-list RPKI-CACHE seq 10 permit {cache.loopback4}/32",
                  "route-map RPKI-CACHE-SOURCE permit 10", " match ip address prefix-list RPKI-CACHE",
                  f" set src {node.loopback4}", "exit",
                  "route-map RPKI-CACHE-SOURCE permit 20", "exit",
                  "ip protocol bgp route-map RPKI-CACHE-SOURCE", "!"]
    return lines


def render(topo: Topology, node: Node) -> str:
    agg4 = [str(p) for p in topo.aggregates if p.version == 4]
    agg6 = [str(p) for p in topo.aggregates if p.version == 6]
    lines = [
        f"! {node.name}: {node.role} router, AS {node.asn}, {topo.cities[node.city]['name']}.",
        "! Generated from lab/topology.yml by `anycast-lab gen-routers`; edit the generator, not this file.",
        "frr defaults traditional",
        f"hostname {node.name}",
        "log syslog informational",
        "service integrated-vtysh-config",
        "!",
    ]
    sessions = _sessions(topo, node)
    servers = [s for s in sessions if s[0].kind == "server"]
    validates = topo.validates(node)
    if validates:
        lines += _rpki_block(topo, node)
    if servers:
        lines += [
            "bfd",
            f" profile {BFD_PROFILE['name']}",
            f"  receive-interval {BFD_PROFILE['receive_interval']}",
            f"  transmit-interval {BFD_PROFILE['transmit_interval']}",
            f"  detect-multiplier {BFD_PROFILE['detect_multiplier']}",
            " exit",
        ]
        # GTSM on the servers' sessions makes FRR run their BFD as multihop (RFC 5883). FRR 8.4
        # creates such a session only once BGP is up, and FRR 10 (the Debian 13 servers) starts BGP
        # only once BFD is up: a session configured here exists from the start and breaks the wait.
        for _peer, iface, peer_iface in servers:
            for addr, own in ((peer_iface.ipv4.ip, iface.ipv4.ip), (peer_iface.ipv6.ip, iface.ipv6.ip)):
                lines += [f" peer {addr} multihop local-address {own}", f"  profile {BFD_PROFILE['name']}",
                          " exit"]
        lines += ["exit", "!"]
    lines += [
        f"router bgp {node.asn}",
        f" bgp router-id {node.loopback4}",
        " no bgp ebgp-requires-policy",
        " no bgp default ipv4-unicast",
        " no bgp network import-check",
        " bgp log-neighbor-changes",
        " timers bgp 10 30",
    ]
    if node.role == "eyeball" and any(p.role == "route-server" for p, _, _ in sessions):
        lines.append(" no bgp enforce-first-as")
    af_lines: dict[int, list[str]] = {4: [], 6: []}
    for peer, iface, peer_iface in sessions:
        for family, addr, own in ((4, peer_iface.ipv4.ip, iface.ipv4.ip), (6, peer_iface.ipv6.ip, iface.ipv6.ip)):
            lines += [
                f" neighbor {addr} remote-as {topo.asn if peer.kind == 'server' else peer.asn}",
                f" neighbor {addr} description {peer.name}",
                f" neighbor {addr} advertisement-interval 0",
            ]
            af = af_lines[family]
            af.append(f"  neighbor {addr} activate")
            if peer.kind == "server":
                upstream = UPSTREAM_NAME[node.role]
                lines += [
                    f" neighbor {addr} password {md5_password(peer.name, upstream)}",
                    # GTSM (RFC 5082): the server sends TTL 255 and accepts only 255, as we do. FRR then
                    # runs the session's BFD as multihop (RFC 5883), whose source it knows before the
                    # session is up only from update-source (FRR 10 waits for BFD before BGP).
                    f" neighbor {addr} ttl-security hops 1",
                    f" neighbor {addr} update-source {own}",
                    f" neighbor {addr} bfd profile {BFD_PROFILE['name']}",
                ]
                af += [
                    f"  neighbor {addr} route-map FROM-ANYCAST-V{family} in",
                    f"  neighbor {addr} maximum-prefix {SERVER_MAX_PREFIX}",
                    # Keeps what the server sent before the filter: tests prove nothing else leaves it.
                    f"  neighbor {addr} soft-reconfiguration inbound",
                ]
                if node.role == "transit":
                    af.append(f"  neighbor {addr} default-originate")
            if node.role == "route-server":
                af.append(f"  neighbor {addr} route-server-client")
            external = peer.kind == "server" or peer.asn != node.asn
            if node.role == "backbone":
                if peer.asn == node.asn:
                    af += [f"  neighbor {addr} next-hop-self",
                           f"  neighbor {addr} route-map IBGP-FROM-{peer.name} in"]
                else:
                    af.append(f"  neighbor {addr} route-map CUSTOMER-IN in")
            elif validates and external and peer.kind != "server":
                af.append(f"  neighbor {addr} route-map RPKI-IN in")
            if validates and external and peer.kind != "server":
                # What was received before the policy: a change of the cache's data re-validates it.
                af.append(f"  neighbor {addr} soft-reconfiguration inbound")
    collector = topo.collector
    if collector is not None and node.name in collector.peers:
        station = topo.nodes[collector.node].interfaces[0]
        for family, addr, own in ((4, station.ipv4.ip, node.loopback4), (6, station.ipv6.ip, node.loopback6)):
            lines += [
                f" neighbor {addr} remote-as {collector.asn}",
                f" neighbor {addr} description collector {collector.node}",
                f" neighbor {addr} ebgp-multihop 16",
                # Retried every 10 s (FRR: 120): the collector comes up after the routers do.
                f" neighbor {addr} timers connect 10",
                f" neighbor {addr} update-source {own}",
            ]
            af_lines[family] += [f"  neighbor {addr} activate", f"  neighbor {addr} route-map COLLECTOR-IN in"]
    for family in (4, 6):
        lines.append(f" address-family ipv{family} unicast")
        lines += [f"  network {net}" for net in originated(topo, node, family)]
        lines += af_lines[family]
        lines.append(" exit-address-family")
    lines += ["exit", "!"]
    if servers:
        for family, prefixes in ((4, agg4), (6, agg6)):
            kw = "ip" if family == 4 else "ipv6"
            for seq, prefix in enumerate(prefixes, start=1):
                lines.append(f"{kw} prefix-list ANYCAST-V{family} seq {seq * 10} permit {prefix}")
        lines += ["!"]
        for family in (4, 6):
            kw = "ip" if family == 4 else "ipv6"
            if validates:
                lines += [f"route-map FROM-ANYCAST-V{family} deny 5", " match rpki invalid", "exit"]
            lines += [
                f"route-map FROM-ANYCAST-V{family} permit 10",
                f" match {kw} address prefix-list ANYCAST-V{family}",
                "exit",
                f"route-map FROM-ANYCAST-V{family} deny 100",
                "exit",
                "!",
            ]
    if node.role != "backbone" and validates:
        lines += ["route-map RPKI-IN deny 5", " match rpki invalid", "exit", "route-map RPKI-IN permit 10", "exit", "!"]
    if node.role == "backbone":
        if validates:
            lines += ["route-map CUSTOMER-IN deny 5", " match rpki invalid", "exit"]
        lines += ["route-map CUSTOMER-IN permit 10", " set local-preference 1000", "exit", "!"]
        for peer, iface, _ in sessions:
            if peer.asn == node.asn and iface.ipv4 is not None:
                pref = 1000 - math.ceil(iface.latency_ms)
                block = [f"route-map IBGP-FROM-{peer.name} permit 10", f" set local-preference {pref}", "exit", "!"]
                if block[0] not in lines:
                    lines += block
    if collector is not None and node.name in collector.peers:
        # The collector sends nothing; whatever it might is refused.
        lines += ["route-map COLLECTOR-IN deny 10", "exit", "!"]
    lines += ["line vty", "!"]
    return "\n".join(lines) + "\n"


def write_all(topo: Topology, directory: Path = ROUTER_CONFIG_DIR) -> list[Path]:
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for node in topo.of_kind("router"):
        path = directory / f"{node.name}.conf"
        path.write_text(render(topo, node))
        written.append(path)
    (directory / "daemons").write_text(DAEMONS)
    return written
