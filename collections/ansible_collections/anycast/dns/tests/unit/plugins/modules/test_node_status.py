"""anycast.dns.node_status: FRR's JSON (as FRR 8.4 prints it), the health state, the verdicts."""

from __future__ import annotations

import json

from ansible_collections.anycast.dns.plugins.modules import node_status

V4 = "203.0.113.0/24"
V6 = "2001:db8:53::/48"


def summary(state4="Established", state6="Established"):
    def peer(state):
        return {"state": state, "desc": "transit (transit)", "peerUptimeMsec": 64000, "pfxSnt": 1}
    return json.dumps({"ipv4Unicast": {"peers": {"100.64.23.1": peer(state4)}},
                       "ipv6Unicast": {"peers": {"2001:db8:ffff:23::1": peer(state6)}}})


def bfd(status="up"):
    return json.dumps([{"peer": "100.64.23.1", "status": status}, {"peer": "2001:db8:ffff:23::1", "status": "up"}])


def advertised(*prefixes):
    return json.dumps({"advertisedRoutes": {p: {"network": p} for p in prefixes}, "totalPrefixCounter": len(prefixes)})


class Frr:
    def __init__(self, summary_json, bfd_json, adv4, adv6):
        self.out = {"show bgp summary json": summary_json, "show bfd peers json": bfd_json,
                    "show bgp ipv4 unicast neighbors 100.64.23.1 advertised-routes json": adv4,
                    "show bgp ipv6 unicast neighbors 2001:db8:ffff:23::1 advertised-routes json": adv6}
        self.calls = 0

    def __call__(self, argv):
        self.calls += 1
        return 0, self.out[argv[2]], ""


def health(tmp_path, drained=False, announced=True):
    fam = {"state": "drained" if drained else "announced" if announced else "withdrawn", "announced": announced,
           "reason": "drained" if drained else "ok"}
    path = tmp_path / "state.json"
    path.write_text(json.dumps({"schema": 1, "version": "0.5.0", "time": 1.0,
                                "drain": {"since": 1, "wait": 5} if drained else None,
                                "families": {"ipv4": fam, "ipv6": fam}}))
    return str(path)


def args(tmp_path, **extra):
    return {"aggregates": [V4, V6], "health_state": health(tmp_path), "interval": 0.01, **extra}


def test_an_announcing_node(run_module, tmp_path):
    result, failed = run_module(node_status.main, args(tmp_path), Frr(summary(), bfd(), advertised(V4), advertised(V6)))
    assert not failed and result["ready"] and result["announcing"] and result["problems"] == []
    assert result["announced"] == sorted([V4, V6])
    s4 = result["sessions"][0]
    assert s4 == {"neighbor": "100.64.23.1", "family": "ipv4", "description": "transit (transit)",
                  "state": "Established", "established": True, "uptime_seconds": 64, "bfd": "up",
                  "advertised": [V4]}


def test_a_session_down_and_bfd_down_make_it_not_ready(run_module, tmp_path):
    frr = Frr(summary(state4="Active"), bfd("down"), advertised(), advertised(V6))
    result, failed = run_module(node_status.main, args(tmp_path, wait_for="ready", timeout=0.05), frr)
    assert failed and not result["ready"]
    assert "BGP transit (transit) 100.64.23.1 (ipv4): Active" in result["msg"]
    assert "BFD transit (transit) 100.64.23.1 (ipv4): down" in result["msg"]
    assert frr.calls > 3  # it read again while waiting


def test_drained_is_ready_but_not_announcing_and_withdrawn_waits_for_the_upstreams(run_module, tmp_path):
    a = dict(args(tmp_path), health_state=health(tmp_path, drained=True))
    result, failed = run_module(node_status.main, a, Frr(summary(), bfd(), advertised(), advertised()))
    assert not failed and result["ready"] and not result["announcing"] and result["drained"]
    assert result["problems"][0] == "anycast-health: drained"
    result, failed = run_module(node_status.main, dict(a, wait_for="withdrawn"),
                                Frr(summary(), bfd(), advertised(), advertised()))
    assert not failed
    result, failed = run_module(node_status.main, dict(a, wait_for="withdrawn", timeout=0.05),
                                Frr(summary(), bfd(), advertised(V4), advertised()))
    assert failed and f"{V4} still advertised to transit (transit) 100.64.23.1" in result["msg"]


def test_announced_needs_every_aggregate_on_every_session_and_the_health_daemon(run_module, tmp_path):
    frr = Frr(summary(), bfd(), advertised(V4), advertised())
    result, failed = run_module(node_status.main, args(tmp_path, wait_for="announced", timeout=0.05), frr)
    assert failed and f"{V6} not advertised to transit (transit) 2001:db8:ffff:23::1" in result["msg"]
    a = dict(args(tmp_path), health_state=health(tmp_path, announced=False), wait_for="announced", timeout=0.05)
    result, failed = run_module(node_status.main, a, Frr(summary(), bfd(), advertised(V4), advertised(V6)))
    assert failed and "anycast-health ipv4: withdrawn (ok)" in result["msg"]
    result, failed = run_module(node_status.main, dict(a, health_state=str(tmp_path / "none")),
                                Frr(summary(), bfd(), advertised(V4), advertised(V6)))
    assert failed and "no state (is anycast-health.service running?)" in result["msg"]


def test_no_bgpd_is_no_session(run_module, tmp_path):
    frr = Frr("{}", "[]", "", "")
    result, failed = run_module(node_status.main, args(tmp_path), frr)
    assert not failed and not result["ready"]
    assert any("no session configured" in p for p in result["problems"])


def test_a_state_of_another_schema_is_refused_naming_both(run_module, tmp_path):
    path = tmp_path / "other-schema.json"
    path.write_text(json.dumps({"schema": 2, "families": {}}))
    result, failed = run_module(node_status.main, args(tmp_path, health_state=str(path)),
                                Frr(summary(), bfd(), advertised(V4), advertised(V6)))
    assert failed and "schema 2" in result["msg"] and "reads schema 1" in result["msg"]


def test_the_record_of_an_unfinished_rollout_is_returned_and_a_missing_one_is_none(run_module, tmp_path):
    frr = Frr(summary(), bfd(), advertised(V4), advertised(V6))
    record = tmp_path / "rollout.json"
    result, failed = run_module(node_status.main, args(tmp_path, rollout_record=str(record)), frr)
    assert not failed and result["rollout"] is None
    record.write_text('{"pop": "tyo", "started": "2026-12-01T20:31:05+00:00", "resume": "r"}\n')
    result, failed = run_module(node_status.main, args(tmp_path, rollout_record=str(record)), frr)
    assert not failed and result["rollout"] == {"pop": "tyo", "started": "2026-12-01T20:31:05+00:00", "resume": "r"}
    record.write_text("{half")
    result, failed = run_module(node_status.main, args(tmp_path, rollout_record=str(record)), frr)
    assert not failed and result["rollout"]["pop"] is None and str(record) in result["rollout"]["unreadable"]
