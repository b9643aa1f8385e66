"""The agents (agents/src/anycast_agents) and what installs and reads them agree: the pinned
version, where the commands and files are on a node, and the schema of state.json. Each of these
is written once per side; this test keeps the sides equal."""

from __future__ import annotations

import os
import re

import yaml

from ansible_collections.anycast.dns.plugins.module_utils import _health
from ansible_collections.anycast.dns.plugins.modules import drain, node_status
from anycast_agents import __version__, paths
from anycast_agents import state as statefile
from tests.conftest import REPO

ROLES = REPO / "roles"


def role_vars(role: str, kind: str = "vars") -> dict:
    return yaml.safe_load((ROLES / role / kind / "main.yml").read_text())


def doc_default(module, option: str) -> str:
    return yaml.safe_load(module.DOCUMENTATION)["options"][option]["default"]


def test_the_agents_role_pins_the_agents_version_and_installs_where_the_agents_expect():
    assert role_vars("agents", "defaults")["agents_version"] == __version__
    agents = role_vars("agents")
    assert agents["__agents_install_dir"] == paths.INSTALL_DIR
    assert agents["__agents_bin_dir"] == paths.BIN_DIR
    assert sorted(agents["__agents_commands"]) == sorted(
        os.path.basename(c) for c in (paths.HEALTH_COMMAND, paths.KNOT_EXPORTER_COMMAND,
                                       paths.FIREWALL_COUNTERS_COMMAND, paths.COLLECTOR_EXPORTER_COMMAND))
    assert os.path.basename(agents["__agents_zipapp"].replace("{{ agents_version }}", __version__)) == \
        paths.zipapp_name(__version__)


def test_the_roles_use_the_agents_paths():
    health = role_vars("anycast_health")
    assert health["__anycast_health_bin"] == paths.HEALTH_COMMAND
    assert health["__anycast_health_run"] == paths.HEALTH_RUN_DIR
    assert health["__anycast_health_state"] == paths.HEALTH_STATE_DIR
    assert health["__anycast_health_dir"] == os.path.dirname(paths.HEALTH_CONFIG)
    assert role_vars("frr_bgp", "defaults")["frr_bgp_drain_flag"] == paths.DRAIN_FLAG
    assert role_vars("monitoring")["__monitoring_knot_exporter_bin"] == paths.KNOT_EXPORTER_COMMAND
    assert role_vars("monitoring")["__monitoring_collector_exporter_bin"] == paths.COLLECTOR_EXPORTER_COMMAND
    assert role_vars("monitoring")["__monitoring_collector_exporter_conf"] == paths.COLLECTOR_EXPORTER_CONFIG
    assert role_vars("monitoring", "defaults")["monitoring_ports"]["collector"] == int(
        paths.COLLECTOR_EXPORTER_LISTEN.rsplit(":", 1)[1])
    heartbeat = (ROLES / "anycast_health/files/heartbeat-fresh").read_text()
    assert re.search(rf"^file={re.escape(paths.HEALTH_RUN_DIR)}/heartbeat$", heartbeat, re.M)


def test_the_modules_read_the_state_the_daemon_writes():
    assert _health.STATE_SCHEMA == statefile.SCHEMA
    assert _health.HEALTH_COMMAND == paths.HEALTH_COMMAND == doc_default(drain, "command")
    assert _health.HEALTH_STATE == paths.HEALTH_STATE_FILE == doc_default(node_status, "health_state")
    assert _health.DRAIN_FLAG == paths.DRAIN_FLAG == doc_default(drain, "flag")
    written = statefile.document(1.0, None, {}, __version__)
    assert _health.schema_problem(written, "state.json") is None
    assert "schema 0" in _health.schema_problem(dict(written, schema=0), "state.json")
