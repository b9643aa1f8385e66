"""The monitoring role's Prometheus files, rendered by Ansible for the lab's monitoring node:
the alert rules pass their promtool unit tests (every alert fires in a case and stays silent in
another), promtool accepts the whole configuration, and the scrape and probe targets are the
inventory's hosts with their PoP."""

from __future__ import annotations

import shutil
import subprocess

import pytest
import yaml

from tests.conftest import BIN, REPO, run_playbook

PROMTOOL = BIN / "promtool"
TESTS = REPO / "tests/promtool/anycast.rules.test.yml"

pytestmark = pytest.mark.skipif(not PROMTOOL.exists(), reason="promtool missing: run `make venv`")


@pytest.fixture(scope="module")
def rendered(tmp_path_factory):
    out = tmp_path_factory.mktemp("monitoring")
    proc = run_playbook("tests/functional/render_monitoring.yml", REPO / "inventories/lab", "-e", f"out_dir={out}",
                        "-e", f"__monitoring_rules_file={out}/anycast.rules.yml")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    return out


def promtool(*args) -> subprocess.CompletedProcess:
    return subprocess.run([str(PROMTOOL), *args], capture_output=True, text=True, timeout=120, check=False)


def test_every_alert_rule_passes_its_promtool_unit_tests(rendered):
    shutil.copy(TESTS, rendered / TESTS.name)
    proc = promtool("test", "rules", str(rendered / TESTS.name))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "SUCCESS" in proc.stdout + proc.stderr


def test_every_alert_has_a_case_that_fires(rendered):
    rules = yaml.safe_load((rendered / "anycast.rules.yml").read_text())
    alerts = {r["alert"] for g in rules["groups"] for r in g["rules"] if "alert" in r}
    cases = yaml.safe_load(TESTS.read_text())["tests"]
    fired = {t["alertname"] for c in cases for t in c.get("alert_rule_test", []) if t.get("exp_alerts")}
    assert alerts == fired, f"alerts without a firing test: {sorted(alerts - fired)}; unknown: {sorted(fired - alerts)}"
    assert {"BGPSessionDown", "BFDPeerDown", "PoPNotAnnouncing", "DNSDownWhileAnnouncing", "AnycastNodeWithdrawn",
            "SOASerialDiffers", "ZoneNearExpiry", "ZoneRefreshFailing", "XoTCertificateNearExpiry", "RRSIGNearExpiry",
            "AnycastFlapping"} <= alerts


def test_promtool_accepts_the_whole_configuration(rendered):
    proc = promtool("check", "config", str(rendered / "prometheus.yml"))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "SUCCESS" in proc.stdout + proc.stderr


def test_targets_are_the_inventorys_hosts_with_their_pop(rendered):
    conf = yaml.safe_load((rendered / "prometheus.yml").read_text())
    jobs = {j["job_name"]: j for j in conf["scrape_configs"]}

    def targets(job):
        return {(g["labels"]["instance"], g["labels"].get("pop"), t) for g in jobs[job]["static_configs"]
                for t in g["targets"]}

    assert targets("frr") == {("hkg1", "hkg", "198.18.0.11:9342"), ("hkg2", "hkg", "198.18.0.12:9342"),
                              ("tyo1", "tyo", "198.18.0.21:9342"), ("fra1", "fra", "198.18.0.31:9342"),
                              ("gru1", "gru", "198.18.0.41:9342")}
    assert ("primary1", None, "198.18.0.50:9433") in targets("knot")
    assert {i for i, _, _ in targets("node")} == {"hkg1", "hkg2", "tyo1", "fra1", "gru1", "primary1", "monitor1"}
    # DNS probes: every PoP server's unicast address, both zones, UDP and TCP; both anycast addresses.
    unicast = [g["labels"] for g in jobs["dns_unicast"]["static_configs"]]
    assert len(unicast) == 5 * 2 * 2
    assert {(g["zone"], g["transport"], g["__param_module"]) for g in unicast if g["instance"] == "fra1"} == {
        ("example.com", "udp", "soa_udp_example.com"), ("example.com", "tcp", "soa_tcp_example.com"),
        ("example.net", "udp", "soa_udp_example.net"), ("example.net", "tcp", "soa_tcp_example.net")}
    anycast = {(t, g["labels"]["family"]) for g in jobs["dns_anycast"]["static_configs"] for t in g["targets"]}
    assert anycast == {("203.0.113.53:53", "ipv4"), ("[2001:db8:53::1]:53", "ipv6")}
    # Every module a target names exists in the blackbox configuration.
    modules = yaml.safe_load((rendered / "blackbox.yml").read_text())["modules"]
    assert {g["__param_module"] for g in unicast} <= set(modules)
    assert modules["soa_tcp_example.com"]["dns"]["transport_protocol"] == "tcp"


def test_alertmanager_routes_to_the_configured_receiver(rendered):
    conf = yaml.safe_load((rendered / "alertmanager.yml").read_text())
    names = [r["name"] for r in conf["receivers"]]
    assert conf["route"]["receiver"] in names
