"""anycast-collector-exporter: what a route collector (BIRD 2) sees of our address space, as
Prometheus metrics.

    anycast-collector-exporter [--config PATH] [--listen ADDR:PORT] [--birdc PATH] [--socket PATH]
    anycast-collector-exporter --once        print the metrics once and exit (1 if BIRD did not answer)
    anycast-collector-exporter --json        print what each peer sends, as JSON (playbooks/status.yml)
    anycast-collector-exporter --version

The collector (role monitoring, `monitoring_collector`) is a BIRD that takes a passive eBGP session
from each of its peers, as RIPE RIS and RouteViews collect from theirs, exports nothing, and keeps
only the routes inside our aggregates (its import filter). The same filter tags each route with its
RPKI origin validation state (RFC 6811) against the collector's own RTR cache: a large community
(COLLECTOR_ASN, 1, N) with N = 0 unknown, 1 valid, 2 invalid (BIRD re-runs the filter when the
cache's data changes).

Every scrape asks BIRD, through birdc in restricted mode, at that moment:
- `show protocols`: which peer sessions are established, and the RTR session;
- `show route table master4 all` and `... master6 all`: every route each peer sent of our space.
The configuration (JSON, written by the role from the same variables as bird.conf) names our
origin AS, the aggregates and, per BIRD protocol, the peer, its AS and the address family.

Per route: anycast_collector_route{peer, family, prefix, kind, origin_as, upstream_as, rpki} 1,
where kind is "aggregate" (one of ours exactly) or "more_specific", origin_as the last AS of the
path and upstream_as the AS before the origin (the origin's prepends skipped; "" if none).
Per aggregate and established peer of its family: anycast_collector_aggregate_visible 1 when the
peer has the aggregate originated by our AS, else 0 (a missing route is a 0, not an absent series).
Why not prometheus-bird-exporter (Debian 1.4.2): it counts routes per protocol only (and not per
pipe), so it cannot say which prefix, which origin or which path a peer sees; the alerts need that.
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import re
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

from prometheus_client import CollectorRegistry, generate_latest, start_http_server
from prometheus_client.core import GaugeMetricFamily, Metric

from . import __version__, paths

CONFIG = paths.COLLECTOR_EXPORTER_CONFIG
LISTEN = paths.COLLECTOR_EXPORTER_LISTEN
BIRDC = "/usr/sbin/birdc"
BIRD_SOCKET = paths.BIRD_SOCKET
RPKI_STATES = {0: "unknown", 1: "valid", 2: "invalid"}

HELP = {
    "anycast_collector_up": "1 when BIRD answered this scrape",
    "anycast_collector_peer_up": "1 when the collector's BGP session with the peer is established",
    "anycast_collector_rpki_up": "1 when the collector's RTR session with its RPKI cache is established",
    "anycast_collector_route": "a route of our address space that a peer sends the collector (always 1)",
    "anycast_collector_aggregate_visible": "1 when the peer sends the aggregate originated by our AS, else 0",
    "anycast_collector_scrape_seconds": "time this scrape spent asking BIRD",
}


@dataclass(frozen=True)
class Peer:
    protocol: str
    name: str
    asn: int
    family: int


@dataclass
class Config:
    origin_asn: int
    collector_asn: int
    aggregates: list[ipaddress.IPv4Network | ipaddress.IPv6Network]
    peers: dict[str, Peer] = field(default_factory=dict)


def load_config(text: str) -> Config:
    """The exporter's JSON: {"origin_asn", "collector_asn", "aggregates": [...], "peers": [{"protocol",
    "name", "asn", "family"}]}. A missing or wrong key is an error that names it."""
    data = json.loads(text)
    try:
        peers = {p["protocol"]: Peer(str(p["protocol"]), str(p["name"]), int(p["asn"]), int(p["family"]))
                 for p in data["peers"]}
        return Config(int(data["origin_asn"]), int(data["collector_asn"]),
                      [ipaddress.ip_network(a) for a in data["aggregates"]], peers)
    except KeyError as exc:
        raise ValueError(f"the collector exporter's configuration lacks {exc.args[0]!r}") from exc


PROTOCOL_RE = re.compile(r"^(\S+)\s+(\S+)\s+\S+\s+(\S+)\s+\S+(?:\s+(.*?))?\s*$")


def established(info: str) -> bool:
    """Is a protocol with this Info column up? (The Since column before it is one word or two,
    depending on BIRD's `timeformat protocol`; a second word lands in INFO.)"""
    return "Established" in info.split()


def parse_protocols(text: str) -> dict[str, tuple[str, str]]:
    """`birdc show protocols` -> {name: (proto, info)}, e.g. {"p_bb_fra_4": ("BGP", "Established")}."""
    out = {}
    for line in text.splitlines():
        match = PROTOCOL_RE.match(line)
        if match and match.group(1) not in ("Name", "BIRD") and not line.startswith(" "):
            out[match.group(1)] = (match.group(2), (match.group(4) or "").strip())
    return out


@dataclass
class Route:
    prefix: str
    protocol: str
    as_path: list[int] = field(default_factory=list)
    large_communities: list[tuple[int, int, int]] = field(default_factory=list)


ROUTE_RE = re.compile(r"^(\S+/\d+)?\s+\S+\s+\[(\S+)\s")
LARGE_RE = re.compile(r"\((\d+),\s*(\d+),\s*(\d+)\)")


def parse_routes(text: str) -> list[Route]:
    """`birdc show route table T all` -> the routes, each with its protocol, AS path and large
    communities. A network's first route line names the prefix; its other routes follow, indented."""
    routes: list[Route] = []
    prefix = ""
    for line in text.splitlines():
        if line.startswith("\t"):
            if not routes:
                continue
            key, _, value = line.strip().partition(": ")
            if key == "BGP.as_path":
                routes[-1].as_path = [int(a) for a in value.replace("{", " ").replace("}", " ").split()]
            elif key == "BGP.large_community":
                routes[-1].large_communities = [tuple(map(int, m)) for m in LARGE_RE.findall(value)]
            continue
        match = ROUTE_RE.match(line)
        if not match:
            continue
        prefix = match.group(1) or prefix
        routes.append(Route(prefix, match.group(2)))
    return routes


def origin_and_upstream(path: list[int]) -> tuple[str, str]:
    """(origin AS, the AS before it once the origin's prepends are skipped) as strings; "" if none."""
    if not path:
        return "", ""
    origin = path[-1]
    rest = list(path)
    while rest and rest[-1] == origin:
        rest.pop()
    return str(origin), str(rest[-1]) if rest else ""


def rpki_state(route: Route, collector_asn: int) -> str:
    for asn, kind, value in route.large_communities:
        if asn == collector_asn and kind == 1:
            return RPKI_STATES.get(value, "unknown")
    return "unknown"


class Samples:
    def __init__(self) -> None:
        self.families: dict[str, GaugeMetricFamily] = {}

    def add(self, name: str, value: float, **labels: str) -> None:
        family = self.families.get(name)
        if family is None:
            family = self.families[name] = GaugeMetricFamily(name, HELP[name], labels=list(labels))
        family.add_metric([labels[k] for k in family._labelnames], value)  # noqa: SLF001 - the order add() got

    def __iter__(self) -> Iterator[Metric]:
        return iter(self.families.values())


def route_metrics(metrics: Samples, config: Config, protocols: dict[str, tuple[str, str]],
                  routes: list[Route]) -> None:
    up = {name for name, (_proto, info) in protocols.items() if established(info)}
    for name, peer in sorted(config.peers.items()):
        metrics.add("anycast_collector_peer_up", 1 if name in up else 0,
                    peer=peer.name, family=str(peer.family), asn=str(peer.asn))
    for name, (proto, info) in sorted(protocols.items()):
        if proto == "RPKI":
            metrics.add("anycast_collector_rpki_up", 1 if established(info) else 0, cache=name)
    seen: set[tuple[str, str]] = set()
    for route in routes:
        peer = config.peers.get(route.protocol)
        if peer is None:
            continue
        net = ipaddress.ip_network(route.prefix)
        kind = "aggregate" if net in config.aggregates else "more_specific"
        origin, upstream = origin_and_upstream(route.as_path)
        metrics.add("anycast_collector_route", 1, peer=peer.name, family=str(peer.family), prefix=route.prefix,
                    kind=kind, origin_as=origin, upstream_as=upstream,
                    rpki=rpki_state(route, config.collector_asn))
        if kind == "aggregate" and origin == str(config.origin_asn):
            seen.add((peer.name, route.prefix))
    for name, peer in sorted(config.peers.items()):
        if name not in up:
            continue
        for aggregate in config.aggregates:
            if aggregate.version == peer.family:
                metrics.add("anycast_collector_aggregate_visible", 1 if (peer.name, str(aggregate)) in seen else 0,
                            peer=peer.name, family=str(peer.family), prefix=str(aggregate))


def view(config: Config, protocols: dict[str, tuple[str, str]], routes: list[Route]) -> dict:
    """What the collector sees, per configured peer session: established or not, and each route of
    our space with its classification (the same as the metrics')."""
    peers = []
    for name, peer in sorted(config.peers.items(), key=lambda kv: (kv[1].name, kv[1].family)):
        info = protocols.get(name, ("", "not configured in BIRD"))[1]
        mine = []
        for route in routes:
            if route.protocol != name:
                continue
            origin, upstream = origin_and_upstream(route.as_path)
            mine.append({"prefix": route.prefix, "as_path": route.as_path, "origin_as": origin,
                         "upstream_as": upstream,
                         "kind": "aggregate" if ipaddress.ip_network(route.prefix) in config.aggregates
                         else "more_specific",
                         "rpki": rpki_state(route, config.collector_asn)})
        peers.append({"peer": peer.name, "family": peer.family, "asn": peer.asn,
                      "established": established(info), "state": info, "routes": mine})
    rpki = {name: info for name, (proto, info) in protocols.items() if proto == "RPKI"}
    return {"origin_asn": config.origin_asn, "aggregates": [str(a) for a in config.aggregates],
            "rpki": rpki, "peers": peers}


class Bird:
    """birdc in restricted mode (-r: show commands only)."""

    def __init__(self, birdc: str, socket_path: str, timeout: float) -> None:
        self.command = [birdc, "-r", "-s", socket_path]
        self.timeout = timeout

    def ask(self, *words: str) -> str:
        done = subprocess.run([*self.command, *words], capture_output=True, text=True, timeout=self.timeout,
                              check=False)
        if done.returncode != 0 or "Unable to connect" in done.stdout + done.stderr:
            raise RuntimeError(f"birdc {' '.join(words)}: {(done.stderr or done.stdout).strip()}")
        return done.stdout

    def read(self) -> tuple[dict[str, tuple[str, str]], list[Route]]:
        protocols = parse_protocols(self.ask("show", "protocols"))
        routes = []
        for table in ("master4", "master6"):
            routes += parse_routes(self.ask("show", "route", "table", table, "all"))
        return protocols, routes


class CollectorCollector:
    """prometheus_client collector: BIRD asked once per scrape (one scrape at a time)."""

    def __init__(self, config: Config, bird) -> None:
        self.config = config
        self.bird = bird
        self.lock = threading.Lock()
        self.last_error = ""

    def collect(self) -> Iterator[Metric]:
        metrics = Samples()
        started = time.monotonic()
        with self.lock:
            try:
                protocols, routes = self.bird.read()
            except (OSError, RuntimeError, subprocess.TimeoutExpired) as exc:
                self.last_error = str(exc)
                metrics.add("anycast_collector_up", 0)
            else:
                self.last_error = ""
                metrics.add("anycast_collector_up", 1)
                route_metrics(metrics, self.config, protocols, routes)
        metrics.add("anycast_collector_scrape_seconds", round(time.monotonic() - started, 6))
        return iter(metrics)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="anycast-collector-exporter", description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", default=CONFIG)
    parser.add_argument("--listen", default=LISTEN, help="ADDR:PORT to serve /metrics on (default %(default)s)")
    parser.add_argument("--birdc", default=BIRDC)
    parser.add_argument("--socket", default=BIRD_SOCKET)
    parser.add_argument("--timeout", type=float, default=5.0, help="seconds one birdc call may take")
    parser.add_argument("--once", action="store_true", help="print the metrics once and exit")
    parser.add_argument("--json", action="store_true", help="print what each peer sends, as JSON, and exit")
    parser.add_argument("--version", action="version",
                        version=f"anycast-collector-exporter (anycast-agents) {__version__}")
    args = parser.parse_args(argv)
    try:
        with open(args.config, encoding="utf-8") as handle:
            config = load_config(handle.read())
    except (OSError, ValueError) as exc:
        print(f"anycast-collector-exporter: {args.config}: {exc}", file=sys.stderr)
        return 2
    bird = Bird(args.birdc, args.socket, args.timeout)
    if args.json:
        try:
            protocols, routes = bird.read()
        except (OSError, RuntimeError, subprocess.TimeoutExpired) as exc:
            print(f"anycast-collector-exporter: {exc}", file=sys.stderr)
            return 1
        print(json.dumps(view(config, protocols, routes), indent=1, sort_keys=True))
        return 0
    collector = CollectorCollector(config, bird)
    reg = CollectorRegistry(auto_describe=False)
    reg.register(collector)
    if args.once:
        sys.stdout.write(generate_latest(reg).decode())
        if collector.last_error:
            print(f"anycast-collector-exporter: {collector.last_error}", file=sys.stderr)
        return 1 if collector.last_error else 0
    host, _, port = args.listen.rpartition(":")
    start_http_server(int(port), addr=host.strip("[]"), registry=reg)
    while True:
        time.sleep(3600)
