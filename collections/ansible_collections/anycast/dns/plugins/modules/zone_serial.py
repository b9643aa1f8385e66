#!/usr/bin/python
# Copyright: contributors to the anycast.dns collection
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Read the SOA serials DNS servers serve, and wait until they reach the serials expected."""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: zone_serial
short_description: Read the SOA serial of zones from DNS servers, or wait until they serve a given serial
version_added: 0.3.0
description:
  - Asks every server in O(servers) for the SOA of every zone in O(zones), from the managed node,
    without recursion. Only an authoritative NOERROR answer that carries the SOA counts as served.
  - Without O(expect), returns what each server serves now and fails if any server does not
    serve a zone.
  - With O(expect), asks again every O(interval) seconds until every server serves, for every zone,
    the expected serial or a newer one (RFC 1982 serial arithmetic). Fails after O(timeout) seconds,
    naming each server and zone that still lags and what it served.
options:
  servers:
    description: Addresses of the DNS servers to ask (IPv4 or IPv6).
    type: list
    elements: str
    required: true
  zones:
    description: Zone names.
    type: list
    elements: str
    required: true
  expect:
    description: Zone name to the serial each server must serve at least.
    type: dict
  port:
    description: DNS port of the servers.
    type: int
    default: 53
  tcp:
    description: Ask over TCP instead of UDP.
    type: bool
    default: false
  timeout:
    description: How long to wait, in seconds, for every server to reach O(expect).
    type: float
    default: 60
  interval:
    description: Seconds between two rounds of queries while waiting.
    type: float
    default: 0.2
  query_timeout:
    description: Seconds to wait for one answer.
    type: float
    default: 1.0
requirements:
  - dnspython on the managed node (Debian C(python3-dnspython), RHEL C(python3-dns)).
extends_documentation_fragment:
  - anycast.dns.attributes
  - anycast.dns.attributes.read_only
author:
  - anycast.dns contributors (@anycast-dns)
"""

EXAMPLES = r"""
- name: Read the serials the hidden primary serves
  anycast.dns.zone_serial:
    servers: [198.18.0.50]
    zones: [example.com, example.net]
  register: primary_serials

- name: Wait until this PoP serves them on its anycast addresses
  anycast.dns.zone_serial:
    servers: [203.0.113.53, "2001:db8:53::1"]
    zones: [example.com, example.net]
    expect: "{{ primary_serials.serials }}"
    timeout: 120
"""

RETURN = r"""
serials:
  description:
    - Zone name to the lowest serial any of O(servers) served at the end (null when a server did not
      serve the zone). Feed it to O(expect) of another call.
  returned: always
  type: dict
  sample: {"example.com": 1763712000}
servers:
  description: Per server, per zone, the serial served or the reason there was none.
  returned: always
  type: dict
  sample: {"203.0.113.53": {"example.com": 1763712000, "example.net": "answered SERVFAIL"}}
elapsed:
  description: Seconds from the first query until every server served what was expected.
  returned: always
  type: float
rounds:
  description: Rounds of queries made.
  returned: always
  type: int
"""

import time

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.anycast.dns.plugins.module_utils import _dns


def lowest(seen, zones):
    out = {}
    for zone in zones:
        values = [z[zone] for z in seen.values()]
        if any(isinstance(v, str) for v in values):
            out[zone] = None
            continue
        low = values[0]
        for value in values[1:]:
            if not _dns.serial_newer_or_equal(value, low):
                low = value
        out[zone] = low
    return out


def main():
    module = AnsibleModule(
        argument_spec={
            "servers": {"type": "list", "elements": "str", "required": True},
            "zones": {"type": "list", "elements": "str", "required": True},
            "expect": {"type": "dict"},
            "port": {"type": "int", "default": 53},
            "tcp": {"type": "bool", "default": False},
            "timeout": {"type": "float", "default": 60},
            "interval": {"type": "float", "default": 0.2},
            "query_timeout": {"type": "float", "default": 1.0},
        },
        supports_check_mode=True,
    )
    _dns.require_dnspython(module)
    params = module.params
    servers, zones = params["servers"], [z.rstrip(".") for z in params["zones"]]
    if not servers or not zones:
        module.fail_json(msg="servers and zones must not be empty")
    expect = {}
    for zone, serial in (params["expect"] or {}).items():
        name = zone.rstrip(".")
        if name not in zones:
            module.fail_json(msg="expect names zone %s, which is not in zones" % zone)
        try:
            expect[name] = int(serial)
        except (TypeError, ValueError):
            module.fail_json(msg="expect: serial of %s must be an integer, got %r" % (zone, serial))
        if not 0 <= expect[name] < (1 << 32):
            module.fail_json(msg="expect: serial of %s is out of range: %d" % (zone, expect[name]))

    started = time.monotonic()
    deadline = started + max(params["timeout"], 0)
    rounds = 0
    while True:
        seen = _dns.serials(servers, zones, port=params["port"], timeout=params["query_timeout"], tcp=params["tcp"])
        rounds += 1
        lines = _dns.lagging(seen, expect)
        elapsed = round(time.monotonic() - started, 3)
        if not lines:
            break
        if not expect or time.monotonic() >= deadline:
            what = "after %.1f s, " % elapsed if expect else ""
            module.fail_json(msg=what + "not served as expected: " + "; ".join(lines),
                             servers=seen, serials=lowest(seen, zones), elapsed=elapsed, rounds=rounds)
        time.sleep(params["interval"])
    module.exit_json(changed=False, serials=lowest(seen, zones), servers=seen, elapsed=elapsed, rounds=rounds)


if __name__ == "__main__":
    main()
