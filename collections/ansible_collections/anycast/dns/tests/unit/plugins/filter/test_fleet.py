"""The fleet filters: quorum (who serves without the servers taken out) and the status table."""

from __future__ import annotations

from ansible_collections.anycast.dns.plugins.filter.fleet import collector_table, fleet_quorum, fleet_state, fleet_table

POPS = ["hkg", "tyo", "fra", "gru"]
POP_OF = {"hkg1": "hkg", "hkg2": "hkg", "tyo1": "tyo", "fra1": "fra", "gru1": "gru"}


def node(announcing=True, problems=()):
    return {"sessions": [{"neighbor": "100.64.23.1", "family": "ipv4", "description": "transit (transit)",
                          "state": "Established" if announcing else "Active", "established": announcing,
                          "bfd": "up", "advertised": []}],
            "announcing": announcing, "problems": list(problems), "announced": ["203.0.113.0/24"] if announcing else [],
            "health": {"drain": None, "families": {"ipv4": {"state": "announced"}, "ipv6": {"state": "announced"}}},
            "serials": {"203.0.113.53": {"example.com": 7, "example.net": "answered SERVFAIL"}}}


def fleet(**overrides):
    results = [dict(overrides.get(h, node()), item=h) for h in POP_OF]
    return fleet_state(results, POP_OF)


def test_every_other_pop_serving_is_a_quorum():
    q = fleet_quorum(fleet(), POPS, ["hkg1", "hkg2"], 3)
    assert q == {"serving": ["tyo", "fra", "gru"], "missing": {}, "required": 3, "ok": True, "out_pops": ["hkg"]}


def test_a_pop_not_serving_is_named_with_its_servers_reasons():
    q = fleet_quorum(fleet(fra1=node(False, ["anycast-health: drained", "b", "c", "d"])), POPS, ["tyo1"], 3)
    assert not q["ok"] and q["serving"] == ["hkg", "gru"]
    assert q["missing"] == {"fra": {"fra1": "anycast-health: drained; b (+2 more)"}}


def test_one_server_of_a_pop_keeps_the_pop_serving_and_an_unreachable_one_does_not_count():
    f = fleet(hkg2=node(False, ["x"]))
    assert fleet_quorum(f, POPS, ["tyo1"], 3)["ok"]
    f = fleet_state([{"item": "hkg1", "unreachable": True, "msg": "ssh: timeout"},
                     {"item": "hkg2", "msg": "vtysh failed", "failed": True}], {"hkg1": "hkg", "hkg2": "hkg"})
    q = fleet_quorum(f, ["hkg", "tyo"], [], 1)
    assert not q["ok"] and q["missing"]["hkg"] == {"hkg1": "ssh: timeout", "hkg2": "vtysh failed"}
    assert q["missing"]["tyo"] == {"-": "no server in the inventory"}


def test_the_quorum_never_asks_for_more_pops_than_remain():
    q = fleet_quorum(fleet(), POPS, ["hkg1", "hkg2", "tyo1", "fra1"], 3)
    assert q["required"] == 1 and q["ok"] and q["out_pops"] == ["hkg", "tyo", "fra"]
    assert not fleet_quorum(fleet(gru1=node(False)), POPS, ["hkg1", "hkg2", "tyo1", "fra1"], 3)["ok"]


def test_the_table_has_one_line_per_server_in_pop_order():
    lines = fleet_table(fleet(fra1=node(False)), POPS)
    assert lines[0].split()[:3] == ["PoP", "server", "BGP"]
    assert [ln.split()[1] for ln in lines[1:]] == ["hkg1", "hkg2", "tyo1", "fra1", "gru1"]
    fra = lines[4]
    assert "transit:Active" in fra and "nothing" in fra and "example.net=ERR" in fra
    assert "transit:up" in lines[1] and "v4:announced v6:announced" in lines[1] and "example.com=7" in lines[1]


def test_the_drain_column_names_a_rollout_that_did_not_finish():
    drained = dict(node(False), health={"drain": {"since": 1, "wait": 20}, "families": {}},
                   rollout={"pop": "tyo", "started": "2026-12-01T20:31:05+00:00"})
    undrained = dict(node(), rollout={"pop": "hkg", "started": "2026-12-01T20:29:40+00:00"})
    broken = dict(node(), rollout={"pop": None, "started": None, "unreadable": "/x: Expecting value"})
    lines = fleet_table(fleet(tyo1=drained, hkg2=undrained, gru1=broken), POPS)
    by_server = {ln.split()[1]: ln for ln in lines[1:]}
    assert "drained, rollout of tyo unfinished (started 2026-12-01T20:31:05+00:00)" in by_server["tyo1"]
    assert " no, rollout of hkg unfinished (started 2026-12-01T20:29:40+00:00)" in by_server["hkg2"]
    assert " no, rollout record unreadable (/x: Expecting value)" in by_server["gru1"]
    assert " no " in by_server["fra1"] and "rollout" not in by_server["fra1"]


def collector_view():
    route = {"prefix": "203.0.113.0/24", "as_path": [64600, 64603, 65053], "origin_as": "65053",
             "upstream_as": "64603", "kind": "aggregate", "rpki": "valid"}
    hijack = {"prefix": "203.0.113.0/25", "as_path": [64666], "origin_as": "64666", "upstream_as": "",
              "kind": "more_specific", "rpki": "invalid"}
    return {"origin_asn": 65053, "aggregates": ["203.0.113.0/24", "2001:db8:53::/48"], "rpki": {},
            "peers": [{"peer": "bb-fra", "family": 4, "asn": 64600, "established": True, "state": "Established",
                       "routes": [route]},
                      {"peer": "hj-gru", "family": 4, "asn": 64666, "established": True, "state": "Established",
                       "routes": [hijack]},
                      {"peer": "tr-hkg", "family": 6, "asn": 64601, "established": False, "state": "Passive",
                       "routes": []}]}


def test_the_collector_table_names_hijacks_missing_aggregates_and_sessions_down():
    lines = collector_table({"monitor1": collector_view(), "monitor2": {"failed": True, "msg": "birdc: no socket"}})
    assert lines[0].split() == ["collector", "peer", "family", "session", "our", "aggregates", "other", "routes",
                                "of", "our", "space"]
    bb, hj, tr, broken = lines[1:]
    assert "203.0.113.0/24 [64600 64603 65053]" in bb and bb.rstrip().endswith("-")
    assert "MISSING 203.0.113.0/24" in hj
    assert "203.0.113.0/25 [64666] HIJACK: origin AS64666, MORE-SPECIFIC, RPKI invalid" in hj
    assert tr.split()[:4] == ["monitor1", "tr-hkg", "ipv6", "Passive"]
    assert broken.split()[0] == "monitor2" and "unreadable: birdc: no socket" in broken


def test_the_collector_table_reads_the_registered_results_of_the_command():
    import json  # noqa: PLC0415

    results = [{"item": "monitor1", "rc": 0, "stdout": json.dumps(collector_view())},
               {"item": "monitor2", "rc": 1, "stdout": "", "stderr": "birdc show protocols: Unable to connect"}]
    lines = collector_table(results)
    assert len(lines) == 5 and "HIJACK" in lines[2] and "unreadable: birdc show protocols" in lines[4]
