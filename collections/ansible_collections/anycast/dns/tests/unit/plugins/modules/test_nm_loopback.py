"""anycast.dns.nm_loopback against a simulated NetworkManager and lo: what a user sees."""

from __future__ import annotations

import json

import pytest

from ansible_collections.anycast.dns.plugins.modules import nm_loopback

LOOPBACK = ["127.0.0.1/8", "::1/128"]


class FakeHost:
    """NetworkManager profiles and the addresses on lo, driven through nmcli and ip argv."""

    def __init__(self, profiles=None, lo=None, active="lo", running=True):
        self.profiles = profiles or {}  # name -> {field: value}
        self.lo = list(LOOPBACK) + list(lo or [])
        self.active = active
        self.running = running
        self.calls: list[list[str]] = []

    def mutations(self):
        readonly = ("show", "status")
        return [c for c in self.calls if not any(r in c for r in readonly) and "-j" not in c]

    def __call__(self, argv):
        self.calls.append(argv)
        tool = argv[0].rsplit("/", 1)[-1]
        if tool == "ip":
            return self.ip(argv[1:])
        return self.nmcli([a for a in argv[1:] if a not in ("--terse", "--escape", "no")])

    def ip(self, args):
        if args[:2] == ["-j", "addr"]:
            info = [{"local": a.split("/", maxsplit=1)[0], "prefixlen": int(a.split("/")[1])} for a in self.lo]
            return 0, json.dumps([{"ifname": "lo", "addr_info": info}]), ""
        verb, cidr = args[2], args[3]
        if verb == "add":
            self.lo.append(cidr)
        else:
            self.lo.remove(cidr)
        return 0, "", ""

    def nmcli(self, args):
        if args[:3] == ["--fields", "RUNNING,VERSION", "general"]:
            return (0, "running:1.42.4\n", "") if self.running else (8, "", "Error: NetworkManager is not running.")
        if args[0] == "--fields" and args[2:4] == ["connection", "show"] and len(args) == 4:
            lines = [f"{n}:loopback:/etc/NetworkManager/system-connections/{n}.nmconnection" for n in self.profiles]
            return 0, "\n".join(lines), ""
        if args[0] == "--fields" and args[2:4] == ["connection", "show"]:
            prof = self.profiles.get(args[4])
            if prof is None:
                return 10, "", "Error: no such connection profile."
            return 0, "\n".join(f"{k}:{v}" for k, v in prof.items()), ""
        if args[0] == "--fields" and args[2:4] == ["device", "show"]:
            return 0, f"GENERAL.CONNECTION:{self.active}\n", ""
        if args[:2] == ["connection", "add"]:
            name = args[args.index("con-name") + 1]
            self.profiles[name] = self._props(args, {"connection.type": "loopback", "connection.interface-name": "lo"})
            return 0, "", ""
        if args[:2] == ["connection", "modify"]:
            self.profiles[args[2]] = self._props(args, self.profiles[args[2]])
            return 0, "", ""
        if args[:2] == ["connection", "up"]:
            self.active = args[2]
            self._sync()
            return 0, "", ""
        if args[:2] == ["device", "reapply"]:
            self._sync()
            return 0, "", ""
        if args[:2] == ["connection", "delete"]:
            prof = self.profiles.pop(args[2])
            self.lo = [a for a in self.lo if a not in self._addrs(prof)]
            self.active = "lo"
            return 0, "", ""
        raise AssertionError(f"unexpected nmcli call {args}")

    @staticmethod
    def _props(args, base):
        prof = dict(base)
        for key in ("connection.autoconnect", "ipv4.method", "ipv4.addresses", "ipv6.method", "ipv6.addresses"):
            if key in args:
                prof[key] = args[args.index(key) + 1].replace(",", ", ")
        return prof

    @staticmethod
    def _addrs(prof):
        values = [a.strip() for k in ("ipv4.addresses", "ipv6.addresses") for a in prof.get(k, "").split(",")]
        return [a for a in values if a]

    def _sync(self):
        """NetworkManager: lo carries exactly the loopback addresses and the active profile's."""
        self.lo = list(LOOPBACK) + self._addrs(self.profiles[self.active])


def profile(v4="203.0.113.53/32", v6="2001:db8:53::1/128"):
    return {"connection.type": "loopback", "connection.interface-name": "lo", "connection.autoconnect": "yes",
            "ipv4.method": "manual" if v4 else "auto", "ipv4.addresses": v4,
            "ipv6.method": "manual" if v6 else "auto", "ipv6.addresses": v6}


ADDRS = ["203.0.113.53", "2001:db8:53::1"]


def test_creates_the_profile_and_activates_it(run_module):
    host = FakeHost()
    result, failed = run_module(nm_loopback.main, {"addresses": ADDRS}, host)
    assert not failed and result["changed"]
    assert result["added"] == ["203.0.113.53/32", "2001:db8:53::1/128"]
    assert host.profiles["anycast-lo"] == profile()
    assert host.active == "anycast-lo"
    assert sorted(host.lo) == sorted(LOOPBACK + ["203.0.113.53/32", "2001:db8:53::1/128"])


def test_second_run_changes_nothing_and_touches_nothing(run_module):
    host = FakeHost({"anycast-lo": profile()}, ["203.0.113.53/32", "2001:db8:53::1/128"], active="anycast-lo")
    result, failed = run_module(nm_loopback.main, {"addresses": ADDRS}, host)
    assert not failed and not result["changed"]
    assert host.mutations() == []


def test_an_address_removed_by_hand_is_put_back(run_module):
    host = FakeHost({"anycast-lo": profile()}, ["2001:db8:53::1/128"], active="anycast-lo")
    result, _failed = run_module(nm_loopback.main, {"addresses": ADDRS}, host)
    assert result["changed"] and result["added"] == ["203.0.113.53/32"]
    assert "203.0.113.53/32" in host.lo
    assert not any(c[1:3] == ["connection", "modify"] for c in host.calls)  # the profile was right


def test_addresses_that_left_the_inventory_go_and_foreign_ones_stay(run_module):
    host = FakeHost({"anycast-lo": profile(v4="203.0.113.53/32, 203.0.113.54/32")},
                    ["203.0.113.53/32", "203.0.113.54/32", "2001:db8:53::1/128", "192.0.2.1/32"], active="anycast-lo")
    result, failed = run_module(nm_loopback.main, {"addresses": ADDRS}, host)
    assert not failed and result["changed"]
    assert result["removed"] == ["203.0.113.54/32"]
    assert result["preserved"] == ["192.0.2.1/32"]  # NetworkManager dropped it; the module put it back
    assert "203.0.113.54/32" not in host.lo and "192.0.2.1/32" in host.lo
    assert host.profiles["anycast-lo"]["ipv4.addresses"] == "203.0.113.53/32"


def test_check_mode_reports_without_touching_and_diff_shows_both_sides(run_module):
    host = FakeHost({"anycast-lo": profile(v6="")}, ["203.0.113.53/32"], active="anycast-lo")
    result, failed = run_module(nm_loopback.main, {"addresses": ADDRS}, host, check_mode=True, diff=True)
    assert not failed and result["changed"] and result["added"] == ["2001:db8:53::1/128"]
    assert host.mutations() == []
    assert "2001:db8:53::1/128" not in result["diff"]["before"]
    assert "ipv6.addresses: 2001:db8:53::1/128" in result["diff"]["after"]
    assert "  2001:db8:53::1/128" in result["diff"]["after"]


def test_an_ipv4_only_service_leaves_ipv6_to_networkmanager(run_module):
    host = FakeHost()
    result, _failed = run_module(nm_loopback.main, {"addresses": ["203.0.113.53/32"]}, host)
    assert host.profiles["anycast-lo"]["ipv6.method"] == "auto"
    assert result["addresses"] == ["203.0.113.53/32"]


def test_absent_deletes_the_profile_and_its_addresses_only(run_module):
    host = FakeHost({"anycast-lo": profile()}, ["203.0.113.53/32", "2001:db8:53::1/128", "192.0.2.1/32"],
                    active="anycast-lo")
    result, failed = run_module(nm_loopback.main, {"state": "absent"}, host)
    assert not failed and result["changed"]
    assert "anycast-lo" not in host.profiles
    assert sorted(host.lo) == sorted(LOOPBACK + ["192.0.2.1/32"])


@pytest.mark.parametrize("addresses,message", [
    (["203.0.113.300"], "does not appear to be an IPv4 or IPv6"),
    (["127.0.0.2"], "loopback or link-local"),
    (["fe80::1"], "loopback or link-local"),
    ([], "at least one address"),
])
def test_bad_addresses_are_refused_before_anything_runs(run_module, addresses, message):
    host = FakeHost()
    result, failed = run_module(nm_loopback.main, {"addresses": addresses}, host)
    assert failed and message in result["msg"]
    assert host.calls == []


def test_networkmanager_not_running_says_so(run_module):
    result, failed = run_module(nm_loopback.main, {"addresses": ADDRS}, FakeHost(running=False))
    assert failed and "NetworkManager is not running" in result["msg"]


def test_a_competing_stored_loopback_profile_is_named(run_module):
    host = FakeHost({"my-lo": profile()})
    result, failed = run_module(nm_loopback.main, {"addresses": ADDRS}, host)
    assert failed and "my-lo" in result["msg"]
    assert host.mutations() == []
