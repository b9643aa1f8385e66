"""Issue 4 on the lab: site.yml converges the PoP servers (sysctl, loopback, FRR eBGP + BFD), and
the routing does what an operator expects: nearest PoP per region, only the aggregates leave a
node, MD5 and BFD protect the sessions, the addresses survive a reboot, bad configs are refused.

The aggregates are announced by the anycast_health role (keepalived), as in production."""

from __future__ import annotations

import json
import time

import pytest

from tests.conftest import run_playbook
from tests.lab.conftest import PLAIN_HOSTS, lab_cli
from tests.lab.fleet import (
    AGGREGATES,
    INVENTORY,
    NEAREST_POP,
    OUR_ASN,
    POP_OF,
    SERVERS,
    SERVICE,
    all_up,
    established_and_bfd_up,
    graceful_shutdown_seen,
    probe_regions,
    recap,
    received,
    sessions,
    sh,
    upstreams,
    vtysh,
    vtysh_json,
    wait_for,
)

pytestmark = pytest.mark.lab

def test_site_converges_then_changes_nothing_in_check_mode_with_the_plain_strategy(converged):
    """The session's runs (tests/lab/conftest.py): site.yml on the fresh lab, then in check mode
    with the plain linear strategy on a server of each release, the primary and the monitoring
    node. (A real second run over the whole fleet is molecule's converge, asserted in
    test_molecule.py.)"""
    run = converged["check"]
    assert run["rc"] == 0, run["output"]
    assert set(PLAIN_HOSTS) <= set(run["recap"]), run["output"]
    changed = {host: r["changed"] for host, r in run["recap"].items() if r["changed"]}
    assert changed == {}, f"the check run would change something: {changed}\n{run['output']}"


def test_every_session_established_with_bfd_up(converged):
    assert all_up() == {}
    # ...and seen so from the other end, over MD5 (the routers were configured with the passwords).
    for server, _name, router, _fam, ours in sessions():
        assert vtysh_json(router, f"show bgp neighbors {ours} json")[ours]["bgpState"] == "Established", \
            (server, router, ours)


def test_kernel_settings_and_service_addresses_in_place(converged):
    for server in SERVERS:
        out = sh(server, "sysctl -n net.ipv4.conf.all.rp_filter net.ipv4.ip_nonlocal_bind "
                         "net.ipv4.ip_local_port_range; ip -br addr show dev lo").stdout.split("\n")
        assert out[0] == "2" and out[1] == "1" and out[2].split() == ["10240", "65000"], (server, out)
        assert "203.0.113.53/32" in out[3] and "2001:db8:53::1/128" in out[3], (server, out[3])


@pytest.mark.parametrize("fam", [4, 6])
def test_each_region_is_answered_by_its_nearest_pop(converged, fam):
    # Knot answers on every PoP server with NSID = the server's name.
    answered = {}
    summaries = probe_regions(NEAREST_POP, SERVICE[fam])
    for client, pop in NEAREST_POP.items():
        summary = summaries[client]
        assert summary["lost"] == 0, (client, summary)
        answered[client] = {POP_OF[node] for node in summary["answers_per_node"]}
        assert answered[client] == {pop}, (client, summary["answers_per_node"], summary["path"])
    print(f"\n[routing] IPv{fam} catchment: {answered}")


EXTRA_ROUTES = {
    4: ["203.0.113.128/25", "203.0.113.53/32", "198.51.100.0/24", "10.99.0.0/16", "0.0.0.0/1"],
    6: ["2001:db8:53:1::/64", "2001:db8:53::1/128", "2001:db8:dead::/48", "::/1"],
}


def test_upstreams_receive_exactly_our_aggregates_whatever_the_kernel_holds(converged):
    # Extra kernel routes on one node: more specifics of the aggregate, other prefixes, half the Internet.
    cmds = [f"ip -{fam} route add blackhole {p}" for fam, ps in EXTRA_ROUTES.items() for p in ps]
    sh("hkg1", "; ".join(cmds))
    try:
        time.sleep(4)  # several BGP update rounds (advertisement-interval 0 on the routers)
        for server, name, router, fam, ours in sessions():
            routes = received(router, fam, ours)
            assert set(routes) == {AGGREGATES[fam]}, (server, name, router, sorted(routes))
            path = routes[AGGREGATES[fam]]
            assert path["path"].split()[-1] == str(OUR_ASN), (server, router, path["path"])
        # hkg1 itself advertises nothing else either.
        for up in upstreams("hkg1"):
            for fam in (4, 6):
                afi = "ipv4" if fam == 4 else "ipv6"
                adv = vtysh_json("hkg1", f"show bgp {afi} unicast neighbors {up[f'ipv{fam}']} advertised-routes json")
                assert set(adv.get("advertisedRoutes", {})) == {AGGREGATES[fam]}, (up["name"], adv)
    finally:
        sh("hkg1", "; ".join(c.replace(" add ", " del ") for c in cmds), check=False)


def test_per_neighbour_policy_reaches_the_upstream(converged):
    detail = vtysh_json("tr-fra", "show bgp ipv4 unicast neighbors 100.64.23.2 received-routes json")
    route = detail["receivedRoutes"][AGGREGATES[4]]
    assert route.get("metric") == 100  # med: 100 in host_vars/fra1.yml
    full = vtysh_json("tr-fra", f"show bgp ipv4 unicast {AGGREGATES[4]} json")
    communities = {p.get("community", {}).get("string", "") for p in full["paths"]
                   if p.get("peer", {}).get("peerId") == "100.64.23.2"}
    assert communities == {"64603:100"}, full["paths"]
    # prepend: 1 on hkg2's transit; tr-hkg therefore prefers hkg1.
    assert received("tr-hkg", 4, "100.64.21.2")[AGGREGATES[4]]["path"] == f"{OUR_ASN} {OUR_ASN}"
    assert received("tr-hkg", 4, "100.64.20.2")[AGGREGATES[4]]["path"] == f"{OUR_ASN}"
    # scope: local on the IXP sessions: the route server's members must keep it (NO_EXPORT).
    rs = vtysh_json("rs-hkix", f"show bgp ipv4 unicast {AGGREGATES[4]} json")
    for path in rs["paths"]:
        assert "noExport" in path.get("community", {}).get("list", []), path


def test_graceful_shutdown_is_switched_from_the_inventory(converged):
    def gshut_seen() -> bool:
        return graceful_shutdown_seen("tr-tyo", AGGREGATES[4], "100.64.22.2")

    assert not gshut_seen()
    proc = run_playbook("site.yml", INVENTORY, "-l", "tyo1", "--tags", "frr", "-e", "frr_bgp_graceful_shutdown=true")
    try:
        assert proc.returncode == 0, proc.stdout[-3000:]
        assert wait_for(gshut_seen, 15, 0.5), "tr-tyo never saw GRACEFUL_SHUTDOWN (65535:0) from tyo1"
    finally:
        proc = run_playbook("site.yml", INVENTORY, "-l", "tyo1", "--tags", "frr")
        assert proc.returncode == 0, proc.stdout[-3000:]
    assert wait_for(lambda: not gshut_seen(), 15, 0.5)


def test_a_wrong_md5_password_keeps_the_session_down(converged):
    # Someone types the wrong password on hkg2 (by hand, in vtysh): the transit must refuse the session.
    vtysh("hkg2", "conf t", "router bgp 65053", "neighbor 100.64.21.1 password not-the-right-one")
    vtysh("hkg2", "clear bgp 100.64.21.1")
    try:
        states = []
        for _ in range(8):  # 16 s: longer than a connect-retry and a hold time of the lab routers
            time.sleep(2)
            states.append(vtysh_json("tr-hkg", "show bgp neighbors 100.64.21.2 json")["100.64.21.2"]["bgpState"])
        assert "Established" not in states, states
        # IPv6 sessions with the right password are unaffected.
        assert established_and_bfd_up("hkg2")["2001:db8:ffff:21::1"] == ""
    finally:
        # The playbook sees the drift from its frr.conf, puts the right password back and reports a change.
        proc = run_playbook("site.yml", INVENTORY, "-l", "hkg2", "--tags", "frr")
    assert proc.returncode == 0, proc.stdout[-3000:]
    assert recap(proc.stdout)["hkg2"]["changed"] == 1, proc.stdout[-3000:]
    assert wait_for(lambda: established_and_bfd_up("hkg2")["100.64.21.1"] == "", 40, 1)


def _journal_since(node: str, since: float) -> list[tuple[float, str]]:
    out = sh(node, f"journalctl -o json --since=@{since - 1:.3f} --no-pager SYSLOG_IDENTIFIER=bgpd", check=False)
    entries = []
    for line in out.stdout.splitlines():
        with_ts = json.loads(line)
        entries.append((int(with_ts["__REALTIME_TIMESTAMP"]) / 1e6, str(with_ts.get("MESSAGE", ""))))
    return entries


def test_bfd_drops_the_session_within_a_second_when_the_link_goes_silent(converged):
    """The link stays up (no carrier loss for BGP to see); only BFD can notice. Measured by the
    transit's own log timestamps against the moment the link went silent (when nft returned,
    so the figure is an upper bound by the few milliseconds nft takes)."""
    from anycast_lab import faults, topology  # noqa: PLC0415

    topo = topology.load()
    faults.silence(topo, "hkg1", "eth1")
    started = time.time()
    try:
        def down_logged():
            return [(ts, msg) for ts, msg in _journal_since("tr-hkg", started)
                    if "100.64.20.2" in msg and "Down" in msg and ts >= started]

        down = wait_for(down_logged, 10, 0.5)
        assert down, "tr-hkg never logged the session to hkg1 going down"
        ts, msg = down[0]
        detect = ts - started
        print(f"\n[routing] silent link -> session down on tr-hkg after {detect * 1000:.0f} ms: {msg}")
        assert "BFD" in msg, msg
        assert detect < 1.0, f"session went down {detect:.3f} s after the link went silent"
        # ...and tr-hkg no longer routes the aggregate to hkg1.
        assert received("tr-hkg", 4, "100.64.20.2") == {}
    finally:
        faults.restore(topo, "hkg1", "eth1")
    assert wait_for(lambda: established_and_bfd_up("hkg1")["100.64.20.1"] == "", 60, 1)


def test_addresses_sessions_and_announcement_come_back_after_a_reboot(converged):
    before = sh("hkg2", "ip -br addr show dev lo").stdout
    took = lab_cli("reboot", "hkg2", timeout=300).stdout
    print(f"\n[routing] {took.strip()}")
    after = sh("hkg2", "ip -br addr show dev lo").stdout
    assert "203.0.113.53/32" in after and "2001:db8:53::1/128" in after, (before, after)
    assert wait_for(lambda: established_and_bfd_up("hkg2") and not any(established_and_bfd_up("hkg2").values()),
                    90, 2), established_and_bfd_up("hkg2")
    assert wait_for(lambda: set(received("tr-hkg", 4, "100.64.21.2")) == {AGGREGATES[4]}, 30, 1)
    assert sh("hkg2", "sysctl -n net.ipv4.conf.all.rp_filter").stdout.strip() == "2"


def test_the_seed_recipe_loses_the_addresses_at_reboot(converged):
    """Seed 002's `nmcli connection modify lo ...` on a machine the roles do not manage (monitor1,
    Debian 13, NetworkManager 1.52; the seeds' error list records the same on 1.42, Debian 12): the
    addresses are there at once and gone after a reboot. (The reboot also takes the lab's default
    routes of monitor1 with it; the test puts everything back.)"""
    assert "1.52" in sh("monitor1", "NetworkManager --version").stdout
    from anycast_lab import engine, topology  # noqa: PLC0415

    try:
        sh("monitor1", "nmcli connection modify lo ipv4.addresses 203.0.113.53/32 ipv4.method static "
                       "ipv6.addresses 2001:db8:53::1/128 ipv6.method static && nmcli connection up lo >/dev/null")
        assert "203.0.113.53/32" in sh("monitor1", "ip -br addr show dev lo").stdout
        lab_cli("reboot", "monitor1", timeout=300)
        after = sh("monitor1", "ip -br addr show dev lo").stdout
        assert "203.0.113.53" not in after and "2001:db8:53::1" not in after, after
    finally:
        sh("monitor1", "rm -f /etc/NetworkManager/system-connections/lo.nmconnection; nmcli connection reload; "
                       "ip addr del 203.0.113.53/32 dev lo; ip -6 addr del 2001:db8:53::1/128 dev lo; "
                       "ip -6 route del local 2001:db8:53::1 dev lo table local; ip -6 route del 2001:db8:53::1 dev lo",
           check=False)
        engine.rewire(topology.load(), "monitor1")
    assert sh("monitor1", "ip -4 route show default; ip -6 route show default").stdout.count("default") == 2


def test_loopback_role_removes_old_addresses_and_keeps_foreign_ones(converged):
    sh("hkg1", "ip addr add 192.0.2.99/32 dev lo")  # someone else's address on lo
    extra = '{"anycast_loopback_addresses": ["203.0.113.53", "203.0.113.54", "2001:db8:53::1"]}'
    try:
        check = run_playbook("site.yml", INVENTORY, "-l", "hkg1", "--tags", "loopback", "--check", "--diff",
                             "-e", extra)
        assert check.returncode == 0 and "+  203.0.113.54/32" in check.stdout, check.stdout[-3000:]
        assert "203.0.113.54" not in sh("hkg1", "ip -br addr show dev lo").stdout  # check mode changed nothing
        added = run_playbook("site.yml", INVENTORY, "-l", "hkg1", "--tags", "loopback", "-e", extra)
        assert added.returncode == 0 and recap(added.stdout)["hkg1"]["changed"] == 1, added.stdout[-3000:]
        lo = sh("hkg1", "ip -br addr show dev lo").stdout
        assert "203.0.113.54/32" in lo and "192.0.2.99/32" in lo, lo
    finally:
        back = run_playbook("site.yml", INVENTORY, "-l", "hkg1", "--tags", "loopback")
    assert back.returncode == 0 and recap(back.stdout)["hkg1"]["changed"] == 1, back.stdout[-3000:]
    lo = sh("hkg1", "ip -br addr show dev lo").stdout
    assert "203.0.113.54" not in lo and "203.0.113.53/32" in lo and "192.0.2.99/32" in lo, lo
    sh("hkg1", "ip addr del 192.0.2.99/32 dev lo")


@pytest.mark.parametrize("timers,stage,message", [
    ('{"keepalive": 70000, "hold": 30}', "vtysh --dryrun", "Unknown command"),
    ('{"keepalive": 10, "hold": 2}', "while applying", "hold time value must be either 0 or greater than 3"),
])
def test_frr_refuses_a_bad_config_and_keeps_the_running_one(converged, timers, stage, message):
    conf_before = sh("fra1", "sha256sum /etc/frr/frr.conf").stdout
    running_before = vtysh("fra1", "show running-config")
    proc = run_playbook("site.yml", INVENTORY, "-l", "fra1", "--tags", "frr", "-e",
                        f'{{"frr_bgp_timers": {timers}}}')
    assert proc.returncode != 0
    assert stage in proc.stdout and message in proc.stdout, proc.stdout[-3000:]
    assert sh("fra1", "sha256sum /etc/frr/frr.conf").stdout == conf_before
    assert vtysh("fra1", "show running-config") == running_before
    assert established_and_bfd_up("fra1") and not any(established_and_bfd_up("fra1").values())
