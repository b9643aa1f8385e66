"""strategy_plugins/mitogen_linear.py: Mitogen's planner, with the installed collections' directories
read once in the controller's process instead of in every worker it forks."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

from tests.conftest import REPO

# Run in a process of its own: it installs Ansible's collection loader and patches Mitogen's planner.
SCRIPT = textwrap.dedent("""
    import json, os, sys

    from ansible import constants as C
    from ansible.utils.collection_loader._collection_finder import _AnsibleCollectionFinder

    _AnsibleCollectionFinder(paths=[sys.argv[1], *C.COLLECTIONS_PATHS])._install()
    from ansible_mitogen import planner

    import ansible.collections.list

    # Every read of the directories, Mitogen's own or the plugin's, counted by process.
    reads = []
    real = ansible.collections.list.list_collection_dirs
    ansible.collections.list.list_collection_dirs = lambda: (reads.append(os.getpid()), real())[1]
    mitogen_own = planner._load_collections
    sys.path.insert(0, sys.argv[2])
    import mitogen_linear


    class Invocation:
        def __init__(self):
            self._extra_sys_paths = set()


    expected = Invocation()
    mitogen_own(expected)
    del reads[:]
    mitogen_linear.remember_collection_dirs()
    mitogen_linear.remember_collection_dirs()  # a second play: nothing read again

    # Each worker is a fork of the controller's process, as Ansible's are; it reports what it added.
    seen = []
    for _ in range(3):
        rfd, wfd = os.pipe()
        pid = os.fork()
        if pid == 0:
            os.close(rfd)
            invocation = Invocation()
            planner._load_collections(invocation)
            os.write(wfd, json.dumps({"paths": sorted(invocation._extra_sys_paths), "reads": reads}).encode())
            os._exit(0)
        os.close(wfd)
        with os.fdopen(rfd) as pipe:
            seen.append(json.loads(pipe.read()))
        os.waitpid(pid, 0)
    print(json.dumps({"expected": sorted(expected._extra_sys_paths), "parent": os.getpid(),
                      "reads": reads, "workers": seen}))
""")


def test_workers_add_the_same_collection_directories_as_mitogen_without_reading_them_again(tmp_path):
    script = tmp_path / "planner.py"
    script.write_text(SCRIPT)
    proc = subprocess.run([sys.executable, str(script), str(REPO / "collections"), str(REPO / "strategy_plugins")],
                          capture_output=True, text=True, timeout=120, check=False,
                          env=dict(os.environ, ANSIBLE_CONFIG=str(REPO / "ansible.cfg")))
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout.splitlines()[-1])
    # Mitogen's own function finds this project's collection among the installed ones ...
    assert str(REPO / "collections/ansible_collections/anycast/dns") in out["expected"], out["expected"]
    assert len(out["expected"]) > 1
    # ... and every worker adds exactly those directories, read once, by the controller's process.
    for worker in out["workers"]:
        assert worker["paths"] == out["expected"]
        assert worker["reads"] == [out["parent"]]
    assert out["reads"] == [out["parent"]]
