"""The lab's RPKI: the validated ROA payloads (VRPs) its cache serves to the routers that validate.

The lab has no trust anchors and no repositories (a validator that needs the Internet cannot work
here), so it makes the validated data itself, as a validator would output it, in the JSON that
rpki-client writes and StayRTR reads (`roas`: prefix, maxLength, asn):
- the ROAs of the inventory (anycast_roas in the file the topology's `rpki.roas` names), which
  cover our aggregates with origin AS65053;
- one VRP per network the lab's routers originate (loopbacks, transit links, client LANs), with
  the router's own AS and the prefix's own length as maxLength, so that every route of the lab's
  Internet is RPKI-valid and a network announcing another's prefix is invalid.

StayRTR runs on the topology's cache router from Debian's stayrtr.service, which reads
/var/lib/rpki-client/json (CACHE_FILE) and its flags from /etc/default/stayrtr.
"""

from __future__ import annotations

import ipaddress
import json
import time
from pathlib import Path

import yaml

from .paths import REPO
from .routers import originated
from .shell import LabError
from .topology import Topology

CACHE_FILE = "var/lib/rpki-client/json"  # under the cache router's root: stayrtr.service's default
DEFAULTS_FILE = "etc/default/stayrtr"
UNIT = "stayrtr.service"
# The router image has the unit disabled; this link, under the cache router's root, enables it there.
ENABLE_LINK = (f"etc/systemd/system/multi-user.target.wants/{UNIT}", f"/lib/systemd/system/{UNIT}")
# StayRTR reads the file again every REFRESH_S seconds and tells the routers what changed.
REFRESH_S = 5


def inventory_roas(topo: Topology, repo: Path = REPO) -> list[dict]:
    """The ROAs of the inventory file the topology names: [{prefix, max_length, origin_asn}]."""
    path = repo / topo.rpki.roas
    try:
        roas = (yaml.safe_load(path.read_text()) or {}).get("anycast_roas")
    except (OSError, yaml.YAMLError) as exc:
        raise LabError(f"rpki: cannot read the ROAs from {path}: {exc}") from exc
    if not isinstance(roas, list) or not roas:
        raise LabError(f"rpki: {path} sets no anycast_roas (a list of prefix, max_length, origin_asn)")
    for roa in roas:
        try:
            ipaddress.ip_network(roa["prefix"])
            int(roa["origin_asn"])
        except (KeyError, TypeError, ValueError) as exc:
            raise LabError(f"rpki: {path}: anycast_roas entry {roa!r} is not a ROA: {exc}") from exc
    return roas


def vrps(topo: Topology, repo: Path = REPO) -> list[dict]:
    """Every VRP the cache serves, sorted: the inventory's ROAs, then the lab's own networks."""
    out = []
    for roa in inventory_roas(topo, repo):
        net = ipaddress.ip_network(roa["prefix"])
        out.append({"prefix": str(net), "maxLength": int(roa.get("max_length", net.prefixlen)),
                    "asn": f"AS{int(roa['origin_asn'])}"})
    for node in topo.of_kind("router"):
        for family in (4, 6):
            for prefix in originated(topo, node, family):
                net = ipaddress.ip_network(prefix)
                out.append({"prefix": str(net), "maxLength": net.prefixlen, "asn": f"AS{node.asn}"})
    unique = {(v["prefix"], v["maxLength"], v["asn"]): v for v in out}
    return sorted(unique.values(), key=lambda v: (ipaddress.ip_network(v["prefix"]).version, v["prefix"], v["asn"]))


def cache_json(topo: Topology, repo: Path = REPO, now: float | None = None) -> str:
    """The cache's file, with the build time StayRTR checks (it refuses data older than a day)."""
    stamp = int(time.time() if now is None else now)
    data = vrps(topo, repo)
    return json.dumps({"metadata": {"buildtime": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(stamp)),
                                    "generated": stamp, "vrps": len(data)},
                       "roas": data}, indent=1) + "\n"


def cache_files(topo: Topology, repo: Path = REPO) -> dict[str, str]:
    """What the cache router needs under its root, by path: the data and StayRTR's flags."""
    # RTR version 1 (RFC 8210): what the routers' RTRlib speaks.
    flags = (f"-bind :{topo.rpki.port} -protocol 1 -cache /{CACHE_FILE} -refresh {REFRESH_S} "
             "-metrics.addr 127.0.0.1:9847")
    return {CACHE_FILE: cache_json(topo, repo),
            DEFAULTS_FILE: f"# anycast-lab: the lab's RPKI cache (lab/anycast_lab/rpki.py)\nSTAYRTR_ARGS={flags}\n"}
