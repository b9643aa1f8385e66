# Copyright: contributors to the anycast.dns collection
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Record, per host, the tasks that report a change while they run in check mode."""

from __future__ import annotations

DOCUMENTATION = r"""
---
name: check_changes
type: aggregate
short_description: Records which tasks would change each host, for playbooks that plan in check mode
version_added: 0.5.0
description:
  - "Every task that runs in check mode and reports C(changed) is recorded under its host, as
    C(role : task name), in a JSON file (host name to a list of task names)."
  - The callback creates the file when the playbook starts and puts its path in the environment
    variable E(ANYCAST_DNS_CHECK_CHANGES), which the playbook's tasks inherit, so a later task reads
    it with C(lookup('ansible.builtin.env', 'ANYCAST_DNS_CHECK_CHANGES')). The file is removed when
    the run ends; the files of runs that were killed (their process is gone) are removed when the
    next run starts.
  - C(playbooks/rolling.yml) uses it to roll only the PoPs where its check-mode pass would change
    something. Without this callback enabled, rolling.yml rolls every PoP and says why.
  - "Tasks that fail in check mode are recorded too, as C(FAILED: role : task name), also when the
    play ignores the error; so are unreachable hosts (C(UNREACHABLE: task name))."
requirements:
  - Enabled in C(ansible.cfg) (C(callbacks_enabled = anycast.dns.check_changes)) or through
    E(ANSIBLE_CALLBACKS_ENABLED).
author:
  - anycast.dns contributors (@anycast-dns)
"""

import glob
import json
import os
import tempfile

from ansible.plugins.callback import CallbackBase

ENV = "ANYCAST_DNS_CHECK_CHANGES"
# The file's name: PREFIX, the pid of the run, "-", a random part, ".json".
PREFIX = "anycast-dns-check-changes-"


def _running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


def sweep(directory: str) -> list[str]:
    """Remove the files of runs whose process is gone (a run killed before its end); the paths removed."""
    removed = []
    for path in glob.glob(os.path.join(glob.escape(directory), PREFIX + "*-*.json")):
        pid = os.path.basename(path)[len(PREFIX):].split("-", 1)[0]
        if not pid.isdigit() or _running(int(pid)):
            continue
        for leftover in (path, path + ".new"):
            try:
                os.unlink(leftover)
            except FileNotFoundError:
                continue
            removed.append(leftover)
    return removed


class CallbackModule(CallbackBase):
    CALLBACK_VERSION = 2.0
    CALLBACK_TYPE = "aggregate"
    CALLBACK_NAME = "anycast.dns.check_changes"
    CALLBACK_NEEDS_ENABLED = True

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._changes: dict[str, list[str]] = {}
        self._path: str | None = None

    def v2_playbook_on_start(self, playbook):
        sweep(tempfile.gettempdir())
        fd, self._path = tempfile.mkstemp(prefix=f"{PREFIX}{os.getpid()}-", suffix=".json")
        os.close(fd)
        self._write()
        os.environ[ENV] = self._path

    def _write(self) -> None:
        if self._path is None:
            return
        tmp = self._path + ".new"
        with open(tmp, "w", encoding="utf-8") as fh:
            json.dump(self._changes, fh, sort_keys=True)
        os.replace(tmp, self._path)

    def _record(self, result, prefix: str = "") -> None:
        task = result._task
        if task.check_mode is not True:
            return
        name = prefix + (task.get_name() or task.action).strip()
        host = result._host.get_name()
        names = self._changes.setdefault(host, [])
        if name not in names:
            names.append(name)
            self._write()

    def v2_runner_on_ok(self, result):
        if result._result.get("changed", False):
            self._record(result)

    def v2_runner_on_failed(self, result, ignore_errors=False):
        # Recorded whether or not the play ignores the error: the check could not say what the
        # task would do, so its host counts as changing.
        self._record(result, "FAILED: ")

    def v2_runner_on_unreachable(self, result):
        self._record(result, "UNREACHABLE: ")

    def v2_playbook_on_stats(self, stats):
        if self._path is not None:
            for path in (self._path, self._path + ".new"):
                try:
                    os.unlink(path)
                except FileNotFoundError:
                    pass
            os.environ.pop(ENV, None)
            self._path = None
