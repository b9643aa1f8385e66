"""make bench's scaled lab (lab/anycast_lab/scale.py) and the timing report, without a lab."""

from __future__ import annotations

import yaml

from anycast_lab import bench, playbook, routers, scale, speed, topology
from anycast_lab.shell import LabError


def test_extra_servers_go_to_the_pops_in_turn_after_their_own():
    data, new = scale.scaled_topology(6)
    assert new == [("hkg3", "hkg"), ("tyo2", "tyo"), ("fra2", "fra"), ("gru2", "gru"), ("hkg4", "hkg"), ("tyo3", "tyo")]
    assert data["nodes"]["fra2"] == {"kind": "server", "city": "fra", "mgmt": "198.18.0.102", "debian": 13}
    assert data["nodes"]["hkg3"]["debian"] == 12
    assert ["tr-fra", "fra2"] in data["links"]


def test_too_many_is_refused():
    try:
        scale.scaled_topology(scale.MAX_EXTRA + 1)
    except LabError as exc:
        assert "extra servers" in str(exc)
    else:
        raise AssertionError("no error")


def test_written_lab_is_consistent_topology_routers_and_inventory(tmp_path):
    names = scale.write(tmp_path / "lab", 15)
    assert len(names) == 15
    topo = topology.load(tmp_path / "lab" / "topology.yml")  # loads: addresses unique, names short enough
    original = topology.load()
    # The lab's own links keep their numbers (and so their addresses).
    assert str(topo.nodes["fra1"].interfaces[0].ipv4) == str(original.nodes["fra1"].interfaces[0].ipv4)
    inv = tmp_path / "lab" / "inventory"
    for name in names:
        hv = yaml.safe_load((inv / "host_vars" / f"{name}.yml").read_text())
        up = hv["anycast_upstreams"][0]
        router = f"tr-{name[:3]}"
        conf = (tmp_path / "lab" / "routers" / f"{router}.conf").read_text()
        # the transit router expects this server at the address and password the inventory gives it
        mine = hv["anycast_interfaces"][1]["ipv4"].split("/")[0]
        assert f"neighbor {mine} password {routers.md5_password(name, 'transit')}" in conf
        assert up["password"] == routers.md5_password(name, "transit")
        assert up["asn"] == topo.nodes[router].asn
        group = yaml.safe_load((inv / f"{name[:3]}.yml").read_text())
        assert group["anycast_servers"]["children"][name[:3]]["hosts"][name]["ansible_host"] == hv["anycast_router_id"]
    service = yaml.safe_load((inv / "group_vars" / "all" / "service.yml").read_text())
    assert service["anycast_zones_dir"] == str(scale.REPO / "zones" / "lab")
    assert (scale.REPO / "zones" / "lab" / "example.com.zone").exists()
    mgmt = [str(n.mgmt) for n in topo.nodes.values() if n.mgmt]
    assert len(mgmt) == len(set(mgmt))
    env = scale.env(tmp_path / "lab")
    assert env["ANYCAST_LAB_TOPOLOGY"].endswith("topology.yml") and env["ANYCAST_LAB_ROUTERS"].endswith("routers")


RECAP = """PLAY RECAP *********************************************************************
fra1                       : ok=57   changed=0    unreachable=0    failed=0    skipped=13   rescued=0    ignored=0
localhost                  : ok=1    changed=2    unreachable=0    failed=0    skipped=0    rescued=0    ignored=0
"""


def test_recap_and_timings_report():
    hosts = playbook.recap(RECAP)
    assert hosts == {"fra1": {"ok": 57, "changed": 0, "unreachable": 0, "failed": 0},
                     "localhost": {"ok": 1, "changed": 2, "unreachable": 0, "failed": 0}}
    text = bench.timings_markdown({
        "baseline": "abc1234",
        "scaled_first_converge": {"servers": 20, "old": {"seconds": 500.0, "hosts": 22, "changed": 470},
                                  "new_over_old": {"seconds": 210.0, "hosts": 22, "changed": 60}},
        "idempotent_by_servers": [{"way": "old", "servers": 5, "seconds": 120.0, "changed": 0},
                                  {"way": "old", "servers": 20, "seconds": 480.0, "changed": 0},
                                  {"way": "new", "servers": 5, "seconds": 40.0, "changed": 0},
                                  {"way": "new", "servers": 20, "seconds": 120.0, "changed": 0}]})
    assert "old way (commit abc1234) first" in text
    assert "old way: 500.0 s, 470 changed; the new way's first run over it (an update): 210.0 s" in text
    assert "| 5 | 120.0 | 24.0 | 40.0 | 8.0 | 0.33 |" in text
    assert "| 20 | 480.0 | 24.0 | 120.0 | 6.0 | 0.25 |" in text


def test_speed_ratios_and_report():
    old = {"first_converge": 220.0, "idempotent": speed.spread([110.0, 104.0, 120.0]),
           "fact_round": speed.spread([3.0, 3.2, 3.1]), "rolling_nothing_to_change": speed.spread([130.0])}
    new = {"first_converge": 110.0, "idempotent": speed.spread([36.0, 33.0, 34.0]),
           "fact_round": speed.spread([3.0, 3.0, 3.1]), "rolling_nothing_to_change": speed.spread([26.0, 28.0, 27.0]),
           "rolling_forced": 70.0}
    r = speed.ratios(old, new)
    assert r == {"idempotent": round(34.0 / 110.0, 3), "first_converge": 0.5,
                 "rolling_nothing_to_change_vs_old_full": round(27.0 / 130.0, 3),
                 "rolling_nothing_to_change_vs_new_forced": round(27.0 / 70.0, 3),
                 "idempotent_in_fact_rounds": round(34.0 / 3.1, 1)}
    text = speed.markdown({"baseline": "abc1234", "old": old, "new": new, "ratios": r})
    assert "| site.yml, idempotent (changed=0) | 110.0 (104.0-120.0, 3 runs) | 34.0 (33.0-36.0, 3 runs) | 0.31 |" \
        in text
    assert "| site.yml, first converge | 220.0 | 110.0 | 0.50 |" in text
    assert "rounds of fact gathering" in text and "39% of the new way's forced full rolling run" in text
