"""Client probes: fixed-rate DNS queries with NSID from a client namespace, for a bounded time.

The host side (run_probe) starts the worker inside the client's network namespace, then walks
the forwarding tables hop by hop from the client to the target to name the path really taken
and its modelled RTT (the sum of the modelled latencies of the links it crosses, both ways).
"""

from __future__ import annotations

import ipaddress
import json
import subprocess
import sys

from .paths import LAB_DIR
from .shell import LabError, run
from .topology import Topology, latency_ms

MAX_RATE = 200
MAX_DURATION = 900
MAX_HOPS = 32
MAX_LATE_GRACE = 5.0
QTYPES = ("SOA", "A", "AAAA", "NS", "MX", "TXT", "DNSKEY", "CNAME")


def summarize(records: list[dict], duration_s: float) -> dict:
    """sent, answered, lost, longest gap (ms without an answer), answers per node, rcodes.

    Any DNS answer counts as answered (the network delivered it); rcodes and authoritative
    say what the answers were."""
    sent = len(records)
    answered = [r for r in records if r.get("nsid") is not None or r.get("rcode") is not None]
    per_node: dict[str, int] = {}
    for rec in answered:
        key = rec.get("nsid") or "(no nsid)"
        per_node[key] = per_node.get(key, 0) + 1
    # The longest stretch of time in which no query got an answer, edges of the run included.
    edges = [0.0] + [r["t_ms"] for r in answered] + [duration_s * 1000.0]
    gap = max((b - a for a, b in zip(edges, edges[1:], strict=False)), default=0.0) if answered else duration_s * 1000
    rtts = sorted(r["rtt_ms"] for r in answered if r.get("rtt_ms") is not None)
    rcodes: dict[str, int] = {}
    for rec in answered:
        rcodes[rec.get("rcode") or "?"] = rcodes.get(rec.get("rcode") or "?", 0) + 1
    return {
        "sent": sent,
        "answered": len(answered),
        "lost": sent - len(answered),
        "longest_gap_ms": round(gap, 1),
        "answers_per_node": per_node,
        "rcodes": rcodes,
        "authoritative": sum(1 for r in answered if r.get("aa")),
        "rtt_ms_median": rtts[len(rtts) // 2] if rtts else None,
        "rtt_ms_p999": rtts[min(len(rtts) - 1, len(rtts) * 999 // 1000)] if rtts else None,
        "rtt_ms_max": rtts[-1] if rtts else None,
        # Timeouts whose answer came after all (--late-grace): delayed on the way, not dropped.
        "late": sum(1 for r in records if r.get("late_ms") is not None),
    }


TERMINAL_TYPES = ("local", "blackhole", "unreachable", "prohibit")


def _terminal_route(netns: str, target: str) -> bool:
    """Does the longest route matching target end the packet's journey on this node?"""
    family = "-6" if ":" in target else "-4"
    proc = run(["ip", family, "-j", "route", "show", "match", target], netns=netns, check=False)
    routes = json.loads(proc.stdout or "[]") if proc.returncode == 0 else []
    if not routes:
        return False

    def length(route: dict) -> int:
        dst = route.get("dst", "default")
        return -1 if dst == "default" else ipaddress.ip_network(dst, strict=False).prefixlen

    best = max(routes, key=length)
    return best.get("type") in TERMINAL_TYPES


def _next_node(topo: Topology, iface, hop_addr: str):
    """The node behind a next hop; IPv6 next hops are often link-local (BGP over a link)."""
    if not ipaddress.ip_address(hop_addr).is_link_local:
        owner = topo.owner_of(hop_addr)
        return owner[0] if owner else None
    if iface.peer is not None:
        return topo.nodes[iface.peer]
    lan = topo.lans[iface.link.split(":", 1)[1]]
    for member in lan.members:
        other = topo.nodes[member]
        their = topo.interface_on(member, iface.link)
        proc = run(["ip", "-6", "-j", "addr", "show", "dev", their.name, "scope", "link"], netns=other.netns,
                   check=False)
        for link in json.loads(proc.stdout or "[]"):
            if any(a.get("local") == hop_addr for a in link.get("addr_info", [])):
                return other
    return None


def walk_path(topo: Topology, client: str, target: str) -> dict:
    """Follow the FIBs from client to target. Returns the nodes crossed and the modelled RTT."""
    node = topo.nodes[client]
    path = [node.name]
    one_way = 0.0
    for _ in range(MAX_HOPS):
        proc = run(["ip", "-j", "route", "get", target], netns=node.netns, check=False)
        if proc.returncode != 0:
            # `route get` refuses blackhole/unreachable routes: the packet ends here if such a route matches.
            if _terminal_route(node.netns, target):
                return {"path": path, "reached": node.name, "modelled_rtt_ms": round(2 * one_way, 2)}
            return {"path": path, "reached": None, "modelled_rtt_ms": None, "error": proc.stderr.strip()}
        route = json.loads(proc.stdout)[0]
        if route.get("type") in TERMINAL_TYPES or route.get("dev") == "lo":
            return {"path": path, "reached": node.name, "modelled_rtt_ms": round(2 * one_way, 2)}
        iface = next((i for i in node.interfaces if i.name == route.get("dev")), None)
        hop_addr = route.get("gateway") or target
        nxt = _next_node(topo, iface, hop_addr) if iface is not None else None
        if nxt is None:
            return {"path": path, "reached": None, "modelled_rtt_ms": None,
                    "error": f"no lab link for {route} on {node.name}"}
        one_way += iface.latency_ms if iface.peer else latency_ms(topo.cities, node.city, nxt.city)
        node = nxt
        path.append(node.name)
        if not route.get("gateway"):
            return {"path": path, "reached": node.name, "modelled_rtt_ms": round(2 * one_way, 2)}
    return {"path": path, "reached": None, "modelled_rtt_ms": None, "error": "routing loop or too many hops"}


def run_probe(topo: Topology, *, client: str, target: str, rate: float = 20.0, duration: float = 5.0,
              timeout: float = 0.5, qname: str = "example.com.", qtype: str = "SOA", tcp: bool = False,
              stop_file: str | None = None, late_grace: float = 0.0) -> dict:
    node = topo.client(client)
    topo.require_lab_address(target, "target", "probes only query the lab")
    if not 0 < rate <= MAX_RATE:
        raise LabError(f"rate must be in (0, {MAX_RATE}] queries per second")
    if not 0 < duration <= MAX_DURATION:
        raise LabError(f"duration must be in (0, {MAX_DURATION}] seconds")
    if not 0 < timeout <= 5:
        raise LabError("timeout must be in (0, 5] seconds")
    if not 0 <= late_grace <= MAX_LATE_GRACE:
        raise LabError(f"late grace must be in [0, {MAX_LATE_GRACE:g}] seconds")
    if qtype.upper() not in QTYPES:
        raise LabError(f"qtype must be one of {', '.join(QTYPES)}")
    argv = ["env", f"PYTHONPATH={LAB_DIR}", sys.executable, "-m", "anycast_lab.probe_worker", "--target", target,
            "--rate", str(rate), "--duration", str(duration), "--timeout", str(timeout), "--qname", qname,
            "--qtype", qtype.upper(), "--late-grace", str(late_grace)]
    if tcp:
        argv.append("--tcp")
    if stop_file:
        argv += ["--stop-file", stop_file]
    path_before = walk_path(topo, client, target)
    try:
        proc = run(argv, netns=node.netns, timeout=duration + timeout + late_grace + 30, check=True)
    except subprocess.TimeoutExpired as exc:  # pragma: no cover - run() converts it
        raise LabError("probe worker timed out") from exc
    records = json.loads(proc.stdout)
    if stop_file and len(records) < max(1, int(rate * duration)):
        duration = round(len(records) / rate, 3)  # stopped early: the time it really sent for
    path_after = walk_path(topo, client, target)
    summary = summarize(records, duration)
    summary.update({"client": client, "target": target, "qname": qname, "qtype": qtype.upper(), "rate": rate,
                    "duration_s": duration,
                    "proto": "tcp" if tcp else "udp", "path": path_after["path"],
                    "reached": path_after["reached"], "modelled_rtt_ms": path_after["modelled_rtt_ms"],
                    "path_at_start": path_before["path"], "latency_model": "modelled (no netem)"})
    return {"summary": summary, "records": records}


def format_summary(s: dict) -> str:
    nodes = ", ".join(f"{k}={v}" for k, v in sorted(s["answers_per_node"].items())) or "none"
    rcodes = ", ".join(f"{k}={v}" for k, v in sorted(s["rcodes"].items())) or "none"
    query = f"{s.get('qtype', 'SOA')} {s.get('qname', 'example.com.')}"
    return (f"{s['client']} -> {s['target']} ({query}, {s['proto']}, {s['rate']:g}/s for {s['duration_s']:g} s): "
            f"sent {s['sent']}, answered {s['answered']}, lost {s['lost']}, longest gap {s['longest_gap_ms']} ms; "
            f"answers: {nodes}; rcodes: {rcodes}, authoritative {s['authoritative']}; "
            f"path {' > '.join(s['path'])}; modelled RTT {s['modelled_rtt_ms']} ms")
