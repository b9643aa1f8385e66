#!/usr/bin/python
# Copyright: contributors to the anycast.dns collection
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Anycast service addresses on lo through a persistent NetworkManager loopback profile."""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: nm_loopback
short_description: Put anycast service addresses on lo through a persistent NetworkManager profile
version_added: 0.2.0
description:
  - Keeps the anycast service addresses on the loopback interface C(lo) through a NetworkManager
    connection profile of type C(loopback) (NetworkManager 1.42 or later) that the module owns.
  - The profile is stored on disk with autoconnect, so NetworkManager puts the addresses back at
    boot. C(nmcli connection modify lo ...) does not do that on NetworkManager 1.42, because it
    edits the profile NetworkManager generates in memory for an externally configured C(lo),
    which is gone after a reboot.
  - Idempotent on both the stored profile and the live interface. An address missing from C(lo)
    (removed by hand, say) is put back even when the profile is already right.
  - Addresses that left O(addresses) are removed from the profile and from C(lo). Addresses on
    C(lo) that the profile never held (C(127.0.0.1/8), C(::1), anything another tool added) are
    left alone; NetworkManager drops them whenever it activates or reapplies a profile, so the
    module adds them back at once and lists them in RV(preserved).
options:
  name:
    description: Name of the NetworkManager profile the module owns.
    type: str
    default: anycast-lo
  addresses:
    description:
      - The addresses that must be on C(lo), IPv4 and IPv6. A bare address is a host route
        (C(/32), C(/128)); a CIDR keeps its prefix length.
      - Required with O(state=present). A family without addresses is left to NetworkManager's
        default for loopback (C(auto)).
    type: list
    elements: str
  state:
    description:
      - V(present) creates or updates the profile and makes C(lo) carry exactly its addresses.
      - V(absent) deletes the profile and removes its addresses from C(lo).
    type: str
    choices: [present, absent]
    default: present
attributes:
  check_mode:
    support: full
    description: Reports what would change, profile and live addresses, without touching either.
  diff_mode:
    support: full
    description: The profile's addresses and the addresses on C(lo), before and after.
  platform:
    support: full
    platforms: posix
    description: Linux with NetworkManager 1.42 or later running.
requirements:
  - NetworkManager 1.42 or later (connection type C(loopback)), nmcli and iproute2 on the host.
notes:
  - A host has one active profile on C(lo). Another persistent loopback profile with autoconnect
    competes with this one at boot; the module fails and names it rather than guess.
seealso:
  - module: community.general.nmcli
    description: General-purpose nmcli module; it does not check the live addresses or activate changes idempotently.
author:
  - anycast.dns contributors (@anycast-dns)
"""

EXAMPLES = r"""
- name: Put the anycast service addresses on lo
  anycast.dns.nm_loopback:
    addresses:
      - 203.0.113.53
      - 2001:db8:53::1

- name: Remove them, profile included
  anycast.dns.nm_loopback:
    state: absent
"""

RETURN = r"""
profile:
  description: Name of the NetworkManager profile.
  returned: always
  type: str
  sample: anycast-lo
addresses:
  description: Addresses of the profile after the run, as CIDRs, IPv4 first.
  returned: always
  type: list
  elements: str
  sample: [203.0.113.53/32, 2001:db8:53::1/128]
added:
  description: Addresses added to C(lo) (or that would be, in check mode).
  returned: always
  type: list
  elements: str
  sample: [2001:db8:53::1/128]
removed:
  description: Addresses removed from C(lo) because they left O(addresses) (or would be).
  returned: always
  type: list
  elements: str
  sample: [203.0.113.54/32]
preserved:
  description: Addresses on C(lo) that the profile never held, put back after NetworkManager dropped them.
  returned: always
  type: list
  elements: str
  sample: [192.0.2.1/32]
"""

import ipaddress
import json

from ansible.module_utils.basic import AnsibleModule

PROFILE_FIELDS = ("connection.type", "connection.interface-name", "connection.autoconnect",
                  "ipv4.method", "ipv4.addresses", "ipv6.method", "ipv6.addresses")
LOOPBACK_NETS = (ipaddress.ip_network("127.0.0.0/8"), ipaddress.ip_network("::1/128"))


def normalize(addresses):
    """Sorted CIDR strings (IPv4 first); a bare address becomes a host prefix. Raises ValueError."""
    out = set()
    for item in addresses:
        text = str(item).strip()
        iface = ipaddress.ip_interface(text)
        if "/" not in text:
            iface = ipaddress.ip_interface(f"{iface.ip}/{iface.max_prefixlen}")
        out.add(iface)
    return [str(i) for i in sorted(out, key=lambda i: (i.version, i.ip, i.network.prefixlen))]


def is_loopback(cidr):
    ip = ipaddress.ip_interface(cidr).ip
    return any(ip in net for net in LOOPBACK_NETS) or ip.is_link_local


def parse_terse(text):
    """nmcli --terse --escape no output of 'field:value' lines into a dict."""
    fields = {}
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        if sep:
            fields[key.strip()] = value.strip()
    return fields


def split_addresses(value):
    return [a.strip() for a in value.split(",") if a.strip() and a.strip() != "--"]


def wanted_profile(addresses):
    v4 = [a for a in addresses if ipaddress.ip_interface(a).version == 4]
    v6 = [a for a in addresses if ipaddress.ip_interface(a).version == 6]
    return {
        "connection.type": "loopback",
        "connection.interface-name": "lo",
        "connection.autoconnect": "yes",
        "ipv4.method": "manual" if v4 else "auto",
        "ipv4.addresses": ", ".join(v4),
        "ipv6.method": "manual" if v6 else "auto",
        "ipv6.addresses": ", ".join(v6),
    }


def profile_addresses(profile):
    if profile is None:
        return []
    return normalize(split_addresses(profile.get("ipv4.addresses", "")) +
                     split_addresses(profile.get("ipv6.addresses", "")))


def comparable(profile):
    """A profile's settings in the form wanted_profile() uses, for comparison."""
    if profile is None:
        return None
    out = {key: profile.get(key, "") for key in PROFILE_FIELDS}
    for fam in ("ipv4", "ipv6"):
        out[f"{fam}.addresses"] = ", ".join(normalize(split_addresses(out[f"{fam}.addresses"])))
    return out


def render_state(name, profile, live):
    lines = [f"profile {name}:"]
    if profile is None:
        lines.append("  (absent)")
    else:
        lines += [f"  {key}: {profile[key]}" for key in PROFILE_FIELDS]
    lines.append("lo:")
    lines += [f"  {addr}" for addr in live] or ["  (none)"]
    return "\n".join(lines) + "\n"


class Loopback:
    def __init__(self, module):
        self.module = module
        self.name = module.params["name"]

    def run(self, args, check_rc=True):
        rc, out, err = self.module.run_command(args, environ_update={"LANGUAGE": "C", "LC_ALL": "C"})
        if check_rc and rc != 0:
            self.module.fail_json(msg=f"{' '.join(args)} failed: {(err or out).strip()}", rc=rc, stdout=out,
                                  stderr=err, cmd=args)
        return rc, out, err

    def nmcli(self, *args, check_rc=True):
        return self.run([self.module.get_bin_path("nmcli", required=True), "--terse", "--escape", "no", *args],
                        check_rc=check_rc)

    def ensure_running(self):
        rc, out, err = self.nmcli("--fields", "RUNNING,VERSION", "general", "status", check_rc=False)
        if rc != 0 or not out.startswith("running"):
            self.module.fail_json(msg="NetworkManager is not running: the anycast addresses are managed through it",
                                  rc=rc, stdout=out, stderr=err)

    def profile(self):
        rc, out, _err = self.nmcli("--fields", ",".join(PROFILE_FIELDS), "connection", "show", self.name,
                                   check_rc=False)
        return parse_terse(out) if rc == 0 else None

    def competing_profiles(self):
        """Other stored loopback profiles with autoconnect: they would fight ours at boot."""
        _rc, out, _err = self.nmcli("--fields", "NAME,TYPE,FILENAME", "connection", "show")
        names = []
        for line in out.splitlines():
            parts = line.split(":")
            if len(parts) >= 3 and parts[1] == "loopback" and parts[0] != self.name and parts[2].startswith("/etc/"):
                auto = parse_terse(self.nmcli("--fields", "connection.autoconnect", "connection", "show", parts[0])[1])
                if auto.get("connection.autoconnect") == "yes":
                    names.append(parts[0])
        return names

    def active_on_lo(self):
        _rc, out, _err = self.nmcli("--fields", "GENERAL.CONNECTION", "device", "show", "lo", check_rc=False)
        return parse_terse(out).get("GENERAL.CONNECTION", "")

    def live(self):
        _rc, out, _err = self.run([self.module.get_bin_path("ip", required=True), "-j", "addr", "show", "dev", "lo"])
        try:
            links = json.loads(out or "[]")
        except ValueError:
            self.module.fail_json(msg="cannot parse the output of ip -j addr show dev lo", stdout=out)
        cidrs = [f"{a['local']}/{a['prefixlen']}" for link in links for a in link.get("addr_info", [])]
        return normalize(cidrs)

    def ip_addr(self, verb, cidr, check_rc=True):
        family = "-6" if ipaddress.ip_interface(cidr).version == 6 else "-4"
        return self.run([self.module.get_bin_path("ip", required=True), family, "addr", verb, cidr, "dev", "lo"],
                        check_rc=check_rc)

    def write_profile(self, exists, settings):
        props = []
        for key in PROFILE_FIELDS[2:]:
            props += [key, settings[key].replace(" ", "")]
        if exists:
            self.nmcli("connection", "modify", self.name, *props)
        else:
            self.nmcli("connection", "add", "type", "loopback", "ifname", "lo", "con-name", self.name, *props)


def main():
    module = AnsibleModule(
        argument_spec={
            "name": {"type": "str", "default": "anycast-lo"},
            "addresses": {"type": "list", "elements": "str"},
            "state": {"type": "str", "choices": ["present", "absent"], "default": "present"},
        },
        required_if=[("state", "present", ["addresses"])],
        supports_check_mode=True,
    )
    present = module.params["state"] == "present"
    try:
        wanted = normalize(module.params["addresses"] or []) if present else []
    except ValueError as exc:
        module.fail_json(msg=f"addresses: {exc}")
    bad = [a for a in wanted if is_loopback(a)]
    if bad:
        module.fail_json(msg=f"addresses: {', '.join(bad)} is a loopback or link-local address, not a service address")
    if present and not wanted:
        module.fail_json(msg="addresses: at least one address is needed with state=present (use state=absent)")

    lo = Loopback(module)
    lo.ensure_running()
    current = lo.profile()
    before_addrs = profile_addresses(current)
    live_before = lo.live()
    owned_before = set(before_addrs)
    foreign = [a for a in live_before if a not in owned_before and a not in wanted and not is_loopback(a)]

    if present:
        competing = lo.competing_profiles()
        if competing:
            module.fail_json(msg=f"other stored loopback profile(s) with autoconnect: {', '.join(competing)}; "
                                 f"only one profile can hold lo at boot: delete them or set name to theirs")
        settings = wanted_profile(wanted)
        profile_changed = comparable(current) != settings
        active = lo.active_on_lo() == lo.name
        to_add = [a for a in wanted if a not in live_before]
        to_remove = [a for a in before_addrs if a not in wanted and a in live_before]
        changed = profile_changed or not active or bool(to_add or to_remove)
        after_profile = settings
    else:
        to_add = []
        to_remove = [a for a in before_addrs if a in live_before]
        changed = current is not None or bool(to_remove)
        after_profile = None

    live_after = normalize(set(live_before) - set(to_remove) | set(to_add))
    result = {"changed": changed, "profile": lo.name, "addresses": wanted, "added": to_add, "removed": to_remove,
              "preserved": []}
    if module._diff:
        result["diff"] = {"before": render_state(lo.name, comparable(current), live_before),
                          "after": render_state(lo.name, after_profile, live_after)}
    if not changed or module.check_mode:
        module.exit_json(**result)

    if present:
        if profile_changed:
            lo.write_profile(current is not None, settings)
        if active:
            lo.nmcli("device", "reapply", "lo")
        else:
            lo.nmcli("connection", "up", lo.name)
    else:
        lo.nmcli("connection", "delete", lo.name)
        lingering_after_delete = set(lo.live())
        for cidr in before_addrs:
            if cidr in lingering_after_delete:
                lo.ip_addr("del", cidr)
    # NetworkManager sets lo to exactly its profile: put back what it dropped and was not ours.
    live_now = lo.live()
    for cidr in foreign:
        if cidr not in live_now:
            lo.ip_addr("add", cidr)
            result["preserved"].append(cidr)
    live_now = lo.live()
    missing = [a for a in wanted if a not in live_now]
    lingering = [a for a in to_remove if a in live_now]
    if missing or lingering:
        module.fail_json(msg=f"lo does not match the profile after activation: missing {missing or 'none'}, "
                             f"still present {lingering or 'none'}", **result)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
