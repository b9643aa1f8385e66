"""The host firewall's ruleset as the role renders it for every node of the production and lab
inventories (tests/functional/render_firewall.yml, on this controller): what each kind of node lets
in, and, where this machine can (root, nft), that nftables accepts every ruleset (`nft -c`, which
changes nothing)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess

import pytest
import yaml

from tests.conftest import REPO, run_playbook

INVENTORIES = {"production": ("--vault-id", f"production@{REPO / 'example-vault-password.txt'}"), "lab": ()}


@pytest.fixture(scope="module", params=sorted(INVENTORIES))
def rendered(request, tmp_path_factory):
    name = request.param
    out = tmp_path_factory.mktemp(f"firewall-{name}")
    proc = run_playbook("tests/functional/render_firewall.yml", REPO / "inventories" / name, *INVENTORIES[name],
                        "-e", f"out_dir={out}")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    return name, {p.stem: p.read_text() for p in out.glob("*.nft")}


def host_vars(inventory: str, host: str) -> dict:
    return yaml.safe_load((REPO / "inventories" / inventory / "host_vars" / f"{host}.yml").read_text()) or {}


def input_chain(ruleset: str) -> list[str]:
    body = ruleset.split("chain input {", 1)[1].split("\n\t}", 1)[0]
    return [line.strip() for line in body.splitlines() if line.strip() and not line.strip().startswith("#")]


def test_a_pop_server_takes_dns_from_anywhere_and_udp_queries_first(rendered):
    _, rulesets = rendered
    servers = [h for h in rulesets if h not in ("primary1", "monitor1")]
    assert len(servers) >= 5, sorted(rulesets)
    for host in servers:
        chain = input_chain(rulesets[host])
        assert chain[0] == "type filter hook input priority filter; policy drop;", (host, chain[:2])
        assert chain[1] == "udp dport { 53 } accept", (host, chain[:3])
        assert "meta l4proto { tcp, udp } th dport { 53 } accept" in chain, host
        assert "udp dport { 53 } notrack" in rulesets[host], host


def test_the_primary_and_the_monitoring_node_take_no_dns_from_outside(rendered):
    """No DNS from outside on either; BGP only, on the monitoring node, from its route collector's
    peers (monitoring_collector_peers), each address exactly; none on the primary."""
    inventory, rulesets = rendered
    for host in ("primary1", "monitor1"):
        chain = input_chain(rulesets[host])
        accepted = [rule for rule in chain if rule.endswith(" accept") or " accept comment " in rule]
        assert not [rule for rule in accepted if "dport { 53 }" in rule], (host, accepted)
        monitoring = REPO / "inventories" / inventory / "group_vars/all/monitoring.yml"
        hv = (yaml.safe_load(monitoring.read_text()) or {}) if monitoring.exists() else {}
        collects = host == "monitor1" and hv.get("monitoring_collector")
        peers = hv.get("monitoring_collector_peers", []) if collects else []
        expected = {str(p[fam]) for p in peers for fam in ("ipv4", "ipv6") if p.get(fam)}
        rule_re = re.compile(r'ip6? saddr (\S+) tcp dport 179 accept comment ".*"')
        bgp = {m.group(1) for rule in accepted if (m := rule_re.fullmatch(rule))}
        assert len([rule for rule in accepted if "dport 179" in rule]) == len(bgp) and bgp == expected, (host, bgp)
        assert "tcp dport 179 counter name dropped_bgp drop" in chain, host
        assert "notrack" not in rulesets[host], host


def test_the_primary_takes_xot_from_every_pop_servers_transfer_address_else_its_unicast_one(rendered):
    """knot_dns sends NOTIFY to, and expects transfers from, anycast_xfr_ipv4/6, else
    anycast_unicast_ipv4/6: the primary's firewall lets exactly those in on 853 (production's servers
    set only unicast addresses; the lab's set transfer addresses)."""
    inventory, rulesets = rendered
    servers = sorted(h for h in rulesets if h not in ("primary1", "monitor1"))
    expected = set()
    for host in servers:
        hv = host_vars(inventory, host)
        for fam in ("ipv4", "ipv6"):
            value = hv.get(f"anycast_xfr_{fam}") or hv.get(f"anycast_unicast_{fam}")
            if value:
                expected.add(str(value))
    allowed = set()
    for rule in input_chain(rulesets["primary1"]):
        m = re.fullmatch(r"ip6? saddr \{ (.*) \} tcp dport 853 accept", rule)
        if m:
            allowed |= {a.strip() for a in m.group(1).split(",")}
    assert expected and allowed == expected, (sorted(allowed - expected), sorted(expected - allowed))


@pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("nft"), reason="nft -c needs root and nft")
def test_nftables_accepts_every_ruleset(rendered):
    _, rulesets = rendered
    for host, text in sorted(rulesets.items()):
        proc = subprocess.run(["nft", "-c", "-f", "-"], input=text, capture_output=True, text=True, timeout=60,
                              check=False)
        assert proc.returncode == 0, (host, proc.stderr)
