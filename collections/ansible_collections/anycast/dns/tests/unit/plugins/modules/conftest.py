"""Helpers to run a module's main() in-process with mocked exits."""

from __future__ import annotations

import pytest
from ansible.module_utils import basic
from ansible.module_utils.testing import patch_module_args


class Exit(Exception):
    def __init__(self, result: dict, failed: bool):
        super().__init__(result.get("msg", ""))
        self.result = result
        self.failed = failed


@pytest.fixture
def run_module(monkeypatch):
    """run_module(main, args, run_command) -> (result, failed)."""

    def _run(main, args: dict, run_command, check_mode: bool = False, diff: bool = False, tmpdir: str | None = None):
        def exit_json(self, **kw):
            raise Exit(kw, False)

        def fail_json(self, **kw):
            raise Exit(kw, True)

        monkeypatch.setattr(basic.AnsibleModule, "exit_json", exit_json)
        monkeypatch.setattr(basic.AnsibleModule, "fail_json", fail_json)
        monkeypatch.setattr(basic.AnsibleModule, "run_command", lambda self, argv, **kw: run_command(list(argv)))
        monkeypatch.setattr(basic.AnsibleModule, "get_bin_path", lambda self, name, **kw: f"/usr/bin/{name}")
        if tmpdir:
            monkeypatch.setattr(basic.AnsibleModule, "tmpdir", property(lambda self: tmpdir))
        full = dict(args, _ansible_check_mode=check_mode, _ansible_diff=diff)
        with patch_module_args(full), pytest.raises(Exit) as exc:
            main()
        return exc.value.result, exc.value.failed

    return _run
