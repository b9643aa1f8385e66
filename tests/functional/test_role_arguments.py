"""The roles' argument specs (with the options of their dicts) accept what the inventories give
them, host by host, and refuse a dict with a misspelt or missing key, naming it. Offline: no host
is contacted."""

from __future__ import annotations

import json

import pytest

from tests.conftest import REPO, run_playbook

PLAYBOOK = "tests/functional/playbooks/role_arguments.yml"
PROD_VAULT = ("--vault-id", f"production@{REPO / 'example-vault-password.txt'}")
SERVER_ROLES = ["sysctl_tuning", "anycast_loopback", "upstream_links", "knot_dns", "frr_bgp", "anycast_health"]
PRIMARY_ROLES = ["sysctl_tuning", "knot_dns", "monitoring"]


def validate(inventory: str, hosts: str, roles: list[str], **extra) -> tuple[int, str]:
    args = {"target_hosts": hosts, "roles_dir": str(REPO / "roles"), "roles_to_check": roles, **extra}
    proc = run_playbook(PLAYBOOK, REPO / "inventories" / inventory, "-e", json.dumps(args), *PROD_VAULT)
    return proc.returncode, proc.stdout + proc.stderr


@pytest.mark.parametrize("inventory", ["lab", "production"])
@pytest.mark.parametrize(("hosts", "roles"), [("anycast_servers", SERVER_ROLES), ("dns_primary", PRIMARY_ROLES)])
def test_every_host_gives_each_role_arguments_its_specs_accept(inventory, hosts, roles):
    rc, out = validate(inventory, hosts, roles)
    assert rc == 0, out[-3000:]
    assert "failed=0" in out and "ok=2" in out


def test_a_misspelt_key_of_a_dict_is_refused_naming_it():
    rc, out = validate("lab", "hkg1", ["anycast_health"],
                       anycast_health={"interval": 0.5, "timeot": 0.3, "fall": 2, "rise": 3})
    assert rc != 0
    assert "timeot" in out and "anycast_health_check" in out


def test_a_key_of_the_wrong_type_is_refused_naming_it():
    rc, out = validate("lab", "hkg1", ["frr_bgp"],
                       anycast_aggregates=[{"prefix": "203.0.113.0/24", "allow_more_specific": "maybe"}])
    assert rc != 0
    assert "allow_more_specific" in out and "frr_bgp_aggregates" in out
