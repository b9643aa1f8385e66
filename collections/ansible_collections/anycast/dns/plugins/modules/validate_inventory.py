#!/usr/bin/python
# Copyright: contributors to the anycast.dns collection
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Documentation for the anycast.dns.validate_inventory action plugin."""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: validate_inventory
short_description: Check an anycast DNS fleet inventory offline, before any host is touched
version_added: 0.1.0
description:
  - Reads the variables of every server in O(servers_group) on the controller and checks them
    against the fleet rules (addresses and prefixes with netaddr, aggregates, ASNs, BGP neighbours,
    BFD profiles, health timings, communities, zones, PoP membership, uniqueness across the fleet).
  - Reports B(every) problem, one line each, naming the host, the key and the bad value; then fails.
  - Runs entirely on the controller (action plugin); it never connects to a managed host.
options:
  servers_group:
    description: Inventory group that holds every anycast PoP server.
    type: str
    default: anycast_servers
  infra_groups:
    description:
      - Inventory groups of the other hosts the roles manage (the hidden primary, the monitoring node).
        Their management networks and connection addresses are checked too.
    type: list
    elements: str
    default: [dns_primary, monitoring]
attributes:
  check_mode:
    support: full
    description: Nothing is ever changed; check mode runs the same checks.
  diff_mode:
    support: none
    description: There is nothing to diff.
  platform:
    support: full
    platforms: all
    description: Runs on the controller only.
notes:
  - Rules, with the variable each concerns, are listed in the collection's docs/inventory-model.md.
  - Passwords are never printed; a missing one is shown as V(<empty>).
  - Where the controller's route to a host is on-link (C(ip route get) names no gateway), its source
    address must be inside C(anycast_management_networks); behind a router or NAT it cannot be known
    and the host firewall's commit-confirm guard is the safety net.
author:
  - anycast.dns contributors (@anycast-dns)
"""

EXAMPLES = r"""
- name: Validate the fleet inventory
  anycast.dns.validate_inventory:

- name: Validate a differently named group of servers
  anycast.dns.validate_inventory:
    servers_group: dns_edge
"""

RETURN = r"""
servers:
  description: Number of servers checked.
  returned: always
  type: int
  sample: 8
pops:
  description: PoP codes the servers belong to.
  returned: always
  type: list
  elements: str
  sample: [fra, gru, hkg, tyo]
problems:
  description:
    - "Every problem found, one line each as C(HOSTS: KEY = VALUE: MESSAGE); empty when the inventory is valid."
    - A problem shared by several hosts (a bad group variable) is one line naming all of them.
  returned: always
  type: list
  elements: str
  sample:
    - "tyo1: anycast_service_addresses[0] = 198.51.100.53: is outside every announced aggregate (anycast_aggregates)"
"""

from ansible.module_utils.basic import AnsibleModule


def main():
    module = AnsibleModule(
        argument_spec={
            "servers_group": {"type": "str", "default": "anycast_servers"},
            "infra_groups": {"type": "list", "elements": "str", "default": ["dns_primary", "monitoring"]},
        },
        supports_check_mode=True,
    )
    module.fail_json(msg="anycast.dns.validate_inventory runs on the controller as an action plugin; "
                         "it cannot run as a module on a managed host")


if __name__ == "__main__":
    main()
