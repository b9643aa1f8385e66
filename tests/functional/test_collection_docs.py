"""Module docs are data: ansible-doc renders them and they match the argument spec."""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.conftest import REPO

MODULES = sorted((REPO / "collections/ansible_collections/anycast/dns/plugins/modules").glob("*.py"))


def _doc_strings(path: Path) -> dict:
    tree = ast.parse(path.read_text())
    out = {}
    for node in tree.body:
        if isinstance(node, ast.Assign) and isinstance(node.targets[0], ast.Name):
            if node.targets[0].id in ("DOCUMENTATION", "EXAMPLES", "RETURN"):
                out[node.targets[0].id] = yaml.safe_load(node.value.value)
    return out


@pytest.mark.parametrize("path", MODULES, ids=[p.stem for p in MODULES])
def test_ansible_doc_renders(path):
    env = dict(os.environ, ANSIBLE_CONFIG=str(REPO / "ansible.cfg"))
    name = "anycast.dns." + path.stem
    result = subprocess.run([str(Path(sys.executable).parent / "ansible-doc"), "--json", name], cwd=REPO, env=env,
                            capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 0, result.stderr
    doc = json.loads(result.stdout)[name]["doc"]
    assert doc["module"] == path.stem
    assert doc["short_description"]


@pytest.mark.parametrize("path", MODULES, ids=[p.stem for p in MODULES])
def test_docs_are_yaml_and_examples_use_fqcn(path):
    docs = _doc_strings(path)
    assert set(docs) == {"DOCUMENTATION", "EXAMPLES", "RETURN"}
    for task in docs["EXAMPLES"]:
        assert "anycast.dns." + path.stem in task


def test_validate_inventory_doc_matches_action_argument_spec():
    from ansible_collections.anycast.dns.plugins.action import validate_inventory as action  # noqa: PLC0415

    doc = _doc_strings(REPO / "collections/ansible_collections/anycast/dns/plugins/modules/validate_inventory.py")
    options = doc["DOCUMENTATION"]["options"]
    assert set(options) == set(action.ARGUMENT_SPEC)
    for name, spec in action.ARGUMENT_SPEC.items():
        assert options[name]["type"] == spec["type"]
        assert options[name].get("default") == spec.get("default")


FILTERS = sorted((REPO / "collections/ansible_collections/anycast/dns/plugins/filter").glob("*.yml"))


@pytest.mark.parametrize("path", FILTERS, ids=[p.stem for p in FILTERS])
def test_filter_docs_render_and_name_a_filter_the_plugin_has(path):
    import importlib  # noqa: PLC0415

    filters = {}
    for module in sorted(path.parent.glob("*.py")):
        plugin = importlib.import_module(f"ansible_collections.anycast.dns.plugins.filter.{module.stem}")
        filters.update(plugin.FilterModule().filters())
    env = dict(os.environ, ANSIBLE_CONFIG=str(REPO / "ansible.cfg"))
    name = "anycast.dns." + path.stem
    result = subprocess.run([str(Path(sys.executable).parent / "ansible-doc"), "-t", "filter", "--json", name],
                            cwd=REPO, env=env, capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)[name]["doc"]["name"] == path.stem
    assert path.stem in filters
