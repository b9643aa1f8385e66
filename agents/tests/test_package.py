"""The agents as a package: state.json's schema, and the zipapp the agents role installs (built
here and run on this test's Python, as a node's python3 runs it)."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from anycast_agents import __version__, paths
from anycast_agents import state as statefile
from anycast_agents.health.cli import main

AGENTS = Path(__file__).resolve().parent.parent


def build_module():
    spec = importlib.util.spec_from_file_location("agents_build", AGENTS / "build.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_state_is_written_with_its_schema_and_another_schema_is_refused(tmp_path):
    path = tmp_path / "state.json"
    statefile.write(str(path), statefile.document(1.0, None, {"ipv4": {"state": "announced"}}, __version__))
    data = statefile.read(str(path))
    assert data["schema"] == statefile.SCHEMA and data["version"] == __version__
    path.write_text(json.dumps(dict(data, schema=statefile.SCHEMA + 1)))
    with pytest.raises(statefile.SchemaError, match=f"this anycast-health reads schema {statefile.SCHEMA}"):
        statefile.read(str(path))
    assert statefile.read(str(tmp_path / "absent.json")) is None


def test_status_refuses_a_state_of_another_schema(tmp_path, capsys):
    run = tmp_path / "run"
    run.mkdir()
    (run / "state.json").write_text(json.dumps({"schema": 99, "families": {}}))
    config = tmp_path / "config.json"
    config.write_text(json.dumps({"zones": ["example.com"], "addresses": {"4": ["127.0.0.1"]},
                                  "aggregates": {"4": ["203.0.113.0/24"]}, "interval": 1, "timeout": 1,
                                  "fall": 1, "rise": 1, "run_dir": str(run), "state_dir": str(tmp_path)}))
    assert main(["--config", str(config), "status", "--json"]) == 2
    assert "schema 99" in capsys.readouterr().err


def test_the_zipapp_is_reproducible_and_runs_each_command(tmp_path):
    build = build_module()
    first = build.build(tmp_path / "a")
    second = build.build(tmp_path / "b")
    assert first.name == paths.zipapp_name(__version__)
    assert first.read_bytes() == second.read_bytes()  # the same sources give the same bytes
    assert first.read_bytes().startswith(b"#!/usr/bin/python3\n") and os.access(first, os.X_OK)
    links = {}
    commands = ("anycast-health", "anycast-knot-exporter", "anycast-firewall-counters", "anycast-collector-exporter")
    for command in commands:
        links[command] = tmp_path / command
        links[command].symlink_to(first)
    env = dict(os.environ, PYTHONPATH="")  # only what is inside the zipapp, and the libraries of this Python
    for command, link in links.items():
        out = subprocess.run([sys.executable, str(link), "--version"], capture_output=True, text=True, env=env,
                             check=True).stdout
        assert out.strip() == f"{command} (anycast-agents) {__version__}"
    out = subprocess.run([sys.executable, str(first), "anycast-health", "--help"], capture_output=True, text=True,
                         env=env, check=True).stdout
    assert "drain" in out and "undrain" in out
    bare = subprocess.run([sys.executable, str(first)], capture_output=True, text=True, env=env, check=False)
    assert bare.returncode == 2 and ", ".join(commands) in bare.stderr
