"""The check_changes callback: the file it shares with the playbook, removed at the end of the run,
and the files of killed runs removed by the next one."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile

from ansible_collections.anycast.dns.plugins.callback import check_changes
from ansible_collections.anycast.dns.plugins.callback.check_changes import ENV, PREFIX, CallbackModule


class Task:
    check_mode = True
    action = "ansible.builtin.copy"

    def get_name(self):
        return "knot_dns : Install knot.conf"


class Host:
    def get_name(self):
        return "fra1"


class Result:
    def __init__(self, changed):
        self._task, self._host, self._result = Task(), Host(), {"changed": changed}


def gone_pid() -> int:
    """The pid of a process that has ended."""
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_a_run_records_what_check_mode_would_change_and_removes_its_file_at_the_end(tmp_path, monkeypatch):
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    monkeypatch.delenv(ENV, raising=False)
    cb = CallbackModule()
    cb.v2_playbook_on_start(None)
    path = os.environ[ENV]
    assert os.path.basename(path).startswith(f"{PREFIX}{os.getpid()}-")
    cb.v2_runner_on_ok(Result(changed=False))
    assert json.loads(open(path, encoding="utf-8").read()) == {}
    cb.v2_runner_on_ok(Result(changed=True))
    assert json.loads(open(path, encoding="utf-8").read()) == {"fra1": ["knot_dns : Install knot.conf"]}
    cb.v2_playbook_on_stats(None)
    assert not os.path.exists(path) and ENV not in os.environ


def test_the_files_of_killed_runs_go_when_the_next_run_starts_and_no_other(tmp_path, monkeypatch):
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    monkeypatch.delenv(ENV, raising=False)
    dead = gone_pid()
    killed = tmp_path / f"{PREFIX}{dead}-abc123.json"
    killed_new = tmp_path / f"{PREFIX}{dead}-abc123.json.new"
    running = tmp_path / f"{PREFIX}{os.getppid()}-def456.json"  # a run still going (our parent)
    older = tmp_path / f"{PREFIX}q1w2e3r4.json"  # no pid in its name: not ours to judge
    other = tmp_path / "something-else.json"
    for path in (killed, killed_new, running, older, other):
        path.write_text("{}")
    cb = CallbackModule()
    cb.v2_playbook_on_start(None)
    assert not killed.exists() and not killed_new.exists()
    assert running.exists() and older.exists() and other.exists()
    assert os.path.exists(os.environ[ENV])
    cb.v2_playbook_on_stats(None)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(p.name for p in (running, older, other))
    assert check_changes.sweep(str(tmp_path)) == []
