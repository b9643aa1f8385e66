"""EL 9, which the roles' meta claims, has no lab image here: at least each role's RedHat variables
must define exactly what its Debian variables define (a key missing on one platform is an undefined
variable there), with values of the same shape, and every platform claimed has its variables."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from tests.conftest import REPO

ROLES = sorted(p for p in (REPO / "collections/ansible_collections/anycast/dns/roles").iterdir()
               if (p / "tasks/main.yml").exists())
FAMILY = {"Debian": "Debian", "EL": "RedHat"}


def shape(value):
    if isinstance(value, dict):
        return {k: shape(v) for k, v in value.items()}
    if isinstance(value, list):
        return "list"
    return type(value).__name__


@pytest.mark.parametrize("role", ROLES, ids=[r.name for r in ROLES])
def test_each_claimed_platform_has_the_same_variables_as_debian(role: Path):
    platforms = yaml.safe_load((role / "meta/main.yml").read_text())["galaxy_info"]["platforms"]
    debian = yaml.safe_load((role / "vars/Debian.yml").read_text())
    assert debian, f"{role.name}: vars/Debian.yml is empty"
    for platform in platforms:
        family = FAMILY[platform["name"]]
        path = role / "vars" / f"{family}.yml"
        assert path.exists(), f"{role.name} claims {platform['name']} but has no {path.name}"
        other = yaml.safe_load(path.read_text())
        assert set(other) == set(debian), f"{role.name}: {path.name} and Debian.yml define different keys"
        for key in debian:
            assert shape(other[key]) == shape(debian[key]), f"{role.name}: {key} differs in shape in {path.name}"
            assert other[key] not in (None, "", [], {}), f"{role.name}: {key} is empty in {path.name}"
