"""docs/inventory-model.md and the rules name the same keys: a key cannot be validated and
undocumented, or documented and never checked; the table of values checked by type and range is
the rules' own table (FIELDS), as scripts/inventory-doc.py writes it."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from ansible_collections.anycast.dns.plugins.plugin_utils import inventory_rules as rules

DOC = (Path(__file__).resolve().parents[4] / "docs" / "inventory-model.md").read_text()
# The first cell of each table row: `key`, or several keys separated by commas.
DOCUMENTED = {key for cell in re.findall(r"^\| ([^|]+) \|", DOC, flags=re.M)
              for key in re.findall(r"`([a-z0-9_]+)`", cell)}


@pytest.mark.parametrize("key", rules.SERVER_KEYS)
def test_every_key_the_rules_read_is_documented(key):
    assert key in DOCUMENTED


@pytest.mark.parametrize("key", sorted(rules.fields_of("anycast_rolling")))
def test_every_rolling_setting_is_documented(key):
    row = next(line for line in DOC.splitlines() if line.startswith("| `anycast_rolling`"))
    assert f"`{key}`" in row


def test_every_documented_anycast_key_is_read_by_the_rules():
    # Keys read elsewhere than the fleet rules: the zone directory (knot_dns on the controller).
    elsewhere = {"anycast_zones_dir", "anycast_pki_dir"}
    documented = {k for k in DOCUMENTED if k.startswith("anycast_") and k not in {"anycast_servers"}}
    assert documented - set(rules.SERVER_KEYS) - elsewhere == set()


def test_the_table_of_checked_values_is_the_rules_own():
    begin = DOC.index("<!-- BEGIN generated from plugins/plugin_utils/inventory_rules.py (FIELDS)")
    end = DOC.index("<!-- END generated from inventory_rules.py -->")
    block = DOC[DOC.index("\n", begin) + 1:end].strip()
    assert block == rules.fields_markdown().strip(), "run scripts/inventory-doc.py"


@pytest.mark.parametrize("field", rules.FIELDS, ids=lambda f: f.path)
def test_every_checked_value_belongs_to_a_documented_key(field):
    assert re.split(r"[.\[]", field.path, maxsplit=1)[0] in DOCUMENTED
