#!/usr/bin/python
# Copyright: contributors to the anycast.dns collection
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""What one PoP server does now: BGP and BFD sessions, what it announces, health, zone serials."""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: node_status
short_description: Read (or wait for) a PoP server's BGP, BFD, announcement, health and zone state
version_added: 0.4.0
description:
  - Reads on the managed node, through C(vtysh), every BGP session of FRR (IPv4 and IPv6 unicast),
    its BFD peer and the prefixes FRR advertises on it; the state of C(anycast-health) (per family
    announced, draining, drained, damped or withdrawn, and the drain flag); and the SOA serial each
    zone has on each of O(addresses), asked without recursion.
  - With O(wait_for), reads again every O(interval) seconds until the node is in that state, and fails
    after O(timeout) seconds naming everything that is not.
  - V(ready) means Knot answers every zone on every address (authoritative NOERROR with the SOA, at the
    serials of O(expect_serials) or newer), every BGP session is Established and every BFD peer is up.
    V(announced) means ready, both families announced by C(anycast-health), and every prefix of
    O(aggregates) advertised on every Established session of its family. V(withdrawn) means no prefix of
    O(aggregates) is advertised on any session.
options:
  zones:
    description: Zones whose SOA serial to read.
    type: list
    elements: str
    default: []
  addresses:
    description: Addresses on which to ask the local Knot (anycast and unicast, IPv4 or IPv6).
    type: list
    elements: str
    default: []
  port:
    description: DNS port.
    type: int
    default: 53
  expect_serials:
    description: Zone name to the serial every address must serve at least (RFC 1982 arithmetic).
    type: dict
  aggregates:
    description: The anycast aggregates; what V(announced) and V(withdrawn) look for.
    type: list
    elements: str
    default: []
  wait_for:
    description: State to wait for; V(none) reads once and never fails for the node's state.
    type: str
    choices: [none, ready, announced, withdrawn]
    default: none
  timeout:
    description: Seconds to wait for O(wait_for).
    type: float
    default: 60
  interval:
    description: Seconds between two readings while waiting.
    type: float
    default: 0.5
  health_state:
    description: The state file of C(anycast-health).
    type: path
    default: /run/anycast-health/state.json
  rollout_record:
    description:
      - The record C(playbooks/rolling.yml) writes when it starts the server's PoP and removes when the
        PoP is done; read into RV(rollout).
    type: path
    default: /var/lib/anycast-health/rollout.json
  vtysh:
    description: FRR's shell.
    type: path
    default: /usr/bin/vtysh
requirements:
  - FRR (vtysh) and dnspython on the managed node.
extends_documentation_fragment:
  - anycast.dns.attributes
  - anycast.dns.attributes.read_only
author:
  - anycast.dns contributors (@anycast-dns)
"""

EXAMPLES = r"""
- name: Wait until the drained server serves the primary's serials with BGP and BFD up
  anycast.dns.node_status:
    zones: [example.com, example.net]
    addresses: [203.0.113.53, "2001:db8:53::1", 198.18.0.31]
    expect_serials: "{{ primary.serials }}"
    aggregates: [203.0.113.0/24, "2001:db8:53::/48"]
    wait_for: ready
    timeout: 120

- name: Wait until every upstream receives the aggregates again
  anycast.dns.node_status:
    aggregates: [203.0.113.0/24, "2001:db8:53::/48"]
    wait_for: announced
"""

RETURN = r"""
sessions:
  description: One entry per BGP session (neighbour and address family).
  returned: always
  type: list
  elements: dict
  sample:
    - {neighbor: 100.64.23.1, family: ipv4, description: transit (transit), state: Established,
       established: true, uptime_seconds: 64, bfd: up, advertised: [203.0.113.0/24]}
announced:
  description: Prefixes of O(aggregates) advertised on at least one Established session.
  returned: always
  type: list
  elements: str
health:
  description:
    - The state of C(anycast-health) (C(drain) and per family C(state), C(announced), C(reason)),
      or null when its state file cannot be read.
  returned: always
  type: dict
drained:
  description: Whether the drain flag is set.
  returned: always
  type: bool
rollout:
  description:
    - The record of a rollout that started this server's PoP and has not finished it (C(pop), C(started),
      C(resume)), or null. One that is left behind says the rollout stopped there (a failed step, or its
      controller killed); the next rollout rolls the PoP again and reloads every daemon.
  returned: always
  type: dict
  sample: {pop: tyo, started: "2026-12-01T20:31:05Z",
           resume: ansible-playbook -i inventories/lab playbooks/rolling.yml -e rolling_from=tyo}
serials:
  description: Per address, per zone, the serial served or why there was none.
  returned: always
  type: dict
  sample: {"203.0.113.53": {"example.com": 2026112101, "example.net": "answered SERVFAIL"}}
ready:
  description: Whether the node is ready (see O(wait_for)).
  returned: always
  type: bool
announcing:
  description: Whether the node announces (see V(announced) in O(wait_for)).
  returned: always
  type: bool
problems:
  description: Why the node is not in the state of O(wait_for); with O(wait_for=none), why it does not announce.
  returned: always
  type: list
  elements: str
elapsed:
  description: Seconds spent waiting.
  returned: always
  type: float
"""

import json
import time

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.anycast.dns.plugins.module_utils import _dns, _health

AFI = {"ipv4Unicast": ("ipv4", "ipv4"), "ipv6Unicast": ("ipv6", "ipv6")}


def parse_summary(text):
    """[(family, neighbor, peer dict)] from `show bgp summary json`."""
    data = json.loads(text or "{}")
    out = []
    for key, (family, _safi) in AFI.items():
        for neighbor, peer in sorted((data.get(key) or {}).get("peers", {}).items()):
            out.append((family, neighbor, peer))
    return out


def parse_bfd(text):
    """{peer address: status} from `show bfd peers json`."""
    return {p.get("peer"): p.get("status") for p in json.loads(text or "[]") if isinstance(p, dict)}


def parse_advertised(text):
    return sorted((json.loads(text or "{}").get("advertisedRoutes") or {}).keys())


def judge(sessions, health, serials, aggregates, expect):
    """(ready problems, announce problems, withdraw problems, prefixes announced somewhere)."""
    in_order = {address: dict(sorted(zones.items())) for address, zones in sorted(serials.items())}
    ready = ["Knot " + line for line in _dns.lagging(in_order, expect)]
    if not sessions:
        ready.append("BGP: no session configured (is bgpd running?)")
    for s in sessions:
        name = "%s %s (%s)" % (s["description"] or "neighbor", s["neighbor"], s["family"])
        if not s["established"]:
            ready.append("BGP %s: %s" % (name, s["state"]))
        if s["bfd"] not in (None, "up"):
            ready.append("BFD %s: %s" % (name, s["bfd"]))
    announce = list(ready)
    if health is None:
        announce.append("anycast-health: no state (is anycast-health.service running?)")
    else:
        if health.get("drain"):
            announce.append("anycast-health: drained")
        for fam, st in sorted((health.get("families") or {}).items()):
            if not st.get("announced") and st.get("state") != "drained":
                announce.append("anycast-health %s: %s (%s)" % (fam, st.get("state"), st.get("reason")))
    withdraw = []
    announced = set()
    for s in sessions:
        fam_aggs = [a for a in aggregates if (":" in a) == (s["family"] == "ipv6")]
        name = "%s %s" % (s["description"] or "neighbor", s["neighbor"])
        for agg in fam_aggs:
            if agg in s["advertised"]:
                announced.add(agg)
                withdraw.append("%s still advertised to %s" % (agg, name))
            elif s["established"]:
                announce.append("%s not advertised to %s" % (agg, name))
    return ready, announce, withdraw, sorted(announced)


class Reader:
    def __init__(self, module):
        self.module = module
        self.p = module.params

    def vtysh(self, command):
        rc, out, err = self.module.run_command([self.p["vtysh"], "-c", command],
                                               environ_update={"LANGUAGE": "C", "LC_ALL": "C"})
        if rc != 0:
            self.module.fail_json(msg="vtysh -c '%s' failed: %s" % (command, (err or out).strip()), rc=rc,
                                  stdout=out, stderr=err)
        return out

    def sessions(self):
        try:
            peers = parse_summary(self.vtysh("show bgp summary json"))
            bfd = parse_bfd(self.vtysh("show bfd peers json"))
        except ValueError as exc:
            self.module.fail_json(msg="cannot parse FRR's JSON: %s" % exc)
        out = []
        for family, neighbor, peer in peers:
            established = peer.get("state") == "Established"
            advertised = []
            if established:
                try:
                    advertised = parse_advertised(self.vtysh(
                        "show bgp %s unicast neighbors %s advertised-routes json" % (family, neighbor)))
                except ValueError as exc:
                    self.module.fail_json(msg="cannot parse FRR's advertised routes of %s: %s" % (neighbor, exc))
            out.append({"neighbor": neighbor, "family": family, "description": peer.get("desc"),
                        "state": peer.get("state"), "established": established,
                        "uptime_seconds": int(peer.get("peerUptimeMsec", 0)) // 1000 if established else 0,
                        "bfd": bfd.get(neighbor), "advertised": advertised})
        return out

    def health(self):
        try:
            with open(self.p["health_state"]) as fh:
                state = json.load(fh)
        except (OSError, ValueError):
            return None
        problem = _health.schema_problem(state, self.p["health_state"])
        if problem:
            self.module.fail_json(msg=problem)
        return state

    def rollout(self):
        try:
            with open(self.p["rollout_record"]) as fh:
                record = json.load(fh)
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as exc:
            return {"pop": None, "started": None, "unreadable": "%s: %s" % (self.p["rollout_record"], exc)}
        return record if isinstance(record, dict) else {"pop": None, "started": None, "unreadable": "not an object"}

    def serials(self):
        return _dns.serials(self.p["addresses"], self.p["zones"], port=self.p["port"], timeout=1.0)


def main():
    module = AnsibleModule(
        argument_spec={
            "zones": {"type": "list", "elements": "str", "default": []},
            "addresses": {"type": "list", "elements": "str", "default": []},
            "port": {"type": "int", "default": 53},
            "expect_serials": {"type": "dict"},
            "aggregates": {"type": "list", "elements": "str", "default": []},
            "wait_for": {"type": "str", "default": "none", "choices": ["none", "ready", "announced", "withdrawn"]},
            "timeout": {"type": "float", "default": 60},
            "interval": {"type": "float", "default": 0.5},
            "health_state": {"type": "path", "default": _health.HEALTH_STATE},
            "rollout_record": {"type": "path", "default": _health.ROLLOUT_RECORD},
            "vtysh": {"type": "path", "default": "/usr/bin/vtysh"},
        },
        supports_check_mode=True,
    )
    p = module.params
    if p["addresses"] and p["zones"]:
        _dns.require_dnspython(module)
    p["zones"] = [z.rstrip(".") for z in p["zones"]]
    expect = {}
    for zone, serial in (p["expect_serials"] or {}).items():
        try:
            expect[zone.rstrip(".")] = int(serial)
        except (TypeError, ValueError):
            module.fail_json(msg="expect_serials: serial of %s must be an integer, got %r" % (zone, serial))
    reader = Reader(module)
    started = time.monotonic()
    while True:
        sessions, health, serials = reader.sessions(), reader.health(), reader.serials()
        ready, announce, withdraw, announced = judge(sessions, health, serials, p["aggregates"], expect)
        wanted = {"none": announce, "ready": ready, "announced": announce, "withdrawn": withdraw}[p["wait_for"]]
        elapsed = round(time.monotonic() - started, 3)
        result = {"changed": False, "sessions": sessions, "health": health,
                  "drained": bool(health and health.get("drain")), "serials": serials, "announced": announced,
                  "ready": not ready, "announcing": not announce, "problems": wanted, "elapsed": elapsed}
        if p["wait_for"] == "none" or not wanted:
            module.exit_json(rollout=reader.rollout(), **result)  # the record read once, as the module ends
        if elapsed >= p["timeout"]:
            module.fail_json(msg="not %s after %.0f s: %s" % (p["wait_for"], elapsed, "; ".join(wanted)),
                             rollout=reader.rollout(), **result)
        time.sleep(p["interval"])


if __name__ == "__main__":
    main()
