"""playbooks/validate.yml and site.yml against the production inventory and broken copies of it.

Each broken copy changes one value; the run must fail and print that value, naming host and key.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest

from tests.conftest import REPO, run_playbook

PROD = REPO / "inventories" / "production"
# The production example's vault opens only with its own vault id (ansible.cfg's example password is the lab's).
PROD_VAULT = ("--vault-id", f"production@{REPO / 'example-vault-password.txt'}")


def broken_copy(tmp_path: Path, relpath: str, old: str, new: str) -> Path:
    inv = tmp_path / "inventory"
    shutil.copytree(PROD, inv)
    target = inv / relpath
    text = target.read_text()
    assert old in text, f"{old!r} not in {relpath}"
    target.write_text(text.replace(old, new, 1))
    return inv


def test_production_inventory_is_valid_and_no_host_is_contacted():
    result = run_playbook("playbooks/validate.yml", PROD, "-v", *PROD_VAULT)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "inventory OK: 8 servers in 4 PoPs (fra, gru, hkg, tyo)" in result.stdout
    recap = result.stdout.split("PLAY RECAP", 1)[1]
    hosts_in_recap = re.findall(r"^(\S+)\s+:\s+ok=", recap, flags=re.M)
    assert hosts_in_recap == ["localhost"]


def test_the_example_password_of_the_lab_never_opens_the_production_vault():
    result = run_playbook("playbooks/validate.yml", PROD)
    assert result.returncode != 0
    assert "vault" in (result.stdout + result.stderr).lower(), result.stdout + result.stderr
    assert "inventory OK" not in result.stdout


BROKEN = [
    # (file, old text, new text, host, key, shown value)
    ("host_vars/hkg2.yml", "ipv4: 198.51.100.5", "ipv4: 198.51.100.305", "hkg2",
     "anycast_upstreams[0](transit).ipv4", "198.51.100.305"),
    ("host_vars/tyo1.yml", "asn: 64602", "asn: 65053", "tyo1", "anycast_upstreams[0](transit).asn", "65053"),
    ("host_vars/fra2.yml", "asn: 64603", "asn: 4294967296", "fra2", "anycast_upstreams[0](transit).asn",
     "4294967296"),
    ("host_vars/gru1.yml", "prepend: 1 ", "prepend: 25 ", "gru1", "anycast_upstreams[0](transit).prepend", "25"),
    ("host_vars/gru2.yml", "anycast_router_id: 192.0.2.204", "anycast_router_id: 192.0.2.203", "gru2",
     "anycast_router_id", "192.0.2.203"),
    ("host_vars/hkg1.yml", "scope: local ", "scope: regional ", "hkg1", "anycast_upstreams[1](hkix).scope",
     "regional"),
    ("host_vars/hkg1.yml", '"64700:1000"', '"64700:100000"', "hkg1", "anycast_upstreams[1](hkix).communities[0]",
     "64700:100000"),
    ("host_vars/tyo2.yml", "ipv6: 2001:db8:ff00:4::1", "ipv6: 2001:db8:ff00:99::1", "tyo2",
     "anycast_upstreams[0](transit).ipv6", "2001:db8:ff00:99::1"),
    ("group_vars/all/service.yml", "- prefix: 203.0.113.0/24", "- prefix: 203.0.113.0/26", "hkg1",
     "anycast_aggregates[0].prefix", "203.0.113.0/26"),
    # ROAs: another origin AS, a max_length shorter than the aggregate (RPKI-invalid), no ROA (NotFound).
    ("group_vars/all/service.yml", "{prefix: 203.0.113.0/24, max_length: 24, origin_asn: 65053}",
     "{prefix: 203.0.113.0/24, max_length: 24, origin_asn: 64999}", "tyo2", "anycast_aggregates[0].prefix",
     "authorises AS64999, not our AS65053"),
    ("group_vars/all/service.yml", "{prefix: 203.0.113.0/24, max_length: 24, origin_asn: 65053}",
     "{prefix: 203.0.112.0/22, max_length: 23, origin_asn: 65053}", "gru1", "anycast_aggregates[0].prefix",
     "has max_length 23, shorter than the announced /24"),
    ("group_vars/all/service.yml", '  - {prefix: "2001:db8:53::/48", max_length: 48, origin_asn: 65053}\n', "",
     "hkg2", "anycast_aggregates[1].prefix", "would be RPKI NotFound"),
    ("group_vars/all/service.yml", "- 203.0.113.53", "- 198.51.100.53", "fra1",
     "anycast_service_addresses[0]", "198.51.100.53"),
    ("group_vars/all/service.yml", "- name: example.net", "- name: example..net", "gru2",
     "anycast_zones[1].name", "example..net"),
    ("group_vars/all/bgp.yml", "detect_multiplier: 3", "detect_multiplier: 300", "tyo1",
     "anycast_bfd_profiles.upstream.detect_multiplier", "300"),
    ("group_vars/all/health.yml", "timeout: 0.15", "timeout: 1.5", "hkg2", "anycast_health.timeout", "1.5"),
    ("group_vars/all/health.yml", "rise: 8", "rise: 0", "hkg2", "anycast_health.rise", "0"),
    ("group_vars/all/service.yml", "anycast_asn: 65053", "anycast_asn: 23456", "hkg1", "anycast_asn", "23456"),
    ("host_vars/fra1.yml", '    password: "{{ vault_anycast_bgp_passwords.fra1.transit }}"\n', "", "fra1",
     "anycast_upstreams[0](transit).password", "<empty>"),
    ("host_vars/fra1.yml", "vault_anycast_bgp_passwords.fra1.transit", "vault_anycast_bgp_passwords.fra7.transit",
     "fra1", "anycast_upstreams", "fra7"),
    ("gru.yml", "      hosts:\n        gru1:\n          ansible_host: 192.0.2.203\n        gru2:\n"
     "          ansible_host: 192.0.2.204\n", "      hosts: {}\n", "PoP gru", "anycast_pops", "gru"),
    ("gru.yml", "anycast_pop: gru", "anycast_pop: sao", "gru1", "anycast_pop", "sao"),
    ("hkg.yml", "ansible_host: 192.0.2.12", "ansible_host: 192.0.2.12\n        hkg3:", "hkg3", "anycast_router_id",
     "None"),
    # The host firewall's inputs, and every address in the role it plays.
    ("group_vars/all/service.yml", "  - 192.0.2.0/24\n", "  - 0.0.0.0/0\n", "tyo1",
     "anycast_management_networks[0]", "0.0.0.0/0"),
    ("group_vars/all/service.yml", "  - 192.0.2.0/24\n", "  - 192.0.2.0/24\n  - 203.0.113.0/25\n", "primary1",
     "anycast_management_networks[1]", "203.0.113.0/25"),
    ("host_vars/fra1.yml", "    max_prefix: 10\n", "    max_prefix: 10\n    multihop: 2\n    ttl_security_hops: 1\n",
     "fra1", "anycast_upstreams[0](transit).ttl_security_hops", "multihop (2)"),
    ("gru.yml", "ansible_host: 192.0.2.203", "ansible_host: 203.0.113.9", "gru1", "ansible_host", "203.0.113.9"),
    ("infra.yml", "ansible_host: 192.0.2.151", "ansible_host: 192.0.2.150", "monitor1", "ansible_host",
     "192.0.2.150"),
    ("group_vars/all/service.yml", "  ipv4: 192.0.2.150", "  ipv4: 203.0.113.150", "gru2",
     "anycast_hidden_primary.ipv4", "203.0.113.150"),
]


@pytest.mark.parametrize("relpath,old,new,host,key,value", BROKEN, ids=[f"{b[4]}={b[5]}" for b in BROKEN])
def test_broken_inventory_fails_naming_host_key_and_value(tmp_path, relpath, old, new, host, key, value):
    inv = broken_copy(tmp_path, relpath, old, new)
    result = run_playbook("playbooks/validate.yml", inv, *PROD_VAULT)
    out = result.stdout + result.stderr
    assert result.returncode != 0, out
    lines = [line for line in out.splitlines() if key in line and value in line]
    assert lines, f"no line names {key} and {value}:\n{out}"
    assert any(re.search(rf"(^|[\s,]){re.escape(host)}[,:]", line) for line in lines), out


def test_a_roa_looser_than_the_announcements_is_a_warning_and_the_run_goes_on(tmp_path):
    inv = broken_copy(tmp_path, "group_vars/all/service.yml", "{prefix: 203.0.113.0/24, max_length: 24,",
                      "{prefix: 203.0.113.0/24, max_length: 25,")
    result = run_playbook("playbooks/validate.yml", inv, *PROD_VAULT)
    out = " ".join((result.stdout + result.stderr).split())
    assert result.returncode == 0, out
    assert "[WARNING]" in out, out
    assert "anycast_roas[0].max_length = 25: is looser than the announcements need" in out, out


def test_several_problems_are_all_reported(tmp_path):
    inv = broken_copy(tmp_path, "host_vars/hkg2.yml", "asn: 64601", "asn: 0")
    health = inv / "group_vars" / "all" / "health.yml"
    health.write_text(health.read_text().replace("fall: 2", "fall: 0"))
    result = run_playbook("playbooks/validate.yml", inv, *PROD_VAULT)
    assert result.returncode != 0
    assert "anycast_upstreams[0](transit).asn = 0" in result.stdout
    assert "anycast_health.fall = 0" in result.stdout
    assert "problem(s)" in result.stdout


def test_site_runs_the_same_validation_first(tmp_path):
    inv = broken_copy(tmp_path, "host_vars/hkg2.yml", "asn: 64601", "asn: 65053")
    result = run_playbook("site.yml", inv, *PROD_VAULT)
    assert result.returncode != 0
    assert "anycast_upstreams[0](transit).asn = 65053" in result.stdout
    recap = result.stdout.split("PLAY RECAP", 1)[1]
    assert re.findall(r"^(\S+)\s+:\s+ok=", recap, flags=re.M) == ["localhost"]
