"""anycast.dns.drain: drives anycast-health; its status --json before and after, check and diff mode."""

from __future__ import annotations

import json

from ansible_collections.anycast.dns.plugins.modules import drain

CMD = "/usr/local/sbin/anycast-health"


def state(drained: bool, announced: bool, reason: str = "x", withdrawn_at=None) -> str:
    fam = {"state": "drained" if drained and not announced else "announced" if announced else "withdrawn",
           "announced": announced, "healthy": True, "reason": reason}
    d = {"since": 100.0, "wait": 20.0, "withdrawn_at": withdrawn_at, "why": "traffic moved: 40.0 q/s before"} \
        if drained else None
    return json.dumps({"schema": 1, "version": "0.5.0", "time": 1.0, "drain": d,
                       "families": {"ipv4": fam, "ipv6": dict(fam)}})


class Node:
    """A fake anycast-health: status answers from a list, drain/undrain are recorded."""

    def __init__(self, *statuses, rc=0):
        self.statuses = list(statuses)
        self.calls = []
        self.rc = rc

    def __call__(self, argv):
        if argv[1:] == ["is-active", "anycast-health"]:
            return 0, "active\n", ""
        self.calls.append(argv)
        if argv[1] == "status":
            return 0, self.statuses.pop(0), ""
        return self.rc, "done", ""


def test_drain_sets_the_flag_with_the_wait_and_reports_what_the_daemon_measured(run_module):
    node = Node(state(False, True), state(True, False, withdrawn_at=102.5))
    result, failed = run_module(drain.main, {"state": "drained", "wait": 20}, node, diff=True)
    assert not failed and result["changed"]
    assert [CMD, "drain", "--wait", "20"] in node.calls
    assert result["drain"]["withdrawn_after"] == 2.5 and "traffic moved" in result["drain"]["why"]
    assert result["families"]["ipv4"]["state"] == "drained"
    assert result["diff"] == {"before": {"drained": False}, "after": {"drained": True}}


def test_a_drained_node_is_left_alone_and_check_mode_touches_nothing(run_module):
    node = Node(state(True, False), state(True, False))
    result, failed = run_module(drain.main, {"state": "drained", "wait": 5}, node)
    assert not failed and not result["changed"]
    assert [CMD, "drain"] in node.calls  # waits for the withdrawal, the running drain keeps its wait
    node = Node(state(False, True))
    result, failed = run_module(drain.main, {"state": "drained"}, node, check_mode=True)
    assert not failed and result["changed"]
    assert [c[1] for c in node.calls] == ["status"]


def test_an_undrain_that_cannot_announce_fails_with_the_reason_per_family(run_module):
    node = Node(state(True, False), state(False, False, reason="damped: held down 12 s more"), rc=1)
    result, failed = run_module(drain.main, {"state": "undrained"}, node)
    assert failed and result["changed"]
    assert "not announced again: ipv4 withdrawn (damped: held down 12 s more)" in result["msg"]


def test_no_daemon_says_so(run_module):
    def node(argv):
        return (0, "active\n", "") if argv[1] == "is-active" else (3, "", "no state")

    result, failed = run_module(drain.main, {"state": "drained"}, node)
    assert failed and "anycast_health role applied" in result["msg"]


def test_a_node_without_the_running_daemon_is_refused_before_anything_is_asked(run_module):
    calls = []

    def node(argv):
        calls.append(argv)
        return (3, "inactive\n", "") if argv[1] == "is-active" else (0, state(False, True), "")

    result, failed = run_module(drain.main, {"state": "drained"}, node)
    assert failed and "inactive" in result["msg"]
    assert "cannot be drained without the anycast-health daemon" in result["msg"]
    assert calls == [["/usr/bin/systemctl", "is-active", "anycast-health"]]


def test_a_status_of_another_schema_is_refused(run_module):
    node = Node(json.dumps({"families": {}}))
    result, failed = run_module(drain.main, {"state": "drained"}, node)
    assert failed and "schema None" in result["msg"] and [c[1] for c in node.calls] == ["status"]


def _no_daemon(argv):
    raise AssertionError(f"nothing is to be run on a node without anycast-health: {argv}")


def test_a_fresh_node_joins_drained_before_anything_is_installed(run_module, tmp_path):
    flag = tmp_path / "var/lib/anycast-health/drain"
    args = {"state": "drained", "before_install": True, "flag": str(flag), "command": str(tmp_path / "absent")}
    result, failed = run_module(drain.main, args, _no_daemon, check_mode=True)
    assert not failed and result["changed"] and not flag.exists()
    result, failed = run_module(drain.main, args, _no_daemon, diff=True, tmpdir=str(tmp_path))
    assert not failed and result["changed"]
    assert result["diff"] == {"before": {"drained": False}, "after": {"drained": True}}
    written = json.loads(flag.read_text())
    # What the daemon reads: drained and already withdrawn, so that it never announces before an undrain.
    assert written["withdrawn_at"] == written["since"] and written["wait"] == 0.0
    result, failed = run_module(drain.main, args, _no_daemon)
    assert not failed and not result["changed"] and json.loads(flag.read_text()) == written


def test_before_install_changes_nothing_where_the_daemon_runs_and_refuses_an_undrain(run_module, tmp_path):
    command = tmp_path / "anycast-health"
    command.write_text("")
    node = Node(state(False, True), state(True, False, withdrawn_at=101.0))
    result, failed = run_module(drain.main, {"state": "drained", "before_install": True, "command": str(command),
                                             "flag": str(tmp_path / "drain")}, node)
    assert not failed and result["changed"] and [str(command), "drain"] in node.calls
    assert not (tmp_path / "drain").exists()  # the daemon's own drain, not the flag written by the module
    result, failed = run_module(drain.main, {"state": "undrained", "before_install": True}, _no_daemon)
    assert failed and "state=drained only" in result["msg"]
