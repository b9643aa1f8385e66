#!/usr/bin/python
# Copyright: contributors to the anycast.dns collection
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Query the anycast addresses from a vantage point and see which server answers (NSID)."""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: anycast_probe
short_description: Ask the anycast addresses for a zone's SOA and tell which server answered
version_added: 0.4.0
description:
  - Runs on a vantage point that reaches the anycast service addresses through the Internet (a
    monitoring host, a looking glass), not on a PoP server, which would answer itself.
  - Asks each of O(addresses) for the SOA of O(zone) with NSID (RFC 5001), so the answer names the
    server. Only an authoritative NOERROR answer with the SOA counts.
  - With O(expect_nsid), asks again every O(interval) seconds until O(count) answers in a row per
    address come from one of those servers, and fails after O(timeout) seconds saying who answered.
options:
  addresses:
    description: Anycast service addresses to ask.
    type: list
    elements: str
    required: true
  zone:
    description: Zone whose SOA is asked.
    type: str
    required: true
  port:
    description: DNS port.
    type: int
    default: 53
  expect_nsid:
    description: Server names (NSID) one of which must answer.
    type: list
    elements: str
    default: []
  count:
    description: Answers in a row from O(expect_nsid) needed per address.
    type: int
    default: 3
  timeout:
    description: Seconds to wait for O(expect_nsid).
    type: float
    default: 30
  interval:
    description: Seconds between two queries to one address.
    type: float
    default: 0.2
requirements:
  - dnspython on the vantage point.
extends_documentation_fragment:
  - anycast.dns.attributes
  - anycast.dns.attributes.read_only
author:
  - anycast.dns contributors (@anycast-dns)
"""

EXAMPLES = r"""
- name: Check that London reaches Frankfurt again through the anycast address
  anycast.dns.anycast_probe:
    addresses: [203.0.113.53, "2001:db8:53::1"]
    zone: example.com
    expect_nsid: [fra1]
  delegate_to: monitor-lon
"""

RETURN = r"""
answered_by:
  description: Per address, the NSID of the last answer (or why it was no good, and from whom).
  returned: always
  type: dict
  sample: {"203.0.113.53": "fra1", "2001:db8:53::1": "fra1"}
serials:
  description: Per address, the serial of the last answer (null when there was none).
  returned: always
  type: dict
queries:
  description: Queries sent.
  returned: always
  type: int
elapsed:
  description: Seconds until every address was answered as expected.
  returned: always
  type: float
"""

import time

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.anycast.dns.plugins.module_utils import _dns


def main():
    module = AnsibleModule(
        argument_spec={
            "addresses": {"type": "list", "elements": "str", "required": True},
            "zone": {"type": "str", "required": True},
            "port": {"type": "int", "default": 53},
            "expect_nsid": {"type": "list", "elements": "str", "default": []},
            "count": {"type": "int", "default": 3},
            "timeout": {"type": "float", "default": 30},
            "interval": {"type": "float", "default": 0.2},
        },
        supports_check_mode=True,
    )
    _dns.require_dnspython(module)
    p = module.params
    if not p["addresses"]:
        module.fail_json(msg="addresses must not be empty")
    expect = set(p["expect_nsid"])
    started = time.monotonic()
    streak = dict.fromkeys(p["addresses"], 0)
    answered, serials, queries = {}, {}, 0
    while True:
        for address in p["addresses"]:
            if expect and streak[address] >= p["count"]:
                continue
            answer = _dns.soa_serial(address, p["zone"], port=p["port"], timeout=1.0, nsid=True)
            queries += 1
            if answer.problem is None:
                answered[address] = answer.nsid or "a server without NSID"
            else:
                answered[address] = answer.problem + (" (from %s)" % answer.nsid if answer.nsid else "")
            serials[address] = answer.serial
            good = answer.serial is not None and answer.nsid in expect
            streak[address] = streak[address] + 1 if good else 0
        elapsed = round(time.monotonic() - started, 3)
        result = {"changed": False, "answered_by": answered, "serials": serials, "queries": queries,
                  "elapsed": elapsed}
        if not expect:
            bad = {a: w for a, w in answered.items() if serials[a] is None}
            if bad:
                module.fail_json(msg="not answered: %s" % "; ".join("%s: %s" % kv for kv in sorted(bad.items())),
                                 **result)
            module.exit_json(**result)
        if all(n >= p["count"] for n in streak.values()):
            module.exit_json(**result)
        if elapsed >= p["timeout"]:
            module.fail_json(msg="after %.0f s, not answered by %s: %s" % (
                elapsed, " or ".join(sorted(expect)),
                "; ".join("%s answered by %s" % kv for kv in sorted(answered.items()))), **result)
        time.sleep(p["interval"])


if __name__ == "__main__":
    main()
