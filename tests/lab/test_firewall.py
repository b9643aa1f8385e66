"""The host firewall (role host_firewall) seen from the Internet and from the management side.

From every client region, over IPv4 and IPv6, a TCP scan (nmap, inside the client's namespace, aimed
only at the lab's own addresses) of ports 1-1024 and of every port a PoP server listens on finds DNS
and nothing else, on the anycast addresses and on the servers' upstream-facing addresses; UDP 53
answers. BGP from a client is dropped and counted, and the count reaches Prometheus; the sessions
with the configured neighbours are up with TCP-MD5 and GTSM. A ruleset that cuts the controller off
is rolled back by the node itself, which stays reachable, and the play names host, key and value."""

from __future__ import annotations

import concurrent.futures
import hashlib
import json
import re
import subprocess
import time
import xml.etree.ElementTree as ET

import pytest

from tests.conftest import REPO, run_playbook
from tests.lab.conftest import lab_cli
from tests.lab.fleet import (
    INVENTORY,
    NEAREST_POP,
    SERVERS,
    SERVICE,
    established_and_bfd_up,
    host_vars,
    probe,
    probe_regions,
    sh,
    upstreams,
    vtysh,
    wait_for,
)
from tests.lab.test_monitoring import query

pytestmark = pytest.mark.lab

CLIENTS = sorted(NEAREST_POP)
SCAN_PORTS = "1-1024"


def listening_ports(server: str) -> set[int]:
    """The TCP ports the server listens on, whatever the address (`ss -Htln`)."""
    out = sh(server, "ss -Htln").stdout
    return {int(m.group(1)) for m in re.finditer(r"\S+:(\d+)\s+\S+\s*$", out, flags=re.M)}


def upstream_addresses() -> list[tuple[str, str, int, str]]:
    """(server, interface, family, address) of every upstream-facing address of every PoP server."""
    out = []
    for server in SERVERS:
        for iface in host_vars(server)["anycast_interfaces"]:
            if iface["name"].startswith("mgmt"):
                continue
            for fam in (4, 6):
                if iface.get(f"ipv{fam}"):
                    out.append((server, iface["name"], fam, iface[f"ipv{fam}"].split("/")[0]))
    return out


def nmap(client: str, family: int, targets: list[str], ports: str) -> dict[str, dict[int, str]]:
    """A TCP SYN scan from CLIENT's namespace: target -> {port: state} for every port nmap did not
    find filtered (open or closed). Bounded: one retry, 120 s per target at most."""
    cmd = ["nmap", "-n", "-Pn", "-sS", "-T4", "--max-retries", "1", "--host-timeout", "120s", "-p", ports,
           "-oX", "-", *(["-6"] if family == 6 else []), *targets]
    proc = lab_cli("exec", client, "--", *cmd, timeout=300)
    seen: dict[str, dict[int, str]] = {}
    for host in ET.fromstring(proc.stdout).iter("host"):  # noqa: S314 - nmap's own output, run here
        addr = host.find("address").get("addr")
        status = host.find("status")
        assert status is None or status.get("reason") != "time-out", f"nmap from {client} timed out on {addr}"
        seen[addr] = {int(p.get("portid")): p.find("state").get("state") for p in host.iter("port")
                      if p.find("state").get("state") != "filtered"}
    return seen


def test_from_every_region_only_dns_answers(converged):
    listening = set().union(*(listening_ports(s) for s in SERVERS))
    assert {22, 53, 179} <= listening  # sshd, Knot and bgpd listen: the firewall is what hides them
    ports = f"{SCAN_PORTS},{','.join(str(p) for p in sorted(listening) if p > 1024)}"
    # Every region scans the anycast addresses (each reaches its own PoP); each upstream-facing
    # address is scanned from one region, in turn.
    jobs: dict[tuple[str, int], list[str]] = {(c, fam): [SERVICE[fam]] for c in CLIENTS for fam in (4, 6)}
    for idx, (_server, _iface, fam, addr) in enumerate(upstream_addresses()):
        jobs[(CLIENTS[idx % len(CLIENTS)], fam)].append(addr)
    started = time.monotonic()
    with concurrent.futures.ThreadPoolExecutor(max_workers=len(jobs)) as pool:
        futures = {key: pool.submit(nmap, key[0], key[1], targets, ports) for key, targets in jobs.items()}
        results = {key: f.result() for key, f in futures.items()}
    print(f"\n[firewall] {sum(len(t) for t in jobs.values())} scans of {ports.count(',') + 1024} ports from "
          f"{len(CLIENTS)} regions in {time.monotonic() - started:.1f} s")
    opened = {}
    for (client, _fam), seen in results.items():
        assert set(seen) == set(jobs[(client, _fam)]), (client, seen)  # every target was scanned
        for target, states in seen.items():
            extra = {port for port, state in states.items() if state == "open" and port != 53}
            if extra:
                opened[f"{client} -> {target}"] = sorted(extra)
    assert not opened, f"ports other than 53 reachable from the Internet: {opened}"
    # DNS itself is open where it matters: TCP 53 on the anycast addresses, and UDP 53 answers.
    for (client, fam), seen in results.items():
        assert seen[SERVICE[fam]].get(53) == "open", (client, seen[SERVICE[fam]])
    for fam in (4, 6):
        for client, s in probe_regions(CLIENTS, SERVICE[fam], rate=10, duration=0.3).items():
            assert s["lost"] == 0 and s["authoritative"] == s["sent"], (client, fam, s)


def dropped(server: str) -> dict[str, int]:
    out = sh(server, "anycast-firewall-counters --json").stdout
    return {reason: v["packets"] for reason, v in json.loads(out)["dropped"].items()}


def test_bgp_from_a_client_is_dropped_counted_and_exported(converged):
    server = "fra1"  # London's PoP
    before = dropped(server)
    code = ("import socket\nfor a, f in (('203.0.113.53', socket.AF_INET), ('2001:db8:53::1', socket.AF_INET6)):\n"
            "    s = socket.socket(f); s.settimeout(2)\n"
            "    try: s.connect((a, 179)); print('OPEN', a)\n"
            "    except OSError as e: print('NO', a, type(e).__name__)\n")
    out = lab_cli("exec", "cl-lon", "--", str(REPO / ".venv/bin/python"), "-c", code, timeout=30).stdout
    assert "OPEN" not in out and out.count("TimeoutError") == 2, out  # dropped, not refused: nothing answers
    after = dropped(server)
    assert after["bgp"] >= before["bgp"] + 2, (before, after)
    # The counters reach Prometheus through node_exporter's textfile collector, written every 10 s
    # by one process that stays (no timer starting a new one each time).
    pid = sh(server, "systemctl show -p MainPID --value anycast-firewall-counters.service").stdout.strip()
    expr = f'anycast_firewall_dropped_packets_total{{reason="bgp",instance=~"{server}.*"}}'
    assert wait_for(lambda: any(float(r["value"][1]) >= after["bgp"] for r in query(expr)), 40, 2), query(expr)
    assert pid not in ("", "0"), pid
    assert sh(server, "systemctl show -p MainPID --value anycast-firewall-counters.service").stdout.strip() == pid
    units = sh(server, "systemctl list-unit-files --no-legend 'anycast-firewall-counters*' | awk '{print $1}'")
    assert units.stdout.split() == ["anycast-firewall-counters.service"], units.stdout
    assert query('count(anycast_firewall_loaded == 1)')[0]["value"][1] == "7"  # 5 servers, primary, monitor


def test_neighbour_sessions_are_up_with_md5_and_gtsm(converged):
    for server in SERVERS:
        running = vtysh(server, "show running-config")
        for up in upstreams(server):
            for fam in ("ipv4", "ipv6"):
                if up.get(fam):
                    assert f"neighbor {up[fam]} ttl-security hops 1" in running, (server, up["name"], fam)
                    assert f"neighbor {up[fam]} password " in running, (server, up["name"], fam)
        # Established with TTL 255 both ways (a TTL-1 packet would be dropped by the kernel), BFD up.
        assert not any(established_and_bfd_up(server).values()), (server, established_and_bfd_up(server))


def ruleset_digest(server: str) -> str:
    """SHA-256 of the firewall's table, counters left out (they move)."""
    text = sh(server, "nft list table inet anycast_firewall").stdout
    return hashlib.sha256(re.sub(r"packets \d+ bytes \d+", "", text).encode()).hexdigest()


def test_a_ruleset_that_cuts_the_controller_off_rolls_back_by_itself(converged):
    server = "tyo1"
    before = ruleset_digest(server)
    started = time.monotonic()
    result = run_playbook("tests/lab/playbooks/firewall_lockout.yml", INVENTORY, "-e", f"target={server}",
                          "-e", '{"wrong_networks": ["192.0.2.0/24"]}', "-e", "host_firewall_confirm_timeout=8",
                          "-e", "host_firewall_rollback_after=15")
    took = time.monotonic() - started
    out = result.stdout + result.stderr
    assert result.returncode != 0, out
    message = next(line for line in out.splitlines() if "cut the controller off" in line)
    assert f"{server}: the new firewall ruleset cut the controller off" in out, out[-3000:]
    assert "restored its previous ruleset by itself" in out and "anycast_management_networks" in out, message
    assert "192.0.2.0/24" in out, out[-3000:]
    # The old ruleset is in force, the bad one was never kept for boot, and Ansible gets in anew.
    assert ruleset_digest(server) == before
    assert sh(server, "cmp -s /etc/anycast-firewall/candidate.nft /etc/anycast-firewall/ruleset.nft",
              check=False).returncode != 0
    ping = subprocess.run([str(REPO / ".venv/bin/ansible"), "-i", str(INVENTORY), server, "-m", "ansible.builtin.ping"],
                          capture_output=True, text=True, timeout=120, cwd=REPO, check=False)
    assert ping.returncode == 0, ping.stdout + ping.stderr
    print(f"\n[firewall] lock-out: rolled back and failed in {took:.1f} s (confirm 8 s, guard 15 s)")
    # site.yml renders the inventory's ruleset again: it is the one in force, nothing to load.
    fixed = run_playbook("site.yml", INVENTORY, "--tags", "firewall", "--limit", server)
    assert fixed.returncode == 0, fixed.stdout[-3000:]
    assert sh(server, "cmp -s /etc/anycast-firewall/candidate.nft /etc/anycast-firewall/ruleset.nft",
              check=False).returncode == 0
    assert wait_for(lambda: probe("cl-tyo", SERVICE[4], rate=10, duration=0.3)["lost"] == 0, 30, 1)


def test_every_node_exports_its_drops_by_reason(converged):
    """What FirewallDropsRising selects is what the lab exports, on every node (promtool tests the
    alert's timing offline)."""
    rows = query("sum by (instance, reason) (rate(anycast_firewall_dropped_packets_total[1m])) >= 0")
    reasons: dict[str, set[str]] = {}
    for r in rows:
        reasons.setdefault(r["metric"]["instance"].split(":")[0], set()).add(r["metric"]["reason"])
    for node in [*SERVERS, "primary1", "monitor1"]:
        assert reasons.get(node) == {"bgp", "bfd", "icmp", "other", "invalid", "xot", "forward"}, (node, reasons)


# The systemd units the roles install or drop into, per machine: a PoP server of each Debian
# release (gru1, 12, runs Knot 3.2 behind the nginx XoT proxy; fra1, 13), the hidden primary and
# the monitoring node. With the highest exposure (`systemd-analyze security`) each may have: the
# figure the unit's or drop-in's comment states, where it states one.
FIREWALL_UNITS = {"anycast-firewall.service": None, "anycast-firewall-counters.service": None}
POP_UNITS = {"knot.service": 2.1, "anycast-health.service": 2.4, "keepalived.service": 6.4, **FIREWALL_UNITS}
UNITS = {"gru1": {**POP_UNITS, "nginx.service": 3.2}, "fra1": POP_UNITS,
         "primary1": {"knot.service": 2.1, "anycast-knot-exporter.service": None, **FIREWALL_UNITS},
         "monitor1": FIREWALL_UNITS}


@pytest.mark.parametrize("node", sorted(UNITS))
def test_the_units_and_drop_ins_the_roles_install_pass_systemd_analyze(converged, node):
    """`systemd-analyze verify` finds nothing to say about a file the roles wrote (an unknown or
    misspelt directive would only be logged and ignored by systemd, and its sandboxing lost), and
    the exposure of each service is no higher than its comment says."""
    exposure = {}
    for unit, most in UNITS[node].items():
        verify = sh(node, f"systemd-analyze verify {unit} 2>&1", check=False)
        ours = [line for line in verify.stdout.splitlines() if "/etc/systemd/system/" in line]
        assert ours == [], (node, unit, verify.stdout)
        if not unit.endswith(".service"):
            continue
        out = sh(node, f"systemd-analyze security --no-pager {unit}").stdout
        level = re.search(r"Overall exposure level for \S+: (\d+\.\d+)", out)
        assert level, (node, unit, out[-500:])
        exposure[unit] = float(level.group(1))
        if most is not None:
            assert exposure[unit] <= most, (node, unit, exposure[unit], most)
    print(f"\n[firewall] systemd-analyze on {node}: verify clean; exposure {exposure}")
