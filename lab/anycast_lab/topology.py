"""Load lab/topology.yml and derive everything from it: interfaces, addresses, latencies."""

from __future__ import annotations

import ipaddress
import math
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from .paths import PREFIX, TOPOLOGY_FILE
from .shell import LabError

KINDS = ("server", "router", "client")
DEBIAN_RELEASES = (12, 13)  # what lab/anycast_lab/images.py can build
ROUTER_RELEASE = 12  # the lab's routers all run one image
FIBRE_KM_PER_MS = 200.0
MIN_LATENCY_MS = 0.1


@dataclass
class Interface:
    node: str
    name: str
    ipv4: ipaddress.IPv4Interface | None
    ipv6: ipaddress.IPv6Interface | None
    peer: str | None  # node at the other end (None on a LAN)
    link: str  # link id: "link7" or "lan:hkix"
    latency_ms: float


@dataclass
class Node:
    name: str
    kind: str
    city: str
    role: str | None = None
    asn: int | None = None
    rid: int | None = None
    mgmt: ipaddress.IPv4Address | None = None
    clients: str | None = None
    debian: int | None = None  # the Debian release a machine boots (None for a client namespace)
    interfaces: list[Interface] = field(default_factory=list)

    @property
    def netns(self) -> str:
        return PREFIX + self.name

    @property
    def is_machine(self) -> bool:
        return self.kind in ("server", "router")

    @property
    def loopback4(self) -> ipaddress.IPv4Address | None:
        return ipaddress.IPv4Address(f"100.127.0.{self.rid}") if self.rid else None

    @property
    def loopback6(self) -> ipaddress.IPv6Address | None:
        return ipaddress.IPv6Address(f"2001:db8:ff7f::{self.rid}") if self.rid else None


@dataclass
class Lan:
    name: str
    city: str
    ipv4: ipaddress.IPv4Network
    ipv6: ipaddress.IPv6Network
    members: dict[str, int]

    @property
    def netns(self) -> str:
        return f"{PREFIX}lan-{self.name}"


@dataclass
class Rpki:
    """The lab's route origin validation: the node that runs the RPKI cache, its RTR port, the
    file of the inventory that sets anycast_roas (relative to the repository), and the router
    roles that validate."""
    cache: str
    port: int
    roas: str
    validate: tuple[str, ...]


@dataclass
class Collector:
    """The lab's route collector: the machine that runs it (its BGP speaker comes from the
    inventory, role monitoring), its AS, and the routers that feed it their best routes over
    multihop eBGP from their loopbacks."""
    node: str
    asn: int
    peers: tuple[str, ...]


@dataclass
class Topology:
    name: str
    asn: int
    aggregates: list[ipaddress.IPv4Network | ipaddress.IPv6Network]
    mgmt_bridge: str
    mgmt_prefix: ipaddress.IPv4Network
    apt_cache_port: int
    cities: dict[str, dict]
    nodes: dict[str, Node]
    lans: dict[str, Lan]
    rpki: Rpki | None = None
    collector: Collector | None = None

    def validates(self, node: Node) -> bool:
        """Does this router drop RPKI-invalid routes (its role is one the topology's rpki names)?"""
        return self.rpki is not None and node.kind == "router" and node.role in self.rpki.validate

    @property
    def mgmt_gateway(self) -> ipaddress.IPv4Address:
        return next(self.mgmt_prefix.hosts())

    def machines(self) -> list[Node]:
        return [n for n in self.nodes.values() if n.is_machine]

    def of_kind(self, kind: str) -> list[Node]:
        return [n for n in self.nodes.values() if n.kind == kind]

    def interface_on(self, node: str, link: str) -> Interface:
        """The interface a node has on a link ("link7" or "lan:hkix")."""
        return next(i for i in self.nodes[node].interfaces if i.link == link)

    def owner_of(self, address: str) -> tuple[Node, Interface | None] | None:
        """The node (and interface) that holds an address; loopbacks give interface None."""
        addr = ipaddress.ip_address(address)
        for node in self.nodes.values():
            if addr in (node.loopback4, node.loopback6):
                return node, None
            for iface in node.interfaces:
                if addr in ((iface.ipv4.ip if iface.ipv4 else None), (iface.ipv6.ip if iface.ipv6 else None)):
                    return node, iface
        return None

    def contains(self, address: str) -> bool:
        """Is this address one the lab itself owns (probe targets must be)?"""
        addr = ipaddress.ip_address(address)
        if any(addr in net for net in self.aggregates):
            return True
        if self.owner_of(address):
            return True
        return addr in self.mgmt_prefix


    def gateway_of(self, node: Node) -> Interface | None:
        """The router interface a stub node (a client, or a router's `clients` server) routes
        through by default; None for a node that has its own routing (BGP) or none at all."""
        for router in self.of_kind("router"):
            if router.clients == node.name:
                return self.interface_on(router.name, node.interfaces[0].link)
        return None

    def client(self, name: str) -> Node:
        """The client node NAME; a LabError naming the clients when it is not one."""
        node = self.nodes.get(name)
        if node is None or node.kind != "client":
            known = ", ".join(n.name for n in self.of_kind("client"))
            raise LabError(f"{name!r} is not a client of the lab ({known})")
        return node

    def require_lab_address(self, address: str, what: str, why: str) -> None:
        """A LabError unless ADDRESS is an IP address the lab owns: traffic only ever goes there."""
        try:
            ipaddress.ip_address(address)
        except ValueError as exc:
            raise LabError(f"{what} {address!r} is not an IP address") from exc
        if not self.contains(address):
            raise LabError(f"{what} {address} is not an address of the lab; {why}")


def great_circle_km(a: dict, b: dict) -> float:
    lat1, lon1, lat2, lon2 = map(math.radians, (a["lat"], a["lon"], b["lat"], b["lon"]))
    h = math.sin((lat2 - lat1) / 2) ** 2 + math.cos(lat1) * math.cos(lat2) * math.sin((lon2 - lon1) / 2) ** 2
    return 2 * 6371.0 * math.asin(math.sqrt(h))


def latency_ms(cities: dict, city_a: str, city_b: str) -> float:
    km = great_circle_km(cities[city_a], cities[city_b])
    return round(max(MIN_LATENCY_MS, km / FIBRE_KM_PER_MS), 2)


def _host(net, number):
    return net.network_address + number


def _debian(name: str, kind: str, spec: dict) -> int | None:
    """The Debian release of a machine: servers must name theirs (12 or 13), routers run ROUTER_RELEASE."""
    if kind == "client":
        if "debian" in spec:
            raise LabError(f"topology: node {name}: a client is a namespace, not a machine; it has no 'debian'")
        return None
    if kind == "router":
        release = spec.get("debian", ROUTER_RELEASE)
        if release != ROUTER_RELEASE:
            raise LabError(f"topology: node {name}: debian {release!r}: the lab's routers all run Debian "
                           f"{ROUTER_RELEASE}")
        return release
    release = spec.get("debian")
    if release not in DEBIAN_RELEASES:
        raise LabError(f"topology: node {name}: debian {release!r}: a server names its Debian release, one of "
                       f"{', '.join(map(str, DEBIAN_RELEASES))}")
    return release


def load(path: Path = TOPOLOGY_FILE) -> Topology:
    data = yaml.safe_load(path.read_text())
    cities = data["cities"]
    nodes: dict[str, Node] = {}
    for name, spec in data["nodes"].items():
        kind = spec.get("kind")
        if kind not in KINDS:
            raise LabError(f"topology: node {name}: unknown kind {kind!r}")
        if spec.get("city") not in cities:
            raise LabError(f"topology: node {name}: unknown city {spec.get('city')!r}")
        if len(PREFIX + name) > 15:
            raise LabError(f"topology: node name {name!r} is too long for a kernel interface name")
        nodes[name] = Node(name=name, kind=kind, city=spec["city"], role=spec.get("role"), asn=spec.get("asn"),
                           rid=spec.get("id"), clients=spec.get("clients"), debian=_debian(name, kind, spec),
                           mgmt=ipaddress.IPv4Address(spec["mgmt"]) if spec.get("mgmt") else None)

    def next_ifname(node: Node) -> str:
        return f"eth{len(node.interfaces) + 1}"

    for idx, link in enumerate(data["links"], start=1):
        spec = link if isinstance(link, dict) else {"endpoints": link}
        a_name, b_name = spec["endpoints"]
        for end in (a_name, b_name):
            if end not in nodes:
                raise LabError(f"topology: link {idx}: unknown node {end!r}")
        net4 = ipaddress.IPv4Network(spec.get("ipv4", f"100.64.{idx}.0/30"))
        net6 = ipaddress.IPv6Network(spec.get("ipv6", f"2001:db8:ffff:{idx}::/64"))
        a, b = nodes[a_name], nodes[b_name]
        lat = float(spec.get("latency_ms", latency_ms(cities, a.city, b.city)))
        for number, node, peer in ((1, a, b), (2, b, a)):
            node.interfaces.append(Interface(
                node=node.name, name=next_ifname(node),
                ipv4=ipaddress.IPv4Interface(f"{_host(net4, number)}/{net4.prefixlen}"),
                ipv6=ipaddress.IPv6Interface(f"{_host(net6, number)}/{net6.prefixlen}"),
                peer=peer.name, link=f"link{idx}", latency_ms=lat))

    lans: dict[str, Lan] = {}
    for lan_name, spec in (data.get("lans") or {}).items():
        lan = Lan(name=lan_name, city=spec["city"], ipv4=ipaddress.IPv4Network(spec["ipv4"]),
                  ipv6=ipaddress.IPv6Network(spec["ipv6"]), members=dict(spec["members"]))
        lans[lan_name] = lan
        for member, number in lan.members.items():
            node = nodes[member]
            node.interfaces.append(Interface(
                node=member, name=next_ifname(node),
                ipv4=ipaddress.IPv4Interface(f"{_host(lan.ipv4, number)}/{lan.ipv4.prefixlen}"),
                ipv6=ipaddress.IPv6Interface(f"{_host(lan.ipv6, number)}/{lan.ipv6.prefixlen}"),
                peer=None, link=f"lan:{lan_name}", latency_ms=latency_ms(cities, node.city, lan.city)))

    service = data["service"]
    mgmt = data["mgmt"]
    topo = Topology(
        name=data["name"], asn=int(service["asn"]),
        aggregates=[ipaddress.ip_network(p) for p in service["aggregates"]],
        mgmt_bridge=mgmt["bridge"], mgmt_prefix=ipaddress.IPv4Network(mgmt["prefix"]),
        apt_cache_port=int(mgmt["apt_cache_port"]), cities=cities, nodes=nodes, lans=lans,
        rpki=_rpki(data.get("rpki"), nodes), collector=_collector(data.get("collector"), nodes))
    _check(topo)
    return topo


ROUTER_ROLES = ("backbone", "transit", "route-server", "eyeball", "hijacker")


def _rpki(spec: dict | None, nodes: dict[str, Node]) -> Rpki | None:
    if spec is None:
        return None
    cache = nodes.get(spec.get("cache"))
    if cache is None or cache.kind != "router":
        raise LabError(f"topology: rpki: cache {spec.get('cache')!r} is not a router of the lab")
    validate = tuple(spec.get("validate") or ())
    unknown = [role for role in validate if role not in ROUTER_ROLES]
    if unknown:
        raise LabError(f"topology: rpki: validate names unknown router roles {unknown} "
                       f"(known: {', '.join(ROUTER_ROLES)})")
    if not isinstance(spec.get("roas"), str):
        raise LabError("topology: rpki: roas must name the inventory file that sets anycast_roas")
    return Rpki(cache=cache.name, port=int(spec.get("port", 323)), roas=spec["roas"], validate=validate)


def _collector(spec: dict | None, nodes: dict[str, Node]) -> Collector | None:
    if spec is None:
        return None
    node = nodes.get(spec.get("node"))
    if node is None or node.kind != "server" or not node.interfaces:
        raise LabError(f"topology: collector: node {spec.get('node')!r} is not a lab machine with a link")
    peers = tuple(spec.get("peers") or ())
    wrong = [p for p in peers if p not in nodes or nodes[p].kind != "router"]
    if wrong or not peers:
        raise LabError(f"topology: collector: peers must be routers of the lab, got {wrong or 'none'}")
    return Collector(node=node.name, asn=int(spec["asn"]), peers=peers)


def _check(topo: Topology) -> None:
    seen: dict[str, str] = {}
    for node in topo.nodes.values():
        for iface in node.interfaces:
            for addr in (iface.ipv4, iface.ipv6):
                key = str(addr.ip)
                if key in seen:
                    raise LabError(f"topology: {key} on {node.name} {iface.name} is also on {seen[key]}")
                seen[key] = f"{node.name} {iface.name}"
        if node.mgmt is not None and node.mgmt not in topo.mgmt_prefix:
            raise LabError(f"topology: {node.name}: mgmt {node.mgmt} is outside {topo.mgmt_prefix}")
        if node.kind == "client" and len(node.interfaces) != 1:
            raise LabError(f"topology: client {node.name} needs exactly one link")
        if node.clients is not None:
            stub = topo.nodes.get(node.clients)
            if stub is None or not stub.interfaces or stub.interfaces[0].peer != node.name:
                raise LabError(f"topology: {node.name}: clients {node.clients!r} must be a node whose first "
                               f"link goes to {node.name}")
