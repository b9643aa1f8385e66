# Copyright: contributors to the anycast.dns collection
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Filters for the host firewall (role host_firewall). Documentation: upstream_interfaces.yml and
xfr_addresses.yml next to this file."""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping

from ansible.errors import AnsibleFilterError


def _interface_networks(interfaces):
    out = []
    for item in interfaces or []:
        if not isinstance(item, dict) or not item.get("name"):
            raise AnsibleFilterError(f"upstream_interfaces: an interface needs a name, got {item!r}")
        for fam in ("ipv4", "ipv6"):
            if item.get(fam):
                try:
                    iface = ipaddress.ip_interface(str(item[fam]))
                    out.append((item["name"], iface.network, str(iface.ip)))
                except ValueError as exc:
                    raise AnsibleFilterError(f"upstream_interfaces: interface {item['name']}: {fam} = "
                                             f"{item[fam]}: {exc}") from exc
    return out


def upstream_interfaces(upstreams, interfaces):
    """One entry per BGP neighbour address: {name, family, address, interface, local}.

    interface: the one whose subnet holds the neighbour; None for a neighbour beyond the link (multihop
    or ttl_security_hops above 1), which may arrive on any. local: this server's address in that subnet
    (None when none holds it). A directly connected neighbour on no interface is an error naming it."""
    networks = _interface_networks(interfaces)
    out = []
    for up in upstreams or []:
        if not isinstance(up, dict):
            raise AnsibleFilterError(f"upstream_interfaces: an upstream must be a mapping, got {up!r}")
        multihop = int(up.get("multihop") or 0) > 1 or int(up.get("ttl_security_hops") or 0) > 1
        for fam, version in (("ipv4", 4), ("ipv6", 6)):
            if up.get(fam) is None:
                continue
            try:
                addr = ipaddress.ip_address(str(up[fam]))
            except ValueError as exc:
                raise AnsibleFilterError(f"upstream_interfaces: upstream {up.get('name')}: {fam} = {up[fam]}: "
                                         f"{exc}") from exc
            iface, local = next(((name, ip) for name, net, ip in networks if net.version == version and addr in net),
                                (None, None))
            if iface is None and not multihop:
                raise AnsibleFilterError(f"upstream_interfaces: upstream {up.get('name')}: {fam} = {addr} is on none "
                                         "of the interfaces (anycast_interfaces) while multihop is off")
            out.append({"name": up.get("name"), "family": version, "address": str(addr),
                        "interface": None if multihop else iface, "local": local})
    return out


def xfr_addresses(hosts):
    """The zone-transfer addresses of these hosts (their hostvars): anycast_xfr_ipv4/6, else
    anycast_unicast_ipv4/6, as knot_dns sends NOTIFY to them and expects transfers from them."""
    out = []
    for hv in hosts or []:
        if not isinstance(hv, Mapping):
            raise AnsibleFilterError(f"xfr_addresses: expected a host's variables, got {type(hv).__name__}")
        for fam in ("ipv4", "ipv6"):
            value = hv.get(f"anycast_xfr_{fam}") or hv.get(f"anycast_unicast_{fam}")
            if not value:
                continue
            try:
                out.append(str(ipaddress.ip_address(str(value))))
            except ValueError as exc:
                name = hv.get("inventory_hostname", "?")
                raise AnsibleFilterError(f"xfr_addresses: host {name}: transfer address {value}: {exc}") from exc
    return out


class FilterModule:
    def filters(self):
        return {"upstream_interfaces": upstream_interfaces, "xfr_addresses": xfr_addresses}
