"""The built collection is the product: built and installed the way a user gets it (ansible-galaxy),
away from this repository, it carries the roles, their docs and the agents' zipapp, and a playbook
naming the roles by their full names loads them from the installed copy."""

from __future__ import annotations

import os
import subprocess
import tarfile
from pathlib import Path

import pytest
import yaml

from tests.conftest import BIN, REPO

COLLECTION = REPO / "collections/ansible_collections/anycast/dns"
GALAXY = yaml.safe_load((COLLECTION / "galaxy.yml").read_text())
ROLES = sorted(p.name for p in (COLLECTION / "roles").iterdir() if (p / "tasks/main.yml").exists())
AGENTS_VERSION = yaml.safe_load((COLLECTION / "roles/agents/defaults/main.yml").read_text())["agents_version"]
ZIPAPP = COLLECTION / f"roles/agents/files/anycast-agents-{AGENTS_VERSION}.pyz"


def run(argv: list[str], cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True, timeout=300, check=False)


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    """(tarball, environment) of the collection built from the repository and installed into a
    directory of its own; the environment has no ansible.cfg and cannot see the repository's copy."""
    if not ZIPAPP.is_file():
        pytest.fail(f"{ZIPAPP.relative_to(REPO)} is missing: `make agents` builds it (make setup does)")
    base = tmp_path_factory.mktemp("collection")
    (base / "ansible.cfg").write_text("[defaults]\n")
    env = dict(os.environ, ANSIBLE_CONFIG=str(base / "ansible.cfg"), ANSIBLE_COLLECTIONS_PATH=str(base / "installed"),
               ANSIBLE_NOCOLOR="1", ANSIBLE_FORCE_COLOR="0", PATH=f"{BIN}:{os.environ.get('PATH', '')}")
    for key in ("ANSIBLE_ROLES_PATH", "ANSIBLE_STRATEGY", "ANSIBLE_STRATEGY_PLUGINS"):
        env.pop(key, None)
    built = run([str(BIN / "ansible-galaxy"), "collection", "build", str(COLLECTION), "--output-path", str(base)],
                base, env)
    assert built.returncode == 0, built.stdout + built.stderr
    tarball = base / f"anycast-dns-{GALAXY['version']}.tar.gz"
    # --no-deps: the collections it uses come with the `ansible` package of the virtualenv (no Galaxy here).
    done = run([str(BIN / "ansible-galaxy"), "collection", "install", "--no-deps", "-p", str(base / "installed"),
                str(tarball)], base, env)
    assert done.returncode == 0, done.stdout + done.stderr
    return tarball, env, base


def test_the_tarball_carries_every_role_the_zipapp_and_no_test_output(installed):
    tarball, _, _ = installed
    with tarfile.open(tarball) as tar:
        names = set(tar.getnames())
    for role in ROLES:
        assert f"roles/{role}/tasks/main.yml" in names
        assert f"roles/{role}/meta/argument_specs.yml" in names
    assert f"roles/agents/files/{ZIPAPP.name}" in names
    assert {"LICENSE", "README.md", "meta/runtime.yml", "meta/execution-environment.yml", "bindep.txt"} <= names
    assert not [n for n in names if n.startswith("tests/output") or "__pycache__" in n or n.endswith(".pyc")]


@pytest.mark.parametrize("role", ROLES)
def test_ansible_doc_describes_each_installed_role(installed, role):
    _, env, base = installed
    doc = run([str(BIN / "ansible-doc"), "-t", "role", f"anycast.dns.{role}"], base, env)
    assert doc.returncode == 0, doc.stderr
    spec = yaml.safe_load((COLLECTION / f"roles/{role}/meta/argument_specs.yml").read_text())["argument_specs"]
    assert spec["main"]["short_description"].split()[0] in doc.stdout
    for option in spec["main"].get("options", {}):
        assert option in doc.stdout
    assert str(base / "installed") in doc.stdout  # the installed copy, not the repository's


def test_a_playbook_naming_the_roles_loads_them_from_the_installed_collection(installed):
    _, env, base = installed
    plays = [{"name": "Every role of anycast.dns by its full name", "hosts": "pop", "gather_facts": False,
              "roles": [f"anycast.dns.{role}" for role in ROLES]}]
    (base / "play.yml").write_text(yaml.safe_dump(plays, sort_keys=False))
    (base / "hosts.ini").write_text("[pop]\nnode1 ansible_connection=local\n")
    listed = run([str(BIN / "ansible-playbook"), "-i", "hosts.ini", "play.yml", "--list-tasks"], base, env)
    assert listed.returncode == 0, listed.stdout + listed.stderr
    # Each role contributes its own tasks, named as in the installed copy.
    for role in ROLES:
        first = yaml.safe_load((COLLECTION / f"roles/{role}/tasks/main.yml").read_text())[0]["name"]
        assert f"{role} : {first}" in listed.stdout, role
    missing = run([str(BIN / "ansible-playbook"), "-i", "hosts.ini", "play.yml", "--syntax-check"], base,
                  dict(env, ANSIBLE_COLLECTIONS_PATH=str(base / "nowhere")))
    assert missing.returncode != 0 and "anycast.dns" in missing.stdout + missing.stderr
