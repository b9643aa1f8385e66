"""A bigger lab for make bench's playbook timings: lab/topology.yml plus extra PoP servers.

`write(directory, extra)` makes, in DIRECTORY: topology.yml (the lab's own, with EXTRA more
servers spread over the four PoPs in turn, each behind its PoP's transit router), routers/ (the
router configurations generated from it) and inventory/ (a copy of inventories/lab with the new
servers in their PoP groups and their host_vars). `env(directory)` is the environment that makes
`anycast-lab` use that topology and those router configurations. Nothing in the repository is
changed; the extra servers are real machines like the others, with real BGP and BFD sessions.
"""

from __future__ import annotations

import ipaddress
import os
import re
import shutil
from pathlib import Path

import yaml

from . import routers, topology
from .paths import LAB_DIR, REPO
from .shell import LabError

POPS = ("hkg", "tyo", "fra", "gru")
MGMT_FIRST = 100  # extra servers' management addresses: 198.18.0.100 and up
MAX_EXTRA = 100


def extra_names(data: dict, extra: int) -> list[tuple[str, str]]:
    """(name, PoP) of EXTRA new servers, one per PoP in turn, numbered after the PoP's own."""
    if not 0 <= extra <= MAX_EXTRA:
        raise LabError(f"extra servers must be 0 to {MAX_EXTRA}, not {extra}")
    taken = set(data["nodes"])
    count = {pop: sum(1 for n, s in data["nodes"].items() if s.get("kind") == "server" and s.get("city") == pop
                      and not s.get("role") and n.startswith(pop)) for pop in POPS}
    out = []
    for i in range(extra):
        pop = POPS[i % len(POPS)]
        count[pop] += 1
        name = f"{pop}{count[pop]}"
        if name in taken:
            raise LabError(f"topology already has a node {name}")
        out.append((name, pop))
    return out


def scaled_topology(extra: int, source: Path = LAB_DIR / "topology.yml") -> tuple[dict, list[tuple[str, str]]]:
    data = yaml.safe_load(source.read_text())
    prefix = ipaddress.IPv4Network(data["mgmt"]["prefix"])
    new = extra_names(data, extra)
    for i, (name, pop) in enumerate(new):
        # An extra server runs the release of its PoP's first server.
        debian = data["nodes"][f"{pop}1"]["debian"]
        data["nodes"][name] = {"kind": "server", "city": pop, "mgmt": str(prefix.network_address + MGMT_FIRST + i),
                               "debian": debian}
        data["links"].append([f"tr-{pop}", name])
    return data, new


def host_vars(topo: topology.Topology, name: str) -> dict:
    """The inventory of one extra server, as inventories/lab/host_vars/<server>.yml has it."""
    node = topo.nodes[name]
    eth1 = node.interfaces[0]
    router = topo.nodes[eth1.peer]
    theirs = topo.interface_on(router.name, eth1.link)
    mgmt = str(node.mgmt)
    return {
        "anycast_router_id": mgmt,
        "anycast_unicast_ipv4": mgmt,
        "anycast_interfaces": [
            {"name": "mgmt0", "ipv4": f"{mgmt}/24"},
            {"name": eth1.name, "ipv4": str(eth1.ipv4), "ipv6": str(eth1.ipv6)},
        ],
        "anycast_upstreams": [{
            "name": "transit", "type": "transit", "asn": router.asn, "ipv4": str(theirs.ipv4.ip),
            "ipv6": str(theirs.ipv6.ip), "bfd_profile": "upstream",
            "password": routers.md5_password(name, "transit"), "scope": "global", "max_prefix": 10,
            "accept_default": True,
        }],
    }


def write(directory: Path, extra: int, inventory: Path = REPO / "inventories" / "lab") -> list[str]:
    """Write the scaled lab into DIRECTORY; returns the names of the extra servers."""
    data, new = scaled_topology(extra)
    if directory.exists():
        shutil.rmtree(directory)
    directory.mkdir(parents=True)
    (directory / "topology.yml").write_text("# make bench's scaled lab (lab/anycast_lab/scale.py)\n"
                                            + yaml.safe_dump(data, sort_keys=False))
    topo = topology.load(directory / "topology.yml")
    routers.write_all(topo, directory / "routers")
    inv = directory / "inventory"
    shutil.copytree(inventory, inv)
    # The lab inventory finds its zone files next to itself; the copy uses the repository's.
    service = inv / "group_vars" / "all" / "service.yml"
    text, found = re.subn(r"^anycast_zones_dir: .*$", f"anycast_zones_dir: {REPO / 'zones' / 'lab'}",
                          service.read_text(), flags=re.M)
    if found != 1:
        raise LabError(f"{service}: no anycast_zones_dir to point at {REPO / 'zones' / 'lab'}")
    service.write_text(text)
    for name, pop in new:
        head = f"---\n# {name}: extra lab server of make bench's scaled lab (generated).\n"
        (inv / "host_vars" / f"{name}.yml").write_text(head + yaml.safe_dump(host_vars(topo, name), sort_keys=False))
        group_file = inv / f"{pop}.yml"
        group = yaml.safe_load(group_file.read_text())
        group["anycast_servers"]["children"][pop]["hosts"][name] = {"ansible_host": str(topo.nodes[name].mgmt)}
        group_file.write_text("---\n" + yaml.safe_dump(group, sort_keys=False))
    return [name for name, _ in new]


def env(directory: Path) -> dict[str, str]:
    return dict(os.environ, ANYCAST_LAB_TOPOLOGY=str(directory / "topology.yml"),
                ANYCAST_LAB_ROUTERS=str(directory / "routers"))
