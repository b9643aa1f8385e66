"""Faults the lab injects on purpose: a link that goes silent (carrier up, every frame dropped).

A silent link is what BFD exists for: the interface stays up, so neither the kernel nor BGP
notices, and only the missing hellos tell the other end. The drop is an nftables netdev table
in the machine's network namespace, on ingress and egress of one interface, so ARP, ND, BGP
and BFD all stop at once. The host's `nft` runs inside the namespace; the machine needs nothing.
"""

from __future__ import annotations

import shutil

from .paths import PREFIX
from .shell import LabError, run
from .topology import Topology


def _table(iface: str) -> str:
    return f"{PREFIX.rstrip('-')}_silence_{iface}".replace("-", "_")


def links(topo: Topology, node: str) -> list[str]:
    """Every interface of NODE the lab wired: its links, and mgmt0 when it has one."""
    names = [i.name for i in topo.nodes[node].interfaces]
    return names + (["mgmt0"] if topo.nodes[node].mgmt is not None else [])


def _check(topo: Topology, node: str, iface: str) -> str:
    if shutil.which("nft") is None:
        raise LabError("missing nft: run 'make setup' as root (Debian package nftables)")
    if node not in topo.nodes:
        raise LabError(f"no node {node!r} in the topology")
    names = links(topo, node)
    if iface not in names:
        raise LabError(f"{node} has no interface {iface!r} (it has: {', '.join(sorted(names))})")
    return topo.nodes[node].netns


def silence(topo: Topology, node: str, iface: str) -> None:
    """Drop every frame in and out of NODE's IFACE; the link itself stays up."""
    netns = _check(topo, node, iface)
    table = _table(iface)
    ruleset = (f"table netdev {table} {{\n"
               f"  chain in {{ type filter hook ingress device \"{iface}\" priority -500; policy drop; }}\n"
               f"  chain out {{ type filter hook egress device \"{iface}\" priority -500; policy drop; }}\n"
               f"}}\n")
    _delete(netns, iface)
    run(["nft", "-f", "-"], input_text=ruleset, netns=netns)


def _delete(netns: str, iface: str) -> bool:
    return run(["nft", "delete", "table", "netdev", _table(iface)], netns=netns, check=False).returncode == 0


def restore(topo: Topology, node: str, iface: str) -> bool:
    """Undo silence(); True if the link was silenced."""
    return _delete(_check(topo, node, iface), iface)


def silenced(topo: Topology, node: str) -> list[str]:
    """Interfaces of NODE that are silenced now."""
    netns = topo.nodes[node].netns
    out = run(["nft", "list", "tables", "netdev"], netns=netns, check=False).stdout.split()
    prefix = _table("")
    return sorted(word[len(prefix):] for word in out if word.startswith(prefix))


def restore_all(netns: str) -> list[str]:
    """Undo every silence() in a network namespace (no topology needed: the supervisor's case)."""
    out = run(["nft", "list", "tables", "netdev"], netns=netns, check=False).stdout.split()
    prefix = _table("")
    tables = [word for word in out if word.startswith(prefix)]
    for table in tables:
        run(["nft", "delete", "table", "netdev", table], netns=netns, check=False)
    return [t[len(prefix):] for t in tables]
