"""testinfra checks on every lab machine Ansible manages (molecule verify)."""

from __future__ import annotations


def test_machine_is_the_host_ansible_thinks_it_is(host):
    assert host.check_output("hostname") == host.backend.get_hostname()


def test_systemd_booted_and_healthy(host):
    state = host.run("systemctl is-system-running").stdout.strip()
    assert state in ("running", "degraded"), state


def test_sshd_and_network_manager_run(host):
    assert host.service("ssh").is_running
    assert host.service("NetworkManager").is_running


def test_python_for_ansible(host):
    assert host.exists("python3")
    assert host.run("python3 -c 'import apt'").rc == 0


def test_apt_goes_through_the_lab_cache(host):
    proxy = host.file("/etc/apt/apt.conf.d/01anycast-lab-proxy")
    assert proxy.contains("198.18.0.1:3142")
    assert host.run("apt-get -q -o Acquire::Retries=0 update").rc == 0


# --- PoP servers: sysctl_tuning, anycast_loopback, frr_bgp ------------------------------------

import json  # noqa: E402
import re  # noqa: E402

import pytest  # noqa: E402

POP_SERVERS = {"hkg1", "hkg2", "tyo1", "fra1", "gru1"}


@pytest.fixture
def pop_server(host):
    if host.backend.get_hostname() not in POP_SERVERS:
        pytest.skip("not a PoP server")
    return host


def test_kernel_settings_applied_and_stored(pop_server):
    assert pop_server.sysctl("net.ipv4.conf.all.rp_filter") == 2
    assert pop_server.sysctl("net.ipv4.ip_nonlocal_bind") == 1
    stored = pop_server.file("/etc/sysctl.d/60-anycast-dns.conf")
    assert stored.contains("^net.ipv4.conf.all.rp_filter = 2$")
    # A container cannot set the host-wide ones: kept, with systemd-sysctl's "ignore" prefix.
    assert stored.contains("^-net.core.netdev_max_backlog = 250000$")


def test_service_addresses_on_lo_from_a_stored_profile(pop_server):
    lo = pop_server.check_output("ip -br addr show dev lo")
    assert "203.0.113.53/32" in lo and "2001:db8:53::1/128" in lo
    assert pop_server.file("/etc/NetworkManager/system-connections/anycast-lo.nmconnection").exists
    assert pop_server.check_output("nmcli -g GENERAL.CONNECTION device show lo") == "anycast-lo"


def test_frr_runs_bgpd_and_bfdd_with_every_session_up(pop_server):
    assert pop_server.service("frr").is_running and pop_server.service("frr").is_enabled
    conf = pop_server.file("/etc/frr/frr.conf")
    assert conf.mode == 0o640 and conf.user == "frr"
    neighbors = json.loads(pop_server.check_output("vtysh -c 'show bgp neighbors json'"))
    assert neighbors and {n["bgpState"] for n in neighbors.values()} == {"Established"}
    peers = json.loads(pop_server.check_output("vtysh -c 'show bfd peers json'"))
    assert len(peers) == len(neighbors) and {p["status"] for p in peers} == {"up"}


# --- knot_dns: PoP servers (secondaries) and the hidden primary -------------------------------


def test_knot_answers_authoritatively_with_the_node_name_as_nsid(pop_server):
    assert pop_server.service("knot").is_running and pop_server.service("knot").is_enabled
    for path in ("/etc/knot/knot.conf", "/etc/knot/tsig.conf"):
        conf = pop_server.file(path)
        assert conf.mode == 0o640 and conf.user == "root" and conf.group == "knot", path
    assert "secret:" not in pop_server.file("/etc/knot/knot.conf").content_string
    name = pop_server.backend.get_hostname()
    for address in ("203.0.113.53", "2001:db8:53::1"):
        out = pop_server.check_output(f"dig +norec +nsid @{address} example.com SOA")
        assert "status: NOERROR" in out and " aa" in out and f'("{name}")' in out, out


def test_the_primary_signs_and_speaks_only_xot_beyond_its_loopback(host):
    if host.backend.get_hostname() != "primary1":
        pytest.skip("not the hidden primary")
    assert host.service("knot").is_running
    listen = host.check_output("knotc conf-read server.listen")
    assert listen == "server.listen = 127.0.0.1@53 ::1@53", listen
    tls = host.check_output("knotc conf-read server.listen-tls")
    assert tls == "server.listen-tls = 100.80.8.2@853 2001:db8:8008::2@853", tls
    for zone in ("example.com", "example.net"):
        out = host.check_output(f"dig +dnssec +norec @127.0.0.1 {zone} DNSKEY")
        assert "RRSIG" in out and re.search(r"DNSKEY\s+257 3 13 ", out), out  # a KSK, ECDSA P-256


# --- anycast_health ----------------------------------------------------------------------------


def test_health_daemon_announces_both_families_through_keepalived(pop_server):
    for unit in ("anycast-health", "keepalived"):
        assert pop_server.service(unit).is_running and pop_server.service(unit).is_enabled, unit
    state = json.loads(pop_server.check_output("anycast-health status --json"))
    assert {name: fam["state"] for name, fam in state["families"].items()} == {"ipv4": "announced",
                                                                               "ipv6": "announced"}
    assert pop_server.check_output("anycast-health check") == "IPv4: OK\nIPv6: OK"
    assert "203.0.113.0/24" in pop_server.check_output("ip -4 route show type blackhole")
    assert "2001:db8:53::/48" in pop_server.check_output("ip -6 route show type blackhole")
    prom = pop_server.file("/var/lib/prometheus/node-exporter/anycast_health.prom").content_string
    assert 'anycast_health_state{family="ipv6",state="announced"} 1' in prom
    assert pop_server.file("/etc/systemd/system/knot.service.d/anycast-health.conf").contains("knot-down")
