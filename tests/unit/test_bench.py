"""lab/anycast_lab/bench.py without a lab: the unicast site's target, improvement, the report and
summary.json's `rtt` key."""

from __future__ import annotations

import json

import pytest

from anycast_lab import bench
from anycast_lab.shell import LabError
from anycast_lab.topology import load

TOPO = load()


def test_unicast_site_is_hkg1_behind_its_transit_router():
    target, last_ms = bench.unicast_target(TOPO, "hkg1")
    assert target == "100.127.0.11"  # tr-hkg's loopback: the lab's Internet routes it
    assert last_ms == 0.1  # tr-hkg - hkg1, same city


def test_improvement_and_pop():
    assert bench.improvement_pct(100.0, 20.0) == 80.0
    assert bench.improvement_pct(50.0, 60.0) == -20.0
    assert bench.improvement_pct(0.0, 1.0) == 0.0
    assert bench.pop_of(TOPO, "hkg2") == "hkg" and bench.pop_of(TOPO, None) is None


ROWS = [{"region": "cl-lon", "city": "London", "pop": "fra", "answered_by": "fra1", "answers": {"fra1": 20},
         "sent": 20, "lost": 0, "unicast_ms": 190.4, "anycast_ms": 13.2, "improvement_pct": 93.1,
         "anycast_path": ["cl-lon", "isp-lon", "bb-lon", "bb-fra", "tr-fra", "fra1"], "unicast_path": []}]


def test_report_says_modelled_and_has_one_line_per_region():
    text = bench.rtt_markdown(ROWS, "203.0.113.53")
    assert "**modelled**" in text and "no netem" in text
    assert "| London (cl-lon) | 190.4 ms | 13.2 ms | fra1 (fra) | 93.1 % |" in text


def test_summary_rtt_key_merges_into_summary_json(tmp_path):
    path = tmp_path / "summary.json"
    path.write_text(json.dumps({"failover": [{"fault": "x"}]}))
    bench.merge_summary(path, "rtt", bench.summary_rtt(ROWS))
    data = json.loads(path.read_text())
    assert data["failover"] == [{"fault": "x"}]
    assert data["rtt"] == [{"region": "cl-lon", "pop": "fra", "unicast_ms": 190.4, "anycast_ms": 13.2,
                            "improvement_pct": 93.1}]


def test_the_firewall_bench_whitelists_its_client_in_rrl_and_nothing_else():
    from anycast_lab.fwbench import whitelisted  # noqa: PLC0415

    conf = ("mod-rrl:\n  - id: default\n    rate-limit: 200\n    slip: 2\n\nmod-stats:\n  - id: default\n"
            "    request-protocol: on\n")
    out = whitelisted(conf, "100.80.4.0/24")
    assert out == ("mod-rrl:\n  - id: default\n    rate-limit: 200\n    slip: 2\n    whitelist: [ 100.80.4.0/24 ]\n\n"
                   "mod-stats:\n  - id: default\n    request-protocol: on\n")
    # A whitelist the inventory set already keeps its networks.
    conf2 = "mod-rrl:\n  - id: default\n    rate-limit: 200\n    whitelist: [ 192.0.2.0/24 ]\n"
    assert "    whitelist: [ 100.80.4.0/24, 192.0.2.0/24 ]\n" in whitelisted(conf2, "100.80.4.0/24")
    with pytest.raises(LabError, match="no RRL module 'default'"):
        whitelisted("server:\n  identity: fra1\n", "100.80.4.0/24")
