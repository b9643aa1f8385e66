"""anycast.dns.frr_config against a simulated FRR: refuse before touching, apply, roll back."""

from __future__ import annotations

from pathlib import Path

import pytest

from ansible_collections.anycast.dns.plugins.modules import frr_config

OLD = "hostname a\nrouter bgp 65053\n neighbor 192.0.2.1 password old-secret\n"
NEW = "hostname a\nrouter bgp 65053\n neighbor 192.0.2.1 password new-secret\n"
TEST_OUT = """2026-11-21 08:44:44,384  INFO: Called via "Namespace(...)"
2026-11-21 08:44:44,384  INFO: Loading Config object from file {path}

Lines To Delete
===============
router bgp 65053
 no neighbor 192.0.2.1 password old-secret

Lines To Add
============
router bgp 65053
 neighbor 192.0.2.1 password new-secret
"""


class FakeFrr:
    """vtysh --dryrun and frr-reload.py: running config follows the last reloaded file."""

    def __init__(self, conf: Path, running: str, dryrun_error: str = "", reload_error: str = ""):
        self.conf, self.running = conf, running
        self.dryrun_error, self.reload_error = dryrun_error, reload_error
        self.calls: list[list[str]] = []

    def __call__(self, argv):
        self.calls.append(argv)
        if argv[0].endswith("vtysh"):
            return (2, "", self.dryrun_error) if self.dryrun_error else (0, "", "")
        mode, path = argv[2], argv[-1]
        text = Path(path).read_text()
        if mode == "--test":
            return 0, (TEST_OUT.format(path=path) if text != self.running else "2026-11-21 08:44:44,384  INFO: x\n"), ""
        if self.reload_error and "new-secret" in text:
            self.running = "half-applied"
            log = "2026-11-21 08:51:04,203 \x1b[91mWARNING\x1b[0m: frr-reload.py failed due to"
            return 1, f"{log}\n{self.reload_error}\n", ""
        self.running = text
        return 0, "", ""


@pytest.fixture
def conf(tmp_path, monkeypatch):
    path = tmp_path / "frr.conf"
    path.write_text(OLD)
    # Ownership is not what these tests are about.
    monkeypatch.setattr(frr_config.AnsibleModule, "set_fs_attributes_if_different", lambda self, *a, **k: False)
    return path


def args(conf, content=NEW):
    return {"content": content, "path": str(conf), "frr_reload": str(conf)}  # any existing path will do


def test_a_change_is_tested_then_written_then_applied(run_module, conf, tmp_path):
    frr = FakeFrr(conf, running=OLD)
    result, failed = run_module(frr_config.main, args(conf), frr, diff=True, tmpdir=str(tmp_path))
    assert not failed and result["changed"]
    assert conf.read_text() == NEW and frr.running == NEW
    modes = [c[2] if not c[0].endswith("vtysh") else "dryrun" for c in frr.calls]
    assert modes == ["dryrun", "--test", "--reload", "--test"]
    assert " neighbor 192.0.2.1 password ********" in result["commands"]
    assert "secret" not in repr(result)


def test_nothing_to_do_when_file_and_running_config_match(run_module, conf, tmp_path):
    conf.write_text(NEW)
    frr = FakeFrr(conf, running=NEW)
    result, failed = run_module(frr_config.main, args(conf), frr, tmpdir=str(tmp_path))
    assert not failed and not result["changed"] and result["commands"] == []
    assert not any("--reload" in c for c in frr.calls)


def test_a_running_config_edited_by_hand_is_put_back(run_module, conf, tmp_path):
    conf.write_text(NEW)
    frr = FakeFrr(conf, running="edited in vtysh")
    result, _failed = run_module(frr_config.main, args(conf), frr, tmpdir=str(tmp_path))
    assert result["changed"] and frr.running == NEW


def test_check_mode_shows_the_lines_and_changes_nothing(run_module, conf, tmp_path):
    frr = FakeFrr(conf, running=OLD)
    result, failed = run_module(frr_config.main, args(conf), frr, check_mode=True, diff=True, tmpdir=str(tmp_path))
    assert not failed and result["changed"] and result["commands"]
    assert conf.read_text() == OLD and frr.running == OLD
    assert "password ********" in result["diff"]["after"]


def test_a_config_vtysh_rejects_fails_with_frrs_words_and_touches_nothing(run_module, conf, tmp_path):
    frr = FakeFrr(conf, running=OLD, dryrun_error="line 79: % Unknown command[25]:  timers bgp 70000 30\n")
    result, failed = run_module(frr_config.main, args(conf), frr, tmpdir=str(tmp_path))
    assert failed and "nothing was changed" in result["msg"]
    assert result["errors"] == ["line 79: % Unknown command[25]:  timers bgp 70000 30"]
    assert conf.read_text() == OLD and frr.running == OLD
    assert len(frr.calls) == 1


def test_a_line_a_daemon_refuses_restores_the_previous_file_and_config(run_module, conf, tmp_path):
    frr = FakeFrr(conf, running=OLD, reload_error="% hold time value must be either 0 or greater than 3")
    result, failed = run_module(frr_config.main, args(conf), frr, tmpdir=str(tmp_path))
    assert failed and "previous file was restored" in result["msg"]
    assert result["errors"] == ["% hold time value must be either 0 or greater than 3"]
    assert conf.read_text() == OLD and frr.running == OLD


def test_parse_test_output_drops_logs_and_headers():
    assert frr_config.parse_test_output(TEST_OUT.format(path="/x")) == [
        "router bgp 65053", " no neighbor 192.0.2.1 password old-secret",
        "router bgp 65053", " neighbor 192.0.2.1 password new-secret"]
